"""What an audit reads: a shard set or a dataset adapter, one sample at a time, as encoded bytes.

:class:`AuditSource` wraps either a shard folder (``index.json`` + tars, read with the toolkit's
safe tar reader and codec-table suffix check, exactly as ``verify`` reads them) or a dataset
adapter (an :class:`loaders.Adapter` instance or a :class:`pipelines.SourceSpec` naming a
registered one). Samples come out in order as encoded ``{suffix: bytes}`` with a *locator*
(``(shard number, offset in the shard)``, or ``(-1, index)`` for an adapter) that
:meth:`AuditSource.fetch` accepts later, so the report can show a sample again without keeping
every image in memory.

Failures follow the error policy. A sample that cannot be loaded comes out as an
:class:`Item` with ``error`` set (``on_error="skip"``) or raises (``"raise"``). A shard that
breaks mid-way (a truncated archive, a bad member name) loses the rest of its samples: they are
counted as ``unreadable`` for that shard, so ``expected = read + corrupt + unreadable`` always.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loaders import Adapter, SampleError, check_on_error, dataset_factory
from loaders.schema import KEY
from pipelines import ShardError, SourceSpec
from pipelines.loader import check_suffixes
from pipelines.manifest import read_index, read_json, sidecar_name
from pipelines.tario import iter_shard_samples

__all__ = ["AuditSource", "Item", "ShardTally"]


@dataclass
class Item:
    """One sample as read: its locator, key, shard name, encoded members or the error."""

    locator: tuple[int, int]
    key: str
    shard: str | None
    encoded: dict[str, Any] | None
    error: str | None = None


@dataclass
class ShardTally:
    """Per-shard counts: listed in ``index.json``, read, corrupt and unreadable samples."""

    shard: str
    listed: int
    bytes: int | None
    build_skipped: int | None
    read: int = 0
    corrupt: int = 0
    unreadable: int = 0
    error: str | None = None

    def record(self) -> dict[str, Any]:
        return {"shard": self.shard, "listed": self.listed, "bytes": self.bytes, "build_skipped": self.build_skipped,
                "read": self.read, "corrupt": self.corrupt, "unreadable": self.unreadable, "error": self.error}


def _class_names(value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and value and all(isinstance(name, str) for name in value):
        return list(value)
    return None


@dataclass
class AuditSource:
    """One split to audit.

    Args:
        data: a shard folder (or its ``index.json``), an :class:`loaders.Adapter`, or a
            :class:`pipelines.SourceSpec` (opened with ``decode=False``).
        name: the split's label in the report (``"train"``, ``"test"``...).
        on_error: ``"raise"`` or ``"skip"`` (see the module docstring).
    """

    data: Any
    name: str
    on_error: str = "skip"
    kind: str = field(init=False)
    tallies: list[ShardTally] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        check_on_error(self.on_error)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a source name must be a non-empty str, got {self.name!r}")
        self._adapter: Adapter | None = None
        self._shards = None
        data = self.data
        if isinstance(data, SourceSpec):
            self._adapter = data.open()
            self.kind = "dataset"
        elif isinstance(data, Adapter):
            self._adapter = data
            self.kind = "dataset"
        elif isinstance(data, (str, os.PathLike)):
            self._shards = read_index(data)  # hostile names and counts refused here
            self.kind = "shards"
            self.tallies = [ShardTally(s.name, s.count, s.entry.get("bytes"), self._build_skipped(s.name))
                            for s in self._shards.shards]
        else:
            raise TypeError(
                f"source {self.name!r} must be a shard folder path, a loaders.Adapter or a pipelines.SourceSpec, "
                f"got {type(data).__name__}"
            )

    def _build_skipped(self, shard: str) -> int | None:
        """How many samples the build skipped into this shard's range (its sidecar), if recorded."""
        try:
            record = read_json(self._shards.folder / sidecar_name(shard))
        except (OSError, ShardError):
            return None
        skipped = record.get("skipped") if isinstance(record, dict) else None
        return len(skipped) if isinstance(skipped, list) else None

    # -- description ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of samples the source lists (``index.json`` counts, or the adapter's length)."""
        if self._adapter is not None:
            return len(self._adapter)
        return sum(tally.listed for tally in self.tallies)

    @property
    def class_names(self) -> list[str] | None:
        """The label space's names: the adapter's ``classes``, or for a shard set built from a
        registered adapter that declares them on its class, those."""
        if self._adapter is not None:
            return _class_names(getattr(self._adapter, "classes", None))
        source = self._shards.index.get("source")
        name = source.get("name") if isinstance(source, dict) else None
        if not isinstance(name, str):
            return None
        try:
            factory = dataset_factory(name)
        except KeyError:
            return None
        return _class_names(getattr(factory, "classes", None))

    def describe(self) -> dict[str, Any]:
        """A JSON description of the source for the report."""
        if self._adapter is not None:
            adapter = self._adapter
            root = getattr(adapter, "root", None)
            info = {"kind": "dataset", "dataset": adapter.name or type(adapter).__name__, "adapter": type(adapter).__name__,
                    "root": None if root is None else os.fspath(root), "split": getattr(adapter, "split", None)}
            missing = adapter.stats().get("missing") if hasattr(adapter, "stats") else None
            if missing:
                info["missing_files"] = missing
            return info
        index = self._shards.index
        return {"kind": "shards", "path": str(self._shards.folder), "shards": len(self.tallies),
                "source": index.get("source"), "build_skipped": index.get("skipped")}

    # -- reading -------------------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        if self.on_error == "raise":
            raise error

    def items(self) -> Iterator[Item]:
        """Every listed sample in order (loaded, or with its error under ``on_error="skip"``)."""
        if self._adapter is not None:
            yield from self._adapter_items()
        else:
            yield from self._shard_items()

    def _adapter_items(self) -> Iterator[Item]:
        adapter = self._adapter
        for index in range(len(adapter)):
            key = adapter.key(index)
            try:
                encoded = adapter.load(index, decode=False)
            except SampleError as error:
                self._fail(error)
                yield Item((-1, index), key, None, None, str(error))
                continue
            yield Item((-1, index), key, None, encoded)

    def _shard_items(self) -> Iterator[Item]:
        for number, listed in enumerate(self._shards.shards):
            tally = self.tallies[number]
            offset = 0
            try:
                for sample in iter_shard_samples(listed.path, count=listed.count):
                    locator = (number, offset)
                    offset += 1
                    try:
                        check_suffixes(sample, listed.name)
                    except ShardError as error:  # one sample's member refused: that sample is corrupt
                        self._fail(error)
                        yield Item(locator, sample[KEY], listed.name, None, str(error))
                        continue
                    yield Item(locator, sample[KEY], listed.name, sample)
            except ShardError as error:  # the shard itself broke: the rest of it cannot be read
                self._fail(error)
                tally.error = str(error)
                tally.unreadable = max(0, listed.count - offset)

    def decode_error(self, item: Item, error: Exception) -> Exception:
        """The error to report when ``item`` does not decode, naming where it came from: the
        adapter's own :class:`loaders.SampleError` (which names the file; the sample is loaded
        once more through the adapter to get it), or the shard and member for a shard set."""
        if self._adapter is not None:
            try:
                self._adapter.load(item.locator[1], decode=True)
            except SampleError as named:
                return named
            return SampleError(str(error), key=item.key)
        return ShardError(f"shard {str(self._shards.shards[item.locator[0]].path)!r}: {error}")

    def fetch(self, locator: Sequence[int]) -> dict[str, Any]:
        """The encoded sample at ``locator`` (from :meth:`items`), read again."""
        shard, offset = int(locator[0]), int(locator[1])
        if self._adapter is not None:
            return self._adapter.load(offset, decode=False)
        listed = self._shards.shards[shard]
        for sample in iter_shard_samples(listed.path, skip=offset, limit=1, count=listed.count):
            check_suffixes(sample, listed.name)
            return sample
        raise ShardError(f"shard {str(listed.path)!r}: no sample at offset {offset}")

    @property
    def path(self) -> Path | None:
        return None if self._shards is None else self._shards.folder
