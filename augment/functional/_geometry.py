"""Crop-and-resize and horizontal flip kernels, per sample on batches.

Each sample's box is ``(top, left, height, width)`` in pixels, inside the image. The work is done
by torchvision's v2 kernels (``resized_crop_image`` / ``_mask``, ``horizontal_flip_image``), one
sample at a time, so outputs are bit-identical to ``torchvision.transforms.v2`` with the same
parameters (uint8 stays uint8: bilinear/bicubic resizing of uint8 on the CPU runs natively).
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

__all__ = ["hflip", "resized_crop", "resized_crop_masks"]


def _check_boxes(boxes: torch.Tensor, batch: int, height: int, width: int) -> list[list[int]]:
    if boxes.shape != (batch, 4):
        raise ValueError(f"boxes must be [B,4] (top, left, height, width) with B={batch}, got {tuple(boxes.shape)}")
    rows = boxes.tolist()
    for top, left, h, w in rows:
        if h < 1 or w < 1 or top < 0 or left < 0 or top + h > height or left + w > width:
            raise ValueError(f"box (top={top}, left={left}, height={h}, width={w}) is not inside a {height}x{width} image")
    return rows


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], *,
                 interpolation: InterpolationMode = InterpolationMode.BILINEAR, antialias: bool = True) -> torch.Tensor:
    """Crop each image ``[B,C,H,W]`` to its box and resize it to ``size`` -> ``[B,C,*size]``
    (an empty batch gives an empty ``[0,C,*size]``)."""
    rows = _check_boxes(boxes, images.shape[0], images.shape[-2], images.shape[-1])
    if not rows:
        return images.new_empty((0, *images.shape[1:-2], *size))
    outs = [TF.resized_crop_image(image, top, left, h, w, list(size), interpolation=interpolation, antialias=antialias)
            for image, (top, left, h, w) in zip(images, rows)]
    return outs[0][None] if len(outs) == 1 else torch.stack(outs)


def resized_crop_masks(masks: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop and resize integer label maps ``[B,H,W]`` with nearest neighbours (labels stay labels)."""
    rows = _check_boxes(boxes, masks.shape[0], masks.shape[-2], masks.shape[-1])
    if not rows:
        return masks.new_empty((0, *masks.shape[1:-2], *size))
    outs = [TF.resized_crop_mask(mask[None], top, left, h, w, list(size))[0] for mask, (top, left, h, w) in zip(masks, rows)]
    return torch.stack(outs)


def hflip(images: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Mirror the samples of ``images`` (or masks) ``[B,...,W]`` whose ``flags`` (bool ``[B]``) are set."""
    if flags.shape != (images.shape[0],):
        raise ValueError(f"flags must be [B] with B={images.shape[0]}, got {tuple(flags.shape)}")
    chosen = flags.nonzero().flatten().tolist()
    if not chosen:
        return images
    if len(chosen) == images.shape[0]:
        return TF.horizontal_flip_image(images)
    out = images.clone()
    out[chosen] = TF.horizontal_flip_image(images[chosen])
    return out
