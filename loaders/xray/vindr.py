"""VinDr-CXR / VinBigData (``vindr-cxr``): DICOMs read by several radiologists, with boxes.

Nguyen et al., "VinDr-CXR: an open dataset of chest X-rays with radiologist's annotations",
Scientific Data 2022. Label rules follow TorchXRayVision's ``VinDr_Dataset``: the unique
``class_name`` values of all readers of an image are ``|``-joined and lower-cased, and a
pathology is 1 when its name or a synonym is a substring (``Pleural effusion`` -> Effusion,
``Pleural thickening`` -> Pleural_Thickening); the eight harmonised findings VinDr grades are
0/1, the rest NaN. Every box keeps its reader: ``meta["boxes"] = [{"label", "reader", "xyxy"}]``
(``x_min, y_min, x_max, y_max`` in pixels of the original DICOM); ``meta["findings"]`` lists all
class names, including those without a harmonised column (Aortic enlargement, ILD, ...).

Layouts::

    Kaggle:    root/train.csv  image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max
               root/train/<image_id>.dicom
    PhysioNet: root/annotations/annotations_{train,test}.csv  root/{train,test}/<image_id>.dicom
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loaders.dicom import DicomOptions
from loaders.layout import find_file, read_table
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key
from loaders.xray.common import XRayDataset, dicom_header_fields
from loaders.xray.labels import substring_labels

__all__ = ["VINDR_TERMS", "VinDrCXRDataset", "vindr_labels"]

#: harmonised name -> lower-case substrings searched in the joined class names
VINDR_TERMS: Mapping[str, tuple[str, ...]] = {
    "Atelectasis": ("atelectasis",),
    "Consolidation": ("consolidation",),
    "Infiltration": ("infiltration",),
    "Pneumothorax": ("pneumothorax",),
    "Effusion": ("effusion", "pleural effusion"),
    "Pleural_Thickening": ("pleural_thickening", "pleural thickening"),
    "Cardiomegaly": ("cardiomegaly",),
    "Lung Opacity": ("lung opacity",),
}


def vindr_labels(class_names: Sequence[str]) -> np.ndarray:
    """Harmonised labels of one image from the class names of all its rows (all readers)."""
    return substring_labels("|".join(sorted(set(class_names))).lower(), VINDR_TERMS)


@register_dataset("vindr-cxr")
class VinDrCXRDataset(XRayDataset):
    """VinDr-CXR: 15,000 training DICOMs (Kaggle) read by 3 of 17 radiologists each.

    Args:
        root: the release folder (see the module docstring).
        split: ``"train"`` (default) or ``"test"`` (PhysioNet release).
        csv: the annotation CSV (default: ``train.csv`` or ``annotations/annotations_<split>.csv``).
        images: the DICOM folder under ``root`` (default: ``split``).
        views: the CSV has no view; anything but ``"*"`` (the default) reads ``ViewPosition``
            from each DICOM header at indexing time.
        unique_patients: patient = image (VinDr is de-identified per image).
        image_format, dicom, strict, decode, on_error, transform: see :class:`loaders.xray.common.XRayDataset`.
    """

    name = "vindr-cxr"
    default_views = "*"
    splits = ("train", "test")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
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
        self.images = images or split
        self.csv = Path(csv) if csv is not None else find_file(
            self.root, (f"{split}.csv", f"annotations/annotations_{split}.csv"), what="VinDr annotation CSV", option="csv")
        self.index

    def _rows(self) -> list[dict[str, Any]]:
        table = read_table(self.csv)
        c_image, c_class, c_reader = table.column("image_id"), table.column("class_name"), table.column("rad_id")
        c_box = [table.column(n) for n in ("x_min", "y_min", "x_max", "y_max")]
        images: dict[str, dict[str, Any]] = {}
        for row in table.rows:
            entry = images.setdefault(row[c_image].strip(), {"names": [], "boxes": []})
            name = row[c_class].strip()
            entry["names"].append(name)
            if row[c_box[0]].strip():
                entry["boxes"].append({"label": name, "reader": row[c_reader].strip(),
                                       "xyxy": [float(row[c].strip()) for c in c_box]})
        folder = self.root / self.images
        rows = []
        for image, entry in images.items():
            path = str(folder / f"{image}.dicom")
            view = "UNKNOWN"
            if self.views is not None:  # None: no header to read (file absent), counted as missing
                view = dicom_header_fields(path, ["ViewPosition"]).get("ViewPosition", "UNKNOWN") if self._has_file(path) else None
            rows.append({KEY: safe_key(image), "path": path, "kind": "dcm", "view": view, "patient": image,
                         "labels": vindr_labels(entry["names"]).tolist(),
                         "meta": {"findings": sorted(set(entry["names"])), "boxes": entry["boxes"]}})
        return rows
