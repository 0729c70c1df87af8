"""The ``cxr`` trainer: a multi-label chest X-ray classifier over the harmonised pathologies.

Recipe: DenseNet-121 (Huang et al., "Densely connected convolutional networks", CVPR 2017)
trained from scratch with one sigmoid output per pathology, as CheXNet (Rajpurkar et al., 2017)
and TorchXRayVision (Cohen et al., "TorchXRayVision: A library of chest X-ray datasets and
models", MIDL 2022) do; TorchXRayVision's conventions throughout:

* labels: the 18 harmonised pathologies of ``loaders.xray`` (any chest X-ray adapter, or
  ``merge``), NaN where a collection does not say. The binary cross-entropy is masked: a NaN label
  contributes neither to the loss nor to the gradient (:func:`masked_bce_with_logits`).
* images: single-channel, centre-cropped to a square on the long side and resized to
  ``image_size``; ``image_format="float"`` gives TorchXRayVision's ``(2 x / maxval - 1) * 1024``
  in [-1024, 1024] (``maxval`` from the sample's ``meta``), ``"uint8"`` ships ``x * 255 / maxval``
  as uint8 (a quarter of the bytes) and the model maps it to the same [-1024, 1024] scale
  (:class:`CXRClassifier`). The network takes that scale as it is, and its first convolution
  takes one channel -- both as TorchXRayVision's DenseNet (``in_channels=1``; the grey channel is
  not repeated into three), whose weights therefore load into ours (same parameter names and
  shapes; a BatchNorm follows the first convolution, so the input scale does not slow training).
* views: only frontal images (``views=("PA", "AP")``) are trained on and evaluated; the others
  are dropped from each batch (:func:`~pipelines.train.cxr_data.keep_views`), and counted.
  Samples become batches in :mod:`pipelines.train.cxr_data`.
* evaluation: per-pathology ROC AUC and their mean (:mod:`pipelines.train.metrics_cxr`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from loaders.xray import DEFAULT_VIEWS, PATHOLOGIES
from pipelines.train.config import TrainConfig
from pipelines.train.cxr_data import IMAGE_FORMATS, CXRSampleTransform, center_crop_square, keep_views, label_index
from pipelines.train.data import eval_loader, shard_loader
from pipelines.train.files import write_bytes_atomic
from pipelines.train.metrics_cxr import per_pathology_auc
from pipelines.train.task import Batch

__all__ = [
    "CXRClassifier",
    "CXRConfig",
    "CXRSampleTransform",
    "CXRTask",
    "IMAGE_FORMATS",
    "LOSS_REDUCTIONS",
    "MODELS",
    "build_backbone",
    "center_crop_square",
    "keep_views",
    "label_index",
    "masked_bce_with_logits",
    "small_scale_results",
    "TASK",
]

LOSS_REDUCTIONS = ("mean", "task_sum")


# --- models --------------------------------------------------------------------------------------


def _densenet121(num_classes: int, drop_rate: float) -> nn.Module:
    from torchvision.models import densenet121

    return densenet121(weights=None, num_classes=num_classes, drop_rate=drop_rate)


def _densenet_tiny(num_classes: int, drop_rate: float) -> nn.Module:
    """Two dense blocks of two layers, growth 8: the same code path as DenseNet-121 at ~10k
    parameters, for tests and the demo."""
    from torchvision.models import DenseNet

    return DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2, drop_rate=drop_rate,
                    num_classes=num_classes)


#: model name -> builder(num_classes, drop_rate) of a torchvision DenseNet (random init, no download).
MODELS = {"densenet121": _densenet121, "densenet_tiny": _densenet_tiny}


def build_backbone(name: str, num_classes: int, drop_rate: float = 0.0) -> nn.Module:
    """A torchvision DenseNet with a one-channel first convolution and ``num_classes`` logits.

    Raises:
        ValueError: ``name`` is not in :data:`MODELS` (the message lists them).
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    net = MODELS[name](num_classes, drop_rate)
    old = net.features.conv0
    net.features.conv0 = nn.Conv2d(1, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                                   padding=old.padding, bias=False)
    nn.init.kaiming_normal_(net.features.conv0.weight)  # torchvision's DenseNet initialisation
    return net


