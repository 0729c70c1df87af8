"""The audit's figures as PNG bytes (matplotlib, Agg canvas, no pyplot state).

Strings that come from data (class names, keys) are drawn as plain text: every text artist that
shows one is created with ``parse_math=False``, so a class called ``$\\frac{`` is a label, not
a crash or a formula (matplotlib's own tick labels keep their math, e.g. ``2^4`` on log axes).
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

_RC = {"text.usetex": False, "font.size": 9}
_PLAIN = {"parse_math": False}  # for text that comes from data
_MAX_BARS = 60  # more classes than this: sorted counts as a curve
_MAX_POINTS = 20_000  # scatter points per split
_COLOURS = ("#3465a4", "#cc0000", "#4e9a06", "#f57900", "#75507b")


def _figure(width: float, height: float, constrained: bool = False) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained" if constrained else None)
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
        figure = _figure(10, 6.5 if multilabel else 4.5, constrained=True)
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
            axis.set_xticks(np.arange(len(names)) + width * (len(entries) - 1) / 2, names, rotation=60, ha="right", **_PLAIN)
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
        figure = _figure(10, 4.2, constrained=True)
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


def _mosaic(rows: Sequence[Sequence[np.ndarray | None]], cell: int, gap: int = 4) -> np.ndarray:
    """Pictures (uint8 ``[h, w]`` grey or ``[h, w, 3]``) centred in ``cell`` x ``cell`` cells of a white RGB canvas."""
    columns = max([len(row) for row in rows] + [1])
    canvas = np.full((len(rows) * (cell + gap) + gap, columns * (cell + gap) + gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            if picture is None:
                continue
            rgb = np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture
            h, w = min(rgb.shape[0], cell), min(rgb.shape[1], cell)
            top = gap + r * (cell + gap) + (cell - h) // 2
            left = gap + c * (cell + gap) + (cell - w) // 2
            canvas[top : top + h, left : left + w] = rgb[:h, :w]
    return canvas


def _mosaic_figure(canvas: np.ndarray, labels: Sequence[str], cell: int, gap: int, title: str, label_width: float) -> Any:
    """One axes showing ``canvas``, a label left of each row (plain text, math parsing off)."""
    dpi = 100
    height, width = canvas.shape[:2]
    figure = _figure(width / dpi + label_width, height / dpi + 0.5)
    axis = figure.add_axes((label_width / (width / dpi + label_width), 0, 1 - label_width / (width / dpi + label_width),
                            height / dpi / (height / dpi + 0.5)))
    axis.imshow(canvas, interpolation="nearest")
    axis.set_axis_off()
    for row, label in enumerate(labels):
        axis.text(-gap, gap + row * (cell + gap) + cell / 2, label, ha="right", va="center", fontsize=8, **_PLAIN)
    figure.suptitle(title, y=1 - 0.15 / (height / dpi + 0.5), **_PLAIN)
    return figure


def thumbnails_figure(thumbnails: Mapping[str, Sequence[np.ndarray]], title: str, cell: int = 64) -> Any:
    """A grid: one row per class (its name on the left), its first images (uint8 ``[H,W(,3)]``)."""
    with _context():
        names = list(thumbnails) or [""]
        canvas = _mosaic([list(thumbnails.get(name, ())) for name in names], cell)
        return _mosaic_figure(canvas, [_short(name, 24) for name in names], cell, 4, title, 1.8)


def pairs_figure(pairs: Sequence[tuple[np.ndarray | None, np.ndarray | None, str, str]], title: str, cell: int = 96) -> Any:
    """Duplicate pairs side by side: ``(left image, right image, left caption, right caption)``, one pair per row."""
    with _context():
        canvas = _mosaic([[a, b] for a, b, _, _ in pairs] or [[]], cell)
        labels = [f"{_short(left, 40)}\n{_short(right, 40)}" for _, _, left, right in pairs]
        return _mosaic_figure(canvas, labels, cell, 4, title, 3.6)


def interpolation_figure(results: Sequence[Mapping[str, Any]]) -> Any:
    """Proportion of test samples in interpolation vs number of dimensions, one curve per result."""
    with _context():
        figure = _figure(6, 4, constrained=True)
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
        figure = _figure(size + 1, size, constrained=True)
        axis = figure.subplots(1, 1)
        shown = axis.imshow(np.log1p(data), cmap="viridis")
        axis.set_xticks(range(len(names)), [_short(n, 20) for n in names], rotation=70, ha="right", **_PLAIN)
        axis.set_yticks(range(len(names)), [_short(n, 20) for n in names], **_PLAIN)
        figure.colorbar(shown, ax=axis, label="log(1 + samples positive for both)")
        axis.set_title(title, **_PLAIN)
        return figure
