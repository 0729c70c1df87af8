"""Digests and the DCT pHash: the definition (against an independent DCT), invariances, formats."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from datafactory.audit.hashing import bytes_digest, grey_thumbnail, hamming, phash, phash_from_grey, pixel_digest, popcount


def _dct_matrix(n: int) -> np.ndarray:
    """The DCT-II basis written out: C[k, i] = cos(pi * (2i + 1) * k / (2n))."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.cos(math.pi * (2 * i + 1) * k / (2 * n))


def _reference_phash(grey32: np.ndarray) -> int:
    """pHash from its definition, without scipy: 2-D DCT-II as C @ X @ C.T, block rows/cols 1-8,
    bits above the block's median, the coefficient (1, 1) first (most significant)."""
    c = _dct_matrix(32)
    block = (c @ grey32 @ c.T)[1:9, 1:9].reshape(-1)
    bits = block > np.median(block)
    return sum(1 << (63 - i) for i, bit in enumerate(bits) if bit)


def test_phash_matches_the_definition(pictures):
    rng = np.random.default_rng(0)
    for seed in range(6):
        grey = grey_thumbnail(torch.from_numpy(pictures.photo(seed)).permute(2, 0, 1))
        assert int(phash_from_grey(grey)) == _reference_phash(grey)
    batch = rng.uniform(0, 255, size=(5, 32, 32))
    assert [int(h) for h in phash_from_grey(batch)] == [_reference_phash(g) for g in batch]


def test_grey_thumbnail_is_luma_averaged_over_equal_areas():
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    image[0, :32] = 200  # red top half
    image[2, :, :2] = 100  # a blue stripe two pixels wide: one thumbnail column
    grey = grey_thumbnail(image)
    assert grey.shape == (32, 32)
    assert grey[0, 5] == pytest.approx(0.299 * 200) and grey[20, 5] == 0
    assert grey[20, 0] == pytest.approx(0.114 * 100) and grey[0, 0] == pytest.approx(0.299 * 200 + 0.114 * 100)
    # grey, grey + alpha and 16-bit inputs are accepted; alpha is ignored
    plane = torch.arange(64 * 64, dtype=torch.int32).reshape(1, 64, 64)
    assert np.allclose(grey_thumbnail(plane.to(torch.uint16)), grey_thumbnail(torch.cat([plane, plane * 0]).to(torch.uint16)))


def test_brightness_and_contrast_scaling_leave_the_hash_unchanged(pictures):
    image = torch.from_numpy(pictures.photo(3)).permute(2, 0, 1).to(torch.float64)
    assert phash(image) == phash(image * 0.5) == phash(image * 3.0 + 40.0)
    assert phash(image) == phash(image.to(torch.uint8).to(torch.uint16) * 257)  # 8 -> 16 bit


def test_every_hash_has_32_set_bits_so_distances_are_even(pictures):
    hashes = np.array([phash(torch.from_numpy(pictures.photo(s)).permute(2, 0, 1)) for s in range(20)], dtype=np.uint64)
    assert (popcount(hashes) == 32).all()
    distances = hamming(hashes[:, None], hashes[None, :])
    assert (distances % 2 == 0).all() and (np.diag(distances) == 0).all()


def test_popcount_agrees_with_python():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**63, size=200, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, size=200, dtype=np.uint64)
    assert popcount(values).tolist() == [bin(int(v)).count("1") for v in values]
    assert int(hamming(np.uint64(0), np.uint64(2**64 - 1))) == 64


def test_pixel_digest_sees_values_dtype_and_shape_byte_digest_sees_bytes(pictures):
    array = pictures.photo(5)
    png_fast, png_small = pictures.encode(array, compress_level=1), pictures.encode(array, compress_level=9)
    assert png_fast != png_small and bytes_digest(png_fast) != bytes_digest(png_small)
    decoded = [torch.from_numpy(pictures.decode(data)).permute(2, 0, 1) for data in (png_fast, png_small)]
    assert pixel_digest(decoded[0]) == pixel_digest(decoded[1]) == pixel_digest(decoded[1].numpy())
    image = decoded[0]
    assert pixel_digest(image) != pixel_digest(image.to(torch.int16))  # same values, other dtype
    assert pixel_digest(image) != pixel_digest(image.reshape(3, 48, 192))  # same bytes, other shape
    changed = image.clone()
    changed[0, 0, 0] ^= 1
    assert pixel_digest(image) != pixel_digest(changed)
    assert pixel_digest(image.permute(0, 2, 1)) == pixel_digest(image.permute(0, 2, 1).contiguous())


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="C in 1..4"):
        grey_thumbnail(torch.zeros(5, 8, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        grey_thumbnail(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match=r"\[N, 32, 32\]"):
        phash_from_grey(np.zeros((2, 16, 16)))


@pytest.mark.skipif(importlib.util.find_spec("imagehash") is None, reason="imagehash is not installed (not a dependency)")
def test_agrees_with_imagehash_on_what_both_define_alike(pictures):
    """imagehash.phash thresholds the block of rows/cols 0-7 (DC included) after its own LANCZOS
    resize; on a 32x32 grey input (no resize) its bits must equal that block's, computed here."""
    import imagehash
    from PIL import Image

    for seed in range(5):
        grey = pictures.photo(seed, 32).mean(axis=2).astype(np.uint8)
        theirs = imagehash.phash(Image.fromarray(grey, mode="L")).hash.reshape(-1)
        c = _dct_matrix(32)
        block = (c @ grey.astype(np.float64) @ c.T)[:8, :8].reshape(-1)
        assert (theirs == (block > np.median(block))).all()
