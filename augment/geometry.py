"""Geometric transforms for training pipelines: random resized crop and horizontal flip.

:class:`RandomResizedCrop` is the "Inception" crop of Szegedy et al., *Going Deeper with
Convolutions* (CVPR 2015), the standard ImageNet training augmentation: a box covering a random
fraction ``scale`` of the image area with a log-uniform aspect ratio in ``ratio`` (10 tries, then
a central crop clamped to ``ratio``), resized to ``size``. Parameters are drawn with the same torch
calls, in the same order, as ``torchvision.transforms.v2.RandomResizedCrop`` and
``RandomHorizontalFlip``, and the pixels come from the same kernels, so with the same seed the
outputs are bit-identical to torchvision's (a test checks it); unlike torchvision, a batch gets one
crop per sample, masks and boxes follow, and a ``torch.Generator`` can be passed to the call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from augment._transform import Params, Transform, draw_device
from augment.functional import hflip, resized_crop, resized_crop_masks

__all__ = ["RandomHorizontalFlip", "RandomResizedCrop"]


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _range(name: str, value: Sequence[float], positive: bool) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
        raise ValueError(f"{name} must be (low, high), got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high)) or not low <= high or (positive and low <= 0) or low < 0:
        raise ValueError(f"{name} must satisfy {'0 < ' if positive else '0 <= '}low <= high, got {value!r}")
    return low, high


class RandomResizedCrop(Transform):
    """Crop a random box (area fraction ``scale``, aspect ratio ``ratio``) and resize to ``size``.

    Args:
        size: output ``(height, width)``, or one int for a square.
        scale: range of the box area as a fraction of the image area.
        ratio: range of the box aspect ratio (width / height), sampled log-uniformly.
        interpolation: ``"bilinear"`` (default), ``"bicubic"``, ``"nearest"``... or an
            ``InterpolationMode``; masks always use nearest neighbours.
        antialias: antialiased downscaling (torchvision's default).
    """

    geometric = True
    photometric = False
    carries_masks = True  # with nearest neighbours

    def __init__(self, size: int | Sequence[int], scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
                 interpolation: str | InterpolationMode = InterpolationMode.BILINEAR, antialias: bool = True) -> None:
        self.size = _size(size)
        self.scale = _range("scale", scale, positive=True)
        self.ratio = _range("ratio", ratio, positive=True)
        self.interpolation = InterpolationMode(interpolation) if isinstance(interpolation, str) else interpolation
        if not isinstance(self.interpolation, InterpolationMode):
            raise TypeError(f"interpolation must be a str or InterpolationMode, got {interpolation!r}")
        self.antialias = bool(antialias)
        # float32 logs, as torchvision keeps them: the same draws give the same boxes
        self._log_ratio = [float(v) for v in torch.log(torch.tensor(self.ratio))]

    @property
    def blends(self) -> bool:  # type: ignore[override]
        """Resizing blends pixels unless the interpolation is nearest."""
        return self.interpolation not in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT)

    def _box(self, height: int, width: int, generator: torch.Generator | None) -> list[int]:
        area, device = height * width, draw_device(generator)
        for _ in range(10):
            target = area * torch.empty(1, device=device).uniform_(self.scale[0], self.scale[1], generator=generator).item()
            log_aspect = torch.empty(1, device=device).uniform_(self._log_ratio[0], self._log_ratio[1], generator=generator)
            aspect = torch.exp(log_aspect).item()
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator, device=device).item())
                left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator, device=device).item())
                return [top, left, h, w]
        # fallback: the largest central box whose aspect ratio is inside `ratio`
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        return [(height - h) // 2, (width - w) // 2, h, w]

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        height, width = x.shape[-2:]
        boxes = [self._box(height, width, generator) for _ in range(x.shape[0])]
        return {"boxes": torch.tensor(boxes, dtype=torch.int64).view(len(boxes), 4)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return resized_crop(x, params["boxes"], self.size, interpolation=self.interpolation, antialias=self.antialias)

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        return resized_crop_masks(mask, params["boxes"], self.size)

    def apply_boxes(self, boxes: tv_tensors.BoundingBoxes, params: Params) -> tv_tensors.BoundingBoxes:
        top, left, h, w = params["boxes"][0].tolist()
        return TF.resized_crop(boxes, top, left, h, w, list(self.size))


class RandomHorizontalFlip(Transform):
    """Mirror each sample left-right with probability ``p`` (masks and boxes follow)."""

    geometric = True
    photometric = False
    blends = False
    carries_masks = True

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        return {"flip": torch.rand(x.shape[0], generator=generator, device=draw_device(generator)) < self.p}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return hflip(x, params["flip"].to("cpu"))

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        return hflip(mask, params["flip"].to("cpu"))

    def apply_boxes(self, boxes: tv_tensors.BoundingBoxes, params: Params) -> tv_tensors.BoundingBoxes:
        return TF.horizontal_flip(boxes) if bool(params["flip"][0]) else boxes
