"""Finding a dataset's files in the folder a user has, and reading its metadata tables.

The file-backed adapters (chest X-ray collections, the ImageNet family, the clip adapters) share
these helpers; none reads media:

* path finders: :func:`first_existing` (the first of some candidate paths that qualifies), on which
  :func:`find_file` (a metadata file, ``.gz`` variants included, with an error naming the option
  that points at it) and :func:`find_dir` (a folder with the expected layout) are built;
* :class:`FileListings`: which files exist under a folder, from cached directory listings;
  :func:`list_subdirs`: a folder's sub-folders;
* split checks: :func:`check_split` (one of an adapter's splits) and :func:`check_test_split`
  (test-only sets);
* tables: :func:`read_table` opens a CSV (plain, ``.gz`` or single-member ``.zip``) as a
  :class:`Table` read verbatim;
* image type: :func:`kind_of` (``png``/``jpg``/``dcm`` from a file name's extension) and
  :func:`image_suffix` (``jpg``/``png`` from the bytes, through :func:`loaders.media.sniff_image`,
  the one table of image magic bytes).

Metadata files are read through :mod:`loaders.fileio`, so a FIFO or device named like a metadata
file is refused with an error naming it instead of blocking the reader.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from loaders.fileio import check_regular, open_regular_file
from loaders.media import sniff_image

__all__ = [
    "FileListings",
    "TEST_SPLITS",
    "Table",
    "check_split",
    "check_test_split",
    "find_dir",
    "find_file",
    "first_existing",
    "image_suffix",
    "kind_of",
    "list_subdirs",
    "read_table",
    "require_regular_file",
]

_P = TypeVar("_P", str, Path)
_KIND_OF_SUFFIX = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".dcm": "dcm", ".dicom": "dcm"}
#: the split of every test-only set (ImageNet-A, -R, -C, V2, Sketch)
TEST_SPLITS = ("test",)


# --- path finders --------------------------------------------------------------------------------


def first_existing(paths: Iterable[_P], accept: Callable[[_P], bool]) -> _P | None:
    """The first of ``paths`` that ``accept`` likes, or ``None``.

    ``accept`` says what counts, e.g. ``Path.is_file``, ``Path.is_dir``, ``os.path.isfile``.
    ``paths`` may be lazy: candidates after the first match are not looked at.
    """
    return next((path for path in paths if accept(path)), None)


def require_regular_file(path: Path | None, *, what: str, where: str) -> Path:
    """``path`` when it is a regular file; else a clear error.

    Raises:
        FileNotFoundError: ``path`` is ``None`` or absent (the message names ``what`` and ``where``
            it was looked for).
        loaders.fileio.NotRegularFileError: ``path`` exists but is a folder, FIFO, socket or
            device (checked from its ``stat``, never opened: opening a FIFO would block).
    """
    if path is None or not (path.exists() or path.is_symlink()):
        raise FileNotFoundError(f"{what} not found {where}")
    check_regular(path)
    return path


def find_file(root: Path, candidates: Iterable[str], *, what: str, option: str) -> Path:
    """The first existing ``root/candidate`` (``.gz`` variants included); a clear error otherwise."""
    names = [name for candidate in candidates for name in (candidate, candidate + ".gz")]
    found = first_existing((root / name for name in names), Path.is_file)
    if found is None:
        raise FileNotFoundError(f"no {what} under {str(root)!r} (looked for {names}); pass {option}= to point at it")
    return found


def find_dir(root: Path, candidates: Iterable[str], accept: Callable[[Path], bool], *, what: str) -> Path:
    """The first ``root / candidate`` (``""`` = root itself) that is a folder ``accept`` likes."""
    tried = [root / candidate if candidate else root for candidate in candidates]
    found = first_existing(tried, lambda path: path.is_dir() and accept(path))
    if found is None:
        raise FileNotFoundError(
            f"{what}: none of these folders has the expected layout: {[str(p) for p in tried]} (see docs/imagenet.md)")
    return found


def list_subdirs(path: str | os.PathLike) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``path`` (one ``os.scandir`` pass)."""
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


