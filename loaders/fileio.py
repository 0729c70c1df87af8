"""Opening input files that may be hostile: regular files only, never FIFOs, sockets or devices.

A folder handed to an adapter is untrusted: a FIFO named ``pipe.png`` blocks ``open`` forever,
``zero.png -> /dev/zero`` reads until memory runs out, and merely opening some devices has side
effects (a tape rewinds, a watchdog arms). Every adapter and the shard builder read input files
through :func:`open_regular` / :func:`open_regular_file` / :func:`read_regular`:

1. the path is ``stat``-ed first (links followed) and refused unless it is a regular file, so a
   FIFO, socket, device or directory is never opened at all;
2. the file is then opened with ``O_NONBLOCK`` and ``O_NOCTTY`` (if it was swapped for a FIFO in
   between, opening it returns at once instead of waiting for a writer) and
3. checked again with ``fstat`` on the open descriptor, which is what is read (no race between
   the check and the read).

A refusal is a :class:`NotRegularFileError` (an :class:`OSError`, ``EINVAL``) naming the path and
what it is, which adapters turn into a :class:`loaders.base.SampleError` like any unreadable
file. Symbolic links to regular files are followed (datasets are often linked in from shared
storage).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import IO, Any

__all__ = ["NotRegularFileError", "check_regular", "open_regular", "open_regular_file", "read_regular"]

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_READ_FLAGS = os.O_RDONLY | _NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class NotRegularFileError(OSError):
    """A path names a FIFO, socket, device or directory where a regular file is expected."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "a special file"


def _refuse(info: os.stat_result, path: str | os.PathLike) -> NotRegularFileError:
    return NotRegularFileError(errno.EINVAL, f"{_kind(info.st_mode)}, not a regular file; not read", os.fspath(path))


def check_regular(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed) after checking it is a regular file.

    Does not open the file, so it never blocks. It only checks: a file swapped afterwards is not
    caught, so read through :func:`open_regular` (which checks the descriptor it reads) where
    possible.

    Raises:
        NotRegularFileError: ``path`` is a FIFO, socket, device or directory.
        OSError: ``path`` does not exist or cannot be stat'ed.
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(info, path)
    return info


def open_regular(path: str | os.PathLike, flags: int = 0) -> int:
    """Open ``path`` for reading and return the descriptor, refusing anything but a regular file.

    A special file is refused from its ``stat``, before any ``open``; the open descriptor is
    checked again with ``fstat``. ``O_NONBLOCK`` is cleared again before returning. The caller
    closes the descriptor.

    Raises:
        NotRegularFileError: a FIFO, socket, device or directory (also behind a symlink).
        OSError: the file cannot be opened.
    """
    check_regular(path)
    fd = os.open(path, _READ_FLAGS | flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(info, path)
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular_file(path: str | os.PathLike, mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """:func:`open` for reading (``mode`` ``"rb"`` or ``"r"``, ``kwargs`` as for ``open``: encoding,
    newline...) through :func:`open_regular`; for libraries that take a file object."""
    if mode not in ("rb", "r", "rt"):
        raise ValueError(f"open_regular_file opens for reading only, got mode {mode!r}")
    fd = open_regular(path)
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike) -> bytes:
    """The whole content of a regular file (see :func:`open_regular`); a drop-in for
    ``Path(path).read_bytes()`` that refuses FIFOs, sockets and devices."""
    with open_regular_file(path) as handle:
        return handle.read()
