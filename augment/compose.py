"""Composition: :class:`Compose`, :class:`OneOf` and :class:`RandomApply`, all per sample.

They are transforms themselves: their parameters are their children's (prefixed ``"<i>."``) plus
their own per-sample choices, so the contract (same seed -> same output, batch = per-sample with
the same parameters, masks follow geometric children) holds for whole pipelines. Their flags
(:class:`augment.Transform`) combine their children's: ``geometric``,
``photometric`` and ``blends`` if any child's is set, ``carries_masks`` if every child carries
masks from its parameters alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision import tv_tensors

from augment._transform import Params, Transform, draw_device

__all__ = ["Compose", "OneOf", "RandomApply"]


def _check_children(transforms: Sequence[Transform], name: str) -> tuple[Transform, ...]:
    if isinstance(transforms, Transform) or not isinstance(transforms, Sequence):
        raise TypeError(f"{name} takes a sequence of augment transforms, got {type(transforms).__name__}")
    for t in transforms:
        if not isinstance(t, Transform):
            raise TypeError(f"{name} children must be augment transforms (augment.Transform), got {type(t).__name__}")
    return tuple(transforms)


def _child_params(params: Params, i: int) -> Params:
    prefix = f"{i}."
    return {key[len(prefix):]: value for key, value in params.items() if key.startswith(prefix)}


def _prefixed(params: Params, i: int) -> Params:
    return {f"{i}.{key}": value for key, value in params.items()}


class _Composition(Transform):
    """A transform whose flags combine those of its children (``_children()``)."""

    def _children(self) -> Sequence[Transform]:
        raise NotImplementedError

    @property
    def geometric(self) -> bool:  # type: ignore[override]
        return any(t.geometric for t in self._children())

    @property
    def photometric(self) -> bool:  # type: ignore[override]
        return any(t.photometric for t in self._children())

    @property
    def blends(self) -> bool:  # type: ignore[override]
        return any(t.blends for t in self._children())

    @property
    def carries_masks(self) -> bool:  # type: ignore[override]
        return all(t.carries_masks and t._masks_from_params for t in self._children())


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    return float(p)


class Compose(_Composition):
    """Apply ``transforms`` in order.

    Args:
        transforms: a sequence of augment transforms.
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = _check_children(transforms, "Compose")

    def _children(self) -> Sequence[Transform]:
        return self.transforms

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        params: Params = {}
        for i, t in enumerate(self.transforms):
            params.update(_prefixed(t.make_params(x, generator), i))
        return params

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        for i, t in enumerate(self.transforms):
            x = t.apply(x, _child_params(params, i))
        return x if self.transforms else x.clone()

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        for i, t in enumerate(self.transforms):
            mask = t.apply_mask(mask, _child_params(params, i))
        return mask

    def apply_boxes(self, boxes: tv_tensors.BoundingBoxes, params: Params) -> tv_tensors.BoundingBoxes:
        for i, t in enumerate(self.transforms):
            boxes = t.apply_boxes(boxes, _child_params(params, i))
        return boxes


class OneOf(_Composition):
    """Apply one of ``transforms`` per sample, chosen with probabilities ``p`` (uniform by default).

    Args:
        transforms: a non-empty sequence of augment transforms.
        p: one finite, non-negative weight per transform (normalised; a positive sum), or ``None``.
    """

    def __init__(self, transforms: Sequence[Transform], p: Sequence[float] | None = None) -> None:
        self.transforms = _check_children(transforms, "OneOf")
        if not self.transforms:
            raise ValueError("OneOf needs at least one transform")
        if p is not None:
            if (len(p) != len(self.transforms)
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf for v in p)
                    or sum(p) <= 0):
                raise ValueError(f"p must hold {len(self.transforms)} non-negative weights with a positive sum, got {p!r}")
            p = tuple(float(v) for v in p)
        self.p = p

    def _children(self) -> Sequence[Transform]:
        return self.transforms

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        weights = torch.tensor(self.p if self.p is not None else [1.0] * len(self.transforms), dtype=torch.float64)
        device = draw_device(generator)
        if x.shape[0]:
            choice = torch.multinomial(weights.to(device), x.shape[0], replacement=True, generator=generator).cpu()
        else:  # an empty batch (multinomial refuses to draw 0 samples)
            choice = torch.empty(0, dtype=torch.int64)
        params: Params = {"choice": choice}
        for i, t in enumerate(self.transforms):
            params.update(_prefixed(t.make_params(x, generator), i))
        return params

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        out = x.clone()
        for i, t in enumerate(self.transforms):
            index = (params["choice"] == i).nonzero().view(-1)
            if index.numel():
                out[index.to(x.device)] = t.apply(x[index.to(x.device)], Transform.select(_child_params(params, i), index))
        return out

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        out = mask.clone()
        for i, t in enumerate(self.transforms):
            index = (params["choice"] == i).nonzero().view(-1)
            if index.numel():
                out[index.to(mask.device)] = t.apply_mask(mask[index.to(mask.device)], Transform.select(_child_params(params, i), index))
        return out

    def apply_boxes(self, boxes: tv_tensors.BoundingBoxes, params: Params) -> tv_tensors.BoundingBoxes:
        i = int(params["choice"][0])
        return self.transforms[i].apply_boxes(boxes, _child_params(params, i))


class RandomApply(_Composition):
    """Apply ``transform`` to each sample with probability ``p``.

    Args:
        transform: an augment transform.
        p: probability per sample.
    """

    def __init__(self, transform: Transform, p: float = 0.5) -> None:
        if not isinstance(transform, Transform):
            raise TypeError(f"RandomApply takes an augment transform, got {type(transform).__name__}")
        self.transform = transform
        self.p = _check_p(p)

    def _children(self) -> Sequence[Transform]:
        return (self.transform,)

    def make_params(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        coin = torch.rand(x.shape[0], generator=generator, device=draw_device(generator)).cpu() < self.p
        return {"apply": coin, **_prefixed(self.transform.make_params(x, generator), 0)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        index = params["apply"].nonzero().view(-1)
        out = x.clone()
        if index.numel():
            out[index.to(x.device)] = self.transform.apply(x[index.to(x.device)], Transform.select(_child_params(params, 0), index))
        return out

    def apply_mask(self, mask: torch.Tensor, params: Params) -> torch.Tensor:
        index = params["apply"].nonzero().view(-1)
        out = mask.clone()
        if index.numel():
            out[index.to(mask.device)] = self.transform.apply_mask(mask[index.to(mask.device)], Transform.select(_child_params(params, 0), index))
        return out

    def apply_boxes(self, boxes: tv_tensors.BoundingBoxes, params: Params) -> tv_tensors.BoundingBoxes:
        if bool(params["apply"][0]):
            return self.transform.apply_boxes(boxes, _child_params(params, 0))
        return boxes
