"""NLM tuberculosis sets (``nlm-tb``): Montgomery County (USA) and Shenzhen (China).

Jaeger et al., "Two public chest X-ray datasets for computer-aided screening of pulmonary
diseases", Quant Imaging Med Surg 2014. As in TorchXRayVision's ``NLMTB_Dataset``, the label is
the last character of the file stem (``_0`` normal, ``_1`` tuberculosis) and every image is PA.
Tuberculosis has no harmonised column, so ``labels`` is all NaN and the finding is the integer
``label`` (:attr:`NLMTBDataset.classes`: normal, tuberculosis).

Layout (``root`` is one set's folder, or a folder holding both)::

    MontgomerySet/CXR_png/MCUCXR_0001_0.png        (a.k.a. NLM-MontgomeryCXRSet/MontgomerySet/)
    ChinaSet_AllFiles/CXR_png/CHNCXR_0001_0.png
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loaders.dicom import DicomOptions
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key
from loaders.xray.common import XRayDataset
from loaders.xray.labels import harmonise

__all__ = ["NLMTBDataset"]

_SETS = {
    "montgomery": ("MontgomerySet", "NLM-MontgomeryCXRSet/MontgomerySet", "NLM-MontgomeryCXRSet"),
    "shenzhen": ("ChinaSet_AllFiles", "ChinaSet_AllFiles/ChinaSet_AllFiles"),
}
_PREFIX = {"MCUCXR": "montgomery", "CHNCXR": "shenzhen"}


@register_dataset("nlm-tb")
class NLMTBDataset(XRayDataset):
    """Montgomery (138 normal / 58 TB) and Shenzhen (326 / 336) PNGs with a TB label.

    Args:
        root: one set's folder (holding ``CXR_png/``) or a folder with both sets.
        split: only ``None``.
        subset: ``"both"`` (default), ``"montgomery"`` or ``"shenzhen"``.
        views: every image is ``"PA"`` (default PA and AP keeps all).
        unique_patients, image_format, dicom, strict, decode, on_error, transform: see
            :class:`loaders.xray.common.XRayDataset` (one image per patient already).
    """

    name = "nlm-tb"
    splits = (None,)  # the release has no split
    classes = ("normal", "tuberculosis")

    def __init__(
        self,
        root: str | os.PathLike,
        split: None = None,
        *,
        subset: str = "both",
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
        if subset not in ("both", *_SETS):
            raise ValueError(f"subset must be one of {['both', *_SETS]}, got {subset!r}")
        self.subset = subset
        self.index

    def _folders(self) -> list[Path]:
        if (self.root / "CXR_png").is_dir():
            return [self.root / "CXR_png"]
        found = []
        for name in ([self.subset] if self.subset != "both" else list(_SETS)):
            for candidate in _SETS[name]:
                if (self.root / candidate / "CXR_png").is_dir():
                    found.append(self.root / candidate / "CXR_png")
                    break
        if not found:
            raise FileNotFoundError(f"nlm-tb: no CXR_png/ folder under {str(self.root)!r} or its MontgomerySet/ChinaSet_AllFiles folders")
        return found

    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        for folder in self._folders():
            for name in sorted(os.listdir(folder)):
                stem, extension = os.path.splitext(name)
                if extension.lower() != ".png" or not stem[-1:].isdigit():
                    continue
                subset = _PREFIX.get(stem.split("_")[0], folder.parent.name)
                if self.subset != "both" and subset != self.subset:
                    continue
                label = int(stem[-1])
                rows.append({KEY: safe_key(subset, stem), "path": str(folder / name), "kind": "png", "view": "PA",
                             "patient": stem, "labels": harmonise({}).tolist(), "label": label,
                             "meta": {"subset": subset, "tuberculosis": label}})
        return rows
