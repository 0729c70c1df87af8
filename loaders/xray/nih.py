"""NIH ChestX-ray14 (``nih``) and Google's expert relabels of it (``nih-google``).

Wang et al., "ChestX-ray8: Hospital-scale chest X-ray database and benchmarks", CVPR 2017;
Majkowska et al., "Chest radiograph interpretation with deep learning models", Radiology 2020.
Label rules follow TorchXRayVision's ``NIH_Dataset`` / ``NIH_Google_Dataset``.

Layout (official release: the twelve ``images_0NN.tar.gz`` extract to one ``images/``; the Kaggle
mirror has ``images_0NN/images/``)::

    root/Data_Entry_2017_v2020.csv        (or Data_Entry_2017.csv; header verbatim, see docs/xray.md)
    root/BBox_List_2017.csv               (optional: boxes in meta["boxes"])
    root/train_val_list.txt, test_list.txt (optional: split="train" / "test")
    root/images/00000001_000.png          or root/images_001/images/00000001_000.png
    root/google2019_nih-chest-xray-labels.csv[.gz]   (nih-google only)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loaders.dicom import DicomOptions
from loaders.fileio import read_regular
from loaders.layout import find_file, read_table
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key
from loaders.xray.common import XRayDataset
from loaders.xray.labels import harmonise

__all__ = ["NIH_PATHOLOGIES", "NIHDataset", "NIHGoogleDataset", "nih_image_paths", "nih_labels", "read_nih_boxes"]

#: the 14 findings of ChestX-ray14 (``Finding Labels`` tokens besides ``No Finding``)
NIH_PATHOLOGIES = ("Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
                   "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia")
_DATA_ENTRY = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
_SPLIT_LISTS = {"train": "train_val_list.txt", "test": "test_list.txt"}
_GOOGLE_CSV = ("google2019_nih-chest-xray-labels.csv",)
#: Google relabel columns -> harmonised names ("Nodule or mass" has no harmonised column)
_GOOGLE_COLUMNS = {"Fracture": "Fracture", "Pneumothorax": "Pneumothorax", "Airspace opacity": "Lung Opacity"}


def nih_labels(finding_labels: str) -> np.ndarray:
    """Harmonised labels of one ``Finding Labels`` cell (``|``-joined): the 14 findings 0/1, rest NaN."""
    tokens = {t.strip() for t in finding_labels.split("|")}
    return harmonise({name: float(name in tokens) for name in NIH_PATHOLOGIES})


def nih_image_paths(root: Path, images: str | None) -> Callable[[str], str | None]:
    """Resolve an ``Image Index`` to a file: flat ``images/`` (no listing) or the Kaggle folders."""
    if images is not None or (root / "images").is_dir():
        folder = str(root / (images or "images"))
        return lambda name: os.path.join(folder, name)
    found: dict[str, str] = {}
    for part in sorted(root.glob("images_*")):
        inner = part / "images" if (part / "images").is_dir() else part
        if inner.is_dir():
            with os.scandir(inner) as entries:
                for entry in entries:
                    found.setdefault(entry.name, entry.path)
    if found:
        return found.get
    flat = str(root)
    return lambda name: os.path.join(flat, name)


def read_nih_boxes(path: Path) -> dict[str, list[dict[str, Any]]]:
    """``BBox_List_2017.csv`` -> ``{Image Index: [{"label", "xyxy"}]}`` (``Infiltrate`` renamed).

    The header ``Image Index,Finding Label,Bbox [x,y,w,h],,,`` has 9 fields and the rows 6, so
    the columns are read by position; coordinates are pixels of the 1024x1024 images.
    """
    boxes: dict[str, list[dict[str, Any]]] = {}
    for row in read_table(path).rows:
        if len(row) < 6 or not row[0].strip():
            continue
        label = row[1].strip()
        label = "Infiltration" if label == "Infiltrate" else label
        x, y, w, h = (float(v) for v in row[2:6])
        boxes.setdefault(row[0].strip(), []).append({"label": label, "xyxy": [x, y, x + w, y + h]})
    return boxes


def _split_names(root: Path, split: str | None) -> set[str] | None:
    if split is None:
        return None
    listing = root / _SPLIT_LISTS[split]
    if not listing.is_file():
        raise FileNotFoundError(f"split={split!r} needs {str(listing)!r} (from the NIH release)")
    return {line.strip() for line in read_regular(listing).decode("utf-8").splitlines() if line.strip()}


@register_dataset("nih")
class NIHDataset(XRayDataset):
    """NIH ChestX-ray14 with its 14 text-mined labels and the 984 expert boxes.

    Args:
        root: the release folder (see the module docstring).
        split: ``None`` (all), ``"train"`` (``train_val_list.txt``) or ``"test"`` (``test_list.txt``).
        csv: the ``Data_Entry`` file (default: looked up in ``root``).
        bbox_csv: the box list (default ``root/BBox_List_2017.csv`` if present; ``False`` = none).
        images: the flat image folder under ``root`` (default: ``images/`` or the Kaggle folders).
        views: ``View Position`` values to keep (default PA and AP; ``"*"`` = all).
        unique_patients, image_format, dicom, strict, decode, on_error, transform: see
            :class:`loaders.xray.common.XRayDataset`.
    """

    name = "nih"
    splits = (None, *_SPLIT_LISTS)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        csv: str | os.PathLike | None = None,
        bbox_csv: str | os.PathLike | bool | None = None,
        images: str | None = None,
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
        self.csv = Path(csv) if csv is not None else find_file(self.root, _DATA_ENTRY, what="NIH Data_Entry CSV", option="csv")
        if bbox_csv is None:
            candidate = self.root / "BBox_List_2017.csv"
            bbox_csv = candidate if candidate.is_file() else False
        self.bbox_csv = None if bbox_csv is False else Path(bbox_csv)
        self.images = images
        self.index  # fail at construction on bad metadata

    def _rows(self) -> list[dict[str, Any]]:
        table = read_table(self.csv)
        c_image, c_labels = table.column("Image Index"), table.column("Finding Labels")
        c_patient, c_view = table.column("Patient ID"), table.column("View Position")
        c_age = table.column("Patient Age", required=False)
        c_sex = table.column("Patient Gender", "Patient Sex", required=False)
        c_follow = table.column("Follow-up #", required=False)
        boxes = read_nih_boxes(self.bbox_csv) if self.bbox_csv is not None else None
        wanted = _split_names(self.root, self.split)
        resolve = nih_image_paths(self.root, self.images)
        memo: dict[str, list[float]] = {}  # ~800 distinct label strings in 112k rows
        rows = []
        for row in table.rows:
            image = row[c_image].strip()
            if wanted is not None and image not in wanted:
                continue
            meta: dict[str, Any] = {"finding_labels": row[c_labels]}
            for field, column in (("age", c_age), ("sex", c_sex), ("follow_up", c_follow)):
                if column is not None and row[column].strip():
                    meta[field] = row[column].strip()
            if boxes is not None:
                meta["boxes"] = boxes.get(image, [])
            path = resolve(image)
            rows.append({KEY: safe_key(os.path.splitext(image)[0]), "path": path, "kind": "png", "view": row[c_view].strip(),
                         "patient": row[c_patient].strip(), "meta": meta,
                         "labels": memo.get(row[c_labels]) or memo.setdefault(row[c_labels], nih_labels(row[c_labels]).tolist()),
                         "missing": f"{image} is not in any images folder under {str(self.root)!r}"})
        return rows


@register_dataset("nih-google")
class NIHGoogleDataset(XRayDataset):
    """Google's radiologist-adjudicated relabels of 4,376 NIH images (``YES``/``NO`` per finding).

    Harmonised: Fracture, Pneumothorax and Lung Opacity (``Airspace opacity``); ``Nodule or mass``
    has no harmonised column and is kept in ``meta["extra_labels"]``.

    Args:
        root: the NIH folder (images as for ``nih``) holding the relabel CSV.
        split: ``None`` (both), ``"test"`` or ``"val"`` (the ``Set Id`` column).
        csv: the relabel CSV (default ``root/google2019_nih-chest-xray-labels.csv[.gz]``).
        images, views, unique_patients, image_format, dicom, strict, decode, on_error, transform: as ``nih``.
    """

    name = "nih-google"
    splits = (None, "test", "val")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        csv: str | os.PathLike | None = None,
        images: str | None = None,
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
        self.csv = Path(csv) if csv is not None else find_file(self.root, _GOOGLE_CSV, what="Google relabel CSV", option="csv")
        self.images = images
        self.index

    def _rows(self) -> list[dict[str, Any]]:
        table = read_table(self.csv)
        c_image, c_patient = table.column("Image Index"), table.column("Patient ID")
        c_view = table.column("View Position", required=False)
        c_set = table.column("Set Id", required=False)
        columns = {name: table.column(name) for name in (*_GOOGLE_COLUMNS, "Nodule or mass")}
        resolve = nih_image_paths(self.root, self.images)
        rows = []
        for row in table.rows:
            if self.split is not None and (c_set is None or row[c_set].strip() != self.split):
                continue
            image = row[c_image].strip()
            values = {name: float(row[col].strip() == "YES") for name, col in columns.items()}
            meta = {"extra_labels": {"Nodule or mass": values["Nodule or mass"]}}
            if c_set is not None:
                meta["set"] = row[c_set].strip()
            rows.append({KEY: safe_key(os.path.splitext(image)[0]), "path": resolve(image), "kind": "png",
                         "view": row[c_view].strip() if c_view is not None else "UNKNOWN", "patient": row[c_patient].strip(),
                         "labels": harmonise({_GOOGLE_COLUMNS[k]: values[k] for k in _GOOGLE_COLUMNS}).tolist(), "meta": meta,
                         "missing": f"{image} is not in any images folder under {str(self.root)!r}"})
        return rows
