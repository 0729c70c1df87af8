"""The embedded demo flow behind ``datafactory demo``: no downloads, runs on a fresh machine.

It renders a split of the ``shapes`` dataset (see :mod:`loaders.shapes`), checks the colour
oracle against the rendered part masks and writes a preview grid (image | parts overlaid, class
name); then it builds WebDataset shards of the training split, verifies them and reads one epoch
back through the streaming loader (:func:`demo_roundtrip`, also usable on its own in tutorials);
then it trains the bundled ``segment`` (U-Net on the part masks) and ``vit`` (ViT-tiny with
P-Shuffle negatives) trainers for a few epochs on those shards and evaluates them on shards of the
validation split (:func:`demo_training`). The runs are short: they show the flow and its outputs
(run folders, metrics, prediction PNGs), not the accuracy a real run reaches. Last, the DatasetGAN
factory runs at a tiny size (:func:`datafactory.gan.factory.run_gan_demo`): a generator trained
on ``shapes`` images, 16 generated images annotated by the colour oracle (standing in for a
person), the interpreter ensemble, and labelled shards generated with uncertainty filtering.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import loaders
from pipelines import build_shards, make_loader, verify_shards

__all__ = ["DemoConfig", "PART_COLOURS", "demo_roundtrip", "demo_training", "oracle_agreement", "preview_grid", "run_demo"]

#: overlay colours for the part classes (background is left transparent)
PART_COLOURS = ("#000000", "#ff2d2d", "#2d6bff", "#ffe600")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of ``datafactory demo`` (saved next to its outputs as ``demo_config.json``)."""

    out: str = "demo-out"
    split: str = "val"
    size: int = 16
    resolution: int = 64
    seed: int = 0
    columns: int = 4
    scale: int = 3
    shard_samples: int = 256
    max_count: int = 64
    batch_size: int = 32
    val_samples: int = 64
    train_epochs: int = 3
    gan: bool = True


