"""Run logs: ``metrics.jsonl`` (one JSON object per log or eval line), ``metrics.png``, progress bars.

Each line of ``metrics.jsonl`` has ``kind`` (``"train"`` or ``"eval"``), ``epoch`` and ``step``
plus the numbers. A resumed run first drops the lines logged after its checkpoint's step, so the
file ends as the uninterrupted run's would. The plot is drawn with matplotlib's Agg canvas
directly (no ``pyplot`` global state), one panel per metric over optimizer steps.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["MetricsLog", "plot_metrics", "progress_bar", "read_metrics"]


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a ``metrics.jsonl`` (an absent file has none; a torn last line is ignored)."""
    target = Path(path)
    if not target.exists():
        return []
    from loaders.fileio import read_regular

    rows = []
    lines = read_regular(target).decode("utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a run killed while writing its last line
                break
            raise ValueError(f"{str(target)!r} line {number} is not JSON") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


class MetricsLog:
    """Appends JSON lines to ``path`` (opened per line: a crash loses at most the line in flight)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Keep only the lines with ``step <= step`` (for a run resumed from that step)."""
        from pipelines.train.files import write_bytes_atomic

        if not self.path.exists():
            return
        kept = [row for row in read_metrics(self.path) if int(row.get("step", 0)) <= step]
        write_bytes_atomic(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept).encode("utf-8"))

    def append(self, row: Mapping[str, Any]) -> None:
        line = json.dumps(dict(row), sort_keys=True, allow_nan=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def rows(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)


_SKIP = {"kind", "epoch", "step", "time"}


def plot_metrics(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path | None:
    """Draw every numeric metric over steps into a PNG, one panel per metric: training lines,
    evaluation points, and an ``ema_`` metric on its raw counterpart's panel. ``None`` when
    there is nothing to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for row in rows:
        kind = str(row.get("kind", "train"))
        for key, value in row.items():
            if key in _SKIP or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            panel, label = (key[4:], f"{kind} ema") if key.startswith("ema_") else (key, kind)
            xs, ys = series.setdefault(panel, {}).setdefault(label, ([], []))
            xs.append(float(row.get("step", 0)))
            ys.append(float(value))
    if not series:
        return None
    names = sorted(series)
    columns = min(4, len(names))
    rows_n = -(-len(names) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows_n), dpi=72)
    FigureCanvasAgg(figure)
    # fixed margins: matplotlib's tight_layout measures every tick label and costs seconds
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.94, wspace=0.3, hspace=0.55)
    for i, name in enumerate(names):
        axes = figure.add_subplot(rows_n, columns, i + 1)
        for label, (xs, ys) in sorted(series[name].items()):
            axes.plot(xs, ys, marker="o" if label.startswith("eval") else None, markersize=3, label=label)
        axes.set_title(name, fontsize=9)
        axes.tick_params(labelsize=7)
        if len(series[name]) > 1:
            axes.legend(fontsize=6)
    import io

    from pipelines.train.files import write_bytes_atomic

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    target = write_bytes_atomic(path, buffer.getvalue())
    return target


def progress_bar(total: int, *, initial: int = 0, desc: str = "", enabled: bool = True) -> Any:
    """A tqdm bar (disabled when ``enabled`` is false, e.g. on ranks other than 0)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True, leave=False)
