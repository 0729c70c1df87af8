"""Generic folder datasets: class-per-subfolder images, and images paired with masks.

Two layouts (``layout="auto"`` picks ``"segmentation"`` when ``images/`` and ``masks/`` both
exist under the root, ``"classes"`` otherwise)::

    classes (torchvision ImageFolder)        segmentation
    root[/split]/                            root[/split]/
      cat/xxx.jpg                              images/[cat/]xxx.jpg
      dog/sub/yyy.png                          masks/[cat/]xxx.png      (same relative stem)

Class indices follow the sorted class folder names, as in ``torchvision.datasets.ImageFolder``.
In the segmentation layout, the first folder under ``images/`` (if any) is the class. Files are
copied byte for byte when ``decode=False``.

The folder is untrusted input. Listing it opens no file; a listed name that is not a regular
file (a FIFO, socket, device, or a symlink to one, e.g. ``zero.png -> /dev/zero``) is never
opened: loading it raises :class:`loaders.base.SampleError` naming the file, so the error policy
applies (``on_error="skip"`` records it and ``stats()`` adds up). Symlinked folders are followed,
each real folder once (a link back up the tree does not loop).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable

from loaders.base import Adapter, SampleError
from loaders.fileio import NotRegularFileError, read_regular
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key

__all__ = ["FolderDataset", "IMAGE_EXTENSIONS", "scan_files"]

#: lower-case file extension -> shard suffix
IMAGE_EXTENSIONS: Mapping[str, str] = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}
_LAYOUTS = ("auto", "classes", "segmentation")


def scan_files(top: Path, extensions: Iterable[str]) -> list[str]:
    """Relative POSIX paths of the files under ``top`` whose lower-case extension is allowed, sorted.

    Uses ``os.scandir`` (no ``stat`` per file, one per folder); hidden entries are skipped.
    Symlinked folders are followed, but each real folder is listed once, so a link back up the
    tree neither loops nor multiplies. Files are listed by name only: whether one is a regular
    file is checked when it is read (:mod:`loaders.fileio`).
    """
    wanted = {e.lower() for e in extensions}
    found: list[str] = []
    stack = [""]
    top_info = os.stat(top)
    seen = {(top_info.st_dev, top_info.st_ino)}
    while stack:
        rel = stack.pop()
        folders = []
        with os.scandir(top / rel if rel else top) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    folders.append(entry)
                elif os.path.splitext(entry.name)[1].lower() in wanted:
                    found.append(f"{rel}/{entry.name}" if rel else entry.name)
        for entry in sorted(folders, key=lambda entry: entry.name):  # sorted: which alias of a folder wins is fixed
            info = entry.stat()  # links followed: the folder itself
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                stack.append(f"{rel}/{entry.name}" if rel else entry.name)
    found.sort()
    return found


@register_dataset("folder")
class FolderDataset(Adapter):
    """Images in class folders, optionally paired with PNG masks.

    Args:
        root: the dataset folder.
        split: optional sub-folder of ``root`` (e.g. ``"train"``).
        layout: ``"auto"``, ``"classes"`` or ``"segmentation"`` (see the module docstring).
        images, masks: the folder names of the segmentation layout.
        extensions: image file extensions to include (case-insensitive).
        decode, on_error, transform: see :class:`loaders.base.Adapter`.
    """

    name = "folder"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        layout: str = "auto",
        images: str = "images",
        masks: str = "masks",
        extensions: Iterable[str] = tuple(IMAGE_EXTENSIONS),
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(decode=decode, on_error=on_error, transform=transform)
        if root is None:
            raise ValueError("folder dataset needs root= (the folder that holds the images)")
        base = Path(root) / split if split else Path(root)
        if not base.is_dir():
            raise FileNotFoundError(f"folder dataset: {str(base)!r} is not a directory")
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
        unknown = {e.lower() for e in extensions} - set(IMAGE_EXTENSIONS)
        if unknown:
            raise ValueError(f"extensions {sorted(unknown)} are not supported; allowed: {sorted(IMAGE_EXTENSIONS)}")
        if layout == "auto":
            layout = "segmentation" if (base / images).is_dir() and (base / masks).is_dir() else "classes"
        self.root = base
        self.layout = layout
        self.image_dir = base / images if layout == "segmentation" else base
        self.mask_dir = base / masks if layout == "segmentation" else None
        self.extensions = tuple(extensions)
        self.split = split
        self.index  # index now: a bad root fails at construction, not in a worker

    def _build_index(self) -> list[dict[str, Any]]:
        if self.mask_dir is not None and not self.image_dir.is_dir():
            raise FileNotFoundError(f"folder dataset: missing images folder {str(self.image_dir)!r}")
        files = scan_files(self.image_dir, self.extensions)
        nested = sorted({f.split("/", 1)[0] for f in files if "/" in f})
        if self.layout == "classes":
            class_dirs = sorted(e.name for e in os.scandir(self.image_dir) if e.is_dir() and not e.name.startswith("."))
            files = [f for f in files if "/" in f]
            if not class_dirs or not files:
                raise FileNotFoundError(
                    f"folder dataset: no images with extensions {list(self.extensions)} in class folders under {str(self.image_dir)!r}"
                )
            self.classes = tuple(class_dirs)
        else:
            self.classes = tuple(nested) if nested and all("/" in f for f in files) else None
            if not files:
                raise FileNotFoundError(f"folder dataset: no images under {str(self.image_dir)!r}")
        class_index = {name: i for i, name in enumerate(self.classes or ())}
        image_dir = str(self.image_dir)  # os.path.join per file: a Path join costs ~5x more
        records = []
        for rel in files:
            stem = os.path.splitext(rel)[0]
            record: dict[str, Any] = {KEY: safe_key(stem), "path": os.path.join(image_dir, rel)}
            if self.classes is not None:
                record["label"] = class_index[rel.split("/", 1)[0]]
            if self.mask_dir is not None:
                record["mask_path"] = str(self.mask_dir / f"{stem}.png")
            records.append(record)
        return records

    def file_members(self, record: Mapping[str, Any]) -> list[tuple[str, str | bytes]]:
        """The image file, the mask file (segmentation layout) and the label, copied unchanged."""
        members: list[tuple[str, str | bytes]] = [(IMAGE_EXTENSIONS[os.path.splitext(record["path"])[1].lower()], record["path"])]
        if "mask_path" in record:
            members.append(("mask.png", record["mask_path"]))
        if "label" in record:
            members.append(("cls", str(record["label"]).encode("ascii")))
        return members

    def _load_encoded(self, record: Mapping[str, Any]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for suffix, source in self.file_members(record):
            if isinstance(source, bytes):
                out[suffix] = source
                continue
            try:
                out[suffix] = read_regular(source)
            except FileNotFoundError:
                if suffix == "mask.png":
                    raise SampleError("the image has no mask file", path=source) from None
                raise
            except NotRegularFileError as error:  # a FIFO, socket, device...: never opened
                raise SampleError(error.strerror, path=source) from None
        return out
