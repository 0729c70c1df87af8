"""Shared machinery of the ImageNet-family adapters: fast class-folder indexing and sample loading.

Every adapter of the family labels samples with the standard 1k class index (see
:mod:`loaders.imagenet.metadata`), stores index rows as ``{"__key__", "dir", "name", "label",
...}`` with ``dir`` relative to the adapter's root (no per-file ``Path`` objects, no ``stat``), and
loads a sample as the original file bytes under the suffix its *content* says (``jpg`` or
``png``: ImageNet has a PNG named ``.JPEG``), a ``cls`` and a ``json`` meta. Decoded images are
RGB by default (CMYK and greyscale JPEGs are converted), as every ImageNet model expects.

The folder finders, the test-split check and the content sniffing the family uses
(:func:`~loaders.layout.find_dir`, :func:`~loaders.layout.list_subdirs`,
:func:`~loaders.layout.check_test_split`, :func:`~loaders.layout.image_suffix`) live in
:mod:`loaders.layout`, shared with the other file-backed adapters; this module re-exports them.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from loaders.base import Adapter, SampleError
from loaders.codecs import decode_sample, encode
from loaders.fileio import open_regular_file
from loaders.layout import TEST_SPLITS, check_test_split, find_dir, image_suffix, list_subdirs
from loaders.media import IMAGE_MODES
from loaders.schema import KEY, MAX_KEY_LENGTH, keys_valid_and_unique, safe_key, validate_key

from loaders.imagenet.metadata import imagenet_class_names, imagenet_wnids

# TEST_SPLITS, check_test_split, find_dir, image_suffix and list_subdirs are loaders.layout's, re-exported
__all__ = [
    "FolderRows",
    "IMAGE_EXTENSIONS",
    "TEST_SPLITS",
    "check_test_split",
    "ImageNetFamily",
    "find_dir",
    "image_suffix",
    "index_class_folders",
    "is_wnid",
    "list_subdirs",
    "wnid_folders",
]

#: lower-case file extensions indexed (``.JPEG`` train/val, ``.jpg`` A/R, ``.jpeg`` V2, ``.png``).
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
_SAFE_STEMS = re.compile(r"[A-Za-z0-9_\-\n]*")


def is_wnid(name: str) -> bool:
    """Whether ``name`` looks like a WordNet noun id (``n`` + 8 digits)."""
    return len(name) == 9 and name[0] == "n" and name[1:].isdigit()


def wnid_folders(path: str | os.PathLike, known: Mapping[str, int], *, what: str) -> list[tuple[str, int]]:
    """``(folder, 1k label)`` for each class folder of ``path``, sorted by name.

    Files at this level (``README.txt`` of ImageNet-A/R) are ignored; a folder that is not one
    of the ``known`` wnids raises, because its images could not be labelled.
    """
    folders = list_subdirs(path)
    unknown = [f for f in folders if f not in known]
    if unknown:
        raise ValueError(
            f"{what}: folder(s) {unknown[:5]}{' ...' if len(unknown) > 5 else ''} under {os.fspath(path)!r} "
            f"are not wnids of this dataset's classes"
        )
    if not folders:
        raise FileNotFoundError(f"{what}: no class folders (<wnid>/) under {os.fspath(path)!r}")
    return [(f, known[f]) for f in folders]


def _folder_images(path: str, head: str) -> tuple[list[str], list[str]]:
    """Keys ``head + stem`` (valid, unique) and names of the images in ``path``, sorted by name.

    One ``os.scandir`` pass, no ``stat``. Fast path for the usual folder where every entry has
    the same image extension and a key-safe stem: C-level string operations on the joined names
    replace per-file Python work (filter, stem, key). Otherwise: filter by extension, make stems
    safe and unique (:func:`_unique_safe_stems`).
    """
    with os.scandir(path) as entries:
        names = [entry.name for entry in entries]
    names.sort()
    if names and names[0][0] != ".":
        blob = "\n".join(names)
        if blob.count("\n") == len(names) - 1 and "\n." not in blob:
            blob += "\n"
            for ext in (".JPEG", ".jpg", ".jpeg", ".png", ".JPG", ".PNG"):
                if blob.count(ext + "\n") == len(names):
                    stems = blob.replace(ext + "\n", "\n")[:-1]
                    # one extension and unique names -> unique stems; safe characters -> valid keys
                    if _SAFE_STEMS.fullmatch(stems) and len(head) + max(map(len, names)) <= MAX_KEY_LENGTH:
                        return (head + stems.replace("\n", "\n" + head)).split("\n"), names
                    break
    names = [n for n in names if n[0] != "." and n.lower().endswith(IMAGE_EXTENSIONS)]
    keys = [head + stem for stem in _unique_safe_stems([n[: n.rfind(".")] for n in names])]
    for key, name in zip(keys, names):
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"{os.path.join(path, name)!r}: file name too long for a sample key ({len(key)} > {MAX_KEY_LENGTH})")
    return keys, names


class FolderRows(Sequence):
    """Index rows of class-folder listings, stored per folder; a row dict is made only on access.

    ImageNet train has 1.28M files and ImageNet-C up to 4.75M: one dict per file would cost
    hundreds of MB per process (multiplied by DataLoader workers, whose reference counting touches
    every page of a list of dicts). Here a folder costs one entry holding its listing's own key and
    name lists, so a file costs two strings. Rows read back are fresh dicts: mutate a ``list(...)``
    copy if you need to edit rows.
    """

    def __init__(self) -> None:
        self._folders: list[tuple[str, int, list[str], list[str], dict[str, Any]]] = []
        self._starts: list[int] = [0]

    def add(self, rel: str, label: int, keys: list[str], names: list[str], extra: Mapping[str, Any] | None = None) -> None:
        """Append a folder's rows (``keys[i]`` is the key of file ``rel/names[i]``)."""
        if len(keys) != len(names):
            raise ValueError("keys and names must have the same length")
        if keys:
            self._folders.append((rel, label, keys, names, dict(extra or {})))
            self._starts.append(self._starts[-1] + len(keys))

    def __len__(self) -> int:
        return self._starts[-1]

    def keys(self) -> list[str]:
        """Every row's key, in order, without building the rows."""
        return [key for folder in self._folders for key in folder[2]]

    @staticmethod
    def _row(folder: tuple[str, int, list[str], list[str], dict[str, Any]], offset: int) -> dict[str, Any]:
        rel, label, keys, names, extra = folder
        return {KEY: keys[offset], "dir": rel, "name": names[offset], "label": label, **extra}

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]  # type: ignore[return-value]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range for {len(self)} rows")
        position = bisect.bisect_right(self._starts, index) - 1
        return self._row(self._folders[position], index - self._starts[position])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for folder in self._folders:
            for offset in range(len(folder[2])):
                yield self._row(folder, offset)


