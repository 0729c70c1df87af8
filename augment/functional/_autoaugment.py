"""AutoAugment (Cubuk et al., 2019), RandAugment (Cubuk et al., 2020), TrivialAugmentWide
(Muller & Hutter, 2021) and AugMix (Hendrycks et al., 2020) as pure batched kernels.

Parameters are per sample: ``ops`` (int64 indices into :data:`OPS`, ``-1`` = skip) and
``magnitudes`` (float64, signed, exactly the Python floats torchvision derives from its float32
bins). :func:`apply_ops` groups the samples of each slot by ``(op, magnitude)`` and applies each
group at once (:func:`augment.functional._aa_ops.apply_op`), so a batch costs a handful of kernel
calls instead of one call per image, and every image gets exactly torchvision's result for its op.
The magnitude bins and policies below are torchvision v2's (checked against it by the tests).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms.v2 import InterpolationMode

from augment.functional._alloc import empty_like
from augment.functional._aa_ops import GEOMETRIC_OPS, OPS, apply_op, apply_op_to_target

__all__ = [
    "AUGMIX_SPACE",
    "AUTOAUGMENT_POLICIES",
    "AUTOAUGMENT_SPACE",
    "RANDAUGMENT_SPACE",
    "TRIVIALAUGMENT_SPACE",
    "apply_ops",
    "apply_ops_to_target",
    "augmix",
    "magnitude_bins",
]

_Space = dict[str, tuple[Callable[[int, int, int], torch.Tensor | None], bool]]


def _lin(low: float, high: float) -> Callable[[int, int, int], torch.Tensor]:
    return lambda bins, height, width: torch.linspace(low, high, bins)


def _none(bins: int, height: int, width: int) -> None:
    return None


def _posterize(top: int) -> Callable[[int, int, int], torch.Tensor]:
    return lambda bins, height, width: (top - (torch.arange(bins) / ((bins - 1) / 4))).round().int()


_SHARED: _Space = {
    "ShearX": (_lin(0.0, 0.3), True),
    "ShearY": (_lin(0.0, 0.3), True),
    "TranslateX": (lambda bins, height, width: torch.linspace(0.0, 150.0 / 331.0 * width, bins), True),
    "TranslateY": (lambda bins, height, width: torch.linspace(0.0, 150.0 / 331.0 * height, bins), True),
    "Rotate": (_lin(0.0, 30.0), True),
    "Brightness": (_lin(0.0, 0.9), True),
    "Color": (_lin(0.0, 0.9), True),
    "Contrast": (_lin(0.0, 0.9), True),
    "Sharpness": (_lin(0.0, 0.9), True),
    "Posterize": (_posterize(8), False),
    "Solarize": (_lin(1.0, 0.0), False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
}
#: op -> (bins(num_bins, H, W), signed): torchvision's AutoAugment space
AUTOAUGMENT_SPACE: _Space = {**_SHARED, "Invert": (_none, False)}
#: RandAugment's space (Identity, no Invert)
RANDAUGMENT_SPACE: _Space = {"Identity": (_none, False), **_SHARED}
#: TrivialAugmentWide's wider ranges
TRIVIALAUGMENT_SPACE: _Space = {
    "Identity": (_none, False),
    "ShearX": (_lin(0.0, 0.99), True),
    "ShearY": (_lin(0.0, 0.99), True),
    "TranslateX": (_lin(0.0, 32.0), True),
    "TranslateY": (_lin(0.0, 32.0), True),
    "Rotate": (_lin(0.0, 135.0), True),
    "Brightness": (_lin(0.0, 0.99), True),
    "Color": (_lin(0.0, 0.99), True),
    "Contrast": (_lin(0.0, 0.99), True),
    "Sharpness": (_lin(0.0, 0.99), True),
    "Posterize": (lambda bins, height, width: (8 - (torch.arange(bins) / ((bins - 1) / 6))).round().int(), False),
    "Solarize": (_lin(1.0, 0.0), False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
}
_AUGMIX_PARTIAL: _Space = {
    "ShearX": (_lin(0.0, 0.3), True),
    "ShearY": (_lin(0.0, 0.3), True),
    "TranslateX": (lambda bins, height, width: torch.linspace(0.0, width / 3.0, bins), True),
    "TranslateY": (lambda bins, height, width: torch.linspace(0.0, height / 3.0, bins), True),
    "Rotate": (_lin(0.0, 30.0), True),
    "Posterize": (_posterize(4), False),
    "Solarize": (_lin(1.0, 0.0), False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
}
#: AugMix's spaces: ``(all_ops=False, all_ops=True)``
AUGMIX_SPACE: tuple[_Space, _Space] = (
    _AUGMIX_PARTIAL,
    {**_AUGMIX_PARTIAL, "Brightness": (_lin(0.0, 0.9), True), "Color": (_lin(0.0, 0.9), True),
     "Contrast": (_lin(0.0, 0.9), True), "Sharpness": (_lin(0.0, 0.9), True)},
)

_P = tuple[tuple[str, float, int | None], tuple[str, float, int | None]]
#: torchvision's AutoAugment policies: 25 sub-policies of two (op, probability, magnitude bin)
AUTOAUGMENT_POLICIES: dict[str, tuple[_P, ...]] = {
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)), (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)), (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)), (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ),
    "cifar10": (
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)), (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)), (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)), (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ),
    "svhn": (
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)), (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)), (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)), (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)), (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)), (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)), (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)), (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)), (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)), (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)), (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)), (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ),
}


def magnitude_bins(space: _Space, num_bins: int, height: int, width: int) -> dict[str, tuple[list[float] | None, bool]]:
    """``op -> (magnitudes as Python floats or None, signed)`` for one image size."""
    table: dict[str, tuple[list[float] | None, bool]] = {}
    for op, (bins, signed) in space.items():
        values = bins(num_bins, height, width)
        table[op] = (None if values is None else [float(v) for v in values], signed)
    return table


_CHUNK = 8  # images per kernel call: big enough to amortise the call, small enough for the cache


def _groups(ops: torch.Tensor, magnitudes: torch.Tensor) -> dict[tuple[int, float], list[int]]:
    groups: dict[tuple[int, float], list[int]] = {}
    for i, (op, magnitude) in enumerate(zip(ops.tolist(), magnitudes.tolist())):
        if op >= 0:
            groups.setdefault((op, magnitude), []).append(i)
    return groups


def _apply_slot(x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor, interpolation: InterpolationMode,
                fill: object) -> torch.Tensor:
    out = empty_like(x).copy_(x)
    for (op, magnitude), members in _groups(ops.cpu(), magnitudes.cpu()).items():
        name = OPS[op]
        if name == "Identity":
            continue
        for first in range(0, len(members), _CHUNK):
            chunk = members[first:first + _CHUNK]
            result = apply_op(x.index_select(0, torch.tensor(chunk, device=x.device)), name, magnitude, interpolation, fill)
            for row, i in enumerate(chunk):  # per-image copies: index_copy_ is slow for uint8 images
                out[i].copy_(result[row])
    return out


def apply_ops(x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor,
              interpolation: InterpolationMode = InterpolationMode.NEAREST, fill: object = None) -> torch.Tensor:
    """Apply per-sample op sequences: sample ``b`` gets ``ops[b, 0]``, then ``ops[b, 1]``, ...

    Args:
        x: ``[B,C,H,W]`` uint8 or float.
        ops: int64 ``[B, S]``, indices into :data:`OPS`, ``-1`` = skip this slot.
        magnitudes: float64 ``[B, S]`` signed magnitudes.
        interpolation: for geometric ops.
        fill: outside fill (``None`` = 0).
    """
    if ops.shape != magnitudes.shape or ops.ndim != 2 or ops.shape[0] != x.shape[0]:
        raise ValueError(f"ops and magnitudes must both be [B, S] with B={x.shape[0]}, got {tuple(ops.shape)} and {tuple(magnitudes.shape)}")
    out = x
    for slot in range(ops.shape[1]):
        out = _apply_slot(out, ops[:, slot], magnitudes[:, slot], interpolation, fill)
    return out if ops.shape[1] else x.clone()


def apply_ops_to_target(target: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor, fill: object = None) -> torch.Tensor:
    """Carry one image's ``tv_tensors.Mask`` / ``BoundingBoxes`` through its ops (``ops`` ``[S]``)."""
    for op, magnitude in zip(ops.tolist(), magnitudes.tolist()):
        if op >= 0 and OPS[op] in GEOMETRIC_OPS:
            target = apply_op_to_target(target, OPS[op], magnitude, fill)
    return target


