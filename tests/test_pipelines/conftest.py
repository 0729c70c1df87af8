"""Fixture builders for the pipelines tests: real JPEG folders, shard trees, hostile tars."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_jpeg(path: Path, seed: int, size: int = 40) -> bytes:
    """A real JPEG (PIL/libjpeg) with content that depends on ``seed``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = (x * rng.uniform(1, 5) + y * rng.uniform(1, 5)) % 256
    rgb = np.stack([base, 255 - base, rng.integers(0, 255, (size, size))], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def make_jpeg_folder(root: Path, classes: int = 3, per_class: int = 8, size: int = 40) -> dict[str, bytes]:
    """An ImageFolder-style tree ``root/class_k/img_XXX.jpg``; returns ``{key: bytes}``."""
    files = {}
    for c in range(classes):
        for i in range(per_class):
            name = f"class_{c}/img_{i:03d}"
            files[name] = write_jpeg(root / f"{name}.jpg", seed=c * 1000 + i, size=size)
    return files


def read_tree(folder: Path) -> dict[str, bytes]:
    """Every shard and sidecar file of a shard set (index.json excluded) by name."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.name.endswith((".tar", ".stats.json"))}


def write_raw_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar with exactly these member names (no checks), to build hostile shards."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def jpeg_folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "images"
    return root, make_jpeg_folder(root)


@pytest.fixture
def helpers():
    """The builder functions above, for tests that need custom layouts."""

    class Helpers:
        jpeg = staticmethod(write_jpeg)
        jpeg_folder = staticmethod(make_jpeg_folder)
        tree = staticmethod(read_tree)
        raw_tar = staticmethod(write_raw_tar)

    return Helpers
