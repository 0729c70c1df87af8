"""Near-duplicate search in Hamming space: multi-index hashing over bands of 64-bit hashes.

Multi-index hashing (Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with Multi-Index
Hashing", CVPR 2012; the pigeonhole idea goes back to Greene, Parnas and Yao, 1994): cut every
64-bit hash into ``m`` disjoint bands and index each band in its own table. Write the threshold
as ``t = m*q + a`` with ``0 <= a < m``. If two hashes are within Hamming distance ``t``, then one
of the first ``a + 1`` bands differs in at most ``q`` bits, or one of the other bands in at most
``q - 1`` bits (otherwise the bands would add up to at least ``(a+1)(q+1) + (m-a-1)q = t + 1``
differing bits). So probing each band's table with every value within that radius of the
query's band finds *every* pair within ``t``: candidates are then checked with the full Hamming
distance, and the search is exact, not approximate. With ``m = t + 1`` bands the radius is 0
everywhere (exact band matches); fewer, wider bands trade probes for smaller buckets.
:func:`choose_bands` picks ``m`` from a cost model (probes plus expected candidates for evenly
spread hashes), close to Norouzi et al.'s ``m ~ 64 / log2(N)``.

:func:`brute_force_pairs` is the all-pairs reference the index is tested and benchmarked
against: it returns the same pairs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from datafactory.audit.hashing import HASH_BITS, popcount

__all__ = ["HammingPairs", "MultiIndexHash", "band_layout", "brute_force_pairs", "choose_bands", "search_pairs"]

_DIRECT_TABLE_BITS = 20  # bands this narrow are looked up in an offset table of 2**bits entries
_PROBES_PER_CHUNK = 1 << 21  # queries are processed in chunks of about this many probes
_BRUTE_CHUNK = 1 << 22  # pair distances held at once by the brute-force search


@dataclass(frozen=True)
class HammingPairs:
    """Pairs ``(query[i], index[j])`` within the threshold, sorted by ``(i, j)``.

    Attributes:
        query: int64 positions in the query hashes.
        index: int64 positions in the indexed hashes.
        distance: their Hamming distances (int64).
    """

    query: np.ndarray
    index: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.query)

    def as_set(self) -> set[tuple[int, int]]:
        """The pairs as a set of ``(query, index)`` tuples (for comparisons)."""
        return set(zip(self.query.tolist(), self.index.tolist()))


def _check_hashes(hashes: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(hashes)
    if array.ndim != 1 or not (array.dtype == np.uint64 or (array.dtype.kind in "iu" and (array.size == 0 or array.min() >= 0))):
        raise ValueError(f"{name} must be a 1-D array of uint64 hashes, got dtype {array.dtype} and shape {array.shape}")
    return array.astype(np.uint64, copy=False)


def _check_threshold(threshold: int) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or not 0 <= threshold < HASH_BITS:
        raise ValueError(f"threshold must be an int in [0, {HASH_BITS - 1}], got {threshold!r}")
    return int(threshold)


def band_layout(bands: int, bits: int = HASH_BITS) -> list[tuple[int, int]]:
    """``(shift, width)`` of ``bands`` contiguous bands covering ``bits`` bits, widths differing by at most 1."""
    if isinstance(bands, bool) or not isinstance(bands, (int, np.integer)) or not 1 <= bands <= bits:
        raise ValueError(f"bands must be an int in [1, {bits}], got {bands!r}")
    widths = [bits // bands + (1 if b < bits % bands else 0) for b in range(bands)]
    layout, shift = [], bits
    for width in widths:
        shift -= width
        layout.append((shift, width))
    return layout


def band_radii(threshold: int, bands: int) -> list[int]:
    """The search radius of each band (``q`` for the first ``a + 1`` bands, ``q - 1`` after; -1 = not probed)."""
    q, a = divmod(threshold, bands)
    return [q if b <= a else q - 1 for b in range(bands)]


def _probe_count(width: int, radius: int) -> int:
    return sum(math.comb(width, k) for k in range(radius + 1))


def choose_bands(count: int, threshold: int) -> int:
    """The number of bands (1..threshold+1) that minimises probes plus expected candidates per query.

    The model assumes evenly spread hashes: a probe costs 1 and finds ``count / 2**width``
    candidates on average, each costing 1 to check. Real hashes cluster, which favours more,
    narrower bands less than it favours fewer; the model is a starting point, and ``bands`` can
    always be given explicitly.
    """
    threshold = _check_threshold(threshold)
    best, best_cost = threshold + 1, math.inf
    for bands in range(1, threshold + 2):
        cost = 0.0
        for (_, width), radius in zip(band_layout(bands), band_radii(threshold, bands)):
            if radius < 0:
                continue
            probes = _probe_count(width, radius)
            cost += probes * (1.0 + max(count, 1) / 2.0**width)
        if cost < best_cost:
            best, best_cost = bands, cost
    return best


def _masks(width: int, radius: int) -> np.ndarray:
    """Every ``width``-bit value with at most ``radius`` set bits (the XOR probes of one band)."""
    masks = [0]
    for k in range(1, radius + 1):
        masks.extend(sum(1 << bit for bit in bits) for bits in itertools.combinations(range(width), k))
    return np.array(masks, dtype=np.uint64)


def _expand(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``range(s, s + c)`` for every ``(s, c)`` (vectorised)."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - (ends - counts), counts)
    return offsets + np.arange(total, dtype=np.int64)


class _Band:
    """One band's table: the indexed positions sorted by band value, and a way to find a bucket."""

    def __init__(self, values: np.ndarray, shift: int, width: int, radius: int) -> None:
        self.shift, self.width, self.radius = shift, width, radius
        self.mask = np.uint64((1 << width) - 1)
        self.order = np.argsort(values, kind="stable").astype(np.int64)
        self.sorted = values[self.order]
        self.hashes: np.ndarray | None = None  # the full hashes in bucket order, set by the index
        self.offsets = None
        if width <= _DIRECT_TABLE_BITS:  # bucket b is order[offsets[b]:offsets[b + 1]]
            counts = np.bincount(values.astype(np.int64), minlength=1 << width)
            self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.probes = _masks(width, radius)

    def values(self, hashes: np.ndarray) -> np.ndarray:
        return (hashes >> np.uint64(self.shift)) & self.mask

    def buckets(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(start, count)`` in :attr:`order` of each probed band value."""
        if self.offsets is not None:
            as_index = probes.astype(np.int64)
            starts = self.offsets[as_index]
            return starts, self.offsets[as_index + 1] - starts
        starts = np.searchsorted(self.sorted, probes, side="left")
        return starts, np.searchsorted(self.sorted, probes, side="right") - starts


class MultiIndexHash:
    """An index of 64-bit hashes answering "every indexed hash within ``threshold`` bits of a query".

    Args:
        hashes: uint64 ``[N]`` hashes to index (e.g. pHashes of the training split).
        threshold: the largest Hamming distance reported (0-63).
        bands: number of bands ``m`` (1..threshold+1); default :func:`choose_bands`.

    The search is exact (see the module docstring): :meth:`search` returns the same pairs as
    :func:`brute_force_pairs`.
    """

    def __init__(self, hashes: np.ndarray, threshold: int, *, bands: int | None = None) -> None:
        self.hashes = _check_hashes(hashes, "hashes")
        self.threshold = _check_threshold(threshold)
        if bands is None:
            bands = choose_bands(len(self.hashes), self.threshold)
        if isinstance(bands, bool) or not isinstance(bands, (int, np.integer)) or not 1 <= bands <= self.threshold + 1:
            raise ValueError(f"bands must be an int in [1, threshold + 1 = {self.threshold + 1}], got {bands!r}")
        self.bands = int(bands)
        self._tables = [
            _Band((self.hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1), shift, width, radius)
            for (shift, width), radius in zip(band_layout(self.bands), band_radii(self.threshold, self.bands))
            if radius >= 0
        ]
        for table in self._tables:  # candidates are read in bucket order: contiguous runs, not scattered
            table.hashes = self.hashes[table.order]

    def __len__(self) -> int:
        return len(self.hashes)

    def __repr__(self) -> str:
        return f"MultiIndexHash(hashes={len(self)}, threshold={self.threshold}, bands={self.bands})"

    def search(self, queries: np.ndarray, *, self_join: bool = False) -> HammingPairs:
        """All ``(query i, indexed j)`` pairs within the threshold.

        Args:
            queries: uint64 ``[M]`` hashes.
            self_join: ``queries`` are the indexed hashes themselves: report each unordered pair
                once (``i < j``) and never an item with itself.
        """
        queries = _check_hashes(queries, "queries")
        if self_join and len(queries) != len(self.hashes):
            raise ValueError(f"self_join needs the indexed hashes as queries ({len(self.hashes)}), got {len(queries)}")
        found_q, found_i, found_d = [], [], []
        widest = max((len(t.probes) for t in self._tables), default=1)
        chunk = max(1, _PROBES_PER_CHUNK // widest)
        for start in range(0, len(queries), chunk):
            block = queries[start : start + chunk]
            for table in self._tables:
                probes = (table.values(block)[:, None] ^ table.probes[None, :]).reshape(-1)
                starts, counts = table.buckets(probes)
                positions = _expand(starts, counts)
                asking = np.repeat(np.arange(len(block), dtype=np.int64), counts.reshape(len(block), -1).sum(axis=1))
                distance = popcount(block[asking] ^ table.hashes[positions])
                keep = np.flatnonzero(distance <= self.threshold)
                asking, candidates = asking[keep], table.order[positions[keep]]
                if self_join:
                    mine = asking + start < candidates
                    keep, asking, candidates = keep[mine], asking[mine], candidates[mine]
                found_q.append(asking + start)
                found_i.append(candidates)
                found_d.append(distance[keep].astype(np.int64))
        return _unique_pairs(found_q, found_i, found_d, len(self.hashes))


def _unique_pairs(qs: list[np.ndarray], js: list[np.ndarray], ds: list[np.ndarray], n: int) -> HammingPairs:
    """Merge pair lists, dropping repeats (a pair may match in several bands), sorted by (query, index)."""
    if not qs:
        empty = np.zeros(0, dtype=np.int64)
        return HammingPairs(empty, empty.copy(), empty.copy())
    q, j, d = np.concatenate(qs), np.concatenate(js), np.concatenate(ds)
    _, first = np.unique(q * max(n, 1) + j, return_index=True)
    return HammingPairs(q[first], j[first], d[first])


def brute_force_pairs(queries: np.ndarray, hashes: np.ndarray, threshold: int, *, self_join: bool = False) -> HammingPairs:
    """The all-pairs reference: every Hamming distance computed (chunked XOR + popcount).

    Same arguments and result as :meth:`MultiIndexHash.search`.
    """
    queries, hashes = _check_hashes(queries, "queries"), _check_hashes(hashes, "hashes")
    threshold = _check_threshold(threshold)
    chunk = max(1, _BRUTE_CHUNK // max(len(hashes), 1))
    found_q, found_i, found_d = [], [], []
    for start in range(0, len(queries), chunk):
        distance = popcount(queries[start : start + chunk, None] ^ hashes[None, :])
        if self_join:
            rows = np.arange(start, start + len(distance))[:, None]
            distance = np.where(np.arange(len(hashes))[None, :] > rows, distance, HASH_BITS)
        q, j = np.nonzero(distance <= threshold)
        found_q.append(q.astype(np.int64) + start)
        found_i.append(j.astype(np.int64))
        found_d.append(distance[q, j].astype(np.int64))
    return _unique_pairs(found_q, found_i, found_d, len(hashes))


def search_pairs(queries: np.ndarray, hashes: np.ndarray, threshold: int, *, bands: int | None = None) -> HammingPairs:
    """Pairs ``(query, indexed)`` within ``threshold`` through a :class:`MultiIndexHash` of ``hashes``."""
    return MultiIndexHash(hashes, threshold, bands=bands).search(queries)
