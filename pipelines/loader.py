"""``make_loader``: a DDP-correct, resumable, safe streaming ``DataLoader`` over shards.

Reading never goes through webdataset's decoders: members are read with our own tar reader
(:func:`pipelines.tario.iter_shard_samples`: plain or gzip-compressed tars, names checked,
samples grouped by WebDataset's rule), every suffix must be in the codec table or named in
``decoders=`` (:class:`pipelines.tario.SuffixCheck`; pickle suffixes are refused always) and
decoding is :func:`loaders.decode_sample`, in a :class:`pipelines.stream.ShardStream`. Which
samples a rank/worker reads, and in which order, comes from :mod:`pipelines.plan` (equal batch
counts per rank; exact mid-epoch resume).

``index.json`` is as untrusted as the shards: :func:`pipelines.manifest.read_index` (used by every
reader of shard sets) refuses shard names that are not plain ``.tar`` file names in the folder, symbolic links
out of it, and mistyped counts; and since the plan trusts the counts, each shard read is checked
against its count (ending early or holding more is a :class:`ShardError` naming the shard).
A list of tars (anyone's: no ``index.json``) is counted by reading its member headers first,
the way the stream reads it: as webdataset does, a tar may lack its end-of-archive blocks, and
with ``on_error="skip"`` the samples our schema cannot hold are left out before planning.

Ranks come from ``rank``/``world_size`` arguments, else ``torch.distributed`` when initialised,
else the ``RANK``/``WORLD_SIZE`` environment variables (as set by ``torchrun``), else 0/1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from loaders import check_on_error
from pipelines.manifest import IndexedShard, ShardIndex, read_index, read_json_file, shard_file, sidecar_name
from pipelines.plan import consumed_per_worker
from pipelines.stream import FieldTransform, ShardStream, StreamConfig, collate_samples
from pipelines.tario import ReadStats, SuffixCheck, check_suffixes, iter_shard_samples
from pipelines.transfer import MainSlots, SlotControl

__all__ = [
    "FieldTransform",
    "IndexedShard",
    "ShardIndex",
    "ShardLoader",
    "ShardStream",
    "StreamConfig",
    "check_suffixes",
    "collate_samples",
    "make_loader",
    "read_index",
    "read_json_file",
    "resolve_shards",
    "shard_file",
    "sidecar_name",
]

_DECODE = (True, False, "unchanged", "RGB", "L")


def resolve_shards(shards: str | os.PathLike | Sequence[str | os.PathLike], *, on_error: str = "raise",
                   stats: ReadStats | None = None,
                   check_suffix: Callable[[str], object] | None = None) -> list[tuple[str, int]]:
    """``(path, sample count)`` for a shard folder, an ``index.json`` or a list of tar paths.

    Counts come from ``index.json`` (checked by :func:`read_index`). A list of tars (plain or
    gzip-compressed, ours or anyone's) is counted by reading member headers the way
    :class:`ShardStream` reads them for such a list: archives without their end-of-archive
    blocks accepted (as webdataset does), samples our schema cannot hold raising or, with
    ``on_error="skip"``, left out and recorded in ``stats`` -- along with those whose suffix
    ``check_suffix`` refuses.

    Raises:
        FileNotFoundError: a folder without ``index.json`` (pass its tars as a list), or a
            listed tar that does not exist.
        ShardError: a malformed ``index.json`` or tar, or (``on_error="raise"``) an unreadable sample.
    """
    if isinstance(shards, (str, os.PathLike)):
        path = Path(shards)
        if path.is_dir() or path.name == "index.json":
            try:
                return [(str(s.path), s.count) for s in read_index(path).shards]
            except FileNotFoundError as error:
                raise FileNotFoundError(f"{error}; to read tars that come without one, pass their paths as a list "
                                        "(e.g. sorted(glob.glob('folder/*.tar')))") from None
        shards = [path]
    if not isinstance(shards, Sequence) or not shards:
        raise ValueError(f"shards must be a folder, an index.json or a non-empty list of tar files, got {shards!r}")
    out = []
    for tar in shards:
        if not Path(tar).is_file():
            raise FileNotFoundError(f"shards: {os.fspath(tar)!r} does not exist")
        samples = iter_shard_samples(tar, read_data=False, on_error=on_error, stats=stats, require_end=False,
                                     check_suffix=check_suffix)
        out.append((os.fspath(tar), sum(1 for _ in samples)))
    return out


def _from_manifest(shards: str | os.PathLike | Sequence[str | os.PathLike]) -> bool:
    """Whether :func:`resolve_shards` takes ``shards``' counts from an ``index.json``."""
    return isinstance(shards, (str, os.PathLike)) and (Path(shards).is_dir() or Path(shards).name == "index.json")


class ShardLoader(DataLoader):
    """A ``torch.utils.data.DataLoader`` over a :class:`ShardStream` with epochs and resume.

    Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``). ``state_dict()``
    taken mid-epoch and restored with ``load_state_dict()`` makes the next iteration yield
    exactly the batches not yet yielded in that epoch (same shards, batch size, ranks, workers).
    Both reach the workers through shared memory, so ``persistent_workers=True`` is supported.
    """

    dataset: ShardStream

    def __init__(self, dataset: ShardStream, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=None, **kwargs)
        self._yielded = 0
        self._resume: tuple[int, int, list[int]] | None = None  # (batches, role offset, skips)
        self._slots = MainSlots(dataset.transfer) if dataset.transfer is not None else None
        self._running = 0  # iterations started and not finished

    def set_epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.dataset.epoch = epoch
        self._resume = None
        self._yielded = 0

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    @property
    def read_stats(self) -> ReadStats:
        """What listing the shards met: samples per epoch (before rank splitting), samples left
        out under ``on_error="skip"`` with their reasons, directory entries passed over, tars
        without end-of-archive blocks. Filled when a list of tars is read up front; for a set
        with ``index.json`` (not read up front) only ``samples``."""
        return self.dataset.listing

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        ds = self.dataset
        if self._resume is None:
            ds.set_resume()
            self._yielded = 0
        else:  # a loaded state_dict: this iteration (only) starts where that one stopped
            self._yielded, offset, skips = self._resume
            ds.set_resume(offset, skips)
            self._resume = None
        # Slots carry one iteration at a time: a second iteration running alongside (rare) takes
        # the ordinary way, so neither can release the other's memory.
        slots = self._slots if self._running == 0 and ds.transfer is not None and ds.transfer.enabled else None
        ds.set_slots(slots is not None)
        if slots is not None:
            ds.transfer.reset()
            if not self.persistent_workers:
                slots.clear()  # the previous iteration's workers are gone
        self._running += 1
        try:
            for batch in super().__iter__():
                self._yielded += 1
                yield slots.unpack(batch) if slots is not None else batch
        finally:
            self._running -= 1
            if slots is not None and not self.persistent_workers:
                slots.clear()

    def _fingerprint(self) -> dict[str, Any]:
        ds, c = self.dataset, self.dataset.config
        return {"shards": [os.path.basename(p) for p in ds.paths], "counts": ds.counts, "seed": c.seed,
                "batch_size": c.batch_size, "rank": c.rank, "world_size": c.world_size, "drop_last": c.drop_last,
                "num_workers": c.num_workers, "shuffle": c.shuffle, "shuffle_buffer": c.shuffle_buffer}

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batches" (yielded so far this epoch), ...the loader's layout}``."""
        return {"epoch": self.dataset.epoch, "batches": self._yielded, **self._fingerprint()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume mid-epoch; raises ``ValueError`` naming any layout field that differs."""
        mine = self._fingerprint()
        wrong = sorted(k for k in mine if state.get(k) != mine[k])
        if wrong:
            raise ValueError(f"state_dict was taken with a different loader layout: {wrong} differ")
        ds = self.dataset
        ds.epoch = int(state["epoch"])
        per_worker = [len(ds.plan(w).batch_sizes) for w in range(max(1, ds.config.num_workers))]
        skips, offset = consumed_per_worker(per_worker, int(state["batches"]))
        self._resume = (int(state["batches"]), offset, skips)
        self._yielded = int(state["batches"])


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
        else:
            rank = int(os.environ.get("RANK", 0)) if rank is None else rank
            world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank}, world_size={world_size}")
    return rank, world_size


def make_loader(
    shards: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    batch_size: int,
    decode: bool | str = True,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    batch_transform: Callable[[dict[str, Any]], Any] | None = None,
    collate: Callable[[list[dict[str, Any]]], Any] = collate_samples,
    shuffle: bool = True,
    shuffle_buffer: int = 1000,
    seed: int = 0,
    epoch: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    reuse_memory: bool = True,
    on_error: str = "raise",
    decoders: Mapping[str, Callable[[bytes], Any]] | None = None,
    **loader_options: Any,
) -> ShardLoader:
    """A ``DataLoader`` streaming batches from a shard set.

    Args:
        shards: a shard folder (with ``index.json``), an ``index.json`` path, or ``.tar`` paths.
        batch_size: samples per batch.
        decode: ``True`` (native channels), ``"RGB"``/``"L"`` (convert images) or ``False``
            (raw bytes; suffixes are still checked against the codec table).
        transform: per sample after decoding (dict -> dict), e.g. ``FieldTransform("image", op)``;
            with ``decode=False`` it receives the raw bytes (a custom decoder, say).
        batch_transform: per collated batch (e.g. MixUp), run in the worker processes.
        collate: list of samples -> batch (:func:`collate_samples` by default).
        shuffle, shuffle_buffer: shard order and a sample buffer, both seeded by ``(seed, epoch)``.
        seed, epoch: the shuffling seed and the epoch (see :meth:`ShardLoader.set_epoch`).
        num_workers: ``DataLoader`` worker processes.
        drop_last: drop the tail so every batch is full (otherwise ranks are padded by wrapping).
        rank, world_size: this process's rank (defaults: torch.distributed, then env, then 0/1).
        reuse_memory: with workers, send large batch tensors through shared memory each worker
            reuses (:mod:`pipelines.transfer`) instead of a new segment per tensor; the main
            process copies each batch out. Off with ``pin_memory=True`` (the pinning thread
            copies batches anyway) and when ``False``.
        on_error: a sample our schema cannot hold (a key with a dot or a space, a duplicate
            member, a suffix with no decoder) or a member with no ``key.suffix`` form:
            ``"raise"`` a :class:`ShardError` naming shard and member, or ``"skip"`` it. Skips
            are decided from member names when a list of tars is read up front (they take no
            place in the epoch's plan) and listed in ``loader.read_stats.skipped``; a set with
            ``index.json`` promises its counts, so a sample left out there is a count mismatch.
            A member that fails to decode raises either way (the epoch is planned before decoding).
        decoders: ``{suffix: function(bytes) -> value}`` for member suffixes the codec table
            does not know (``"txt.gz"``, say) or whose decoding you want to do yourself; the
            value lands in the sample under the suffix. Pickle-based suffixes are refused even
            here. With ``decode=False`` the named suffixes are accepted and stay bytes.
        **loader_options: passed to ``DataLoader`` (``pin_memory``, ``prefetch_factor``, ...).
    """
    for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0), ("seed", seed, 0),
                             ("epoch", epoch, 0), ("shuffle_buffer", shuffle_buffer, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not any(decode is d or (isinstance(d, str) and decode == d) for d in _DECODE):
        raise ValueError(f"decode must be one of {list(_DECODE)}, got {decode!r}")
    for name, fn in (("transform", transform), ("batch_transform", batch_transform), ("collate", collate)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    if {"batch_size", "sampler", "batch_sampler", "shuffle"} & set(loader_options):
        raise ValueError("batching and sampling are done by the stream; do not pass sampler/batch_size options")
    if "collate_fn" in loader_options:
        raise ValueError("pass collate=... (it runs on each batch's samples in the worker), not collate_fn")
    check_on_error(on_error)
    if decoders is not None:
        if not isinstance(decoders, Mapping):
            raise TypeError(f"decoders must be a mapping of suffix -> callable, got {type(decoders).__name__}")
        for suffix, fn in decoders.items():
            if not callable(fn):
                raise TypeError(f"decoders[{suffix!r}] must be callable, got {type(fn).__name__}")
        decoders = dict(decoders)
    check = SuffixCheck(decoders or ())  # refuses pickle suffixes and non-string names: ValueError
    rank, world_size = _rank_and_world(rank, world_size)
    transfer = None
    if reuse_memory and num_workers > 0 and not loader_options.get("pin_memory"):
        transfer = SlotControl(num_workers, loader_options.get("multiprocessing_context"))
    # a worker's batches in flight: up to prefetch_factor, one being copied out, one being filled
    max_slots = (loader_options.get("prefetch_factor") or 2) + 2
    listing = ReadStats()
    # a bare list of tars is listed the way the stream will read it; with on_error="raise" the
    # suffixes are checked when read, as they always were (and fail there)
    listed = resolve_shards(shards, on_error=on_error, stats=listing, check_suffix=check if on_error == "skip" else None)
    config = StreamConfig(batch_size=batch_size, decode=decode, transform=transform, batch_transform=batch_transform,
                          collate=collate, shuffle=shuffle, shuffle_buffer=shuffle_buffer, seed=seed, rank=rank,
                          world_size=world_size, drop_last=drop_last, num_workers=num_workers, max_slots=max_slots,
                          on_error=on_error, decoders=decoders, require_end=_from_manifest(shards))
    stream = ShardStream(listed, config, epoch=epoch, transfer=transfer)
    if not config.require_end:
        stream.listing = listing
    return ShardLoader(stream, num_workers=num_workers, **loader_options)
