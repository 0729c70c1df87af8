"""The base class every ``augment`` transform shares.

A transform is split the torchvision-v2 way: :meth:`Transform.make_params` draws
*all* randomness for a batch, one draw per sample, from torch only (optionally from a
``torch.Generator`` passed to the call), and :meth:`Transform.apply` calls a pure function of
:mod:`augment.functional` with those parameters. Parameters are a ``dict`` of tensors whose first
dimension is the batch, so :meth:`Transform.select` can cut the parameters of one sample out of a
batch's: applying a batch equals applying each sample with its own slice.

Inputs: an image tensor ``[C,H,W]`` or ``[B,C,H,W]`` (uint8 or float, any device; plain or
``tv_tensors.Image``), optionally followed by ``tv_tensors.Mask`` (``[H,W]``/``[1,H,W]`` per image,
``[B,H,W]`` per batch) and ``tv_tensors.BoundingBoxes``; or a sample ``dict`` with ``image`` /
``mask`` / ``boxes`` keys (other keys pass through). The output has the same structure, dtype and
device; inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchvision import tv_tensors

__all__ = ["Params", "Transform", "check_generator", "check_image", "draw_device"]

Params = dict[str, torch.Tensor]


def check_image(x: Any, name: str = "image") -> torch.Tensor:
    """Validate an image tensor ``[C,H,W]`` or ``[B,C,H,W]`` (uint8 or floating point).

    ``B = 0`` (an empty batch) is valid; images with ``C``, ``H`` or ``W`` = 0 are not
    (``ValueError`` naming the shape), since no op has a meaning on them.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [C,H,W] or [B,C,H,W], got {type(x).__name__}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape [C,H,W] or [B,C,H,W], got {tuple(x.shape)}")
    if not (x.dtype == torch.uint8 or x.is_floating_point()):
        raise TypeError(f"{name} must be uint8 or floating point, got {x.dtype}")
    if 0 in x.shape[-3:]:
        raise ValueError(f"{name} has a zero-size dimension: shape {tuple(x.shape)}; C, H and W must be >= 1 "
                         "(an empty batch, B = 0, is fine)")
    return x


def check_generator(generator: Any) -> torch.Generator | None:
    """``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def draw_device(generator: torch.Generator | None) -> torch.device | str:
    """Where parameters are drawn: the generator's device, CPU when none is given (then moved to
    the data), so the same seed gives the same parameters whatever the data's device."""
    return generator.device if generator is not None else "cpu"


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor) if type(x) is not torch.Tensor else x


