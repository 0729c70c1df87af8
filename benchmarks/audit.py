"""Audit speed (issue 15): near-duplicate search with the multi-index pHash table versus all-pairs
brute force, and convex-hull LPs per second.

Near duplicates. A train split of ``--train`` images (100,000) and a test split of ``--test``
(10,000) photo-like 64 x 64 images -- 1/f luminance and chroma fields, the spectrum of natural
photographs -- are hashed with the audit's pHash. ``--planted`` of the test images (1,000) are
replaced by edited copies of random train images, a quarter each: JPEG re-encoding (quality 75),
a 1-pixel crop on every side, a 0.75x resize, a 1.2x brightness change; they are hashed through
the same code as an audit (decode, grey thumbnail, DCT). Then, on the same hashes and for each
threshold: :class:`datafactory.audit.MultiIndexHash` (build + search) versus
:func:`datafactory.audit.brute_force_pairs` (every XOR + popcount, chunked numpy: the peer
method). Both are exact, so they must return identical pairs -- checked -- and so the same recall
of the planted pairs, which is printed per edit. Each time is the best of ``--repeats`` runs,
the two methods taking turns; "others" is the CPU that other processes used meanwhile (cores,
from ``/proc/stat``): compare runs where it is near 0. Target: >= 10x at equal recall.

Hull. LPs per second for ``d = 64``, ``N = 1,000`` Gaussian training vectors: ``linprog``
(HiGHS) alone on points outside the hull (the paper's regime: at d = 64 every test point is
outside) and on points inside (convex combinations), then the audit's ``hull_membership`` with
its exact shortcuts on the outside points.

    python benchmarks/audit.py                          # ~2-4 minutes on 2 cores
    python benchmarks/audit.py --train 20000 --test 2000 --planted 200 --thresholds 10
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datafactory.audit import MultiIndexHash, brute_force_pairs, hull_membership  # noqa: E402
from datafactory.audit.hashing import grey_thumbnail, hamming, phash, phash_from_grey  # noqa: E402
from loaders import decode  # noqa: E402

SIDE = 64


def machine_cpu() -> float:
    """CPU seconds the whole machine has used (all processes), from ``/proc/stat``."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return float("nan")
    return (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / os.sysconf("SC_CLK_TCK")


def photos(rng: np.random.Generator, count: int) -> np.ndarray:
    """``[count, 64, 64, 3]`` uint8 photo-like images (1/f luminance, smoother chroma), in one batch."""
    from scipy.fft import irfft2

    fy, fx = np.fft.fftfreq(SIDE)[:, None], np.fft.rfftfreq(SIDE)[None, :]
    f = np.hypot(fx, fy).astype(np.float32)
    f[0, 0] = 1.0

    def field(alpha: float) -> np.ndarray:
        shape = (count, *f.shape)
        spectrum = (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32))
        spectrum *= f ** -alpha
        spectrum[:, 0, 0] = 0
        out = irfft2(spectrum, s=(SIDE, SIDE), workers=-1)
        return out / out.std(axis=(1, 2), keepdims=True)

    lum = field(1.0) * rng.uniform(30, 50, (count, 1, 1)).astype(np.float32)
    chroma_a, chroma_b = field(1.6) * 12, field(1.6) * 12
    base = lum + rng.uniform(90, 150, (count, 1, 1)).astype(np.float32)
    rgb = np.stack([base + chroma_a, base - 0.5 * (chroma_a + chroma_b), base + chroma_b], axis=3)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def hashes_of(images: np.ndarray) -> np.ndarray:
    """pHashes of a batch: luma, 2x2 area average (what grey_thumbnail does to 64x64), batched DCT."""
    luma = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    grey = luma.reshape(len(images), 32, 2, 32, 2).mean(axis=(2, 4))
    return phash_from_grey(grey)


