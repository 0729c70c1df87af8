"""AutoAugment, RandAugment, TrivialAugmentWide and AugMix with per-sample parameters on batches.

torchvision v2 draws one set of parameters per call, so a batch tensor gets the same ops for every
image (torchvision issue 8484); timm's versions need PIL images. Here every sample draws its own
ops and magnitudes, and the batch is processed in groups (:func:`augment.functional.apply_ops`).
For one image with the same op and magnitude, the result is exactly torchvision's.

Geometric ops carry ``tv_tensors.Mask`` (batched) and ``BoundingBoxes`` (per image) along.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import AutoAugmentPolicy, InterpolationMode

from augment import functional as F
from augment._sampling import sample_dirichlet
from augment._transform import Params, Transform, draw_device

__all__ = ["AugMix", "AutoAugment", "RandAugment", "TrivialAugmentWide"]

_OP_INDEX = {name: i for i, name in enumerate(F.OPS)}
_INTERPOLATIONS = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR}


def _interpolation(value: str | InterpolationMode) -> str:
    name = value.value if isinstance(value, InterpolationMode) else value
    if name not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {value!r}")
    return name


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {allowed}, got {value!r}")
    return value


class _AutoAugmentBase(Transform):
    geometric = True  # Shear, Translate, Rotate
    photometric = True  # Brightness, Color, Contrast, Solarize, Equalize...
    blends = True  # Sharpness's kernel, bilinear interpolation when chosen
    carries_masks = True

    def __init__(self, interpolation: str | InterpolationMode, fill: float | Sequence[float] | None) -> None:
        self.interpolation = _interpolation(interpolation)
        self.fill = F.check_fill(fill)

    def _draw(self, table: dict[str, tuple[list[float] | None, bool]], names: list[str], op_choice: torch.Tensor,
              bin_choice: torch.Tensor | None, fixed_bin: int | None, sign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn drawn choices into (op index, signed magnitude) tensors of the same shape."""
        ops = torch.empty(op_choice.shape, dtype=torch.int64)
        magnitudes = torch.zeros(op_choice.shape, dtype=torch.float64)
        flat_ops, flat_mag = ops.view(-1), magnitudes.view(-1)
        bins = None if bin_choice is None else bin_choice.reshape(-1).tolist()
        for i, (choice, negative) in enumerate(zip(op_choice.reshape(-1).tolist(), sign.reshape(-1).tolist())):
            name = names[choice]
            flat_ops[i] = _OP_INDEX[name]
            values, signed = table[name]
            if values is not None:
                magnitude = values[fixed_bin if bins is None else bins[i]]
                flat_mag[i] = -magnitude if (signed and negative) else magnitude
        return ops, magnitudes

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        F.fill_values(self.fill, x.shape[-3])  # a per-channel fill must match C, whatever ops were drawn
        return F.apply_ops(x, params["ops"], params["magnitudes"], _INTERPOLATIONS[self.interpolation], self.fill)

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        out = [F.apply_ops_to_target(tv_tensors.Mask(m[None]), params["ops"][i], params["magnitudes"][i])[0]
               for i, m in enumerate(mask)]
        return torch.stack([o.as_subclass(torch.Tensor) for o in out]) if out else mask.clone()

    def apply_boxes(self, boxes: tv_tensors.BoundingBoxes, params: Params) -> tv_tensors.BoundingBoxes:
        return F.apply_ops_to_target(boxes, params["ops"][0], params["magnitudes"][0])


