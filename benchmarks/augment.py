"""Benchmark: augment operators against their peers and the physical limit, side by side.

Everything runs in one process on one thread (``torch.set_num_threads(1)`` and OpenCV's
``cv2.setNumThreads(1)``, which albumentations and our CPU patch path use) on the same 224x224
uint8 batch. Each timing is the minimum over ``--repeats`` interleaved rounds (ours, peer, ours,
peer, ...), which keeps ratios honest on a shared, noisy machine. The table has one row per
target of issue 6 (Speed):

* P-Shuffle / P-Rotate / P-Infill on the batch vs albumentations ``RandomGridShuffle`` (14x14
  grid, image by image; target >= 10x) and vs a plain ``copy_`` of the batch (target >= 20%);
* MixUp / CutMix vs timm ``Mixup`` on the same float batch (target >= 1x);
* RandAugment per sample on the batch vs torchvision ``RandAugment`` image by image (target >= 2x);
* DropToken at 50% in front of a ViT-S forward vs no dropping (time ratio, target <= 0.6).

Usage::

    python benchmarks/augment.py                 # default: batch 256 (ViT part: batch 8), under a minute
    python benchmarks/augment.py --batch 64 --vit-batch 32 --repeats 5
    python benchmarks/augment.py --skip mix randaugment droptoken --patch-size 32   # patch ops only
    python benchmarks/augment.py --device cuda   # on a GPU machine (peer for patches: kornia)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import torch

# this script is itself named augment.py: keep its folder off the path so `import augment` finds the package
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
import augment as A  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def race(fns: dict[str, Callable[[], object]], repeats: int, device: str) -> dict[str, float]:
    """Minimum seconds per call of each function, measured in interleaved rounds."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():  # warm-up (allocator, caches, lazy init)
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def patch_rows(x: torch.Tensor, repeats: int, device: str, ps: int = 16) -> list[tuple]:
    from augment import functional as F

    rows = []
    out = torch.empty_like(x)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ours = {"P-Shuffle": A.PatchShuffle(ps), "P-Rotate": A.PatchRotate(ps), "P-Infill": A.PatchInfill(ps, 0.25)}
    kernels = {"P-Shuffle": F.patch_shuffle, "P-Rotate": F.patch_rotate, "P-Infill": F.patch_infill}
    params = {name: t.make_params(x, gen) for name, t in ours.items()}
    fns: dict[str, Callable[[], object]] = {"copy_": lambda: out.copy_(x), "clone": lambda: x.clone()}
    fns.update({name: (lambda t=t: t(x)) for name, t in ours.items()})
    fns.update({f"{name} kernel": (lambda k=kernels[name], p=next(iter(params[name].values())): k(x, p, ps, out=out))
                for name in ours})
    if device == "cpu":
        import albumentations as albu

        grid = albu.RandomGridShuffle(grid=(x.shape[-2] // ps, x.shape[-1] // ps), p=1.0)
        images = [img.permute(1, 2, 0).contiguous().numpy() for img in x]
        fns["albumentations RandomGridShuffle"] = lambda: [grid(image=im)["image"] for im in images]
        peer = "albumentations RandomGridShuffle"
    else:
        import kornia.augmentation as K

        jigsaw = K.RandomJigsaw(grid=(x.shape[-2] // ps, x.shape[-1] // ps), p=1.0)
        xf = x.float() / 255
        fns["kornia RandomJigsaw"] = lambda: jigsaw(xf)
        peer = "kornia RandomJigsaw"
    times = race(fns, repeats, device)
    for name in ours:
        rows.append((f"{name} transform (batch, draws + output)", times[name], peer, times[peer], times[peer] / times[name], ">= 10x"))
        rows.append((f"{name} kernel into preallocated out=", times[f"{name} kernel"], "copy_ (limit)", times["copy_"],
                     times["copy_"] / times[f"{name} kernel"], ">= 0.20"))
        rows.append((f"{name} transform (batch, draws + output)", times[name], "clone (copy_ + allocation)", times["clone"],
                     times["clone"] / times[name], "info"))
    return rows


def mix_rows(x: torch.Tensor, repeats: int, device: str) -> list[tuple]:
    from timm.data import Mixup

    xf = x[: x.shape[0] - x.shape[0] % 2].float()  # timm's Mixup needs an even batch; ours does not
    target = torch.randint(0, 1000, (xf.shape[0],), device=device)
    rows = []
    for name, ours, peer in (
        ("MixUp", A.MixUp(0.8, num_classes=1000), Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, num_classes=1000)),
        ("CutMix", A.CutMix(1.0, num_classes=1000), Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=1000)),
    ):
        scratch = xf.clone()  # timm mixes in place (its cost does not depend on the pixel values)
        times = race({"ours": lambda: ours(xf, target), "timm": lambda: peer(scratch, target)}, repeats, device)
        rows.append((f"{name} (batch mode, float32)", times["ours"], "timm Mixup", times["timm"], times["timm"] / times["ours"], ">= 1x"))
    return rows


def randaugment_rows(x: torch.Tensor, repeats: int, device: str) -> list[tuple]:
    from torchvision.transforms import v2

    peer = v2.RandAugment()
    ours = A.RandAugment()
    times = race({"ours": lambda: ours(x), "tv": lambda: [peer(img) for img in x]}, repeats, device)
    return [("RandAugment (per sample, batch)", times["ours"], "torchvision RandAugment per image", times["tv"],
             times["tv"] / times["ours"], ">= 2x")]


def droptoken_rows(batch: int, repeats: int, device: str) -> list[tuple]:
    import timm

    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=1000).to(device).eval()
    images = torch.randn(batch, 3, 224, 224, device=device)
    drop = A.DropToken(0.5, num_prefix_tokens=model.num_prefix_tokens)

    def forward(dropping: bool) -> torch.Tensor:
        tokens = model._pos_embed(model.patch_embed(images))
        if dropping:
            tokens, _ = drop(tokens)
        tokens = model.norm(model.blocks(model.norm_pre(tokens)))
        return model.forward_head(tokens)

    with torch.inference_mode():
        times = race({"drop": lambda: forward(True), "full": lambda: forward(False)}, max(2, repeats // 2), device)
    return [(f"ViT-S forward + DropToken 50% (batch {batch})", times["drop"], "ViT-S forward, no dropping", times["full"],
             times["drop"] / times["full"], "<= 0.6 (time ratio)")]


def _passes(ratio: float, target: str) -> bool | None:
    if target == "info":
        return None
    value = float(target.split()[1].rstrip("x"))
    return ratio >= value if target.startswith(">=") else ratio <= value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--vit-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--patch-size", type=int, default=16, help="patch side of the patch ops (16: a 14x14 grid)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["patch", "mix", "randaugment", "droptoken"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import cv2  # OpenCV (albumentations' and our CPU patch path's backend) gets the same thread count

    cv2.setNumThreads(args.threads)
    torch.manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, device=args.device)
    rows: list[tuple] = []
    sections = {"patch": lambda: patch_rows(x, args.repeats, args.device, args.patch_size),
                "mix": lambda: mix_rows(x, args.repeats, args.device),
                "randaugment": lambda: randaugment_rows(x, args.repeats, args.device),
                "droptoken": lambda: droptoken_rows(args.vit_batch, args.repeats, args.device)}
    for name, section in sections.items():
        if name not in args.skip:
            rows.extend(section())
    print(f"\naugment benchmark: {args.batch}x3x{args.size}x{args.size} uint8, patch size {args.patch_size}, "
          f"device {args.device}, {torch.get_num_threads()} thread(s), min of {args.repeats} interleaved rounds\n")
    header = ("ours", "ms", "reference", "ms", "ratio", "target", "ok")
    print(f"| {header[0]:<44} | {header[1]:>8} | {header[2]:<36} | {header[3]:>8} | {header[4]:>7} | {header[5]:<20} | ok |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 38}|{'-' * 10}|{'-' * 9}|{'-' * 22}|----|")
    for name, ours, ref_name, ref, ratio, target in rows:
        ok = {True: "yes", False: "NO", None: "-"}[_passes(ratio, target)]
        print(f"| {name:<44} | {ours * 1e3:8.2f} | {ref_name:<36} | {ref * 1e3:8.2f} | {ratio:7.2f} | {target:<20} | {ok:<2} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
