"""Differentiable augmentation for GAN training on small data sets (DiffAugment).

Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020,
arXiv:2006.10738: the *same kind* of random, differentiable transform is applied to real and
generated images before every discriminator call (in the generator's step too), so the
discriminator cannot memorise a small training set, while gradients still reach the generator.

Policies (written from the paper's description):

- ``color``: brightness ``+U(-0.5, 0.5)``; saturation: the deviation from the per-pixel channel
  mean scaled by ``U(0, 2)``; contrast: the deviation from the image mean scaled by
  ``U(0.5, 1.5)``;
- ``translation``: an integer shift of up to 1/8 of the size in each direction, zero padded;
- ``cutout``: a square of half the size at a random position set to zero.

Functional core (:func:`diff_augment_params` draws, :func:`apply_diff_augment` applies) with all
randomness from one passed ``torch.Generator``, one draw per image.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["POLICIES", "parse_policy", "diff_augment_params", "apply_diff_augment", "diff_augment"]

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """``"color,translation,cutout"`` (or a sequence) -> a tuple; ``""`` -> no augmentation."""
    if isinstance(policy, str):
        parts = [p.strip() for p in policy.split(",") if p.strip()]
    elif isinstance(policy, Sequence):
        parts = list(policy)
    else:
        raise TypeError("diffaugment policy must be a string like 'color,translation,cutout', "
                        f"got {type(policy).__name__}")
    for p in parts:
        if p not in POLICIES:
            raise ValueError(f"unknown diffaugment policy {p!r}; allowed: {list(POLICIES)}")
    if len(set(parts)) != len(parts):
        raise ValueError(f"diffaugment policy lists a part twice: {parts}")
    return tuple(parts)


def diff_augment_params(n: int, size: int, policy: Sequence[str],
                        generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw the per-image parameters (on the generator's device) for ``n`` images of ``size``."""
    params: dict[str, torch.Tensor] = {}
    dev = generator.device
    if "color" in policy:
        params["brightness"] = torch.rand(n, generator=generator, device=dev) - 0.5
        params["saturation"] = torch.rand(n, generator=generator, device=dev) * 2.0
        params["contrast"] = torch.rand(n, generator=generator, device=dev) + 0.5
    if "translation" in policy:
        shift = int(size * 0.125 + 0.5)
        params["translation"] = torch.randint(-shift, shift + 1, (n, 2), generator=generator, device=dev)
    if "cutout" in policy:
        cut = int(size * 0.5 + 0.5)
        params["cutout"] = torch.randint(0, size + (1 - cut % 2), (n, 2), generator=generator, device=dev)
    return params


def apply_diff_augment(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply drawn parameters to ``x`` ``(n, C, H, W)`` (H == W); differentiable in ``x``."""
    n, _, h, w = x.shape
    if "brightness" in params:
        x = x + params["brightness"].to(x)[:, None, None, None]
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * params["saturation"].to(x)[:, None, None, None] + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * params["contrast"].to(x)[:, None, None, None] + mean
    if "translation" in params:
        t = params["translation"].to(x.device)
        rows = (torch.arange(h, device=x.device)[None, :] + t[:, 0:1] + 1).clamp(0, h + 1)  # (n, h)
        cols = (torch.arange(w, device=x.device)[None, :] + t[:, 1:2] + 1).clamp(0, w + 1)  # (n, w)
        padded = torch.nn.functional.pad(x, [1, 1, 1, 1])
        b = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if "cutout" in params:
        cut = int(h * 0.5 + 0.5)
        centre = params["cutout"].to(x.device)
        ry = torch.arange(h, device=x.device)[None, :] - centre[:, 0:1] + cut // 2  # inside when in [0, cut)
        rx = torch.arange(w, device=x.device)[None, :] - centre[:, 1:2] + cut // 2
        inside = ((ry >= 0) & (ry < cut))[:, :, None] & ((rx >= 0) & (rx < cut))[:, None, :]
        x = x * (~inside).to(x.dtype)[:, None]
    return x


def diff_augment(x: torch.Tensor, policy: Sequence[str], generator: torch.Generator) -> torch.Tensor:
    """Draw parameters for ``x`` from ``generator`` and apply them (identity for an empty policy)."""
    if not policy:
        return x
    return apply_diff_augment(x, diff_augment_params(x.shape[0], x.shape[-1], policy, generator))
