"""Write an audit's ``report.json`` and a self-contained ``report.html`` (plus the figures as PNG files).

The HTML page embeds its figures as ``data:`` URIs, so the one file opens anywhere (mailed,
archived, on a machine without the folder) and references nothing outside itself; the same PNGs
are written next to it for reuse in papers. Every string that comes from the data -- keys, class
names, file names, error messages -- is HTML-escaped: a class named ``<script>`` is text.

Files are written into a folder that may be hostile like the shard builder's: each under a new
temporary name created exclusively (never through a planted link), then renamed over a regular
file or nothing; nothing else in the folder is touched.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.writer import create_temporary, new_run_id, place, write_all

__all__ = ["json_ready", "render_html", "write_report"]

_TABLE_ROWS = 200  # rows of a table shown in the page (report.json lists more)
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;height:auto}
.warn{color:#a40000;font-weight:600}.ok{color:#2b7a0b}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
"""


def json_ready(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python values and NaN/infinity as ``None`` (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _number(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return _e(f"{value:.4g}")
    return _e(value)


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows[:_TABLE_ROWS]:
        cells = "".join(f'<td class="n">{_number(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>" for i, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    more = f"<p>{len(rows) - _TABLE_ROWS} more rows in report.json</p>" if len(rows) > _TABLE_ROWS else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _figure(figures: Mapping[str, bytes], name: str, alt: str) -> str:
    if name not in figures:
        return ""
    encoded = base64.b64encode(figures[name]).decode("ascii")
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{encoded}"></p>'


def _splits(data: Mapping[str, Any]) -> str:
    rows = []
    for name, split in data["splits"].items():
        source = split["source"]
        where = source.get("path") or f"{source.get('dataset')} ({source.get('split')})"
        rows.append([name, source.get("kind"), where, split["listed"], split["read"], split["corrupt"], split["unreadable"],
                     split["images"], "yes" if split["counts_add_up"] else "NO"])
    return _table(["split", "kind", "source", "listed", "read", "corrupt", "unreadable", "images", "counts add up"],
                  rows, {3, 4, 5, 6, 7})


def _exact(data: Mapping[str, Any]) -> str:
    parts = []
    for kind, label in (("bytes", "encoded bytes"), ("pixels", "decoded pixels")):
        section = data["exact_duplicates"][kind]
        within = ", ".join(f"{_e(s)}: {n}" for s, n in section["duplicates_within"].items())
        across = section["test_in_train"]
        flag = "warn" if across else "ok"
        parts.append(f"<h3>Same {label}</h3><p>{section['groups']} groups; repeated samples within splits: {within}"
                     + (f'; <span class="{flag}">test samples found in train: {across}</span>' if across is not None else "")
                     + "</p>")
        rows = [[group["digest"][:16], "across" if group["across"] else "within",
                 "; ".join(f"{m['split']}:{m['key']}" for m in group["members"])] for group in section["listed"]]
        parts.append(_table(["digest", "where", "members"], rows))
    return "".join(parts)


def _pairs_table(summary: Mapping[str, Any], score: str) -> str:
    rows = [[p["query"], p["match"], p[score], "yes" if p["exact_pixels"] else "", p["query_label"], p["match_label"],
             "CONFLICT" if p["label_conflict"] else ""] for p in summary["listed"]]
    header = [f"{summary['query_split']} key", f"{summary['match_split']} key", score, "exact pixels",
              f"{summary['query_split']} label", f"{summary['match_split']} label", "labels"]
    share = summary["share_with_match"]
    head = (f"<p>{summary['pairs']} pairs; {summary['samples_with_match']} samples with a match"
            + (f" ({share:.2%} of {_e(summary['query_split'])}'s images)" if share is not None else "") + "</p>")
    return head + _table(header, rows, {2})


def _near(data: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    phash = data["near_duplicates"]["phash"]
    threshold = data["config"]["threshold"]
    parts = [f"<p>pHash (64-bit DCT), Hamming distance &le; {threshold}, multi-index hashing (exact search).</p>"]
    if phash["across"] is not None:
        parts.append(f"<h3>Across splits ({phash['across']['bands']} bands)</h3>" + _pairs_table(phash["across"], "distance"))
    for name, summary in (phash["within"] or {}).items():
        parts.append(f"<h3>Within {_e(name)}</h3>" + _pairs_table(summary, "distance"))
    embedding = data["near_duplicates"]["embedding"]
    if embedding is not None:
        parts.append(f"<h3>Embeddings ({_e(embedding['model'])}, weights {_e(embedding['weights'])}), cosine &ge; "
                     f"{_number(embedding['threshold'])}</h3>" + _pairs_table(embedding, "similarity"))
    parts.append(_figure(figures, "duplicate_pairs", "duplicate pairs side by side"))
    return "".join(parts)


def _labels(data: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    parts = [_figure(figures, "class_histogram", "samples per class")]
    for name, labels in data["labels"].items():
        single, multi = labels["single"], labels["multi"]
        if single is not None:
            parts.append(f"<h3>{_e(name)}: classes</h3><p>{single['labelled']} labelled, {single['unlabelled']} without a "
                         f"label; imbalance ratio (largest / smallest class) {_number(single['imbalance_ratio'])}; empty "
                         f"classes: {_e(', '.join(single['empty_classes']) or 'none')}</p>")
            parts.append(_table(["index", "class", "samples"],
                                [[c["index"], c["name"], c["count"]] for c in single["classes"]], {0, 2}))
        if multi is not None:
            parts.append(f"<h3>{_e(name)}: multi-label</h3><p>unlabelled share (NaN) {_number(multi['unlabelled_share'])}; "
                         f"samples without any label {multi['samples_without_any_label']}; imbalance ratio of positives "
                         f"{_number(multi['imbalance_ratio'])}</p>")
            parts.append(_table(["index", "label", "positive", "negative", "unlabelled", "other"],
                                [[c["index"], c["name"], c["positive"], c["negative"], c["unlabelled"], c["other"]]
                                 for c in multi["columns"]], {0, 2, 3, 4, 5}))
            parts.append(_figure(figures, f"cooccurrence_{name}", f"{name} label co-occurrence"))
        if single is None and multi is None:
            parts.append(f"<p>{_e(name)}: no labels</p>")
    return "".join(parts)


def _images(data: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    parts = [_figure(figures, "image_sizes", "image sizes and aspect ratios")]
    for name, stats in data["images"].items():
        ranges = [[axis, stats[axis]["min"], stats[axis]["median"], stats[axis]["max"]]
                  for axis in ("width", "height", "aspect") if stats[axis] is not None]
        parts.append(f"<h3>{_e(name)}</h3><p>{stats['images']} images, {stats['distinct_sizes']} distinct sizes; channels "
                     f"{_e(stats['channels'])}; bit depths {_e(stats['bit_depths'])}</p>")
        parts.append(_table(["", "min", "median", "max"], ranges, {1, 2, 3}))
        parts.append(_table(["width", "height", "images"],
                            [[s["width"], s["height"], s["count"]] for s in stats["top_sizes"]], {0, 1, 2}))
        parts.append(_figure(figures, f"thumbnails_{name}", f"{name} thumbnails per class"))
    return "".join(parts)


def _problems(data: Mapping[str, Any]) -> str:
    parts = []
    for name, corrupt in data["corrupt"].items():
        parts.append(f"<h3>{_e(name)}: {corrupt['count']} corrupt samples</h3>")
        parts.append(_table(["key", "shard", "reason"], [[c["key"], c["shard"], c["reason"]] for c in corrupt["listed"]]))
    for name, shards in data["shards"].items():
        if shards is None:
            continue
        parts.append(f"<h3>{_e(name)}: shards</h3>")
        parts.append(_table(["shard", "listed", "read", "corrupt", "unreadable", "skipped at build", "bytes", "error"],
                            [[s["shard"], s["listed"], s["read"], s["corrupt"], s["unreadable"], s["build_skipped"], s["bytes"],
                              s["error"]] for s in shards], {1, 2, 3, 4, 5, 6}))
    return "".join(parts)


def _interpolation(data: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    result = data["interpolation"]
    if result is None:
        return "<p>not run (it needs two splits and <code>hull_dims</code>)</p>"
    columns = zip(result["dims"], result["actual_dims"], result["rates"], result["inside"], result["decided_by"])
    rows = [[d, a, r, i, result["n_test"], ", ".join(f"{how} {n}" for how, n in k.items())] for d, a, r, i, k in columns]
    return (f"<p>Convex-hull membership (LP feasibility, HiGHS) of {result['n_test']} test images in the hull of "
            f"{result['n_train']} training images, reduced by <code>{_e(result['reduce'])}</code> "
            "(Balestriero, Pesenti and LeCun, 2021).</p>"
            + _table(["d asked", "d used", "in hull (share)", "in hull", "test", "decided by"], rows, {0, 1, 2, 3, 4})
            + _figure(figures, "interpolation", "proportion in interpolation vs dimensions"))


def render_html(data: Mapping[str, Any], figures: Mapping[str, bytes]) -> str:
    """The report page: one HTML document, figures embedded, every data string escaped."""
    sections = [
        ("Splits", _splits(data)),
        ("Exact duplicates", _exact(data)),
        ("Near duplicates", _near(data, figures)),
        ("Labels", _labels(data, figures)),
        ("Images", _images(data, figures)),
        ("Corrupt samples and shards", _problems(data)),
        ("Interpolation regime", _interpolation(data, figures)),
        ("Settings", f"<pre>{_e(json.dumps(data['config'], indent=1, sort_keys=True))}</pre>"),
    ]
    body = "".join(f"<h2>{_e(title)}</h2>{content}" for title, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>datafactory audit</title><style>{_CSS}</style></head><body>"
            f"<h1>datafactory audit</h1><p>datafactory {_e(data.get('datafactory'))}, report format {_e(data.get('format'))}</p>"
            f"{body}</body></html>\n")


def _write(folder: Path, name: str, payload: bytes) -> None:
    """Write ``folder/name`` through an exclusive temporary, then rename (see the module docstring)."""
    temporary = folder / f".{name}.{new_run_id()}.tmp"
    fd = create_temporary(temporary)
    try:
        try:
            write_all(fd, payload, folder / name)
        finally:
            os.close(fd)
        place(temporary, folder / name)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_report(out: str | os.PathLike, data: Mapping[str, Any], figures: Mapping[str, bytes]) -> Path:
    """Write ``report.json``, ``report.html`` and ``<figure>.png`` into ``out`` (created if needed).

    Raises:
        NotADirectoryError / FileExistsError: ``out`` is a file, or a report name there is not
            a regular file (a symlink, a folder...); nothing is written through it.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        raise NotADirectoryError(f"{str(folder)!r} is not a folder")
    for name, png in figures.items():
        _write(folder, f"{name}.png", png)
    text = json.dumps(json_ready(data), indent=1, sort_keys=True, allow_nan=False, ensure_ascii=False)
    _write(folder, "report.json", (text + "\n").encode("utf-8"))
    _write(folder, "report.html", render_html(data, figures).encode("utf-8"))
    return folder
