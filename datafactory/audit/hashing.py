"""Exact and perceptual image hashes: encoded-byte and decoded-pixel digests, and the DCT pHash.

Exact duplicates are found with two digests per sample: :func:`bytes_digest` over the encoded
image member (the same file stored twice) and :func:`pixel_digest` over the decoded array's
dtype, shape and bytes (the same pixels stored in two files, e.g. a PNG and its lossless copy).

Near duplicates use the perceptual hash of Zauner ("Implementation and Benchmarking of
Perceptual Image Hash Functions", 2010; the ``pHash`` library's ``ph_dct_imagehash``): the image
is reduced to 32x32 grey values, transformed with a 2-D DCT-II, and the 8x8 block of the lowest
frequencies *after* the DC row and column (rows and columns 1-8) is thresholded at its median,
giving 64 bits. Brightness and contrast changes leave the bits unchanged (the DC term is left
out and a median threshold is scale-free); re-encoding, resizing and small crops move few bits.
Hashes are ``uint64``; bit 63 is the coefficient at row 1, column 1, then row-major.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = [
    "HASH_BITS",
    "bytes_digest",
    "grey_thumbnail",
    "hamming",
    "phash",
    "phash_from_grey",
    "pixel_digest",
    "popcount",
]

HASH_BITS = 64
_SIDE = 32  # the grey thumbnail's side
_BLOCK = 8  # the low-frequency block's side
# ITU-R BT.601 luma weights, as PIL's convert("L") uses
_LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
_WEIGHTS = (np.uint64(1) << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)
_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def bytes_digest(data: bytes | bytearray | memoryview) -> str:
    """A 128-bit BLAKE2b digest (hex) of encoded bytes."""
    return hashlib.blake2b(bytes(data), digest_size=16).hexdigest()


def pixel_digest(image: torch.Tensor | np.ndarray) -> str:
    """A 128-bit BLAKE2b digest (hex) of a decoded array: its dtype, its shape and its bytes.

    Two arrays get the same digest exactly when they hold the same values in the same dtype and
    shape, whatever file they came from.
    """
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.dtype.str}|{'x'.join(map(str, array.shape))}|".encode("ascii"))
    digest.update(array.data)
    return digest.hexdigest()


def grey_thumbnail(image: torch.Tensor, side: int = _SIDE) -> np.ndarray:
    """The ``side`` x ``side`` grey version of an image that pHash starts from.

    Args:
        image: ``[C,H,W]`` or ``[H,W]`` tensor of any real dtype (uint8, uint16, float); ``C`` is
            1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); alpha is ignored.

    Returns:
        float64 ``[side, side]``: BT.601 luma averaged over equal areas (an area resize, which
        low-pass filters as it shrinks; images smaller than ``side`` are stretched).
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] not in (1, 2, 3, 4) or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"image must be [C,H,W] with C in 1..4 and H, W > 0, got shape {tuple(image.shape)}")
    x = image.to(torch.float64)
    grey = (x[:3] * _LUMA[:, None, None]).sum(0) if x.shape[0] >= 3 else x[0]
    small = torch.nn.functional.adaptive_avg_pool2d(grey[None, None], (side, side))[0, 0]
    return small.numpy()


def phash_from_grey(grey: np.ndarray) -> np.ndarray:
    """pHash of grey thumbnails: ``[N, 32, 32]`` (or ``[32, 32]``) -> ``uint64 [N]`` (or a scalar).

    The DCT is applied to the batch at once (``scipy.fft.dctn`` over the last two axes).
    """
    from scipy.fft import dctn

    grey = np.asarray(grey, dtype=np.float64)
    single = grey.ndim == 2
    batch = grey[None] if single else grey
    if batch.ndim != 3 or batch.shape[1:] != (_SIDE, _SIDE):
        raise ValueError(f"grey thumbnails must be [N, {_SIDE}, {_SIDE}], got {grey.shape}")
    coefficients = dctn(batch, type=2, axes=(1, 2))[:, 1 : _BLOCK + 1, 1 : _BLOCK + 1].reshape(len(batch), -1)
    bits = coefficients > np.median(coefficients, axis=1, keepdims=True)
    hashes = (bits.astype(np.uint64) * _WEIGHTS).sum(axis=1, dtype=np.uint64)
    return hashes[0] if single else hashes


def phash(image: torch.Tensor) -> int:
    """The 64-bit DCT pHash of one ``[C,H,W]`` image, as a Python int."""
    return int(phash_from_grey(grey_thumbnail(image)))


def popcount(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each ``uint64`` (``numpy.bitwise_count`` where numpy has it)."""
    values = np.asarray(values, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    as_bytes = values.reshape(-1).view(np.uint8).reshape(-1, 8)
    return _BYTE_POPCOUNT[as_bytes].sum(axis=1, dtype=np.uint8).reshape(values.shape)


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Hamming distance between 64-bit hashes (broadcasting)."""
    return popcount(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))
