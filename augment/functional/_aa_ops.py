"""The AutoAugment-family operations, applied to a *group* of images that share one op and one
magnitude, with torchvision's definitions (``torchvision.transforms.v2`` AutoAugment et al.).

Each op here gives exactly torchvision's result for the same op and magnitude: most call
torchvision's own functional kernels on the group; two uint8 fast paths are exact by
construction:

* geometric ops with nearest interpolation on uint8: torchvision samples the image through a
  float32 grid; we push a float32 image holding each pixel's index through the *same* call
  (1-based linear index; row and column in two channels above 2**24 pixels, where float32 stops
  being exact), which yields the source pixel of every output pixel (0 = outside), then gather
  the uint8 pixels of the whole group with that one int64 index map and write the fill (one
  value or one per channel) outside -- one cheap grid sample per group instead of a 3-channel
  one per image, and no float image round trip;
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

__all__ = ["GEOMETRIC_OPS", "OPS", "apply_op", "apply_op_to_target", "check_fill", "fill_values"]

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


def _per_image(kernel: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``kernel`` on each image ``x[i:i+1]`` by itself, so an image's result never depends on the
    rest of its group.

    torchvision's float kernels with a reduction are not batch invariant: PyTorch picks the
    convolution backend by batch size (``Slow2d``, im2col + GEMM, for one 1-channel image;
    oneDNN for two or more), and the float32 sum behind a mean is vectorised differently for one
    plane and for several, so a group result differed from the same images one by one in the
    last bit. One call per image gives torchvision's own result for that image.
    """
    if x.shape[0] == 1:
        return kernel(x)
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        out[i:i + 1] = kernel(x[i:i + 1])
    return out


def _contrast(x: torch.Tensor, magnitude: float) -> torch.Tensor:
    return _per_image(lambda image: TF.adjust_contrast(image, contrast_factor=1.0 + magnitude), x)


def _sharpness(x: torch.Tensor, magnitude: float) -> torch.Tensor:
    factor = 1.0 + magnitude
    height, width = x.shape[-2:]
    if x.dtype != torch.uint8 or height <= 2 or width <= 2 or factor < 0:
        # float images: torchvision's 3x3 convolution, one image at a time (see _per_image)
        return _per_image(lambda image: TF.adjust_sharpness(image, sharpness_factor=factor), x)
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
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "Posterize": lambda x, m: TF.posterize(x, bits=int(m)),
    "Solarize": _solarize,
    "AutoContrast": lambda x, m: TF.autocontrast(x),
    "Equalize": _equalize,
    "Invert": lambda x, m: TF.invert(x),
}


#: float32 holds every integer up to 2**24 exactly: a one-channel map of linear indices is exact
#: up to this many pixels; larger images carry (row, column) in two channels instead
_EXACT_FLOAT32 = 1 << 24
#: maps of images up to this many pixels are memoised on CPU (about 9 bytes a pixel each)
_MEMO_PIXELS = 1 << 20


