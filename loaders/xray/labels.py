"""The harmonised chest X-ray label space and the helpers every collection shares.

The 18 pathologies and their order are TorchXRayVision's ``default_pathologies`` (Cohen et al.,
"TorchXRayVision: A library of chest X-ray datasets and models", MIDL 2022). A collection that
does not label a pathology gets NaN in that column, so a loss can mask it; 1 = present,
0 = absent, and (per the dataset's rules) uncertain mentions become NaN too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["PATHOLOGIES", "UNCERTAIN_POLICIES", "harmonise", "labels_to_json", "relabel", "substring_labels"]

#: The harmonised pathology list (TorchXRayVision ``default_pathologies``), in this order.
PATHOLOGIES: tuple[str, ...] = (
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural_Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
)
_INDEX = {name: i for i, name in enumerate(PATHOLOGIES)}

#: How CheXpert-style uncertain (-1) labels are mapped: U-Ignore (NaN), U-Zeros, U-Ones
#: (Irvin et al., "CheXpert", AAAI 2019, section 4).
UNCERTAIN_POLICIES: Mapping[str, float] = {"nan": math.nan, "zero": 0.0, "one": 1.0}


def harmonise(values: Mapping[str, float]) -> np.ndarray:
    """Build the float32 ``[18]`` vector from ``{harmonised name: value}``; missing names are NaN.

    Raises:
        KeyError: a name is not in :data:`PATHOLOGIES` (the message lists them).
    """
    out = np.full(len(PATHOLOGIES), np.nan, dtype=np.float32)
    for name, value in values.items():
        if name not in _INDEX:
            raise KeyError(f"{name!r} is not a harmonised pathology; known: {list(PATHOLOGIES)}")
        out[_INDEX[name]] = value
    return out


def substring_labels(text: str, terms: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Label by case-sensitive substring search, as TorchXRayVision's ``str.contains`` rules do.

    Args:
        text: the label text of one image (already lower-cased where the dataset's rule says so).
        terms: ``{harmonised name: [substrings]}``; a pathology is 1 if any substring occurs in
            ``text`` and 0 otherwise. Pathologies not in ``terms`` are NaN.
    """
    return harmonise({name: float(any(term in text for term in subs)) for name, subs in terms.items()})


def relabel(labels: np.ndarray, source: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """Reorder the columns of ``labels`` (``[N,len(source)]`` or ``[len(source)]``) into ``target``.

    Columns of ``target`` missing from ``source`` become NaN; extra ``source`` columns are dropped
    (TorchXRayVision's ``relabel_dataset`` semantics, without mutating anything).
    """
    array = np.asarray(labels, dtype=np.float32)
    if array.shape[-1] != len(source):
        raise ValueError(f"labels have {array.shape[-1]} columns but source names {len(source)} pathologies")
    out = np.full((*array.shape[:-1], len(target)), np.nan, dtype=np.float32)
    position = {name: i for i, name in enumerate(source)}
    for j, name in enumerate(target):
        if name in position:
            out[..., j] = array[..., position[name]]
    return out


def labels_to_json(values: Mapping[str, float] | Iterable[tuple[str, float]]) -> dict[str, float | None]:
    """A JSON-safe copy of raw per-dataset labels (NaN -> ``None``) for ``meta``."""
    items = values.items() if isinstance(values, Mapping) else values
    return {str(k): (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)) for k, v in items}
