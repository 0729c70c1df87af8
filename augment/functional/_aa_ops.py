"""The AutoAugment-family operations, applied to a *group* of images that share one op and one
magnitude, with torchvision's definitions (``torchvision.transforms.v2`` AutoAugment et al.).

Each op here gives exactly torchvision's result for the same op and magnitude: most call
torchvision's own functional kernels on the group; two uint8 fast paths are exact by
construction:

* geometric ops with nearest interpolation and no fill: torchvision samples the image through a
  float grid; we push a float image holding each pixel's linear index through the *same* call,
  which yields the source pixel of every output pixel (0 = outside), then gather the uint8 pixels
  of the whole group with that one index map -- one cheap 1-channel grid sample per group
  instead of a 3-channel one per image, and no float image round trip;
* Solarize on uint8 compares against the integer ``ceil(threshold)``, which selects exactly the
  pixels the float comparison selects.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

__all__ = ["GEOMETRIC_OPS", "OPS", "apply_op", "apply_op_to_target"]

#: every op name, in a fixed order; op indices in parameters refer to this tuple
OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
       "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
GEOMETRIC_OPS = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})


def _geometric(inpt: torch.Tensor, op: str, magnitude: float, interpolation: InterpolationMode, fill: object) -> torch.Tensor:
    """The torchvision call behind each geometric op (works on images, masks and boxes)."""
    if op == "ShearX":  # torchvision shears by atan(magnitude) degrees around the top-left corner
        return TF.affine(inpt, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(math.atan(magnitude)), 0.0],
                         interpolation=interpolation, fill=fill, center=[0, 0])
    if op == "ShearY":
        return TF.affine(inpt, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, math.degrees(math.atan(magnitude))],
                         interpolation=interpolation, fill=fill, center=[0, 0])
    if op == "TranslateX":
        return TF.affine(inpt, angle=0.0, translate=[int(magnitude), 0], scale=1.0, interpolation=interpolation,
                         shear=[0.0, 0.0], fill=fill)
    if op == "TranslateY":
        return TF.affine(inpt, angle=0.0, translate=[0, int(magnitude)], scale=1.0, interpolation=interpolation,
                         shear=[0.0, 0.0], fill=fill)
    if op == "Rotate":
        return TF.rotate(inpt, angle=magnitude, interpolation=interpolation, fill=fill)
    raise AssertionError(op)


def _solarize(x: torch.Tensor, magnitude: float) -> torch.Tensor:
    bound = 255.0 if x.dtype == torch.uint8 else 1.0
    threshold = bound * magnitude
    if x.dtype != torch.uint8:
        return TF.solarize(x, threshold=threshold)
    # torchvision compares the uint8 image against the threshold as float32
    first = math.ceil(torch.tensor(threshold, dtype=torch.float32).item())
    if first > 255:
        return x.clone()
    if first <= 0:
        return x.bitwise_not()
    return x ^ (x >= first).to(torch.uint8).mul_(255)  # x ^ 255 == ~x; faster than torch.where on uint8


def _sharpness(x: torch.Tensor, magnitude: float) -> torch.Tensor:
    factor = 1.0 + magnitude
    height, width = x.shape[-2:]
    if x.dtype != torch.uint8 or height <= 2 or width <= 2 or factor < 0:
        return TF.adjust_sharpness(x, sharpness_factor=factor)
    # torchvision blurs with the 3x3 kernel [[1,1,1],[1,5,1],[1,1,1]]/13 in float32 and rounds. The
    # exact value S/13 is never within 1/26 of a half-integer and float32 error is far below
    # that, so round(conv) == round(S / 13) with S summed exactly in int16 (no convolution).
    wide = x.to(torch.int16)
    rows = wide[..., :, :-2] + wide[..., :, 1:-1] + wide[..., :, 2:]
    window = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    window.add_(wide[..., 1:-1, 1:-1], alpha=4)
    # S / 13 in float32 is correctly rounded and never near .5, so this rounding is exact too
    blurred = window.to(torch.float32).div_(13.0).round_()
    # from here on, the same float32 operations as torchvision's kernel
    output = x.to(dtype=torch.float32, copy=True)
    view = output[..., 1:-1, 1:-1]
    view.add_(blurred.sub_(view), alpha=(1.0 - factor))
    return output.clamp_(0, 255).to(x.dtype)


def _equalize(x: torch.Tensor, magnitude: float) -> torch.Tensor:
    """torchvision's (PIL's) histogram equalisation, per image and channel; exact integer math."""
    if x.dtype != torch.uint8:
        return TF.equalize(x)
    n, c, h, w = x.shape
    flat = x.reshape(n * c, h * w).to(torch.int32)
    flat += torch.arange(n * c, dtype=torch.int32, device=x.device).view(-1, 1) * 256  # one histogram per plane
    flat = flat.view(-1)
    hist = torch.bincount(flat, minlength=n * c * 256).view(n * c, 256)
    cum = hist.cumsum(dim=1)
    last = cum.argmax(dim=1, keepdim=True)  # the last non-empty bin
    step = (h * w - hist.gather(1, last)).div(255, rounding_mode="floor")
    lut = (cum[:, :-1] + step // 2).div(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], dim=1)
    lut = torch.where(step != 0, lut, torch.arange(256, device=x.device).view(1, -1))  # flat images stay
    out = lut.to(torch.uint8).view(-1).index_select(0, flat)
    return out.view(n, c, h, w)


_PHOTOMETRIC: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "Identity": lambda x, m: x.clone(),
    "Brightness": lambda x, m: TF.adjust_brightness(x, brightness_factor=1.0 + m),
    "Color": lambda x, m: TF.adjust_saturation(x, saturation_factor=1.0 + m),
    "Contrast": lambda x, m: TF.adjust_contrast(x, contrast_factor=1.0 + m),
    "Sharpness": _sharpness,
    "Posterize": lambda x, m: TF.posterize(x, bits=int(m)),
    "Solarize": _solarize,
    "AutoContrast": lambda x, m: TF.autocontrast(x),
    "Equalize": _equalize,
    "Invert": lambda x, m: TF.invert(x),
}


@functools.lru_cache(maxsize=512)
def _index_map_cpu(op: str, magnitude: float, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    return _index_map_uncached(op, magnitude, height, width, torch.device("cpu"))


def _index_map_uncached(op: str, magnitude: float, height: int, width: int,
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(source, inside)``: the source pixel of every output pixel of a nearest geometric op, and
    a 0/1 uint8 map of the pixels that come from inside the image (``None`` when all do)."""
    iota = torch.arange(1, height * width + 1, dtype=torch.float32, device=device).view(1, 1, height, width)
    index = _geometric(iota, op, magnitude, InterpolationMode.NEAREST, None).view(-1).round().long()
    inside = index > 0
    source = (index - 1).clamp(min=0)
    return source, (None if bool(inside.all()) else inside.to(torch.uint8))


