"""ImageNet test-set variants in the 1k label space: ``imagenet-a``, ``imagenet-r``,
``imagenet-v2`` and ``imagenet-sketch``.

* ImageNet-A -- Hendrycks et al., "Natural Adversarial Examples", CVPR 2021
  (``hendrycks/natural-adv-examples``): ``imagenet-a/README.txt`` + 200 ``<wnid>/`` folders,
  file names embedding model predictions (spaces, dots).
* ImageNet-R -- Hendrycks et al., "The Many Faces of Robustness", ICCV 2021
  (``hendrycks/imagenet-r``): ``imagenet-r/README.txt`` + 200 ``<wnid>/`` folders.
* ImageNetV2 -- Recht et al., "Do ImageNet Classifiers Generalize to ImageNet?", ICML 2019
  (``modestyachts/ImageNetV2``): ``imagenetv2-<variant>-format-val/<class index>/<hash>.jpeg``.
  The folders are 1k indices ``0`` .. ``999``; they are mapped numerically (``ImageFolder``
  would sort ``"0", "1", "10", "100", ...`` and mislabel).
* ImageNet-Sketch -- Wang et al., "Learning Robust Global Representations by Penalizing Local
  Predictive Power", NeurIPS 2019 (``HaohanWang/ImageNet-Sketch``): ``sketch/<wnid>/*.JPEG``.

``label`` is always the standard 1k index. The A/R samples also carry their 200-class label in
``meta["label_200"]``; :attr:`ImageNetSubsetDataset.indices_in_1k` and
:meth:`ImageNetSubsetDataset.logits_mask` restrict a 1k model to the 200 classes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from loaders.layout import TEST_SPLITS, check_test_split, find_dir, list_subdirs
from loaders.registry import register_dataset

from loaders.imagenet.common import ImageNetFamily, index_class_folders, is_wnid, wnid_folders
from loaders.imagenet.metadata import subset_indices, subset_logits_mask, subset_wnids

__all__ = [
    "ImageNetADataset",
    "ImageNetRDataset",
    "ImageNetSketchDataset",
    "ImageNetSubsetDataset",
    "ImageNetV2Dataset",
    "TEST_SPLITS",
    "V2_VARIANTS",
]

#: ImageNetV2 variant -> the folder its archive extracts to.
V2_VARIANTS: Mapping[str, str] = {
    "matched-frequency": "imagenetv2-matched-frequency-format-val",
    "threshold0.7": "imagenetv2-threshold0.7-format-val",
    "top-images": "imagenetv2-top-images-format-val",
}


def _has_wnid_folders(path: Path) -> bool:
    return any(is_wnid(name) for name in list_subdirs(path))


class _WnidFolderDataset(ImageNetFamily):
    """A test set stored as ``<root>[/<one of folders>]/<wnid>/<image>``."""

    #: sub-folders of the user's root where the class folders may live ("" = root itself).
    folders: ClassVar[tuple[str, ...]] = ("",)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        *,
        image_mode: str = "RGB",
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(root, image_mode=image_mode, decode=decode, on_error=on_error, transform=transform)
        self.split = check_test_split(self.name, split)
        self.root = find_dir(self.root, self.folders, _has_wnid_folders, what=self.name)
        self.index  # index now: a bad root fails at construction, not in a worker

    def _known_wnids(self) -> dict[str, int]:
        return {wnid: i for i, wnid in enumerate(self.wnids)}

    def _build_index(self) -> Sequence[dict[str, Any]]:
        folders = wnid_folders(self.root, self._known_wnids(), what=self.name)
        self._keys_checked = True  # valid and unique by construction (keys are <wnid>/<stem>)
        return index_class_folders(os.fspath(self.root), folders)


class ImageNetSubsetDataset(_WnidFolderDataset):
    """A 200-class ImageNet test set (A or R) labelled with 1k indices.

    Args:
        root: the extracted ``imagenet-a/`` (or ``imagenet-r/``) folder, or the folder holding it.
        split: ``"test"`` (the only split).
        image_mode, decode, on_error, transform: see :class:`~loaders.imagenet.common.ImageNetFamily`.

    Samples: ``image``, ``label`` (1k index), ``meta`` (``wnid``, ``file``, ``label_200``).
    ``README.txt`` is ignored; a folder outside the 200 official wnids raises ``ValueError``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        *,
        image_mode: str = "RGB",
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self._label_200 = {wnid: j for j, wnid in enumerate(subset_wnids(self.name))}
        super().__init__(root, split, image_mode=image_mode, decode=decode, on_error=on_error, transform=transform)

    def _known_wnids(self) -> dict[str, int]:
        everything = super()._known_wnids()
        return {wnid: everything[wnid] for wnid in self._label_200}

    @property
    def indices_in_1k(self) -> list[int]:
        """1k index of each 200-class label (``logits[:, ds.indices_in_1k]`` gives 200 logits)."""
        return subset_indices(self.name)

    def logits_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Bool ``[1000]`` mask of this dataset's 200 classes (see :func:`subset_logits_mask`)."""
        return subset_logits_mask(self.name, device)

    def _meta(self, record: Mapping[str, Any]) -> dict[str, Any]:
        meta = super()._meta(record)
        meta["label_200"] = self._label_200[meta["wnid"]]
        return meta


