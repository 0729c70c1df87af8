"""The audit's figures as PNG bytes (matplotlib, Agg canvas, no pyplot state).

Strings that come from data (class names, keys) are drawn as plain text: matplotlib's math
parser is off for every figure (``text.parse_math``), so a class called ``$\\frac{`` is a label,
not a crash or a formula.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "class_histogram_figure",
    "cooccurrence_figure",
    "figure_png",
    "interpolation_figure",
    "pairs_figure",
    "save_figure",
    "size_figure",
    "thumbnails_figure",
]

_RC = {"text.parse_math": False, "text.usetex": False, "font.size": 9}
_MAX_BARS = 60  # more classes than this: sorted counts as a curve
_MAX_POINTS = 20_000  # scatter points per split
_COLOURS = ("#3465a4", "#cc0000", "#4e9a06", "#f57900", "#75507b")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _context() -> Any:
    import matplotlib

    return matplotlib.rc_context(_RC)


def figure_png(figure: Any, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    with _context():
        figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(figure: Any, path: str | os.PathLike) -> None:
    """Write a figure to ``path`` as PNG (a path the caller chose)."""
    with open(path, "wb") as handle:
        handle.write(figure_png(figure))


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def class_histogram_figure(labels: Mapping[str, Mapping[str, Any]]) -> Any:
    """Samples per class for each split (``label_statistics`` or ``multilabel_statistics`` output).

    Single labels: grouped bars (sorted counts as curves past 60 classes). Multi-label:
    positives per column, with the unlabelled share of each column as a second panel.
    """
    with _context():
        multilabel = any("columns" in stats for stats in labels.values())
        figure = _figure(10, 6.5 if multilabel else 4.5)
        if multilabel:
            top, bottom = figure.subplots(2, 1, sharex=True)
        else:
            top, bottom = figure.subplots(1, 1), None
        entries = [(split, stats["columns"] if "columns" in stats else stats["classes"]) for split, stats in labels.items()]
        names = [_short(item["name"]) for item in entries[0][1]] if entries else []
        width = 0.8 / max(len(entries), 1)
        many = len(names) > _MAX_BARS
        for number, (split, items) in enumerate(entries):
            colour = _COLOURS[number % len(_COLOURS)]
            counts = np.array([item["positive"] if multilabel else item["count"] for item in items], dtype=float)
            if many:
                top.plot(np.sort(counts)[::-1], label=split, color=colour)
            else:
                top.bar(np.arange(len(counts)) + number * width, counts, width, label=split, color=colour)
            if bottom is not None:
                total = np.array([item["positive"] + item["negative"] + item["unlabelled"] + item["other"] for item in items])
                share = np.array([item["unlabelled"] for item in items]) / np.maximum(total, 1)
                bottom.bar(np.arange(len(share)) + number * width, share, width, label=split, color=colour)
        if many:
            top.set_xlabel("classes, sorted by count")
            top.set_yscale("log")
        else:
            axis = bottom if bottom is not None else top
            axis.set_xticks(np.arange(len(names)) + width * (len(entries) - 1) / 2, names, rotation=60, ha="right")
        top.set_ylabel("positive samples" if multilabel else "samples")
        top.set_title("labels per class" + (" (multi-label: positives)" if multilabel else ""))
        top.legend()
        if bottom is not None:
            bottom.set_ylabel("unlabelled share (NaN)")
            bottom.set_ylim(0, 1)
        return figure


def size_figure(sizes: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Any:
    """Width vs height scatter and aspect-ratio histogram of each split's images."""
    with _context():
        figure = _figure(10, 4.2)
        scatter, histogram = figure.subplots(1, 2)
        rng = np.random.default_rng(0)
        for number, (split, (width, height)) in enumerate(sizes.items()):
            width, height = np.asarray(width, dtype=float), np.asarray(height, dtype=float)
            if width.size == 0:
                continue
            shown = rng.choice(width.size, _MAX_POINTS, replace=False) if width.size > _MAX_POINTS else slice(None)
            colour = _COLOURS[number % len(_COLOURS)]
            scatter.scatter(width[shown], height[shown], s=6, alpha=0.4, color=colour, label=split)
            histogram.hist(width / np.maximum(height, 1), bins=40, alpha=0.5, color=colour, label=split)
        scatter.set_xlabel("width (px)")
        scatter.set_ylabel("height (px)")
        scatter.set_title("image sizes")
        histogram.set_xlabel("aspect ratio (width / height)")
        histogram.set_ylabel("images")
        histogram.set_title("aspect ratios")
        for axis in (scatter, histogram):
            if axis.get_legend_handles_labels()[0]:
                axis.legend()
        return figure


