"""The ``vatt`` trainer's evaluation measures: zero-shot retrieval and linear probes.

* **Retrieval** (as in VATT, Akbari et al., 2021, arXiv 2104.11178, and MIL-NCE, Miech et al.,
  2020, arXiv 1912.06430, on YouCook2 / MSR-VTT): query ``i``'s match is gallery item ``i``;
  similarities are cosines; the rank of the match is ``1 +`` the number of gallery items scored
  strictly higher (an exact tie counts in the match's favour). ``R@k`` is the fraction of queries
  whose match ranks ``<= k``; ``median_rank`` the median rank. By chance, with ``N`` gallery items,
  ``R@k = k / N`` and the median rank is about ``(N + 1) / 2`` (:func:`chance_levels`).
* **Linear probes** on frozen features: one class per clip (``label``) -> softmax regression,
  top-1 (``pipelines.train.mae.linear_probe``); a multi-hot vector (``labels``, AudioSet) -> one
  logistic regression per class with unknown (NaN) labels left out, mean average precision over
  the classes with a known positive and a known negative in the eval set (:func:`multilabel_probe`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["average_precision", "chance_levels", "multilabel_probe", "recall_at", "retrieval_ranks"]

RECALL_KS = (1, 5, 10)


def retrieval_ranks(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """1-based rank of gallery item ``i`` for query ``i`` by cosine similarity (``[N]`` int64)."""
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries [N, D] and gallery [M, D] must share D, got {tuple(queries.shape)} and {tuple(gallery.shape)}")
    if queries.shape[0] > gallery.shape[0]:
        raise ValueError(f"{queries.shape[0]} queries but only {gallery.shape[0]} gallery items: query i matches item i")
    sim = F.normalize(queries.float(), dim=1) @ F.normalize(gallery.float(), dim=1).T
    true = sim.gather(1, torch.arange(len(sim), device=sim.device)[:, None])
    return 1 + (sim > true).sum(dim=1)


def recall_at(ranks: torch.Tensor, prefix: str) -> dict[str, float]:
    """``{prefix_r1, prefix_r5, prefix_r10, prefix_median_rank}`` of 1-based ``ranks``."""
    if ranks.numel() == 0:
        return {}
    out = {f"{prefix}_r{k}": float((ranks <= k).float().mean()) for k in RECALL_KS}
    out[f"{prefix}_median_rank"] = float(np.median(ranks.cpu().numpy()))
    return out


def chance_levels(gallery_size: int) -> dict[str, float]:
    """Expected ``R@k`` and median rank of a random ranking of ``gallery_size`` items."""
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be >= 1, got {gallery_size!r}")
    out = {f"chance_r{k}": min(k, gallery_size) / gallery_size for k in RECALL_KS}
    out["chance_median_rank"] = (gallery_size + 1) / 2
    return out


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Average precision of one class: the mean, over the positives, of the precision at each
    positive's position in the ranking by score (ties kept in input order). ``nan`` without positives."""
    order = torch.argsort(scores, descending=True, stable=True)
    hits = targets[order].float()
    positives = float(hits.sum())
    if positives == 0:
        return float("nan")
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float32)
    return float((precision * hits).sum() / positives)


def multilabel_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
                     steps: int = 100, weight_decay: float = 1e-4) -> dict[str, float]:
    """Fit ``sigmoid(W z + b)`` per class on standardised features (full-batch L-BFGS, binary
    cross-entropy over the known labels + ``weight_decay * |W|^2``) and score it:
    ``{"probe_map", "probe_classes"}`` (mean AP over the classes scorable on the eval set)."""
    train_x, test_x = train_x.float().cpu(), test_x.float().cpu()
    train_y, test_y = train_y.float().cpu(), test_y.float().cpu()
    if train_y.shape[1] != test_y.shape[1]:
        raise ValueError(f"train labels have {train_y.shape[1]} classes, eval labels {test_y.shape[1]}")
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-6)
    train_z, test_z = (train_x - mean) / std, (test_x - mean) / std
    known = ~torch.isnan(train_y)
    target = torch.nan_to_num(train_y, nan=0.0)
    linear = nn.Linear(train_x.shape[1], train_y.shape[1])
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        per_label = F.binary_cross_entropy_with_logits(linear(train_z), target, reduction="none")
        loss = (per_label * known).sum() / known.sum().clamp_min(1) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), torch.autocast("cpu", enabled=False):
        optimizer.step(closure)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        scores = linear(test_z)
    aps = []
    for k in range(test_y.shape[1]):
        rows = ~torch.isnan(test_y[:, k])
        labels = test_y[rows, k]
        if labels.numel() and 0 < float(labels.sum()) < labels.numel():
            aps.append(average_precision(scores[rows, k], labels))
    return {"probe_map": float(np.mean(aps)) if aps else float("nan"), "probe_classes": float(len(aps))}