def _index_map(op: str, magnitude: float, height: int, width: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    # the map depends only on (op, magnitude, size): CPU maps are memoised (a pure function's cache)
    if device.type == "cpu":
        return _index_map_cpu(op, magnitude, height, width)
    return _index_map_uncached(op, magnitude, height, width, device)


def _gather_pixels(x: torch.Tensor, source: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
    n, c, h, w = x.shape
    out = torch.gather(x.reshape(n * c, h * w), 1, source.view(1, -1).expand(n * c, -1))  # fastest on CPU
    if inside is not None:  # pixels from outside the image are 0 (torchvision's zero padding)
        out.mul_(inside.view(1, -1))
    return out.view(n, c, h, w)


def apply_op(x: torch.Tensor, op: str, magnitude: float, interpolation: InterpolationMode = InterpolationMode.NEAREST,
             fill: object = None) -> torch.Tensor:
    """Apply one op with one magnitude to every image of ``x`` ``[n,C,H,W]``; returns a new tensor.

    Args:
        x: uint8 or float images (the group that drew this op and magnitude).
        op: a name from :data:`OPS`.
        magnitude: the signed magnitude, as torchvision computes it from its bins.
        interpolation: for the geometric ops (``nearest`` or ``bilinear``).
        fill: fill value for pixels coming from outside the image (``None`` = 0).
    """
    if op in GEOMETRIC_OPS:
        if x.dtype == torch.uint8 and interpolation == InterpolationMode.NEAREST and fill is None:
            return _gather_pixels(x, *_index_map(op, magnitude, x.shape[-2], x.shape[-1], x.device))
        out = _geometric(x, op, magnitude, interpolation, fill)
        return out.clone() if out.data_ptr() == x.data_ptr() else out
    try:
        return _PHOTOMETRIC[op](x, magnitude)
    except KeyError:
        raise ValueError(f"unknown op {op!r}; allowed: {OPS}") from None


def apply_op_to_target(target: torch.Tensor, op: str, magnitude: float, fill: object = None) -> torch.Tensor:
    """Carry a ``tv_tensors.Mask`` or ``BoundingBoxes`` through ``op`` (identity for photometric ops).

    Masks use nearest interpolation (labels must not blend), as torchvision does.
    """
    if op not in GEOMETRIC_OPS:
        return target
    if not isinstance(target, (tv_tensors.Mask, tv_tensors.BoundingBoxes)):
        raise TypeError(f"targets must be tv_tensors.Mask or BoundingBoxes, got {type(target).__name__}")
    return _geometric(target, op, magnitude, InterpolationMode.NEAREST, fill)
