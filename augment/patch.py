"""Patch-based negative augmentation (Qin et al., 2021, arXiv 2110.07858): P-Shuffle, P-Rotate,
P-Infill and :class:`NegativeViews`, which pairs each batch with its negative view.

The views destroy the global structure a model should rely on while keeping local patch
statistics; training pushes the model *away* from predicting the original class on them (see
:mod:`augment.losses`). Patch size must divide the image and be a multiple of the ViT's input
patch size (``model_patch_size``): the paper uses 32 and 48 for ViT-B/16.
"""

from __future__ import annotations

from typing import Any

import torch

from augment import functional as F
from augment._transform import Params, Transform, check_generator, check_image, draw_device as _gen_device

__all__ = ["NegativeViews", "PatchInfill", "PatchRotate", "PatchShuffle"]


class _PatchTransform(Transform):
    geometric = True  # whole patches move; their pixels keep their values
    photometric = False
    blends = False
    carries_masks = True

    def __init__(self, patch_size: int, model_patch_size: int | None = None) -> None:
        F.check_patch_size(patch_size, patch_size, patch_size, model_patch_size)  # validates the ints
        self.patch_size = patch_size
        self.model_patch_size = model_patch_size

    def _grid(self, x: torch.Tensor) -> tuple[int, int]:
        return F.check_patch_size(x.shape[-2], x.shape[-1], self.patch_size, self.model_patch_size)

    def apply_boxes(self, boxes: Any, params: Params) -> Any:
        raise TypeError(f"{type(self).__name__} cannot carry bounding boxes: a patch rearrangement has no box equivalent")


class PatchShuffle(_PatchTransform):
    """P-Shuffle: randomly permute the positions of the ``patch_size`` patches, per sample.

    Args:
        patch_size: patch side in pixels; must divide the image.
        model_patch_size: the model's input patch size; ``patch_size`` must be a multiple of it.
    """

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        rows, cols = self._grid(x)
        noise = torch.rand((x.shape[0], rows * cols), generator=generator, device=_gen_device(generator))
        return {"permutation": noise.argsort(dim=1).to(x.device)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return F.patch_shuffle(x, params["permutation"], self.patch_size)

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        return F.patch_shuffle(mask, params["permutation"], self.patch_size)


class PatchRotate(_PatchTransform):
    """P-Rotate: rotate every patch in place by 0, 90, 180 or 270 degrees (uniform, per patch).

    Args:
        patch_size: patch side in pixels; must divide the image.
        model_patch_size: the model's input patch size; ``patch_size`` must be a multiple of it.
    """

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        rows, cols = self._grid(x)
        turns = torch.randint(0, 4, (x.shape[0], rows * cols), generator=generator, device=_gen_device(generator))
        return {"quarter_turns": turns.to(x.device)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return F.patch_rotate(x, params["quarter_turns"], self.patch_size)

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        return F.patch_rotate(mask, params["quarter_turns"], self.patch_size)


class PatchInfill(_PatchTransform):
    """P-Infill: replace the patches of a central region with patches copied from outside it.

    Args:
        patch_size: patch side in pixels; must divide the image.
        replace_rate: fraction of the image replaced, a float in ``[0, 1)`` or a ``(low, high)``
            range drawn uniformly per sample (the paper shows 0.25 and 0.375). The region is the
            centred rectangle of patches whose area is closest to the rate
            (:func:`augment.functional.infill_region`). The patch grid must be at least 3x3 (a
            border of patches around the region); smaller grids raise ``ValueError`` at call.
        model_patch_size: the model's input patch size; ``patch_size`` must be a multiple of it.
    """

    def __init__(self, patch_size: int, replace_rate: float | tuple[float, float] = 0.25,
                 model_patch_size: int | None = None) -> None:
        super().__init__(patch_size, model_patch_size)
        if isinstance(replace_rate, (list, tuple)):
            if len(replace_rate) != 2 or not all(isinstance(v, (int, float)) for v in replace_rate):
                raise ValueError(f"replace_rate must be a float or a (low, high) pair, got {replace_rate!r}")
            low, high = float(replace_rate[0]), float(replace_rate[1])
            replace_rate = (low, high)
        else:
            if isinstance(replace_rate, bool) or not isinstance(replace_rate, (int, float)):
                raise ValueError(f"replace_rate must be a float or a (low, high) pair, got {replace_rate!r}")
            low = high = float(replace_rate)
            replace_rate = low
        if not 0.0 <= low <= high < 1.0:
            raise ValueError(f"replace_rate must lie in [0, 1) with low <= high, got {replace_rate!r}")
        self.replace_rate = replace_rate

    def _grid(self, x: torch.Tensor) -> tuple[int, int]:
        rows, cols = super()._grid(x)
        try:
            F.check_infill_grid(rows, cols)
        except ValueError:
            height, width = x.shape[-2], x.shape[-1]
            step = self.model_patch_size or 1
            fits = [d for d in range(step, min(height, width) // F.MIN_INFILL_GRID + 1, step)
                    if height % d == 0 and width % d == 0]
            raise ValueError(
                f"PatchInfill: patch_size {self.patch_size} gives a {rows}x{cols} patch grid on a {height}x{width} "
                f"image, which leaves no room for a central region with a border of patches on every side "
                f"(the grid must be at least {F.MIN_INFILL_GRID}x{F.MIN_INFILL_GRID}); patch sizes that fit: {fits}"
            ) from None
        return rows, cols

    def _bounds(self) -> tuple[float, float]:
        rate = self.replace_rate
        return rate if isinstance(rate, tuple) else (rate, rate)

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        rows, cols = self._grid(x)
        batch, total = x.shape[0], rows * cols
        low, high = self._bounds()
        device = _gen_device(generator)
        rates = low + (high - low) * torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
        uniform = torch.rand((batch, total), generator=generator, device=device, dtype=torch.float64)
        region = F.infill_regions(rows, cols, rates)
        source = F.infill_sources(rows, cols, region, uniform)
        return {"source": source.to(x.device), "region": region.to(x.device)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return F.patch_infill(x, params["source"], self.patch_size)

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        return F.patch_infill(mask, params["source"], self.patch_size)


class NegativeViews:
    """Pair a batch with its negative view: ``x -> (x, op(x))`` (Qin et al., 2021).

    The negative view is drawn per sample; feed both halves to the model and train with
    ``ce + lambda * neg`` (:func:`augment.losses.combined_loss`).

    Args:
        op: the negative transform, e.g. ``PatchRotate(32)`` (any :class:`Transform`).
    """

    def __init__(self, op: Transform) -> None:
        if not callable(op):
            raise TypeError(f"op must be a transform (callable), got {type(op).__name__}")
        self.op = op

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_image(x)
        check_generator(generator)
        return x, self.op(x, generator=generator)

    def __repr__(self) -> str:
        return f"NegativeViews(op={self.op!r})"

