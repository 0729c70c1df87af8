"""The ``segment`` trainer: semantic segmentation on image + mask shards.

Data: any shard set whose samples hold ``image`` and ``mask`` -- the ``shapes`` demo (part
masks), a ``folder`` images+masks set, DatasetGAN output (Zhang et al., 2021, "DatasetGAN:
Efficient Labeled Data Factory with Minimal Human Effort", which trains a downstream DeepLab on
its generated image-mask pairs). Models: a small U-Net (Ronneberger et al., 2015;
:mod:`pipelines.train.models.unet`) or torchvision's DeepLabV3-ResNet50 (Chen et al., 2017,
"Rethinking Atrous Convolution for Semantic Image Segmentation"), built with no pretrained weights.
Loss: per-pixel cross-entropy, plus ``dice_weight`` times the soft Dice loss (Milletari et al.,
2016). Evaluation: mIoU, per-class IoU and pixel accuracy from a confusion matrix
(:mod:`pipelines.train.segment_ops`), and PNGs of the first eval images (image | truth | prediction).
"""

from __future__ import annotations

import io
import pathlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from loaders.schema import KEY
from pipelines.train.config import TrainConfig, load_config
from pipelines.train.data import move_to, require_fields, shard_loader
from pipelines.train.segment_ops import colorize, confusion_matrix, dice_loss, iou_scores
from pipelines.train.task import Batch

__all__ = ["MODELS", "SegmentConfig", "SegmentSample", "SegmentTask", "TASK", "build_segment_model", "small_scale_results"]

MODELS = ("unet", "deeplabv3")
_FIELDS = ("image", "mask")


@dataclass
class SegmentConfig(TrainConfig):
    """Config of the ``segment`` trainer (the shared fields plus these)."""

    model: str = "unet"
    num_classes: int = 4
    class_names: tuple[str, ...] = ()
    image_size: int = 0
    base_channels: int = 32
    depth: int = 4
    dice_weight: float = 0.0
    ignore_index: int = 255
    hflip: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    num_predictions: int = 4
    batch_size: int = 16
    weight_decay: float = 1e-4

    HELP: ClassVar[dict[str, str]] = {
        "model": "unet (small U-Net, GroupNorm) | deeplabv3 (torchvision DeepLabV3-ResNet50, no pretrained weights)",
        "num_classes": "mask classes (the shapes demo has 4 parts: background, body, outline, marking)",
        "class_names": "names for the per-class IoU metrics (default class_0, class_1, ...)",
        "image_size": "resize images and masks to this square size (0 = keep; all must then match)",
        "base_channels": "U-Net channels at full resolution",
        "depth": "U-Net down-sampling steps",
        "dice_weight": "weight of the soft Dice loss added to cross-entropy (0 = CE only)",
        "ignore_index": "mask value left out of loss and metrics",
        "hflip": "random horizontal flips of image and mask in training",
        "mean": "per-channel mean for normalising images in [0, 1]",
        "std": "per-channel std for normalising images in [0, 1]",
        "num_predictions": "eval images written as PNGs (image | truth | prediction)",
    }

    def validate(self) -> None:
        super().validate()
        if self.model not in MODELS:
            raise ValueError(f"config key 'model' must be one of {list(MODELS)}, got {self.model!r}")
        for key, low in (("num_classes", 1), ("image_size", 0), ("base_channels", 1), ("depth", 1), ("num_predictions", 0)):
            if getattr(self, key) < low:
                raise ValueError(f"config key {key!r} must be >= {low}, got {getattr(self, key)!r}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"config key 'class_names' must name all {self.num_classes} classes, got {list(self.class_names)}")
        if not self.dice_weight >= 0:
            raise ValueError(f"config key 'dice_weight' must be >= 0, got {self.dice_weight!r}")
        if 0 <= self.ignore_index < self.num_classes:
            raise ValueError(f"config key 'ignore_index' ({self.ignore_index}) must not be a class id (< {self.num_classes})")
        if any(not s > 0 for s in self.std):
            raise ValueError(f"config key 'std' must be > 0, got {list(self.std)}")

    def names(self) -> tuple[str, ...]:
        return self.class_names or tuple(f"class_{i}" for i in range(self.num_classes))


class SegmentSample:
    """Per-sample preparation: check fields, resize, flip (training), normalise; picklable.

    Returns ``{"__key__", "image": float [3,H,W], "mask": int64 [H,W]}``.
    """

    def __init__(self, cfg: SegmentConfig, train: bool) -> None:
        self.size, self.hflip = cfg.image_size, cfg.hflip and train
        self.mean = torch.tensor(cfg.mean).view(3, 1, 1)
        self.std = torch.tensor(cfg.std).view(3, 1, 1)
        self.num_classes, self.ignore_index = cfg.num_classes, cfg.ignore_index

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        require_fields(sample, _FIELDS)
        key, image, mask = sample.get(KEY), sample["image"], sample["mask"]
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"sample {key!r}: 'image' must be a [3,H,W] tensor, got {getattr(image, 'shape', type(image))}")
        if not isinstance(mask, torch.Tensor) or mask.ndim != 2 or mask.shape != image.shape[1:]:
            raise ValueError(f"sample {key!r}: 'mask' must be an [H,W] tensor of the image's size {tuple(image.shape[1:])}, "
                             f"got {getattr(mask, 'shape', type(mask))}")
        mask = mask.long()
        bad = (mask >= self.num_classes) & (mask != self.ignore_index) | (mask < 0)
        if bool(bad.any()):
            raise ValueError(f"sample {key!r}: mask value {int(mask[bad][0])} is not a class id in [0, {self.num_classes}) "
                             f"nor ignore_index {self.ignore_index}: set num_classes")
        scale = 65535.0 if image.dtype == torch.uint16 else 255.0 if image.dtype == torch.uint8 else 1.0
        image = image.float() / scale
        if self.size and tuple(image.shape[1:]) != (self.size, self.size):
            image = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", antialias=True,
                                  align_corners=False)[0]
            mask = F.interpolate(mask[None, None].float(), size=(self.size, self.size), mode="nearest-exact")[0, 0].long()
        if self.hflip and bool(torch.rand(()) < 0.5):
            image, mask = image.flip(-1), mask.flip(-1)
        return {KEY: key, "image": (image - self.mean) / self.std, "mask": mask}


