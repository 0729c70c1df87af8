"""RSNA Pneumonia Detection Challenge (``rsna-pneumonia``): DICOM radiographs with opacity boxes.

Shih et al., "Augmenting the NIH chest radiograph dataset with expert annotations of possible
pneumonia", Radiology: AI 2019. Label rules follow TorchXRayVision's ``RSNA_Pneumonia_Dataset``:
``Pneumonia`` = ``Lung Opacity`` = ``Target`` of the patient's rows; other pathologies NaN. Each
row with coordinates is one box (``x, y, width, height`` in pixels of the 1024x1024 image),
returned as ``meta["boxes"] = [{"label": "Lung Opacity", "xyxy": [...]}]``.

Layout (Kaggle stage 2)::

    root/stage_2_train_labels.csv            patientId,x,y,width,height,Target  (one row per box)
    root/stage_2_detailed_class_info.csv     optional: patientId,class -> meta["class"]
    root/stage_2_train_images/<patientId>.dcm
    root/stage_2_train_images_dicom_headers.csv[.gz]  optional (TorchXRayVision's header table);
        without it the view filter reads ViewPosition from each DICOM header (no pixel data)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loaders.dicom import DicomOptions
from loaders.layout import find_file, kind_of, read_table
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key
from loaders.xray.common import XRayDataset, dicom_header_fields
from loaders.xray.labels import harmonise

__all__ = ["RSNAPneumoniaDataset"]

_HEADERS = ("stage_2_train_images_dicom_headers.csv", "kaggle_stage_2_train_images_dicom_headers.csv")


@register_dataset("rsna-pneumonia")
class RSNAPneumoniaDataset(XRayDataset):
    """RSNA Pneumonia: 26,684 DICOMs (8-bit MONOCHROME2, JPEG baseline) with pneumonia boxes.

    Args:
        root: the Kaggle folder (see the module docstring).
        split: ``"train"`` (the only labelled split).
        csv: the labels CSV (default ``root/stage_2_train_labels.csv``).
        images: the image folder under ``root`` (default ``stage_2_train_images``).
        extension: image file extension (``".dcm"``; ``".jpg"``/``".png"`` for converted copies).
        dicom_headers_csv: a table with ``PatientID`` and ``ViewPosition`` columns (default:
            looked up in ``root``; ``False`` = read the DICOM headers instead).
        views: ``ViewPosition`` values to keep (default PA and AP; ``"*"`` = all).
        unique_patients, image_format, dicom, strict, decode, on_error, transform: see
            :class:`loaders.xray.common.XRayDataset` (one image per patient already).
    """

    name = "rsna-pneumonia"
    splits = ("train",)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        csv: str | os.PathLike | None = None,
        images: str = "stage_2_train_images",
        extension: str = ".dcm",
        dicom_headers_csv: str | os.PathLike | bool | None = None,
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
        self.kind = kind_of("x" + extension)
        self.extension, self.images = extension, images
        self.csv = Path(csv) if csv is not None else find_file(
            self.root, ("stage_2_train_labels.csv",), what="RSNA labels CSV", option="csv")
        if dicom_headers_csv is None:
            try:
                dicom_headers_csv = find_file(self.root, _HEADERS, what="", option="dicom_headers_csv")
            except FileNotFoundError:
                dicom_headers_csv = False
        self.dicom_headers_csv = None if dicom_headers_csv is False else Path(dicom_headers_csv)
        self.index

    def _views(self) -> dict[str, str]:
        if self.dicom_headers_csv is None:
            return {}
        table = read_table(self.dicom_headers_csv)
        c_patient, c_view = table.column("PatientID"), table.column("ViewPosition")
        return {row[c_patient].strip(): row[c_view].strip() for row in table.rows}

    def _rows(self) -> list[dict[str, Any]]:
        table = read_table(self.csv)
        c_patient, c_target = table.column("patientId"), table.column("Target")
        c_box = [table.column(n) for n in ("x", "y", "width", "height")]
        classes: dict[str, str] = {}
        info = self.root / "stage_2_detailed_class_info.csv"
        if info.is_file():
            class_table = read_table(info)
            c_p, c_c = class_table.column("patientId"), class_table.column("class")
            for row in class_table.rows:
                classes.setdefault(row[c_p].strip(), row[c_c].strip())
        patients: dict[str, dict[str, Any]] = {}
        for row in table.rows:
            patient = row[c_patient].strip()
            entry = patients.get(patient)
            if entry is None:
                target = float(row[c_target].strip())  # the first row decides, as groupby().first()
                entry = patients[patient] = {"target": target, "boxes": []}
            if row[c_box[0]].strip():
                x, y, w, h = (float(row[c].strip()) for c in c_box)
                entry["boxes"].append({"label": "Lung Opacity", "xyxy": [x, y, x + w, y + h]})
        views = self._views()
        folder = self.root / self.images
        rows = []
        for patient, entry in patients.items():
            path = str(folder / f"{patient}{self.extension}")
            view = views.get(patient)
            unread = False  # the view filter needs the header of a file that is absent: counted as missing
            if view is None and self.views is not None and self.kind == "dcm":
                unread = not self._has_file(path)
                view = None if unread else dicom_header_fields(path, ["ViewPosition"]).get("ViewPosition")
            meta: dict[str, Any] = {"boxes": entry["boxes"]}
            if patient in classes:
                meta["class"] = classes[patient]
            rows.append({KEY: safe_key(patient), "path": path, "kind": self.kind, "view": None if unread else view or "UNKNOWN", "patient": patient,
                         "labels": harmonise({"Pneumonia": entry["target"], "Lung Opacity": entry["target"]}).tolist(),
                         "meta": meta})
        return rows
