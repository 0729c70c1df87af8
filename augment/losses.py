"""Losses for patch-based negative augmentation (Qin et al., 2021, arXiv 2110.07858, Sec. 4).

A negative view ``x~`` (P-Shuffle / P-Rotate / P-Infill of ``x``) keeps local statistics but not
the object, so the model should *not* predict ``x``'s class on it. Training minimises
``L_ce(B) + lambda * L_neg(B, B~)`` with ``lambda`` in {0.5, 1, 1.5} and one of:

* :func:`negative_uniform_loss` -- cross-entropy of ``f(x~)`` against the uniform distribution;
* :func:`negative_l2_loss` -- the negative mean L2 distance between ``softmax(f(x))`` and
  ``softmax(f(x~))`` (on probabilities: on logits it is unbounded and unstable);
* :func:`negative_contrastive_loss` -- supervised contrastive loss (Khosla et al., 2020) on
  penultimate features with the negative views added as negatives; the authors recommend it.

:func:`combined_loss` and :class:`NegativeAugmentationLoss` put ``ce + lambda * neg`` together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "NEGATIVE_LOSSES",
    "NegativeAugmentationLoss",
    "combined_loss",
    "negative_contrastive_loss",
    "negative_l2_loss",
    "negative_uniform_loss",
]


def _check_logits(name: str, logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or not logits.is_floating_point():
        raise ValueError(f"{name} must be a float tensor [B, K], got {getattr(logits, 'shape', type(logits))}")


def negative_uniform_loss(logits_negative: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the negative views' predictions against the uniform label ``1/K``.

    ``mean_b( -1/K * sum_k log softmax(f(x~_b))_k )``; its minimum ``log K`` is reached by a
    uniform prediction.

    Args:
        logits_negative: ``[B, K]`` logits on the negative views.
    """
    _check_logits("logits_negative", logits_negative)
    return -F.log_softmax(logits_negative, dim=1).mean(dim=1).mean()


def negative_l2_loss(logits: torch.Tensor, logits_negative: torch.Tensor) -> torch.Tensor:
    """``-mean_b || softmax(f(x_b)) - softmax(f(x~_b)) ||_2``: minimising it pushes the two apart.

    Args:
        logits: ``[B, K]`` logits on the originals.
        logits_negative: ``[B, K]`` logits on their negative views.
    """
    _check_logits("logits", logits)
    _check_logits("logits_negative", logits_negative)
    if logits.shape != logits_negative.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and logits_negative {tuple(logits_negative.shape)} must match")
    difference = F.softmax(logits, dim=1) - F.softmax(logits_negative, dim=1)
    return -difference.norm(dim=1).mean()


def negative_contrastive_loss(
    features: torch.Tensor,
    features_negative: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Supervised contrastive loss with the negative views as extra negatives.

    Features are L2-normalised. For anchor ``i`` (an original), the positives ``P_i`` are the other
    originals of the same class; the negatives are the originals of other classes plus *all*
    negative views, ``2|B| - |P_i| - 1`` of them. With ``s = z_i . z_a / tau``::

        L_i = -1/|P_i| * sum_{p in P_i} log( exp(s_ip) / sum_{a != i} exp(s_ia) )

    where ``a`` runs over the other originals and all negative views. Anchors without a positive
    are left out of the mean; a batch with none gives 0.

    Args:
        features: ``[B, D]`` penultimate features of the originals.
        features_negative: ``[B', D]`` features of the negative views (usually ``B' = B``).
        labels: int64 ``[B]`` class indices.
        temperature: ``tau`` > 0.
    """
    if features.ndim != 2 or features_negative.ndim != 2 or features.shape[1] != features_negative.shape[1]:
        raise ValueError(
            f"features [B,D] and features_negative [B',D] must share D, got {tuple(features.shape)} and "
            f"{tuple(features_negative.shape)}"
        )
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must have shape {(features.shape[0],)}, got {tuple(labels.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    batch = features.shape[0]
    anchors = F.normalize(features, dim=1)
    others = torch.cat([anchors, F.normalize(features_negative, dim=1)])
    logits = anchors @ others.T / temperature  # [B, B + B']
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[:, :batch] = torch.eye(batch, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = torch.zeros_like(self_mask)
    positives[:, :batch] = (labels[:, None] == labels[None, :]) & ~self_mask[:, :batch]
    counts = positives.sum(dim=1)
    has_positive = counts > 0
    if not has_positive.any():
        return logits.new_zeros(()) + 0.0 * features.sum()
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(dim=1)[has_positive] / counts[has_positive])
    return per_anchor.mean()


def combined_loss(logits: torch.Tensor, target: torch.Tensor, negative: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """``L_ce(logits, target) + weight * negative`` (the paper uses weight in {0.5, 1, 1.5}).

    Args:
        logits: ``[B, K]`` logits on the originals.
        target: int64 class indices ``[B]`` or soft targets ``[B, K]`` (e.g. from MixUp).
        negative: a scalar from one of the negative losses.
        weight: ``lambda`` >= 0.
    """
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight!r}")
    return F.cross_entropy(logits, target) + weight * negative


#: the ``kind`` names of :class:`NegativeAugmentationLoss`
NEGATIVE_LOSSES = ("uniform", "l2", "contrastive")

_NEGATIVE_TERMS = {
    "uniform": lambda self, z, z_neg, y, f, f_neg: negative_uniform_loss(z_neg),
    "l2": lambda self, z, z_neg, y, f, f_neg: negative_l2_loss(z, z_neg),
    "contrastive": lambda self, z, z_neg, y, f, f_neg: negative_contrastive_loss(f, f_neg, y, self.temperature),
}


class NegativeAugmentationLoss:
    """``ce + weight * neg`` in one callable.

    Args:
        kind: one of :data:`NEGATIVE_LOSSES`.
        weight: ``lambda``.
        temperature: for ``"contrastive"``.

    Call with ``(logits, logits_negative, target, features=None, features_negative=None)``;
    ``"contrastive"`` needs the features and int64 targets.
    """

    def __init__(self, kind: str = "contrastive", weight: float = 1.0, temperature: float = 0.1) -> None:
        if kind not in NEGATIVE_LOSSES:
            raise ValueError(f"kind must be one of {NEGATIVE_LOSSES}, got {kind!r}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight!r}")
        self.kind, self.weight, self.temperature = kind, weight, temperature

    def __call__(self, logits: torch.Tensor, logits_negative: torch.Tensor, target: torch.Tensor,
                 features: torch.Tensor | None = None, features_negative: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "contrastive" and (features is None or features_negative is None):
            raise ValueError("kind='contrastive' needs features and features_negative")
        negative = _NEGATIVE_TERMS[self.kind](self, logits, logits_negative, target, features, features_negative)
        return combined_loss(logits, target, negative, self.weight)

    def __repr__(self) -> str:
        return f"NegativeAugmentationLoss(kind={self.kind!r}, weight={self.weight}, temperature={self.temperature})"