class CXRClassifier(nn.Module):
    """Wraps a backbone: takes ``[B, 1, H, W]`` float in [-1024, 1024], which the backbone sees
    unchanged (as TorchXRayVision's models do, so its DenseNet weights load into ``backbone``),
    or uint8 in [0, 255], mapped first to ``(2 x / 255 - 1) * 1024``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = (2 * (x.to(torch.float32) / 255) - 1.0) * 1024  # the float conversion, to the bit
        return self.backbone(x)


# --- loss ----------------------------------------------------------------------------------------


def masked_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy over the known labels only (NaN targets contribute nothing).

    Args:
        logits, targets: ``[B, K]``; ``targets`` in {0, 1} or NaN.
        reduction: ``"mean"``: the mean over all known entries of the batch; ``"task_sum"``: for
            each pathology the mean over its known entries, summed over pathologies
            (TorchXRayVision's ``train_utils``). A batch without any known label gives 0 (with a
            zero gradient), so every rank still runs its backward pass.

    Raises:
        ValueError: the shapes differ or ``reduction`` is unknown.
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"logits and targets must both be [B, K], got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(LOSS_REDUCTIONS)}, got {reduction!r}")
    known = ~torch.isnan(targets)
    zero = torch.zeros((), dtype=torch.float32, device=logits.device)
    # both sides are masked, so whatever the logit of an unknown label is (even inf or NaN), it
    # adds nothing to the loss and gets an exact zero gradient
    z = torch.where(known, logits.float(), zero)
    y = torch.where(known, targets.float(), zero)
    weight = known.to(torch.float32)
    per = F.binary_cross_entropy_with_logits(z, y, weight=weight, reduction="none")
    if reduction == "mean":
        return per.sum() / weight.sum().clamp_min(1.0)
    return (per.sum(0) / weight.sum(0).clamp_min(1.0)).sum()


# --- the trainer ---------------------------------------------------------------------------------

#: the smallest image side each model takes (DenseNet-121 halves it five times)
_MIN_SIZE = {"densenet121": 32, "densenet_tiny": 8}


@dataclass
class CXRConfig(TrainConfig):
    """The ``cxr`` trainer's config. Defaults follow TorchXRayVision's ``train_model.py``
    (lr 1e-3, batch 64, weight decay 1e-5, constant schedule, 224 px)."""

    model: str = "densenet121"
    image_size: int = 224
    image_format: str = "float"
    views: tuple[str, ...] = DEFAULT_VIEWS
    pathologies: tuple[str, ...] = PATHOLOGIES
    label_columns: tuple[str, ...] = PATHOLOGIES
    loss_reduction: str = "mean"
    drop_rate: float = 0.0
    batch_size: int = 64
    weight_decay: float = 1e-5
    scheduler: str = "constant"

    HELP: ClassVar[Mapping[str, str]] = {
        "model": f"{' | '.join(MODELS)} (torchvision DenseNet, one input channel, random init)",
        "image_size": "square side after the centre crop",
        "image_format": "float ([-1024, 1024] float32 batches) | uint8 (mapped to [-1024, 1024] on the device)",
        "views": 'views kept as frontal (meta["view"]); ["*"] keeps every image',
        "pathologies": "output columns, by name (a subset of label_columns)",
        "label_columns": "names of the shards' labels columns in order (default: the 18 harmonised pathologies)",
        "loss_reduction": "mean (over known labels) | task_sum (per-pathology means, summed: TorchXRayVision)",
        "drop_rate": "DenseNet dropout after each dense layer",
    }

    def validate(self) -> None:
        super().validate()
        for key, allowed in (("model", tuple(MODELS)), ("image_format", IMAGE_FORMATS), ("loss_reduction", LOSS_REDUCTIONS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"config key {key!r} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        if self.image_size < _MIN_SIZE[self.model]:
            raise ValueError(f"config key 'image_size' must be >= {_MIN_SIZE[self.model]} for {self.model}, got {self.image_size}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"config key 'drop_rate' must be in [0, 1), got {self.drop_rate!r}")
        if not self.views or ("*" in self.views and len(self.views) > 1):
            raise ValueError(f"config key 'views' must list view names, or be [\"*\"] for every view, got {list(self.views)}")
        for key in ("label_columns", "pathologies"):
            names = getattr(self, key)
            if not names or len(set(names)) != len(names):
                raise ValueError(f"config key {key!r} must be a non-empty list of distinct names, got {list(names)}")
        unknown = [name for name in self.pathologies if name not in self.label_columns]
        if unknown:
            raise ValueError(f"config key 'pathologies': {unknown} not in label_columns; valid: {list(self.label_columns)}")


def _views(cfg: CXRConfig) -> tuple[str, ...] | None:
    return None if cfg.views == ("*",) else cfg.views


def _fields(cfg: CXRConfig) -> tuple[str, ...]:
    return ("image", "labels") + (("meta",) if _views(cfg) is not None else ())


class CXRTask:
    """The ``cxr`` :class:`~pipelines.train.task.Task` (see the module docstring)."""

    name = "cxr"
    config_class = CXRConfig

    def build_model(self, cfg: CXRConfig) -> nn.Module:
        return CXRClassifier(build_backbone(cfg.model, len(cfg.pathologies), cfg.drop_rate))

    def sample_transform(self, cfg: CXRConfig) -> CXRSampleTransform:
        return CXRSampleTransform(cfg.image_size, cfg.image_format, _views(cfg), cfg.label_columns, cfg.pathologies)

    def train_loader(self, cfg: CXRConfig, *, rank: int, world_size: int, epoch: int) -> Iterable[Batch]:
        return shard_loader(cfg, "train", transform=self.sample_transform(cfg), batch_transform=keep_views, rank=rank,
                            world_size=world_size, epoch=epoch, fields=_fields(cfg))

    def eval_loader(self, cfg: CXRConfig) -> Iterable[Batch] | None:
        return eval_loader(cfg, transform=self.sample_transform(cfg), batch_transform=keep_views, fields=_fields(cfg))

    def training_step(self, model: nn.Module, batch: Batch, cfg: CXRConfig) -> tuple[torch.Tensor, dict[str, float]]:
        loss = masked_bce_with_logits(model(batch["image"]), batch["labels"], cfg.loss_reduction)
        return loss, {"dropped_views": float(batch["dropped"])}

    def evaluate(self, model: nn.Module, loader: Iterable[Batch], cfg: CXRConfig, out_dir: Path) -> dict[str, float]:
        """Masked BCE, per-pathology AUC and their mean over the frontal eval images; writes
        ``auc.json`` (per pathology: AUC or null, positives, negatives, unknown) into ``out_dir``."""
        device = next(model.parameters()).device
        logits, labels, dropped = [], [], 0
        for batch in loader:
            logits.append(model(batch["image"].to(device)).float().cpu())
            labels.append(batch["labels"])
            dropped += int(batch["dropped"])
        k = len(cfg.pathologies)
        scores = torch.cat(logits) if logits else torch.zeros(0, k)
        targets = torch.cat(labels) if labels else torch.zeros(0, k)
        report = per_pathology_auc(scores.numpy(), targets.numpy(), cfg.pathologies)  # AUC is rank-based: logits do
        table = {name: {"auc": None if math.isnan(report.per_pathology[name]) else report.per_pathology[name],
                        "positives": int((targets[:, j] == 1).sum()), "negatives": int((targets[:, j] == 0).sum()),
                        "unknown": int(torch.isnan(targets[:, j]).sum())} for j, name in enumerate(cfg.pathologies)}
        write_bytes_atomic(Path(out_dir) / "auc.json", (json.dumps(table, indent=1) + "\n").encode("utf-8"))
        return {"loss": float(masked_bce_with_logits(scores, targets, cfg.loss_reduction)), "samples": float(len(targets)),
                "dropped_views": float(dropped), **report.as_metrics()}


#: the trainer instance the registry loads (``pipelines.train.registry``)
TASK = CXRTask()


def small_scale_results(workdir: str | Path, seed: int) -> list[dict[str, Any]]:
    """Train the tiny DenseNet on a rendered NIH-layout set (:mod:`pipelines.train.cxr_synthetic`:
    160 train / 64 test images, 32 px, four drawn findings), once with float and once with uint8
    input, EMA on; rows with the setting, sizes, seed and the measured loss and AUCs.

    This is a smoke measurement: synthetic caricatures, not radiographs. Only the four drawn
    findings have both classes in the test set; the other 14 pathologies are skipped (NIH labels
    10 of them all 0 here, 4 are NaN), which the rows count. Reruns reuse the set and the runs.
    """
    from pipelines import build_shards
    from pipelines.train.config import load_config
    from pipelines.train.cxr_synthetic import FINDINGS, write_synthetic_nih
    from pipelines.train.loop import fit

    workdir = Path(workdir)
    sizes = {"train": 160, "test": 64}
    root = workdir / f"cxr-synthetic-nih-{seed}"
    if not (root / "Data_Entry_2017_v2020.csv").exists():
        write_synthetic_nih(root, train=sizes["train"], test=sizes["test"], size=32, seed=seed)
    for split in sizes:
        if not (workdir / f"cxr-{split}-{seed}" / "index.json").exists():
            build_shards("nih", workdir / f"cxr-{split}-{seed}", root=root, split=split)
    rows = []
    for image_format in IMAGE_FORMATS:
        overrides = [f"shards={workdir / f'cxr-train-{seed}'}", f"eval_shards={workdir / f'cxr-test-{seed}'}",
                     f"out={workdir / f'run-cxr-{image_format}-{seed}'}", "model=densenet_tiny", "image_size=32",
                     f"image_format={image_format}", "epochs=6", "batch_size=16", "lr=3e-3", "ema_decay=0.95",
                     "eval_every=6", f"seed={seed}", "progress=false"]
        result = fit(TASK, load_config(CXRConfig, overrides=overrides))
        train = [row["loss"] for row in result.metrics if row.get("kind") == "train"]
        final = result.final
        rows.append({
            "trainer": "cxr", "setting": f"densenet_tiny, {image_format} input" + (
                " (8-bit PNGs at native size: the same [-1024, 1024] values as float)" if image_format == "uint8" else ""),
            "dataset": "synthetic NIH-layout (rendered)",
            "image_size": 32, "train_samples": sizes["train"], "eval_samples": int(final.get("samples", 0)),
            "steps": result.steps, "seed": seed, "train_loss_first": train[0] if train else None,
            "train_loss_last": train[-1] if train else None,
            **{k: final[k] for k in ("loss", "auc_mean", "ema_auc_mean", "auc_defined", "auc_skipped") if k in final},
            **{f"auc/{name}": final[f"auc/{name}"] for name in FINDINGS if f"auc/{name}" in final},
            "note": "smoke measurement on rendered caricatures (no download): shows the trainer learns image "
                    "evidence, says nothing about real chest X-rays",
        })
    return rows
