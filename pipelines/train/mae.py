"""The ``mae`` trainer: masked-autoencoder pre-training (He et al., "Masked Autoencoders Are
Scalable Vision Learners", CVPR 2022) of a torchvision ViT encoder on image shards.

Recipe (:class:`~pipelines.train.models.mae_model.MaskedAutoencoder`): per sample,
``augment.RandomMasking`` keeps 25% of the patch tokens (``mask_ratio=0.75``); the encoder runs on
those visible tokens only; a light decoder reconstructs the per-patch normalised pixels and the
MSE is taken on the masked patches only. Augmentation is RandomResizedCrop (scale 0.2-1) + flip,
as in the paper.

Evaluation: the reconstruction loss on the eval set (fixed masks), a reconstruction PNG, and a
**linear probe** -- a linear classifier on the frozen encoder's class-token features (standardised
with the training features' mean and variance, as the paper's BatchNorm without affine), fitted
on up to ``probe_max_samples`` training images and scored on the eval set. **Fine-tuning** goes
through the ``vit`` trainer: ``datafactory train vit --set init_checkpoint=RUN/ckpt.pt ...`` loads
this run's encoder (the same architecture keys).

:func:`encoder_step_ratio` measures the point of the design: an encoder step on the visible 25%
of the tokens against one on all of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.train.config import TrainConfig
from pipelines.train.data import eval_loader, has_eval_data, shard_loader
from pipelines.train.dist import unwrap
from pipelines.train.models.mae_model import MaskedAutoencoder, patchify, unpatchify
from pipelines.train.models.vit_models import IMAGENET_MEAN, IMAGENET_STD, NAMED_ARCHS, build_vit, normalize_images
from pipelines.train.robustness import EvalImageTransform
from pipelines.train.task import Batch
from pipelines.train.vit import TrainImageTransform, save_image_grid, shapes_shards

__all__ = ["MAEConfig", "MAETask", "TASK", "build_mae", "encoder_step_ratio", "linear_probe", "small_scale_results"]

_ARCHS = ("tiny", *NAMED_ARCHS)


@dataclass
class MAEConfig(TrainConfig):
    """``mae`` trainer options (the shared ones are :class:`~pipelines.train.config.TrainConfig`'s)."""

    arch: str = "tiny"
    image_size: int = 32
    patch_size: int = 4
    depth: int = 6
    hidden_dim: int = 192
    num_heads: int = 3
    mlp_dim: int = 768
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    random_crop: bool = True
    crop_scale: tuple[float, float] = (0.2, 1.0)
    hflip: bool = True
    crop_pct: float = 0.875
    probe: bool = True
    num_classes: int = 0
    probe_max_samples: int = 4096
    probe_steps: int = 100
    probe_weight_decay: float = 1e-4

    HELP: ClassVar[Mapping[str, str]] = {
        "arch": "encoder: tiny (the five size keys below) | " + " | ".join(NAMED_ARCHS) + " (torchvision, random init)",
        "image_size": "input side in pixels (a multiple of the patch size)",
        "patch_size": "tiny: input patch side",
        "depth": "tiny: encoder blocks",
        "hidden_dim": "tiny: encoder width",
        "num_heads": "tiny: encoder heads",
        "mlp_dim": "tiny: encoder MLP width",
        "decoder_dim": "decoder width (paper: 512)",
        "decoder_depth": "decoder blocks (paper: 8)",
        "decoder_heads": "decoder heads (paper: 16)",
        "mask_ratio": "fraction of patches removed per image (paper: 0.75)",
        "norm_pix_loss": "reconstruct per-patch normalised pixels",
        "mean": "per-channel input mean (of [0, 1] pixels)",
        "std": "per-channel input std",
        "random_crop": "RandomResizedCrop (else resize + centre crop)",
        "crop_scale": "RandomResizedCrop area range (paper: 0.2-1)",
        "hflip": "random horizontal flip",
        "crop_pct": "eval: resize the shorter side to image_size / crop_pct, centre crop",
        "probe": "linear probe at eval (needs labelled train and eval shards)",
        "num_classes": "probe classes (0 = the largest label seen + 1)",
        "probe_max_samples": "training images whose features fit the probe",
        "probe_steps": "L-BFGS iterations of the probe",
        "probe_weight_decay": "L2 penalty of the probe",
    }

    def validate(self) -> None:
        super().validate()
        if self.arch not in _ARCHS:
            raise ValueError(f"config key 'arch' must be one of {list(_ARCHS)}, got {self.arch!r}")
        for key in ("image_size", "patch_size", "depth", "hidden_dim", "num_heads", "mlp_dim", "decoder_dim",
                    "decoder_depth", "decoder_heads", "probe_max_samples", "probe_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"config key {key!r} must be >= 1, got {getattr(self, key)!r}")
        if self.num_classes < 0:
            raise ValueError(f"config key 'num_classes' must be >= 0, got {self.num_classes!r}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"config key 'mask_ratio' must be in [0, 1), got {self.mask_ratio!r}")
        if self.decoder_dim % self.decoder_heads or self.decoder_dim % 4:
            raise ValueError(f"config key 'decoder_dim' ({self.decoder_dim}) must be a multiple of 4 and of "
                             f"'decoder_heads' ({self.decoder_heads})")
        patch = NAMED_ARCHS.get(self.arch, self.patch_size)
        if self.image_size % patch:
            raise ValueError(f"config key 'image_size' ({self.image_size}) must be a multiple of the patch size {patch}")
        if self.arch == "tiny" and self.hidden_dim % self.num_heads:
            raise ValueError(f"config key 'hidden_dim' ({self.hidden_dim}) must be divisible by 'num_heads' ({self.num_heads})")
        if not (0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0):
            raise ValueError(f"config key 'crop_scale' must be (low, high) with 0 < low <= high <= 1, got {list(self.crop_scale)}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"config key 'crop_pct' must be in (0, 1], got {self.crop_pct!r}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"config key 'std' must be > 0 per channel, got {list(self.std)}")
        if not self.probe_weight_decay >= 0:
            raise ValueError(f"config key 'probe_weight_decay' must be >= 0, got {self.probe_weight_decay!r}")


def build_mae(cfg: MAEConfig) -> MaskedAutoencoder:
    """The MAE of ``cfg`` (random init)."""
    encoder = build_vit(cfg.arch, image_size=cfg.image_size, num_classes=1, patch_size=cfg.patch_size, depth=cfg.depth,
                        hidden_dim=cfg.hidden_dim, num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim)
    return MaskedAutoencoder(encoder, decoder_dim=cfg.decoder_dim, decoder_depth=cfg.decoder_depth,
                             decoder_heads=cfg.decoder_heads, mask_ratio=cfg.mask_ratio, norm_pix_loss=cfg.norm_pix_loss)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, *,
                 num_classes: int, steps: int = 100, weight_decay: float = 1e-4) -> dict[str, float]:
    """Fit ``softmax(W z + b)`` on standardised training features (full-batch L-BFGS, cross-entropy
    + ``weight_decay * |W|^2``) and score it: ``{"probe_top1", "probe_train_top1"}``."""
    train_x, test_x = train_x.float().cpu(), test_x.float().cpu()
    train_y, test_y = train_y.cpu(), test_y.cpu()
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-6)
    train_z, test_z = (train_x - mean) / std, (test_x - mean) / std
    linear = nn.Linear(train_x.shape[1], num_classes, dtype=train_x.dtype)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(train_z), train_y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), torch.autocast("cpu", enabled=False):  # full precision even under the run's AMP
        optimizer.step(closure)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        test = (linear(test_z).argmax(1) == test_y).float().mean()
        train = (linear(train_z).argmax(1) == train_y).float().mean()
    return {"probe_top1": float(test), "probe_train_top1": float(train)}


