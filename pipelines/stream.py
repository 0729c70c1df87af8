"""``ShardStream``: one rank's batches for one epoch, read from shards in worker processes.

The stream reads the samples :mod:`pipelines.plan` assigns to this rank and worker with the tar
reader (:func:`pipelines.tario.iter_shard_samples`), decodes them (:func:`loaders.decode_sample`
and any decoders the user named), applies the per-sample transform, batches them
(:func:`collate_samples`) and applies the batch transform. Its fixed settings are one frozen
:class:`StreamConfig`; what changes between iterations (epoch, resume position, whether batches
travel through reused slots) lives in a small shared-memory tensor that worker processes read
when an iteration starts. :func:`pipelines.loader.make_loader` builds it; ``ShardLoader`` drives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch.utils.data import IterableDataset, default_collate, get_worker_info

from loaders import CodecError, decode_sample
from loaders.schema import KEY
from pipelines.plan import batches_per_rank, worker_plan
from pipelines.tario import ReadStats, ShardError, SuffixCheck, iter_shard_samples
from pipelines.transfer import SlotControl, WorkerSlots

__all__ = ["FieldTransform", "ShardStream", "StreamConfig", "collate_samples"]

# In a worker process whose batches travel through slots (pipelines.transfer) straight from
# collate_samples: its slots. None without slots, and with a batch_transform, which might keep
# references to the batches it is given (a memory of past batches), so those must not live in
# memory that is reused.
_worker_claims: WorkerSlots | None = None
_worker_has_slots = False


def _stack(values: list[torch.Tensor]) -> torch.Tensor:
    """Stack same-shape tensors where the batch will travel from: into a slot of this worker
    (no copy when it is sent), else into plain memory when slots will copy it, else -- an
    ordinary worker -- into new shared memory (``default_collate``)."""
    if _worker_claims is not None and all(v.dtype == values[0].dtype for v in values):
        out = _worker_claims.claim((len(values), *values[0].shape), values[0].dtype)
        if out is not None:
            return torch.stack(values, out=out)
    return torch.stack(values) if _worker_has_slots else default_collate(values)


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch sample dicts: same-shape tensors are stacked, numbers become tensors, the rest lists."""
    if not samples:
        raise ValueError("collate_samples needs at least one sample")
    batch: dict[str, Any] = {}
    for field in samples[0]:
        values = [s[field] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor) and all(isinstance(v, torch.Tensor) and v.shape == first.shape for v in values):
            batch[field] = _stack(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            batch[field] = torch.tensor(values)
        else:
            batch[field] = values
    return batch


class FieldTransform:
    """Apply ``op`` to one field of a sample dict (e.g. an ``augment`` op to ``"image"``)."""

    def __init__(self, field: str, op: Callable[[Any], Any]) -> None:
        if not callable(op):
            raise TypeError(f"op must be callable, got {type(op).__name__}")
        self.field, self.op = field, op

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample[self.field] = self.op(sample[self.field])
        return sample

    def __repr__(self) -> str:
        return f"FieldTransform({self.field!r}, {self.op!r})"


@dataclass(frozen=True)
class StreamConfig:
    """What a :class:`ShardStream` reads and how: fixed for the stream's lifetime.

    The fields are :func:`make_loader`'s arguments of the same names (validated there);
    ``max_slots`` is how many reused transfer slots a worker keeps (:mod:`pipelines.transfer`);
    ``require_end`` whether a shard must end with its end-of-archive blocks (``True`` for a
    set with ``index.json``, whose writer always ends its tars; ``False`` for a list of tars,
    read as webdataset reads them).
    """

    batch_size: int
    decode: bool | str = True
    transform: Callable | None = None
    batch_transform: Callable | None = None
    collate: Callable = collate_samples
    shuffle: bool = True
    shuffle_buffer: int = 1000
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = False
    num_workers: int = 0
    max_slots: int = 4
    on_error: str = "raise"
    decoders: Mapping[str, Callable[[bytes], Any]] | None = None
    require_end: bool = True


_CONFIG_FIELDS = frozenset(f.name for f in fields(StreamConfig))


class ShardStream(IterableDataset):
    """Yields this rank's batches for one epoch (see :mod:`pipelines.plan`); picklable.

    Args:
        shards: ``(path, sample count)`` per shard (:func:`pipelines.loader.resolve_shards`).
        config: the stream's fixed settings; its fields also read as attributes
            (``stream.batch_size``).
        epoch: the first epoch (changed later through :attr:`epoch`).
        transfer: the batch-transfer control shared with the main process, or ``None``.
    """

    def __init__(self, shards: list[tuple[str, int]], config: StreamConfig, *, epoch: int = 0,
                 transfer: SlotControl | None = None) -> None:
        self.paths = [p for p, _ in shards]
        self.counts = [c for _, c in shards]
        self.config = config
        self.check_suffix = SuffixCheck(config.decoders or ())
        self._decoders = {suffix.lower(): fn for suffix, fn in (config.decoders or {}).items()}
        #: what listing the shards met (samples left out, directories...); see make_loader
        self.listing = ReadStats(samples=sum(self.counts))
        # What the next iteration plays, in shared memory so that worker processes see it when
        # they start an iteration -- persistent workers included, which keep their copy of this
        # object across epochs: [epoch, role offset, slots on/off, batches to skip per worker
        # role...]. A resumed loader's worker i plays role (i + offset) % num_workers.
        self._control = torch.zeros(3 + max(1, config.num_workers), dtype=torch.int64).share_memory_()
        self._control[0] = epoch
        self.transfer = transfer
        self._packer: WorkerSlots | None = None  # created in each worker process

    def __getattr__(self, name: str) -> Any:
        # only reached when ordinary lookup fails: the config's fields read as attributes
        if name in _CONFIG_FIELDS and "config" in self.__dict__:
            return getattr(self.__dict__["config"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def epoch(self) -> int:
        return int(self._control[0])

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self._control[0] = epoch

    def set_resume(self, role_offset: int = 0, skip_batches: Sequence[int] | None = None) -> None:
        """Make the next iteration start ``skip_batches[role]`` batches into each worker role."""
        self._control[1] = role_offset
        self._control[3:] = 0 if skip_batches is None else torch.tensor(list(skip_batches), dtype=torch.int64)

    def set_slots(self, active: bool) -> None:
        """Whether the next iteration's workers send large tensors through reused slots."""
        self._control[2] = int(active and self.transfer is not None)

    def plan(self, worker: int, epoch: int | None = None):
        epoch = self.epoch if epoch is None else epoch
        c = self.config
        return worker_plan(self.counts, seed=c.seed, epoch=epoch, rank=c.rank, world_size=c.world_size,
                           worker=worker, num_workers=max(1, c.num_workers), batch_size=c.batch_size,
                           drop_last=c.drop_last, shuffle=c.shuffle, shuffle_buffer=c.shuffle_buffer)

    def __len__(self) -> int:
        c = self.config
        return batches_per_rank(sum(self.counts), c.world_size, c.batch_size, c.drop_last)

    def _read(self, segments) -> Iterator[dict[str, Any]]:
        c = self.config
        for shard, start, stop in segments:
            path = self.paths[shard]
            # count: a shard that ends early, or holds more than planned, fails here by name
            # instead of leaving this worker short of batches (or DDP ranks out of step)
            yield from iter_shard_samples(path, skip=start, limit=stop - start, count=self.counts[shard],
                                          on_error=c.on_error, require_end=c.require_end, check_suffix=self.check_suffix)

    def _decode(self, sample: dict[str, Any]) -> dict[str, Any]:
        decode, transform, decoders = self.config.decode, self.config.transform, self._decoders
        if decode is not False:
            mode = "unchanged" if decode is True else decode
            own = {s: decoders[s.lower()] for s in sample if s != KEY and s.lower() in decoders} if decoders else {}
            try:
                decoded = decode_sample({s: v for s, v in sample.items() if s not in own}, image_mode=mode)
            except CodecError as error:
                raise ShardError(f"sample {sample[KEY]!r}: {error}") from None
            for suffix, fn in own.items():
                try:
                    decoded[suffix] = fn(sample[suffix])
                except Exception as error:  # noqa: BLE001 - a user's decoder: name the member it failed on
                    raise ShardError(f"sample {sample[KEY]!r}: member {suffix!r}: your decoder {fn!r} failed: "
                                     f"{type(error).__name__}: {error}") from error
            sample = decoded
        return transform(sample) if transform is not None else sample

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        control = self._control.tolist()  # read once: the main process may set the next epoch meanwhile
        worker = 0 if info is None else (info.id + control[1]) % info.num_workers
        plan = self.plan(worker, epoch=control[0])
        skip = control[3 + worker]
        collate, batch_transform = self.config.collate, self.config.batch_transform
        packer = None
        if info is not None:  # a worker process: slots this iteration?
            global _worker_claims, _worker_has_slots
            if control[2] and self.transfer is not None:
                if self._packer is None:
                    self._packer = WorkerSlots(self.transfer, self.config.max_slots)
                packer = self._packer
                packer.start(info.id)
            _worker_has_slots = packer is not None
            _worker_claims = packer if batch_transform is None else None
        position = sum(plan.batch_sizes[:skip])
        done = set(plan.order[:position])
        pending: dict[int, dict[str, Any]] = {}
        batch: list[dict[str, Any]] = []
        sizes = iter(plan.batch_sizes[skip:])
        want = next(sizes, 0)
        for read, sample in enumerate(self._read(plan.segments)):
            if read in done:
                continue
            pending[read] = sample
            while position < len(plan.order) and plan.order[position] in pending:
                batch.append(self._decode(pending.pop(plan.order[position])))
                position += 1
                if len(batch) == want:
                    out = collate(batch)
                    out = batch_transform(out) if batch_transform is not None else out
                    yield packer.pack(out) if packer is not None else out
                    batch, want = [], next(sizes, 0)
        if pending or batch:
            raise ShardError(f"shards changed while reading: {len(pending) + len(batch)} samples left unbatched")
