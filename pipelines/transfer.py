"""Moving batches from ``DataLoader`` worker processes to the main process through reused memory.

``torch.utils.data.DataLoader`` sends every batch tensor through a *new* shared-memory segment:
the worker creates it and writes the batch into fresh pages, a file descriptor crosses a socket,
and the main process maps it. Fresh pages are the cost: each 4 KiB page is a fault, which on a
virtual machine costs microseconds -- about 8 ms for one 64x3x224x224 uint8 batch (9.6 MB), as
much as decoding six JPEGs. Here each worker keeps a few segments ("slots") and reuses them:

* the worker copies each large batch tensor (>= :data:`MIN_BYTES`) into a free slot of its own --
  or builds it there in the first place (:meth:`WorkerSlots.claim`: ``collate_samples`` stacks
  images straight into a slot) -- and sends a small :class:`SlotRef` instead; the slot's memory
  crosses to the main process once (the first time the slot is used in an iteration), after
  that only its number does;
* the main process (:meth:`MainSlots.unpack`) copies the batch out of the slot into its own
  memory -- so batches the training loop keeps are never overwritten -- and then marks the
  worker's batches up to that one as released (a counter per worker, under a lock);
* a slot is reused only once the batch it held is released. ``DataLoader`` delivers a worker's
  batches in order, so a counter per worker is enough. With no free slot and ``max_slots`` in
  use, the worker sends the tensor the ordinary way: it never waits.

Tensors smaller than :data:`MIN_BYTES` (labels, say) are sent by value as NumPy arrays, which
avoids a shared-memory segment and a file descriptor per tensor per batch.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["MIN_BYTES", "MainSlots", "SlotControl", "SlotRef", "WorkerSlots"]

#: tensors at least this large go through slots; smaller ones are sent by value
MIN_BYTES = 64 * 1024


class SlotControl:
    """State shared by the main process and the workers: released counters and their lock.

    Created in the main process before the workers start (it reaches them by fork, or pickled
    while spawning them). A copy pickled any other way (``copy.deepcopy`` of a loader) is
    disabled: its workers send batches the ordinary way.
    """

    def __init__(self, num_workers: int, context: Any = None) -> None:
        if context is None or isinstance(context, str):
            context = multiprocessing.get_context(context)  # the DataLoader's start method
        self.lock = context.Lock()
        self.released = torch.zeros(max(1, num_workers), dtype=torch.int64).share_memory_()
        self.enabled = True

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if multiprocessing.context.get_spawning_popen() is None:  # not starting a worker
            state.update(lock=None, released=self.released.clone(), enabled=False)
        return state

    def reset(self) -> None:
        """A new iteration: every worker starts numbering its batches from 0 again."""
        with self.lock:
            self.released.zero_()

    def release(self, worker: int, seq: int) -> None:
        with self.lock:
            if int(self.released[worker]) <= seq:
                self.released[worker] = seq + 1

    def released_count(self, worker: int) -> int:
        with self.lock:
            return int(self.released[worker])


@dataclass
class SlotRef:
    """A batch tensor left in slot ``slot`` of worker ``pid`` (``storage`` set on first use)."""

    pid: int
    worker: int
    slot: int
    version: int
    seq: int
    dtype: torch.dtype
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    storage: torch.Tensor | None = None


@dataclass
class _ByValue:
    """A small tensor sent as a NumPy array (pickled by value)."""

    array: np.ndarray


def _map_leaves(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to the leaves of nested dicts, lists, tuples and namedtuples (exactly those
    types; other containers are leaves, so their tensors travel the ordinary way)."""
    kind = type(value)
    if kind is dict:
        return {key: _map_leaves(item, fn) for key, item in value.items()}
    if kind is list:
        return [_map_leaves(item, fn) for item in value]
    if kind is tuple:
        return tuple(_map_leaves(item, fn) for item in value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return kind(*(_map_leaves(item, fn) for item in value))
    return fn(value)


def _dense_stride(tensor: torch.Tensor) -> tuple[int, ...]:
    """The tensor's strides if it is dense in its memory format (channels-last kept), else
    contiguous strides (as ``default_collate``'s output would have)."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    if tensor.is_contiguous() or (tensor.dim() in formats and tensor.is_contiguous(memory_format=formats[tensor.dim()])):
        return tuple(tensor.stride())
    stride, step = [], 1
    for size in reversed(tensor.shape):
        stride.append(step)
        step *= max(size, 1)
    return tuple(reversed(stride))


class _Slot:
    __slots__ = ("announced", "holds", "memory", "version")

    def __init__(self, nbytes: int, version: int) -> None:
        self.memory = torch.empty(nbytes, dtype=torch.uint8).share_memory_()
        self.version = version
        self.holds = -1  # the seq of the batch in it; -1: free
        self.announced = False  # has the main process mapped it in this iteration?


class WorkerSlots:
    """Worker side: hands out slots to build batches in (:meth:`claim`) and packs each batch,
    sending tensors built in a slot as they are and copying other large ones into free slots."""

    def __init__(self, control: SlotControl, max_slots: int) -> None:
        self.control, self.max_slots = control, max_slots
        self.slots: list[_Slot] = []
        self.worker, self.seq, self.pid = 0, 0, os.getpid()

    def start(self, worker: int) -> None:
        """A new iteration of this worker (``worker`` is its id): all slots are free again."""
        self.worker, self.seq = worker, 0
        for slot in self.slots:
            slot.holds, slot.announced = -1, False

    def claim(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor | None:
        """A contiguous ``shape`` tensor in a free slot for the batch being built, or ``None``
        (small, disabled, no slot free). A collate function that stacks into it spares
        :meth:`pack` the copy: the batch is sent from where it was built."""
        nbytes = math.prod(shape) * dtype.itemsize
        if not self.control.enabled or nbytes < MIN_BYTES:
            return None
        index = self._free_slot(nbytes, self.control.released_count(self.worker))
        if index is None:
            return None
        slot = self.slots[index]
        slot.holds = self.seq
        return slot.memory[:nbytes].view(dtype).view(tuple(shape))

    def pack(self, batch: Any) -> Any:
        if not self.control.enabled:
            return batch
        released = self.control.released_count(self.worker)
        out = _map_leaves(batch, lambda v: self._pack_tensor(v, released) if isinstance(v, torch.Tensor) else v)
        self.seq += 1
        return out

    def _pack_tensor(self, tensor: torch.Tensor, released: int) -> Any:
        if (type(tensor) is not torch.Tensor or tensor.device.type != "cpu" or tensor.layout != torch.strided
                or tensor.requires_grad or tensor.is_quantized):
            return tensor
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes < MIN_BYTES:
            try:
                return _ByValue(tensor.numpy())
            except (TypeError, RuntimeError):  # a dtype NumPy lacks (bfloat16, ...)
                return tensor
        for index, slot in enumerate(self.slots):  # built in a claimed slot: send it as it is
            if (slot.holds == self.seq and slot.memory.data_ptr() == tensor.data_ptr() and tensor.is_contiguous()
                    and nbytes <= slot.memory.numel()):
                return self._ref(index, tensor, tuple(tensor.stride()))
        slot_index = self._free_slot(nbytes, released)
        if slot_index is None:
            return tensor  # every slot is busy: the ordinary (new shared memory) way
        slot = self.slots[slot_index]
        stride = _dense_stride(tensor)
        slot.memory[:nbytes].view(tensor.dtype).as_strided(tensor.shape, stride).copy_(tensor)
        slot.holds = self.seq
        return self._ref(slot_index, tensor, stride)

    def _ref(self, index: int, tensor: torch.Tensor, stride: tuple[int, ...]) -> SlotRef:
        slot = self.slots[index]
        ref = SlotRef(self.pid, self.worker, index, slot.version, self.seq, tensor.dtype, tuple(tensor.shape), stride)
        if not slot.announced:
            ref.storage, slot.announced = slot.memory, True
        return ref

    def _free_slot(self, nbytes: int, released: int) -> int | None:
        free = [i for i, s in enumerate(self.slots) if s.holds < released]  # the batch being built is never released
        fitting = [i for i in free if self.slots[i].memory.numel() >= nbytes]
        if fitting:
            return min(fitting, key=lambda i: self.slots[i].memory.numel())
        if len(self.slots) < self.max_slots:
            self.slots.append(_Slot(nbytes, 0))
            return len(self.slots) - 1
        if free:  # too small: replace it with a larger one
            index = free[0]
            self.slots[index] = _Slot(nbytes, self.slots[index].version + 1)
            return index
        return None


class MainSlots:
    """Main-process side: maps each worker slot once and copies batches out of them."""

    def __init__(self, control: SlotControl) -> None:
        self.control = control
        self.mapped: dict[tuple[int, int], tuple[int, torch.Tensor]] = {}

    def clear(self) -> None:
        """Forget every mapping (their workers are gone), so their memory can be freed."""
        self.mapped.clear()

    def unpack(self, batch: Any) -> Any:
        released: dict[int, int] = {}
        out = _map_leaves(batch, lambda value: self._unpack_leaf(value, released))
        for worker, seq in released.items():
            self.control.release(worker, seq)
        return out

    def _unpack_leaf(self, value: Any, released: dict[int, int]) -> Any:
        if isinstance(value, SlotRef):
            key = (value.pid, value.slot)
            if value.storage is not None:
                self.mapped[key] = (value.version, value.storage)
            version, memory = self.mapped[key]
            if version != value.version:
                raise RuntimeError(f"worker {value.worker}: slot {value.slot} version {value.version} was never mapped")
            nbytes = math.prod(value.shape) * value.dtype.itemsize
            tensor = memory[:nbytes].view(value.dtype).as_strided(value.shape, value.stride).clone()
            released[value.worker] = max(released.get(value.worker, -1), value.seq)
            return tensor
        if isinstance(value, _ByValue):
            return torch.from_numpy(value.array)
        return value