class RandAugment(_AutoAugmentBase):
    """RandAugment (Cubuk et al., 2020): ``num_ops`` random ops at one magnitude, per sample.

    Args:
        num_ops: ops applied in sequence.
        magnitude: bin index in ``[0, num_magnitude_bins)`` (torchvision default 9 of 31).
        num_magnitude_bins: number of bins.
        interpolation: ``"nearest"`` (torchvision's default) or ``"bilinear"``.
        fill: fill outside the image after geometric ops: ``None`` (0), a number, or one number
            per channel (``[r, g, b]``), as torchvision takes it. Masks are always filled with 0.
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31,
                 interpolation: str | InterpolationMode = "nearest", fill: float | Sequence[float] | None = None) -> None:
        super().__init__(interpolation, fill)
        self.num_ops = _check_int("num_ops", num_ops, 0)
        self.num_magnitude_bins = _check_int("num_magnitude_bins", num_magnitude_bins, 2)
        self.magnitude = _check_int("magnitude", magnitude, 0, num_magnitude_bins - 1)

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        names = list(F.RANDAUGMENT_SPACE)
        table = F.magnitude_bins(F.RANDAUGMENT_SPACE, self.num_magnitude_bins, x.shape[-2], x.shape[-1])
        shape, device = (x.shape[0], self.num_ops), draw_device(generator)
        choice = torch.randint(len(names), shape, generator=generator, device=device).cpu()
        sign = torch.rand(shape, generator=generator, device=device).cpu() <= 0.5
        ops, magnitudes = self._draw(table, names, choice, None, self.magnitude, sign)
        return {"ops": ops, "magnitudes": magnitudes}


class TrivialAugmentWide(_AutoAugmentBase):
    """TrivialAugmentWide (Muller & Hutter, 2021): one random op at a random magnitude, per sample.

    Args:
        num_magnitude_bins: number of bins (31).
        interpolation, fill: as :class:`RandAugment`.
    """

    def __init__(self, num_magnitude_bins: int = 31, interpolation: str | InterpolationMode = "nearest",
                 fill: float | Sequence[float] | None = None) -> None:
        super().__init__(interpolation, fill)
        self.num_magnitude_bins = _check_int("num_magnitude_bins", num_magnitude_bins, 2)

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        names = list(F.TRIVIALAUGMENT_SPACE)
        table = F.magnitude_bins(F.TRIVIALAUGMENT_SPACE, self.num_magnitude_bins, x.shape[-2], x.shape[-1])
        shape, device = (x.shape[0], 1), draw_device(generator)
        choice = torch.randint(len(names), shape, generator=generator, device=device).cpu()
        bins = torch.randint(self.num_magnitude_bins, shape, generator=generator, device=device).cpu()
        sign = torch.rand(shape, generator=generator, device=device).cpu() <= 0.5
        ops, magnitudes = self._draw(table, names, choice, bins, None, sign)
        return {"ops": ops, "magnitudes": magnitudes}


class AutoAugment(_AutoAugmentBase):
    """AutoAugment (Cubuk et al., 2019) with torchvision's learned policies, per sample.

    Args:
        policy: ``"imagenet"``, ``"cifar10"``, ``"svhn"`` (or a torchvision ``AutoAugmentPolicy``).
        interpolation, fill: as :class:`RandAugment`.
    """

    def __init__(self, policy: str | AutoAugmentPolicy = "imagenet", interpolation: str | InterpolationMode = "nearest",
                 fill: float | Sequence[float] | None = None) -> None:
        super().__init__(interpolation, fill)
        name = policy.value if isinstance(policy, AutoAugmentPolicy) else policy
        if name not in F.AUTOAUGMENT_POLICIES:
            raise ValueError(f"policy must be one of {sorted(F.AUTOAUGMENT_POLICIES)}, got {policy!r}")
        self.policy = name

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        policies = F.AUTOAUGMENT_POLICIES[self.policy]
        table = F.magnitude_bins(F.AUTOAUGMENT_SPACE, 10, x.shape[-2], x.shape[-1])
        batch, device = x.shape[0], draw_device(generator)
        chosen = torch.randint(len(policies), (batch,), generator=generator, device=device).tolist()
        coins = torch.rand((batch, 2), generator=generator, device=device).cpu().tolist()
        signs = (torch.rand((batch, 2), generator=generator, device=device) <= 0.5).cpu().tolist()
        ops = torch.full((batch, 2), -1, dtype=torch.int64)
        magnitudes = torch.zeros((batch, 2), dtype=torch.float64)
        for b in range(batch):
            for slot, (name, probability, bin_index) in enumerate(policies[chosen[b]]):
                if not coins[b][slot] <= probability:
                    continue
                ops[b, slot] = _OP_INDEX[name]
                values, signed = table[name]
                if values is not None and bin_index is not None:
                    magnitude = values[bin_index]
                    magnitudes[b, slot] = -magnitude if (signed and signs[b][slot]) else magnitude
        return {"ops": ops, "magnitudes": magnitudes}


class AugMix(_AutoAugmentBase):
    """AugMix (Hendrycks et al., 2020): a convex mix of the image and ``mixture_width`` op chains.

    Per sample: chain depths (``chain_depth``, or uniform in 1..3 when negative), ops and
    magnitude bins in ``[0, severity)``, Dirichlet chain weights and a Beta(alpha, alpha)
    original-vs-augmented weight. Masks and boxes cannot follow a mix of differently warped images.

    Args:
        severity: 1..10.
        mixture_width: number of chains.
        chain_depth: ops per chain; negative = random in 1..3.
        alpha: Dirichlet / Beta parameter.
        all_ops: include Brightness, Color, Contrast and Sharpness.
        interpolation: ``"bilinear"`` (torchvision's AugMix default) or ``"nearest"``.
        fill: as :class:`RandAugment`.
    """

    geometric = False  # its chains warp, but the blend of warped copies has no mask counterpart
    photometric = True
    blends = True  # a convex mix of the image and its augmented chains
    carries_masks = False

    def __init__(self, severity: int = 3, mixture_width: int = 3, chain_depth: int = -1, alpha: float = 1.0,
                 all_ops: bool = True, interpolation: str | InterpolationMode = "bilinear", fill: float | Sequence[float] | None = None) -> None:
        super().__init__(interpolation, fill)
        self.severity = _check_int("severity", severity, 1, 10)
        self.mixture_width = _check_int("mixture_width", mixture_width, 1)
        if isinstance(chain_depth, bool) or not isinstance(chain_depth, int) or chain_depth == 0:
            raise ValueError(f"chain_depth must be a positive int, or negative for a random depth in 1..3, got {chain_depth!r}")
        self.chain_depth = chain_depth
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:
            raise ValueError(f"alpha must be a finite float > 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.all_ops = bool(all_ops)

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        space = F.AUGMIX_SPACE[self.all_ops]
        names = list(space)
        table = F.magnitude_bins(space, 10, x.shape[-2], x.shape[-1])
        batch, width, device = x.shape[0], self.mixture_width, draw_device(generator)
        depth = self.chain_depth if self.chain_depth > 0 else 3
        shape = (batch, width, depth)
        choice = torch.randint(len(names), shape, generator=generator, device=device).cpu()
        bins = torch.randint(self.severity, shape, generator=generator, device=device).cpu()
        sign = torch.rand(shape, generator=generator, device=device).cpu() <= 0.5
        ops, magnitudes = self._draw(table, names, choice, bins, None, sign)
        if self.chain_depth < 0:
            depths = torch.randint(1, 4, (batch, width, 1), generator=generator, device=device).cpu()
            ops[torch.arange(depth).view(1, 1, depth) >= depths] = -1
        mix = sample_dirichlet(torch.full((batch, 2), self.alpha, dtype=torch.float64), generator).to(torch.float32).cpu()
        weights = sample_dirichlet(torch.full((batch, width), self.alpha, dtype=torch.float64), generator).to(torch.float32).cpu()
        return {"ops": ops, "magnitudes": magnitudes, "mix": mix, "weights": weights}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        F.fill_values(self.fill, x.shape[-3])
        return F.augmix(x, params["ops"], params["magnitudes"], params["mix"], params["weights"],
                        _INTERPOLATIONS[self.interpolation], self.fill)

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        raise TypeError("AugMix cannot carry masks: it blends differently warped copies of the image")

    def apply_boxes(self, boxes: tv_tensors.BoundingBoxes, params: Params) -> tv_tensors.BoundingBoxes:
        raise TypeError("AugMix cannot carry boxes: it blends differently warped copies of the image")
