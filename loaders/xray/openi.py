"""OpenI / Indiana University chest X-rays (``openi``): labels from the reports' MeSH terms.

Demner-Fushman et al., "Preparing a collection of radiology examinations for distribution and
retrieval", JAMIA 2016. Label rules follow TorchXRayVision's ``Openi_Dataset``: the report's
``<MeSH><automatic>`` terms are lower-cased, de-duplicated, sorted and ``|``-joined, and a
pathology is 1 when its lower-cased name or a synonym is a substring (``atelectases``,
``infiltrate``, ``pleural thickening``; ``opacity`` -> Lung Opacity, ``lesion`` -> Lung Lesion),
else 0; Consolidation and Enlarged Cardiomediastinum are NaN. One report (``uId``, the patient)
has one or more images (``<parentImage id=...>``).

Views are not in the reports: they come from TorchXRayVision's DICOM header table
(``View Position``) or its t-SNE table (``tsne-view``, ``view_source="tsne"``).

Layout::

    root/ecgen-radiology/<n>.xml   (or root/NLMCXR_reports.tgz, read in place)
    root/NLMCXR_png/CXR10_IM-0002-1001.png
    root/nlmcxr_dicom_metadata.csv[.gz]  (imageid, View Position, ...)   needed unless views="*"
    root/nlmcxr_tsne_pa.csv[.gz]         (imageid, tsne-view)            for view_source="tsne"
"""

from __future__ import annotations

import os
import tarfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loaders.dicom import DicomOptions
from loaders.fileio import open_regular_file, read_regular
from loaders.layout import find_file, read_table
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key
from loaders.xray.common import XRayDataset
from loaders.xray.labels import substring_labels

__all__ = ["OPENI_TERMS", "OpenIDataset", "openi_labels", "parse_openi_report"]

OPENI_TERMS: Mapping[str, tuple[str, ...]] = {
    "Atelectasis": ("atelectasis", "atelectases"), "Infiltration": ("infiltration", "infiltrate"),
    "Pneumothorax": ("pneumothorax",), "Edema": ("edema",), "Emphysema": ("emphysema",), "Fibrosis": ("fibrosis",),
    "Effusion": ("effusion",), "Pneumonia": ("pneumonia",), "Pleural_Thickening": ("pleural_thickening", "pleural thickening"),
    "Cardiomegaly": ("cardiomegaly",), "Nodule": ("nodule",), "Mass": ("mass",), "Hernia": ("hernia",),
    "Lung Lesion": ("lesion",), "Fracture": ("fracture",), "Lung Opacity": ("opacity",),
}
_VIEW_SOURCES = {"dicom": (("nlmcxr_dicom_metadata.csv",), "View Position"), "tsne": (("nlmcxr_tsne_pa.csv",), "tsne-view")}


def openi_labels(automatic: str) -> np.ndarray:
    """Harmonised labels from the ``|``-joined lower-case automatic MeSH terms of a report."""
    return substring_labels(automatic, OPENI_TERMS)


def parse_openi_report(data: bytes, name: str) -> dict[str, Any] | None:
    """``{"uid", "automatic", "major", "images"}`` of one report XML (``None`` without a ``uId``)."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise ValueError(f"{name!r}: malformed report XML: {error}") from None
    uid = root.find("uId")
    if uid is None or "id" not in uid.attrib:
        return None
    terms = lambda tag: "|".join(sorted({(n.text or "").lower() for n in root.findall(f".//MeSH/{tag}")}))  # noqa: E731
    images = [node.attrib["id"] for node in root.findall(".//parentImage") if "id" in node.attrib]
    return {"uid": uid.attrib["id"], "automatic": terms("automatic"), "major": terms("major"), "images": images}


def _reports(root: Path) -> Iterator[tuple[str, bytes]]:
    folder = root / "ecgen-radiology"
    if folder.is_dir():
        for name in sorted(os.listdir(folder)):
            if name.endswith(".xml"):
                yield str(folder / name), read_regular(folder / name)
        return
    archive = root / "NLMCXR_reports.tgz"
    if not archive.is_file():
        raise FileNotFoundError(f"openi: no reports under {str(root)!r} (ecgen-radiology/ or NLMCXR_reports.tgz)")
    # read members in place; nothing is extracted
    with open_regular_file(archive) as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".xml"):
                handle = tar.extractfile(member)
                if handle is not None:
                    yield f"{archive}:{member.name}", handle.read()


@register_dataset("openi")
class OpenIDataset(XRayDataset):
    """OpenI: 7,470 PNG images of 3,955 reports from Indiana University.

    Args:
        root: the folder with reports, images and view tables (see the module docstring).
        split: only ``None``.
        images: the PNG folder under ``root`` (default ``NLMCXR_png``).
        view_source: ``"dicom"`` (``View Position``) or ``"tsne"`` (t-SNE derived PA/L).
        view_csv: the view table (default: looked up in ``root``).
        views: views to keep (default PA and AP; ``"*"`` = all and needs no view table).
        unique_patients, image_format, dicom, strict, decode, on_error, transform: see
            :class:`loaders.xray.common.XRayDataset`.
    """

    name = "openi"
    splits = (None,)  # the release has no split

    def __init__(
        self,
        root: str | os.PathLike,
        split: None = None,
        *,
        images: str = "NLMCXR_png",
        view_source: str = "dicom",
        view_csv: str | os.PathLike | None = None,
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
        if view_source not in _VIEW_SOURCES:
            raise ValueError(f"view_source must be one of {sorted(_VIEW_SOURCES)}, got {view_source!r}")
        self.images, self.view_source = images, view_source
        names, _ = _VIEW_SOURCES[view_source]
        if view_csv is None:
            try:
                view_csv = find_file(self.root, names, what="", option="view_csv")
            except FileNotFoundError:
                if self.views is not None:
                    raise FileNotFoundError(
                        f"openi: filtering views={sorted(self.views)} needs {names[0]}[.gz] (TorchXRayVision's data folder) "
                        f"in {str(self.root)!r} or view_csv=; pass views='*' to keep every image") from None
        self.view_csv = None if view_csv is None else Path(view_csv)
        self.index

    def _rows(self) -> list[dict[str, Any]]:
        views: dict[str, str] = {}
        if self.view_csv is not None:
            table = read_table(self.view_csv)
            c_id, c_view = table.column("imageid"), table.column(_VIEW_SOURCES[self.view_source][1])
            views = {row[c_id].strip(): row[c_view].strip() for row in table.rows}
        folder = self.root / self.images
        rows = []
        for name, data in _reports(self.root):
            report = parse_openi_report(data, name)
            if report is None:
                continue
            labels = openi_labels(report["automatic"]).tolist()
            for image in report["images"]:
                rows.append({KEY: safe_key(image), "path": str(folder / f"{image}.png"), "kind": "png",
                             "view": views.get(image) or "UNKNOWN", "patient": report["uid"], "labels": labels,
                             "meta": {"report": report["uid"], "mesh_automatic": report["automatic"], "mesh_major": report["major"]}})
        return rows