def _features(model: MaskedAutoencoder, batches: Iterable[Batch], cfg: MAEConfig, device: torch.device,
              limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    features, labels, seen = [], [], 0
    for batch in batches:
        if "label" not in batch:
            raise ValueError("the linear probe needs labelled shards (a 'label' field); set probe=false to skip it")
        images = normalize_images(batch["image"].to(device), cfg.mean, cfg.std)
        features.append(model.features(images).float().cpu())
        labels.append(torch.as_tensor(batch["label"]).long())
        seen += len(labels[-1])
        if limit is not None and seen >= limit:
            break
    if not features:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(features)[:limit], torch.cat(labels)[:limit]


class MAETask:
    """The ``mae`` :class:`~pipelines.train.task.Task`."""

    name = "mae"
    config_class = MAEConfig

    def build_model(self, cfg: MAEConfig) -> nn.Module:
        return build_mae(cfg)

    def train_loader(self, cfg: MAEConfig, *, rank: int, world_size: int, epoch: int) -> Iterable[Batch]:
        transform = TrainImageTransform(cfg.image_size, cfg.random_crop, cfg.crop_scale, cfg.hflip, 0, 9, cfg.crop_pct)
        return shard_loader(cfg, "train", transform=transform, rank=rank, world_size=world_size, epoch=epoch,
                            decode="RGB", fields=("image",))

    def eval_loader(self, cfg: MAEConfig) -> Iterable[Batch] | None:
        if not has_eval_data(cfg):
            return None
        return eval_loader(cfg, transform=EvalImageTransform(cfg.image_size, cfg.crop_pct), decode="RGB",
                           fields=("image", "label") if cfg.probe else ("image",))

    def training_step(self, model: nn.Module, batch: Batch, cfg: MAEConfig) -> tuple[torch.Tensor, dict[str, float]]:
        loss, _, _ = model(normalize_images(batch["image"], cfg.mean, cfg.std))
        return loss, {}

    def evaluate(self, model: nn.Module, loader: Iterable[Batch], cfg: MAEConfig, out_dir: Path) -> dict[str, float]:
        mae = unwrap(model)
        if not isinstance(mae, MaskedAutoencoder):
            raise TypeError(f"expected a MaskedAutoencoder, got {type(mae).__name__}")
        device = next(mae.parameters()).device
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        generator = torch.Generator(device="cpu").manual_seed(cfg.seed)  # the same masks at every evaluation
        total, count, first = 0.0, 0, None
        eval_features, eval_labels = [], []
        for batch in loader:
            images = normalize_images(batch["image"].to(device), cfg.mean, cfg.std)
            loss, pred, mask = mae(images, generator=generator)
            total += float(loss) * len(images)
            count += len(images)
            if first is None:
                first = (batch["image"][:4], pred[:4].float().cpu(), mask[:4].cpu(), images[:4].float().cpu())
            if cfg.probe:
                features, labels = _features(mae, [batch], cfg, device)
                eval_features.append(features)
                eval_labels.append(labels)
        if not count:
            return {}
        metrics = {"loss": total / count, "samples": float(count)}
        _save_reconstructions(*first, mae.patch_size, cfg, Path(out_dir) / "reconstructions.png")
        if cfg.probe:
            probe_batches = shard_loader(cfg, "train", transform=EvalImageTransform(cfg.image_size, cfg.crop_pct),
                                         rank=0, world_size=1, epoch=0, decode="RGB", fields=("image", "label"),
                                         shuffle=False, drop_last=False)
            train_x, train_y = _features(mae, probe_batches, cfg, device, limit=cfg.probe_max_samples)
            test_x, test_y = torch.cat(eval_features), torch.cat(eval_labels)
            classes = cfg.num_classes or int(max(train_y.max(), test_y.max())) + 1
            if int(max(train_y.max(), test_y.max())) >= classes:
                raise ValueError(f"config key 'num_classes' ({cfg.num_classes}) is too small for label "
                                 f"{int(max(train_y.max(), test_y.max()))}")
            metrics.update(linear_probe(train_x, train_y, test_x, test_y, num_classes=classes, steps=cfg.probe_steps,
                                        weight_decay=cfg.probe_weight_decay))
            metrics["probe_train_samples"] = float(len(train_y))
        return metrics


def _save_reconstructions(images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, normalized: torch.Tensor,
                          patch_size: int, cfg: MAEConfig, path: Path) -> None:
    """A PNG grid: one row per image -- original, visible patches, reconstruction (visible
    patches pasted back), with normalised-pixel predictions mapped back by each patch's statistics."""
    target = patchify(normalized, patch_size)
    if cfg.norm_pix_loss:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6).sqrt() + mean
    hidden = mask[..., None].bool()
    masked = unpatchify(target.masked_fill(hidden, 0.0), patch_size)
    pasted = unpatchify(torch.where(hidden, pred, target), patch_size)
    channel_mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    channel_std = torch.tensor(cfg.std).view(1, 3, 1, 1)

    def to_uint8(x: torch.Tensor) -> torch.Tensor:
        return ((x * channel_std + channel_mean).clamp(0, 1) * 255).round().to(torch.uint8)

    save_image_grid([images.cpu(), to_uint8(masked), to_uint8(pasted)], path)


