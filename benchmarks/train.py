"""Training-core throughput: does the loader starve training, and what do 2 DDP processes give?

1. **Loader starvation** (target: >= 0.9). Training steps of the ``vit`` trainer (a small
   torchvision ViT; the ``segment`` U-Net when the ``vit`` module is unavailable) fed by the
   trainer's own shard loader (decode, random crop and flip in ``--workers`` worker processes),
   versus the same steps fed from batches already in memory (decoded and transformed once,
   then cycled). Same model, batch, optimizer and CPU budget: the process tree is pinned to the
   same cores in both runs. Ratio = images/s from shards / images/s from memory.
2. **DDP**. 2 processes on 2 CPU cores (``torchrun``, gloo, one intra-op thread each, each rank
   ``batch // 2`` samples) versus 1 process with 2 threads (and with 1) on the same global batch:
   optimizer steps per second of each, and the ratio (a report: no target). On a busy machine,
   2 intra-op threads can be far slower than 1 (OpenMP threads wait on each other).

3. **VATT** (``--part vatt``). (a) DropToken: a full training step (forward, NCE + MIL-NCE,
   backward, AdamW) of the ``vatt`` trainer's model at DropToken 0 / 50 / 75% on the same batch
   of random clips (16 frames of 64 px in 2x8x8 voxels = 512 video tokens, 1 s of 16 kHz audio in
   128-sample segments = 120 audio tokens, 4 captions of 16 words; width 192, 4 blocks), the
   rates timed in turn, best of ``--vatt-steps`` rounds; ratios 50% / 0% (target <= 0.6; VATT's
   FLOPs ratio is 375 / 785 = 0.48) and 75% / 0%. (b) Clip loading: clips/s through the trainer's
   own shard loader (H.264 + FLAC decoding and the clip transform, ``--workers`` processes) on
   ``avshapes`` clips of the same size, against the clips/s the trainer consumes at DropToken 50%
   on the same batch size; ratio >= 1 means loading keeps up (a report: no target).

Shards are rendered from the embedded ``shapes`` and ``avshapes`` datasets (no downloads) into a
temporary folder.

    python benchmarks/train.py                    # every part, about 4-6 minutes on 2 cores
    python benchmarks/train.py --part loader --workers 1 --steps 30 --image-size 64
    python benchmarks/train.py --part vatt --vatt-batch 8 --vatt-steps 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines import build_shards  # noqa: E402
from pipelines.train import get_task, load_config, move_to  # noqa: E402
from pipelines.train.optim import build_optimizer  # noqa: E402


def pick_task(name: str) -> Any:
    """The named trainer; ``vit`` falls back to ``segment`` when its module cannot be imported."""
    try:
        return get_task(name)
    except ImportError as error:
        if name != "vit":
            raise
        print(f"vit trainer unavailable ({error}); measuring the segment trainer instead")
        return get_task("segment")


def task_overrides(task: Any, shards: Path, batch: int, image_size: int, workers: int) -> list[str]:
    common = [f"shards={shards}", f"batch_size={batch}", f"num_workers={workers}", "progress=false", "device=cpu"]
    if task.name == "vit":
        return common + [f"image_size={image_size}", "num_classes=6", "patch_size=8", "depth=4", "hidden_dim=128",
                         "num_heads=4", "mlp_dim=256"]
    return common + [f"image_size={image_size}", "base_channels=16", "depth=3"]


def make_shards(folder: Path, count: int, image_size: int) -> Path:
    out = folder / f"shapes-{count}-{image_size}"
    if not (out / "index.json").exists():
        build_shards("shapes", out, split="train", options={"size": count, "resolution": image_size}, max_count=256,
                     workers=2)
    return out


def timed_steps(task: Any, cfg: Any, batches: Any, steps: int, warmup: int = 3) -> float:
    """Seconds for ``steps`` optimizer steps over ``batches`` after ``warmup`` untimed ones."""
    torch.manual_seed(0)
    model = task.build_model(cfg)
    model.train()
    optimizer = build_optimizer(model, cfg)
    iterator = iter(batches)
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        batch = move_to(next(iterator), "cpu")
        loss, _ = task.training_step(model, batch, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


class Epochs:
    """Batches of the trainer's loader over as many epochs as needed."""

    def __init__(self, task: Any, cfg: Any) -> None:
        self.task, self.cfg = task, cfg

    def __iter__(self):
        for epoch in itertools.count():
            yield from self.task.train_loader(self.cfg, rank=0, world_size=1, epoch=epoch)