class Transform:
    """Base class: subclasses implement :meth:`make_params` and :meth:`apply`.

    Subclasses that move pixels (geometric ops) override :meth:`apply_mask` (and
    :meth:`apply_boxes` where boxes have a meaning); the defaults pass masks and boxes through
    unchanged, which is right for photometric ops.

    Each transform says what it may do to an image with four flags, class attributes (or
    properties where the answer depends on the arguments, as for compositions, which combine
    their children's). They describe the op, change nothing in it, and let code (the contract
    tests, a pipeline choosing what to carry) ask instead of inspecting types or ``repr``. The
    first three are ``True`` when *some* draw may do it:

    * ``geometric``: pixels may move, and masks and boxes it carries move with them. AugMix is
      ``False``: its warped copies are blended, so nothing can follow them.
    * ``photometric``: pixel values may change where they are (colour, contrast, solarize...).
    * ``blends``: an output pixel may be a weighted mix of several input pixels or images:
      interpolating resampling (bilinear, bicubic...), a blur or sharpen kernel, a mix of
      augmented copies (AugMix). Masks never blend: they follow with nearest neighbours. A
      transform with ``geometric`` set and ``photometric`` and ``blends`` unset only moves
      pixels, so a label map equal to an image channel stays equal to it.
    * ``carries_masks``: a ``tv_tensors.Mask`` (or a sample's ``"mask"``) may be passed with the
      image and comes back transformed alike. When ``False``, passing one raises (in
      ``OneOf`` / ``RandomApply``, when a child that cannot carry it is drawn): AugMix, and
      compositions holding AugMix or the albumentations bridge, whose masks need the image.

    ``MixUp`` / ``CutMix`` (batch ops, not subclasses) have ``blends`` and ``carries_masks`` too.
    """

    #: pixels may move, and carried masks and boxes move with them
    geometric: bool = False
    #: pixel values may change in place (colour, contrast, ...)
    photometric: bool = False
    #: an output pixel may mix several input pixels or images (interpolation, blur, AugMix)
    blends: bool = False
    #: a mask may be passed with the image and follows it; ``False``: passing one raises
    carries_masks: bool = True
    # whether apply_mask needs only the parameters; False for the albumentations bridge, which
    # reruns its pipeline on the image, so compositions cannot carry its masks
    _masks_from_params: bool = True

    # -- to implement -------------------------------------------------------------------------
    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """Draw the parameters for the batch ``x`` ``[B,C,H,W]`` (one draw per sample)."""
        return {}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Apply to the batch ``x`` ``[B,C,H,W]`` with ``params`` (pure; never modifies ``x``)."""
        raise NotImplementedError

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        """Apply to an integer mask batch ``[B,H,W]``; identity by default (photometric ops)."""
        return mask

    def apply_boxes(self, boxes: tv_tensors.BoundingBoxes, params: Params) -> tv_tensors.BoundingBoxes:
        """Apply to the boxes of a single image; identity by default (photometric ops)."""
        return boxes

    # -- shared machinery ---------------------------------------------------------------------
    @staticmethod
    def select(params: Params, index: int | slice | torch.Tensor) -> Params:
        """The parameters of the samples ``index`` (every entry is indexed on its first dim)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return {key: value[index] for key, value in params.items()}

    def __call__(self, *inputs: Any, generator: torch.Generator | None = None) -> Any:
        check_generator(generator)
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            return self._call_dict(inputs[0], generator)
        if not inputs:
            raise TypeError(f"{type(self).__name__}() needs an image tensor")
        image, extras = inputs[0], inputs[1:]
        if isinstance(image, (tv_tensors.Mask, tv_tensors.BoundingBoxes)):
            raise TypeError(f"{type(self).__name__}(): the first input must be the image, got {type(image).__name__}")
        masks = [e for e in extras if isinstance(e, tv_tensors.Mask)]
        boxes = [e for e in extras if isinstance(e, tv_tensors.BoundingBoxes)]
        if len(masks) + len(boxes) != len(extras):
            bad = [type(e).__name__ for e in extras if not isinstance(e, (tv_tensors.Mask, tv_tensors.BoundingBoxes))]
            raise TypeError(f"{type(self).__name__}(): extra inputs must be tv_tensors.Mask or BoundingBoxes, got {bad}")
        out_image, params, single = self._run_image(image, generator)
        results = [out_image]
        for extra in extras:
            if isinstance(extra, tv_tensors.Mask):
                results.append(self._run_mask(extra, params, single))
            else:
                results.append(self._run_boxes(extra, params, single))
        return results[0] if len(results) == 1 else tuple(results)

    def _call_dict(self, sample: Mapping[str, Any], generator: torch.Generator | None) -> dict[str, Any]:
        if "image" not in sample:
            raise KeyError(f"{type(self).__name__}(): the sample has no 'image' key (keys: {sorted(sample)})")
        out = dict(sample)
        out["image"], params, single = self._run_image(sample["image"], generator)
        if sample.get("mask") is not None:
            out["mask"] = self._run_mask(sample["mask"], params, single)
        if sample.get("boxes") is not None:
            out["boxes"] = self._run_boxes(sample["boxes"], params, single)
        return out

    def _run_image(self, image: Any, generator: torch.Generator | None) -> tuple[torch.Tensor, Params, bool]:
        check_image(image)
        single = image.ndim == 3
        batch = _plain(image)[None] if single else _plain(image)
        params = self.make_params(batch, generator)
        out = self.apply(batch, params)
        out = out[0] if single else out
        if isinstance(image, tv_tensors.TVTensor):
            out = tv_tensors.wrap(out, like=image)
        return out, params, single

    def _run_mask(self, mask: torch.Tensor, params: Params, single: bool) -> torch.Tensor:
        plain = _plain(mask)
        if single:
            if plain.ndim == 2:
                out = self.apply_mask(plain[None], params)[0]
            elif plain.ndim == 3 and plain.shape[0] == 1:
                out = self.apply_mask(plain, params)
            else:
                raise ValueError(f"a single image's mask must be [H,W] or [1,H,W], got {tuple(plain.shape)}")
        else:
            if plain.ndim != 3:
                raise ValueError(f"a batch's mask must be [B,H,W], got {tuple(plain.shape)}")
            out = self.apply_mask(plain, params)
        return tv_tensors.wrap(out, like=mask) if isinstance(mask, tv_tensors.TVTensor) else out

    def _run_boxes(self, boxes: Any, params: Params, single: bool) -> Any:
        if not isinstance(boxes, tv_tensors.BoundingBoxes):
            if isinstance(boxes, (list, tuple)) and not single:
                return [self._run_boxes(b, self.select(params, i), True) for i, b in enumerate(boxes)]
            raise TypeError(f"boxes must be tv_tensors.BoundingBoxes (a list of them for a batch), got {type(boxes).__name__}")
        if not single:
            raise ValueError("for a batch, pass boxes as a list with one BoundingBoxes per image")
        return self.apply_boxes(boxes, params)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
