"""Reproduce the interpolation-regime experiments of Balestriero, Pesenti and LeCun (2021, arXiv
2110.09485) with ``datafactory.audit`` (issue 15).

Figure 1 setting: training sets of N samples from N(0, I_d) -- and, since Theorem 1 is about it,
from the uniform density in the unit ball -- and new samples from the same density; Monte Carlo
estimate of p(x in Hull(X)) for a grid of N (powers of 2) and several d,
``--draws`` training sets per cell with ``--points`` new samples each. Compared with Theorem 1
(Barany and Furedi, 1988: for samples uniform in a ball, p -> 1 when N > 2^(d/2) / d and -> 0
when N < 2^(d/2) / d, as d grows): for each d, the N at which the estimate crosses 1/2 (log-linear
interpolation between grid points) next to 2^(d/2) / d, and the slope of log2 of that N against
d, which the theorem puts at 1/2 asymptotically.

Figure 3 setting on the ``shapes`` demo data: the proportion of the test split (200 images) in
the convex hull of the training split (1,000 images), keeping d dimensions by a central crop or
by smoothing-subsampling (:func:`datafactory.audit.interpolation_rate`).

Prints Markdown tables and writes ``figure1.png`` and ``figure3.png`` into ``--out``.

    python benchmarks/interpolation.py --out /tmp/interp            # ~10-20 minutes on 2 cores
    python benchmarks/interpolation.py --quick --out /tmp/interp    # a small grid, ~2 minutes
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import loaders  # noqa: E402
from datafactory.audit import hull_membership, interpolation_rate  # noqa: E402
from datafactory.audit.plots import figure_png, interpolation_figure  # noqa: E402


def sample(rng: np.random.Generator, density: str, count: int, d: int) -> np.ndarray:
    """``count`` samples of N(0, I_d) (``"gaussian"``) or uniform in the unit d-ball (``"ball"``)."""
    x = rng.normal(size=(count, d))
    if density == "gaussian":
        return x
    radius = rng.random(count) ** (1.0 / d)
    return x / np.linalg.norm(x, axis=1, keepdims=True) * radius[:, None]


def probability_grid(density: str, dims: list[int], sizes: list[int], draws: int, points: int, seed: int) -> dict[int, list[float]]:
    """p(x in hull) per (d, N): ``draws`` training sets of N samples, ``points`` new samples each."""
    rng = np.random.default_rng(seed)
    table = {}
    for d in dims:
        row = []
        saturated = False
        for n in sizes:
            if saturated:  # p is non-decreasing in N (a larger sample's hull contains a smaller one's)
                row.append(1.0)
                continue
            inside = 0
            for _ in range(draws):
                train, test = sample(rng, density, n, d), sample(rng, density, points, d)
                inside += int(hull_membership(train, test).inside.sum())
            row.append(inside / (draws * points))
            saturated = inside == draws * points and n >= 4 * d
        table[d] = row
        print(f"  d={d:>2}: " + " ".join(f"{p:.2f}" for p in row), flush=True)
    return table


def crossing(sizes: list[int], row: list[float], level: float = 0.5) -> float | None:
    """The N where p crosses ``level``, interpolated linearly in log2 N (None if it never does)."""
    for (n0, p0), (n1, p1) in zip(zip(sizes, row), zip(sizes[1:], row[1:])):
        if p0 < level <= p1:
            t = (level - p0) / (p1 - p0)
            return 2 ** (math.log2(n0) + t * (math.log2(n1) - math.log2(n0)))
    return None


def figure1(args: argparse.Namespace) -> None:
    sizes = [2**k for k in range(1, args.max_log2_n + 1)]
    tables = {}
    for density in ("gaussian", "ball"):
        name = "N(0, I_d)" if density == "gaussian" else "uniform in the unit ball"
        print(f"Figure 1: p(x in hull), {name}; {args.draws} x {args.points} samples per cell")
        began = time.perf_counter()
        table = tables[density] = probability_grid(density, args.dims, sizes, args.draws, args.points, seed=0)
        print(f"  ({time.perf_counter() - began:.0f} s)\n")
        print("| d | " + " | ".join(f"N=2^{int(math.log2(n))}" for n in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for d, row in table.items():
            print(f"| {d} | " + " | ".join(f"{p:.2f}" for p in row) + " |")
        print()
    print("| d | 2^(d/2)/d (Theorem 1) | N where p = 1/2, Gaussian | ratio | N where p = 1/2, ball | ratio |")
    print("|---|---|---|---|---|---|")
    crossings: dict[str, dict[int, float | None]] = {density: {} for density in tables}
    for d in args.dims:
        theory = 2 ** (d / 2) / d
        cells = []
        for density, table in tables.items():
            measured = crossings[density][d] = crossing(sizes, table[d])
            cells += ["beyond the grid", ""] if measured is None else [f"{measured:.1f}", f"{measured / theory:.1f}"]
        print(f"| {d} | {theory:.2f} | " + " | ".join(cells) + " |")
    for density, found in crossings.items():
        known = [(d, math.log2(n)) for d, n in found.items() if n is not None]
        if len(known) >= 2:
            slope = np.polyfit([d for d, _ in known], [v for _, v in known], 1)[0]
            print(f"\n{density}: slope of log2 N(p = 1/2) against d: {slope:.2f} (Theorem 1: 1/2 as d grows, uniform ball)")
    from datafactory.audit.plots import _context, _figure

    with _context():
        figure = _figure(11, 4, constrained=True)
        for axis, (density, table) in zip(figure.subplots(1, 2, sharey=True), tables.items()):
            for d, row in table.items():
                line, = axis.plot(sizes, row, marker="o", markersize=3, label=f"d={d}")
                axis.axvline(2 ** (d / 2) / d, color=line.get_color(), linestyle=":", linewidth=1)
            axis.set_xscale("log", base=2)
            axis.set_xlabel("training set size N")
            axis.set_title(("Gaussian N(0, I_d)" if density == "gaussian" else "uniform in the ball")
                           + "; dotted: 2^(d/2)/d")
            axis.legend(fontsize=7)
        figure.axes[0].set_ylabel("p(x in hull)")
    (args.out / "figure1.png").write_bytes(figure_png(figure))


def figure3(args: argparse.Namespace) -> None:
    train_ds = loaders.open_dataset("shapes", split="train", size=args.shapes_train, resolution=args.resolution)
    test_ds = loaders.open_dataset("shapes", split="test", size=args.shapes_test, resolution=args.resolution)
    began = time.perf_counter()
    train = torch.stack([train_ds.load(i)["image"] for i in range(len(train_ds))])
    test = torch.stack([test_ds.load(i)["image"] for i in range(len(test_ds))])
    print(f"Figure 3: shapes, {len(train)} train / {len(test)} test images at {args.resolution}x{args.resolution} "
          f"(rendered in {time.perf_counter() - began:.0f} s)")
    full = 3 * args.resolution**2
    crop_dims = [d for d in (2**k for k in range(0, 15)) if d <= full]
    resize_dims = [3 * s * s for s in (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64) if s <= args.resolution]
    results = []
    for reduce, dims in (("crop", crop_dims), ("resize", resize_dims)):
        began = time.perf_counter()
        result = interpolation_rate(train, test, dims=dims, reduce=reduce)
        totals = {how: sum(k[how] for k in result.decided_by) for how in result.decided_by[0]}
        print(f"  {reduce}: {time.perf_counter() - began:.0f} s; test images decided by {totals}")
        results.append({**result.to_dict(), "label": "central crop" if reduce == "crop" else "smoothing-subsampling"})
    for result in results:
        print(f"\n{result['label']}:\n\n| d | " + " | ".join(str(d) for d in result["actual_dims"]) + " |")
        print("|---|" + "---|" * len(result["actual_dims"]))
        print("| in hull | " + " | ".join(f"{r:.3f}" for r in result["rates"]) + " |")
    (args.out / "figure3.png").write_bytes(figure_png(interpolation_figure(results)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for figure1.png and figure3.png")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 4, 6, 8, 10, 12, 14, 16])
    parser.add_argument("--max-log2-n", type=int, default=13)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--points", type=int, default=25)
    parser.add_argument("--shapes-train", type=int, default=1000)
    parser.add_argument("--shapes-test", type=int, default=200)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="d in 2..8, N up to 2^10, 2x20 samples, 300/60 shapes at 32 px")
    parser.add_argument("--skip", choices=("figure1", "figure3"), help="run only the other experiment")
    args = parser.parse_args()
    if args.quick:
        args.dims, args.max_log2_n, args.draws, args.points = [2, 4, 6, 8], 10, 2, 20
        args.shapes_train, args.shapes_test, args.resolution = 300, 60, 32
    args.out.mkdir(parents=True, exist_ok=True)
    if args.skip != "figure1":
        figure1(args)
    if args.skip != "figure3":
        print()
        figure3(args)


if __name__ == "__main__":
    main()