def index_class_folders(
    root: str,
    folders: Sequence[tuple[str, int]],
    *,
    prefix: str = "",
    key_prefix: str = "",
    key_by_folder: bool = True,
    extra: Mapping[str, Any] | None = None,
    into: FolderRows | None = None,
) -> FolderRows:
    """Index rows for ``root/prefix<folder>/<image>`` over class folders, one scandir per folder.

    Args:
        root: the adapter root (row paths are relative to it).
        folders: ``(folder name, label)`` pairs, in the order rows should come.
        prefix: relative path (ending in ``/``) from ``root`` to the class folders.
        key_prefix: prepended to every key (e.g. ``"gaussian_noise/3/"``).
        key_by_folder: keys are ``<key_prefix><folder>/<stem>`` (else ``<key_prefix><stem>``).
        extra: constant fields added to every row.
        into: append to this table instead of a new one.

    Returns:
        A :class:`FolderRows` of rows ``{"__key__", "dir", "name", "label", **extra}``: the file
        is ``root/dir/name``. Every key is valid; keys are unique within a folder, and so unique
        overall when ``key_by_folder``.

    Images are files whose lower-case extension is in :data:`IMAGE_EXTENSIONS` (hidden entries
    excluded), sorted by name. Sub-folders are not expected; they are not ``stat``-ed away, so one
    named like an image fails when loaded. Stems that are not valid keys (spaces, dots: ImageNet-A
    names like ``0.000116_digital clock _ digital clock_0.865662.jpg``) go through
    :func:`loaders.schema.safe_key` and get a ``-<n>`` suffix if two would collide.
    """
    rows = FolderRows() if into is None else into
    for folder, label in folders:
        rel = f"{prefix}{folder}"
        head = f"{key_prefix}{folder}/" if key_by_folder else key_prefix
        if head:
            validate_key(head[:-1] if head.endswith("/") else head)
        keys, names = _folder_images(os.path.join(root, rel), head)
        rows.add(rel, label, keys, names, extra)
    return rows


