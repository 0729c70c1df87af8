"""Train the bundled StyleGAN2-style generator (the generator side of DatasetGAN).

Recipe (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020,
arXiv:1912.04958; Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
NeurIPS 2020, arXiv:2006.10738):

- non-saturating logistic loss: ``L_G = softplus(-D(G(z)))``, ``L_D = softplus(D(G(z))) +
  softplus(-D(x))``;
- R1 penalty ``gamma / 2 * ||grad_x D(x)||^2`` on real images, applied lazily every ``r1_every``
  steps with the penalty scaled by ``r1_every`` and the discriminator's Adam lr/betas adjusted
  by ``c = k / (k + 1)`` (the paper's lazy regularisation);
- Adam with ``betas = (0, 0.99)``; an exponential moving average of the generator (half-life
  ``ema_images`` images, ramped up over the first images seen) is the generator that is saved;
- optional DiffAugment (:mod:`datafactory.gan.diffaugment`) of every discriminator input.

All randomness (initial weights, minibatches, latents, noise, augmentation) comes from CPU
``torch.Generator`` objects seeded from ``cfg.seed``, so a run is deterministic by seed and a
resumed run equals an uninterrupted one bit for bit on the CPU.

Outputs in ``out_dir``: ``generator.pt`` (EMA generator ``state_dict``) + ``generator.json``
(network config + training info; read by :func:`datafactory.gan.generator.load_generator`),
``checkpoint.pt`` (G, D, EMA, optimizers, step, RNG states: resume), ``metrics.jsonl``,
``metrics.png`` and ``samples.png`` (a grid of EMA samples). Everything is written atomically
and read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .diffaugment import diff_augment, parse_policy
from .stylegan import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator, strict_fields

__all__ = [
    "GanTrainConfig",
    "GanTrainResult",
    "train_gan",
    "generator_loss",
    "discriminator_loss",
    "r1_penalty",
    "ema_update",
    "ema_beta",
    "save_image_grid",
]

GENERATOR_FORMAT = "datafactory.gan.generator"
_CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class GanTrainConfig:
    """The training recipe. Defaults are the "real use" setting; :meth:`quick` is the demo one.

    Attributes:
        model: the network shape (:class:`StyleGAN2Config`).
        steps: optimizer steps (one generator and one discriminator update each).
        batch_size: images per step.
        lr_g, lr_d: Adam learning rates (betas ``(0, 0.99)``).
        r1_gamma: weight of the R1 penalty; ``r1_every``: lazy regularisation interval (0: off).
        ema_images: EMA half-life in images; ``ema_rampup``: the half-life is at most this
            fraction of the images seen so far (``None``: no ramp-up).
        diffaugment: comma-separated DiffAugment policy from ``color``, ``translation``, ``cutout``
            (``""``: off). The paper's full policy suits sets of a few hundred images or fewer; on
            the 1000-image demo set translation alone trained fastest in CPU minutes.
        w_avg_beta: running-mean decay of ``w`` (truncation trick).
        seed: seeds weights, minibatches, latents, noise and augmentation.
        log_every, checkpoint_every: steps between metric lines / checkpoints (0: at the end only).
        max_images: the most training images held in memory.
        sample_grid: images in ``samples.png`` (a square number; 0: none).
    """

    model: StyleGAN2Config = field(default_factory=StyleGAN2Config)
    steps: int = 3000
    batch_size: int = 16
    lr_g: float = 0.0025
    lr_d: float = 0.0025
    r1_gamma: float = 0.2
    r1_every: int = 16
    ema_images: int = 10_000
    ema_rampup: float | None = 0.05
    diffaugment: str = "translation"
    w_avg_beta: float = 0.995
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 500
    max_images: int = 100_000
    sample_grid: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            object.__setattr__(self, "model", StyleGAN2Config.from_dict(self.model))
        if not isinstance(self.model, StyleGAN2Config):
            raise TypeError(f"GanTrainConfig.model must be a StyleGAN2Config, got {type(self.model).__name__}")
        for name, low in (("steps", 1), ("batch_size", 1), ("r1_every", 0), ("ema_images", 1), ("seed", 0),
                          ("log_every", 0), ("checkpoint_every", 0), ("max_images", 1), ("sample_grid", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"GanTrainConfig.{name} must be an int >= {low}, got {value!r}")
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"GanTrainConfig.{name} must be in (0, 1), got {value!r}")
        if isinstance(self.r1_gamma, bool) or not isinstance(self.r1_gamma, (int, float)) or self.r1_gamma < 0:
            raise ValueError(f"GanTrainConfig.r1_gamma must be >= 0, got {self.r1_gamma!r}")
        if self.ema_rampup is not None and not (isinstance(self.ema_rampup, (int, float)) and 0 < self.ema_rampup <= 1):
            raise ValueError(f"GanTrainConfig.ema_rampup must be in (0, 1] or None, got {self.ema_rampup!r}")
        if not (isinstance(self.w_avg_beta, (int, float)) and 0 <= self.w_avg_beta < 1):
            raise ValueError(f"GanTrainConfig.w_avg_beta must be in [0, 1), got {self.w_avg_beta!r}")
        try:
            parse_policy(self.diffaugment)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"GanTrainConfig.diffaugment: {exc}") from None
        g = self.sample_grid
        if g and math.isqrt(g) ** 2 != g:
            raise ValueError(f"GanTrainConfig.sample_grid must be a square number (e.g. 64), got {g}")

    @classmethod
    def quick(cls, **overrides: Any) -> "GanTrainConfig":
        """The demo setting: 500 steps, about a minute on two CPU cores at 32 px (coloured blobs on a
        grey textured ground: recognisable, not good)."""
        base = cls(steps=500, log_every=25, checkpoint_every=100)
        return replace(base, **overrides) if overrides else base

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GanTrainConfig":
        """Strict: unknown keys raise ``KeyError`` naming them and the allowed keys."""
        values = strict_fields(cls, data)
        if "model" in values:
            values["model"] = StyleGAN2Config.from_dict(values["model"])
        return cls(**values)


@dataclass(frozen=True)
class GanTrainResult:
    """What :func:`train_gan` produced."""

    out_dir: Path
    generator_path: Path
    config_path: Path
    checkpoint_path: Path
    metrics_path: Path
    samples_path: Path | None
    steps: int
    images_seen: int
    wall_time_s: float
    num_training_images: int
    last_metrics: dict[str, float]

    def load(self, *, device: torch.device | str | None = None):
        """The trained (EMA) generator as a :class:`~datafactory.gan.generator.Generator`."""
        from .generator import load_generator

        return load_generator(self.generator_path, device=device)


# ------------------------------------------------------------------------------------------------
# functional core


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss of the generator: ``mean(softplus(-D(G(z))))``."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic loss of the discriminator: ``mean(softplus(D(G(z)))) + mean(softplus(-D(x)))``."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(discriminator: nn.Module, real: torch.Tensor, augment=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``||grad_x D(augment(x))||^2`` (shape ``(n,)``) and the logits ``D(augment(x))``.

    The gradient is taken with respect to the un-augmented real image; the graph is kept so the
    penalty can be back-propagated (``create_graph=True``).
    """
    real = real.detach().requires_grad_(True)
    logits = discriminator(augment(real) if augment is not None else real)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)), logits


