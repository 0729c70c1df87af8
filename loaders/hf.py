"""The ``hf`` adapter: a local Hugging Face ``datasets.Dataset`` as a dataset source.

``open_dataset("hf", root)`` where ``root`` is a ``datasets.Dataset`` (or ``DatasetDict`` with
``split=``) already in memory, or a folder written by ``Dataset.save_to_disk`` (read with
``datasets.load_from_disk``; Arrow files, no pickle, no download). Columns become shard members:

=====================================  ================================================
column (feature)                       member suffix
=====================================  ================================================
a shard suffix (``png``, ``cls``, ...)   that suffix (as :func:`pipelines.hf.to_hf_dataset` writes)
``image``/``img`` (``Image``)          ``jpg`` / ``png`` / ``webp`` (sniffed; bytes kept)
``mask`` (``Image``)                   ``mask.png``
other ``Image`` columns                ``<column>.png`` (or ``.jpg``/``.webp``)
``label`` (``ClassLabel``/int)         ``cls``; other int columns ``<column>.cls``
``text``/``caption`` (string)          ``txt``; other strings ``<column>.txt``
anything else (dicts, lists, floats)   ``json`` for ``meta``, else ``<column>.json``
=====================================  ================================================

Image bytes stored in the Arrow table are copied as they are (``Image(decode=False)``).
Reference: https://huggingface.co/docs/datasets/about_dataset_features
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from loaders.base import Adapter, SampleError
from loaders.codecs import CODECS
from loaders.fileio import read_regular
from loaders.media import sniff_image
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key

__all__ = ["HFDataset", "column_suffixes"]

_NAMED = {"image": "image", "img": "image", "mask": "mask.png", "label": "cls", "text": "txt", "caption": "txt",
          "meta": "json"}
_COLUMN_RE = re.compile(r"[^A-Za-z0-9_]")


def _sniff_image(data: bytes) -> str:
    """The shard suffix of image bytes (``jpg``/``png``/``webp``) from :func:`loaders.media.sniff_image`."""
    fmt = sniff_image(data)
    if fmt is None:
        raise SampleError(f"image bytes are not JPEG, PNG or WebP (start {data[:8]!r})")
    return "jpg" if fmt == "jpeg" else fmt


def column_suffixes(features: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``column -> (kind, suffix)``; ``kind`` is ``image``, ``cls``, ``txt`` or ``json``.

    An image column's suffix is a stem: ``"image"`` means "the sniffed format".
    """
    import datasets

    out: dict[str, tuple[str, str]] = {}
    for column, feature in features.items():
        if column in (KEY, "__url__"):
            continue
        name = _COLUMN_RE.sub("_", column)
        named = _NAMED.get(column)
        if column in CODECS:  # a column named by a shard suffix (e.g. read from our own shards)
            field = CODECS[column].field
            kind = {"image": "image", "mask": "image", "label": "cls"}.get(field, "txt" if column == "txt" else "json")
            out[column] = (kind, column)
            continue
        if isinstance(feature, datasets.Image):
            out[column] = ("image", "mask.png" if named == "mask.png" else "image" if named == "image" else f"{name}.image")
        elif isinstance(feature, datasets.ClassLabel) or (
            isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))
        ):
            out[column] = ("cls", "cls" if named == "cls" else f"{name}.cls")
        elif isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
            out[column] = ("txt", "txt" if named == "txt" else f"{name}.txt")
        else:
            out[column] = ("json", "json" if named == "json" else f"{name}.json")
    return out


@register_dataset("hf")
class HFDataset(Adapter):
    """A local Hugging Face dataset.

    Args:
        root: a ``datasets.Dataset``/``DatasetDict`` or a ``save_to_disk`` folder.
        split: the split of a ``DatasetDict`` (required when there are several).
        key_column: a column holding unique sample ids (default ``__key__`` if present, else the
            row number, zero-padded).
        columns: restrict to these columns.
        decode, on_error, transform: see :class:`loaders.base.Adapter`.
    """

    name = "hf"

    def __init__(
        self,
        root: Any,
        split: str | None = None,
        *,
        key_column: str | None = None,
        columns: list[str] | None = None,
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(decode=decode, on_error=on_error, transform=transform)
        import datasets

        if isinstance(root, (str, os.PathLike)):
            if not Path(root).is_dir():
                raise FileNotFoundError(f"hf dataset: {os.fspath(root)!r} is not a save_to_disk folder")
            root = datasets.load_from_disk(os.fspath(root))
        if isinstance(root, datasets.DatasetDict):
            if split is None and len(root) == 1:
                split = next(iter(root))
            if split not in root:
                raise ValueError(f"hf dataset: split must be one of {sorted(root)}, got {split!r}")
            root = root[split]
        if not isinstance(root, datasets.Dataset):
            raise TypeError(f"hf dataset: root must be a datasets.Dataset, DatasetDict or folder, got {type(root).__name__}")
        if columns is not None:
            missing = sorted(set(columns) - set(root.column_names))
            if missing:
                raise ValueError(f"hf dataset: columns {missing} do not exist; available: {root.column_names}")
            root = root.select_columns(list(columns) + ([key_column] if key_column and key_column not in columns else []))
        if key_column is None and KEY in root.column_names:
            key_column = KEY
        if key_column is not None and key_column not in root.column_names:
            raise ValueError(f"hf dataset: key_column {key_column!r} is not a column; available: {root.column_names}")
        self.columns = column_suffixes({c: f for c, f in root.features.items() if c != key_column})
        for column, (kind, _) in self.columns.items():
            if kind == "image":
                root = root.cast_column(column, datasets.Image(decode=False))
        self.dataset, self.key_column, self.split = root, key_column, split
        classes = [f for c, f in root.features.items() if isinstance(f, datasets.ClassLabel) and self.columns.get(c, ("",))[1] == "cls"]
        self.classes = tuple(classes[0].names) if classes else None

    def _build_index(self) -> list[dict[str, Any]]:
        if self.key_column is None:
            width = max(8, len(str(len(self.dataset))))
            return [{KEY: f"{i:0{width}d}", "row": i} for i in range(len(self.dataset))]
        return [{KEY: safe_key(str(value)), "row": i} for i, value in enumerate(self.dataset[self.key_column])]

    def _describe_record(self, record: Mapping[str, Any]) -> str | None:
        return f"row {record['row']}"

    def _load_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        row = self.dataset[record["row"]]
        out: dict[str, bytes] = {}
        for column, (kind, suffix) in self.columns.items():
            value = row[column]
            if value is None:
                continue
            if kind == "image":
                data = value.get("bytes")
                if data is None and value.get("path"):
                    data = read_regular(value["path"])
                if not data:
                    raise SampleError(f"column {column!r} has no image bytes")
                fmt = _sniff_image(data)
                if suffix == "image" or suffix.endswith(".image"):
                    suffix = fmt if suffix == "image" else suffix.replace(".image", f".{fmt}")
                out[suffix] = data
            elif kind == "cls":
                out[suffix] = str(int(value)).encode("ascii")
            elif kind == "txt":
                out[suffix] = value.encode("utf-8")
            elif isinstance(value, str) and suffix in CODECS:  # JSON text column from our shards
                out[suffix] = value.encode("utf-8")
            else:
                out[suffix] = json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8")
        return out