def _encode(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


EDITS = {
    "jpeg q75": lambda a: _encode(a, "JPEG", quality=75),
    "crop 1px": lambda a: _encode(a[1:-1, 1:-1]),
    "resize 0.75": lambda a: _encode(np.array(Image.fromarray(a).resize((48, 48), Image.BICUBIC))),
    "brightness 1.2": lambda a: _encode(np.clip(a.astype(np.float64) * 1.2, 0, 255).astype(np.uint8)),
}


def planted_hash(array: np.ndarray, edit: str) -> int:
    """Edit, encode with PIL, decode with the toolkit's codec, hash: what an audit does."""
    data = EDITS[edit](array)
    return phash(decode("jpg" if data[:2] == b"\xff\xd8" else "png", data))


def best_of(methods: dict, repeats: int) -> dict:
    results: dict = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            start, machine, cpu = time.perf_counter(), machine_cpu(), time.process_time()
            value = fn()
            wall = time.perf_counter() - start
            others = max(0.0, (machine_cpu() - machine) - (time.process_time() - cpu)) / wall
            results[name].append((wall, others, value))
    return {name: min(values, key=lambda v: v[0]) for name, values in results.items()}


def near_duplicates(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    train_hashes, test_hashes, train_images = [], [], {}
    planted_sources = np.sort(rng.choice(args.train, args.planted, replace=False))
    for start in range(0, args.train, 5000):
        batch = photos(rng, min(5000, args.train - start))
        train_hashes.append(hashes_of(batch))
        for i in planted_sources[(planted_sources >= start) & (planted_sources < start + len(batch))]:
            train_images[int(i)] = batch[i - start]
    train = np.concatenate(train_hashes)
    check = int(train[int(planted_sources[0])])
    assert check == phash(torch.from_numpy(train_images[int(planted_sources[0])]).permute(2, 0, 1)), "batched hash differs"
    test = np.concatenate([hashes_of(photos(rng, min(5000, args.test - s))) for s in range(0, args.test, 5000)])
    slots = rng.choice(args.test, args.planted, replace=False)
    edits = list(EDITS)
    planted = {}  # test position -> (train position, edit)
    for number, (slot, source) in enumerate(zip(slots, rng.permutation(planted_sources))):
        edit = edits[number % len(edits)]
        test[slot] = planted_hash(train_images[int(source)], edit)
        planted[int(slot)] = (int(source), edit)
    print(f"hashes: {args.train} train + {args.test} test images (64x64, photo-like), {args.planted} planted edited "
          f"copies, made in {time.perf_counter() - began:.0f} s")
    distances = {edit: [int(hamming(test[s], train[t])) for s, (t, e) in planted.items() if e == edit] for edit in edits}
    print("pHash distance of the planted copies to their originals: "
          + "; ".join(f"{e}: median {np.median(d):.0f}, max {max(d)}" for e, d in distances.items()))
    print(f"\n{'threshold':>9} {'bands':>5} {'MIH s':>8} {'brute s':>8} {'speed-up':>8} {'pairs':>7} "
          f"{'recall (all)':>12}  recall per edit                                  others")
    for threshold in args.thresholds:
        table: list = []

        def mih():
            index = MultiIndexHash(train, threshold)
            table[:] = [index]
            return index.search(test)

        timings = best_of({"mih": mih, "brute": lambda: brute_force_pairs(test, train, threshold)}, args.repeats)
        (mih_wall, mih_others, found), (brute_wall, brute_others, reference) = timings["mih"], timings["brute"]
        assert found.as_set() == reference.as_set(), "the index and brute force disagree"
        pairs = found.as_set()
        hits = {edit: np.mean([(s, t) in pairs for s, (t, e) in planted.items() if e == edit]) for edit in edits}
        recall = np.mean([(s, t) in pairs for s, (t, _) in planted.items()])
        per_edit = ", ".join(f"{e} {v:.3f}" for e, v in hits.items())
        print(f"{threshold:>9} {table[0].bands:>5} {mih_wall:>8.3f} {brute_wall:>8.3f} {brute_wall / mih_wall:>7.1f}x "
              f"{len(found):>7} {recall:>12.3f}  {per_edit}  {mih_others:.1f}/{brute_others:.1f}")


def hull(args: argparse.Namespace) -> None:
    from scipy.optimize import linprog

    rng = np.random.default_rng(1)
    d, n = 64, 1000
    train = rng.normal(size=(n, d))
    outside = rng.normal(size=(args.lps, d))
    inside = rng.dirichlet(np.ones(n) * 0.05, size=args.lps) @ train
    a_eq = np.vstack([train.T, np.ones((1, n))])

    def lps(points):
        statuses = []
        for x in points:
            statuses.append(linprog(np.zeros(n), A_eq=a_eq, b_eq=np.append(x, 1.0), bounds=(0, None), method="highs").status)
        return statuses

    print(f"\nconvex hull, d = {d}, N = {n} Gaussian training vectors, {args.lps} test points each:")
    timings = best_of({
        "linprog, outside points": lambda: lps(outside),
        "linprog, inside points": lambda: lps(inside),
        "hull_membership LP only (shortcuts=False), outside": lambda: hull_membership(train, outside, shortcuts=False),
        "hull_membership with shortcuts, outside": lambda: hull_membership(train, outside),
        "hull_membership with shortcuts, inside": lambda: hull_membership(train, inside),
    }, args.repeats)
    for name, (wall, others, value) in timings.items():
        detail = f"statuses {sorted(set(value))}" if isinstance(value, list) else f"inside {int(value.inside.sum())}, {value.decided_by}"
        print(f"  {name:<52} {args.lps / wall:8.1f} per s   ({detail}; others {others:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=100_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--planted", type=int, default=1000)
    parser.add_argument("--thresholds", type=int, nargs="+", default=[6, 8, 10, 12])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lps", type=int, default=20, help="test points per hull timing")
    parser.add_argument("--skip-hull", action="store_true")
    parser.add_argument("--skip-near", action="store_true")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    if not args.skip_near:
        near_duplicates(args)
    if not args.skip_hull:
        hull(args)


if __name__ == "__main__":
    main()