TASK = MAETask()


def encoder_step_ratio(*, arch: str = "tiny", image_size: int = 224, patch_size: int = 16, depth: int = 6,
                       hidden_dim: int = 192, num_heads: int = 3, mlp_dim: int = 768, batch_size: int = 16,
                       mask_ratio: float = 0.75, steps: int = 5, device: str = "cpu", seed: int = 0) -> dict[str, float]:
    """Time an encoder training step (forward + backward) on the visible tokens only against one on
    all tokens, same encoder, same batch (He et al. report 2.8-4.1x faster pre-training from it).

    The two are timed alternately after one warm-up step each; each figure is the minimum over
    ``steps`` rounds (the least disturbed by other load on a shared machine). Returns ``{"visible_tokens", "all_tokens", "visible_s", "all_s", "ratio"}``
    (``ratio = visible_s / all_s``; the target is <= 0.4 at a 75% mask).
    """
    torch.manual_seed(seed)
    encoder = build_vit(arch, image_size=image_size, num_classes=1, patch_size=patch_size, depth=depth,
                        hidden_dim=hidden_dim, num_heads=num_heads, mlp_dim=mlp_dim)
    mae = MaskedAutoencoder(encoder, decoder_dim=32, decoder_depth=1, decoder_heads=1, mask_ratio=mask_ratio).to(device)
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    synchronize = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def step(ratio: float) -> tuple[float, int]:
        mae.zero_grad(set_to_none=True)
        synchronize()
        start = time.perf_counter()
        latent, _, _ = mae.forward_encoder(images, mask_ratio=ratio)
        latent.float().pow(2).mean().backward()
        synchronize()
        return time.perf_counter() - start, latent.shape[1]

    step(mask_ratio)
    step(0.0)
    visible, everything = [], []
    for _ in range(steps):
        seconds, visible_tokens = step(mask_ratio)
        visible.append(seconds)
        seconds, all_tokens = step(0.0)
        everything.append(seconds)
    visible_s, all_s = min(visible), min(everything)
    return {"visible_tokens": float(visible_tokens), "all_tokens": float(all_tokens), "visible_s": visible_s,
            "all_s": all_s, "ratio": visible_s / all_s}


