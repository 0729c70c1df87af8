"""The ``vatt`` trainer's evaluation: the eval clips' embeddings, zero-shot retrieval and linear probes.

* **Embeddings** (:func:`collect_embeddings`): per clip the video and audio representations
  (the aggregation tokens' outputs, for the probes), the video and audio in the video-audio
  space, the video and the clip's retrieval caption in the video-text space.

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

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.train.models.vatt_model import VATT
from pipelines.train.vatt_data import normalize_video

__all__ = ["average_precision", "chance_levels", "collect_embeddings", "multilabel_probe", "probe_metrics", "recall_at",
           "retrieval_ranks", "write_retrieval_listing"]

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


def _embed(model: VATT, batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """One eval batch's features and common-space embeddings (float32, on the CPU)."""
    video_features = model.encode_video(normalize_video(batch["video"].to(device)))
    audio_features = model.encode_audio(batch["audio"].to(device).float())
    video_va = model.video_to_va(video_features)
    rows = torch.arange(len(batch["query"]))
    query = torch.as_tensor(batch["query"]).long()
    has_text = batch["text_mask"][rows, query].bool()
    out = {"video_features": video_features, "audio_features": audio_features, "video_va": video_va,
           "video_vt": model.va_to_vt(video_va), "audio_va": model.audio_to_va(audio_features), "has_text": has_text}
    if bool(has_text.any()):
        ids = batch["text_ids"][rows, query][has_text]
        out["text_vt"] = model.embed_text(ids.to(device))
    return {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu() for k, v in out.items()}


def collect_embeddings(model: VATT, batches: Iterable[Mapping[str, Any]], device: torch.device, probe: str = "none",
                       limit: int | None = None) -> dict[str, Any]:
    """Features, common-space embeddings, keys, retrieval captions and (``probe``) targets of the
    clips in ``batches`` (the model in eval mode; up to ``limit`` clips), concatenated on the CPU."""
    parts: dict[str, list[Any]] = {}
    seen = 0
    for batch in batches:
        for key, value in _embed(model, batch, device).items():
            parts.setdefault(key, []).append(value)
        for key in ("__key__", "caption"):
            parts.setdefault(key, []).extend(batch.get(key, [""] * len(batch["query"])))
        if probe != "none":
            if probe not in batch:
                raise ValueError(f"the linear probe needs a {probe!r} field in every clip; set probe=none to skip it")
            parts.setdefault(probe, []).append(torch.as_tensor(batch[probe]))
        seen += len(batch["query"])
        if limit is not None and seen >= limit:
            break
    return {k: (torch.cat(v)[:limit] if v and isinstance(v[0], torch.Tensor) else v[:limit]) for k, v in parts.items()}


def probe_metrics(probe: str, train: Mapping[str, Any], test: Mapping[str, Any], *, num_classes: int = 0,
                  steps: int = 100, weight_decay: float = 1e-4) -> dict[str, float]:
    """Linear probes on the frozen video and audio features of :func:`collect_embeddings`'s
    ``train`` and ``test`` clips: ``video_probe_top1`` ... for ``label``, ``video_probe_map`` ...
    for ``labels``; ``num_classes`` 0 = the largest label seen + 1."""
    from pipelines.train.mae import linear_probe

    metrics: dict[str, float] = {"probe_train_samples": float(len(train[probe]))}
    for modality in ("video", "audio"):
        train_x, test_x = train[f"{modality}_features"], test[f"{modality}_features"]
        if probe == "label":
            train_y, test_y = train["label"].long(), test["label"].long()
            if int(train_y.min()) < 0 or int(test_y.min()) < 0:
                raise ValueError("the linear probe needs a 'label' in every clip (some have none); set probe=none")
            largest = int(max(train_y.max(), test_y.max()))
            classes = num_classes or largest + 1
            if largest >= classes:
                raise ValueError(f"config key 'num_classes' ({num_classes}) is too small for label {largest}")
            found = linear_probe(train_x, train_y, test_x, test_y, num_classes=classes, steps=steps,
                                 weight_decay=weight_decay)
        else:
            found = multilabel_probe(train_x, train["labels"], test_x, test["labels"], steps=steps,
                                     weight_decay=weight_decay)
        metrics.update({f"{modality}_{k}": v for k, v in found.items()})
    return metrics


def write_retrieval_listing(found: Mapping[str, Any], ranks: torch.Tensor, path: Path, count: int = 20) -> None:
    """``path`` (JSON): the first ``count`` text queries of :func:`collect_embeddings`'s output, the
    rank of their clip (``ranks``) and the top-5 clips with their captions."""
    from pipelines.train.files import write_bytes_atomic

    has_text = found["has_text"]
    keys = [k for k, h in zip(found["__key__"], has_text.tolist()) if h]
    captions = [c for c, h in zip(found["caption"], has_text.tolist()) if h]
    sim = F.normalize(found["text_vt"], dim=1) @ F.normalize(
        found["video_vt"][has_text], dim=1).T
    rows = []
    for i in range(min(count, len(keys))):
        top = sim[i].topk(min(5, sim.shape[1])).indices.tolist()
        rows.append({"caption": captions[i], "clip": keys[i], "rank": int(ranks[i]),
                     "top5": [{"clip": keys[j], "caption": captions[j]} for j in top]})
    write_bytes_atomic(path, (json.dumps(rows, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
