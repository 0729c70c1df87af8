"""The bundled trainers' small-scale results, in one run: the tables of ``docs/train.md``.

Each trainer module has a ``small_scale_results(workdir, seed)`` that builds its (downloaded-free)
data, trains, evaluates and returns one row per setting with its sizes, steps and measured
metrics. This script calls them in turn and prints one markdown table per trainer, with the seed
and the wall time of each trainer, so the numbers in the docs are reproducible by anyone:

    python benchmarks/train_results.py                          # every trainer, seed 0
    python benchmarks/train_results.py --trainers segment vit --seeds 0 1
    python benchmarks/train_results.py --workdir /tmp/results --json results.json

What each trainer measures (nothing is tuned towards an outcome; the numbers are what they are):

* ``segment``: U-Net mIoU on ``shapes`` part masks, cross-entropy vs cross-entropy + Dice;
* ``vit``: ViT-tiny clean top-1 and top-1 on P-Shuffle / P-Rotate / P-Infill views, without
  negatives and with P-Shuffle negatives under each of the three losses of Qin et al. (2021);
* ``mae``: linear probe of the MAE-pre-trained encoder vs the same probe on a random encoder;
* ``cxr``: per-pathology AUC of a tiny DenseNet on a rendered NIH-layout set (a smoke test);
* ``vatt``: zero-shot retrieval on the synthetic audio-visual set, when that trainer is installed.

The data and the runs are kept in ``--workdir`` (a temporary folder by default); a rerun with the
same folder reuses the built shards. Intra-op threads are set with ``--threads`` (default 1, so
that timings on a shared machine are comparable); the wall times are printed, not targets.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# benchmarks/augment.py would shadow the augment package: keep this folder off the path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import torch  # noqa: E402

from pipelines.train.registry import TRAINERS  # noqa: E402

#: the trainers with a ``small_scale_results`` function, in the order of docs/train.md
RESULT_TRAINERS = ("segment", "vit", "mae", "cxr", "vatt")

#: columns that describe a row rather than measure it, printed first
_SETTING_COLUMNS = ("setting", "dataset", "image_size", "train_samples", "eval_samples", "epochs", "steps", "seed")
#: columns left out of the tables (kept in the JSON): the trainer name, the eval count repeated
_HIDDEN_COLUMNS = ("trainer", "samples")


def available_trainers() -> list[str]:
    """The trainers of :data:`RESULT_TRAINERS` that are registered in this installation."""
    return [name for name in RESULT_TRAINERS if name in TRAINERS]


def run_trainer(name: str, workdir: Path, seed: int) -> tuple[list[dict[str, Any]], float]:
    """``small_scale_results`` of trainer ``name`` and its wall time in seconds."""
    module = importlib.import_module(TRAINERS[name].split(":")[0])
    results = getattr(module, "small_scale_results", None)
    if results is None:
        raise KeyError(f"trainer {name!r} has no small_scale_results")
    started = time.perf_counter()
    rows = results(workdir / name, seed)
    return rows, time.perf_counter() - started


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value).replace("|", "/")


def markdown_table(rows: list[dict[str, Any]], max_columns: int = 18) -> str:
    """A markdown table over the union of the rows' keys: setting columns first, then the rest in
    first-seen order; per-class or per-pathology columns beyond ``max_columns`` are left out
    (they stay in the JSON output)."""
    columns: list[str] = [c for c in _SETTING_COLUMNS if any(c in row for row in rows)]
    for row in rows:
        for key in row:
            if key not in columns and key not in _HIDDEN_COLUMNS:
                columns.append(key)
    columns = columns[:max_columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainers", nargs="+", default=None,
                        help=f"which trainers (default: all registered of {', '.join(RESULT_TRAINERS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--workdir", type=Path, default=None, help="data and runs (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write every row to this JSON file")
    parser.add_argument("--tables-from", dest="tables_from", type=Path, default=None,
                        help="only print the tables of a JSON file written by --json (no training)")
    args = parser.parse_args(argv)
    if args.tables_from is not None:
        saved = json.loads(args.tables_from.read_text())
        for name, rows in saved.items():
            print(f"### {name}\n\n{markdown_table(rows)}\n")
        return saved
    known = available_trainers()
    names = known if args.trainers is None else args.trainers
    for name in names:
        if name not in known:
            parser.error(f"--trainers: {name!r} has no small-scale results here; choose from {', '.join(known)}")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="train-results-") as scratch:
        workdir = args.workdir if args.workdir is not None else Path(scratch)
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} intra-op thread(s), "
              f"seeds {args.seeds}, workdir {workdir}\n")
        results: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            rows: list[dict[str, Any]] = []
            seconds = 0.0
            for seed in args.seeds:
                seed_rows, took = run_trainer(name, workdir, seed)
                rows += seed_rows
                seconds += took
            results[name] = rows
            print(f"### {name} ({seconds:.0f} s)\n\n{markdown_table(rows)}\n", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
