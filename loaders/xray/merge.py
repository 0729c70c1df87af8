"""``merge``: concatenate chest X-ray collections with aligned label columns.

Every collection already emits the harmonised 18-pathology vector, so merging is concatenation;
``pathologies=`` selects and orders the columns of the merged ``labels`` (NaN for a name no
collection provides), as TorchXRayVision's ``relabel_dataset`` + ``MergeDataset`` do. Keys are
prefixed with the collection name (``nih/00000001_000``) so they stay unique across collections,
and ``__source__`` keeps the collection's own name.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from loaders.base import Adapter
from loaders.codecs import decode as decode_payload, encode
from loaders.schema import KEY, SOURCE
from loaders.xray.common import XRayDataset
from loaders.xray.labels import PATHOLOGIES, relabel

__all__ = ["MergedXRayDataset", "merge"]


class MergedXRayDataset(Adapter):
    """The concatenation of several :class:`~loaders.xray.common.XRayDataset` (see :func:`merge`)."""

    name = "xray-merge"

    def __init__(self, datasets: Sequence[XRayDataset], pathologies: Sequence[str] = PATHOLOGIES, *, on_error: str = "raise") -> None:
        if not datasets:
            raise ValueError("merge needs at least one dataset")
        for dataset in datasets:
            if not isinstance(dataset, XRayDataset):
                raise TypeError(f"merge takes chest X-ray collections (XRayDataset), got {type(dataset).__name__}")
        decodes = {d.decode for d in datasets}
        if len(decodes) != 1:
            raise ValueError("merge: all datasets must use the same decode= setting")
        if isinstance(pathologies, str) or not all(isinstance(p, str) for p in pathologies):
            raise TypeError("pathologies must be a sequence of pathology names")
        super().__init__(decode=decodes.pop(), on_error=on_error)
        self.datasets = list(datasets)
        self.pathologies = tuple(pathologies)
        self._offsets = np.cumsum([0] + [len(d) for d in self.datasets]).tolist()
        self._missing = sum(d.stats()["missing"] for d in self.datasets)  # files absent from each collection

    def _build_index(self) -> list[dict[str, Any]]:
        return [{KEY: f"{d.name}/{r[KEY]}", "dataset": i, "position": j, "path": r.get("path")}
                for i, d in enumerate(self.datasets) for j, r in enumerate(d.index)]

    @property
    def labels(self) -> np.ndarray:
        """The ``[N, len(pathologies)]`` label matrix of all collections, aligned."""
        return np.concatenate([relabel(d.labels, d.pathologies, self.pathologies) for d in self.datasets])

    def _relabel(self, source: Sequence[str], labels: torch.Tensor) -> torch.Tensor:
        if tuple(source) == self.pathologies:
            return labels
        return torch.from_numpy(relabel(labels.numpy(), source, self.pathologies))

    def load(self, index: int, *, decode: bool | None = None) -> dict[str, Any]:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        child = bisect.bisect_right(self._offsets, index) - 1
        dataset = self.datasets[child]
        sample = dataset.load(index - self._offsets[child], decode=decode)
        sample[KEY] = f"{dataset.name}/{sample[KEY]}"
        sample[SOURCE] = dataset.name
        if "labels" in sample:
            sample["labels"] = self._relabel(dataset.pathologies, sample["labels"])
        elif "labels.npy" in sample and tuple(dataset.pathologies) != self.pathologies:
            labels = decode_payload("labels.npy", sample["labels.npy"])
            sample["labels.npy"] = encode("labels.npy", self._relabel(dataset.pathologies, labels))
        return sample


def merge(*datasets: XRayDataset, pathologies: Sequence[str] = PATHOLOGIES, on_error: str = "raise") -> MergedXRayDataset:
    """Concatenate chest X-ray collections into one dataset with aligned ``labels``.

    Args:
        *datasets: opened collections (``open_dataset("nih", ...)``, ...), all with the same ``decode``.
        pathologies: the label columns of the result, in order (default: the harmonised 18).
        on_error: the merged dataset's error policy (each collection keeps its own for ``load``).

    Example:
        >>> both = merge(open_dataset("nih", root=a), open_dataset("chexpert", root=b))  # doctest: +SKIP
    """
    return MergedXRayDataset(list(datasets), pathologies, on_error=on_error)

