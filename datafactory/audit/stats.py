"""Label and image statistics of one split: pure functions over the columns a scan collected.

* single labels (``label``, an int per sample): counts per class, the imbalance ratio (largest
  over smallest non-empty class) and the classes with no sample;
* multi-label vectors (``labels``, float ``[K]``, NaN = not labelled, the chest X-ray convention):
  positives, negatives and unlabelled entries per column, the unlabelled share, and the
  co-occurrence matrix of positives (``C[i, j]`` = samples positive for both ``i`` and ``j``);
* images: width, height and aspect ratio ranges, the most common sizes, channel counts and bit
  depths.

Every count is of samples that were read; corrupt ones are reported by the scan, not here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["image_statistics", "label_statistics", "multilabel_statistics"]

_TOP_SIZES = 20


def _ratio(largest: int, smallest: int) -> float | None:
    return float(largest) / float(smallest) if smallest > 0 else None


def _name(names: Sequence[str] | None, index: int) -> str:
    return names[index] if names is not None and 0 <= index < len(names) else str(index)


def label_statistics(labels: Sequence[int | None], class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Counts of single integer labels (``None`` = the sample has none).

    Returns:
        ``{"samples", "labelled", "unlabelled", "unlabelled_share", "classes": [{"index", "name",
        "count"}...] (sorted by index; every named class, empty ones included), "empty_classes",
        "imbalance_ratio"}`` (``None`` when no class has a sample).
    """
    present = [label for label in labels if label is not None]
    counts = Counter(present)
    indices = set(counts)
    if class_names is not None:
        indices |= set(range(len(class_names)))
    classes = [{"index": int(i), "name": _name(class_names, i), "count": int(counts.get(i, 0))} for i in sorted(indices)]
    nonzero = [c["count"] for c in classes if c["count"] > 0]
    return {
        "samples": len(labels),
        "labelled": len(present),
        "unlabelled": len(labels) - len(present),
        "unlabelled_share": (len(labels) - len(present)) / len(labels) if len(labels) else None,
        "classes": classes,
        "empty_classes": [c["name"] for c in classes if c["count"] == 0],
        "imbalance_ratio": _ratio(max(nonzero), min(nonzero)) if nonzero else None,
    }


def multilabel_statistics(matrix: np.ndarray, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Statistics of multi-label vectors ``[n, K]`` (1 = positive, 0 = negative, NaN = not labelled).

    Values other than 0, 1 and NaN (an uncertainty code left in the data) are counted as ``other``.

    Returns:
        ``{"samples", "columns": [{"index", "name", "positive", "negative", "unlabelled", "other"}...],
        "unlabelled_share" (of all entries), "samples_without_any_label", "imbalance_ratio"
        (most over fewest positives, columns with at least one), "cooccurrence" (K x K list)}``.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"multi-label matrix must be [samples, labels], got shape {matrix.shape}")
    unknown = np.isnan(matrix)
    positive = matrix == 1
    negative = matrix == 0
    other = ~(unknown | positive | negative)
    columns = [
        {"index": k, "name": _name(names, k), "positive": int(positive[:, k].sum()), "negative": int(negative[:, k].sum()),
         "unlabelled": int(unknown[:, k].sum()), "other": int(other[:, k].sum())}
        for k in range(matrix.shape[1])
    ]
    counts = [c["positive"] for c in columns if c["positive"] > 0]
    as_int = positive.astype(np.int64)
    return {
        "samples": int(matrix.shape[0]),
        "columns": columns,
        "unlabelled_share": float(unknown.mean()) if unknown.size else None,
        "samples_without_any_label": int(unknown.all(axis=1).sum()) if matrix.shape[1] else int(matrix.shape[0]),
        "imbalance_ratio": _ratio(max(counts), min(counts)) if counts else None,
        "cooccurrence": (as_int.T @ as_int).tolist(),
    }


def _range(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def image_statistics(width: Sequence[int], height: Sequence[int], channels: Sequence[int], bits: Sequence[int]) -> dict[str, Any]:
    """Sizes, aspect ratios (width / height), channel counts and bit depths of the decoded images.

    Returns:
        ``{"images", "width", "height", "aspect" ({"min", "median", "max"} each), "distinct_sizes",
        "top_sizes": [{"width", "height", "count"}...] (at most 20), "channels": {count: images},
        "bit_depths": {bits: images}}``.
    """
    w, h = np.asarray(width, dtype=np.int64), np.asarray(height, dtype=np.int64)
    sizes = Counter(zip(w.tolist(), h.tolist()))
    return {
        "images": int(w.size),
        "width": _range(w),
        "height": _range(h),
        "aspect": _range(w / np.maximum(h, 1)) if w.size else None,
        "distinct_sizes": len(sizes),
        "top_sizes": [{"width": a, "height": b, "count": n} for (a, b), n in sizes.most_common(_TOP_SIZES)],
        "channels": {str(k): v for k, v in sorted(Counter(channels).items())},
        "bit_depths": {str(k): v for k, v in sorted(Counter(bits).items())},
    }
