"""PadChest (``padchest``): 160k 16-bit PNG radiographs from Hospital San Juan, Alicante.

Bustos et al., "PadChest: a large chest x-ray image dataset with multi-label annotated reports",
Medical Image Analysis 2020. Label rules follow TorchXRayVision's ``PC_Dataset``: a pathology is 1
when its lower-cased name or a synonym occurs as a substring of the ``Labels`` cell (a stringified
Python list such as ``['pleural effusion', 'cardiomegaly']``), else 0; the 14 NIH findings and
Fracture are labelled, the rest NaN. Rows with an empty ``Labels`` cell, the 21 known missing or
truncated PNGs, and (``exclude_children=True``) patients born 10 or fewer years before 2019 (or
with no birth year) are left out; ``Projection`` ``AP_horizontal`` reads as view ``"AP Supine"``.

Layout::

    root/PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv[.gz]   (a leading unnamed index column)
    root/<ImageDir>/<ImageID>.png   (the numbered zip folders 0..54)  or  root/images/<ImageID> or root/<ImageID>
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
from loaders.xray.common import XRayDataset
from loaders.xray.labels import substring_labels

__all__ = ["KNOWN_BROKEN", "PADCHEST_TERMS", "PadChestDataset", "padchest_labels"]

#: harmonised name -> substrings searched in the ``Labels`` cell (TorchXRayVision's synonyms)
PADCHEST_TERMS: Mapping[str, tuple[str, ...]] = {
    "Atelectasis": ("atelectasis",),
    "Consolidation": ("consolidation", "air bronchogram"),
    "Infiltration": ("infiltration", "infiltrates", "interstitial pattern", "ground glass pattern",
                     "reticular interstitial pattern", "reticulonodular interstitial pattern", "alveolar pattern",
                     "consolidation", "air bronchogram"),
    "Pneumothorax": ("pneumothorax",),
    "Edema": ("edema",),
    "Emphysema": ("emphysema",),
    "Fibrosis": ("fibrosis",),
    "Effusion": ("effusion",),
    "Pneumonia": ("pneumonia",),
    "Pleural_Thickening": ("pleural_thickening", "pleural thickening"),
    "Cardiomegaly": ("cardiomegaly",),
    "Nodule": ("nodule",),
    "Mass": ("mass",),
    "Hernia": ("hernia",),
    "Fracture": ("fracture",),
}

#: PNGs of the release that are missing, truncated or broken (as listed by TorchXRayVision)
KNOWN_BROKEN = frozenset({
    "216840111366964012819207061112010307142602253_04-014-084.png", "216840111366964012989926673512011074122523403_00-163-058.png",
    "216840111366964012959786098432011033083840143_00-176-115.png", "216840111366964012558082906712009327122220177_00-102-064.png",
    "216840111366964012339356563862009072111404053_00-043-192.png", "216840111366964013076187734852011291090445391_00-196-188.png",
    "216840111366964012373310883942009117084022290_00-064-025.png", "216840111366964012283393834152009033102258826_00-059-087.png",
    "216840111366964012373310883942009170084120009_00-097-074.png", "216840111366964012819207061112010315104455352_04-024-184.png",
    "216840111366964012819207061112010306085429121_04-020-102.png", "216840111366964012989926673512011083134050913_00-168-009.png",
    "216840111366964012373310883942009152114636712_00-102-045.png", "216840111366964012819207061112010281134410801_00-129-131.png",
    "216840111366964012487858717522009280135853083_00-075-001.png", "216840111366964012989926673512011151082430686_00-157-045.png",
    "216840111366964013686042548532013208193054515_02-026-007.png", "216840111366964013590140476722013058110301622_02-056-111.png",
    "216840111366964013590140476722013043111952381_02-065-198.png", "216840111366964013829543166512013353113303615_02-092-190.png",
    "216840111366964013962490064942014134093945580_01-178-104.png",
})
_CSV = ("PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",)
# pandas' default missing-value strings: TorchXRayVision reads the CSV with pandas, so a cell
# such as "None" counts as missing there too
_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
                 "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def padchest_labels(labels_cell: str) -> np.ndarray:
    """Harmonised labels of one ``Labels`` cell (substring rule, see the module docstring)."""
    return substring_labels(labels_cell, PADCHEST_TERMS)


@register_dataset("padchest")
class PadChestDataset(XRayDataset):
    """PadChest: 16-bit grayscale PNGs (``image`` is uint16 natively; float uses maxval 65535).

    Args:
        root: the folder with the CSV and the images (see the module docstring).
        split: only ``None`` (PadChest has no official split).
        csv: the label CSV (default: looked up in ``root``).
        exclude_children: drop patients aged 10 or less in 2019, as TorchXRayVision does.
        drop_known_broken: leave out :data:`KNOWN_BROKEN`.
        views: ``Projection`` values to keep (default PA and AP; ``"*"`` = all).
        unique_patients, image_format, dicom, strict, decode, on_error, transform: see
            :class:`loaders.xray.common.XRayDataset`.
    """

    name = "padchest"
    splits = (None,)  # the release has no split

    def __init__(
        self,
        root: str | os.PathLike,
        split: None = None,
        *,
        csv: str | os.PathLike | None = None,
        exclude_children: bool = True,
        drop_known_broken: bool = True,
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
        self.csv = Path(csv) if csv is not None else find_file(self.root, _CSV, what="PadChest CSV", option="csv")
        self.exclude_children, self.drop_known_broken = bool(exclude_children), bool(drop_known_broken)
        self.index

    def _folder(self, image_dir: str, cache: dict[str, Path]) -> Path:
        if image_dir not in cache:
            nested = self.root / image_dir
            if image_dir and nested.is_dir():
                cache[image_dir] = nested
            elif (self.root / "images").is_dir():
                cache[image_dir] = self.root / "images"
            else:
                cache[image_dir] = self.root
        return cache[image_dir]

    def _rows(self) -> list[dict[str, Any]]:
        table = read_table(self.csv)
        c_image, c_patient, c_labels = table.column("ImageID"), table.column("PatientID"), table.column("Labels")
        c_projection, c_birth = table.column("Projection"), table.column("PatientBirth")
        c_dir = table.column("ImageDir", required=False)
        c_sex, c_date = table.column("PatientSex_DICOM", required=False), table.column("StudyDate_DICOM", required=False)
        folders: dict[str, Path] = {}
        memo: dict[str, list[float]] = {}
        rows = []
        for row in table.rows:
            image, labels_cell = row[c_image].strip(), row[c_labels]
            if labels_cell.strip() in _NA or (self.drop_known_broken and image in KNOWN_BROKEN):
                continue
            birth = row[c_birth].strip()
            if self.exclude_children and (birth in _NA or not 2019 - float(birth) > 10):
                continue
            projection = row[c_projection].strip()
            view = "UNKNOWN" if projection in _NA else ("AP Supine" if projection == "AP_horizontal" else projection)
            meta: dict[str, Any] = {"labels_text": labels_cell}
            if birth not in _NA:
                meta["birth_year"] = birth
            for field, column in (("sex", c_sex), ("study_date", c_date)):
                if column is not None and row[column].strip() not in _NA:
                    meta[field] = row[column].strip()
            folder = self._folder(row[c_dir].strip() if c_dir is not None else "", folders)
            if labels_cell not in memo:
                memo[labels_cell] = padchest_labels(labels_cell).tolist()
            rows.append({KEY: safe_key(os.path.splitext(image)[0]), "path": os.path.join(folder, image), "kind": "png", "view": view,
                         "patient": row[c_patient].strip(), "labels": memo[labels_cell], "meta": meta})
        return rows
