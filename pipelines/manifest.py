"""The manifest of a shard set: reading ``index.json`` and sidecars, and the names they list.

``index.json`` is as untrusted as the shards: :func:`read_index` (used by every reader of shard
sets: the loader, verify, inspect, preview and the Hugging Face export) refuses shard names that
are not plain ``.tar`` file names in the folder, symbolic links out of it, and mistyped counts.
JSON files of a shard set are read as regular files only (:func:`read_json`). This module
imports neither the writer nor the loader, so both sides share it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loaders.fileio import read_regular
from pipelines.tario import ShardError

__all__ = ["IndexedShard", "ShardIndex", "read_index", "read_json", "read_json_file", "shard_file", "sidecar_name"]


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file of a shard set (``index.json``, a sidecar); regular files only.

    Raises:
        FileNotFoundError: no such file.
        ShardError: not a regular file, unreadable, or not valid UTF-8 JSON (naming the file).
    """
    try:
        text = read_regular(path)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ShardError(f"{os.fspath(path)!r}: cannot read: {error}") from None
    try:
        return json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ShardError(f"{os.fspath(path)!r}: not valid JSON: {error}") from None


def shard_file(folder: Path, name: Any, *, where: str) -> Path:
    """The path of a shard listed in ``index.json``, confined to the shard folder.

    The one check every reader of a shard set relies on: ``index.json`` is as untrusted as the
    shards, and a name like ``../../secret.tar`` or ``/etc/x.tar`` would otherwise be read.

    Args:
        folder: the shard folder.
        name: the listed name.
        where: the entry, for messages (``"'/data/index.json': shards[3]"``).

    Raises:
        ShardError: ``name`` is not a plain printable file name ending in ``.tar`` (no ``/``,
            ``\\``, ``:``, NUL, ``..``), or names a symbolic link that leads out of the folder.
    """
    if (not isinstance(name, str) or len(name) <= len(".tar") or not name.endswith(".tar") or not name.isprintable()
            or any(bad in name for bad in ("/", "\\", ":", "\x00", "..")) or name.strip() != name):
        raise ShardError(f"{where}: shard name {name!r} is not a plain .tar file name in the shard folder")
    path = folder / name
    if path.is_symlink():  # links are allowed inside the folder only (resolved once, here)
        real_folder = Path(os.path.realpath(folder))
        if not Path(os.path.realpath(path)).is_relative_to(real_folder):
            raise ShardError(f"{where}: shard {name!r} is a symbolic link leading out of the shard folder")
    return path


def sidecar_name(shard: str) -> str:
    """``NNNNNN.stats.json`` for ``NNNNNN.tar`` (a name :func:`shard_file` accepted)."""
    return shard[: -len(".tar")] + ".stats.json"


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ShardError(f"{where} must be an int >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class IndexedShard:
    """One ``index.json`` entry after its checks: ``path`` is inside the shard folder."""

    name: str
    path: Path
    count: int
    entry: Mapping[str, Any]


@dataclass(frozen=True)
class ShardIndex:
    """A shard set's ``index.json``: the folder, the raw document and the checked entries."""

    folder: Path
    index: Mapping[str, Any]
    shards: list[IndexedShard]


def read_index(path: str | os.PathLike) -> ShardIndex:
    """Read and check the ``index.json`` of a shard folder (``path`` is the folder or the file).

    Every shard name goes through :func:`shard_file`; ``shards`` must be a list of objects with
    a unique name and a ``count``; ``count``, ``skipped`` and ``bytes`` are ints >= 0 wherever
    present, ``sha256`` a string and ``schema.suffixes`` a list of strings. Used by every reader of shard sets (loader, verify,
    inspect, preview, Hugging Face export), so they refuse the same manifests.

    Raises:
        FileNotFoundError: no ``index.json``.
        ShardError: a malformed or hostile ``index.json``, naming the file and the entry.
    """
    folder = Path(path)
    if folder.name == "index.json":
        folder = folder.parent
    index_file = folder / "index.json"
    if not index_file.exists():
        raise FileNotFoundError(f"no index.json in {str(folder)!r}: not a finished shard set "
                                "(build it with build_shards, or rerun the build to resume it)")
    index = read_json(index_file)
    where = repr(str(index_file))
    if not isinstance(index, dict):
        raise ShardError(f"{where}: must be a JSON object, got {type(index).__name__}")
    for field in ("count", "skipped"):
        if field in index:
            _count(index[field], f"{where}: {field!r}")
    schema = index.get("schema", {})
    if not isinstance(schema, dict) or not isinstance(schema.get("suffixes", []), list) or not all(
            isinstance(x, str) for x in schema.get("suffixes", [])):
        raise ShardError(f"{where}: 'schema' must be an object whose 'suffixes' is a list of strings")
    entries = index.get("shards")
    if not isinstance(entries, list):
        raise ShardError(f"{where}: 'shards' must be a list, got {type(entries).__name__}")
    shards: list[IndexedShard] = []
    names: set[str] = set()
    for position, entry in enumerate(entries):
        at = f"{where}: shards[{position}]"
        if not isinstance(entry, dict):
            raise ShardError(f"{at} must be an object, got {type(entry).__name__}")
        shard = shard_file(folder, entry.get("shard"), where=at)
        if shard.name in names:
            raise ShardError(f"{at}: shard {shard.name!r} is listed twice")
        names.add(shard.name)
        count = _count(entry.get("count"), f"{at} ({shard.name}): 'count'")
        if "bytes" in entry:
            _count(entry["bytes"], f"{at} ({shard.name}): 'bytes'")
        if "sha256" in entry and not isinstance(entry["sha256"], str):
            raise ShardError(f"{at} ({shard.name}): 'sha256' must be a string, got {entry['sha256']!r}")
        shards.append(IndexedShard(shard.name, shard, count, entry))
    return ShardIndex(folder, index, shards)


#: the name the readers used first
read_json_file = read_json
