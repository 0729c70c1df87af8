"""Chest X-ray samples into training batches for the ``cxr`` trainer (:mod:`pipelines.train.cxr`).

:class:`CXRSampleTransform` turns one decoded sample (an adapter's, or a shard's written by
``pipelines.build_shards`` from one) into a fixed-size single-channel image and the label
columns the trainer predicts, checking every field it reads; :func:`keep_views` keeps the
frontal rows of a collated batch. Image conventions are TorchXRayVision's (Cohen et al., MIDL
2022): ``(2 x / maxval - 1) * 1024`` in [-1024, 1024] from the image's full scale, then a centre
crop on the long side (``XRayCenterCrop``) and a resize.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from loaders.schema import KEY
from loaders.xray import PATHOLOGIES, convert_image
from pipelines.tario import ShardError

__all__ = ["IMAGE_FORMATS", "CXRSampleTransform", "center_crop_square", "keep_views", "label_index"]

IMAGE_FORMATS = ("float", "uint8")


def label_index(label_columns: Sequence[str], pathologies: Sequence[str]) -> list[int]:
    """For each of ``pathologies``, its column in a labels vector named ``label_columns`` (-1: absent,
    the column will be NaN -- TorchXRayVision's ``relabel_dataset`` semantics)."""
    position = {name: i for i, name in enumerate(label_columns)}
    return [position.get(name, -1) for name in pathologies]


def center_crop_square(image: torch.Tensor) -> torch.Tensor:
    """The centred square on the short side of ``[C, H, W]`` (TorchXRayVision's ``XRayCenterCrop``)."""
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = h // 2 - side // 2, w // 2 - side // 2
    return image[..., top:top + side, left:left + side]


def _sample_error(sample: Mapping[str, Any], problem: str) -> ShardError:
    return ShardError(f"cxr: sample {sample.get(KEY, '?')!r}: {problem}")


class CXRSampleTransform:
    """One decoded chest X-ray sample -> ``{"image", "labels", "frontal"}`` ready to batch.

    Picklable (runs in loader workers). Needs the fields ``image`` (``[C, H, W]`` uint8/uint16;
    a colour file keeps its first channel, as the adapters do) and ``labels`` (float32
    ``[len(label_columns)]``), and ``meta["maxval"]`` (the image's full scale; 255 may be omitted
    for uint8 images) and ``meta["view"]`` (unless ``views`` is ``None``). A missing or malformed
    field raises :class:`~pipelines.tario.ShardError` naming the sample and the field.

    Args:
        image_size: output side (square).
        image_format: ``"float"`` ([-1024, 1024] float32) or ``"uint8"``.
        views: the views kept as frontal (``None``: every view).
        label_columns: the names of the shard's ``labels`` columns, in order.
        pathologies: the output columns (each must be a known pathology name).
    """

    def __init__(self, image_size: int, image_format: str = "float", views: Sequence[str] | None = ("PA", "AP"),
                 label_columns: Sequence[str] = PATHOLOGIES, pathologies: Sequence[str] = PATHOLOGIES) -> None:
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {list(IMAGE_FORMATS)}, got {image_format!r}")
        self.image_size, self.image_format = int(image_size), image_format
        self.views = None if views is None else frozenset(views)
        self.width = len(label_columns)
        self.index = label_index(label_columns, pathologies)

    def _meta(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        meta = sample.get("meta", {})
        if not isinstance(meta, Mapping):
            raise _sample_error(sample, f"field 'meta' must be a JSON object, got {type(meta).__name__}")
        return meta

    def _image(self, sample: Mapping[str, Any], meta: Mapping[str, Any]) -> torch.Tensor:
        image = sample.get("image")
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] < 1:
            raise _sample_error(sample, "missing field 'image' (a [C, H, W] image member: png/jpg)" if image is None
                                else f"field 'image' must be a [C, H, W] tensor, got {getattr(image, 'shape', type(image))}")
        if image.dtype not in (torch.uint8, torch.uint16):
            raise _sample_error(sample, f"field 'image' must be uint8/uint16 (a stored X-ray), got {image.dtype}")
        maxval = meta.get("maxval", 255 if image.dtype == torch.uint8 else None)
        if maxval is None:
            raise _sample_error(sample, f"missing field 'meta.maxval' (the full scale of a {image.dtype} image)")
        if isinstance(maxval, bool) or not isinstance(maxval, int) or maxval < 1:
            raise _sample_error(sample, f"field 'meta.maxval' must be an int >= 1, got {maxval!r}")
        image = image[:1]
        top = int((image if image.dtype == torch.uint8 else image.to(torch.int32)).max())  # no uint16 max in torch
        if top > maxval:  # TorchXRayVision's normalize refuses this too
            raise _sample_error(sample, f"image value {top} exceeds meta.maxval {maxval}")
        image = convert_image(image, maxval, self.image_format)
        image = center_crop_square(image)
        if image.shape[-1] != self.image_size:
            from torchvision.transforms.v2.functional import resize

            image = resize(image, [self.image_size, self.image_size], antialias=True)
        return image.contiguous()

    def _labels(self, sample: Mapping[str, Any]) -> torch.Tensor:
        labels = sample.get("labels")
        if labels is None:
            raise _sample_error(sample, "missing field 'labels' (a labels.npy member: float32 [K], NaN = unknown)")
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.shape[0] != self.width or not labels.is_floating_point():
            raise _sample_error(sample, f"field 'labels' must be a float vector of {self.width} values (label_columns), "
                                        f"got {labels.dtype} {tuple(labels.shape)}")
        labels = labels.to(torch.float32)
        out = torch.full((len(self.index),), float("nan"))
        for j, i in enumerate(self.index):
            if i >= 0:
                out[j] = labels[i]
        bad = out[~torch.isnan(out) & (out != 0) & (out != 1)]
        if bad.numel():
            raise _sample_error(sample, f"field 'labels' must hold 0, 1 or NaN, got {bad[0].item()}")
        return out

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        meta = self._meta(sample)
        frontal = True
        if self.views is not None:
            view = meta.get("view")
            if not isinstance(view, str):
                raise _sample_error(sample, "missing field 'meta.view' (needed by the views filter; views=['*'] keeps all)")
            frontal = view in self.views
        return {"image": self._image(sample, meta), "labels": self._labels(sample), "frontal": torch.tensor(frontal)}


def keep_views(batch: dict[str, Any]) -> dict[str, Any]:
    """The frontal rows of a collated batch, plus ``dropped`` (how many others, an int).

    The batch may end up empty: the model and :func:`masked_bce_with_logits` accept that, so a
    DDP rank still runs its forward and backward passes in step with the others."""
    keep = batch["frontal"]
    return {"image": batch["image"][keep], "labels": batch["labels"][keep], "dropped": int((~keep).sum())}
