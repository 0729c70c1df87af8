"""ImageNet label spaces and metadata-file parsers (no media reads, nothing that unpickles).

The *standard class index* of ImageNet-1k (ILSVRC2012; Russakovsky et al., IJCV 2015) is the
position of a class's WordNet id in the sorted list of the 1000 wnids (0 = ``n01440764`` tench,
999 = ``n15075141`` toilet tissue): what ``torchvision.datasets.ImageFolder`` gives on the train
folders and what ``LOC_synset_mapping.txt``, ReaL, ImageNet-A/R index lists and timm use.

Package data (facts, copied verbatim from public releases, not generated):

* ``imagenet_synsets.txt`` -- the 1000 sorted wnids with their ILSVRC2012 synonym lists, in the
  ``LOC_synset_mapping.txt`` syntax (``<wnid> <names>``). Taken from timm 1.0.31
  ``timm/data/_info/imagenet_synsets.txt`` + ``imagenet_synset_to_lemma.txt`` (Apache-2.0); the
  names equal the devkit ``meta.mat`` ``words`` field (``tench, Tinca tinca``, two ``crane``).
* ``imagenet_a_wnids.txt`` / ``imagenet_r_wnids.txt`` -- the 200 sorted wnids of ImageNet-A
  (Hendrycks et al., CVPR 2021, "Natural Adversarial Examples") and ImageNet-R (Hendrycks et al.,
  ICCV 2021, "The Many Faces of Robustness"), from timm ``imagenet_{a,r}_synsets.txt``; their
  1k indices equal ``indices_in_1k`` of ``hendrycks/natural-adv-examples/eval.py`` and
  ``hendrycks/imagenet-r/eval.py`` (checked against both and timm ``imagenet_{a,r}_indices.txt``).

Parsers read the files users have (through :mod:`loaders.fileio`: a FIFO or device named like one
is refused with an error naming it, never opened): Kaggle's ``LOC_synset_mapping.txt`` and
``LOC_val_solution.csv``, the devkit's ``meta.mat`` (``scipy.io.loadmat``, a MATLAB v5 file: no
pickle) and ``ILSVRC2012_validation_ground_truth.txt``, and ReaL's ``real.json`` (Beyer et al.,
2020, "Are we done with ImageNet?").
"""

from __future__ import annotations

import csv
import json
import os
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import torch

from loaders.fileio import NotRegularFileError, open_regular_file

__all__ = [
    "NUM_CLASSES",
    "SUBSETS",
    "DevkitMeta",
    "imagenet_class_names",
    "imagenet_wnids",
    "parse_synset_mapping",
    "read_devkit_ground_truth",
    "read_devkit_meta",
    "read_real_labels",
    "read_synset_mapping",
    "read_val_solution",
    "subset_indices",
    "subset_logits_mask",
    "subset_wnids",
]

NUM_CLASSES = 1000
#: 200-class subsets: dataset name -> package data file with its sorted wnids.
SUBSETS = {"imagenet-a": "imagenet_a_wnids.txt", "imagenet-r": "imagenet_r_wnids.txt"}


def _package_text(name: str) -> str:
    return resources.files("loaders.imagenet").joinpath(name).read_text(encoding="utf-8")


def parse_synset_mapping(text: str, *, source: str = "<text>") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Parse ``LOC_synset_mapping.txt`` syntax: ``<wnid> <comma-separated names>`` per line.

    Each line is split on its FIRST space only (names contain spaces and commas); line ``i``
    (0-based, blank lines ignored) is class ``i``.

    Returns:
        ``(wnids, names)`` in file order.

    Raises:
        ValueError: a line without a wnid, or a duplicate wnid (naming ``source`` and the line).
    """
    wnids: list[str] = []
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        wnid, _, label = line.partition(" ")
        if not (wnid.startswith("n") and wnid[1:].isdigit()):
            raise ValueError(f"{source}: line {number} does not start with a WordNet id (n########): {line[:60]!r}")
        if wnid in seen:
            raise ValueError(f"{source}: wnid {wnid} appears on lines {seen[wnid]} and {number}")
        seen[wnid] = number
        wnids.append(wnid)
        names.append(label.strip())
    if not wnids:
        raise ValueError(f"{source}: no synsets found")
    return tuple(wnids), tuple(names)


def read_synset_mapping(path: str | os.PathLike) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Read a ``LOC_synset_mapping.txt`` file (see :func:`parse_synset_mapping`)."""
    with open_regular_file(path, "r", encoding="utf-8") as handle:
        return parse_synset_mapping(handle.read(), source=os.fspath(path))


