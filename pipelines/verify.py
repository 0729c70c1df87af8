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
from pipelines.manifest import read_index, read_json_file, sidecar_name
from pipelines.tario import ShardError, iter_shard_samples
from pipelines.writer import input_problems

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


def _sidecar(folder: Path, shard: str) -> dict[str, Any] | None:
    """A shard's ``.stats.json`` sidecar, ``None`` when absent; must be a JSON object."""
    path = folder / sidecar_name(shard)
    if not path.exists():
        return None
    record = read_json_file(path)
    if not isinstance(record, dict):
        raise ShardError(f"{str(path)!r}: must be a JSON object, got {type(record).__name__}")
    return record


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
    shard_set = read_index(path)  # names confined to the folder, types checked
    folder, index = shard_set.folder, shard_set.index
    report = VerifyReport()
    expected = set(index.get("schema", {}).get("suffixes", []))  # types checked by read_index
    for listed in shard_set.shards:
        name, tar, entry = listed.name, listed.path, listed.entry
        report.shards += 1
        if not tar.is_file():
            report.problems.append(f"{name}: missing")
            continue
        if tar.stat().st_size != entry.get("bytes"):
            report.problems.append(f"{name}: {tar.stat().st_size} bytes, index says {entry.get('bytes')}")
        if _sha256(tar) != entry.get("sha256"):
            report.problems.append(f"{name}: sha256 mismatch")
        try:
            stats = _sidecar(folder, name)
        except ShardError as error:
            report.problems.append(f"{name}: sidecar {sidecar_name(name)}: {error}")
        else:
            if stats is None:
                report.problems.append(f"{name}: missing sidecar {sidecar_name(name)}")
            elif stats.get("sha256") != entry.get("sha256"):
                report.problems.append(f"{name}: sidecar and index disagree on sha256")
        count = 0
        try:
            for sample in iter_shard_samples(tar, read_data=decode):
                count += 1
                check_suffixes(sample, str(tar))
                suffixes = set(sample) - {KEY}
                if not suffixes <= expected:
                    report.problems.append(f"{name}: sample {sample[KEY]!r} has {sorted(suffixes - expected)}, not in the schema {sorted(expected)}")
                if decode:
                    try:
                        decode_sample(sample)
                    except CodecError as error:
                        report.problems.append(f"{name}: sample {sample[KEY]!r} does not decode: {error}")
        except ShardError as error:
            report.problems.append(str(error))
        if count != listed.count:
            report.problems.append(f"{name}: {count} samples, index says {listed.count}")
        report.samples += count
    if report.samples != index.get("count"):
        report.problems.append(f"set has {report.samples} samples, index says {index.get('count')}")
    report.problems.extend(input_problems(folder, [listed.name for listed in shard_set.shards]))  # builder's records
    if raise_on_error and report.problems:
        raise ShardError(f"{str(folder)!r} failed verification:\n  " + "\n  ".join(report.problems))
    return report


def inspect_shards(path: str | os.PathLike, *, samples: int = 1) -> dict[str, Any]:
    """A summary of a shard set: counts, sizes, schema, skip reasons and the first sample(s)."""
    shard_set = read_index(path)  # names confined to the folder, types checked
    folder, index = shard_set.folder, shard_set.index
    reasons: Counter[str] = Counter()
    for listed in shard_set.shards:
        stats = _sidecar(folder, listed.name)
        skipped = [] if stats is None else stats.get("skipped", [])
        if not isinstance(skipped, list) or not all(isinstance(k, dict) and isinstance(k.get("reason"), str)
                                                    for k in skipped):
            sidecar = str(folder / sidecar_name(listed.name))
            raise ShardError(f"{sidecar!r}: 'skipped' must be a list of {{'reason': str}} objects")
        for skip in skipped:
            reasons[skip["reason"].rsplit(": ", 1)[-1]] += 1
    first = []
    if shard_set.shards and samples > 0:
        head = shard_set.shards[0]
        for sample in iter_shard_samples(head.path, limit=samples, count=head.count):
            check_suffixes(sample, head.name)
            first.append(summarize_sample(decode_sample(sample)))
    return {
        "path": str(folder),
        "shards": len(shard_set.shards),
        "samples": index.get("count"),
        "skipped": index.get("skipped"),
        "bytes": sum(s.entry.get("bytes", 0) for s in shard_set.shards),
        "schema": index.get("schema"),
        "source": index.get("source"),
        "config": index.get("config"),
        "skip_reasons": dict(reasons.most_common(10)),
        "first_samples": first,
    }


def preview_shards(path: str | os.PathLike, out: str | os.PathLike, *, count: int = 16, size: int = 128, columns: int = 8) -> Path:
    """Write a PNG grid of the first ``count`` images of a shard set (resized to ``size``)."""
    import torch
    from torchvision.transforms.v2 import functional as F
    from torchvision.utils import make_grid

    from loaders import encode

    shard_set = read_index(path)  # names confined to the folder, types checked
    folder = shard_set.folder
    images = []
    for listed in shard_set.shards:
        for sample in iter_shard_samples(listed.path, count=listed.count):
            check_suffixes(sample, listed.name)
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
