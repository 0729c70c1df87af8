"""Multi-index hashing returns exactly the brute-force pairs (pigeonhole: exact recall)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datafactory.audit.neardup import MultiIndexHash, band_layout, band_radii, brute_force_pairs, choose_bands


def _probes(width: int, radius: int) -> int:
    return sum(math.comb(width, k) for k in range(radius + 1))


def _random_hashes(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 2**63, size=count, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, size=count, dtype=np.uint64)


def _plant(rng: np.random.Generator, index: np.ndarray, queries: np.ndarray, threshold: int, count: int) -> dict[int, int]:
    """Overwrite ``count`` queries with copies of indexed hashes flipped in 0..threshold bits."""
    planted = {}
    for q in rng.choice(len(queries), size=count, replace=False):
        j = int(rng.integers(len(index)))
        flips = rng.choice(64, size=int(rng.integers(0, threshold + 1)), replace=False)
        queries[q] = index[j] ^ np.uint64(sum(1 << int(bit) for bit in flips))
        planted[int(q)] = j
    return planted


@pytest.mark.parametrize("threshold", [0, 1, 3, 6, 10])
def test_every_band_count_finds_the_brute_force_pairs(threshold):
    rng = np.random.default_rng(threshold)
    index, queries = _random_hashes(rng, 3000), _random_hashes(rng, 400)
    planted = _plant(rng, index, queries, threshold, 60)
    reference = brute_force_pairs(queries, index, threshold)
    assert set(planted.items()) <= reference.as_set()
    for bands in range(1, threshold + 2):
        if max(_probes(width, radius) for (_, width), radius in zip(band_layout(bands), band_radii(threshold, bands))) > 3000:
            continue  # few wide bands probe sum(C(width, k), k <= radius) values per query: correct, but slow here
        found = MultiIndexHash(index, threshold, bands=bands).search(queries)
        assert found.as_set() == reference.as_set(), bands
        assert np.array_equal(found.distance, reference.distance)


def test_clustered_hashes_with_duplicates_and_self_join():
    rng = np.random.default_rng(7)
    centres = _random_hashes(rng, 20)
    index = np.array([c ^ np.uint64(1 << int(rng.integers(64))) for c in rng.choice(centres, 800)], dtype=np.uint64)
    index[:50] = index[50:100]  # exact repeats inside the index
    for threshold in (2, 8):
        table = MultiIndexHash(index, threshold)
        assert table.search(index, self_join=True).as_set() == brute_force_pairs(index, index, threshold, self_join=True).as_set()
        pairs = table.search(index, self_join=True)
        assert (pairs.query < pairs.index).all() and len(pairs) > 1000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=60),
    st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=30),
    st.integers(0, 12),
    st.data(),
)
def test_property_equal_to_brute_force(index, queries, threshold, data):
    bands = data.draw(st.integers(max(1, threshold // 3), threshold + 1))
    index, queries = np.array(index, dtype=np.uint64), np.array(queries, dtype=np.uint64)
    # near copies of indexed hashes make matches likely
    queries = np.concatenate([queries, index[: len(index) // 2] ^ np.uint64(0b1011)])
    found = MultiIndexHash(index, threshold, bands=bands).search(queries)
    assert found.as_set() == brute_force_pairs(queries, index, threshold).as_set()


def test_band_layout_and_radii_cover_the_threshold():
    for bands in range(1, 20):
        layout = band_layout(bands)
        assert sum(width for _, width in layout) == 64 and layout[-1][0] == 0
        assert max(w for _, w in layout) - min(w for _, w in layout) <= 1
        for threshold in range(bands - 1, 30):
            radii = band_radii(threshold, bands)
            # pigeonhole: any split of more than `threshold` differing bits exceeds some radius...
            # ...and exceeding every band's radius needs sum(radius + 1) = threshold + 1 bits
            assert sum(r + 1 for r in radii) == threshold + 1
    # about 64 / log2(N) bands for large N (Norouzi et al.), more and narrower for small N
    assert choose_bands(100_000, 10) == 4 and choose_bands(10, 10) == 11
    for threshold in (2, 6, 10, 16):
        counts = [choose_bands(n, threshold) for n in (10, 100, 1000, 10_000, 100_000, 1_000_000)]
        assert counts == sorted(counts, reverse=True) and all(1 <= c <= threshold + 1 for c in counts)


def test_bad_arguments():
    hashes = np.zeros(4, dtype=np.uint64)
    with pytest.raises(ValueError, match="threshold"):
        MultiIndexHash(hashes, 64)
    with pytest.raises(ValueError, match="bands"):
        MultiIndexHash(hashes, 3, bands=5)
    with pytest.raises(ValueError, match="uint64"):
        MultiIndexHash(np.zeros((2, 2), dtype=np.uint64), 3)
    with pytest.raises(ValueError, match="self_join"):
        MultiIndexHash(hashes, 3).search(hashes[:2], self_join=True)
    assert len(MultiIndexHash(np.zeros(0, dtype=np.uint64), 3).search(hashes)) == 0
