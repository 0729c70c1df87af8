"""A preview grid for checking augmentations by eye: one row per image, the original first, then
``views`` independently drawn augmented (or negative) views."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from augment._transform import Transform, check_image

__all__ = ["preview_grid"]


def preview_grid(images: torch.Tensor, transform: Transform, views: int = 4, *, generator: torch.Generator | None = None,
                 scale: int = 2, padding: int = 2) -> torch.Tensor:
    """Build a uint8 ``[3, H', W']`` grid: row ``i`` = image ``i``, then ``views`` augmented views.

    Args:
        images: uint8 ``[B,3,H,W]``.
        transform: an augment transform (e.g. ``augment.build(spec)``).
        views: augmented views per image.
        generator: makes the grid reproducible.
        scale: nearest-neighbour upscaling so small images stay readable.
        padding: white pixels between cells.
    """
    check_image(images, "images")
    if images.ndim != 4 or images.dtype != torch.uint8 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [B,3,H,W], got {tuple(images.shape)} {images.dtype}")
    if views < 1 or scale < 1 or padding < 0:
        raise ValueError(f"views and scale must be >= 1 and padding >= 0, got {views}, {scale}, {padding}")
    columns = [images] + [transform(images, generator=generator) for _ in range(views)]
    h, w = max(x.shape[-2] for x in columns), max(x.shape[-1] for x in columns)
    # views of another size (crops) sit top-left in a white cell of the largest size
    cells = torch.full((images.shape[0], len(columns), 3, h, w), 255, dtype=torch.uint8)
    for j, column in enumerate(columns):
        cells[:, j, :, :column.shape[-2], :column.shape[-1]] = column
    b, n, c = cells.shape[:3]
    if scale > 1:
        cells = F.interpolate(cells.view(b * n, c, h, w).float(), scale_factor=scale, mode="nearest").to(torch.uint8)
        h, w = h * scale, w * scale
        cells = cells.view(b, n, c, h, w)
    grid = torch.full((c, padding + b * (h + padding), padding + n * (w + padding)), 255, dtype=torch.uint8)
    for i in range(b):
        for j in range(n):
            top, left = padding + i * (h + padding), padding + j * (w + padding)
            grid[:, top:top + h, left:left + w] = cells[i, j]
    return grid