def _unique_safe_stems(stems: Sequence[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for stem in stems:
        safe = safe_key(stem).replace("/", "_") or "_"
        candidate, n = safe, 1
        while candidate in seen:
            n += 1
            candidate = f"{safe}-{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


class ImageNetFamily(Adapter):
    """Base of the ImageNet-family adapters (1k label space, file-backed images).

    Args:
        root: the dataset root as distributed (see each adapter and ``docs/imagenet.md``).
        image_mode: ``"RGB"`` (default), ``"L"`` or ``"unchanged"`` for decoded images.
        decode, on_error, transform: see :class:`loaders.base.Adapter`.

    Attributes:
        root: the folder the index rows' paths (``dir/name``) are relative to.
        wnids: the 1000 wnids in class-index order; ``synonyms``: their ILSVRC synonym lists;
            ``classes``: their first synonyms (display names).
    """

    #: index-row fields copied into ``meta`` (besides ``wnid`` and ``file``).
    meta_fields: tuple[str, ...] = ()

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        image_mode: str = "RGB",
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(decode=decode, on_error=on_error, transform=transform)
        if root is None:
            raise ValueError(f"{self.name} needs root= (the folder the dataset was extracted to)")
        if image_mode not in IMAGE_MODES:
            raise ValueError(f"image_mode must be one of {IMAGE_MODES}, got {image_mode!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name}: root {str(self.root)!r} is not a directory")
        self.image_mode = image_mode
        self._keys_checked = False
        self.set_classes(imagenet_wnids(), imagenet_class_names())

    def set_classes(self, wnids: Sequence[str], synonyms: Sequence[str]) -> None:
        """Set the label space: ``wnids``, ``synonyms`` (``"tench, Tinca tinca"``) and ``classes``
        (the first synonym, ``"tench"``: short display names; two classes are ``"crane"``)."""
        self.wnids: tuple[str, ...] = tuple(wnids)
        self.synonyms: tuple[str, ...] = tuple(synonyms)
        self.classes: tuple[str, ...] = tuple(s.split(",", 1)[0].strip() or w for s, w in zip(synonyms, wnids))

    def _check_index(self, records: Sequence[dict[str, Any]]) -> None:
        """Skip the key check when ``_build_index`` set ``self._keys_checked`` (rows from one
        :func:`index_class_folders` call with ``key_by_folder=True`` have valid, unique keys by
        construction; even the bulk check is a noticeable share of indexing 1.28M files), and
        check a :class:`FolderRows` table's keys without building its rows."""
        if self._keys_checked:
            return
        if isinstance(records, FolderRows) and keys_valid_and_unique(records.keys()):
            return
        super()._check_index(records)

    @staticmethod
    def relative_file(record: Mapping[str, Any]) -> str:
        """An index row's file path relative to :attr:`root` (``dir/name``)."""
        return f"{record['dir']}/{record['name']}" if record["dir"] else record["name"]

    def _describe_record(self, record: Mapping[str, Any]) -> str | None:
        return os.path.join(self.root, self.relative_file(record))

    def _meta(self, record: Mapping[str, Any]) -> dict[str, Any]:
        meta = {"wnid": self.wnids[record["label"]], "file": self.relative_file(record)}
        for field in self.meta_fields:
            meta[field] = record[field]
        return meta

    def _extra_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        """Additional shard members for a record (e.g. ReaL's ``labels.npy``)."""
        return {}

    def file_members(self, record: Mapping[str, Any]) -> list[tuple[Any, str | bytes]]:
        """The image file (its suffix sniffed from its first bytes), the label and the meta JSON,
        so copy-mode shard builds copy ImageNet files straight into the tar."""
        return [
            (image_suffix, self._describe_record(record)),
            ("cls", str(record["label"]).encode("ascii")),
            ("json", encode("json", self._meta(record))),
            *self._extra_encoded(record).items(),
        ]

    def _load_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        path = self._describe_record(record)
        with open_regular_file(path) as handle:  # never a FIFO or device
            data = handle.read()
        suffix = image_suffix(data)
        if suffix is None:
            what = "an empty file" if not data else f"neither JPEG nor PNG (starts with {data[:8]!r})"
            raise SampleError(f"not an image: {what}", path=path)
        return {
            suffix: data,
            "cls": str(record["label"]).encode("ascii"),
            "json": encode("json", self._meta(record)),
            **self._extra_encoded(record),
        }

    def _load_decoded(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return decode_sample(self._load_encoded(record), image_mode=self.image_mode)
