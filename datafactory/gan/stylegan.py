"""A compact StyleGAN2-style generator and discriminator, sized to train on a CPU.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020,
arXiv:1912.04958, written from the paper (no code copied):

- mapping network: ``z`` normalised by its second moment, then ``mapping_layers`` fully connected
  layers (leaky ReLU, equalised learning rate with a 0.01 learning-rate multiplier) to ``w``;
  a running mean of ``w`` (``w_avg``) allows the truncation trick;
- synthesis network: a learned constant 4x4 input, then per resolution 4, 8, ..., R two 3x3
  *modulated/demodulated* convolutions (the first one of each block above 4x4 upsamples x2,
  bilinearly), each followed by per-pixel noise with a learned strength, a bias and a leaky ReLU;
  a per-resolution 1x1 modulated ``toRGB`` (no demodulation) whose outputs are summed through
  upsampling (the "skip" architecture);
- the outputs of the two convolutions per resolution are the feature maps DatasetGAN reads
  (:attr:`StyleGAN2Generator.feature_layers`, coarse to fine; resolution 4, 4, 8, 8, ...);
- discriminator: ``fromRGB`` at full resolution, residual blocks that halve the resolution,
  minibatch standard deviation, a 3x3 convolution and two fully connected layers.

Modulation is computed without per-sample weights (scale the input by the style, convolve with the
shared weight, scale the output by the demodulation coefficients); :func:`modulated_weight` gives
the equivalent per-sample weights, which the tests compare against.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .generator import GeneratorSample, _check_latents, _check_seed_list, latents_for_seeds, noise_generator, seeds_for

__all__ = [
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "StyleGAN2Discriminator",
    "BundledGenerator",
    "modulated_weight",
    "minibatch_stddev",
]

_SQRT2 = math.sqrt(2.0)


def strict_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` as keyword arguments of the dataclass ``cls``, strictly.

    Raises:
        TypeError: ``data`` is not a mapping. KeyError: unknown keys (named, with the allowed ones).
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__} must be read from a mapping, got {type(data).__name__}")
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise KeyError(f"unknown {cls.__name__} key(s) {unknown}; allowed: {allowed}")
    return dict(data)


@dataclass(frozen=True)
class StyleGAN2Config:
    """The network's shape. Channel width at resolution ``r`` is
    ``min(channel_base // r, channel_max)`` (as in StyleGAN2, with much smaller numbers).

    Defaults: 32 px, ``z``/``w`` of 64, widths 32 (4-16 px) and 16 (32 px) -- small enough to
    train in CPU minutes; ``resolution=64`` works with the same code, and larger widths
    (``channel_base``, ``channel_max``) scale it up for real data.
    """

    resolution: int = 32
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2
    channel_base: int = 512
    channel_max: int = 32
    d_channel_base: int | None = None  # None: same as channel_base
    d_channel_max: int | None = None   # None: same as channel_max
    mapping_lr_mul: float = 0.01
    mbstd_group: int = 4

    def __post_init__(self) -> None:
        for name in ("resolution", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StyleGAN2Config.{name} must be a positive int, got {value!r}")
        for name in ("d_channel_base", "d_channel_max"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"StyleGAN2Config.{name} must be a positive int or None, got {value!r}")
        r = self.resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f"StyleGAN2Config.resolution must be a power of two >= 8, got {r}")
        lr = self.mapping_lr_mul
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= 1:
            raise ValueError(f"StyleGAN2Config.mapping_lr_mul must be in (0, 1], got {lr!r}")
        for res in self.resolutions:
            if self.channels(res) < 1 or self.d_channels(res) < 1:
                raise ValueError(f"StyleGAN2Config.channel_base is too small: no channels at {res} px")

    @property
    def resolutions(self) -> list[int]:
        """4, 8, ..., resolution."""
        return [2**k for k in range(2, int(math.log2(self.resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def d_channels(self, res: int) -> int:
        base = self.d_channel_base if self.d_channel_base is not None else self.channel_base
        cap = self.d_channel_max if self.d_channel_max is not None else self.channel_max
        return min(base // res, cap)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StyleGAN2Config":
        """Strict: unknown keys raise ``KeyError`` naming them and the allowed keys."""
        return cls(**strict_fields(cls, data))


# ---------------------------------------------------------------------------------------------
# building blocks (equalised learning rate: weights ~ N(0, 1) scaled at run time by 1/sqrt(fan_in))


class EqualLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * _SQRT2 if self.activate else x


class EqualConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, bias: bool = True,
                 activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.weight.shape[-1] // 2)
        return F.leaky_relu(x, 0.2) * _SQRT2 if self.activate else x


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     eps: float = 1e-8) -> torch.Tensor:
    """Per-sample weights ``(n, out, in, k, k)``: ``weight * style`` over input channels, then (if
    ``demodulate``) each output channel divided by its L2 norm (eq. 1-3 of the paper)."""
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    return w


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     eps: float = 1e-8) -> torch.Tensor:
    """Convolve each sample with its :func:`modulated_weight` without materialising it: scale the
    input by the style, convolve with the shared weight, scale the output by the demodulation
    coefficients (same result, one ordinary convolution for the batch)."""
    x = x * styles[:, :, None, None]
    x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demodulate:
        # sum_{i,k} (w[o,i,k] s[n,i])^2 = (s^2 @ sum_k w^2 .T)[n, o]
        dcoefs = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + eps)
        x = x * dcoefs[:, :, None, None]
    return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional x2 upsampling before it), noise, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, up: bool) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.resolution = resolution
        self.up = up

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles)
        if noise is not None:
            x = x + noise * self.noise_strength
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * _SQRT2


class ToRGB(nn.Module):
    def __init__(self, in_channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False) + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int) -> None:
        super().__init__()
        first = resolution == 4
        if first:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            in_channels = out_channels
        self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=not first)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, up=False)
        self.torgb = ToRGB(out_channels, w_dim)
        self.resolution = resolution

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, w: torch.Tensor,
                noise: Sequence[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        if x is None:
            x = self.const.unsqueeze(0).expand(w.shape[0], -1, -1, -1)
        f0 = self.conv0(x, w, noise[0])
        f1 = self.conv1(f0, w, noise[1])
        rgb = self.torgb(f1, w)
        if img is not None:
            rgb = rgb + F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
        return f1, rgb, [f0, f1]


class MappingNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.ModuleList(
            EqualLinear(a, b, lr_mul=cfg.mapping_lr_mul, activate=True) for a, b in zip(dims[:-1], dims[1:])
        )
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        return x


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.resolutions = cfg.resolutions
        blocks = {}
        prev = cfg.channels(4)
        for res in self.resolutions:
            blocks[f"b{res}"] = SynthesisBlock(prev, cfg.channels(res), cfg.w_dim, res)
            prev = cfg.channels(res)
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, w: torch.Tensor, noise: Sequence[torch.Tensor | None]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = img = None
        features: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks.values()):
            x, img, feats = block(x, img, w, noise[2 * i : 2 * i + 2])
            features.extend(feats)
        return img, features


class StyleGAN2Generator(nn.Module):
    """``z -> image`` (``(n, 3, R, R)``, nominally in ``[-1, 1]``), StyleGAN2-style.

    ``forward(z, noise=None, *, noise_mode="random", truncation=1.0, return_features=False)``:
    ``noise`` is a list of per-layer tensors ``(n, 1, r, r)`` (see :meth:`noise_shapes`); when
    ``None`` it is drawn from the global RNG (``noise_mode="random"``) or omitted
    (``"const"``: zero noise). ``truncation`` < 1 pulls ``w`` towards ``w_avg``.
    """

    def __init__(self, cfg: StyleGAN2Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else StyleGAN2Config()
        if not isinstance(self.cfg, StyleGAN2Config):
            raise TypeError(f"cfg must be a StyleGAN2Config, got {type(self.cfg).__name__}")
        self.mapping = MappingNetwork(self.cfg)
        self.synthesis = SynthesisNetwork(self.cfg)
        self.z_dim, self.w_dim, self.resolution = self.cfg.z_dim, self.cfg.w_dim, self.cfg.resolution

    @property
    def feature_layers(self) -> list[str]:
        """Names (for ``get_submodule``) of the two convolutions per resolution, coarse to fine."""
        return [f"synthesis.blocks.b{res}.conv{k}" for res in self.cfg.resolutions for k in (0, 1)]

    @property
    def feature_resolutions(self) -> list[int]:
        return [res for res in self.cfg.resolutions for _ in (0, 1)]

    @property
    def feature_channels(self) -> list[int]:
        return [self.cfg.channels(res) for res in self.cfg.resolutions for _ in (0, 1)]

    def noise_shapes(self) -> list[tuple[int, int]]:
        return [(res, res) for res in self.feature_resolutions]

    def make_noise(self, n: int, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> list[torch.Tensor]:
        """Per-layer noise ``(n, 1, r, r)`` drawn from ``generator`` (on its device)."""
        dev = device if device is not None else (generator.device if generator is not None else "cpu")
        return [torch.randn(n, 1, h, w, generator=generator, device=dev) for h, w in self.noise_shapes()]

    def mapping_forward(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        w = self.mapping(z)
        if truncation != 1.0:
            w = self.mapping.w_avg.lerp(w, truncation)
        return w

    def forward(self, z: torch.Tensor, noise: Sequence[torch.Tensor] | None = None, *, noise_mode: str = "random",
                truncation: float = 1.0, return_features: bool = False):
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (n, {self.z_dim}), got {tuple(z.shape)}")
        if noise is None:
            if noise_mode == "random":
                noise = self.make_noise(z.shape[0], device=z.device)
            elif noise_mode == "const":
                noise = [None] * len(self.feature_layers)
            else:
                raise ValueError(f"noise_mode must be 'random' or 'const', got {noise_mode!r}")
        elif len(noise) != len(self.feature_layers):
            raise ValueError(f"noise must hold {len(self.feature_layers)} tensors, got {len(noise)}")
        w = self.mapping_forward(z, truncation)
        img, features = self.synthesis(w, noise)
        return (img, features) if return_features else img

    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor, beta: float = 0.995) -> None:
        """Track the running mean of ``w`` (for truncation)."""
        self.mapping.w_avg.copy_(w.detach().mean(0).lerp(self.mapping.w_avg, beta))


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append one channel: the standard deviation over groups of samples, averaged over features
    and pixels (the group size is the largest divisor of the batch not above ``group``)."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group, n) + 1) if n % d == 0)
    y = x.reshape(g, n // g, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()
    y = y.mean(dim=(1, 2, 3)).reshape(n // g, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activate=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activate=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(F.avg_pool2d(x, 2))
        x = self.conv0(x)
        x = F.avg_pool2d(self.conv1(x), 2)
        return (x + skip) / _SQRT2


class StyleGAN2Discriminator(nn.Module):
    """Residual discriminator: ``image (n, 3, R, R) -> logits (n,)``."""

    def __init__(self, cfg: StyleGAN2Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else StyleGAN2Config()
        res = self.cfg.resolutions[::-1]  # R, ..., 8, 4
        self.fromrgb = EqualConv2d(3, self.cfg.d_channels(res[0]), 1, activate=True)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(self.cfg.d_channels(r), self.cfg.d_channels(r // 2)) for r in res[:-1]
        )
        c4 = self.cfg.d_channels(4)
        self.conv = EqualConv2d(c4 + 1, c4, 3, activate=True)
        self.fc = EqualLinear(c4 * 16, c4, activate=True)
        self.out = EqualLinear(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        r = self.cfg.resolution
        if img.ndim != 4 or tuple(img.shape[1:]) != (3, r, r):
            raise ValueError(f"images must have shape (n, 3, {r}, {r}), got {tuple(img.shape)}")
        x = self.fromrgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.conv(minibatch_stddev(x, self.cfg.mbstd_group))
        return self.out(self.fc(x.flatten(1))).squeeze(1)


class BundledGenerator:
    """The bundled network as a :class:`~datafactory.gan.generator.Generator`.

    Per-image noise comes from :func:`~datafactory.gan.generator.noise_generator` on the CPU, so
    an image depends on its seed (or latent) only, not on batching or device.

    Args:
        net: a trained :class:`StyleGAN2Generator` (put in eval mode, moved to ``device``).
        device: where it runs (default: where its parameters are).
        truncation: ``psi`` of the truncation trick (1.0: off).
        batch_size: images per forward pass.
        checkpoint: the file it was loaded from (its SHA-256 is :attr:`checkpoint_sha256`).
    """

    def __init__(self, net: StyleGAN2Generator, *, device: torch.device | str | None = None,
                 truncation: float = 1.0, batch_size: int = 16,
                 checkpoint: str | os.PathLike | None = None) -> None:
        if not isinstance(net, StyleGAN2Generator):
            raise TypeError(f"net must be a StyleGAN2Generator, got {type(net).__name__}")
        if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not 0 <= truncation <= 1:
            raise ValueError(f"truncation must be in [0, 1], got {truncation!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.device = torch.device(device) if device is not None else next(net.parameters()).device
        self.net = net.to(self.device).eval()
        self.resolution, self.z_dim = net.resolution, net.z_dim
        self.truncation, self.batch_size = float(truncation), batch_size
        self.feature_layers = net.feature_layers
        self.checkpoint = os.fspath(checkpoint) if checkpoint is not None else None
        self._sha: str | None = None

    @property
    def checkpoint_sha256(self) -> str | None:
        if self.checkpoint is None:
            return None
        if self._sha is None:
            from .generator import checkpoint_sha256

            self._sha = checkpoint_sha256(self.checkpoint)
        return self._sha

    @property
    def config(self) -> StyleGAN2Config:
        return self.net.cfg

    def sample(self, n: int, seed: int) -> GeneratorSample:
        """``n`` images with per-image seeds ``seed, ..., seed + n - 1``."""
        seeds = seeds_for(n, seed)
        return self.synthesize(latents_for_seeds(seeds, self.z_dim), seeds)

    def _noise(self, latents: torch.Tensor, seeds: list[int] | None) -> list[torch.Tensor]:
        per_image = []
        for i in range(latents.shape[0]):
            g = noise_generator(seeds[i] if seeds is not None else None, latents[i])
            per_image.append([torch.randn(1, 1, h, w, generator=g) for h, w in self.net.noise_shapes()])
        return [torch.cat(level).to(self.device) for level in zip(*per_image)]

    @torch.no_grad()
    def synthesize(self, latents: torch.Tensor, seeds: Sequence[int] | None = None) -> GeneratorSample:
        """Run ``latents`` ``(n, z_dim)``; ``seeds`` are recorded and seed the per-image noise."""
        latents = _check_latents(latents, self.z_dim)
        seed_list = _check_seed_list(seeds, latents.shape[0])
        images, levels = [], []
        for start in range(0, latents.shape[0], self.batch_size):
            z = latents[start : start + self.batch_size]
            noise = self._noise(z, seed_list[start : start + self.batch_size] if seed_list is not None else None)
            img, feats = self.net(z.to(self.device), noise, truncation=self.truncation, return_features=True)
            images.append(img.float().clamp(-1.0, 1.0))
            levels.append([f.float() for f in feats])
        return GeneratorSample(
            images=torch.cat(images),
            features=[torch.cat(level) for level in zip(*levels)],
            latents=latents.cpu(),
            seeds=seed_list if seed_list is not None else [-1] * latents.shape[0],
        )
