"""Train the bundled StyleGAN2-style generator on the ``shapes`` demo domain and measure it.

For each setting (``quick``: the demo's ``GanTrainConfig.quick()``; ``default``: the dataclass
defaults) and seed, the generator is trained on ``shapes`` (train split, 1000 images, 32 px),
timed (wall and process CPU seconds), and compared with 500 held-out real images by
:func:`datafactory.gan.quality.gan_quality`: part-pixel fractions from the colour oracle, a
shape classifier's confidence and class-histogram entropy, and the Fréchet distance of its
features (with the real-vs-real floor), the spatial coherence of the oracle's part labels and the
high-frequency energy (which tell speckle from solid shapes). A first row gives the real images'
own numbers; an untrained generator (step 0 of the same network) is the other reference.

    python benchmarks/gan_quality.py                          # quick + default, seed 0, 1 thread
    python benchmarks/gan_quality.py --settings quick --threads 2 --seeds 0 1
    python benchmarks/gan_quality.py --steps default=1500     # override a setting's step count

Sample grids (``samples.png``) stay in ``--workdir`` next to each run; look at them. Nothing here
is a target: the numbers are what the runs give on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import torch  # noqa: E402

from datafactory.gan.gan_train import GanTrainConfig, train_gan  # noqa: E402
from datafactory.gan.quality import gan_quality, shapes_reference  # noqa: E402
from datafactory.gan.stylegan import BundledGenerator, StyleGAN2Generator  # noqa: E402

SETTINGS = {"quick": GanTrainConfig.quick, "default": GanTrainConfig}
COLUMNS = ("setting", "seed", "steps", "batch", "params_G", "wall_s", "cpu_s", "parts_l1", "coherence", "high_freq",
           "frechet", "confidence", "class_entropy", "parts (bg/body/outline/marking)")


def _row(name: str, seed: Any, steps: Any, batch: Any, params: Any, wall: Any, cpu: Any, q: dict[str, Any],
         real: bool = False) -> dict[str, Any]:
    suffix = "real" if real else "fake"
    return {"setting": name, "seed": seed, "steps": steps, "batch": batch, "params_G": params, "wall_s": wall,
            "cpu_s": cpu, "parts_l1": 0.0 if real else q["parts_l1"], "coherence": q[f"coherence_{suffix}"],
            "high_freq": q[f"high_freq_{suffix}"],
            "frechet": q["frechet_real_floor"] if real else q["frechet"],
            "confidence": q[f"confidence_{suffix}"], "class_entropy": q[f"class_entropy_{suffix}"],
            "parts (bg/body/outline/marking)": "/".join(f"{v:.3f}" for v in q[f"parts_{suffix}"])}


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", nargs="*", default=[], help="overrides like default=1500")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=500, help="generated images per evaluation")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    steps = {}
    for item in args.steps:
        name, _, value = item.partition("=")
        if name not in SETTINGS or not value.isdigit():
            parser.error(f"--steps: expected SETTING=INT with SETTING in {list(SETTINGS)}, got {item!r}")
        steps[name] = int(value)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gan-quality-") as scratch:
        workdir = args.workdir if args.workdir is not None else Path(scratch)
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} thread(s), workdir {workdir}",
              flush=True)
        t0 = time.perf_counter()
        reference = shapes_reference(32)
        print(f"reference: shape classifier accuracy on held-out real images {reference.classifier_accuracy:.3f} "
              f"(6 classes, chance 0.167), built in {time.perf_counter() - t0:.0f} s\n", flush=True)
        real_q: dict[str, Any] | None = None
        for name in args.settings:
            for seed in args.seeds:
                cfg = SETTINGS[name](seed=seed)
                if name in steps:
                    cfg = replace(cfg, steps=steps[name])
                torch.manual_seed(seed)
                untrained = StyleGAN2Generator(cfg.model)
                params = sum(p.numel() for p in untrained.parameters())
                if real_q is None:
                    real_q = gan_quality(BundledGenerator(untrained), reference, args.n, 10_000)
                    rows.append(_row("real (held out)", "", "", "", "", None, None, real_q, real=True))
                    rows.append(_row("untrained G", 0, 0, "", params, None, None, real_q))
                wall, cpu = time.perf_counter(), time.process_time()
                result = train_gan(cfg, "shapes", workdir / f"{name}_seed{seed}", progress=False, resume=False,
                                   device="cpu")
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                q = gan_quality(result.load(device="cpu"), reference, args.n, 10_000)
                rows.append(_row(name, seed, cfg.steps, cfg.batch_size, params, round(wall, 1), round(cpu, 1), q))
                print(json.dumps(rows[-1]), flush=True)
    print("\n| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
