"""The chest X-ray base adapter: metadata tables, view filter, one image per patient, image output.

Every collection module turns its metadata into *rows* (plain dicts: ``__key__``, ``path``,
``kind`` = ``"png"``/``"jpg"``/``"dcm"``, ``view``, ``patient``, ``labels`` = the harmonised 18
values, ``meta``) and :class:`XRayDataset` does the rest the same way for all of them:

* ``views``: keep rows whose (dataset-normalised) view is listed; ``"*"`` keeps everything; a
  missing view is ``"UNKNOWN"`` (TorchXRayVision's convention).
* ``unique_patients``: keep the first row of each patient in file order (the whole row; unlike
  TorchXRayVision's ``groupby().first()``, which takes the first non-null value per column and so
  can mix the labels of different images).
* ``image_format``: ``"native"`` (uint8, or uint16 for 16-bit PNG and DICOM above 8 bits),
  ``"uint8"``, or ``"float"`` -- float32 in [-1024, 1024] computed as TorchXRayVision's
  ``normalize``: ``(2 * x / maxval - 1) * 1024``. Images are single-channel ``[1,H,W]``; colour
  files keep their first channel, as TorchXRayVision does.
* ``decode=False`` gives what a shard stores: the original PNG/JPEG bytes, or for DICOM the
  native display image (after the :class:`loaders.dicom.DicomOptions` pipeline) as a lossless
  8/16-bit PNG; plus ``labels.npy``, ``json`` (meta) and ``mask.png``/``cls`` where present.

Files named by the metadata but absent from the folder (a partial download) are found when the
index is built, without reading any image: from directory listings (one ``os.listdir`` per
folder holding images; a folder missing from its parent's listing is not opened), or from one
``stat`` per image where nearly every image has its own folder (CheXpert and MIMIC studies, where
a listing each would cost more). The index keeps the images present, ``stats()["missing"]``
counts the others and one :class:`~loaders.base.MissingFilesWarning` names the count and the
first; ``strict=True`` raises ``FileNotFoundError`` instead. When none of the named files is
present the index keeps the metadata only (labels, keys; loading raises), counted and warned.

Boxes travel in ``meta["boxes"]`` as ``[{"label": str, "xyxy": [x0, y0, x1, y1], ...}]`` in
pixels of the original image (VinDr adds ``"reader"``), so shards need no extra field.

The metadata tables and file finders the collections use (:class:`~loaders.layout.Table`,
:func:`~loaders.layout.read_table`, :func:`~loaders.layout.find_file`,
:func:`~loaders.layout.check_split`, :class:`~loaders.layout.FileListings`) live in
:mod:`loaders.layout`, shared with the other file-backed adapters; this module re-exports them.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from loaders.base import Adapter, SampleError
from loaders.codecs import encode
from loaders.dicom import DicomOptions, load_dicom
from loaders.fileio import open_regular_file, read_regular
from loaders.layout import FileListings, Table, check_split, find_file, read_table
from loaders.media import decode_image
from loaders.schema import KEY
from loaders.xray.labels import PATHOLOGIES

# FileListings, Table, check_split, find_file and read_table are loaders.layout's, re-exported
__all__ = [
    "DEFAULT_VIEWS",
    "FileListings",
    "IMAGE_FORMATS",
    "Table",
    "XRayDataset",
    "check_split",
    "convert_image",
    "dicom_header_fields",
    "find_file",
    "normalise_views",
    "read_table",
]

DEFAULT_VIEWS: tuple[str, ...] = ("PA", "AP")
IMAGE_FORMATS = ("native", "uint8", "float")


# --- views ---------------------------------------------------------------------------------------


def normalise_views(views: str | Sequence[str] | None) -> frozenset[str] | None:
    """``"*"`` or ``None`` -> ``None`` (keep all); a str or sequence of str -> the set to keep."""
    if views is None:
        return None
    if isinstance(views, str):
        views = [views]
    if not isinstance(views, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in views):
        raise TypeError(f"views must be '*', a view name or a sequence of view names, got {views!r}")
    if "*" in views:
        return None
    if not views:
        raise ValueError("views must not be empty; use '*' to keep every view")
    return frozenset(views)


# --- images --------------------------------------------------------------------------------------


def convert_image(image: torch.Tensor, maxval: int, image_format: str) -> torch.Tensor:
    """Convert a native ``[1,H,W]`` image whose full scale is ``maxval`` into ``image_format``."""
    if image_format == "native":
        return image
    if image_format == "uint8":
        if image.dtype == torch.uint8 and maxval == 255:
            return image
        return (image.to(torch.float32) * (255.0 / maxval)).round_().clamp_(0, 255).to(torch.uint8)
    if image_format == "float":
        return (2 * (image.to(torch.float32) / maxval) - 1.0) * 1024
    raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")


def _first_channel(image: torch.Tensor) -> torch.Tensor:
    return image if image.shape[0] == 1 else image[:1].contiguous()


# --- the base adapter ----------------------------------------------------------------------------


class XRayDataset(Adapter):
    """Base class of the chest X-ray collections (see the module docstring for the options).

    Subclasses set :attr:`name`, :attr:`splits`, :attr:`default_views` and implement
    :meth:`_rows`. Their constructors keep an explicit keyword signature -- the registry checks
    options against it -- whose shared parameters (those of this constructor, same names and
    defaults) they pass on in one call, ``super().__init__(**self._base_arguments(locals()))``,
    then check their own options and end with ``self.index`` (bad metadata fails at construction).

    Attributes:
        pathologies: the names of the ``labels`` columns (:data:`PATHOLOGIES`); also ``classes``.
    """

    pathologies: ClassVar[tuple[str, ...]] = PATHOLOGIES
    classes = PATHOLOGIES  # the label space of ``labels`` (nlm-tb names its ``label`` classes instead)
    default_views: ClassVar[str | tuple[str, ...]] = DEFAULT_VIEWS
    #: the accepted values of ``split`` (``None``: the whole release; most have no official split)
    splits: ClassVar[tuple[str | None, ...]] = (None,)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        views: str | Sequence[str] | None = None,
        unique_patients: bool = False,
        image_format: str = "native",
        dicom: DicomOptions | None = None,
        strict: bool = False,
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(decode=decode, on_error=on_error, transform=transform)
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
        self.strict = strict
        self._listings: FileListings | None = None  # while indexing only
        if root is None:
            raise ValueError(f"{self.name}: root= is required (the dataset folder as distributed)")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name}: root {str(self.root)!r} is not a directory")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
        if not isinstance(unique_patients, bool):
            raise TypeError(f"unique_patients must be a bool, got {unique_patients!r}")
        if dicom is not None and not isinstance(dicom, DicomOptions):
            raise TypeError(f"dicom must be a loaders.dicom.DicomOptions, got {type(dicom).__name__}")
        self.views = normalise_views(self.default_views if views is None else views)
        self.unique_patients = unique_patients
        self.image_format = image_format
        self.dicom = dicom or DicomOptions()
        self.split = check_split(self.name, split, self.splits)

    @staticmethod
    def _base_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
        """This constructor's arguments, picked by name from a subclass constructor's ``locals()``."""
        return {name: arguments[name] for name in _BASE_PARAMETERS}

    # -- subclass API -----------------------------------------------------------------------------

    def _rows(self) -> list[dict[str, Any]]:
        """All rows of the collection (before the view filter and ``unique_patients``)."""
        raise NotImplementedError

    def _after_view_filter(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hook run on the rows kept by the view filter (before ``unique_patients``)."""
        return rows

    def _extra_encoded(self, record: Mapping[str, Any], image_shape: tuple[int, int] | None) -> dict[str, bytes]:
        """Extra shard members for a record (e.g. SIIM's ``mask.png``)."""
        return {}

    def _extra_decoded(self, record: Mapping[str, Any], image_shape: tuple[int, int]) -> dict[str, Any]:
        """Extra decoded fields for a record (e.g. SIIM's ``mask``)."""
        return {}

    # -- index ------------------------------------------------------------------------------------

    def _build_index(self) -> list[dict[str, Any]]:
        rows = self._rows()
        if self.views is not None:  # view None: read from a file that is absent, counted below
            rows = [row for row in rows if row.get("view", "") is None or (row.get("view") or "UNKNOWN") in self.views]
        rows = self._after_view_filter(rows)
        rows = self._present_rows(rows)
        self._listings = None
        if self.unique_patients:
            seen: set[str] = set()
            kept = []
            for row in rows:
                if row["patient"] not in seen:
                    seen.add(row["patient"])
                    kept.append(row)
            rows = kept
        return rows

    def _present_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows whose image exists (after the view filter: rows of other views are not
        counted); the others are counted and warned about, or raise with ``strict``."""
        paths = [row.get("path") for row in rows]
        folders = len({os.path.dirname(path) for path in paths if path is not None})
        if folders * 2 > len(paths):  # ~1 image per folder (CheXpert, MIMIC studies): a stat each is cheaper
            present = [path is not None and os.path.isfile(path) for path in paths]
        else:
            present = [self._has_file(path) for path in paths]
        absent = [row.get("path") or row.get("missing") or row[KEY] for row, ok in zip(rows, present) if not ok]
        source = getattr(self, "csv", None)
        what = f"images named by {Path(source).name}" if source is not None else "images named by the metadata"
        if self._note_missing(absent, len(rows), what=what, strict=self.strict) or not absent:
            return rows
        return [row for row, ok in zip(rows, present) if ok]

    def _has_file(self, path: str | os.PathLike | None) -> bool:
        """Whether ``path`` exists, from cached folder listings (while the index is built)."""
        if self._listings is None:
            self._listings = FileListings(self.root)
        return self._listings.has(path)

    @property
    def labels(self) -> np.ndarray:
        """The ``[N, 18]`` float32 label matrix of the index (no media read)."""
        if not self.index:
            return np.zeros((0, len(self.pathologies)), dtype=np.float32)
        return np.stack([np.asarray(r["labels"], dtype=np.float32) for r in self.index])

    # -- loading ----------------------------------------------------------------------------------

    def _meta(self, record: Mapping[str, Any], info: Mapping[str, Any] | None) -> dict[str, Any]:
        meta = {"view": record.get("view") or "UNKNOWN", "patient": record["patient"], **record.get("meta", {})}
        if info is not None:
            meta["dicom"] = dict(info)
        return meta

    def _read(self, record: Mapping[str, Any]) -> bytes:
        if record.get("path") is None:
            raise SampleError(record.get("missing", "no image file for this entry"))
        return read_regular(record["path"])

    def _native(self, record: Mapping[str, Any], data: bytes) -> tuple[torch.Tensor, int, dict[str, Any] | None]:
        if record["kind"] == "dcm":
            image, info = load_dicom(data, self.dicom, name=record["path"])
            return _first_channel(image), int(info["maxval"]), info
        image = _first_channel(decode_image(data, suffix=record["kind"]))
        return image, (255 if image.dtype == torch.uint8 else 65535), None

    def _load_decoded(self, record: Mapping[str, Any]) -> dict[str, Any]:
        image, maxval, info = self._native(record, self._read(record))
        meta = self._meta(record, info)
        meta["maxval"] = maxval
        out: dict[str, Any] = {
            "image": convert_image(image, maxval, self.image_format),
            "labels": torch.tensor(np.asarray(record["labels"], dtype=np.float32)),
            "meta": meta,
        }
        if "label" in record:
            out["label"] = int(record["label"])
        out.update(self._extra_decoded(record, tuple(image.shape[-2:])))
        return out

    def _load_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        data = self._read(record)
        shape: tuple[int, int] | None = None
        if record["kind"] == "dcm":
            image, maxval, info = self._native(record, data)
            out = {"png": encode("png", image)}
            shape = tuple(image.shape[-2:])
        else:
            out = {record["kind"]: data}
            # full scale from the PNG IHDR bit depth (byte 24); JPEG is 8-bit here
            maxval = 65535 if record["kind"] == "png" and len(data) > 24 and data[24] == 16 else 255
            info = None
        meta = self._meta(record, info)
        meta["maxval"] = maxval
        out["labels.npy"] = encode("labels.npy", np.asarray(record["labels"], dtype=np.float32))
        out["json"] = encode("json", meta)
        if "label" in record:
            out["cls"] = encode("cls", int(record["label"]))
        out.update(self._extra_encoded(record, shape))
        return out

    def __repr__(self) -> str:
        size = len(self._records) if self._records is not None else "?"
        views = "*" if self.views is None else sorted(self.views)
        return (f"{type(self).__name__}(name={self.name!r}, root={str(self.root)!r}, samples={size}, views={views}, "
                f"unique_patients={self.unique_patients})")


#: the parameters of :meth:`XRayDataset.__init__` after ``self``, which every collection passes on
_BASE_PARAMETERS: tuple[str, ...] = tuple(inspect.signature(XRayDataset.__init__).parameters)[1:]


def dicom_header_fields(path: str | None, keywords: Sequence[str]) -> dict[str, str]:
    """Read a few header elements of a DICOM file without its pixel data (for view/patient).

    Missing or unreadable files give ``{}``: loading that sample reports the problem later.
    """
    if path is None:
        return {}
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open_regular_file(path) as handle:  # a FIFO or device is never opened: {}
            dataset = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=list(keywords), force=True)
    except (OSError, InvalidDicomError, ValueError, EOFError, KeyError):
        return {}
    return {k: str(dataset.get(k, "")).strip() for k in keywords if str(dataset.get(k, "") or "").strip()}