def small_scale_results(workdir: str | Path, seed: int) -> list[dict[str, Any]]:
    """MAE pre-training of a ViT-tiny encoder on the ``shapes`` demo data: the linear probe of the
    pre-trained encoder against the same probe on a randomly initialised encoder.

    Encoder: 32 px, patch 4 (64 tokens, 16 visible at the 75% mask), 4 blocks of width 96; decoder:
    1 block of width 64; 1,200 training and 300 validation images, 10 epochs of batch 64.

    Sizes fit a few minutes on two CPU cores; nothing is tuned towards an outcome.
    """
    from pipelines.train.config import load_config
    from pipelines.train.dist import resolve_device
    from pipelines.train.loop import evaluate_model, fit

    work = Path(workdir)
    train, val = shapes_shards(work / "data", seed=seed, train_size=1200, val_size=300, resolution=32)
    common = [f"shards={train}", f"eval_shards={val}", f"seed={seed}", "image_size=32", "patch_size=4", "depth=4",
              "hidden_dim=96", "num_heads=3", "mlp_dim=192", "decoder_dim=64", "decoder_depth=1", "decoder_heads=4",
              "batch_size=64", "lr=1.5e-3", "warmup_steps=20", "num_classes=6", "progress=false", "log_every=20"]
    rows = []
    started = time.perf_counter()
    pretrained = load_config(MAEConfig, overrides=[*common, "epochs=10", "eval_every=10", f"out={work / 'runs' / 'mae'}"])
    result = fit(TASK, pretrained)
    rows.append({"trainer": "mae", "setting": "mae-pretrained", "seed": seed, "train_samples": 1200, "eval_samples": 300,
                 "image_size": 32, "epochs": pretrained.epochs, "steps": result.steps, "mask_ratio": pretrained.mask_ratio,
                 "seconds": round(time.perf_counter() - started, 1), **result.final})
    random_cfg = load_config(MAEConfig, overrides=[*common, f"out={work / 'runs' / 'random-init'}"])
    torch.manual_seed(seed)
    model = TASK.build_model(random_cfg)
    device = resolve_device(random_cfg.device)
    metrics = evaluate_model(TASK, model.to(device), random_cfg, work / "runs" / "random-init", device)
    rows.append({"trainer": "mae", "setting": "random-init", "seed": seed, "train_samples": 1200, "eval_samples": 300,
                 "image_size": 32, "epochs": 0, "steps": 0, "mask_ratio": random_cfg.mask_ratio, **metrics})
    return rows