def ema_beta(batch_size: int, images_seen: int, ema_images: int, ema_rampup: float | None) -> float:
    """Per-step EMA decay for a half-life of ``ema_images`` images, capped by the ramp-up
    (``ema_rampup * images_seen``) so early averages do not drag in the random initial weights."""
    half_life = float(ema_images)
    if ema_rampup is not None:
        half_life = min(half_life, images_seen * ema_rampup)
    return 0.5 ** (batch_size / max(half_life, 1e-8))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema_p = beta * ema_p + (1 - beta) * p`` for every parameter; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Write images in ``[-1, 1]`` ``(n, 3, H, W)`` as one PNG grid (atomically)."""
    import io

    from PIL import Image

    from pipelines.manifest import write_atomic

    n, _, h, w = images.shape
    nrow = nrow or max(1, math.isqrt(n))
    ncol = math.ceil(n / nrow)
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    grid = torch.zeros(3, ncol * (h + 1) + 1, nrow * (w + 1) + 1, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        grid[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = x[i]
    buf = io.BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return write_atomic(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------
# the loop


def _build(cfg: GanTrainConfig) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator, StyleGAN2Generator]:
    # module initialisation uses the global RNG: fork it so training never disturbs the caller's
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        G = StyleGAN2Generator(cfg.model)
        D = StyleGAN2Discriminator(cfg.model)
        G_ema = StyleGAN2Generator(cfg.model)
    G_ema.load_state_dict(G.state_dict())
    G_ema.requires_grad_(False).eval()
    return G, D, G_ema


def _optimizers(cfg: GanTrainConfig, G: nn.Module, D: nn.Module) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    c = cfg.r1_every / (cfg.r1_every + 1) if cfg.r1_every and cfg.r1_gamma > 0 else 1.0
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d * c, betas=(0.0, 0.99**c), eps=1e-8)
    return opt_g, opt_d


def _generator_state(cfg: GanTrainConfig, seed_offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(cfg.seed * 1000 + seed_offset)


def _write_generator(out_dir: Path, G_ema: StyleGAN2Generator, cfg: GanTrainConfig, info: dict[str, Any]) -> None:
    from pipelines.manifest import write_json
    from pipelines.train.checkpoint import save_checkpoint

    save_checkpoint(out_dir / "generator.pt", {k: v.detach().cpu().clone() for k, v in G_ema.state_dict().items()})
    meta = {
        "format": GENERATOR_FORMAT,
        "version": 1,
        "config": cfg.model.to_dict(),
        "feature_layers": G_ema.feature_layers,
        "feature_resolutions": G_ema.feature_resolutions,
        "feature_channels": G_ema.feature_channels,
        "training": {"config": cfg.to_dict(), **info},
    }
    write_json(out_dir / "generator.json", meta)


def _check_resume(saved: Mapping[str, Any], cfg: GanTrainConfig, path: Path) -> None:
    old = saved.get("config")
    if not isinstance(old, Mapping):
        raise ValueError(f"checkpoint {str(path)!r} has no config")
    new = cfg.to_dict()
    # the step budget (and logging cadence) may change on resume; the recipe may not
    free = {"steps", "log_every", "checkpoint_every", "sample_grid"}
    differ = sorted(k for k in set(old) | set(new) if k not in free and old.get(k) != new.get(k))
    if differ:
        raise ValueError(f"cannot resume from {str(path)!r}: config differs in {differ}; use a new out_dir")


def train_gan(cfg: GanTrainConfig, source: Any, out_dir: str | os.PathLike, *, progress: bool = True,
              resume: bool = True, device: torch.device | str | None = None, split: str = "train",
              dataset_options: Mapping[str, Any] | None = None, plot: bool = True) -> GanTrainResult:
    """Train the bundled generator on ``source`` and write it to ``out_dir``.

    Args:
        cfg: the recipe (:class:`GanTrainConfig`; :meth:`GanTrainConfig.quick` for a demo).
        source: a shard folder, a registered dataset name (e.g. ``"shapes"``) or a map-style
            dataset / :class:`loaders.Adapter` of sample dicts with ``"image"``.
        out_dir: output folder (created).
        progress: show a tqdm progress bar.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (its recipe must match;
            ``steps`` may grow).
        device: where to train (default: CUDA if available, else CPU). Exact resume is a CPU
            property; CUDA kernels may not be deterministic.
        split: the split of a registered dataset.
        dataset_options: options for the dataset (``root``, ``size``, ...).
        plot: draw ``metrics.png`` at the end (matplotlib; a second or two).
    """
    from pipelines.train.checkpoint import load_checkpoint, save_checkpoint
    from pipelines.train.logging import MetricsLog, plot_metrics, progress_bar

    from .gan_data import describe_source, load_training_images

    if not isinstance(cfg, GanTrainConfig):
        raise TypeError(f"cfg must be a GanTrainConfig, got {type(cfg).__name__}")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_training_images(source, cfg.model.resolution, split=split, max_images=cfg.max_images,
                                options=dataset_options)
    data_dev = data.to(dev)  # uint8: 3 KB per 32 px image
    policy = parse_policy(cfg.diffaugment)
    G, D, G_ema = _build(cfg)
    G.to(dev), D.to(dev), G_ema.to(dev)
    opt_g, opt_d = _optimizers(cfg, G, D)
    rng_data, rng_latent, rng_aug = (_generator_state(cfg, k) for k in (1, 2, 3))
    step, images_seen, elapsed = 0, 0, 0.0
    ckpt_path, metrics = out / "checkpoint.pt", MetricsLog(out / "metrics.jsonl")
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        _check_resume(state, cfg, ckpt_path)
        G.load_state_dict(state["G"]), D.load_state_dict(state["D"]), G_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"]), opt_d.load_state_dict(state["opt_d"])
        for gen, key in ((rng_data, "rng_data"), (rng_latent, "rng_latent"), (rng_aug, "rng_aug")):
            gen.set_state(state[key])
        step, images_seen, elapsed = int(state["step"]), int(state["images_seen"]), float(state["elapsed"])
        metrics.truncate_after(step)
    elif metrics.path.exists():
        metrics.path.unlink()

    def aug(x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, policy, rng_aug)

    def fake_batch(n: int, grad: bool) -> torch.Tensor:
        z = torch.randn(n, cfg.model.z_dim, generator=rng_latent).to(dev)
        noise = [t.to(dev) for t in G.make_noise(n, rng_latent)]
        with torch.set_grad_enabled(grad):
            w = G.mapping(z)
            if grad:
                G.update_w_avg(w, cfg.w_avg_beta)
            return G.synthesis(w, noise)[0]

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "version": _CHECKPOINT_VERSION, "config": cfg.to_dict(), "step": step, "images_seen": images_seen,
            "elapsed": elapsed, "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng_data": rng_data.get_state(),
            "rng_latent": rng_latent.get_state(), "rng_aug": rng_aug.get_state(),
        })
        _write_generator(out, G_ema, cfg, info())

    def info() -> dict[str, Any]:
        return {"steps": step, "images_seen": images_seen, "wall_time_s": round(elapsed, 3),
                "num_training_images": int(data.shape[0]), "source": describe_source(source),
                "device": dev.type}

    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    last: dict[str, float] = {}

    def note(name: str, value: torch.Tensor) -> None:
        sums[name] = sums.get(name, 0.0) + float(value)
        counts[name] = counts.get(name, 0) + 1

    bar = progress_bar(cfg.steps, initial=min(step, cfg.steps), desc="gan", enabled=progress)
    G.train(), D.train()
    start = time.perf_counter()
    base_elapsed = elapsed
    try:
        while step < cfg.steps:
            n = cfg.batch_size
            idx = torch.randint(0, data.shape[0], (n,), generator=rng_data)
            real = (data_dev[idx.to(dev)].float() / 127.5) - 1.0
            # generator: non-saturating loss through the discriminator (D frozen)
            D.requires_grad_(False)
            fake = fake_batch(n, grad=True)
            loss_g = generator_loss(D(aug(fake)))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
            # discriminator: logistic loss on fresh fakes and the real batch
            fake = fake_batch(n, grad=False)
            fake_logits, real_logits = D(aug(fake)), D(aug(real))
            loss_d = discriminator_loss(real_logits, fake_logits)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            note("loss_g", loss_g.detach()), note("loss_d", loss_d.detach())
            note("d_real", real_logits.detach().mean()), note("d_fake", fake_logits.detach().mean())
            # lazy R1 on real images
            if cfg.r1_every and cfg.r1_gamma > 0 and step % cfg.r1_every == 0:
                penalty, logits = r1_penalty(D, real, aug)
                loss_r1 = penalty.mean() * (cfg.r1_gamma / 2) * cfg.r1_every
                opt_d.zero_grad(set_to_none=True)
                loss_r1.backward()
                opt_d.step()
                note("r1", penalty.detach().mean())
            step += 1
            images_seen += n
            ema_update(G_ema, G, ema_beta(n, images_seen, cfg.ema_images, cfg.ema_rampup))
            elapsed = base_elapsed + time.perf_counter() - start
            bar.update(1)
            if cfg.log_every and (step % cfg.log_every == 0 or step == cfg.steps):
                last = {k: sums[k] / counts[k] for k in sums}
                metrics.append({"step": step, "images_seen": images_seen, "time": round(elapsed, 3), **last})
                bar.set_postfix(loss_g=f"{last['loss_g']:.3f}", loss_d=f"{last['loss_d']:.3f}")
                sums.clear(), counts.clear()
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                checkpoint()
    finally:
        bar.close()
    if sums:
        last = {k: sums[k] / counts[k] for k in sums}
    checkpoint()
    samples_path = None
    if cfg.sample_grid:
        from .stylegan import BundledGenerator

        grid = BundledGenerator(G_ema, device=dev).sample(cfg.sample_grid, 0).images
        samples_path = save_image_grid(grid, out / "samples.png")
    rows = metrics.rows()
    if plot and len(rows) > 1:
        try:
            plot_metrics(rows, out / "metrics.png")
        except Exception:  # a plot is a convenience; the JSONL holds the numbers
            pass
    return GanTrainResult(
        out_dir=out, generator_path=out / "generator.pt", config_path=out / "generator.json",
        checkpoint_path=ckpt_path, metrics_path=metrics.path, samples_path=samples_path, steps=step,
        images_seen=images_seen, wall_time_s=elapsed, num_training_images=int(data.shape[0]),
        last_metrics=last,
    )
