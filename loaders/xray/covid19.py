"""COVID-19 image data collection (``covid19``): the ieee8023/covid-chestxray-dataset repository.

Cohen et al., "COVID-19 image data collection: prospective predictions are the future", MELBA
2020. Label rules follow TorchXRayVision's ``COVID19_Dataset``: rows whose ``finding`` is ``todo``
or ``Unknown`` are dropped; the label vocabulary is every ``/``-separated token of the kept rows'
``finding`` (e.g. ``Pneumonia/Viral/COVID-19``); a harmonised pathology that is in that vocabulary
is 1 when its name is a substring of the row's ``finding`` and 0 otherwise; the others are NaN.
The full finding and its tokens are kept in ``meta["finding"]``/``meta["findings"]``.

Layout (a clone of the repository)::

    root/metadata.csv      patientid,offset,sex,age,finding,...,view,modality,date,location,folder,filename,...
    root/images/<filename>   (root/<folder>/<filename> when the folder column is present)
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
from loaders.xray.common import XRayDataset
from loaders.xray.labels import PATHOLOGIES, harmonise

__all__ = ["COVID19Dataset", "covid19_labels"]

_DROPPED_FINDINGS = ("todo", "Unknown")


def covid19_labels(finding: str, vocabulary: set[str]) -> Any:
    """Harmonised labels of one ``finding`` given the vocabulary of the kept rows' tokens."""
    return harmonise({name: float(name in finding) for name in PATHOLOGIES if name in vocabulary})


@register_dataset("covid19")
class COVID19Dataset(XRayDataset):
    """The COVID-19 image data collection (X-ray rows; CT rows have Axial/Coronal views).

    Args:
        root: the repository folder (see the module docstring).
        split: only ``None``.
        csv: the metadata file (default ``root/metadata.csv``).
        views: ``view`` values to keep (default PA and AP; ``"*"`` = all).
        unique_patients, image_format, dicom, strict, decode, on_error, transform: see
            :class:`loaders.xray.common.XRayDataset`.
    """

    name = "covid19"
    splits = (None,)  # the release has no split

    def __init__(
        self,
        root: str | os.PathLike,
        split: None = None,
        *,
        csv: str | os.PathLike | None = None,
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
        self.csv = Path(csv) if csv is not None else find_file(self.root, ("metadata.csv",), what="COVID-19 metadata.csv", option="csv")
        self.index

    def _after_view_filter(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # the label vocabulary is that of the rows the view filter kept (as TorchXRayVision)
        vocabulary = {token for row in rows for token in row["meta"]["findings"]}
        for row in rows:
            row["labels"] = covid19_labels(row["meta"]["finding"], vocabulary).tolist()
        return rows

    def _rows(self) -> list[dict[str, Any]]:
        table = read_table(self.csv)
        c_patient = table.column("patientid", "Patientid")
        c_finding, c_view, c_file = table.column("finding"), table.column("view"), table.column("filename")
        c_folder = table.column("folder", required=False)
        c_offset = table.column("offset", required=False)
        rows = []
        used: dict[str, int] = {}
        for row in table.rows:
            finding = row[c_finding].strip()
            if finding in _DROPPED_FINDINGS:
                continue
            filename = row[c_file].strip()
            folder = (row[c_folder].strip() if c_folder is not None else "") or "images"
            try:
                kind = kind_of(filename)
            except ValueError:
                continue  # CT volumes (.nii.gz) and other non-image entries
            meta: dict[str, Any] = {"finding": finding, "findings": [t for t in finding.split("/") if t], "filename": filename}
            if c_offset is not None and row[c_offset].strip():
                meta["offset_days"] = row[c_offset].strip()
            key = safe_key(os.path.splitext(filename)[0])
            used[key] = used.get(key, 0) + 1
            if used[key] > 1:  # the same file listed twice: keep both rows under distinct keys
                key = f"{key}__{used[key]}"
            rows.append({KEY: key, "path": str(self.root / folder / filename),
                         "kind": kind, "view": row[c_view].strip() or "UNKNOWN", "patient": row[c_patient].strip(),
                         "labels": [], "meta": meta})
        return rows
