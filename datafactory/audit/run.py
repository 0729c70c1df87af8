"""``audit``: one pass over one or two splits, then duplicates, statistics, the hull test and the report.

The flow: open each split (:class:`datafactory.audit.sources.AuditSource`), scan it once
(:func:`datafactory.audit.scan.scan_split`), find exact duplicates by digest and near duplicates
through the pHash multi-index (and optionally embeddings), summarise labels and images, run the
interpolation test on seeded samples when asked, draw the figures (duplicate pairs are read
again by locator, not kept in memory), and write ``report.json`` + ``report.html``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datafactory.audit.config import AuditConfig
from datafactory.audit.duplicates import embedding_pairs, exact_duplicates, phash_pairs
from datafactory.audit.scan import ScanOptions, SplitScan, scan_split, thumbnail
from datafactory.audit.sources import AuditSource
from datafactory.audit.stats import image_statistics, label_statistics, multilabel_statistics

__all__ = ["AuditReport", "REPORT_FORMAT", "audit"]

REPORT_FORMAT = "datafactory-audit/1"
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # split names become figure file names


@dataclass
class AuditReport:
    """What :func:`audit` found: ``data`` is the content of ``report.json``; ``figures`` maps a
    figure name to its PNG bytes (drawn only when a report folder is written); ``out`` is the
    folder written (``None`` when not asked)."""

    data: dict[str, Any]
    figures: dict[str, bytes]
    out: Path | None = None

    @property
    def files(self) -> list[Path]:
        """The files written into ``out``."""
        if self.out is None:
            return []
        return [self.out / name for name in ("report.json", "report.html", *(f"{n}.png" for n in self.figures))]


def _positions(length: int, count: int, rng: np.random.Generator) -> frozenset[int]:
    if length <= count:
        return frozenset(range(length))
    return frozenset(int(i) for i in rng.choice(length, size=count, replace=False))


def _split_summary(scan: SplitScan) -> dict[str, Any]:
    source = scan.source
    unreadable = sum(tally.unreadable for tally in source.tallies)
    listed = len(source)
    return {
        "source": source.describe(),
        "listed": listed,
        "read": scan.read,
        "corrupt": len(scan.corrupt),
        "unreadable": unreadable,
        "counts_add_up": listed == scan.read + len(scan.corrupt) + unreadable,
        "images": len(scan.image_rows),
        "without_image": scan.read - len(scan.image_rows),
    }


def _labels(scan: SplitScan) -> dict[str, Any]:
    names = scan.source.class_names
    single = label_statistics(scan.labels, names) if any(label is not None for label in scan.labels) else None
    multi = None
    if scan.multilabels:
        width = len(scan.multilabels[0])
        multi = multilabel_statistics(np.stack(scan.multilabels),
                                      names if names is not None and len(names) == width else None)
    return {"single": single, "multi": multi}


def _sample_picture(scan: SplitScan, row: int, side: int) -> np.ndarray | None:
    """A thumbnail of sample ``row`` read again from its source (``None`` if it no longer decodes)."""
    from loaders import CodecError, decode_sample

    try:
        decoded = decode_sample(scan.source.fetch(scan.locators[row]))
    except (CodecError, OSError, ValueError):
        return None
    image = decoded.get("image")
    return thumbnail(image, side) if isinstance(image, torch.Tensor) and image.ndim == 3 else None


_Pair = tuple[int, int, int, int, str]  # split a, row a, split b, row b, caption


def _shown_pairs(scans: list[SplitScan], exact_groups: list[list[tuple[int, int]]],
                 near: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]], limit: int) -> list[_Pair]:
    """Which pairs to draw: ``(split a, row a, split b, row b, caption)``; exact groups across
    splits first (a third of the room at most), then near pairs, the largest distances first
    (the ones that tell whether the threshold is right)."""
    chosen: list[_Pair] = []
    seen: set[tuple[int, int, int, int]] = set()
    if limit <= 0:
        return chosen
    for group in exact_groups:
        if len(chosen) >= max(1, limit // 3):
            break
        (na, ra), (nb, rb) = group[0], next((m for m in group[1:] if m[0] != group[0][0]), group[1])
        chosen.append((na, ra, nb, rb, "exact (pixels)"))
        seen.add((na, ra, nb, rb))
    for split_q, split_i, rows_q, rows_i, distance in near:
        for position in np.argsort(-distance, kind="stable"):
            if len(chosen) >= limit:
                return chosen
            pair = (split_q, int(rows_q[position]), split_i, int(rows_i[position]))
            exact = scans[split_q].pixel_digests[pair[1]] == scans[split_i].pixel_digests[pair[3]]
            if pair not in seen and not exact:  # exact copies are drawn above
                seen.add(pair)
                chosen.append((*pair, f"pHash distance {int(distance[position])}"))
    return chosen


def _figures(scans: list[SplitScan], data: dict[str, Any], shown: list[_Pair],
             interpolation: dict[str, Any] | None, config: AuditConfig) -> dict[str, bytes]:
    from datafactory.audit import plots

    figures: dict[str, bytes] = {}
    labels = {scan.name: data["labels"][scan.name]["single"] or data["labels"][scan.name]["multi"] for scan in scans}
    labels = {name: stats for name, stats in labels.items() if stats is not None}
    if labels:
        figures["class_histogram"] = plots.figure_png(plots.class_histogram_figure(labels))
    for scan in scans:
        multi = data["labels"][scan.name]["multi"]
        if multi is not None and len(multi["columns"]) > 1:
            names = [column["name"] for column in multi["columns"]]
            figures[f"cooccurrence_{scan.name}"] = plots.figure_png(
                plots.cooccurrence_figure(multi["cooccurrence"], names, f"{scan.name}: label co-occurrence"))
    sizes = {scan.name: (np.asarray(scan.width), np.asarray(scan.height)) for scan in scans if scan.width}
    if sizes:
        figures["image_sizes"] = plots.figure_png(plots.size_figure(sizes))
    for scan in scans:
        if scan.thumbnails and config.thumbnails_per_class:
            order = {name: i for i, name in enumerate(scan.source.class_names or ())}
            ordered = dict(sorted(scan.thumbnails.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
            figures[f"thumbnails_{scan.name}"] = plots.figure_png(
                plots.thumbnails_figure(ordered, f"{scan.name}: first images of each class"))
    if shown:
        side = 96
        pictures = []
        for na, ra, nb, rb, caption in shown:
            a, b = _sample_picture(scans[na], ra, side), _sample_picture(scans[nb], rb, side)
            pictures.append((a, b, f"{scans[na].name} {scans[na].keys[ra]}",
                             f"{scans[nb].name} {scans[nb].keys[rb]} ({caption})"))
        figures["duplicate_pairs"] = plots.figure_png(plots.pairs_figure(pictures, "duplicate pairs (left | right)"))
    if interpolation is not None:
        figures["interpolation"] = plots.figure_png(plots.interpolation_figure([interpolation]))
    return figures


def audit(
    train: Any,
    test: Any = None,
    out: str | os.PathLike | None = None,
    *,
    config: AuditConfig | None = None,
    names: tuple[str, str] = ("train", "test"),
    progress: bool = True,
    **settings: Any,
) -> AuditReport:
    """Audit a split, or a pair of splits (``train`` vs ``test``), and write the report.

    Args:
        train: a shard folder, a :class:`loaders.Adapter` (e.g. from ``loaders.open_dataset``) or
            a :class:`pipelines.SourceSpec`.
        test: the same kinds, or ``None`` for a single-split audit.
        out: folder for ``report.json``, ``report.html`` and the figures' PNGs (created if
            needed; only those files are written, regular files replaced, never through a link);
            ``None`` writes nothing.
        config: an :class:`AuditConfig`; ``**settings`` override its fields
            (``audit(a, b, "out", threshold=6)``).
        names: the splits' labels in the report.
        progress: tqdm bars.

    Returns:
        An :class:`AuditReport`.

    Raises:
        ValueError / TypeError: bad settings or sources (naming the argument).
        SampleError, CodecError, ShardError: a bad sample with ``on_error="raise"``.
    """
    unknown = sorted(set(settings) - set(AuditConfig.field_names()))
    if unknown:
        raise TypeError(f"unknown audit setting(s) {unknown}; allowed: {AuditConfig.field_names()}")
    config = replace(config or AuditConfig(), **settings)
    if (not isinstance(names, (tuple, list)) or len(names) != 2 or names[0] == names[1]
            or not all(isinstance(n, str) and _SPLIT_NAME.fullmatch(n) for n in names)):
        raise ValueError(f"names must be two different names of [A-Za-z0-9_-] (at most 64), got {names!r}")
    sources = [AuditSource(train, names[0], config.on_error)]
    if test is not None:
        sources.append(AuditSource(test, names[1], config.on_error))
    scans = _scan(sources, config, progress)

    from datafactory import __version__

    listed = config.max_listed
    data: dict[str, Any] = {"format": REPORT_FORMAT, "datafactory": __version__, "config": config.record()}
    data["splits"] = {scan.name: _split_summary(scan) for scan in scans}
    exact_bytes, _ = exact_duplicates(scans, "byte_digests", listed)
    exact_pixels, pixel_groups = exact_duplicates(scans, "pixel_digests", listed)
    data["exact_duplicates"] = {"bytes": exact_bytes, "pixels": exact_pixels}
    data["near_duplicates"], near_drawn = _near_duplicates(scans, config)
    data["labels"] = {scan.name: _labels(scan) for scan in scans}
    data["images"] = {scan.name: image_statistics(scan.width, scan.height, scan.channels, scan.bits) for scan in scans}
    data["corrupt"] = {scan.name: {"count": len(scan.corrupt), "listed": scan.corrupt[:listed],
                                   "truncated": len(scan.corrupt) > listed} for scan in scans}
    data["shards"] = {scan.name: [t.record() for t in scan.source.tallies] if scan.source.kind == "shards" else None
                      for scan in scans}
    data["interpolation"] = _interpolation(scans, config, progress)
    figures: dict[str, bytes] = {}
    if out is not None:
        shown = _shown_pairs(scans, pixel_groups, near_drawn, config.pairs_shown)
        figures = _figures(scans, data, shown, data["interpolation"], config)
    data["figures"] = {name: f"{name}.png" for name in figures}
    report = AuditReport(data, figures)
    if out is not None:
        from datafactory.audit.report import write_report

        report.out = write_report(out, data, figures)
    return report


def _scan(sources: list[AuditSource], config: AuditConfig, progress: bool) -> list[SplitScan]:
    """Scan each split once; the hull test's samples are drawn (seeded) before reading."""
    embedder = None
    if config.embedding_model is not None:
        from datafactory.audit.embed import Embedder

        embedder = Embedder(config.embedding_model, config.embedding_weights, size=config.embedding_size,
                            device=config.embedding_device)
    rng = np.random.default_rng(config.seed)
    hull = bool(config.hull_dims) and len(sources) == 2
    scans = []
    for number, source in enumerate(sources):
        count = config.hull_train if number == 0 else config.hull_test
        options = ScanOptions(
            thumbnails_per_class=config.thumbnails_per_class, thumbnail_classes=config.thumbnail_classes,
            hull_positions=_positions(len(source), count, rng) if hull else frozenset(),
            hull_resolution=config.hull_resolution, embedder=embedder, progress=progress,
        )
        scans.append(scan_split(source, options))
    return scans


