"""Exact and near duplicates within and across splits, from the columns of :mod:`datafactory.audit.scan`.

Definitions used in the report:

* an exact-duplicate *group* is a set of two or more samples (any splits) with the same digest
  (of the encoded image bytes, or of the decoded pixels);
* ``duplicates_within[split]``: the samples of ``split`` that repeat an earlier sample of the same
  split (a group with ``k`` members in the split counts ``k - 1``);
* ``test_in_train``: the samples of the second split whose digest also occurs in the first;
* a near-duplicate pair is ``(query, match)`` -- a test sample and a train sample, or two samples
  of one split -- with pHash Hamming distance at most the
  threshold (found by :class:`datafactory.audit.neardup.MultiIndexHash`; exact duplicates are
  near duplicates at distance 0 and are included, flagged ``exact_pixels``); with embeddings, a
  pair whose cosine similarity is at least the embedding threshold.

Pairs whose labels differ are flagged ``label_conflict``: a leaked test sample with another label
is a labelling error in one of the two splits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from datafactory.audit.neardup import MultiIndexHash
from datafactory.audit.scan import SplitScan

__all__ = ["embedding_pairs", "exact_duplicates", "phash_pairs"]


def exact_duplicates(scans: Sequence[SplitScan], attribute: str,
                     max_listed: int) -> tuple[dict[str, Any], list[list[tuple[int, int]]]]:
    """Groups of samples with equal digests (``attribute``: ``"byte_digests"`` or ``"pixel_digests"``).

    Returns:
        ``(summary, groups)``: the JSON summary (counts, the first ``max_listed`` groups by key)
        and every group as ``[(split number, row), ...]``, groups spanning splits first.
    """
    members: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for number, scan in enumerate(scans):
        for row, digest in enumerate(getattr(scan, attribute)):
            if digest is not None:
                members[digest].append((number, row))
    groups = [(digest, group) for digest, group in members.items() if len(group) > 1]
    groups.sort(key=lambda entry: (-len({n for n, _ in entry[1]}), -len(entry[1]), entry[1][0]))
    within = {scan.name: 0 for scan in scans}
    for _, group in groups:
        for number, scan in enumerate(scans):
            count = sum(1 for n, _ in group if n == number)
            within[scan.name] += max(0, count - 1)
    summary: dict[str, Any] = {
        "groups": len(groups),
        "duplicates_within": within,
        "test_in_train": None,
        "listed": [
            {"digest": digest, "across": len({n for n, _ in group}) > 1,
             "members": [{"split": scans[n].name, "key": scans[n].keys[row]} for n, row in group]}
            for digest, group in groups[:max_listed]
        ],
        "truncated": len(groups) > max_listed,
    }
    if len(scans) > 1:
        first = {digest for digest in getattr(scans[0], attribute) if digest is not None}
        summary["test_in_train"] = sum(1 for digest in getattr(scans[1], attribute) if digest is not None and digest in first)
    return summary, [group for _, group in groups]


def _multilabel(scan: SplitScan) -> dict[int, np.ndarray]:
    return dict(zip(scan.multilabel_rows, scan.multilabels))


def _label_conflict(a: SplitScan, row_a: int, b: SplitScan, row_b: int,
                    ml_a: Mapping[int, np.ndarray], ml_b: Mapping[int, np.ndarray]) -> bool:
    la, lb = a.labels[row_a], b.labels[row_b]
    if la is not None and lb is not None and la != lb:
        return True
    va, vb = ml_a.get(row_a), ml_b.get(row_b)
    return va is not None and vb is not None and (va.shape != vb.shape or not np.array_equal(va, vb, equal_nan=True))


def _pair_records(query: SplitScan, rows_q: np.ndarray, index: SplitScan, rows_i: np.ndarray, scores: np.ndarray,
                  score_name: str, max_listed: int) -> list[dict[str, Any]]:
    ml_q, ml_i = _multilabel(query), _multilabel(index)
    records = []
    for rq, ri, score in zip(rows_q[:max_listed].tolist(), rows_i[:max_listed].tolist(), scores[:max_listed].tolist()):
        records.append({
            "query": query.keys[rq], "match": index.keys[ri], score_name: score,
            "exact_pixels": query.pixel_digests[rq] is not None and query.pixel_digests[rq] == index.pixel_digests[ri],
            "query_label": query.labels[rq], "match_label": index.labels[ri],
            "label_conflict": _label_conflict(query, rq, index, ri, ml_q, ml_i),
        })
    return records


def _summary(query: SplitScan, index: SplitScan, rows_q: np.ndarray, rows_i: np.ndarray, scores: np.ndarray,
             score_name: str, max_listed: int, self_join: bool) -> dict[str, Any]:
    images = len(query.image_rows)
    matched = len(np.unique(np.concatenate([rows_q, rows_i]) if self_join else rows_q))
    return {
        "query_split": query.name,
        "match_split": index.name,
        "pairs": int(len(rows_q)),
        "samples_with_match": matched,
        "share_with_match": matched / images if images else None,
        "listed": _pair_records(query, rows_q, index, rows_i, scores, score_name, max_listed),
        "truncated": len(rows_q) > max_listed,
    }


def phash_pairs(query: SplitScan, index: SplitScan | None, threshold: int, bands: int | None,
                max_listed: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """Near-duplicate pairs by pHash: ``query`` against ``index``, or within ``query`` when ``index`` is ``None``.

    Returns:
        ``(summary, query rows, index rows, distances)``, pairs sorted by distance then rows.
    """
    self_join = index is None
    target = query if self_join else index
    table = MultiIndexHash(target.phash, threshold, bands=bands)
    found = table.search(query.phash, self_join=self_join)
    order = np.lexsort((found.index, found.query, found.distance))
    rows_q = np.asarray(query.image_rows, dtype=np.int64)[found.query[order]]
    rows_i = np.asarray(target.image_rows, dtype=np.int64)[found.index[order]]
    distance = found.distance[order]
    summary = {"threshold": threshold, "bands": table.bands,
               **_summary(query, target, rows_q, rows_i, distance, "distance", max_listed, self_join)}
    return summary, rows_q, rows_i, distance


def embedding_pairs(query: SplitScan, index: SplitScan, threshold: float,
                    max_listed: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """Near-duplicate pairs by cosine similarity of embeddings (``query`` against ``index``), most similar first."""
    from datafactory.audit.embed import cosine_pairs

    q, i, similarity = cosine_pairs(query.embeddings, index.embeddings, threshold)
    order = np.lexsort((i, q, -similarity))
    rows_q = np.asarray(query.embedding_rows, dtype=np.int64)[q[order]]
    rows_i = np.asarray(index.embedding_rows, dtype=np.int64)[i[order]]
    similarity = similarity[order]
    summary = {"threshold": threshold,
               **_summary(query, index, rows_q, rows_i, np.round(similarity, 6), "similarity", max_listed, False)}
    return summary, rows_q, rows_i, similarity