def loader_part(args: argparse.Namespace, data: Path) -> None:
    task = pick_task(args.task)
    shards = make_shards(data, args.count, args.image_size)
    cfg = load_config(task.config_class, overrides=task_overrides(task, shards, args.batch, args.image_size, args.workers))
    in_memory = list(itertools.islice(Epochs(task, load_config(task.config_class, overrides=task_overrides(
        task, shards, args.batch, args.image_size, 0))), 8))
    print(f"\n== loader starvation: {task.name}, batch {args.batch}, {args.image_size} px, {args.workers} loader "
          f"workers, {torch.get_num_threads()} intra-op threads, cores {sorted(os.sched_getaffinity(0))}")
    rows = []
    for repeat in range(args.repeats):  # alternate, best of each
        memory = timed_steps(task, cfg, itertools.cycle(in_memory), args.steps)
        shards_s = timed_steps(task, cfg, Epochs(task, cfg), args.steps)
        rows.append((memory, shards_s))
        print(f"  repeat {repeat}: memory {args.steps * args.batch / memory:8.1f} img/s   "
              f"shards {args.steps * args.batch / shards_s:8.1f} img/s")
    memory, shards_s = min(r[0] for r in rows), min(r[1] for r in rows)
    paired = sorted(m / s for m, s in rows)
    print(f"  best: from memory {args.steps * args.batch / memory:.1f} img/s, from shards "
          f"{args.steps * args.batch / shards_s:.1f} img/s, ratio {memory / shards_s:.3f}; median of the paired "
          f"ratios {paired[len(paired) // 2]:.3f} (target >= 0.9); load average now {os.getloadavg()[0]:.2f}")