def _near_duplicates(scans: list[SplitScan], config: AuditConfig) -> tuple[dict[str, Any], list[Any]]:
    """The near-duplicate section, and the pHash pairs found (for the figure)."""
    phash: dict[str, Any] = {"across": None, "within": None}
    drawn = []
    if len(scans) == 2:
        summary, rows_q, rows_i, distance = phash_pairs(scans[1], scans[0], config.threshold, config.bands, config.max_listed)
        phash["across"] = summary
        drawn.append((1, 0, rows_q, rows_i, distance))
    if config.near_within or len(scans) == 1:
        phash["within"] = {}
        for number, scan in enumerate(scans):
            summary, rows_q, rows_i, distance = phash_pairs(scan, None, config.threshold, config.bands, config.max_listed)
            phash["within"][scan.name] = summary
            drawn.append((number, number, rows_q, rows_i, distance))
    embedding = None
    if config.embedding_model is not None and len(scans) == 2:
        summary, *_ = embedding_pairs(scans[1], scans[0], config.embedding_threshold, config.max_listed)
        embedding = {"model": config.embedding_model, "weights": config.embedding_weights, **summary}
    return {"phash": phash, "embedding": embedding}, drawn


def _interpolation(scans: list[SplitScan], config: AuditConfig, progress: bool) -> dict[str, Any] | None:
    """The hull test on the sampled images, when asked for and both splits gave some."""
    if not config.hull_dims or len(scans) != 2 or not scans[0].hull_images or not scans[1].hull_images:
        return None
    from datafactory.audit.interpolation import interpolation_rate

    result = interpolation_rate(torch.stack(scans[0].hull_images), torch.stack(scans[1].hull_images),
                                list(config.hull_dims), reduce=config.hull_reduce, progress=progress)
    return result.to_dict()
