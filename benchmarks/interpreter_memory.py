"""Benchmark: memory and time of the DatasetGAN interpreter, factorised vs the paper's definition.

DatasetGAN (Zhang et al., CVPR 2021, arXiv:2104.06490) classifies each pixel from the
concatenation of all generator feature maps upsampled to the output size. Evaluated literally
(:meth:`InterpreterEnsemble.naive_forward`) that builds an ``n x D x H x W`` tensor; the
factorised :meth:`InterpreterEnsemble.forward` applies the first layer per level at native
resolution and upsamples only its ``hidden[0]`` channels -- the same function.

Each measurement runs in a fresh child process (this script re-invoked with ``--child``) on one
thread: peak memory is the growth of the process's peak resident set (``ru_maxrss``) during the
first call, over its resident set just before (inputs and model already built), so allocator
caching of an earlier run cannot hide anything; time is the best of ``--repeats`` calls.
The feature levels are StyleGAN-like: two per resolution from 4 px up to the output size, with
``min(16384 / r, 512)`` channels at resolution ``r`` (4,864 channels at 128 px; 5,056 at 512 px).

The last table is arithmetic: what the official approach (all training pixels' features stored
at full resolution) needs for K = 16 annotated 512 px images, against this implementation.

Usage::

    python benchmarks/interpreter_memory.py                      # 4 images, 128 px, 10 members
    python benchmarks/interpreter_memory.py --members 2 --resolution 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def style_levels(resolution: int) -> list[tuple[int, int]]:
    """(channels, size) of the feature levels: two per resolution 4, 8, ..., ``resolution``."""
    levels = []
    r = 4
    while r <= resolution:
        levels += [(min(16384 // r, 512), r)] * 2
        r *= 2
    return levels


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def child(args: argparse.Namespace) -> dict:
    from datafactory.gan.interpreter import InterpreterConfig, InterpreterEnsemble, fit_interpreter

    torch.set_num_threads(1)
    levels = style_levels(args.resolution)
    size = (args.resolution, args.resolution)
    g = torch.Generator().manual_seed(0)
    features = [torch.randn(args.images, c, r, r, generator=g) for c, r in levels]
    cfg = InterpreterConfig(num_classes=args.classes, ensemble_size=args.members)
    result: dict = {"dim": sum(c for c, _ in levels)}
    if args.child in ("naive", "factorised"):
        ensemble = InterpreterEnsemble([c for c, _ in levels], cfg).eval()
        run = ensemble.naive_forward if args.child == "naive" else ensemble.forward
        times = []
        with torch.no_grad():
            for i in range(args.repeats):
                before = _rss_bytes()
                start = time.perf_counter()
                run(features, size)
                times.append(time.perf_counter() - start)
                if i == 0:
                    result["peak"] = _peak_bytes() - before
        result["seconds"] = min(times)
    else:  # training: pixel-gather path on the native features of the images
        images = [[f[k:k + 1] for f in features] for k in range(args.images)]
        masks = torch.randint(0, args.classes, (args.images, *size), generator=g)
        steps = 100
        train_cfg = InterpreterConfig(num_classes=args.classes, ensemble_size=1, max_epochs=1, val_fraction=0.01,
                                      pixels_per_epoch=steps * cfg.batch_pixels)
        # warm-up on a tiny problem: the first optimiser step imports modules (seconds, ~100 MB)
        fit_interpreter([[f[:1, :, :2, :2] for f in features[:2]]] * 2, masks[:2, :4, :4] % 2,
                        InterpreterConfig(num_classes=2, ensemble_size=1, max_epochs=1, val_fraction=0))
        before = _rss_bytes()
        start = time.perf_counter()
        fit_interpreter(images, masks, train_cfg)
        result["seconds"] = (time.perf_counter() - start) / steps  # per step, incl. the bank and validation
        result["peak"] = _peak_bytes() - before
        result["bank"] = sum(f.numel() for f in features) * 4
    return result


def measure(kind: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, "--images", str(args.images),
               "--resolution", str(args.resolution), "--members", str(args.members), "--classes", str(args.classes),
               "--repeats", str(args.repeats)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gb(n: float) -> str:
    return f"{n / 1e9:8.2f} GB" if n >= 1e8 else f"{n / 1e6:8.1f} MB"


def paper_scale_table(k: int = 16, resolution: int = 512, classes: int = 34, members: int = 10) -> None:
    levels = style_levels(resolution)
    dim = sum(c for c, _ in levels)
    native = sum(c * r * r for c, r in levels)  # values per image at native resolution
    pixels = resolution * resolution
    hidden = 256 if classes >= 32 else 128
    print(f"\nArithmetic: K={k} annotated images at {resolution} px, D={dim} channels, {classes} classes, "
          f"{members} members (float32 = 4 B)")
    rows = [
        ("official: all training pixel features (K*H*W*D)", k * pixels * dim * 4),
        ("  + its float16 copy", k * pixels * dim * 2),
        ("ours, training: native feature maps of K images", k * native * 4),
        ("  same, stored as float16", k * native * 2),
        ("ours, per training step (64 px x D)", 64 * dim * 4),
        ("official: one generated image's D*H*W tensor", pixels * dim * 4),
        (f"ours: one image, one member's first layer ({hidden}*H*W)", hidden * pixels * 4),
        ("ours: one image's logits, all members (E*C*H*W)", members * classes * pixels * 4),
    ]
    for name, size in rows:
        print(f"  {name:<62} {gb(size)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=["naive", "factorised", "train"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = {kind: measure(kind, args) for kind in ("factorised", "naive", "train")}
    dim = rows["naive"]["dim"]
    print(f"{args.images} images at {args.resolution} px, D={dim} channels in {len(style_levels(args.resolution))} "
          f"levels, {args.members} members, {args.classes} classes, one thread")
    print(f"  {'forward':<40} {'peak memory':>12} {'seconds':>9}")
    for kind in ("naive", "factorised"):
        print(f"  {kind:<40} {gb(rows[kind]['peak']):>12} {rows[kind]['seconds']:9.2f}")
    print(f"  {'ratio naive / factorised':<40} {rows['naive']['peak'] / max(rows['factorised']['peak'], 1):11.1f}x "
          f"{rows['naive']['seconds'] / rows['factorised']['seconds']:8.1f}x")
    concat = args.images * args.resolution ** 2 * dim * 4
    print(f"  (the concatenated tensor alone: {gb(concat).strip()})")
    train = rows["train"]
    print(f"  training, pixel gather: peak {gb(train['peak']).strip()} (native features {gb(train['bank']).strip()}), "
          f"{train['seconds'] * 1e3:.1f} ms per 64-pixel step; the official layout would store {gb(concat).strip()}")
    paper_scale_table()


if __name__ == "__main__":
    main()
