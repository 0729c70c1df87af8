"""The base dataset adapter and the error policy every adapter shares.

An adapter indexes a dataset's metadata once, without touching media, into a list of *records*
(JSON-friendly dicts with at least ``__key__``). Loading record ``i`` then gives either the
original encoded bytes (``decode=False``: ``{"__key__", "__source__", "jpg": b"...", ...}``,
exactly what a shard stores) or a decoded sample (``decode=True``: ``image``, ``label``, ...).

Subclasses implement :meth:`Adapter._build_index` and at least one of
:meth:`Adapter._load_encoded` (file-backed datasets: read bytes, decoding goes through the codec
table) or :meth:`Adapter._load_decoded` (clip or rendered datasets: produce tensors, encoding goes
through the codec table).

Error policy (``on_error``): ``"raise"`` raises :class:`SampleError` naming the key, the file
and the problem; ``"skip"`` records ``(key, reason)`` in :attr:`Adapter.skipped`, returns
``None`` from ``__getitem__`` (drop it with :func:`skip_none_collate`) and is left out by
:meth:`Adapter.samples`. :meth:`Adapter.stats` always adds up: ``attempted = loaded + skipped``.
Counts are per process: with DataLoader workers each worker keeps its own.

Files the metadata names but the dataset folder lacks (a partial download) are found when the
index is built, from folder listings: adapters that check leave them out, count them in
``stats()["missing"]`` and warn once (:class:`MissingFilesWarning`, naming the count and the
first one), or raise with ``strict=True`` (see :meth:`Adapter._note_missing`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset, default_collate

from loaders.codecs import CodecError, decode_sample, encode_sample
from loaders.schema import KEY, SOURCE, keys_valid_and_unique, validate_key

__all__ = ["Adapter", "MissingFilesWarning", "ON_ERROR", "SampleError", "check_on_error", "skip_none_collate", "summarize_sample"]

ON_ERROR = ("raise", "skip")


class SampleError(Exception):
    """A sample could not be read or decoded.

    Attributes:
        key: the sample's ``__key__`` (or ``None`` when unknown).
        path: the file involved (or ``None``).
        reason: what went wrong.
    """

    def __init__(self, reason: str, *, key: str | None = None, path: str | os.PathLike | None = None) -> None:
        where = ", ".join(p for p in (f"key {key!r}" if key else "", f"file {os.fspath(path)!r}" if path else "") if p)
        super().__init__(f"{where}: {reason}" if where else reason)
        self.key = key
        self.path = None if path is None else os.fspath(path)
        self.reason = reason


class MissingFilesWarning(UserWarning):
    """Index-time notice: metadata entries name files that are absent (see ``stats()["missing"]``)."""


def check_on_error(on_error: str) -> str:
    """Validate an ``on_error`` argument."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    return on_error


def skip_none_collate(batch: Sequence[Any]) -> Any:
    """``default_collate`` that drops the ``None`` entries skipped samples leave in a batch."""
    return default_collate([item for item in batch if item is not None])