def oracle_agreement(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pixel accuracy and per-part IoU of :func:`loaders.annotate_parts` against the true masks."""
    truth = torch.stack([s["mask"] for s in samples])
    guess = loaders.annotate_parts(torch.stack([s["image"] for s in samples]))
    iou = {}
    for index, name in enumerate(loaders.PART_CLASSES):
        union = ((truth == index) | (guess == index)).sum().item()
        if union:
            iou[name] = ((truth == index) & (guess == index)).sum().item() / union
    return {"pixel_accuracy": (truth == guess).float().mean().item(), "iou": iou}


def preview_grid(samples: list[dict[str, Any]], class_names: list[str] | tuple[str, ...], *, columns: int = 4, scale: int = 3):
    """A PIL image: for each sample, the image and its part mask overlaid, captioned with the class."""
    from PIL import Image, ImageDraw
    from torchvision.utils import draw_segmentation_masks

    if not samples:
        raise ValueError("preview_grid needs at least one sample")
    cells = []
    for sample in samples:
        image = sample["image"]
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        mask = sample.get("mask")
        if mask is None:
            overlay = image
        else:
            planes = torch.stack([mask == i for i in range(1, len(PART_COLOURS))])
            overlay = draw_segmentation_masks(image, planes, alpha=0.55, colors=list(PART_COLOURS[1:]))
        pair = torch.cat([image, overlay], dim=2)
        cell = Image.fromarray(pair.permute(1, 2, 0).numpy()).resize((pair.shape[2] * scale, pair.shape[1] * scale), Image.NEAREST)
        canvas = Image.new("RGB", (cell.width, cell.height + 16), "white")
        canvas.paste(cell, (0, 0))
        label = sample.get("label")
        caption = f"{sample['__key__']}: {class_names[label] if label is not None else '-'}"
        ImageDraw.Draw(canvas).text((3, cell.height + 2), caption, fill="black")
        cells.append(canvas)
    width, height = cells[0].size
    rows = (len(cells) + columns - 1) // columns
    grid = Image.new("RGB", (min(columns, len(cells)) * (width + 4), rows * (height + 4)), "#dddddd")
    for i, cell in enumerate(cells):
        grid.paste(cell, ((i % columns) * (width + 4), (i // columns) * (height + 4)))
    return grid


def demo_roundtrip(out_dir: str | os.PathLike, *, size: int = 256, max_count: int = 64, workers: int = 1,
                   batch_size: int = 32, seed: int = 0, progress: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Build shards of ``shapes`` (split ``train``), verify them and read one epoch back.

    ``overwrite=True`` replaces a shard set built earlier in ``out_dir`` with other settings.

    Returns:
        ``{"out_dir", "shards", "written", "skipped", "verified", "batches", "samples_read",
        "image_batch_shape"}``. ``samples_read == written`` (one rank, no drop_last).
    """
    out = Path(out_dir)
    report = build_shards("shapes", out, split="train", options={"size": size}, max_count=max_count,
                          workers=workers, progress=progress, overwrite=overwrite)
    verified = verify_shards(out, raise_on_error=True)
    loader = make_loader(out, batch_size=batch_size, seed=seed, shuffle_buffer=max_count, decode="RGB")
    batches, seen, shape = 0, 0, None
    for batch in loader:
        batches += 1
        seen += len(batch["__key__"])
        shape = shape or tuple(batch["image"].shape)  # the first (full) batch
    return {"out_dir": str(out), "shards": len(report.index["shards"]), "written": report.written,
            "skipped": report.skipped, "verified": verified.ok, "batches": batches, "samples_read": seen,
            "image_batch_shape": shape}


def demo_training(train_shards: str | os.PathLike, eval_shards: str | os.PathLike, out_dir: str | os.PathLike, *,
                  epochs: int = 3, seed: int = 0, progress: bool = False) -> dict[str, dict[str, Any]]:
    """Short ``segment`` and ``vit`` runs on ``shapes`` shards (64 px images with part masks).

    ``segment``: a small U-Net (16 channels, 3 levels) on 48 px resized images, cross-entropy,
    EMA 0.98. ``vit``: a ViT-tiny (32 px, patch 8, 4 blocks of width 96) with P-Shuffle negatives
    and the L2 loss of Qin et al. (2021), evaluated on clean and patch-transformed views.

    Returns:
        ``{"segment": {...}, "vit": {...}}``, each with ``"out"`` (the run folder), ``"steps"``,
        ``"seconds"`` and the final evaluation metrics of the run.
    """
    import time

    from pipelines.train.config import load_config
    from pipelines.train.loop import fit
    from pipelines.train.registry import get_task

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    out = Path(out_dir)
    common = [f"shards={train_shards}", f"eval_shards={eval_shards}", f"epochs={epochs}", f"seed={seed}",
              f"progress={str(progress).lower()}", "warmup_steps=5"]
    runs = {
        "segment": ["batch_size=16", "image_size=48", "base_channels=16", "depth=3", "lr=3e-3", "ema_decay=0.98",
                    "class_names=" + json.dumps(list(loaders.PART_CLASSES))],
        "vit": ["batch_size=32", "num_classes=6", "image_size=32", "patch_size=8", "depth=4", "hidden_dim=96",
                "num_heads=3", "mlp_dim=192", "lr=1e-3", "negatives=shuffle", "negative_loss=l2",
                "negative_patch_size=8"],
    }
    results = {}
    for name, overrides in runs.items():
        task = get_task(name)
        started = time.perf_counter()
        result = fit(task, load_config(task.config_class, overrides=[*common, *overrides, f"out={out / name}"]))
        results[name] = {"out": str(out / name), "steps": result.steps,
                         "seconds": round(time.perf_counter() - started, 1), **result.final}
    return results


def run_demo(config: DemoConfig = DemoConfig(), *, progress: bool = True) -> dict[str, Any]:
    """Run the demo flow and return a summary (also written to ``<out>/demo_summary.json``)."""
    from tqdm.auto import tqdm

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(asdict(config), indent=2))
    dataset = loaders.open_dataset("shapes", split=config.split, size=config.size, resolution=config.resolution, seed=config.seed)
    samples = [dataset[i] for i in tqdm(range(len(dataset)), desc="rendering shapes", unit="img", disable=not progress)]
    agreement = oracle_agreement(samples)
    preview = out / "preview.png"
    preview_grid(samples, dataset.classes, columns=config.columns, scale=config.scale).save(preview)
    shards = demo_roundtrip(out / "shards", size=config.shard_samples, max_count=config.max_count,
                            batch_size=config.batch_size, seed=config.seed, progress=progress,
                            overwrite=True)  # the demo owns its output folder
    training = None
    if config.train_epochs:
        build_shards("shapes", out / "shards-val", split="val", options={"size": config.val_samples},
                     max_count=config.max_count, progress=progress, overwrite=True)
        training = demo_training(out / "shards", out / "shards-val", out / "runs", epochs=config.train_epochs,
                                 seed=config.seed, progress=progress)
    gan = None
    if config.gan:
        from datafactory.gan.factory import run_gan_demo

        gan = run_gan_demo(out / "gan", quick=True, progress=progress)
    summary = {
        "samples": len(samples),
        "classes": {name: sum(s["label"] == i for s in samples) for i, name in enumerate(dataset.classes)},
        "oracle": agreement,
        "preview": str(preview),
        "shards": shards,
        "training": training,
        "gan": gan,
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
