"""Epoch plans for the streaming loader: which samples each rank and worker reads, in what order.

Pure functions of ``(shard counts, seed, epoch, rank, world_size, worker, num_workers,
batch_size, drop_last, shuffle_buffer)``; no data is read here. That purity is what gives:

* **equal batch counts per rank** (no DDP hang): the shards, in a ``(seed, epoch)`` order,
  form one virtual sequence of ``N`` samples (sizes come from ``index.json``); rank ``r`` takes
  the contiguous slice ``[r*P, (r+1)*P)``. With ``drop_last=False``, ``P = ceil(N / world)`` and
  the slice wraps around to the start (the few padded samples repeat, as
  ``torch.utils.data.DistributedSampler`` pads); with ``drop_last=True``, ``P = N // world``.
  Every rank then has ``ceil(P / B)`` (or ``P // B``) batches: the same number everywhere.
* **worker splitting**: a rank's batches are cut into ``num_workers`` contiguous runs of whole
  batches, so only the final batch of the epoch can be short.
* **exact mid-epoch resume**: the shuffle buffer is simulated on read positions, so the samples a
  worker emits in its first ``k`` batches are known without reading them; a resumed epoch skips
  exactly those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "WorkerPlan",
    "batches_per_rank",
    "buffer_order",
    "consumed_per_worker",
    "rank_samples",
    "shard_order",
    "worker_plan",
]


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """Shard visiting order for an epoch: a ``(seed, epoch)`` permutation, or natural order."""
    if not shuffle:
        return list(range(num_shards))
    return [int(i) for i in np.random.default_rng([seed, epoch, 0]).permutation(num_shards)]


def _rank_span(total: int, rank: int, world_size: int, drop_last: bool) -> tuple[int, int]:
    per = total // world_size if drop_last else -(-total // world_size)
    return rank * per, per


def batches_per_rank(total: int, world_size: int, batch_size: int, drop_last: bool) -> int:
    """How many batches every rank yields per epoch."""
    per = total // world_size if drop_last else -(-total // world_size)
    return per // batch_size if drop_last else -(-per // batch_size)


def rank_samples(counts: Sequence[int], order: Sequence[int], rank: int, world_size: int,
                 drop_last: bool) -> list[tuple[int, int]]:
    """The rank's samples as ``(shard, index_in_shard)`` in reading order."""
    total = sum(counts)
    if total == 0:
        return []
    first, per = _rank_span(total, rank, world_size, drop_last)
    offsets = np.cumsum([0] + [counts[s] for s in order])
    globals_ = (np.arange(first, first + per) % total) if per else np.arange(0)
    slot = np.searchsorted(offsets, globals_, side="right") - 1
    return [(int(order[k]), int(g - offsets[k])) for k, g in zip(slot, globals_)]


def buffer_order(n: int, buffer_size: int, rng: np.random.Generator) -> list[int]:
    """Emission order of ``n`` read positions through a shuffle buffer of ``buffer_size``.

    The classic streaming shuffle (as in webdataset's ``shuffle`` stage): fill the buffer; for
    every further item emit a uniformly chosen buffered item and put the new one in its place;
    finally drain the buffer in random order. ``buffer_size <= 1`` keeps the order.
    """
    if buffer_size <= 1 or n <= 1:
        return list(range(n))
    buffer: list[int] = []
    out: list[int] = []
    picks = rng.random(n + buffer_size)
    p = 0
    for item in range(n):
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        j = int(picks[p] * len(buffer))
        p += 1
        out.append(buffer[j])
        buffer[j] = item
    tail = rng.permutation(len(buffer))
    out.extend(buffer[int(t)] for t in tail)
    return out


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker of one rank reads and emits in an epoch.

    Attributes:
        segments: ``(shard, start, stop)`` runs to read, in order.
        order: emission order as indices into the read sequence.
        batch_sizes: sizes of the batches this worker yields.
    """

    segments: tuple[tuple[int, int, int], ...]
    order: tuple[int, ...]
    batch_sizes: tuple[int, ...]


def _segments(samples: Sequence[tuple[int, int]]) -> tuple[tuple[int, int, int], ...]:
    runs: list[list[int]] = []
    for shard, index in samples:
        if runs and runs[-1][0] == shard and runs[-1][2] == index:
            runs[-1][2] += 1
        else:
            runs.append([shard, index, index + 1])
    return tuple(tuple(r) for r in runs)  # type: ignore[misc]


def worker_plan(counts: Sequence[int], *, seed: int, epoch: int, rank: int, world_size: int, worker: int,
                num_workers: int, batch_size: int, drop_last: bool, shuffle: bool, shuffle_buffer: int) -> WorkerPlan:
    """The plan of one worker (``num_workers`` >= 1; a main-process loader is worker 0 of 1)."""
    order = shard_order(len(counts), seed, epoch, shuffle)
    samples = rank_samples(counts, order, rank, world_size, drop_last)
    per = len(samples)
    n_batches = per // batch_size if drop_last else -(-per // batch_size)
    usable = min(per, n_batches * batch_size)
    b0, b1 = worker * n_batches // num_workers, (worker + 1) * n_batches // num_workers
    mine = samples[b0 * batch_size:min(b1 * batch_size, usable)]
    sizes = tuple(min(batch_size, len(mine) - i) for i in range(0, len(mine), batch_size))
    rng = np.random.default_rng([seed, epoch, 1, rank, worker])
    emitted = buffer_order(len(mine), shuffle_buffer if shuffle else 0, rng)
    return WorkerPlan(_segments(mine), tuple(emitted), sizes)


def consumed_per_worker(batches_per_worker: Sequence[int], consumed: int) -> tuple[list[int], int]:
    """Split ``consumed`` batches of a ``DataLoader`` over its workers.

    ``DataLoader`` hands out tasks to workers round-robin and yields results in task order,
    skipping workers that are exhausted; so batch ``t`` of the loader is batch ``t // W`` of
    worker ``t % W`` while every worker still has batches.

    Returns:
        ``(taken, next_worker)``: batches taken from each worker, and the worker whose batch
        comes next (a resumed loader rotates its workers' roles so that it starts there).
    """
    taken = [0] * len(batches_per_worker)
    remaining, last = consumed, -1
    while remaining > 0:
        progressed = False
        for w, available in enumerate(batches_per_worker):
            if remaining == 0:
                break
            if taken[w] < available:
                taken[w] += 1
                remaining -= 1
                progressed, last = True, w
        if not progressed:
            raise ValueError(f"consumed {consumed} batches, but the epoch has only {sum(batches_per_worker)}")
    return taken, (last + 1) % len(batches_per_worker)
