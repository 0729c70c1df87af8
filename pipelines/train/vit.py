"""The ``vit`` trainer: a torchvision Vision Transformer on class shards, with patch-based negatives.

Recipe: ViT (Dosovitskiy et al., ICLR 2021) trained with the DeiT-style augmentations --
RandomResizedCrop + flip and RandAugment per sample (Cubuk et al., 2020), MixUp (Zhang et al.,
2018) / CutMix (Yun et al., 2019) with soft targets and label smoothing per batch -- and,
optionally, the patch-based negative augmentation of Qin et al. ("Understanding and Improving
Robustness of Vision Transformers through Patch-based Negative Augmentation", NeurIPS 2022,
arXiv 2110.07858):

* each training batch ``B`` is paired with its negative view ``B~`` (P-Shuffle, P-Rotate or
  P-Infill of every image, patch size a multiple of the model's, ``augment.NegativeViews``);
* the loss is ``L_ce(B) + lambda * L_neg(B, B~)`` with ``L_neg`` one of ``augment.losses``'
  uniform-label cross-entropy, negative L2 distance between the softmaxes, or supervised
  contrastive loss on the penultimate features (positives: same-class originals; negatives: the
  other classes' originals and every negative view). After MixUp/CutMix the contrastive class of
  an image is its dominant class (the arg-max of its soft target).

An EMA of the weights (``ema_decay``, the core's) is evaluated beside the raw weights, as Rebuffi
et al. (2021) show heavy augmentation pays off with weight averaging.

Evaluation (:meth:`ViTTask.evaluate`): clean top-1; the paper's Figure 2 measurement, top-1
against the *original* label on P-Shuffle / P-Rotate / P-Infill views of the eval set (negative
training should push it down); and, for each root given, ImageNet-A/R/C/V2/Sketch/ReaL
(:mod:`pipelines.train.robustness`). ``init_checkpoint`` starts from another run's weights, e.g.
an ``mae`` run's encoder for MAE fine-tuning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from augment import MixUpCutMix, NegativeViews, RandAugment, RandomHorizontalFlip, RandomResizedCrop, losses
from augment.functional import MIN_INFILL_GRID
from augment.losses import NEGATIVE_LOSSES
from augment.mix import MIX_MODES
from pipelines.train.checkpoint import load_checkpoint
from pipelines.train.config import TrainConfig
from pipelines.train.data import eval_loader, has_eval_data, shard_loader
from pipelines.train.files import write_bytes_atomic
from pipelines.train.models.vit_models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NAMED_ARCHS,
    build_vit,
    forward_with_features,
    normalize_images,
)
from pipelines.train.robustness import (
    PATCH_VIEWS,
    ROBUSTNESS_SETS,
    EvalImageTransform,
    check_label,
    evaluate_patch_views,
    evaluate_robustness,
    patch_view_ops,
)
from pipelines.train.task import Batch

__all__ = [
    "NEGATIVES",
    "TASK",
    "TrainImageTransform",
    "ViTConfig",
    "ViTTask",
    "load_backbone_weights",
    "model_patch_size",
    "negative_patch_size",
    "negative_term",
    "save_image_grid",
    "shapes_shards",
    "small_scale_results",
]

#: the ``negatives`` values: no negatives, or the patch op of the negative views
NEGATIVES = ("none", *PATCH_VIEWS)
_ARCHS = ("tiny", *NAMED_ARCHS)


@dataclass
class ViTConfig(TrainConfig):
    """``vit`` trainer options (the shared ones are :class:`~pipelines.train.config.TrainConfig`'s)."""

    arch: str = "tiny"
    image_size: int = 32
    num_classes: int = 1000
    patch_size: int = 4
    depth: int = 6
    hidden_dim: int = 192
    num_heads: int = 3
    mlp_dim: int = 768
    dropout: float = 0.0
    init_checkpoint: str = ""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    random_crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    randaugment_ops: int = 0
    randaugment_magnitude: int = 9
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_switch_prob: float = 0.5
    mix_prob: float = 1.0
    mix_mode: str = "batch"
    label_smoothing: float = 0.0
    negatives: str = "none"
    negative_loss: str = "contrastive"
    negative_weight: float = 1.0
    negative_patch_size: int = 0
    infill_rate: float = 0.25
    contrastive_temperature: float = 0.1
    crop_pct: float = 0.875
    eval_patch_views: tuple[str, ...] = PATCH_VIEWS
    eval_patch_size: int = 0
    imagenet_a: str = ""
    imagenet_r: str = ""
    imagenet_c: str = ""
    imagenet_c_corruptions: str = "all"
    imagenet_v2: str = ""
    imagenet_sketch: str = ""
    imagenet_real: str = ""
    real_json: str = ""
    robustness_max_samples: int = 0

    HELP: ClassVar[Mapping[str, str]] = {
        "arch": "tiny (the five size keys below) | " + " | ".join(NAMED_ARCHS) + " (torchvision, random init)",
        "image_size": "training and eval input side in pixels (a multiple of the patch size)",
        "num_classes": "classifier outputs (1000 for the ImageNet robustness sets)",
        "patch_size": "tiny: input patch side",
        "depth": "tiny: transformer blocks",
        "hidden_dim": "tiny: token width",
        "num_heads": "tiny: attention heads",
        "mlp_dim": "tiny: MLP hidden width",
        "dropout": "dropout after the position embedding and in the MLPs",
        "init_checkpoint": "a vit or mae run's ckpt.pt whose (encoder) weights start a fresh run (fine-tuning)",
        "mean": "per-channel input mean (of [0, 1] pixels)",
        "std": "per-channel input std",
        "random_crop": "RandomResizedCrop (else resize + centre crop as in eval)",
        "crop_scale": "RandomResizedCrop area range",
        "hflip": "random horizontal flip",
        "randaugment_ops": "RandAugment ops per image (0 = off)",
        "randaugment_magnitude": "RandAugment magnitude bin (of 31)",
        "mixup_alpha": "MixUp Beta parameter (0 = off)",
        "cutmix_alpha": "CutMix Beta parameter (0 = off)",
        "mix_switch_prob": "probability of CutMix when both are on",
        "mix_prob": "probability that a batch is mixed",
        "mix_mode": " | ".join(MIX_MODES),
        "label_smoothing": "label smoothing of the targets",
        "negatives": "patch-based negative views: " + " | ".join(NEGATIVES),
        "negative_loss": " | ".join(NEGATIVE_LOSSES) + " (Qin et al.; contrastive recommended)",
        "negative_weight": "lambda: weight of the negative loss (paper: 0.5, 1, 1.5)",
        "negative_patch_size": "patch side of the negative views (0 = 2 x the model's patch)",
        "infill_rate": "P-Infill replace rate (fraction of the image)",
        "contrastive_temperature": "temperature of the contrastive negative loss",
        "crop_pct": "eval: resize the shorter side to image_size / crop_pct, centre crop",
        "eval_patch_views": "patch views scored against the original label at eval",
        "eval_patch_size": "patch side of the eval views (0 = the negative patch size)",
        "imagenet_a": "ImageNet-A root (200-class masked top-1)",
        "imagenet_r": "ImageNet-R root (200-class masked top-1)",
        "imagenet_c": "ImageNet-C root (top-1 per corruption and severity, CE, mCE)",
        "imagenet_c_corruptions": "ImageNet-C corruption selection: all | benchmark | a name",
        "imagenet_v2": "ImageNetV2 root",
        "imagenet_sketch": "ImageNet-Sketch root",
        "imagenet_real": "ImageNet root with real.json: ReaL top-1 on val",
        "real_json": "ReaL labels file (default <imagenet_real>/real.json)",
        "robustness_max_samples": "evaluate an evenly spaced subset of each robustness set (0 = all)",
    }

    def validate(self) -> None:
        super().validate()
        for key, allowed in (("arch", _ARCHS), ("negatives", NEGATIVES), ("negative_loss", NEGATIVE_LOSSES),
                             ("mix_mode", MIX_MODES)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"config key {key!r} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        for key in ("image_size", "num_classes", "patch_size", "depth", "hidden_dim", "num_heads", "mlp_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"config key {key!r} must be >= 1, got {getattr(self, key)!r}")
        for key in ("randaugment_ops", "negative_patch_size", "eval_patch_size", "robustness_max_samples"):
            if getattr(self, key) < 0:
                raise ValueError(f"config key {key!r} must be >= 0, got {getattr(self, key)!r}")
        for key, low, high in (("dropout", 0.0, 1.0), ("label_smoothing", 0.0, 1.0), ("infill_rate", 0.0, 1.0)):
            if not low <= getattr(self, key) < high:
                raise ValueError(f"config key {key!r} must be in [{low}, {high}), got {getattr(self, key)!r}")
        for key in ("mix_switch_prob", "mix_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"config key {key!r} must be in [0, 1], got {getattr(self, key)!r}")
        for key in ("mixup_alpha", "cutmix_alpha", "negative_weight"):
            if not 0.0 <= getattr(self, key) < math.inf:
                raise ValueError(f"config key {key!r} must be a finite number >= 0, got {getattr(self, key)!r}")
        if not self.contrastive_temperature > 0:
            raise ValueError(f"config key 'contrastive_temperature' must be > 0, got {self.contrastive_temperature!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"config key 'crop_pct' must be in (0, 1], got {self.crop_pct!r}")
        if not 0 <= self.randaugment_magnitude < 31:
            raise ValueError(f"config key 'randaugment_magnitude' must be in [0, 30], got {self.randaugment_magnitude!r}")
        if not (0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0):
            raise ValueError(f"config key 'crop_scale' must be (low, high) with 0 < low <= high <= 1, got {list(self.crop_scale)}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"config key 'std' must be > 0 per channel, got {list(self.std)}")
        unknown = [v for v in self.eval_patch_views if v not in PATCH_VIEWS]
        if unknown:
            raise ValueError(f"config key 'eval_patch_views' must hold names from {list(PATCH_VIEWS)}, got {unknown}")
        patch = model_patch_size(self)
        if self.image_size % patch:
            raise ValueError(f"config key 'image_size' ({self.image_size}) must be a multiple of the model's patch size {patch}")
        if self.arch == "tiny" and self.hidden_dim % self.num_heads:
            raise ValueError(f"config key 'hidden_dim' ({self.hidden_dim}) must be divisible by 'num_heads' ({self.num_heads})")
        for key, size, views in (("negative_patch_size", negative_patch_size(self), [self.negatives]),
                                 ("eval_patch_size", _eval_patch_size(self), self.eval_patch_views)):
            if size % patch or self.image_size % size:
                raise ValueError(f"config key {key!r}: patch size {size} must be a multiple of the model's patch size "
                                 f"{patch} and divide image_size {self.image_size}")
            if "infill" in views and self.image_size // size < MIN_INFILL_GRID:
                raise ValueError(f"config key {key!r}: P-Infill needs a patch grid of at least {MIN_INFILL_GRID}x"
                                 f"{MIN_INFILL_GRID}, but patch size {size} gives {self.image_size // size}x"
                                 f"{self.image_size // size} on image_size {self.image_size}")
        roots = [key for key in ROBUSTNESS_SETS if getattr(self, key)]
        if roots and self.num_classes != 1000:
            raise ValueError(f"config keys {roots} evaluate in ImageNet's 1000-class space: set num_classes=1000 "
                             f"(got {self.num_classes})")


def model_patch_size(cfg: ViTConfig) -> int:
    """The model's input patch side (the named architectures fix theirs)."""
    return NAMED_ARCHS.get(cfg.arch, cfg.patch_size)


def negative_patch_size(cfg: ViTConfig) -> int:
    """Patch side of the negative views: ``cfg.negative_patch_size`` or twice the model's."""
    return cfg.negative_patch_size or 2 * model_patch_size(cfg)


def _eval_patch_size(cfg: ViTConfig) -> int:
    return cfg.eval_patch_size or negative_patch_size(cfg)


def _robustness_roots(cfg: ViTConfig) -> dict[str, str]:
    return {key: getattr(cfg, key) for key in ROBUSTNESS_SETS if getattr(cfg, key)}


def load_backbone_weights(model: nn.Module, checkpoint: str | Path) -> list[str]:
    """Load a ``vit`` or ``mae`` run's weights into ``model`` (a torchvision ViT).

    An ``mae`` checkpoint's ``encoder.*`` entries (the MAE encoder is a ``VisionTransformer``)
    load without the prefix; the classifier ``heads`` keep their fresh initialisation when the
    checkpoint has none (MAE) or a different number of classes. Any other missing, unexpected or
    mis-shaped entry raises ``ValueError`` naming it. Returns the names left at initialisation.
    """
    state = load_checkpoint(checkpoint)
    weights = state.get("model")
    if not isinstance(weights, Mapping):
        raise ValueError(f"checkpoint {str(checkpoint)!r} has no 'model' weights")
    if any(k.startswith("encoder.conv_proj.") for k in weights):  # an MAE: keep its encoder
        weights = {k[len("encoder."):]: v for k, v in weights.items() if k.startswith("encoder.")}
    own = model.state_dict()
    fresh = sorted(k for k in own if k.startswith("heads.") and (k not in weights or weights[k].shape != own[k].shape))
    weights = {k: v for k, v in weights.items() if k not in fresh}
    unexpected = sorted(set(weights) - set(own))
    missing = sorted(set(own) - set(weights) - set(fresh))
    shapes = sorted(k for k in set(weights) & set(own) if weights[k].shape != own[k].shape)
    if unexpected or missing or shapes:
        detail = "; ".join(f"{what}: {names[:5]}" for what, names in (("unexpected", unexpected), ("missing", missing),
                                                                         ("shape differs", shapes)) if names)
        raise ValueError(f"init_checkpoint {str(checkpoint)!r} does not fit this model ({detail}); check arch, "
                         "image_size and the size keys")
    model.load_state_dict(weights, strict=False)
    return fresh


class TrainImageTransform:
    """Per-sample training augmentation on uint8 ``[3,H,W]``: RandomResizedCrop (or resize + centre
    crop), horizontal flip, RandAugment; keeps ``image`` and ``label`` (when present; one outside
    ``[0, num_classes)`` raises ``ValueError`` naming the sample).

    Draws from torch's global generator, which the core seeds per sample key
    (:class:`pipelines.train.data.SeededTransform`): the same sample gets the same draws in any
    worker and after a resume.
    """

    def __init__(self, image_size: int, random_crop: bool = True, crop_scale: tuple[float, float] = (0.08, 1.0),
                 hflip: bool = True, randaugment_ops: int = 0, randaugment_magnitude: int = 9,
                 crop_pct: float = 0.875, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.crop: Any = (RandomResizedCrop(image_size, scale=crop_scale) if random_crop
                          else EvalImageTransform(image_size, crop_pct))
        self.flip = RandomHorizontalFlip() if hflip else None
        self.randaugment = RandAugment(randaugment_ops, randaugment_magnitude) if randaugment_ops else None

    @classmethod
    def from_config(cls, cfg: ViTConfig) -> TrainImageTransform:
        return cls(cfg.image_size, cfg.random_crop, cfg.crop_scale, cfg.hflip, cfg.randaugment_ops,
                   cfg.randaugment_magnitude, cfg.crop_pct, cfg.num_classes)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.crop, EvalImageTransform):
            image = self.crop({"image": sample["image"], "label": 0})["image"]
        else:
            image = self.crop(sample["image"])
        if self.flip is not None:
            image = self.flip(image)
        if self.randaugment is not None:
            image = self.randaugment(image)
        out = {"image": image}
        if "label" in sample:  # mae pre-training reads unlabelled shards too
            out["label"] = check_label(sample, self.num_classes)
        return out

    def __repr__(self) -> str:
        return f"TrainImageTransform({self.crop!r}, flip={self.flip!r}, randaugment={self.randaugment!r})"


def _eval_transform(cfg: ViTConfig) -> EvalImageTransform:
    return EvalImageTransform(cfg.image_size, cfg.crop_pct, num_classes=cfg.num_classes)


def _negative_views(cfg: ViTConfig) -> NegativeViews:
    op = patch_view_ops(negative_patch_size(cfg), model_patch_size(cfg), cfg.infill_rate, [cfg.negatives])[cfg.negatives]
    return NegativeViews(op)


_NEGATIVE_TERMS = {
    "uniform": lambda cfg, z, z_neg, f, f_neg, y: losses.negative_uniform_loss(z_neg),
    "l2": lambda cfg, z, z_neg, f, f_neg, y: losses.negative_l2_loss(z, z_neg),
    "contrastive": lambda cfg, z, z_neg, f, f_neg, y: losses.negative_contrastive_loss(f, f_neg, y, cfg.contrastive_temperature),
}


def negative_term(cfg: ViTConfig, logits: torch.Tensor, logits_negative: torch.Tensor, features: torch.Tensor,
                  features_negative: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``L_neg`` of Qin et al. for ``cfg.negative_loss`` (``labels``: int64 classes ``[B]``)."""
    return _NEGATIVE_TERMS[cfg.negative_loss](cfg, logits, logits_negative, features, features_negative, labels)


class ViTTask:
    """The ``vit`` :class:`~pipelines.train.task.Task`."""

    name = "vit"
    config_class = ViTConfig

    def build_model(self, cfg: ViTConfig) -> nn.Module:
        model = build_vit(cfg.arch, image_size=cfg.image_size, num_classes=cfg.num_classes, patch_size=cfg.patch_size,
                          depth=cfg.depth, hidden_dim=cfg.hidden_dim, num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim,
                          dropout=cfg.dropout)
        # the init weights start a fresh run only: a resumed run (and evaluate_run) load the run's own checkpoint
        if cfg.init_checkpoint and not (cfg.out and (Path(cfg.out) / "ckpt.pt").exists()):
            load_backbone_weights(model, cfg.init_checkpoint)
        return model

    def train_loader(self, cfg: ViTConfig, *, rank: int, world_size: int, epoch: int) -> Iterable[Batch]:
        return shard_loader(cfg, "train", transform=TrainImageTransform.from_config(cfg), rank=rank,
                            world_size=world_size, epoch=epoch, decode="RGB", fields=("image", "label"))

    def eval_loader(self, cfg: ViTConfig) -> Iterable[Batch] | None:
        if has_eval_data(cfg):
            return eval_loader(cfg, transform=_eval_transform(cfg), decode="RGB", fields=("image", "label"))
        return [] if _robustness_roots(cfg) else None  # robustness sets alone still call evaluate

    def training_step(self, model: nn.Module, batch: Batch, cfg: ViTConfig) -> tuple[torch.Tensor, dict[str, float]]:
        images = normalize_images(batch["image"], cfg.mean, cfg.std)
        labels = batch["label"].long()
        target: torch.Tensor = labels
        if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
            mixer = MixUpCutMix(cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mix_switch_prob, cfg.mix_prob, cfg.mix_mode,
                                label_smoothing=cfg.label_smoothing, num_classes=cfg.num_classes)
            images, target = mixer(images, labels)
        smoothing = cfg.label_smoothing if target.ndim == 1 else 0.0  # soft targets are smoothed already
        if cfg.negatives == "none":
            logits = model(images)
            loss = F.cross_entropy(logits.float(), target, label_smoothing=smoothing)
            return loss, {"ce": float(loss.detach())}
        _, negatives = _negative_views(cfg)(images)
        logits_all, features_all = forward_with_features(model, torch.cat([images, negatives]))
        logits, logits_negative = logits_all.float().chunk(2)
        features, features_negative = features_all.float().chunk(2)
        ce = F.cross_entropy(logits, target, label_smoothing=smoothing)
        hard = target if target.ndim == 1 else target.argmax(dim=1)
        negative = negative_term(cfg, logits, logits_negative, features, features_negative, hard)
        loss = ce + cfg.negative_weight * negative
        return loss, {"ce": float(ce.detach()), "neg": float(negative.detach())}

    def evaluate(self, model: nn.Module, loader: Iterable[Batch], cfg: ViTConfig, out_dir: Path) -> dict[str, float]:
        device = next(model.parameters()).device
        Path(out_dir).mkdir(parents=True, exist_ok=True)

        def predict(images: torch.Tensor) -> torch.Tensor:
            return model(normalize_images(images.to(device), cfg.mean, cfg.std)).float()

        ops = patch_view_ops(_eval_patch_size(cfg), model_patch_size(cfg), cfg.infill_rate, cfg.eval_patch_views)
        generator = torch.Generator().manual_seed(cfg.seed)  # the same views for every evaluation
        batches = _FirstBatch(loader)
        metrics = evaluate_patch_views(predict, batches, ops, generator=generator)
        if batches.first is not None:
            _save_patch_views(batches.first["image"][:4], ops, Path(out_dir) / "patch_views.png", cfg.seed)
        else:
            metrics = {}
        roots = _robustness_roots(cfg)
        if roots:
            metrics.update(evaluate_robustness(
                predict, roots, image_size=cfg.image_size, crop_pct=cfg.crop_pct, batch_size=cfg.batch_size,
                num_workers=cfg.num_workers, max_samples=cfg.robustness_max_samples,
                c_corruptions=cfg.imagenet_c_corruptions, real_json=cfg.real_json, out_dir=out_dir))
        return metrics


class _FirstBatch:
    """Iterate ``batches`` once, keeping the first one (for the preview PNG)."""

    def __init__(self, batches: Iterable[Batch]) -> None:
        self.batches, self.first = batches, None

    def __iter__(self):
        for batch in self.batches:
            if self.first is None:
                self.first = batch
            yield batch


def save_image_grid(columns: list[torch.Tensor], path: Path, min_side: int = 96) -> None:
    """Write a PNG grid: row ``i`` holds image ``i`` of each uint8 ``[B,3,H,W]`` column, scaled up
    (nearest neighbour) so that small images are at least ``min_side`` pixels high."""
    from io import BytesIO

    from PIL import Image
    from torchvision.utils import make_grid

    cells = torch.stack([c.cpu() for c in columns], dim=1).flatten(0, 1)
    scale = max(1, -(-min_side // cells.shape[-2]))
    if scale > 1:
        cells = cells.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    grid = make_grid(cells, nrow=len(columns), padding=2, pad_value=255)
    buffer = BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


def _save_patch_views(images: torch.Tensor, ops: Mapping[str, Any], path: Path, seed: int) -> None:
    """A PNG grid: one row per image, columns clean then each patch view."""
    generator = torch.Generator().manual_seed(seed)
    images = images.cpu()
    save_image_grid([images] + [op(images, generator=generator) for op in ops.values()], path)


TASK = ViTTask()


def small_scale_results(workdir: str | Path, seed: int) -> list[dict[str, Any]]:
    """ViT-tiny on the ``shapes`` demo data, without and with P-Shuffle negatives (each loss):
    clean top-1 and top-1 on patch-transformed views of the eval set.

    ViT-tiny here: 32 px, patch 8 (16 tokens), 4 blocks of width 96; 1,200 training and 300
    validation images, 10 epochs of batch 64; negative views at the model's patch size (8).

    Sizes fit a few minutes on two CPU cores; nothing is tuned towards an outcome.
    """
    from pipelines.train.config import load_config
    from pipelines.train.loop import fit

    work = Path(workdir)
    train, val = shapes_shards(work / "data", seed=seed, train_size=1200, val_size=300, resolution=32)
    common = [f"shards={train}", f"eval_shards={val}", f"seed={seed}", "num_classes=6", "image_size=32",
              "patch_size=8", "depth=4", "hidden_dim=96", "num_heads=3", "mlp_dim=192", "epochs=10", "eval_every=10",
              "batch_size=64", "lr=1e-3", "warmup_steps=20", "crop_scale=[0.35, 1.0]", "negative_patch_size=8",
              "progress=false", "log_every=20"]
    settings = [("baseline", ["negatives=none"])] + [
        (f"p-shuffle/{loss}", ["negatives=shuffle", f"negative_loss={loss}", "negative_weight=1.0"])
        for loss in NEGATIVE_LOSSES
    ]
    rows = []
    for name, extra in settings:
        out = work / "runs" / name.replace("/", "-")
        started = time.perf_counter()
        cfg = load_config(ViTConfig, overrides=[*common, *extra, f"out={out}"])
        result = fit(TASK, cfg)
        rows.append({"trainer": "vit", "setting": name, "seed": seed, "train_samples": 1200, "eval_samples": 300,
                     "image_size": 32, "patch_size": cfg.patch_size, "epochs": cfg.epochs, "steps": result.steps,
                     "seconds": round(time.perf_counter() - started, 1), **result.final})
    return rows


def shapes_shards(folder: str | Path, *, seed: int, train_size: int, val_size: int, resolution: int) -> tuple[Path, Path]:
    """Shard sets of the embedded ``shapes`` data (its ``train`` and ``val`` splits) under
    ``folder``; built once (a rerun with the same settings resumes, i.e. keeps them)."""
    from pipelines.build import build_shards

    out = []
    for split, size in (("train", train_size), ("val", val_size)):
        target = Path(folder) / f"shapes-{split}-{size}-{resolution}px-seed{seed}"
        build_shards("shapes", target, split=split, options={"size": size, "resolution": resolution, "seed": seed},
                     max_count=max(size, 1))
        out.append(target)
    return out[0], out[1]
