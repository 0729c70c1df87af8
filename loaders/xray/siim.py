"""SIIM-ACR Pneumothorax Segmentation (``siim-pneumothorax``): DICOMs with run-length masks.

The 2019 SIIM-ACR Kaggle challenge. Label rule as TorchXRayVision's
``SIIM_Pneumothorax_Dataset``: ``Pneumothorax`` = 1 when any of the image's rows has a mask
(``EncodedPixels`` other than ``-1``), else 0; other pathologies NaN. The masks of all rows of an
image are decoded and merged into ``mask`` (uint8 ``[H,W]``, 1 = pneumothorax).

The stage-1 RLE is *relative*: pairs ``(offset, length)`` where each offset counts from the end of
the previous run, over the image flattened column by column (``rle="relative"``, default). The
stage-2 file uses absolute 1-based starts (``rle="absolute"``) [unverified layout].

Layout::

    root/train-rle.csv                       header verbatim "ImageId, EncodedPixels" (leading space)
        (also accepted: siim-pneumothorax-train-rle.csv[.gz], TorchXRayVision's copy)
    root/dicom-images-train/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loaders.base import SampleError
from loaders.codecs import encode
from loaders.dicom import DicomOptions
from loaders.layout import find_file, read_table
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key
from loaders.xray.common import XRayDataset, dicom_header_fields
from loaders.xray.labels import harmonise

__all__ = ["SIIMPneumothoraxDataset", "rle_decode", "rle_encode"]

_CSV = ("train-rle.csv", "siim-pneumothorax-train-rle.csv", "stage_2_train.csv")
_RLE_MODES = ("relative", "absolute")


def rle_decode(rle: str, height: int, width: int, *, mode: str = "relative") -> np.ndarray:
    """Decode one SIIM run-length string into a uint8 ``[height, width]`` mask (column-major runs).

    Raises:
        ValueError: malformed text (odd number of values, non-integers) or runs past the image.
    """
    if mode not in _RLE_MODES:
        raise ValueError(f"mode must be one of {_RLE_MODES}, got {mode!r}")
    try:
        values = np.array(rle.split(), dtype=np.int64)
    except ValueError:
        raise ValueError(f"RLE text is not a list of integers: {rle[:40]!r}") from None
    if values.size % 2:
        raise ValueError(f"RLE has an odd number of values ({values.size})")
    starts, lengths = values[0::2], values[1::2]
    if mode == "relative":
        ends_before = np.concatenate([[0], np.cumsum(starts + lengths)[:-1]])
        starts = ends_before + starts
    else:
        starts = starts - 1
    flat = np.zeros(height * width, dtype=np.uint8)
    if values.size and (starts.min() < 0 or (starts + lengths).max() > flat.size or lengths.min() < 0):
        raise ValueError(f"RLE runs fall outside a {height}x{width} image")
    for start, length in zip(starts.tolist(), lengths.tolist()):
        flat[start:start + length] = 1
    return flat.reshape(width, height).T.copy()


def rle_encode(mask: np.ndarray, *, mode: str = "relative") -> str:
    """Encode a binary ``[H,W]`` mask as SIIM run-length text (inverse of :func:`rle_decode`)."""
    flat = np.asarray(mask).T.reshape(-1).astype(bool)
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    if mode == "relative":
        previous_end = np.concatenate([[0], ends[:-1]])
        offsets = starts - previous_end
    else:
        offsets = starts + 1
    return " ".join(f"{o} {n}" for o, n in zip(offsets.tolist(), lengths.tolist()))


@register_dataset("siim-pneumothorax")
class SIIMPneumothoraxDataset(XRayDataset):
    """SIIM-ACR Pneumothorax: 12,047 DICOMs (8-bit MONOCHROME2) with pneumothorax masks.

    Args:
        root: the Kaggle folder (see the module docstring).
        split: ``"train"`` (the only labelled split).
        csv: the RLE CSV (default: looked up in ``root``).
        images: the DICOM folder under ``root`` (walked recursively; file name = ``<ImageId>.dcm``).
        rle: ``"relative"`` (stage 1, default) or ``"absolute"``.
        masks: decode the masks into ``mask`` / ``mask.png``.
        views: the CSV has no view; anything but ``"*"`` (the default) reads ``ViewPosition``
            from each DICOM header at indexing time.
        unique_patients: reads ``PatientID`` from the DICOM headers (otherwise patient = image).
        image_format, dicom, strict, decode, on_error, transform: see :class:`loaders.xray.common.XRayDataset`.
    """

    name = "siim-pneumothorax"
    default_views = "*"
    splits = ("train",)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        csv: str | os.PathLike | None = None,
        images: str = "dicom-images-train",
        rle: str = "relative",
        masks: bool = True,
        views: str | Sequence[str] | None = None,
        unique_patients: bool = False,
        image_format: str = "native",
        dicom: DicomOptions | None = None,
        strict: bool = False,
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(**self._base_arguments(locals()))
        if rle not in _RLE_MODES:
            raise ValueError(f"rle must be one of {_RLE_MODES}, got {rle!r}")
        self.rle, self.masks, self.images = rle, bool(masks), images
        self.csv = Path(csv) if csv is not None else find_file(self.root, _CSV, what="SIIM RLE CSV", option="csv")
        self.index

    def _files(self) -> dict[str, str]:
        found: dict[str, str] = {}
        top = self.root / self.images
        if not top.is_dir():
            raise FileNotFoundError(f"siim-pneumothorax: no image folder {str(top)!r}; pass images= to name it")
        for folder, _, names in os.walk(top):
            for name in names:
                if name.lower().endswith(".dcm"):
                    found.setdefault(name[:-4], os.path.join(folder, name))
        return found

    def _rows(self) -> list[dict[str, Any]]:
        table = read_table(self.csv)
        c_image, c_rle = table.column("ImageId"), table.column("EncodedPixels")
        images: dict[str, list[str]] = {}
        for row in table.rows:
            runs = images.setdefault(row[c_image].strip(), [])
            if row[c_rle].strip() != "-1":
                runs.append(row[c_rle].strip())
        files = self._files()
        need = [k for k, wanted in (("ViewPosition", self.views is not None), ("PatientID", self.unique_patients)) if wanted]
        rows = []
        for image, runs in images.items():
            path = files.get(image)
            header = dicom_header_fields(path, need) if need else {}
            rows.append({KEY: safe_key(image.replace(".", "_")), "path": path, "kind": "dcm",
                         "view": None if path is None and self.views is not None else header.get("ViewPosition", "UNKNOWN"),
                         "patient": header.get("PatientID", image),
                         "labels": harmonise({"Pneumothorax": float(bool(runs))}).tolist(),
                         "meta": {"image_id": image, "masks": len(runs)}, "rle": runs,
                         "missing": f"no {image}.dcm under {str(self.root / self.images)!r}"})
        return rows

    def _mask(self, record: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(shape, dtype=np.uint8)
        for text in record["rle"]:
            try:
                mask |= rle_decode(text, shape[0], shape[1], mode=self.rle)
            except ValueError as error:
                raise SampleError(f"bad EncodedPixels in {str(self.csv)!r}: {error}") from None
        return mask

    def _extra_decoded(self, record: Mapping[str, Any], image_shape: tuple[int, int]) -> dict[str, Any]:
        return {"mask": torch.from_numpy(self._mask(record, image_shape))} if self.masks else {}

    def _extra_encoded(self, record: Mapping[str, Any], image_shape: tuple[int, int] | None) -> dict[str, bytes]:
        if not self.masks or image_shape is None:
            return {}
        return {"mask.png": encode("mask.png", torch.from_numpy(self._mask(record, image_shape)))}