def _show(axis: Any, image: np.ndarray | None) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(False)
    if image is not None:
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")


def thumbnails_figure(thumbnails: Mapping[str, Sequence[np.ndarray]], title: str) -> Any:
    """A grid: one row per class (its name on the left), its first images (uint8 ``[H,W(,3)]``)."""
    with _context():
        rows = max(1, len(thumbnails))
        columns = max([len(images) for images in thumbnails.values()] + [1])
        figure = _figure(1.1 * columns + 1.6, 1.1 * rows + 0.5)
        axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
        for row, (name, images) in enumerate(thumbnails.items()):
            for column in range(columns):
                _show(axes[row, column], images[column] if column < len(images) else None)
            axes[row, 0].set_ylabel(_short(name, 20), rotation=0, ha="right", va="center")
        figure.suptitle(title)
        return figure


def pairs_figure(pairs: Sequence[tuple[np.ndarray, np.ndarray, str, str]], title: str) -> Any:
    """Duplicate pairs side by side: ``(left image, right image, left caption, right caption)``."""
    with _context():
        columns = 2 if len(pairs) > 8 else 1
        rows = max(1, -(-len(pairs) // columns))
        figure = _figure(5.2 * columns, 2.4 * rows + 0.4)
        axes = np.asarray(figure.subplots(rows, 2 * columns, squeeze=False))
        for number in range(rows * columns):
            row, column = divmod(number, columns)
            left, right = axes[row, 2 * column], axes[row, 2 * column + 1]
            if number < len(pairs):
                a, b, caption_a, caption_b = pairs[number]
                _show(left, a)
                _show(right, b)
                left.set_title(_short(caption_a, 40), fontsize=7)
                right.set_title(_short(caption_b, 40), fontsize=7)
            else:
                _show(left, None)
                _show(right, None)
        figure.suptitle(title)
        return figure


def interpolation_figure(results: Sequence[Mapping[str, Any]], theory: Mapping[str, Any] | None = None) -> Any:
    """Proportion of test samples in interpolation vs number of dimensions, one curve per result."""
    with _context():
        figure = _figure(6, 4)
        axis = figure.subplots(1, 1)
        for number, result in enumerate(results):
            label = result.get("label") or result.get("reduce", "")
            axis.plot(result["actual_dims"], result["rates"], marker="o", color=_COLOURS[number % len(_COLOURS)],
                      label=f"{label} (N={result['n_train']}, {result['n_test']} test)")
        axis.set_xscale("log", base=2)
        axis.set_ylim(-0.02, 1.02)
        axis.set_xlabel("dimensions d")
        axis.set_ylabel("proportion of test samples in the training hull")
        axis.set_title("interpolation regime (Balestriero et al., 2021)")
        axis.legend()
        return figure


def cooccurrence_figure(matrix: Sequence[Sequence[int]], names: Sequence[str], title: str) -> Any:
    """Heat map of a label co-occurrence matrix (positives of both labels)."""
    with _context():
        data = np.asarray(matrix, dtype=float)
        size = max(4.0, 0.35 * len(names) + 2)
        figure = _figure(size + 1, size)
        axis = figure.subplots(1, 1)
        shown = axis.imshow(np.log1p(data), cmap="viridis")
        axis.set_xticks(range(len(names)), [_short(n, 20) for n in names], rotation=70, ha="right")
        axis.set_yticks(range(len(names)), [_short(n, 20) for n in names])
        figure.colorbar(shown, ax=axis, label="log(1 + samples positive for both)")
        axis.set_title(title)
        return figure
