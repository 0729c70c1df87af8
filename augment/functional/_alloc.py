"""Output and work-buffer allocation for large CPU tensors.

A fresh 40 MB output costs more in first-touch page faults (4 KiB pages) than a patch gather
costs to fill it. NumPy asks the kernel for transparent huge pages (``madvise``) on large
allocations, which cuts that cost about fourfold; torch's CPU allocator does the same only when
the process sets ``THP_MEM_ALLOC_ENABLE=1``. The tensors returned are ordinary CPU tensors.

Kernels that stage data through cache-sized work buffers (the patch ops on CPU) take them from
:func:`scratch`, one reusable buffer per thread, so the page faults are paid once per thread.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

__all__ = ["empty", "empty_like", "scratch"]

_NUMPY = {torch.uint8: np.uint8, torch.int8: np.int8, torch.int16: np.int16, torch.int32: np.int32,
          torch.int64: np.int64, torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64,
          torch.complex64: np.complex64, torch.complex128: np.complex128, torch.bool: np.bool_}
_LARGE = 1 << 22  # 4 MiB: below this, malloc's heap reuses memory anyway
_KEEP = 1 << 26  # work buffers up to 64 MiB are kept for reuse; larger ones are freed after the call
_LOCAL = threading.local()


def empty(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """``torch.empty`` (contiguous), through NumPy for large CPU tensors."""
    device = torch.device(device)
    numel = 1
    for size in shape:
        numel *= int(size)
    if device.type == "cpu" and dtype in _NUMPY and numel * torch.empty((), dtype=dtype).element_size() >= _LARGE:
        return torch.from_numpy(np.empty(tuple(int(s) for s in shape), dtype=_NUMPY[dtype]))
    return torch.empty(tuple(shape), dtype=dtype, device=device)


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """A contiguous uninitialised tensor like ``x`` (see :func:`empty`)."""
    return empty(x.shape, x.dtype, x.device)


def scratch(nbytes: int) -> np.ndarray:
    """A uint8 work buffer of ``nbytes`` bytes, reused by later calls from the same thread.

    The contents are undefined, and the buffer is only valid until the thread's next call: a
    kernel must not call another user of :func:`scratch` while it holds one. Buffers up to
    64 MiB stay allocated (one per thread, the largest asked for); larger ones are not kept.
    """
    if nbytes > _KEEP:
        return np.empty(nbytes, np.uint8)
    buffer = getattr(_LOCAL, "buffer", None)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = np.empty(nbytes, np.uint8)
        _LOCAL.buffer = buffer
    return buffer[:nbytes]
