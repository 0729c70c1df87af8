"""Opening input files that may be hostile: regular files only, never FIFOs, sockets or devices.

A folder handed to an adapter is untrusted: a FIFO named ``pipe.png`` blocks ``open`` forever,
``zero.png -> /dev/zero`` reads until memory runs out. Every adapter and the shard builder read
input files through :func:`open_regular` / :func:`read_regular`: the file is opened with
``O_NONBLOCK`` (so opening a FIFO with no writer returns at once), checked with ``fstat`` on the
open descriptor (no race between the check and the read) and refused with :class:`OSError`
(``EINVAL``) naming the path unless it is a regular file. Symbolic links to regular files are
followed (datasets are often linked in from shared storage).
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["NotRegularFileError", "check_regular", "open_regular", "read_regular"]

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class NotRegularFileError(OSError):
    """A path names a FIFO, socket, device or directory where a regular file is expected."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed) after checking it is a regular file.

    Does not open the file, so it never blocks; use :func:`open_regular` to read.

    Raises:
        NotRegularFileError: ``path`` is a FIFO, socket, device or directory.
        OSError: ``path`` does not exist or cannot be stat'ed.
    """
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(errno.EINVAL, f"{_kind(info.st_mode)}, not a regular file", os.fspath(path))
    return info


def open_regular(path: str | os.PathLike, flags: int = 0) -> int:
    """Open ``path`` for reading and return the descriptor, refusing anything but a regular file.

    The check is made on the open descriptor; ``O_NONBLOCK`` is cleared again before returning.
    The caller closes the descriptor.

    Raises:
        NotRegularFileError: a FIFO, socket, device or directory (also behind a symlink).
        OSError: the file cannot be opened.
    """
    fd = os.open(path, _READ_FLAGS | flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(errno.EINVAL, f"{_kind(info.st_mode)}, not a regular file", os.fspath(path))
        if _READ_FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike) -> bytes:
    """The whole content of a regular file (see :func:`open_regular`); a drop-in for
    ``Path(path).read_bytes()`` that refuses FIFOs, sockets and devices."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