@register_dataset("imagenet-a")
class ImageNetADataset(ImageNetSubsetDataset):
    """ImageNet-A: 7,500 natural adversarial examples over 200 classes (see the module docstring)."""

    name = "imagenet-a"
    folders = ("", "imagenet-a")


@register_dataset("imagenet-r")
class ImageNetRDataset(ImageNetSubsetDataset):
    """ImageNet-R: 30,000 renditions (art, cartoons, ...) over 200 classes (see the module docstring)."""

    name = "imagenet-r"
    folders = ("", "imagenet-r")


@register_dataset("imagenet-sketch")
class ImageNetSketchDataset(_WnidFolderDataset):
    """ImageNet-Sketch: black-and-white sketches, ``sketch/<wnid>/sketch_<k>.JPEG``, 1000 classes.

    Args:
        root: the ``sketch/`` folder (or ``imagenet-sketch/``) or the folder holding it.
        split: ``"test"`` (the only split).
        image_mode, decode, on_error, transform: see :class:`~loaders.imagenet.common.ImageNetFamily`.
    """

    name = "imagenet-sketch"
    folders = ("", "sketch", "imagenet-sketch", "imagenet-sketch/sketch", "ImageNet-Sketch/sketch")


@register_dataset("imagenet-v2")
class ImageNetV2Dataset(ImageNetFamily):
    """ImageNetV2: 10,000 new test images in class-index folders.

    Args:
        root: the folder holding ``imagenetv2-<variant>-format-val/`` (or that folder itself).
        split: ``"test"`` (the only split).
        variant: ``"matched-frequency"`` (default), ``"threshold0.7"`` or ``"top-images"``.
        image_mode, decode, on_error, transform: see :class:`~loaders.imagenet.common.ImageNetFamily`.

    Samples: ``image``, ``label`` = ``int(folder name)``, ``meta`` (``wnid``, ``file``, ``variant``).
    """

    name = "imagenet-v2"
    meta_fields = ("variant",)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        *,
        variant: str = "matched-frequency",
        image_mode: str = "RGB",
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(root, image_mode=image_mode, decode=decode, on_error=on_error, transform=transform)
        self.split = check_test_split(self.name, split)
        if variant not in V2_VARIANTS:
            raise ValueError(f"variant must be one of {tuple(V2_VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.root = find_dir(
            self.root, (V2_VARIANTS[variant], ""), lambda p: any(d.isdigit() for d in list_subdirs(p)), what=self.name
        )
        self.index  # index now: a bad root fails at construction, not in a worker

    def _build_index(self) -> Sequence[dict[str, Any]]:
        folders = list_subdirs(self.root)
        bad = [f for f in folders if not f.isdigit() or not 0 <= int(f) < len(self.wnids)]
        if bad:
            raise ValueError(
                f"imagenet-v2: folder(s) {bad[:5]} under {str(self.root)!r} are not class indices 0..{len(self.wnids) - 1}"
            )
        numeric = sorted(((f, int(f)) for f in folders), key=lambda pair: pair[1])
        self._keys_checked = True  # valid and unique by construction (keys are <index>/<stem>)
        return index_class_folders(os.fspath(self.root), numeric, extra={"variant": self.variant})