def augmix(x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor, mix: torch.Tensor, weights: torch.Tensor,
           interpolation: InterpolationMode = InterpolationMode.BILINEAR, fill: object = None) -> torch.Tensor:
    """AugMix with drawn parameters, combined the way torchvision v2 combines them.

    ``out = m0 * x + sum_i (weights[:, i] * m1) * chain_i(x)`` in float32, cast back to ``x``'s
    dtype (truncating, as torchvision does).

    Args:
        x: ``[B,C,H,W]``.
        ops, magnitudes: ``[B, width, depth]`` chains (``-1`` pads chains shorter than ``depth``).
        mix: float32 ``[B, 2]``: Beta weights of (original, augmented).
        weights: float32 ``[B, width]``: Dirichlet weights of the chains.
    """
    batch, width, _ = ops.shape
    if batch == 0:  # an empty batch
        return x.clone()
    view = [batch] + [1] * (x.ndim - 1)
    combined = weights.to(x.device) * mix[:, 1].to(x.device).reshape(batch, -1)
    out = mix[:, 0].to(x.device).reshape(view) * x
    for chain in range(width):
        augmented = apply_ops(x, ops[:, chain], magnitudes[:, chain], interpolation, fill)
        out.add_(combined[:, chain].reshape(view) * augmented)
    return out.to(dtype=x.dtype)
