"""``imagenet``: ImageNet-1k (ILSVRC2012) train and val in the layouts users actually have.

Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge", IJCV 2015; ReaL labels
from Beyer et al., "Are we done with ImageNet?", 2020 (``google-research/reassessed-imagenet``).

Layouts (``layout="auto"`` detects them; paths relative to ``root``)::

    torchvision / valprep      Kaggle (object-localization challenge)     devkit
    train/<wnid>/*.JPEG        LOC_synset_mapping.txt                     train/<wnid>/*.JPEG
    val/<wnid>/*.JPEG          LOC_val_solution.csv                       val/ILSVRC2012_val_00000001.JPEG (flat)
    [meta.bin: never read,     ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG    ILSVRC2012_devkit_t12/data/meta.mat
     it is a pickle]           ILSVRC/Data/CLS-LOC/val/*.JPEG (flat)      ILSVRC2012_devkit_t12/data/
                                                                            ILSVRC2012_validation_ground_truth.txt

Labels are always the standard index (sorted wnids). Kaggle val labels come from the first
token of ``PredictionString``; devkit ground-truth ids (the devkit's own order, e.g. tench = 449)
are mapped id -> wnid (``meta.mat``) -> standard index. The class list comes from the user's
``LOC_synset_mapping.txt`` (line order), else the devkit's ``meta.mat`` (when it has the 1000
leaves and the devkit layout is used), else the packaged list. ``labels="real"`` adds ReaL's
multi-hot ``labels`` (``real.json``; an all-zero vector where ReaL has no valid label) to val.
Val keys are ``ILSVRC2012_val_XXXXXXXX`` in every layout; train keys are ``<wnid>/<stem>``.

A val folder holding part of the 50,000 images (a 10k subset, a partial download) indexes the
images present: ground-truth lines (Kaggle CSV rows, devkit lines, ReaL entries) whose image is
absent from the folder listing are left out, counted in ``stats()["missing"]`` and named in one
:class:`~loaders.base.MissingFilesWarning`; ``strict=True`` raises ``FileNotFoundError`` instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from loaders.codecs import encode
from loaders.layout import first_existing
from loaders.registry import register_dataset
from loaders.schema import KEY

from loaders.imagenet.common import IMAGE_EXTENSIONS, ImageNetFamily, index_class_folders, wnid_folders
from loaders.imagenet.metadata import (
    read_devkit_ground_truth,
    read_devkit_meta,
    read_real_labels,
    read_synset_mapping,
    read_val_solution,
)

__all__ = ["DEVKIT_DIRS", "ImageNetDataset", "LABEL_SETS", "LAYOUTS", "SPLITS"]

SPLITS = ("train", "val")
LAYOUTS = ("auto", "torchvision", "kaggle", "devkit")
LABEL_SETS = ("original", "real")
KAGGLE_DATA = "ILSVRC/Data/CLS-LOC"
SYNSET_MAPPING = "LOC_synset_mapping.txt"
VAL_SOLUTION = "LOC_val_solution.csv"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
#: where the devkit's ``data/`` files are looked for (relative to root), in order.
DEVKIT_DIRS = ("ILSVRC2012_devkit_t12/data", "ILSVRC2012_devkit_t12", "devkit/data", "devkit", "")
_VAL_STEM = re.compile(r"ILSVRC2012_val_(\d{8})")


def _flat_listing(path: Path) -> tuple[dict[str, str], bool]:
    """``{stem: file name}`` of the images directly in ``path`` and whether it has sub-folders."""
    stems: dict[str, str] = {}
    has_dirs = False
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                has_dirs = True
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                stems.setdefault(entry.name.rsplit(".", 1)[0], entry.name)
    return stems, has_dirs


@register_dataset("imagenet")
class ImageNetDataset(ImageNetFamily):
    """ImageNet-1k train/val (see the module docstring for the layouts).

    Args:
        root: the folder holding ``train/`` and ``val/`` (torchvision, devkit) or the Kaggle base
            folder (with ``LOC_*`` files and ``ILSVRC/``).
        split: ``"train"`` (default) or ``"val"``.
        layout: ``"auto"`` (default), ``"torchvision"`` (class-folder val), ``"kaggle"`` or
            ``"devkit"`` (flat val labelled by those files).
        labels: ``"original"`` (default) or ``"real"`` (val only: adds ReaL multi-hot ``labels``).
        real_json: path of ReaL's ``real.json`` (default ``root/real.json``).
        devkit: folder holding ``meta.mat`` and the ground truth (default: searched under root).
        strict: raise ``FileNotFoundError`` when val metadata (ground truth, ReaL) names images
            absent from the val folder, instead of indexing the present ones with a warning.
        image_mode, decode, on_error, transform: see :class:`~loaders.imagenet.common.ImageNetFamily`.

    Samples: ``image`` (RGB uint8), ``label`` (standard index), ``meta`` (``wnid``, ``file``;
    ``real_labels`` with ReaL), ``labels`` (float32 ``[1000]`` with ReaL).
    """

    name = "imagenet"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        layout: str = "auto",
        labels: str = "original",
        real_json: str | os.PathLike | None = None,
        devkit: str | os.PathLike | None = None,
        strict: bool = False,
        image_mode: str = "RGB",
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(root, image_mode=image_mode, decode=decode, on_error=on_error, transform=transform)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if labels not in LABEL_SETS:
            raise ValueError(f"labels must be one of {LABEL_SETS}, got {labels!r}")
        if labels == "real" and split != "val":
            raise ValueError(f"labels='real' exists for split='val' only (ReaL relabels the val set), got split={split!r}")
        self.split = split
        self.labels = labels
        self.real_json = Path(real_json) if real_json is not None else self.root / "real.json"
        self.devkit = Path(devkit) if devkit is not None else None
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
        self.strict = strict
        kaggle_data = self.root / KAGGLE_DATA
        self.image_prefix = f"{KAGGLE_DATA}/{split}" if kaggle_data.is_dir() else split
        self.image_dir = self.root / self.image_prefix
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"imagenet: no {split} folder at {str(self.image_dir)!r} (see docs/imagenet.md)")
        if split == "train" and layout == "auto":  # train is class folders in every layout
            layout = "kaggle" if kaggle_data.is_dir() else "torchvision"
        self.layout = layout
        self.class_source = "package"
        mapping = self.root / SYNSET_MAPPING
        if mapping.is_file():
            self.set_classes(*read_synset_mapping(mapping))
            self.class_source = SYNSET_MAPPING
        self.index  # index now: a bad root fails at construction, not in a worker

    # -- index -------------------------------------------------------------------------------

    def _class_index(self) -> dict[str, int]:
        return {wnid: i for i, wnid in enumerate(self.wnids)}

    def _build_index(self) -> Sequence[dict[str, Any]]:
        if self.split == "train":
            folders = wnid_folders(self.image_dir, self._class_index(), what="imagenet train")
            self._keys_checked = True  # valid and unique by construction (keys are <wnid>/<stem>)
            return index_class_folders(os.fspath(self.root), folders, prefix=f"{self.image_prefix}/")
        stems, has_dirs = _flat_listing(self.image_dir)
        layout = self.layout if self.layout != "auto" else self._detect_val_layout(stems, has_dirs)
        self.layout = layout
        if layout == "torchvision":
            folders = wnid_folders(self.image_dir, self._class_index(), what="imagenet val")
            records = sorted(index_class_folders(os.fspath(self.root), folders, prefix=f"{self.image_prefix}/",
                                                 key_by_folder=False), key=lambda r: r[KEY])
            sources = []  # indexed from the listing: every record has its file
        elif layout == "kaggle":
            records, sources = self._kaggle_val(stems), [VAL_SOLUTION]
        else:
            records, sources = self._devkit_val(stems), [GROUND_TRUTH]
        # Entries whose image is not in the listing are left out and counted: a val folder holding
        # a subset must not index 50,000 records that mostly fail to load.
        real = self._read_real() if self.labels == "real" else None
        only_real: list[str] = []
        if real is not None:  # ReaL entry i names ILSVRC2012_val_{i:08d} in every layout
            sources.append(self.real_json.name)
            named = {r[KEY] for r in records}
            only_real = [key for key in (f"ILSVRC2012_val_{i:08d}" for i in range(1, len(real) + 1)) if key not in named]
        absent = sorted([r[KEY] for r in records if r["name"] is None] + only_real)
        keep_all = self._note_missing([os.path.join(self.image_dir, f"{key}.JPEG") for key in absent],
                                      len(records) + len(only_real), what=f"val images named by {' and '.join(sources)}",
                                      strict=self.strict)
        if keep_all:  # no image at all: a metadata-only index, loading names the expected file
            records = [r if r["name"] is not None else {**r, "name": f"{r[KEY]}.JPEG"} for r in records]
        else:
            records = [r for r in records if r["name"] is not None]
        if real is not None:
            self._attach_real(records, real)
        return records

    def _devkit_file(self, name: str) -> Path | None:
        dirs = [self.devkit] if self.devkit is not None else [self.root / d if d else self.root for d in DEVKIT_DIRS]
        return first_existing((folder / name for folder in dirs), Path.is_file)

    def _detect_val_layout(self, stems: Mapping[str, str], has_dirs: bool) -> str:
        if has_dirs and not stems:
            return "torchvision"
        if (self.root / VAL_SOLUTION).is_file():
            return "kaggle"
        if self._devkit_file(GROUND_TRUTH) is not None:
            return "devkit"
        if has_dirs:
            return "torchvision"
        raise FileNotFoundError(
            f"imagenet val: {str(self.image_dir)!r} holds flat images but neither {VAL_SOLUTION} (in the root) nor "
            f"{GROUND_TRUTH} + meta.mat (devkit) was found to label them; see docs/imagenet.md"
        )

    def _val_record(self, image_id: str, label: int, stems: Mapping[str, str]) -> dict[str, Any]:
        """A val row; ``name`` is ``None`` when the listing has no image ``image_id``."""
        name = stems.get(image_id)
        return {KEY: image_id, "dir": self.image_prefix, "name": name, "label": label}

    def _kaggle_val(self, stems: Mapping[str, str]) -> list[dict[str, Any]]:
        path = self.root / VAL_SOLUTION
        if not path.is_file():
            raise FileNotFoundError(f"imagenet val (kaggle layout): missing {str(path)!r}")
        solution = read_val_solution(path)
        index = self._class_index()
        records = []
        for image_id in sorted(solution):
            wnid = solution[image_id]
            if wnid not in index:
                raise ValueError(f"{path}: {image_id} is labelled {wnid!r}, which is not one of the {len(index)} classes")
            records.append(self._val_record(image_id, index[wnid], stems))
        return records

    def _devkit_val(self, stems: Mapping[str, str]) -> list[dict[str, Any]]:
        truth, meta_path = self._devkit_file(GROUND_TRUTH), self._devkit_file("meta.mat")
        if truth is None or meta_path is None:
            where = str(self.devkit) if self.devkit is not None else f"{DEVKIT_DIRS} under {str(self.root)!r}"
            raise FileNotFoundError(f"imagenet val (devkit layout): need {GROUND_TRUTH} and meta.mat in {where}")
        meta = read_devkit_meta(meta_path)
        if self.class_source == "package" and len(meta.wnids) == len(self.wnids):
            self.set_classes(meta.wnids, meta.names)
            self.class_source = "meta.mat"
        index = self._class_index()
        records = []
        for number, devkit_id in enumerate(read_devkit_ground_truth(truth), 1):
            wnid = meta.id_to_wnid.get(devkit_id)
            if wnid is None or wnid not in index:
                raise ValueError(f"{truth}: line {number} has ILSVRC2012_ID {devkit_id}, which {meta_path} does not map to a class")
            records.append(self._val_record(f"ILSVRC2012_val_{number:08d}", index[wnid], stems))
        return records

    def _read_real(self) -> list[list[int]]:
        if not self.real_json.is_file():
            raise FileNotFoundError(f"imagenet labels='real': missing {str(self.real_json)!r} (pass real_json=)")
        return read_real_labels(self.real_json, len(self.wnids))

    def _attach_real(self, records: list[dict[str, Any]], real: Sequence[Sequence[int]]) -> None:
        for record in records:
            match = _VAL_STEM.fullmatch(record[KEY])
            if match is None:
                raise ValueError(f"imagenet labels='real': {self._describe_record(record)!r} is not named ILSVRC2012_val_XXXXXXXX")
            number = int(match.group(1))
            if not 1 <= number <= len(real):
                raise ValueError(f"{self.real_json}: has {len(real)} entries, no entry for {record[KEY]}")
            record["real"] = real[number - 1]

    # -- samples -----------------------------------------------------------------------------

    def _meta(self, record: Mapping[str, Any]) -> dict[str, Any]:
        meta = super()._meta(record)
        if "real" in record:
            meta["real_labels"] = list(record["real"])
        return meta

    def _extra_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        if "real" not in record:
            return {}
        multi_hot = torch.zeros(len(self.wnids), dtype=torch.float32)
        multi_hot[list(record["real"])] = 1.0
        return {"labels.npy": encode("labels.npy", multi_hot)}