class Adapter(Dataset):
    """Map-style dataset over one dataset's native layout.

    Args:
        decode: ``True`` -> decoded samples; ``False`` -> encoded bytes keyed by shard suffix.
        on_error: ``"raise"`` or ``"skip"`` (see the module docstring).
        transform: optional callable applied to each decoded sample dict.

    Class attributes:
        name: the registered dataset name, written to ``__source__``.
        classes: names of the label space (index -> name), when the dataset has one.
    """

    name: ClassVar[str] = ""
    classes: Sequence[str] | None = None

    def __init__(
        self,
        *,
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if not isinstance(decode, bool):
            raise TypeError(f"decode must be a bool, got {type(decode).__name__}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.decode = decode
        self.on_error = check_on_error(on_error)
        self.transform = transform
        self.skipped: list[tuple[str, str]] = []
        self._attempted = 0
        self._missing = 0
        self._records: Sequence[dict[str, Any]] | None = None

    # -- subclass API ------------------------------------------------------------------------

    def _build_index(self) -> Sequence[dict[str, Any]]:
        """Return the index rows (each with a unique, valid ``__key__``); no media reads.

        Any sequence of dicts works: a list, or a compact table that makes each row on access
        (what very large datasets should use, see ``loaders.imagenet.common.FolderRows``).
        """
        raise NotImplementedError

    def _load_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        """Return ``{suffix: bytes}`` for one record (original file bytes where possible)."""
        return {k: v for k, v in encode_sample(self._load_decoded(record), self.suffixes).items() if k not in (KEY, SOURCE)}

    def _load_decoded(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Return the decoded fields for one record."""
        if type(self)._load_encoded is Adapter._load_encoded:
            raise NotImplementedError(f"{type(self).__name__} must implement _load_encoded or _load_decoded")
        return decode_sample(self._load_encoded(record))

    def file_members(self, record: Mapping[str, Any]) -> list[tuple[Any, str | bytes]] | None:
        """Where a record's ``decode=False`` members come from, without reading anything.

        ``[(suffix, file path or payload bytes), ...]`` when every encoded member is either a
        file copied unchanged or small bytes known from the index, so a shard builder may copy
        the files straight into a tar; ``None`` (the default) when the adapter has to read or
        transform data. A file whose suffix depends on its content (ImageNet's PNGs named
        ``.JPEG``) may give, instead of the suffix, a function of the file's first 16 bytes
        returning the suffix (``None``: not copyable; the adapter's own loading then reports
        it). An adapter that implements it must implement ``_load_encoded`` in the same class,
        consistently (shard tests compare both paths).
        """
        return None

    #: field -> suffix used when an adapter's decoded samples are encoded (``_load_encoded`` default).
    suffixes: ClassVar[Mapping[str, str]] = {}

    def _describe_record(self, record: Mapping[str, Any]) -> str | None:
        """The file to name in error messages for a record (``record["path"]`` by default)."""
        path = record.get("path")
        return None if path is None else os.fspath(path)

    def _check_index(self, records: Sequence[dict[str, Any]]) -> None:
        """Raise ``ValueError`` naming the row when a key is invalid or repeated.

        Checked in bulk first; only a failing index pays for the per-key pass that names the
        culprit. Subclasses whose keys are valid and unique by construction may skip it.
        """
        if keys_valid_and_unique([record.get(KEY) for record in records]):
            return
        seen: dict[str, int] = {}
        for position, record in enumerate(records):
            key = validate_key(record.get(KEY))
            if key in seen:
                raise ValueError(
                    f"{type(self).__name__}: duplicate key {key!r} at rows {seen[key]} and {position} "
                    f"({self._describe_record(records[seen[key]])} and {self._describe_record(record)})"
                )
            seen[key] = position

    def _note_missing(self, missing: Sequence[str], total: int, *, what: str, strict: bool) -> bool:
        """Report the ``missing`` files (paths, index order) among the ``total`` that ``what`` names.

        ``strict``: raise ``FileNotFoundError`` naming the count and the first file. Otherwise the
        count goes to ``stats()["missing"]`` and one :class:`MissingFilesWarning` is issued.
        Returns ``True`` when none of the ``total`` files is present: the caller then keeps every
        entry (a metadata-only index: labels and keys, samples raise when loaded); otherwise the
        caller leaves the missing entries out.
        """
        self._missing = len(missing)
        if not missing:
            return False
        head = f"{self.name or type(self).__name__}: {len(missing)} of the {total} {what} are absent (first: {missing[0]!r})"
        if strict:
            raise FileNotFoundError(f"{head} [strict=True]")
        none_present = len(missing) >= total
        kept = ("none is present, so the index keeps the metadata only and loading a sample raises" if none_present
                else f"the index holds the {total - len(missing)} present")
        warnings.warn(f"{head}; {kept} (stats()['missing']; strict=True raises instead)", MissingFilesWarning, stacklevel=3)
        return none_present

    # -- public API --------------------------------------------------------------------------

    @property
    def index(self) -> Sequence[dict[str, Any]]:
        """The index rows, built on first use and checked for valid, unique keys."""
        if self._records is None:
            records = self._build_index()
            self._check_index(records)
            self._records = records
        return self._records

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield the index rows (key, paths, labels, ...) without reading any media."""
        yield from self.index

    def __len__(self) -> int:
        return len(self.index)

    def key(self, index: int) -> str:
        """The ``__key__`` of sample ``index``."""
        return self.index[index][KEY]

    def load(self, index: int, *, decode: bool | None = None) -> dict[str, Any]:
        """Load sample ``index`` ignoring the error policy: data problems raise :class:`SampleError`."""
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        records = self.index
        if not -len(records) <= index < len(records):
            raise IndexError(f"index {index} out of range for {len(records)} samples")
        record = records[index]
        key = record[KEY]
        want_decoded = self.decode if decode is None else decode
        try:
            body = self._load_decoded(record) if want_decoded else self._load_encoded(record)
        except SampleError as error:
            if error.key is None:
                raise SampleError(error.reason, key=key, path=error.path or self._describe_record(record)) from error
            raise
        except (CodecError, OSError) as error:
            raise SampleError(str(error), key=key, path=self._describe_record(record)) from error
        sample = {KEY: key, SOURCE: self.name or type(self).__name__, **body}
        if want_decoded and self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        self._attempted += 1
        try:
            return self.load(index)
        except SampleError as error:
            if self.on_error == "raise":
                raise
            self.skipped.append((error.key or str(index), str(error)))
            return None

    def samples(self) -> Iterator[dict[str, Any]]:
        """Yield every sample in order, leaving out (and recording) skipped ones."""
        for index in range(len(self)):
            sample = self[index]
            if sample is not None:
                yield sample

    def stats(self) -> dict[str, Any]:
        """Counts for this process: ``attempted == loaded + skipped``, plus the skip reasons and
        ``missing``: metadata entries whose file was absent when the index was built."""
        return {
            "total": len(self),
            "attempted": self._attempted,
            "loaded": self._attempted - len(self.skipped),
            "skipped": len(self.skipped),
            "skips": [{"key": key, "reason": reason} for key, reason in self.skipped],
            "missing": self._missing,
        }

    def __repr__(self) -> str:
        size = len(self._records) if self._records is not None else "?"
        return f"{type(self).__name__}(name={self.name!r}, samples={size}, decode={self.decode}, on_error={self.on_error!r})"


def _tensor_summary(value: torch.Tensor) -> str:
    if value.numel() == 0:
        return f"{value.dtype} {list(value.shape)}"
    data = value.float()
    return f"{value.dtype} {list(value.shape)} min={data.nan_to_num().min().item():g} max={data.nan_to_num().max().item():g}"


def summarize_sample(sample: Mapping[str, Any]) -> dict[str, str]:
    """One line per field (type, shape, dtype, range), e.g. for ``datafactory datasets show``."""
    out: dict[str, str] = {}
    for field, value in sample.items():
        if isinstance(value, torch.Tensor):
            out[field] = _tensor_summary(value)
        elif isinstance(value, (bytes, bytearray)):
            out[field] = f"{len(value)} bytes"
        elif isinstance(value, str):
            out[field] = repr(value if len(value) <= 60 else value[:57] + "...")
        elif isinstance(value, dict):
            out[field] = "{" + ", ".join(sorted(value)) + "}"
        else:
            out[field] = repr(value)
    return out
