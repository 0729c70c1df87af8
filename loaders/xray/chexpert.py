"""CheXpert (``chexpert``) and MIMIC-CXR-JPG (``mimic-cxr``): the CheXpert labeler's 14 observations.

Irvin et al., "CheXpert: a large chest radiograph dataset with uncertainty labels and expert
comparison", AAAI 2019; Johnson et al., "MIMIC-CXR-JPG, a large publicly available database of
labeled chest radiographs", arXiv 1901.07042. Label rules follow TorchXRayVision's
``CheX_Dataset`` / ``MIMIC_Dataset``: ``1.0`` positive, ``0.0`` negative, blank = not mentioned
(NaN), ``-1.0`` = uncertain (NaN by default; ``uncertain="zero"``/``"one"`` give the paper's
U-Zeros/U-Ones); ``No Finding == 1`` sets every pathology to 0 (CheXpert: except Support Devices);
``Pleural Effusion`` -> ``Effusion``. Pleural Other, Support Devices and No Finding have no
harmonised column and are kept in ``meta["extra_labels"]``.

Layouts::

    chexpert: root/{train,valid}.csv  root/{train,valid}/patient00001/study1/view1_frontal.jpg
              (root = CheXpert-v1.0-small/ or CheXpert-v1.0/; the CSV's Path starts with that name)
    mimic-cxr: root/mimic-cxr-2.0.0-{chexpert,negbio,metadata,split}.csv.gz
               root/files/p10/p10000032/s50414267/<dicom_id>.jpg
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loaders.dicom import DicomOptions
from loaders.layout import Table, find_file, read_table
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key
from loaders.xray.common import XRayDataset
from loaders.xray.labels import PATHOLOGIES, UNCERTAIN_POLICIES, labels_to_json

__all__ = ["CHEXPERT_COLUMNS", "CheXpertDataset", "MIMICDataset", "chexpert_label_matrix", "chexpert_labels"]

#: CheXpert observation columns -> harmonised names
CHEXPERT_COLUMNS: Mapping[str, str] = {
    "Atelectasis": "Atelectasis", "Consolidation": "Consolidation", "Pneumothorax": "Pneumothorax", "Edema": "Edema",
    "Pleural Effusion": "Effusion", "Pneumonia": "Pneumonia", "Cardiomegaly": "Cardiomegaly", "Lung Lesion": "Lung Lesion",
    "Fracture": "Fracture", "Lung Opacity": "Lung Opacity", "Enlarged Cardiomediastinum": "Enlarged Cardiomediastinum",
}
_EXTRA = ("Pleural Other", "Support Devices", "No Finding")
_PATIENT = re.compile(r"patient\d+")


def _value(cell: str) -> float:
    cell = cell.strip()
    return float(cell) if cell else math.nan


def _parse_cells(cells: Sequence[str], column: str) -> np.ndarray:
    """A column's cells as float64 (blank = NaN), parsing each distinct text once."""
    lookup = {}
    for cell in set(cells):
        try:
            lookup[cell] = _value(cell)
        except ValueError:
            raise ValueError(f"column {column!r}: {cell!r} is not a CheXpert label (1.0, 0.0, -1.0 or blank)") from None
    return np.fromiter((lookup[cell] for cell in cells), dtype=np.float64, count=len(cells))


