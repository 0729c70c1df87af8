"""AudioSet metadata: segment CSVs, the 527-class index and the ontology.

Formats (Gemmeke et al., 2017, "Audio Set: An ontology and human-labeled dataset for audio
events"; https://research.google.com/audioset/download.html; PANNs, Kong et al., 2020,
arXiv 1912.10211, ``audioset_tagging_cnn``):

* segment CSVs (``eval_segments.csv``, ``balanced_train_segments.csv``,
  ``unbalanced_train_segments.csv``): three ``#`` comment lines (PANNs' split partial CSVs have
  three literal ``empty`` lines instead), then ``YTID, start_seconds, end_seconds,
  "mid1,mid2"`` -- fields separated by comma + space, the label list double-quoted. A plain
  ``csv.reader`` splits the labels; ``skipinitialspace=True`` is required.
* ``class_labels_indices.csv``: ``index,mid,display_name`` with quoted names; row order is the
  model output index.
* ``ontology.json``: a list of nodes ``{id, name, description, citation_uri, positive_examples,
  child_ids, restrictions}``; ``restrictions`` holds ``"abstract"`` / ``"blacklist"``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from loaders.fileio import open_regular_file

__all__ = ["Ontology", "Segment", "SegmentError", "read_class_labels", "read_segments"]


class Segment(NamedTuple):
    """One row of a segment CSV (``line`` is 1-based, for error messages)."""

    ytid: str
    start: float
    end: float
    mids: tuple[str, ...]
    line: int


class SegmentError(NamedTuple):
    """A malformed segment row: where and why."""

    path: str
    line: int
    reason: str
    ytid: str | None


def read_segments(path: str | os.PathLike) -> tuple[list[Segment], list[SegmentError]]:
    """Parse a segment CSV into rows and a list of malformed rows (never silently dropped).

    Comment lines (``#``), blank lines and PANNs' ``empty`` placeholder lines are skipped.
    """
    rows: list[Segment] = []
    errors: list[SegmentError] = []
    name = os.fspath(path)
    with open_regular_file(path, "r", newline="", encoding="utf-8") as handle:
        for number, fields in enumerate(csv.reader(handle, skipinitialspace=True), start=1):
            if not fields or not "".join(fields).strip() or fields[0].startswith("#") or fields == ["empty"]:
                continue
            ytid = fields[0].strip() or None
            if len(fields) != 4:
                errors.append(SegmentError(name, number, f"expected 4 fields (YTID, start, end, labels), got {len(fields)}", ytid))
                continue
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                errors.append(SegmentError(name, number, f"start/end are not numbers: {fields[1]!r}, {fields[2]!r}", ytid))
                continue
            mids = tuple(m.strip() for m in fields[3].split(",") if m.strip())
            if ytid is None or end <= start or not mids:
                errors.append(SegmentError(name, number, "empty YTID or label list, or end <= start", ytid))
                continue
            rows.append(Segment(ytid, start, end, mids, number))
    return rows, errors


def read_class_labels(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Read ``class_labels_indices.csv`` into ``(mids, display_names)`` in index order.

    Raises:
        ValueError: wrong header, or indices that are not ``0..K-1`` in order.
    """
    with open_regular_file(path, "r", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["index", "mid", "display_name"]:
            raise ValueError(f"{os.fspath(path)!r}: expected header 'index,mid,display_name', got {header!r}")
        mids, names = [], []
        for number, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != 3 or fields[0].strip() != str(len(mids)):
                raise ValueError(f"{os.fspath(path)!r} line {number}: expected '{len(mids)},<mid>,<name>', got {fields!r}")
            mids.append(fields[1].strip())
            names.append(fields[2])
    if len(set(mids)) != len(mids):
        raise ValueError(f"{os.fspath(path)!r}: duplicate MIDs")
    return mids, names


class Ontology:
    """The AudioSet ontology graph (a DAG: a node may have several parents).

    >>> onto = Ontology([{"id": "/m/a", "name": "A", "child_ids": ["/m/b"], "restrictions": []},
    ...                  {"id": "/m/b", "name": "B", "child_ids": [], "restrictions": ["abstract"]}])
    >>> onto.ancestors("/m/b"), onto.descendants("/m/a"), onto.restrictions("/m/b")
    (['/m/a'], ['/m/b'], ('abstract',))
    """

    def __init__(self, nodes: Iterable[dict]) -> None:
        self._nodes: dict[str, dict] = {}
        for node in nodes:
            if not isinstance(node, dict) or not isinstance(node.get("id"), str):
                raise ValueError(f"ontology nodes must be objects with a string 'id', got {node!r:.80}")
            self._nodes[node["id"]] = node
        self._parents: dict[str, list[str]] = {mid: [] for mid in self._nodes}
        for mid, node in self._nodes.items():
            for child in node.get("child_ids", []):
                if child not in self._nodes:
                    raise ValueError(f"ontology node {mid!r} lists unknown child {child!r}")
                self._parents[child].append(mid)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Ontology:
        """Load ``ontology.json``."""
        with open_regular_file(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, list):
            raise ValueError(f"{os.fspath(path)!r}: ontology.json must hold a JSON list")
        return cls(data)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, mid: object) -> bool:
        return mid in self._nodes

    def _node(self, mid: str) -> dict:
        try:
            return self._nodes[mid]
        except KeyError:
            raise KeyError(f"unknown ontology id {mid!r}") from None

    def name(self, mid: str) -> str:
        """The display name of ``mid``."""
        return self._node(mid).get("name", "")

    def children(self, mid: str) -> list[str]:
        """Direct children, in file order."""
        return list(self._node(mid).get("child_ids", []))

    def parents(self, mid: str) -> list[str]:
        """Direct parents."""
        self._node(mid)
        return list(self._parents[mid])

    def ancestors(self, mid: str) -> list[str]:
        """Every ancestor, nearest first (breadth-first, each once)."""
        return self._walk(mid, self.parents)

    def descendants(self, mid: str) -> list[str]:
        """Every descendant, nearest first (breadth-first, each once)."""
        return self._walk(mid, self.children)

    def restrictions(self, mid: str) -> tuple[str, ...]:
        """The node's restrictions (subset of ``("abstract", "blacklist")``)."""
        return tuple(self._node(mid).get("restrictions", []))

    def roots(self) -> list[str]:
        """Nodes without parents, in file order."""
        return [mid for mid in self._nodes if not self._parents[mid]]

    def expand(self, mids: Sequence[str]) -> list[str]:
        """``mids`` plus all their ancestors (each once, input order first)."""
        out = list(dict.fromkeys(mids))
        seen = set(out)
        for mid in list(out):
            for up in self.ancestors(mid):
                if up not in seen:
                    seen.add(up)
                    out.append(up)
        return out

    @staticmethod
    def _walk(mid: str, step) -> list[str]:
        out, seen, frontier = [], {mid}, list(step(mid))
        while frontier:
            following = []
            for item in frontier:
                if item not in seen:
                    seen.add(item)
                    out.append(item)
                    following.extend(step(item))
            frontier = following
        return out
