"""Check, summarise and preview shard sets: ``verify_shards``, ``inspect_shards``, ``preview_shards``.

``verify_shards`` re-reads every shard and checks, against ``index.json`` and the sidecars: the
sha256 and size of each tar, its sample count, that every member name is safe and every member
decodes through the codec table, and that every sample has the schema's suffixes.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loaders import CodecError, decode_sample, summarize_sample
from loaders.schema import KEY
from pipelines.loader import check_suffixes
from pipelines.tario import ShardError, iter_shard_samples
from pipelines.writer import read_json

__all__ = ["VerifyReport", "inspect_shards", "preview_shards", "verify_shards"]


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_shards`: ``ok`` when ``problems`` is empty."""

    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _load_index(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    folder = Path(path)
    if folder.name == "index.json":
        folder = folder.parent
    index_file = folder / "index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"no index.json in {str(folder)!r}: not a finished shard set (rerun the build to resume it)")
    return folder, read_json(index_file)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_shards(path: str | os.PathLike, *, decode: bool = True, raise_on_error: bool = False) -> VerifyReport:
    """Verify a shard set (see the module docstring).

    Args:
        path: the shard folder (or its ``index.json``).
        decode: decode every member (``False``: names, suffixes, counts and checksums only).
        raise_on_error: raise :class:`ShardError` listing the problems instead of returning them.
    """
    folder, index = _load_index(path)
    report = VerifyReport()
    expected = set(index.get("schema", {}).get("suffixes", []))
    for entry in index["shards"]:
        tar = folder / entry["shard"]
        report.shards += 1
        if not tar.is_file():
            report.problems.append(f"{entry['shard']}: missing")
            continue
        if tar.stat().st_size != entry["bytes"]:
            report.problems.append(f"{entry['shard']}: {tar.stat().st_size} bytes, index says {entry['bytes']}")
        if _sha256(tar) != entry["sha256"]:
            report.problems.append(f"{entry['shard']}: sha256 mismatch")
        stats_file = tar.with_name(entry["shard"].replace(".tar", ".stats.json"))
        if not stats_file.is_file():
            report.problems.append(f"{entry['shard']}: missing sidecar {stats_file.name}")
        elif read_json(stats_file).get("sha256") != entry["sha256"]:
            report.problems.append(f"{entry['shard']}: sidecar and index disagree on sha256")
        count = 0
        try:
            for sample in iter_shard_samples(tar, read_data=decode):
                count += 1
                check_suffixes(sample, str(tar))
                suffixes = set(sample) - {KEY}
                if not suffixes <= expected:
                    report.problems.append(f"{entry['shard']}: sample {sample[KEY]!r} has {sorted(suffixes - expected)}, not in the schema {sorted(expected)}")
                if decode:
                    try:
                        decode_sample(sample)
                    except CodecError as error:
                        report.problems.append(f"{entry['shard']}: sample {sample[KEY]!r} does not decode: {error}")
        except ShardError as error:
            report.problems.append(str(error))
        if count != entry["count"]:
            report.problems.append(f"{entry['shard']}: {count} samples, index says {entry['count']}")
        report.samples += count
    if report.samples != index.get("count"):
        report.problems.append(f"set has {report.samples} samples, index says {index.get('count')}")
    if raise_on_error and report.problems:
        raise ShardError(f"{str(folder)!r} failed verification:\n  " + "\n  ".join(report.problems))
    return report


def inspect_shards(path: str | os.PathLike, *, samples: int = 1) -> dict[str, Any]:
    """A summary of a shard set: counts, sizes, schema, skip reasons and the first sample(s)."""
    folder, index = _load_index(path)
    reasons: Counter[str] = Counter()
    for entry in index["shards"]:
        stats_file = folder / entry["shard"].replace(".tar", ".stats.json")
        if stats_file.is_file():
            for skip in read_json(stats_file)["skipped"]:
                reasons[skip["reason"].rsplit(": ", 1)[-1]] += 1
    first = []
    if index["shards"] and samples > 0:
        for sample in iter_shard_samples(folder / index["shards"][0]["shard"], limit=samples):
            check_suffixes(sample, index["shards"][0]["shard"])
            first.append(summarize_sample(decode_sample(sample)))
    return {
        "path": str(folder),
        "shards": len(index["shards"]),
        "samples": index["count"],
        "skipped": index["skipped"],
        "bytes": sum(s["bytes"] for s in index["shards"]),
        "schema": index["schema"],
        "source": index["source"],
        "config": index["config"],
        "skip_reasons": dict(reasons.most_common(10)),
        "first_samples": first,
    }


def preview_shards(path: str | os.PathLike, out: str | os.PathLike, *, count: int = 16, size: int = 128, columns: int = 8) -> Path:
    """Write a PNG grid of the first ``count`` images of a shard set (resized to ``size``)."""
    import torch
    from torchvision.transforms.v2 import functional as F
    from torchvision.utils import make_grid

    from loaders import encode

    folder, index = _load_index(path)
    images = []
    for entry in index["shards"]:
        for sample in iter_shard_samples(folder / entry["shard"]):
            check_suffixes(sample, entry["shard"])
            decoded = decode_sample(sample, image_mode="RGB")
            if "image" in decoded:
                image = decoded["image"]
                if image.dtype != torch.uint8:
                    image = (image.float() / image.float().amax().clamp_min(1) * 255).to(torch.uint8)
                images.append(F.resize(image, [size, size], antialias=True))
            if len(images) >= count:
                break
        if len(images) >= count:
            break
    if not images:
        raise ValueError(f"{str(folder)!r} has no samples with an image field to preview")
    grid = make_grid(torch.stack(images), nrow=columns, padding=2)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encode("png", grid))
    return target
