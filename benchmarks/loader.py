"""Streaming loader throughput versus torchvision ``ImageFolder`` and a bare decode loop (issue 3).

Pipeline everywhere: decode JPEG -> RandomResizedCrop(224) -> RandomHorizontalFlip -> batch 64.

* ``make_loader`` over shards built (copy mode) from the same JPEGs;
* torchvision ``ImageFolder`` + ``DataLoader`` (PIL decode, same v2 transforms), same workers;
  both as a fresh loader per epoch ("cold": worker start-up in every epoch) and as one loader
  with ``persistent_workers=True`` ("warm": the workers live across epochs, as in timm's loader);
* a bare loop: read file -> ``torchvision.io.decode_jpeg`` -> same transforms, one process,
  compared with ``make_loader(num_workers=0)`` (the per-worker figure).

Targets: >= 1.3x ImageFolder with the same workers; >= 80% of the bare loop per worker.

Input: ImageNet-like JPEGs (ImageNet's usual shapes such as 500x375, quality 92, ~100 kB; see
``benchmarks/shards.py:make_photos``); ``--kind thumbs --size 320`` gives the older square
inputs. Methods take turns; each figure is the best of ``--repeats`` epochs, printed with the
CPU milliseconds per image of that epoch (main process and workers) and the cores that other
processes kept busy meanwhile ("others", from ``/proc/stat``; compare runs where it is ~0).

    python benchmarks/loader.py                       # 2,000 photos, 2 workers (about 2 minutes)
    python benchmarks/loader.py --count 5000 --workers 4 --data /tmp/photos
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets as tv_datasets
from torchvision.io import decode_jpeg
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipelines import build_shards  # noqa: E402
from pipelines.loader import FieldTransform, make_loader  # noqa: E402
from shards import machine_cpu, make_images, make_photos  # noqa: E402  (benchmarks/shards.py)

BATCH = 64


def crop_flip() -> v2.Compose:
    return v2.Compose([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip()])


class PilToTensorCropFlip:
    """ImageFolder side: PIL image -> uint8 tensor -> the same crop and flip."""

    def __init__(self) -> None:
        self.ops = v2.Compose([v2.PILToTensor(), crop_flip()])

    def __call__(self, image):
        return self.ops(image)


def live_children_cpu() -> float:
    """CPU seconds of this process's running children (persistent workers never exit)."""
    total, me = 0, os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == me:  # ppid; utime and stime follow 11 fields later
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU time of this process and of its children, finished (DataLoader workers are joined at
    the end of a cold epoch) or running (persistent workers); it moves less with machine load
    than wall time."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + live_children_cpu()


def epoch_seconds(loader) -> tuple[float, int]:
    start = time.perf_counter()
    seen = 0
    iterator = iter(loader)
    for batch in iterator:
        images = batch["image"] if isinstance(batch, dict) else batch[0]
        seen += images.shape[0]
    del iterator  # joins the workers, so their CPU time is counted
    return time.perf_counter() - start, seen


def bare_loop(files: list[Path]) -> tuple[float, int]:
    ops = crop_flip()
    start = time.perf_counter()
    batch = []
    for path in files:
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        batch.append(ops(decode_jpeg(data)))
        if len(batch) == BATCH:
            torch.stack(batch)
            batch = []
    if batch:
        torch.stack(batch)
    return time.perf_counter() - start, len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("photos", "thumbs"), default="photos")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=320, help="side of the --kind thumbs images")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", help="reuse/keep the JPEG folder here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    scratch = Path(tempfile.mkdtemp(prefix="df-bench-loader-"))
    root = Path(args.data) if args.data else scratch / "images"
    if not root.is_dir() or not any(root.rglob("*.jpg")):
        make_photos(root, args.count) if args.kind == "photos" else make_images(root, args.count, args.size)
    files = sorted(root.rglob("*.jpg"))
    shards = scratch / "shards"
    build_shards("folder", shards, root=root, max_count=250)

    def ours(workers: int, **options):
        return make_loader(shards, batch_size=BATCH, num_workers=workers, decode="RGB", shuffle_buffer=256,
                           transform=FieldTransform("image", crop_flip()), **options)

    folder = tv_datasets.ImageFolder(str(root), transform=PilToTensorCropFlip())

    def imagefolder(workers: int, **options):
        return DataLoader(folder, batch_size=BATCH, shuffle=True, num_workers=workers, **options)

    warm_ours = ours(args.workers, persistent_workers=args.workers > 0)
    warm_folder = imagefolder(args.workers, persistent_workers=args.workers > 0)
    epoch_seconds(warm_ours), epoch_seconds(warm_folder)  # start the workers: epoch 0 is not timed

    def warm(loader, epoch: int):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        return epoch_seconds(loader)

    results: dict[str, list[tuple[float, float, float]]] = {}
    for repeat in range(args.repeats):  # methods take turns so load changes hit all alike
        for name, run in (
            (f"make_loader workers={args.workers}", lambda: epoch_seconds(ours(args.workers))),
            (f"ImageFolder+DataLoader workers={args.workers}", lambda: epoch_seconds(imagefolder(args.workers))),
            (f"make_loader workers={args.workers} warm", lambda: warm(warm_ours, repeat + 1)),
            (f"ImageFolder workers={args.workers} warm", lambda: warm(warm_folder, repeat + 1)),
            ("make_loader workers=0", lambda: epoch_seconds(ours(0))),
            ("bare decode_jpeg loop", lambda: bare_loop(files)),
        ):
            before, machine = cpu_seconds(), machine_cpu()
            seconds, seen = run()
            used = cpu_seconds() - before
            others = max(0.0, machine_cpu() - machine - used) / seconds
            results.setdefault(name, []).append((seen / seconds, used * 1000 / seen, others))
    del warm_ours, warm_folder
    best = {name: max(values) for name, values in results.items()}  # the fastest epoch of each
    rate = {name: b[0] for name, b in best.items()}
    cost = {name: b[1] for name, b in best.items()}
    names = list(rate)
    print(f"\n{len(files)} JPEGs ({args.kind}, {sum(p.stat().st_size for p in files) / len(files) / 1e3:.0f} kB average), "
          f"batch {BATCH}, RandomResizedCrop(224)+flip, best of {args.repeats}, {os.cpu_count()} CPUs "
          f"(load average {os.getloadavg()[0]:.1f})\n")
    print(f"| {'method':<34} | {'images/s':>9} | {'ratio':>20} | {'CPU ms/img':>10} | {'CPU ratio':>9} | {'others':>6} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 22}|{'-' * 12}|{'-' * 11}|{'-' * 8}|")
    ratios = {names[0]: (f"{rate[names[0]] / rate[names[1]]:.2f}x ImageFolder", f"{cost[names[1]] / cost[names[0]]:.2f}x"),
              names[2]: (f"{rate[names[2]] / rate[names[3]]:.2f}x ImageFolder", f"{cost[names[3]] / cost[names[2]]:.2f}x"),
              names[4]: (f"{rate[names[4]] / rate[names[5]]:.2f}x bare loop", f"{cost[names[5]] / cost[names[4]]:.2f}x")}
    for name in names:
        ratio, cpu_ratio = ratios.get(name, ("", ""))
        print(f"| {name:<34} | {rate[name]:9.0f} | {ratio:>20} | {cost[name]:10.2f} | {cpu_ratio:>9} | {best[name][2]:6.2f} |")
    print("\ntargets: make_loader >= 1.30x ImageFolder (same workers); workers=0 >= 0.80x the bare loop")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
