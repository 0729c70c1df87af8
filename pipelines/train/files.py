"""Run-folder writes: a whole file under a new temporary name, renamed into place.

Temporaries are created exclusively (never an existing file or a link) and the rename never
replaces anything but a regular file (:mod:`pipelines.manifest`), so a crash leaves the previous
version intact and a planted link is refused, not written through.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.manifest import write_atomic

__all__ = ["write_bytes_atomic"]


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, sync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (``sync``: fsync before the rename)."""
    return write_atomic(path, data, sync=sync)