def chexpert_label_matrix(
    columns: Mapping[str, Sequence[str]], *, uncertain: str = "nan", zero_support_devices: bool = False
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The CheXpert rules over many rows at once (:func:`chexpert_labels` for each row).

    Args:
        columns: observation column name -> the cell texts of every row (equal lengths); other
            names are ignored.
        uncertain, zero_support_devices: as for :func:`chexpert_labels`.

    Returns:
        (harmonised float32 ``[N, 18]``, the extra observation names present, their float64
        values ``[N, E]`` after the same rules).
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {list(UNCERTAIN_POLICIES)}, got {uncertain!r}")
    lengths = {len(cells) for cells in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns must have equal lengths, got {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    values = {name: _parse_cells(columns[name], name) for name in (*CHEXPERT_COLUMNS, *_EXTRA) if name in columns}
    healthy = values["No Finding"] == 1 if "No Finding" in values else np.zeros(n, dtype=bool)
    for name, column in values.items():
        if name != "No Finding" and (name != "Support Devices" or zero_support_devices):
            column[healthy] = 0.0
        column[column == -1] = UNCERTAIN_POLICIES[uncertain]
    labels = np.full((n, len(PATHOLOGIES)), np.nan, dtype=np.float32)
    for name, target in CHEXPERT_COLUMNS.items():
        if name in values:
            labels[:, PATHOLOGIES.index(target)] = values[name]
    extra_names = [name for name in _EXTRA if name in values]
    extras = np.stack([values[name] for name in extra_names], axis=1) if extra_names else np.zeros((n, 0))
    return labels, extra_names, extras


def chexpert_labels(
    cells: Mapping[str, str], *, uncertain: str = "nan", zero_support_devices: bool = False
) -> tuple[np.ndarray, dict[str, float]]:
    """Apply the CheXpert rules to one row's observation cells.

    Args:
        cells: column name -> cell text (``"1.0"``, ``"0.0"``, ``"-1.0"`` or ``""``).
        uncertain: ``"nan"`` (U-Ignore), ``"zero"`` or ``"one"``.
        zero_support_devices: whether ``No Finding == 1`` also zeroes Support Devices (MIMIC).

    Returns:
        (harmonised float32 ``[18]``, the extra observations after the same rules).
    """
    labels, names, extras = chexpert_label_matrix({name: [cell] for name, cell in cells.items()}, uncertain=uncertain,
                                                  zero_support_devices=zero_support_devices)
    if not labels.shape[0]:  # no observation column at all
        return np.full(len(PATHOLOGIES), np.nan, dtype=np.float32), {}
    return labels[0], dict(zip(names, extras[0].tolist()))


def _extra_json(names: Sequence[str], extras: np.ndarray) -> list[dict[str, float | None]]:
    """Per row, ``meta["extra_labels"]``: the extra observations with NaN as ``None``."""
    return [labels_to_json(zip(names, row)) for row in extras.tolist()]


def _observation_columns(table: Table) -> list[tuple[str, int]]:
    return [(name, table.column(name)) for name in (*CHEXPERT_COLUMNS, *_EXTRA) if table.has(name)]


@register_dataset("chexpert")
class CheXpertDataset(XRayDataset):
    """CheXpert (Stanford): 224,316 radiographs of 65,240 patients, labels from report text.

    Args:
        root: the folder holding ``train.csv``/``valid.csv`` and ``train/``/``valid/``.
        split: ``"train"`` (default) or ``"valid"``.
        csv: the label CSV (default ``root/<split>.csv``).
        uncertain: how ``-1.0`` maps: ``"nan"`` (default, as TorchXRayVision), ``"zero"``, ``"one"``.
        views: views to keep: the ``AP/PA`` value for frontal images, ``"L"`` for laterals
            (default PA and AP; ``"*"`` = all).
        unique_patients, image_format, dicom, strict, decode, on_error, transform: see
            :class:`loaders.xray.common.XRayDataset`.
    """

    name = "chexpert"
    splits = ("train", "valid")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        csv: str | os.PathLike | None = None,
        uncertain: str = "nan",
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
        if uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(f"uncertain must be one of {list(UNCERTAIN_POLICIES)}, got {uncertain!r}")
        self.uncertain = uncertain
        self.csv = Path(csv) if csv is not None else find_file(self.root, (f"{split}.csv",), what="CheXpert CSV", option="csv")
        self.index

    def _rows(self) -> list[dict[str, Any]]:
        table = read_table(self.csv)
        c_path, c_frontal, c_appa = table.column("Path"), table.column("Frontal/Lateral"), table.column("AP/PA")
        c_sex, c_age = table.column("Sex", required=False), table.column("Age", required=False)
        root = str(self.root)
        observations = _observation_columns(table)
        cells: list[list[str]] = [[] for _ in observations]
        rows = []
        for row in table.rows:
            for column, (_, i) in zip(cells, observations):
                column.append(row[i])
            rel = row[c_path].strip()
            parts = rel.split("/")
            if parts and parts[0].startswith("CheXpert-v1.0"):
                parts = parts[1:]  # the CSV paths start with the release folder name
            frontal = row[c_frontal].strip()
            if frontal == "Frontal":
                view = row[c_appa].strip() or "UNKNOWN"
            else:
                view = "L" if frontal == "Lateral" else (frontal or "UNKNOWN")
            patient = _PATIENT.search(rel)
            meta: dict[str, Any] = {"path": rel}
            if c_sex is not None:
                meta["sex"] = row[c_sex].strip()
            if c_age is not None and row[c_age].strip():
                meta["age"] = row[c_age].strip()
            rows.append({KEY: safe_key(os.path.splitext("/".join(parts))[0]), "path": os.path.join(root, *parts),
                         "kind": "jpg", "view": view, "patient": patient.group(0) if patient else rel, "meta": meta})
        try:
            labels, names, extras = chexpert_label_matrix({name: column for (name, _), column in zip(observations, cells)},
                                                          uncertain=self.uncertain)
        except ValueError as error:
            raise ValueError(f"{str(self.csv)!r}: {error}") from None
        labels.setflags(write=False)  # rows hold read-only views of one matrix, not 18-float lists
        for row, vector, extra in zip(rows, labels, _extra_json(names, extras)):
            row["labels"] = vector
            row["meta"] = {"extra_labels": extra, **row["meta"]}
        return rows


@register_dataset("mimic-cxr")
class MIMICDataset(XRayDataset):
    """MIMIC-CXR-JPG (PhysioNet, credentialed): study-level labels joined onto each image.

    Args:
        root: the ``mimic-cxr-jpg/2.0.0`` folder (CSVs and ``files/``).
        split: ``None`` (all), ``"train"``, ``"validate"`` or ``"test"`` (the split CSV).
        labeler: ``"chexpert"`` (default) or ``"negbio"`` label file.
        csv, metadata_csv, split_csv: override the metadata file locations.
        uncertain: as for ``chexpert``.
        views: ``ViewPosition`` values to keep (default PA and AP; ``"*"`` = all).
        unique_patients, image_format, dicom, strict, decode, on_error, transform: see
            :class:`loaders.xray.common.XRayDataset`.
    """

    name = "mimic-cxr"
    splits = (None, "train", "validate", "test")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        labeler: str = "chexpert",
        csv: str | os.PathLike | None = None,
        metadata_csv: str | os.PathLike | None = None,
        split_csv: str | os.PathLike | None = None,
        uncertain: str = "nan",
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
        if labeler not in ("chexpert", "negbio"):
            raise ValueError(f"labeler must be 'chexpert' or 'negbio', got {labeler!r}")
        if uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(f"uncertain must be one of {list(UNCERTAIN_POLICIES)}, got {uncertain!r}")
        self.uncertain = uncertain
        self.csv = Path(csv) if csv is not None else find_file(
            self.root, (f"mimic-cxr-2.0.0-{labeler}.csv",), what="MIMIC label CSV", option="csv")
        self.metadata_csv = Path(metadata_csv) if metadata_csv is not None else find_file(
            self.root, ("mimic-cxr-2.0.0-metadata.csv",), what="MIMIC metadata CSV", option="metadata_csv")
        self.split_csv = None
        if split is not None:
            self.split_csv = Path(split_csv) if split_csv is not None else find_file(
                self.root, ("mimic-cxr-2.0.0-split.csv",), what="MIMIC split CSV", option="split_csv")
        self.index

    def _rows(self) -> list[dict[str, Any]]:
        labels_table = read_table(self.csv)
        c_subject, c_study = labels_table.column("subject_id"), labels_table.column("study_id")
        observations = _observation_columns(labels_table)
        cells: list[list[str]] = [[] for _ in observations]
        study_keys = []
        for row in labels_table.rows:
            study_keys.append((row[c_subject].strip(), row[c_study].strip()))
            for column, (_, i) in zip(cells, observations):
                column.append(row[i])
        try:
            matrix, names, extras = chexpert_label_matrix({name: column for (name, _), column in zip(observations, cells)},
                                                          uncertain=self.uncertain, zero_support_devices=True)
        except ValueError as error:
            raise ValueError(f"{str(self.csv)!r}: {error}") from None
        # a study listed twice keeps its last row, as before; rows hold read-only views of the matrix
        matrix.setflags(write=False)
        studies = dict(zip(study_keys, zip(matrix, _extra_json(names, extras))))
        keep = None
        if self.split_csv is not None:
            split_table = read_table(self.split_csv)
            c_dicom, c_split = split_table.column("dicom_id"), split_table.column("split")
            keep = {r[c_dicom].strip() for r in split_table.rows if r[c_split].strip() == self.split}
        meta_table = read_table(self.metadata_csv)
        c_dicom, c_subject, c_study = (meta_table.column(n) for n in ("dicom_id", "subject_id", "study_id"))
        c_view = meta_table.column("ViewPosition")
        c_date = meta_table.column("StudyDate", required=False)
        files = str(self.root / "files")
        rows = []
        for row in meta_table.rows:
            dicom_id, subject, study = row[c_dicom].strip(), row[c_subject].strip(), row[c_study].strip()
            if (keep is not None and dicom_id not in keep) or (subject, study) not in studies:
                continue
            labels, extra = studies[(subject, study)]
            rel = f"p{subject[:2]}/p{subject}/s{study}/{dicom_id}"
            meta: dict[str, Any] = {"extra_labels": dict(extra), "study": study}
            if c_date is not None and row[c_date].strip():
                meta["study_date"] = row[c_date].strip()
            rows.append({KEY: safe_key(rel), "path": f"{files}/{rel}.jpg", "kind": "jpg",
                         "view": row[c_view].strip() or "UNKNOWN", "patient": subject, "labels": labels, "meta": meta})
        return rows