class _DeepLab(torch.nn.Module):
    """torchvision's DeepLabV3-ResNet50 returning the ``"out"`` logits tensor."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        from torchvision.models.segmentation import deeplabv3_resnet50

        self.net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def build_segment_model(cfg: SegmentConfig) -> torch.nn.Module:
    """The model named by ``cfg.model`` (no pretrained weights: nothing is downloaded)."""
    if cfg.model == "unet":
        from pipelines.train.models.unet import UNet

        return UNet(3, cfg.num_classes, cfg.base_channels, cfg.depth)
    return _DeepLab(cfg.num_classes)


def _images(batch: Batch) -> torch.Tensor:
    image = batch["image"]
    if not isinstance(image, torch.Tensor):
        raise ValueError("the images of a batch differ in size: set image_size to resize them")
    return image


def _safe_name(key: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(key))[:120] or "sample"


def _write_prediction(path: Path, image: torch.Tensor, mask: torch.Tensor, prediction: torch.Tensor,
                      cfg: SegmentConfig) -> None:
    from PIL import Image

    from pipelines.train.files import write_bytes_atomic

    mean, std = torch.tensor(cfg.mean).view(3, 1, 1), torch.tensor(cfg.std).view(3, 1, 1)
    pixels = ((image.float().cpu() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    row = torch.cat([pixels, colorize(mask), colorize(prediction)], dim=2)
    buffer = io.BytesIO()
    Image.fromarray(row.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


class SegmentTask:
    """The ``segment`` :class:`~pipelines.train.task.Task`."""

    name = "segment"
    config_class = SegmentConfig

    def build_model(self, cfg: SegmentConfig) -> torch.nn.Module:
        return build_segment_model(cfg)

    def train_loader(self, cfg: SegmentConfig, *, rank: int, world_size: int, epoch: int) -> Any:
        return shard_loader(cfg, "train", transform=SegmentSample(cfg, train=True), rank=rank, world_size=world_size,
                            epoch=epoch, decode="RGB", fields=_FIELDS)

    def eval_loader(self, cfg: SegmentConfig) -> Any:
        if not (cfg.eval_shards or cfg.eval_dataset):
            return None
        return shard_loader(cfg, "eval", transform=SegmentSample(cfg, train=False), decode="RGB", fields=_FIELDS)

    def training_step(self, model: torch.nn.Module, batch: Batch, cfg: SegmentConfig) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(_images(batch)).float()
        ce = F.cross_entropy(logits, batch["mask"], ignore_index=cfg.ignore_index)
        if cfg.dice_weight <= 0:
            return ce, {}
        dice = dice_loss(logits, batch["mask"], cfg.ignore_index)
        return ce + cfg.dice_weight * dice, {"ce": float(ce.detach()), "dice_loss": float(dice.detach())}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, loader: Iterable[Batch], cfg: SegmentConfig,
                 out_dir: pathlib.Path) -> dict[str, float]:
        device = next(model.parameters()).device
        confusion = torch.zeros(cfg.num_classes, cfg.num_classes, dtype=torch.int64)
        loss_sum, pixels, written = 0.0, 0, 0
        predictions = out_dir / "predictions"
        for batch in loader:
            batch = move_to(batch, device)
            logits = model(_images(batch)).float()
            mask = batch["mask"]
            loss_sum += float(F.cross_entropy(logits, mask, ignore_index=cfg.ignore_index, reduction="sum"))
            pixels += int((mask != cfg.ignore_index).sum())
            prediction = logits.argmax(1)
            confusion += confusion_matrix(prediction, mask, cfg.num_classes, cfg.ignore_index).cpu()
            for i in range(min(cfg.num_predictions - written, len(prediction))):
                predictions.mkdir(parents=True, exist_ok=True)
                _write_prediction(predictions / f"{written:03d}_{_safe_name(batch[KEY][i])}.png", batch["image"][i],
                                  mask[i].cpu(), prediction[i].cpu(), cfg)
                written += 1
        if pixels == 0:
            raise ValueError("the eval data has no labelled pixels")
        iou, miou, accuracy = iou_scores(confusion)
        metrics = {"miou": miou, "pixel_acc": accuracy, "loss": loss_sum / pixels}
        for name, value in zip(cfg.names(), iou.tolist()):
            if value == value:  # a class absent from truth and prediction has no IoU
                metrics[f"iou_{name}"] = value
        return metrics


TASK = SegmentTask()


def small_scale_results(workdir: Path, seed: int) -> list[dict[str, Any]]:
    """Train the U-Net on small ``shapes`` shards (48 px, part masks) with CE and CE + Dice, EMA
    on; rows with the setting, sizes, seed and the measured raw and EMA mIoU."""
    from loaders.shapes import PART_CLASSES
    from pipelines import build_shards
    from pipelines.train.loop import fit

    workdir = Path(workdir)
    sizes = {"train": 256, "val": 64}
    for split, count in sizes.items():
        target = workdir / f"shapes-{split}-{seed}"
        if not (target / "index.json").exists():
            build_shards("shapes", target, split=split, options={"size": count, "resolution": 48, "seed": seed},
                         max_count=128)
    rows = []
    for setting, dice in (("unet ce", 0.0), ("unet ce+dice", 1.0)):
        run = "run-" + setting.replace(" ", "-").replace("+", "_") + f"-{seed}"
        overrides = [f"shards={workdir / f'shapes-train-{seed}'}", f"eval_shards={workdir / f'shapes-val-{seed}'}",
                     f"out={workdir / run}", "epochs=6",
                     "batch_size=16", "base_channels=16", "depth=3", "lr=3e-3", f"dice_weight={dice}", f"seed={seed}",
                     "ema_decay=0.99", "progress=false", "warmup_steps=10",
                     f"class_names={list(PART_CLASSES)!r}".replace("'", '"')]
        result = fit(TASK, load_config(SegmentConfig, overrides=overrides))
        rows.append({"trainer": "segment", "setting": setting, "dataset": "shapes parts (4 classes)", "image_size": 48,
                     "train_samples": sizes["train"], "eval_samples": sizes["val"], "steps": result.steps, "seed": seed,
                     **{k: result.final[k] for k in ("miou", "pixel_acc", "ema_miou", "ema_pixel_acc") if k in result.final}})
    return rows