def ddp_worker(args: argparse.Namespace) -> None:
    """One process of the DDP part (under torchrun) or the 1-process reference: prints JSON."""
    from pipelines.train import dist

    ctx = dist.setup("cpu")
    try:
        task = pick_task(args.task)
        cfg = load_config(task.config_class, overrides=task_overrides(task, Path(args.shards), args.batch,
                                                                      args.image_size, 0))
        batches = list(itertools.islice(iter_rank(task, cfg, ctx), 4))
        torch.manual_seed(0)
        model = task.build_model(cfg)
        optimizer = build_optimizer(model, cfg)
        wrapped = model
        if ctx.world_size > 1:
            wrapped = torch.nn.parallel.DistributedDataParallel(model)
        for step in range(args.steps + 3):
            if step == 3:
                dist.barrier()
                start = time.perf_counter()
            loss, _ = task.training_step(wrapped, batches[step % len(batches)], cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        dist.barrier()
        seconds = time.perf_counter() - start
        if ctx.rank == 0:
            print(json.dumps({"world": ctx.world_size, "threads": torch.get_num_threads(), "seconds": seconds,
                              "steps": args.steps, "task": task.name}))
    finally:
        dist.teardown(ctx)


def iter_rank(task: Any, cfg: Any, ctx: Any):
    for epoch in itertools.count():
        yield from task.train_loader(cfg, rank=ctx.rank, world_size=ctx.world_size, epoch=epoch)


def ddp_part(args: argparse.Namespace, data: Path) -> None:
    shards = make_shards(data, args.count, args.image_size)
    script = [str(Path(__file__).resolve()), "--ddp-worker", "--shards", str(shards), "--task", args.task,
              "--batch", str(args.batch), "--image-size", str(args.image_size), "--steps", str(args.steps)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = {}
    for label, command, threads in (
            ("1 process, 1 thread", [sys.executable, *script], "1"),
            ("1 process, 2 threads", [sys.executable, *script], "2"),
            ("2 processes, 1 thread each", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                            "--nproc_per_node", "2", *script], "1")):
        done = subprocess.run(command, env={**env, "OMP_NUM_THREADS": threads}, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{label} failed:\n{done.stderr[-2000:]}")
            return
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        results[label] = json.loads(lines[-1])
    print(f"\n== DDP on the CPU: {results[label]['task']}, global batch {args.batch}, {args.steps} steps, gloo")
    rates = {}
    for label, row in results.items():
        rates[label] = row["steps"] / row["seconds"]
        print(f"  {label:28s} {rates[label]:7.2f} steps/s ({row['threads']} intra-op threads per process)")
    one_thread, one, two = rates.values()
    print(f"  ratio 2 processes / 1 process with 2 threads: {two / one:.3f} (with 1 thread: {two / one_thread:.3f})")


#: the VATT part's model and clips (see the module docstring)
VATT_SIZES = ["num_frames=16", "frame_size=64", "patch_frames=2", "patch_size=8", "audio_samples=15360",
              "audio_segment=128", "vocab_size=16384", "max_words=16", "bag_size=4", "hidden_dim=192", "depth=4",
              "num_heads=3", "mlp_dim=768", "va_dim=512", "vt_dim=256", "sample_rate=16000"]


def vatt_part(args: argparse.Namespace, data: Path) -> None:
    from pipelines.train.vatt import VattConfig, avshapes_shards, droptoken_step_times

    cfg = load_config(VattConfig, overrides=[*VATT_SIZES, f"batch_size={args.vatt_batch}", "device=cpu"])
    print(f"\n== VATT DropToken: batch {cfg.batch_size}, {torch.get_num_threads()} intra-op threads, best of "
          f"{args.vatt_steps} rounds per rate")
    times = droptoken_step_times(cfg, (0.0, 0.5, 0.75), steps=args.vatt_steps)
    for rate, row in times.items():
        print(f"  drop {rate:4.0%}: {row['seconds']:7.3f} s/step, the encoders see {row['video_tokens']:.0f} video and "
              f"{row['audio_tokens']:.0f} audio tokens (aggregation token included)")
    full = times[0.0]["seconds"]
    print(f"  ratio 50% / 0%: {times[0.5]['seconds'] / full:.3f} (target <= 0.6; VATT's FLOPs ratio 0.48), "
          f"75% / 0%: {times[0.75]['seconds'] / full:.3f}; load average now {os.getloadavg()[0]:.2f}")

    count = max(args.vatt_clips, 4 * cfg.batch_size)
    train, _ = avshapes_shards(data, seed=0, train_size=count, val_size=1,
                               options={"resolution": 64, "num_frames": 16, "fps": 8.0, "sample_rate": 16000})
    loading = load_config(VattConfig, overrides=[*VATT_SIZES, f"shards={train}", f"batch_size={cfg.batch_size}",
                                                 f"num_workers={args.workers}", "progress=false"])
    from pipelines.train.vatt import TASK

    clips, start = 0, None
    for batch in TASK.train_loader(loading, rank=0, world_size=1, epoch=0):
        if start is None:  # from the first batch on: worker start-up is not the steady rate
            start = time.perf_counter()
            continue
        clips += len(batch["query"])
    loaded = clips / (time.perf_counter() - start)
    consumed = cfg.batch_size / times[0.5]["seconds"]
    print(f"\n== VATT clip loading: {clips} avshapes clips (16 frames of 64 px H.264, 2 s of 16 kHz FLAC) through the "
          f"trainer's loader with {args.workers} worker(s)")
    print(f"  loader {loaded:.1f} clips/s, trainer at DropToken 50% {consumed:.1f} clips/s: ratio {loaded / consumed:.2f} "
          f"(>= 1: loading keeps up); load average now {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "loader", "ddp", "vatt"), default="all")
    parser.add_argument("--task", default="vit", help="trainer to measure (vit falls back to segment)")
    parser.add_argument("--count", type=int, default=512, help="shapes samples in the shards")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="loader worker processes (starvation part)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of the training process (0 = torch's default)")
    parser.add_argument("--data", help="folder for the shards (default: a temporary one)")
    parser.add_argument("--vatt-batch", type=int, default=8, help="clips per step (VATT part)")
    parser.add_argument("--vatt-steps", type=int, default=5, help="timed rounds per DropToken rate (VATT part)")
    parser.add_argument("--vatt-clips", type=int, default=128, help="avshapes clips loaded (VATT part)")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_worker:
        ddp_worker(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (compare runs where it is low)")
    with tempfile.TemporaryDirectory() as temporary:
        data = Path(args.data or temporary)
        data.mkdir(parents=True, exist_ok=True)
        if args.part in ("all", "loader"):
            loader_part(args, data)
        if args.part in ("all", "ddp"):
            ddp_part(args, data)
        if args.part in ("all", "vatt"):
            vatt_part(args, data)


if __name__ == "__main__":
    main()
