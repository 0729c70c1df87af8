"""Per-pixel generator features without building the full-resolution feature tensor.

DatasetGAN (Zhang et al., CVPR 2021, arXiv:2104.06490) describes every pixel of a generated
image by the concatenation of all the generator's feature maps, each upsampled to the output
size ``(H, W)`` (bilinear, ``align_corners=False``): ``D = sum_l C_l`` values per pixel, about
5,000 for a 512 px StyleGAN2 (Karras et al., CVPR 2020, arXiv:1912.04958). Stored in full that
is ``n * H * W * D`` numbers -- 85 GB in float32 for 16 images at 512 px.

Two exact ways around it, both here as pure functions:

* :func:`factorised_first_layer`: a linear map ``W = [W_1 | ... | W_L]`` (split by level)
  applied to the concatenated upsampled features equals ``sum_l up(W_l f_l) + b``, because
  bilinear upsampling is itself a fixed linear map over space that commutes with a per-pixel
  channel map. Each ``W_l`` is applied at the level's native resolution (a 1x1 convolution) and
  only the ``out``-channel results are upsampled: memory ``n * out * H * W`` instead of
  ``n * D * H * W`` (``out`` = 128 or 256 in the paper's interpreter).
* :class:`PixelFeatureBank`: for training on sampled pixels, the upsampled feature of one pixel
  is a bilinear blend of at most four native-resolution positions per level, with the very
  weights ``torch.nn.functional.interpolate`` uses. The bank keeps the native maps (one
  channels-last copy) and gathers a batch of pixels in ``O(batch * D)``.

:func:`upsample_concat` is the direct (memory-hungry) definition, kept as the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PixelFeatureBank", "bilinear_taps", "check_levels", "check_size", "factorised_first_layer", "gather_pixels",
           "upsample_concat"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_size(size: Any, name: str = "size") -> tuple[int, int]:
    """``size`` as ``(H, W)`` ints >= 1, else ``ValueError`` naming ``name``."""
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(_is_int(s) and s >= 1 for s in size):
        raise ValueError(f"{name} must be a pair of ints >= 1 (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def check_levels(features: Any, channels: Sequence[int] | None, name: str, *, batch: int | None = None) -> int:
    """Check a feature list: 4-D floating tensors, one image count (``batch`` if given), and
    ``channels`` per level if given. Returns the image count ``n``; errors name ``name[index]``."""
    if isinstance(features, torch.Tensor) or not isinstance(features, Sequence) or not features:
        raise TypeError(f"{name} must be a non-empty list of feature maps (n, C_l, h_l, w_l), "
                        f"got {type(features).__name__}")
    if channels is not None and len(features) != len(channels):
        raise ValueError(f"{name} has {len(features)} feature levels, the interpreter expects {len(channels)} "
                         f"(channels {list(channels)})")
    n = batch
    for index, level in enumerate(features):
        where = f"{name}[{index}]"
        if not isinstance(level, torch.Tensor):
            raise TypeError(f"{where} must be a torch.Tensor, got {type(level).__name__}")
        if level.ndim != 4 or 0 in level.shape:
            raise ValueError(f"{where} must have shape (n, C, h, w) with no empty dimension, got {tuple(level.shape)}")
        if not level.is_floating_point():
            raise TypeError(f"{where} must be a floating-point tensor, got {level.dtype}")
        if channels is not None and level.shape[1] != channels[index]:
            raise ValueError(f"{where} has {level.shape[1]} channels, the interpreter expects {channels[index]} "
                             f"(channels {list(channels)})")
        if n is None:
            n = level.shape[0]
        elif level.shape[0] != n:
            raise ValueError(f"{where} holds {level.shape[0]} images, expected {n}")
    assert n is not None
    return int(n)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size`` with ``align_corners=False`` (identity when already that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def upsample_concat(features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """The reference per-pixel features: every level upsampled to ``size``, concatenated.

    Args:
        features: levels ``(n, C_l, h_l, w_l)``.
        size: output ``(H, W)``.

    Returns:
        ``(n, sum_l C_l, H, W)`` -- the tensor the factorised path never builds.
    """
    return torch.cat([upsample(level, size) for level in features], dim=1)


def factorised_first_layer(features: Sequence[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None,
                           size: tuple[int, int]) -> torch.Tensor:
    """``Linear(weight, bias)`` over :func:`upsample_concat` ``(features, size)``, computed per level.

    Levels of equal spatial size are projected and summed at that size, then upsampled once.

    Args:
        features: levels ``(n, C_l, h_l, w_l)``; cast to ``weight``'s dtype.
        weight: ``(out, sum_l C_l)``, columns in level order.
        bias: ``(out,)`` or None.
        size: output ``(H, W)``.

    Returns:
        ``(n, out, H, W)``.
    """
    channels = [level.shape[1] for level in features]
    if sum(channels) != weight.shape[1]:
        raise ValueError(f"features have {sum(channels)} channels in total, weight expects {weight.shape[1]}")
    by_size: dict[tuple[int, int], torch.Tensor] = {}
    for level, part in zip(features, weight.split(channels, dim=1)):
        projected = F.conv2d(level.to(dtype=weight.dtype), part[:, :, None, None])  # W_l at native resolution
        key = (level.shape[-2], level.shape[-1])
        by_size[key] = projected if key not in by_size else by_size[key].add_(projected)
    # every summand is a fresh tensor of ours, so the sum is built in place (autograd allows it:
    # neither the upsampling nor the matrix product saves its output for the backward pass); a
    # fresh (n, out, H, W) buffer per level would cost more in page faults than the additions
    out = None
    for projected in by_size.values():
        up = upsample(projected, size)
        out = up if out is None else out.add_(up)
    assert out is not None  # at least one level (checked by callers)
    if bias is not None:
        out.add_(bias[None, :, None, None])
    return out


def bilinear_taps(out_len: int, in_len: int, device: torch.device | str | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 1-D taps of bilinear resizing from ``in_len`` to ``out_len`` (``align_corners=False``).

    Output position ``i`` reads ``w0[i] * x[i0[i]] + w1[i] * x[i1[i]]`` with source coordinate
    ``max(0, (i + 0.5) * in_len / out_len - 0.5)``, the convention of
    ``torch.nn.functional.interpolate`` (float32 arithmetic, like its kernels).

    Returns:
        ``(i0, i1, w0, w1)``, each of length ``out_len`` (indices int64, weights float32).
    """
    scale = torch.tensor(in_len / out_len, dtype=torch.float32)
    src = ((torch.arange(out_len, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_min(0.0)
    i0 = src.floor().long().clamp_max(in_len - 1)
    w1 = (src - i0.float()).clamp(0.0, 1.0)
    i1 = torch.where(i0 < in_len - 1, i0 + 1, i0)
    return i0.to(device), i1.to(device), (1.0 - w1).to(device), w1.to(device)


class PixelFeatureBank:
    """Native-resolution feature maps of ``K`` images, gathered per pixel on demand.

    ``gather`` returns exactly the rows of ``upsample_concat(levels, size)`` for the requested
    pixels (up to float rounding), reading four native positions per level.

    Memory: the native maps once, channels-last (``K * sum_l C_l * h_l * w_l`` values in the
    dtype given; float16 halves it), plus ``O(batch * D)`` per gather. Never ``K * H * W * D``.

    Args:
        images: per image, the list of levels, each ``(1, C_l, h_l, w_l)`` (all images alike).
        size: output ``(H, W)`` the pixels refer to.
        device: where the bank lives (default: the device of the first level).
    """

    def __init__(self, images: Sequence[Sequence[torch.Tensor]], size: tuple[int, int], *,
                 device: torch.device | str | None = None) -> None:
        first = images[0]
        self.size = (int(size[0]), int(size[1]))
        self.num_images = len(images)
        self.channels = tuple(int(level.shape[1]) for level in first)
        self.dim = sum(self.channels)
        device = torch.device(device) if device is not None else first[0].device
        # group levels by spatial size (first-appearance order) so each group is one gather
        groups: dict[tuple[int, int], list[int]] = {}
        for index, level in enumerate(first):
            groups.setdefault((int(level.shape[-2]), int(level.shape[-1])), []).append(index)
        self._banks: list[torch.Tensor] = []
        self._taps: list[tuple[torch.Tensor, ...] | None] = []
        self._sizes: list[tuple[int, int]] = []
        order: list[int] = []
        offsets = [0]
        for channels in self.channels:
            offsets.append(offsets[-1] + channels)
        for (h, w), members in groups.items():
            width = sum(self.channels[i] for i in members)
            bank = torch.empty((self.num_images, h * w, width), dtype=first[members[0]].dtype, device=device)
            for k, levels in enumerate(images):
                bank[k] = torch.cat([levels[i][0] for i in members], dim=0).reshape(width, h * w).t()
            self._banks.append(bank.view(self.num_images * h * w, width))
            self._sizes.append((h, w))
            if (h, w) == self.size:
                self._taps.append(None)
            else:
                self._taps.append(bilinear_taps(self.size[0], h, device) + bilinear_taps(self.size[1], w, device))
            for i in members:
                order.extend(range(offsets[i], offsets[i + 1]))
        order_t = torch.tensor(order, dtype=torch.long)
        self._restore = None if order == list(range(self.dim)) else torch.argsort(order_t).to(device)
        self.device = device

    def gather(self, image: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Upsampled features of pixels ``(image[i], y[i], x[i])``: ``(B, D)`` float32, level order."""
        count = len(image)
        out = torch.empty((count, self.dim), dtype=torch.float32, device=self.device)
        start = 0
        for bank, taps, (h, w) in zip(self._banks, self._taps, self._sizes):
            part = out[:, start:start + bank.shape[1]]  # written in place: no concatenation afterwards
            start += bank.shape[1]
            base = image * (h * w)  # banks are flat (K * h * w, C): index_select is ~6x faster than 2-D indexing
            if taps is None:
                part.copy_(bank.index_select(0, base + y * w + x))
                continue
            y0, y1, wy0, wy1, x0, x1, wx0, wx1 = taps
            # the four corners in one gather: rows (y0, y0, y1, y1) x columns (x0, x1, x0, x1)
            rows = torch.cat([y0[y], y0[y], y1[y], y1[y]]) * w
            cols = torch.cat([x0[x], x1[x], x0[x], x1[x]])
            corners = bank.index_select(0, base.repeat(4) + rows + cols).view(4, count, -1)
            a, b, c, d = wy0[y][:, None], wy1[y][:, None], wx0[x][:, None], wx1[x][:, None]
            torch.mul(corners[0], a * c, out=part)
            part.addcmul_(corners[1], a * d).addcmul_(corners[2], b * c).addcmul_(corners[3], b * d)
        return out if self._restore is None else out[:, self._restore]

    def gather_flat(self, pixel: torch.Tensor) -> torch.Tensor:
        """:meth:`gather` for flat indices ``pixel = (image * H + y) * W + x``."""
        height, width = self.size
        image = torch.div(pixel, height * width, rounding_mode="floor")
        rest = pixel - image * (height * width)
        y = torch.div(rest, width, rounding_mode="floor")
        return self.gather(image, y, rest - y * width)


def gather_pixels(features: Sequence[torch.Tensor], image: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
                  size: tuple[int, int]) -> torch.Tensor:
    """Rows of ``upsample_concat(features, size)`` at pixels ``(image[i], :, y[i], x[i])`` -> ``(B, D)``.

    Args:
        features: levels ``(n, C_l, h_l, w_l)``.
        image, y, x: int64 index tensors of equal length.
        size: output ``(H, W)``.
    """
    images = [[level[k:k + 1] for level in features] for k in range(features[0].shape[0])]
    return PixelFeatureBank(images, size).gather(image, y, x)