@lru_cache(maxsize=None)
def _packaged_synsets() -> tuple[tuple[str, ...], tuple[str, ...]]:
    wnids, names = parse_synset_mapping(_package_text("imagenet_synsets.txt"), source="imagenet_synsets.txt")
    if len(wnids) != NUM_CLASSES or list(wnids) != sorted(wnids):
        raise RuntimeError("package data imagenet_synsets.txt is damaged: expected 1000 sorted wnids")
    return wnids, names


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in standard (sorted) class-index order."""
    return _packaged_synsets()[0]


def imagenet_class_names() -> tuple[str, ...]:
    """The ILSVRC2012 synonym list of each class (``"tench, Tinca tinca"``), standard order."""
    return _packaged_synsets()[1]


def _check_subset(name: str) -> str:
    if name not in SUBSETS:
        raise ValueError(f"subset must be one of {sorted(SUBSETS)}, got {name!r}")
    return name


@lru_cache(maxsize=None)
def subset_wnids(name: str) -> tuple[str, ...]:
    """The 200 sorted wnids of ``"imagenet-a"`` or ``"imagenet-r"`` (position = 200-class label)."""
    wnids = tuple(_package_text(SUBSETS[_check_subset(name)]).split())
    if len(wnids) != 200 or list(wnids) != sorted(wnids):
        raise RuntimeError(f"package data {SUBSETS[name]} is damaged: expected 200 sorted wnids")
    return wnids


def subset_indices(name: str) -> list[int]:
    """1k class indices of the 200 classes of ImageNet-A or -R, ascending.

    Entry ``j`` is the 1k index of 200-class label ``j``: evaluate a 1k model with
    ``logits[:, subset_indices("imagenet-a")]`` (``indices_in_1k`` of Hendrycks' ``eval.py``).
    """
    position = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    return [position[wnid] for wnid in subset_wnids(name)]


def subset_logits_mask(name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``[1000]`` mask, ``True`` at the 1k indices of the subset's 200 classes.

    Use it to restrict a 1k classifier to the subset, e.g.
    ``logits.masked_fill(~mask, float("-inf")).argmax(-1)`` (predictions stay 1k indices).
    """
    mask = torch.zeros(NUM_CLASSES, dtype=torch.bool, device=device)
    mask[subset_indices(name)] = True
    return mask


class DevkitMeta(NamedTuple):
    """The leaf synsets of the devkit's ``meta.mat``.

    Attributes:
        id_to_wnid: ``ILSVRC2012_ID`` (1..1000, the devkit's own order) -> wnid.
        wnids: leaf wnids sorted (the standard class order).
        names: ``words`` of each entry of ``wnids``.
    """

    id_to_wnid: dict[int, str]
    wnids: tuple[str, ...]
    names: tuple[str, ...]


def read_devkit_meta(path: str | os.PathLike) -> DevkitMeta:
    """Read ``ILSVRC2012_devkit_t12/data/meta.mat``.

    ``loadmat(path, squeeze_me=True)["synsets"]`` is a struct array with fields ``ILSVRC2012_ID,
    WNID, words, gloss, num_children, children, wordnet_height, num_train_images``; leaves have
    ``num_children == 0`` and an id in 1..1000 (ancestors have ids above 1000). Fields are read
    by name, so their order does not matter.

    Raises:
        ValueError: unreadable file, missing ``synsets`` variable or field, or duplicate ids.
    """
    import numpy as np
    from scipy.io import loadmat

    source = os.fspath(path)
    try:
        with open_regular_file(source) as handle:  # never a FIFO or device
            synsets = loadmat(handle, squeeze_me=True)["synsets"]
    except KeyError:
        raise ValueError(f"{source}: no 'synsets' variable (is this the ILSVRC2012 devkit meta.mat?)") from None
    except (NotImplementedError, ValueError, TypeError, OSError) as error:
        if isinstance(error, (FileNotFoundError, NotRegularFileError)):
            raise
        raise ValueError(f"{source}: cannot read MATLAB file: {error}") from None
    synsets = np.atleast_1d(synsets)
    fields = synsets.dtype.names or ()
    missing = [f for f in ("ILSVRC2012_ID", "WNID", "words", "num_children") if f not in fields]
    if missing:
        raise ValueError(f"{source}: synsets struct lacks field(s) {missing}; has {list(fields)}")
    id_to_wnid: dict[int, str] = {}
    words: dict[str, str] = {}
    for ilsvrc_id, wnid, word, children in zip(
        synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["words"], synsets["num_children"]
    ):
        ilsvrc_id, wnid = int(ilsvrc_id), str(wnid).strip()
        if int(children) != 0 or not 1 <= ilsvrc_id <= NUM_CLASSES:
            continue
        if ilsvrc_id in id_to_wnid:
            raise ValueError(f"{source}: ILSVRC2012_ID {ilsvrc_id} appears twice ({id_to_wnid[ilsvrc_id]}, {wnid})")
        id_to_wnid[ilsvrc_id] = wnid
        words[wnid] = str(word).strip()
    if not id_to_wnid:
        raise ValueError(f"{source}: no leaf synsets (num_children == 0, ILSVRC2012_ID in 1..1000)")
    wnids = tuple(sorted(words))
    return DevkitMeta(id_to_wnid, wnids, tuple(words[w] for w in wnids))


def read_devkit_ground_truth(path: str | os.PathLike) -> list[int]:
    """Read ``ILSVRC2012_validation_ground_truth.txt``: line ``i`` = devkit id of val image ``i+1``.

    The ids are the devkit's ``ILSVRC2012_ID`` (1..1000), NOT standard class indices: map them
    through :func:`read_devkit_meta` (``id_to_wnid``) and the sorted wnids.
    """
    source = os.fspath(path)
    ids: list[int] = []
    with open_regular_file(source, "r", encoding="ascii") as handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text:
                continue
            if not text.isdigit():
                raise ValueError(f"{source}: line {number} is not an integer id: {text[:40]!r}")
            ids.append(int(text))
    return ids


def read_val_solution(path: str | os.PathLike) -> dict[str, str]:
    """Read Kaggle's ``LOC_val_solution.csv`` into ``{ImageId: wnid}``.

    Header ``ImageId,PredictionString``; the string repeats ``<wnid> <xmin> <ymin> <xmax> <ymax>``
    per box, and the class is its first token (all boxes of a val image share it). Rows are not
    sorted; extra whitespace is tolerated.
    """
    source = os.fspath(path)
    out: dict[str, str] = {}
    with open_regular_file(source, "r", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
        if header[:2] != ["ImageId", "PredictionString"]:
            raise ValueError(f"{source}: expected header 'ImageId,PredictionString', got {','.join(header)!r}")
        for number, row in enumerate(reader, 2):
            if not row or not any(cell.strip() for cell in row):
                continue
            tokens = row[1].split() if len(row) > 1 else []
            if not tokens:
                raise ValueError(f"{source}: line {number} ({row[0]!r}) has an empty PredictionString")
            out[row[0].strip()] = tokens[0]
    return out


def read_real_labels(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> list[list[int]]:
    """Read ReaL's ``real.json``: a list (one per val image, in file-name order) of label lists.

    Element ``i`` belongs to ``ILSVRC2012_val_{i+1:08d}``; an empty list means no valid label.
    """
    source = os.fspath(path)
    with open_regular_file(source, "r", encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except ValueError as error:
            raise ValueError(f"{source}: malformed JSON: {error}") from None
    if not isinstance(data, list):
        raise ValueError(f"{source}: expected a JSON list of label lists, got {type(data).__name__}")
    for i, labels in enumerate(data):
        if not isinstance(labels, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < num_classes for v in labels
        ):
            raise ValueError(f"{source}: entry {i} must be a list of class indices in [0, {num_classes}), got {labels!r}")
    return data
