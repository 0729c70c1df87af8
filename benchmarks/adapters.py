"""Dataset adapter benchmarks: our figure and the reference figure side by side, and their ratio.

Each benchmark is a function returning rows ``(benchmark, ours, reference, ratio, target)``;
:func:`main` runs the selected ones and prints one table. Absolute times on a shared machine are
noise; the ratio measured in the same run is the result.

* ``imagenet-index``: building the ``imagenet`` train index (``open_dataset("imagenet", root,
  "train")`` indexes at construction: class-folder scan, labels, keys, key checks) over an
  ImageNet-shaped tree of empty files, against a bare ``os.scandir`` walk of the same tree that
  only collects the file paths. Target: ours <= 2x the walk. Default 100 classes x 1300 files
  (130k); ``--full`` uses the real 1000 classes x 1281 (1.28M entries, ~1.3M inodes on disk).

Run: ``python benchmarks/adapters.py [--only imagenet-index] [--full] [--classes N --per-class M]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Row = tuple[str, str, str, float, str]


def _best_of_interleaved(ours: Callable[[], object], reference: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best time of each over ``repeats`` alternating runs (both see the same machine load).

    Results are kept alive until the clock has stopped, so freeing them is not timed.
    """
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for slot, fn in enumerate((ours, reference)):
            gc.collect()
            start = time.perf_counter()
            result = fn()
            best[slot] = min(best[slot], time.perf_counter() - start)
            del result
    return best[0], best[1]


def make_imagenet_tree(root: Path, classes: int, per_class: int, seed: int = 0) -> int:
    """Create ``root/train/<wnid>/<wnid>_<n>.JPEG`` empty files (non-consecutive ``n``, like ImageNet)."""
    from loaders.imagenet import imagenet_wnids

    rng = random.Random(seed)
    wnids = imagenet_wnids()
    if not 1 <= classes <= len(wnids):
        raise ValueError(f"--classes must be in 1..{len(wnids)}, got {classes}")
    count = 0
    for wnid in wnids[:classes]:
        folder = root / "train" / wnid
        folder.mkdir(parents=True)
        for n in rng.sample(range(1, 40 * per_class), per_class):
            os.close(os.open(folder / f"{wnid}_{n}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))
            count += 1
    return count


def scandir_walk(top: str) -> list[str]:
    """The reference: a bare recursive ``os.scandir`` walk collecting every file path."""
    found: list[str] = []
    stack = [top]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(entry.path)
                else:
                    found.append(entry.path)
    return found


def bench_imagenet_index(classes: int = 100, per_class: int = 1300, repeats: int = 7, workdir: str | None = None) -> list[Row]:
    """Index-building time of the ``imagenet`` adapter vs a bare scandir walk of the same tree."""
    import loaders
    import loaders.imagenet  # noqa: F401  (registers the adapters)

    tmp = Path(tempfile.mkdtemp(prefix="df-bench-imagenet-", dir=workdir))
    try:
        start = time.perf_counter()
        files = make_imagenet_tree(tmp, classes, per_class)
        print(f"[imagenet-index] created {files:,} empty files in {time.perf_counter() - start:.1f}s under {tmp}", file=sys.stderr)
        train = str(tmp / "train")
        walked = scandir_walk(train)  # warm the dentry cache for both sides
        ours_len = len(loaders.open_dataset("imagenet", tmp, "train", decode=False))
        if not ours_len == len(walked) == files:
            raise RuntimeError(f"index has {ours_len} rows, the walk found {len(walked)}, {files} were created")
        ours, reference = _best_of_interleaved(
            lambda: loaders.open_dataset("imagenet", tmp, "train", decode=False), lambda: scandir_walk(train), repeats
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    label = f"imagenet train index, {files:,} files"
    return [(label, f"{ours:.3f}s", f"{reference:.3f}s (os.scandir walk)", ours / reference, "<= 2.0")]


def _bench_dicom(args: argparse.Namespace) -> list[Row]:
    from adapters_dicom import bench_dicom_decode  # benchmarks/ is the script's folder, so on sys.path

    return bench_dicom_decode(args.repeats, args.workdir, args.full)


BENCHMARKS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "imagenet-index": lambda a: bench_imagenet_index(
        1000 if a.full else a.classes, 1281 if a.full else a.per_class, a.repeats, a.workdir
    ),
    "dicom-decode": _bench_dicom,
}


def print_table(rows: list[Row]) -> None:
    header = ("benchmark", "ours", "reference", "ratio", "target")
    cells = [header] + [(b, o, r, f"{x:.2f}", t) for b, o, r, x, t in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only these benchmarks")
    parser.add_argument("--full", action="store_true", help="ImageNet at full size: 1000 classes x 1281 files")
    parser.add_argument("--classes", type=int, default=100, help="classes of the synthetic ImageNet tree")
    parser.add_argument("--per-class", type=int, default=1300, help="files per class of the synthetic tree")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (best is kept)")
    parser.add_argument("--workdir", default=None, help="where to create temporary trees (default: system temp)")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for name in args.only or list(BENCHMARKS):
        rows += BENCHMARKS[name](args)
    print_table(rows)


if __name__ == "__main__":
    main()