class FileListings:
    """Which files exist under ``top``, from cached directory listings (no per-file ``stat``).

    A folder is listed once; a folder absent from its parent's listing (parents are listed up to
    ``top``) reads as empty without a system call, so a partial download costs one listing per
    folder present, not per file named.
    """

    def __init__(self, top: str | os.PathLike) -> None:
        self.top = os.path.normpath(os.fspath(top))
        self._names: dict[str, frozenset[str] | None] = {}

    def names(self, folder: str) -> frozenset[str] | None:
        """The entry names of ``folder`` (empty if it does not exist; ``None`` if unreadable)."""
        if folder in self._names:
            return self._names[folder]
        parent, base = os.path.split(folder)
        names: frozenset[str] | None
        above = self.names(parent) if folder.startswith(self.top + os.sep) and parent != folder else None
        if above is not None and base not in above:
            names = frozenset()
        else:
            try:
                names = frozenset(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                names = frozenset()
            except OSError:  # e.g. no read permission: unknown, assume present
                names = None
        self._names[folder] = names
        return names

    def has(self, path: str | os.PathLike | None) -> bool:
        if path is None:
            return False
        folder, name = os.path.split(os.path.normpath(os.fspath(path)))
        names = self.names(folder)
        return names is None or name in names


# --- split checks --------------------------------------------------------------------------------


def check_split(dataset: str, split: str | None, allowed: Sequence[str | None]) -> str | None:
    """``split`` if it is one of ``allowed``, else ``ValueError`` naming ``dataset`` and the allowed splits."""
    if split not in allowed:
        raise ValueError(f"{dataset}: split must be one of {list(allowed)}, got {split!r}")
    return split


def check_test_split(name: str, split: str) -> str:
    """The split of a test-only set (A, R, C, V2, Sketch): ``"test"``, else ``ValueError``."""
    if split not in TEST_SPLITS:
        raise ValueError(f"{name} is a test set: split must be one of {TEST_SPLITS}, got {split!r}")
    return split


# --- metadata tables -----------------------------------------------------------------------------


class Table:
    """A CSV file read verbatim: the header as written, the rows streamed as lists of strings.

    Columns are looked up by their name with surrounding spaces stripped (SIIM's
    ``" EncodedPixels"``), so quirky headers (NIH's unquoted ``[Width,Height]`` commas, trailing
    commas, CRLF line ends, a UTF-8 BOM) need no special casing; rows shorter than the header
    read as blanks. :attr:`rows` re-reads the file on each use, so a 160k-row PadChest table
    never sits in memory as strings.
    """

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path, self.header = path, header
        self._position: dict[str, int] = {}
        for i, name in enumerate(header):
            self._position.setdefault(name.strip(), i)

    def has(self, *names: str) -> bool:
        return any(name in self._position for name in names)

    def column(self, *names: str, required: bool = True) -> int | None:
        """The position of the first of ``names`` present (alternate spellings), or ``None``."""
        for name in names:
            if name in self._position:
                return self._position[name]
        if required:
            raise ValueError(f"{str(self.path)!r}: missing column {names[0]!r}; header: {self.header}")
        return None

    @property
    def rows(self) -> Iterator[list[str]]:
        """The data rows (blank lines skipped), padded to the header's width."""
        width = len(self.header)
        with _open_text(self.path) as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for row in reader:
                if row:
                    yield row + [""] * (width - len(row)) if len(row) < width else row


def _open_text(path: Path) -> io.TextIOBase:
    name = path.name.lower()
    if name.endswith(".gz"):
        raw = open_regular_file(path)
        compressed = gzip.GzipFile(fileobj=raw, mode="rb")
        compressed.myfileobj = raw  # closed with it, as gzip.open(path) does
        return io.TextIOWrapper(compressed, encoding="utf-8-sig", newline="")
    if name.endswith(".zip"):
        with open_regular_file(path) as raw, zipfile.ZipFile(raw) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv") and not m.endswith("/")]
            if len(members) != 1:
                raise ValueError(f"{str(path)!r}: expected exactly one .csv inside the zip, found {members}")
            data = archive.read(members[0])
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    return open_regular_file(path, "r", encoding="utf-8-sig", newline="")


def read_table(path: str | os.PathLike) -> Table:
    """Open a CSV (plain, ``.gz`` or single-member ``.zip``) as a :class:`Table` (header read now)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata file {str(path)!r} does not exist")
    with _open_text(path) as handle:
        header = next(csv.reader(handle), None)
    if header is None:
        raise ValueError(f"{str(path)!r} is empty; expected a CSV header")
    return Table(path, header)


# --- image type ----------------------------------------------------------------------------------


def kind_of(path: str) -> str:
    """``png``/``jpg``/``dcm`` from a file name's extension."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in _KIND_OF_SUFFIX:
        raise ValueError(f"unsupported image file extension {extension!r} in {path!r}; allowed: {sorted(_KIND_OF_SUFFIX)}")
    return _KIND_OF_SUFFIX[extension]


_JPG_OR_PNG = {"jpeg": "jpg", "png": "png"}


def image_suffix(data: bytes) -> str | None:
    """``"jpg"`` / ``"png"`` from the file's magic bytes (never its extension); ``None`` if neither."""
    return _JPG_OR_PNG.get(sniff_image(data))  # type: ignore[arg-type]
