"""Multi-label evaluation for the chest X-ray trainer: rank-based ROC AUC per pathology.

The area under the ROC curve of a score that separates positives from negatives equals the
Mann-Whitney U statistic divided by ``n_pos * n_neg`` (Hanley & McNeil, "The meaning and use of
the area under a receiver operating characteristic (ROC) curve", Radiology 1982): the probability
that a random positive scores above a random negative, ties counting one half. With average ranks
(``scipy.stats.rankdata``) that is ``(R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``, where
``R_pos`` is the sum of the positives' ranks -- the value ``sklearn.metrics.roc_auc_score`` gives.

Chest X-ray labels are NaN where a collection does not say (see ``loaders.xray``): those rows
are left out of the pathology's AUC. A pathology whose known labels are all positive or all
negative in the evaluation set has no AUC; it is reported as skipped, never as 0.5 or 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

__all__ = ["AUCReport", "binary_auc", "per_pathology_auc"]


def binary_auc(scores: np.ndarray | Sequence[float], targets: np.ndarray | Sequence[float]) -> float:
    """ROC AUC of ``scores`` for binary ``targets`` (1 positive, 0 negative, NaN ignored).

    Ties between a positive and a negative count one half (average ranks).

    Returns:
        The AUC in [0, 1], or NaN when the known targets hold only one class (or none).

    Raises:
        ValueError: shapes differ, a target is not 0, 1 or NaN, or a known row's score is not finite.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(targets, dtype=np.float64).ravel()
    if s.shape != t.shape:
        raise ValueError(f"scores and targets must have the same length, got {s.size} and {t.size}")
    known = ~np.isnan(t)
    s, t = s[known], t[known]
    if not np.all((t == 0) | (t == 1)):
        raise ValueError(f"targets must be 0, 1 or NaN, got {sorted(set(t[(t != 0) & (t != 1)].tolist()))[:5]}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite where the target is known")
    positive = t == 1
    n_pos = int(positive.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(rankdata(s, method="average")[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


@dataclass(frozen=True)
class AUCReport:
    """Per-pathology AUCs of one evaluation.

    Attributes:
        per_pathology: name -> AUC (NaN where the pathology has one class only in the labels).
        mean: the mean over the pathologies that have an AUC (NaN when none has).
        skipped: the names without an AUC, in column order.
    """

    per_pathology: dict[str, float]
    mean: float
    skipped: tuple[str, ...]

    @property
    def defined(self) -> int:
        return len(self.per_pathology) - len(self.skipped)

    def as_metrics(self, prefix: str = "auc") -> dict[str, float]:
        """Flat metrics: ``{prefix}/{name}`` for each pathology with an AUC (the skipped ones are
        absent, so no NaN reaches a JSON log), ``{prefix}_mean`` when any has one, and the counts
        ``{prefix}_defined`` / ``{prefix}_skipped``."""
        out = {f"{prefix}/{name}": value for name, value in self.per_pathology.items() if not math.isnan(value)}
        if not math.isnan(self.mean):
            out[f"{prefix}_mean"] = self.mean
        out[f"{prefix}_defined"] = float(self.defined)
        out[f"{prefix}_skipped"] = float(len(self.skipped))
        return out


def per_pathology_auc(scores: np.ndarray, targets: np.ndarray, names: Sequence[str]) -> AUCReport:
    """The AUC of each column of ``scores`` ``[N, K]`` against ``targets`` ``[N, K]`` (NaN = unknown).

    Raises:
        ValueError: shapes differ, ``names`` does not name ``K`` columns, or as :func:`binary_auc`.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"scores and targets must both be [N, K], got {s.shape} and {t.shape}")
    if len(names) != s.shape[1]:
        raise ValueError(f"names must name the {s.shape[1]} columns, got {len(names)} names")
    per = {name: binary_auc(s[:, j], t[:, j]) for j, name in enumerate(names)}
    values = [v for v in per.values() if not math.isnan(v)]
    mean = float(np.mean(values)) if values else math.nan
    return AUCReport(per, mean, tuple(name for name, v in per.items() if math.isnan(v)))
