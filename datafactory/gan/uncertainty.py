"""Ensemble agreement for the DatasetGAN interpreter: labels, per-pixel uncertainty, filtering.

Zhang et al., "DatasetGAN: Efficient Labeled Data Factory with Minimal Human Effort", CVPR 2021,
arXiv:2104.06490: each pixel's label is the majority vote of the ensemble members'
argmaxes; its uncertainty is the Jensen-Shannon divergence of the members' softmax outputs; an
image's score is the mean of its most uncertain 10% of pixels, and the most uncertain images are
dropped before a downstream network is trained on the generated set.

All functions are pure and deterministic; they take the ensemble's logits laid out as
``(E, n, C, H, W)`` (members, images, classes, height, width).

Conventions (fixed here so that results are reproducible across machines):

* **Majority vote ties** go to the lowest class index (as does each member's own argmax).
* **Jensen-Shannon divergence** uses the natural logarithm (nats):
  ``JS = H(mean_e p_e) - mean_e H(p_e)`` with ``H(p) = -sum_c p_c log p_c`` and ``0 log 0 = 0``.
  It is 0 where all members give the same distribution and at most ``min(log E, log C)``; two
  members giving opposite one-hot predictions reach ``log 2``. Rounding can make it a tiny bit
  negative; it is clamped at 0.
* **Image score**: the mean of the ``k = ceil(top_fraction * H * W)`` largest pixel values
  (at least one pixel).
* **Filtering** drops ``floor(drop_fraction * n)`` images, the highest scores first; equal scores
  are ranked by index, so among equal scores the earlier images are kept.
"""

from __future__ import annotations

import math

import torch

__all__ = ["image_scores", "js_uncertainty", "keep_least_uncertain", "majority_vote"]

# tolerance for the fraction -> count arithmetic: 0.1 * 30 is 3.0000000000000004 in binary floating point
_COUNT_EPS = 1e-9


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor of shape (E, n, C, H, W), got {type(logits).__name__}")
    if logits.ndim != 5 or 0 in logits.shape:
        raise ValueError(f"logits must have shape (E, n, C, H, W) with no empty dimension, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")


def majority_vote(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel label: the class most members predict (ties -> the lowest class index).

    Args:
        logits: ``(E, n, C, H, W)`` ensemble logits.

    Returns:
        ``(n, H, W)`` int64 labels.
    """
    _check_logits(logits)
    votes = logits.argmax(dim=2)  # (E, n, H, W); a member's own ties also go to the lowest index
    counts = torch.zeros(logits.shape[1:], dtype=torch.int32, device=logits.device)  # (n, C, H, W)
    counts.scatter_add_(1, votes.transpose(0, 1), torch.ones_like(votes, dtype=torch.int32).transpose(0, 1))
    return counts.argmax(dim=1)  # torch.argmax returns the first maximal index


def js_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel Jensen-Shannon divergence of the members' softmax outputs, in nats.

    ``H(mean_e softmax(l_e)) - mean_e H(softmax(l_e))``, computed in float32 (float64 input stays
    float64) and clamped at 0.

    Args:
        logits: ``(E, n, C, H, W)`` ensemble logits.

    Returns:
        ``(n, H, W)`` divergences (0 = the members agree).
    """
    _check_logits(logits)
    work = logits if logits.dtype == torch.float64 else logits.float()
    log_p = torch.log_softmax(work, dim=2)
    p = log_p.exp()
    # p log p with 0 log 0 = 0 (a -inf logit gives p = 0 and log p = -inf)
    plogp = torch.where(p > 0, p * log_p, torch.zeros((), dtype=p.dtype, device=p.device))
    member_entropy = -plogp.sum(dim=2).mean(dim=0)  # mean_e H(p_e), (n, H, W)
    mean_p = p.mean(dim=0)  # (n, C, H, W)
    mixture_entropy = -torch.special.xlogy(mean_p, mean_p).sum(dim=1)
    return (mixture_entropy - member_entropy).clamp_min_(0.0)


def _check_fraction(value: float, name: str, *, allow_zero: bool, allow_one: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    high_ok = value <= 1 if allow_one else value < 1
    if not (low_ok and high_ok):
        interval = ("[0" if allow_zero else "(0") + ", 1" + ("]" if allow_one else ")")
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def image_scores(uncertainty: torch.Tensor, top_fraction: float = 0.1) -> torch.Tensor:
    """Per-image score: the mean of the image's ``ceil(top_fraction * H * W)`` largest pixel values.

    Args:
        uncertainty: ``(n, H, W)`` per-pixel uncertainty (e.g. from :func:`js_uncertainty`).
        top_fraction: fraction of pixels averaged, in (0, 1]; 0.1 in the paper.

    Returns:
        ``(n,)`` scores (same floating dtype as the input).
    """
    if not isinstance(uncertainty, torch.Tensor):
        raise TypeError(f"uncertainty must be a torch.Tensor of shape (n, H, W), got {type(uncertainty).__name__}")
    if uncertainty.ndim != 3 or 0 in uncertainty.shape[1:]:
        raise ValueError(f"uncertainty must have shape (n, H, W) with H, W >= 1, got {tuple(uncertainty.shape)}")
    if not uncertainty.is_floating_point():
        raise TypeError(f"uncertainty must be a floating-point tensor, got {uncertainty.dtype}")
    fraction = _check_fraction(top_fraction, "top_fraction", allow_zero=False, allow_one=True)
    flat = uncertainty.reshape(uncertainty.shape[0], -1)
    k = max(1, math.ceil(fraction * flat.shape[1] - _COUNT_EPS))
    return flat.topk(k, dim=1).values.mean(dim=1)


def keep_least_uncertain(scores: torch.Tensor, drop_fraction: float) -> torch.Tensor:
    """Which images to keep after dropping the ``floor(drop_fraction * n)`` most uncertain ones.

    Ranking is by score, then by index (a stable sort), so equal scores never make the choice
    depend on the platform: among equal scores the earlier images are kept.

    Args:
        scores: ``(n,)`` per-image scores (higher = more uncertain), no NaN.
        drop_fraction: fraction to drop, in [0, 1].

    Returns:
        ``(n,)`` bool mask, True for the images kept.
    """
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor of shape (n,), got {type(scores).__name__}")
    if scores.ndim != 1:
        raise ValueError(f"scores must have shape (n,), got {tuple(scores.shape)}")
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        raise ValueError("scores contains NaN; cannot rank images by uncertainty")
    fraction = _check_fraction(drop_fraction, "drop_fraction", allow_zero=True, allow_one=True)
    n = scores.shape[0]
    n_drop = min(n, math.floor(fraction * n + _COUNT_EPS))
    order = torch.sort(scores, stable=True).indices  # ascending; equal scores keep index order
    keep = torch.zeros(n, dtype=torch.bool, device=scores.device)
    keep[order[: n - n_drop]] = True
    return keep
