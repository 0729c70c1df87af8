"""Fixture builders for the audit tests: photo-like images written as real PNG/JPEG files.

The "clean synthetic set" is made of random fields with a 1/f amplitude spectrum (the average
spectrum of natural photographs), three mixed colour channels, mean and contrast drawn per image.
Unlike the ``shapes`` demo scenes -- mostly flat backgrounds whose coarse luminance layout
repeats, so that distinct scenes can be 8 pHash bits apart -- independent 1/f images spread their
pHashes: the closest two distinct images of these sets are 16 bits apart, well clear of the
default threshold of 10. Every test image is 96 x 96.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIDE = 96


def photo(seed: int, side: int = SIDE) -> np.ndarray:
    """A uint8 ``[side, side, 3]`` image with a 1/f amplitude spectrum, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.rfftfreq(side)[None, :]
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1.0
    planes = []
    for _ in range(3):
        spectrum = (rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)) / frequency
        spectrum[0, 0] = 0.0
        plane = np.fft.irfftn(spectrum, s=(side, side), axes=(0, 1))
        planes.append(plane / plane.std())
    mix = rng.normal(size=(3, 3)) * 0.3 + np.eye(3)
    rgb = np.einsum("ij,jhw->ihw", mix, np.stack(planes)) * rng.uniform(25, 45) + rng.uniform(90, 160, size=(3, 1, 1))
    return np.clip(rgb, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def encode(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image.convert("RGB"))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# the planted near duplicates: (name, function of a uint8 HxWx3 array -> encoded bytes)
def _jpeg(array: np.ndarray) -> bytes:
    return encode(array, "JPEG", quality=75)


def _crop(array: np.ndarray) -> bytes:
    return encode(array[1:-1, 1:-1])  # one pixel off every side: 2% of each dimension


def _resize(array: np.ndarray) -> bytes:
    return encode(np.array(Image.fromarray(array).resize((72, 72), Image.BICUBIC)))


def _brighter(array: np.ndarray) -> bytes:
    return encode(np.clip(array.astype(np.float64) * 1.2, 0, 255).astype(np.uint8))


PLANTS = (("jpeg", _jpeg, "jpg"), ("crop", _crop, "png"), ("resize", _resize, "png"), ("bright", _brighter, "png"))


def make_folder(root: Path, seeds: list[int], classes: tuple[str, ...] = ("alpha", "beta", "gamma")) -> dict[str, int]:
    """Class folders of PNGs, sample ``i`` in class ``i % len(classes)``; returns ``{key: seed}``."""
    keys = {}
    for number, seed in enumerate(seeds):
        name = f"{classes[number % len(classes)]}/img{seed:05d}"
        write(root / f"{name}.png", encode(photo(seed)))
        keys[name] = seed
    return keys


@pytest.fixture
def planted(tmp_path: Path) -> dict:
    """A train folder (90 clean images) and a test folder (24 clean images plus planted copies).

    Planted in test, each from its own train image: an identical file (``exact_bytes``), the
    same pixels re-encoded as a PNG with other settings (``exact_pixels``), and three each of a
    JPEG re-encoding, a 1-pixel crop, a 0.75x resize and a 1.2x brightness change.
    """
    train_seeds = list(range(90))
    train = make_folder(tmp_path / "train", train_seeds)
    test = make_folder(tmp_path / "test", list(range(1000, 1024)))
    expected: dict[str, str] = {}  # test key -> train key
    train_keys = sorted(train)
    write(tmp_path / "test" / "alpha" / "copy_bytes.png", (tmp_path / "train" / f"{train_keys[0]}.png").read_bytes())
    expected["alpha/copy_bytes"] = train_keys[0]
    same_pixels = encode(photo(train[train_keys[1]]), compress_level=1, optimize=False)
    assert same_pixels != (tmp_path / "train" / f"{train_keys[1]}.png").read_bytes()
    write(tmp_path / "test" / "beta" / "copy_pixels.png", same_pixels)
    expected["beta/copy_pixels"] = train_keys[1]
    source = 2
    for name, transform, suffix in PLANTS:
        for copy in range(3):
            key = train_keys[source]
            write(tmp_path / "test" / "gamma" / f"{name}{copy}.{suffix}", transform(photo(train[key])))
            expected[f"gamma/{name}{copy}"] = key
            source += 7  # spread over the classes
    return {"train": tmp_path / "train", "test": tmp_path / "test", "expected": expected, "tmp": tmp_path}


@pytest.fixture
def pictures():
    """The builders above, for tests that make their own images."""

    class Pictures:
        photo = staticmethod(photo)
        encode = staticmethod(encode)
        decode = staticmethod(decode)
        write = staticmethod(write)
        make_folder = staticmethod(make_folder)
        plants = PLANTS

    return Pictures