@functools.lru_cache(maxsize=512)
def _index_map_cpu(op: str, magnitude: float, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    return _index_map_uncached(op, magnitude, height, width, torch.device("cpu"))


def _index_map_uncached(op: str, magnitude: float, height: int, width: int,
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(source, inside)``: the int64 source pixel of every output pixel of a nearest geometric
    op, and a 0/1 uint8 map of the pixels that come from inside the image (``None`` when all do).

    The payload pushed through torchvision's call must be float32 (the dtype torchvision samples
    a uint8 image in, so the grid is the same), and float32 is exact for integers up to 2**24.
    Up to that many pixels the payload is the 1-based linear index, one channel; above it (a
    4096x4097 image), the 1-based row and column, two channels, each exact up to 2**24, combined
    into the linear index in int64. Nearest sampling copies a payload value, so both are exact.
    """
    if height * width <= _EXACT_FLOAT32:  # the common case: one channel
        iota = torch.arange(1, height * width + 1, dtype=torch.float32, device=device).view(1, 1, height, width)
        index = _geometric(iota, op, magnitude, InterpolationMode.NEAREST, None).view(-1).round().long()
        inside = index > 0
        source = (index - 1).clamp(min=0)
    else:
        rows = torch.arange(1, height + 1, dtype=torch.float32, device=device).view(1, 1, height, 1)
        cols = torch.arange(1, width + 1, dtype=torch.float32, device=device).view(1, 1, 1, width)
        payload = torch.cat([rows.expand(1, 1, height, width), cols.expand(1, 1, height, width)], dim=1)
        moved = _geometric(payload, op, magnitude, InterpolationMode.NEAREST, None).view(2, -1)
        inside = moved[0] > 0  # row and column are both 0 outside (zero padding)
        # (row - 1) * W + (col - 1), exact in int64; outside pixels (0, 0) clamp to index 0
        source = moved[0].to(torch.int64).mul_(width).add_(moved[1].to(torch.int64)).sub_(width + 1).clamp_(min=0)
    return source, (None if bool(inside.all()) else inside.to(torch.uint8))


def _index_map(op: str, magnitude: float, height: int, width: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    # the map depends only on (op, magnitude, size): CPU maps of common sizes are memoised (a pure
    # function's cache); large ones are not, so a few big images cannot pin gigabytes
    if device.type == "cpu" and height * width <= _MEMO_PIXELS:
        return _index_map_cpu(op, magnitude, height, width)
    return _index_map_uncached(op, magnitude, height, width, device)


def check_fill(fill: object) -> float | tuple[float, ...] | None:
    """Validate a ``fill`` argument: ``None``, a finite number, or a non-empty sequence of finite
    numbers (one per channel, as torchvision takes it); returns it as a float or a tuple."""
    if fill is None:
        return None
    if isinstance(fill, (list, tuple)):
        if not fill or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in fill):
            raise ValueError(f"fill must be None, a finite number or a sequence of finite numbers (one per channel), got {fill!r}")
        return tuple(float(v) for v in fill)
    if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not math.isfinite(fill):
        raise ValueError(f"fill must be None, a finite number or a sequence of finite numbers (one per channel), got {fill!r}")
    return fill


def fill_values(fill: object, channels: int) -> list[float] | None:
    """``fill`` as torchvision takes it (``None`` or a list of floats), checked against ``C``."""
    if fill is None:
        return None
    values = [float(v) for v in fill] if isinstance(fill, (list, tuple)) else [float(fill)]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"fill values must be finite, got {fill!r}")
    if len(values) not in (1, channels):
        raise ValueError(f"fill must be one value or one per channel ({channels}), got {len(values)} values: {fill!r}")
    return values


def _uint8_fill(fill: list[float] | None, channels: int, device: torch.device) -> torch.Tensor | None:
    """The uint8 fill torchvision writes (float32, rounded, cast), ``[C]``; ``None`` for no fill or
    values outside ``[0, 255]`` (whose cast to uint8 is not portable: torchvision's call handles those)."""
    if fill is None:
        return torch.zeros(channels, dtype=torch.uint8, device=device)
    values = torch.tensor(fill, dtype=torch.float32).round_()
    if bool(((values < 0) | (values > 255)).any()):
        return None
    return values.to(torch.uint8).expand(channels).to(device)


def _gather_pixels(x: torch.Tensor, source: torch.Tensor, inside: torch.Tensor | None,
                   fill: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    out = torch.gather(x.reshape(n * c, h * w), 1, source.view(1, -1).expand(n * c, -1))  # fastest on CPU
    if inside is not None:  # pixels from outside the image get the fill (0: torchvision's zero padding)
        if bool((fill == 0).all()):
            out.mul_(inside.view(1, -1))
        else:
            out = out.view(n, c, h * w)
            out = torch.where(inside.view(1, 1, -1).bool(), out, fill.view(1, c, 1))
    return out.view(n, c, h, w)


def apply_op(x: torch.Tensor, op: str, magnitude: float, interpolation: InterpolationMode = InterpolationMode.NEAREST,
             fill: object = None) -> torch.Tensor:
    """Apply one op with one magnitude to every image of ``x`` ``[n,C,H,W]``; returns a new tensor.

    Args:
        x: uint8 or float images (the group that drew this op and magnitude).
        op: a name from :data:`OPS`.
        magnitude: the signed magnitude, as torchvision computes it from its bins.
        interpolation: for the geometric ops (``nearest`` or ``bilinear``).
        fill: fill for pixels coming from outside the image, as torchvision takes it: ``None``
            (zeros), one number, or a sequence of one number per channel (``[r, g, b]``).
    """
    if op in GEOMETRIC_OPS:
        fill = fill_values(fill, x.shape[-3])
        if x.dtype == torch.uint8 and interpolation == InterpolationMode.NEAREST:
            fill_pixel = _uint8_fill(fill, x.shape[-3], x.device)
            if fill_pixel is not None:
                return _gather_pixels(x, *_index_map(op, magnitude, x.shape[-2], x.shape[-1], x.device), fill_pixel)
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
