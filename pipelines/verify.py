"""Check, summarise and preview shard sets: ``verify_shards``, ``inspect_shards``, ``preview_shards``.

``verify_shards`` re-reads every shard and checks, against ``index.json`` and the sidecars: the
sha256 and size of each tar, its sample count, that every member name is safe and every member
decodes through the codec table, and that every sample has the schema's suffixes.

Without ``index.json`` -- tars written by webdataset, ``tar`` or anyone else, given as a folder
or as one file -- there is no manifest to compare with, and the three functions say so
(``VerifyReport.manifest`` / ``"manifest": False``) and do the structural part: every tar
(``.tar``, ``.tar.gz``, ``.tgz`` in the folder) read whole, as :func:`pipelines.make_loader`
reads a list of tars, with every sample it cannot read, every refused suffix, every member that
does not decode and a tar without its end-of-archive blocks reported, not fatal.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loaders import CodecError, decode_sample, get_codec, summarize_sample
from loaders.schema import KEY
from pipelines.manifest import input_problems, read_index, read_json_file, sidecar_name
from pipelines.tario import ReadStats, ShardError, SuffixCheck, check_suffixes, iter_shard_samples

__all__ = ["FOREIGN_SUFFIXES", "VerifyReport", "foreign_shards", "inspect_shards", "preview_shards", "verify_shards"]

#: The file names read as shards in a folder without ``index.json``.
FOREIGN_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_BUILD_RECORD = ".build.json"


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_shards`: ``ok`` when ``problems`` is empty.

    ``manifest`` is ``False`` when no ``index.json`` was found (a structural check only);
    ``notes`` says what was passed over or could not be checked, without being a problem.
    """

    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)
    manifest: bool = True
    notes: list[str] = field(default_factory=list)

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


def _has_manifest(path: Path) -> bool:
    """Whether ``path`` is a shard set with a manifest (or names an ``index.json``, or does not
    exist: :func:`read_index` then says what is missing)."""
    if path.name == "index.json" or not path.exists():
        return True
    return path.is_dir() and (path / "index.json").exists()


def foreign_shards(path: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """The tars of a folder without ``index.json`` (or ``path`` itself, a file), sorted by name,
    and the problems met listing them.

    In a folder, regular files named ``*.tar``, ``*.tar.gz`` or ``*.tgz`` are read; a symbolic
    link among them is read only when it stays inside the folder (the rule ``index.json`` names
    follow), anything else with such a name is reported.
    """
    path = Path(path)
    if not path.is_dir():
        return [path], []
    real = Path(os.path.realpath(path))
    tars, problems = [], []
    for entry in sorted(path.iterdir()):
        if not entry.name.endswith(FOREIGN_SUFFIXES):
            continue
        if entry.is_symlink() and not Path(os.path.realpath(entry)).is_relative_to(real):
            problems.append(f"{entry.name}: a symbolic link leading out of the folder, not read")
        elif not entry.is_file():
            problems.append(f"{entry.name}: not a regular file, not read")
        else:
            tars.append(entry)
    if not tars and not problems:
        problems.append(f"{str(path)!r}: no index.json and no {'/'.join(FOREIGN_SUFFIXES)} files: nothing to read")
    return tars, problems


def _no_manifest_note(path: Path) -> str:
    where = path if path.is_dir() else path.parent
    note = (f"no manifest (index.json) found for {str(path)!r}: structural check only (tar structure, member names, "
            "suffixes, decoding); no checksums, sample counts or sidecars to compare")
    if (where / _BUILD_RECORD).exists():
        note += f"; {_BUILD_RECORD} is there: an unfinished build? rerun it to finish the set"
    return note


def _read_tar(tar: Path, name: str, *, decode: bool, require_end: bool, stats: ReadStats,
              problems: list[str]) -> Iterator[dict[str, Any]]:
    """The samples of one tar, every problem appended to ``problems`` instead of raised: samples
    it cannot read (skipped, with the reason), members that do not decode, a malformed tar."""
    skipped = len(stats.skipped)
    try:
        for sample in iter_shard_samples(tar, read_data=decode, on_error="skip", stats=stats,
                                         require_end=require_end, check_suffix=SuffixCheck()):
            if decode:
                try:
                    decode_sample(sample)
                except CodecError as error:
                    problems.append(f"{name}: sample {sample[KEY]!r} does not decode: {error}")
            yield sample
    except ShardError as error:
        problems.append(str(error))
    problems.extend(f"{name}: sample {key!r} cannot be read: {reason}" for key, reason in stats.skipped[skipped:])


def _verify_foreign(path: Path, decode: bool) -> VerifyReport:
    report = VerifyReport(manifest=False, notes=[_no_manifest_note(path)])
    tars, report.problems = foreign_shards(path)
    stats = ReadStats()
    suffixes: set[str] = set()
    for tar in tars:
        report.shards += 1
        before = (stats.directories, len(stats.unterminated))
        for sample in _read_tar(tar, tar.name, decode=decode, require_end=False, stats=stats, problems=report.problems):
            report.samples += 1
            suffixes.update(s for s in sample if s != KEY)
        if len(stats.unterminated) > before[1]:
            report.problems.append(f"{tar.name}: ends without the end-of-archive blocks: cut short at a member "
                                   "boundary, or written by a tool that leaves them out (make_loader and webdataset "
                                   "read the samples it holds)")
        if stats.directories > before[0]:
            report.notes.append(f"{tar.name}: {stats.directories - before[0]} directory entries passed over")
    report.notes.append(f"suffixes found: {sorted(suffixes)}")
    return report


def verify_shards(path: str | os.PathLike, *, decode: bool = True, raise_on_error: bool = False) -> VerifyReport:
    """Verify a shard set (see the module docstring).

    Args:
        path: the shard folder (or its ``index.json``); a folder of tars without ``index.json``
            or a single tar gets the structural check (``report.manifest`` is then ``False``).
        decode: decode every member (``False``: names, suffixes, counts and checksums only).
        raise_on_error: raise :class:`ShardError` listing the problems instead of returning them.
    """
    if not _has_manifest(Path(path)):
        report = _verify_foreign(Path(path), decode)
        if raise_on_error and report.problems:
            raise ShardError(f"{os.fspath(path)!r} failed verification:\n  " + "\n  ".join(report.problems))
        return report
    shard_set = read_index(path)  # names confined to the folder, types checked
    folder, index = shard_set.folder, shard_set.index
    report = VerifyReport()
    expected = set(index.get("schema", {}).get("suffixes", []))  # types checked by read_index
    stats = ReadStats()
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
            stats_record = _sidecar(folder, name)
        except ShardError as error:
            report.problems.append(f"{name}: sidecar {sidecar_name(name)}: {error}")
        else:
            if stats_record is None:
                report.problems.append(f"{name}: missing sidecar {sidecar_name(name)}")
            elif stats_record.get("sha256") != entry.get("sha256"):
                report.problems.append(f"{name}: sidecar and index disagree on sha256")
        count = 0
        for sample in _read_tar(tar, name, decode=decode, require_end=True, stats=stats, problems=report.problems):
            count += 1
            suffixes = set(sample) - {KEY}
            if not suffixes <= expected:
                report.problems.append(f"{name}: sample {sample[KEY]!r} has {sorted(suffixes - expected)}, not in the schema {sorted(expected)}")
        if count != listed.count:
            report.problems.append(f"{name}: {count} samples, index says {listed.count}")
        report.samples += count
    if report.samples != index.get("count"):
        report.problems.append(f"set has {report.samples} samples, index says {index.get('count')}")
    report.problems.extend(input_problems(folder, [listed.name for listed in shard_set.shards]))  # builder's records
    if raise_on_error and report.problems:
        raise ShardError(f"{str(folder)!r} failed verification:\n  " + "\n  ".join(report.problems))
    return report


def _summary(sample: dict[str, Any]) -> dict[str, str]:
    """One line per field of a sample (:func:`summarize_sample`); members whose suffix the codec
    table does not know are described, not decoded."""
    known: dict[str, Any] = {KEY: sample[KEY]}
    unknown: dict[str, str] = {}
    for suffix, data in sample.items():
        if suffix == KEY:
            continue
        try:
            get_codec(suffix)
            known[suffix] = data
        except CodecError as error:
            unknown[suffix] = f"{len(data)} bytes, not decoded: {error.reason}"
    try:
        summary = summarize_sample(decode_sample(known))
    except CodecError as error:
        summary = {KEY: repr(sample[KEY]), "error": str(error)}
    return {**summary, **unknown}


def _reason(text: str) -> str:
    return text.rsplit(": ", 1)[-1]


def _inspect_foreign(path: Path, samples: int) -> dict[str, Any]:
    tars, problems = foreign_shards(path)
    stats = ReadStats()
    suffixes: Counter[str] = Counter()
    total = 0
    for tar in tars:
        try:
            for sample in iter_shard_samples(tar, read_data=False, on_error="skip", stats=stats, require_end=False):
                suffixes.update(s for s in sample if s != KEY)
        except ShardError as error:
            problems.append(str(error))
        total += tar.stat().st_size if tar.is_file() else 0
    first: list[dict[str, str]] = []
    for tar in tars:
        if len(first) >= samples:
            break
        try:
            for sample in iter_shard_samples(tar, limit=samples - len(first), on_error="skip", require_end=False):
                first.append(_summary(sample))
        except ShardError:
            continue  # reported above
    return {
        "path": str(path),
        "manifest": False,
        "note": _no_manifest_note(path),
        "shards": len(tars),
        "samples": stats.samples,
        "skipped": len(stats.skipped),
        "bytes": total,
        "schema": {"suffixes": sorted(suffixes)},
        "suffix_counts": dict(sorted(suffixes.items())),
        "source": None,
        "config": None,
        "skip_reasons": dict(Counter(_reason(reason) for _, reason in stats.skipped).most_common(10)),
        "directories": stats.directories,
        "unterminated": [Path(shard).name for shard in stats.unterminated],
        "problems": problems,
        "first_samples": first,
    }


def inspect_shards(path: str | os.PathLike, *, samples: int = 1) -> dict[str, Any]:
    """A summary of a shard set: counts, sizes, schema, skip reasons and the first sample(s).

    Without ``index.json`` (a folder of tars, or one tar) the counts come from reading the tars'
    member headers and the summary says that no manifest was found (``"manifest": False``,
    ``"note"``); it adds the suffixes found, directory entries passed over, tars without
    end-of-archive blocks and problems met, and describes members with unknown suffixes
    instead of decoding them.
    """
    if not _has_manifest(Path(path)):
        return _inspect_foreign(Path(path), samples)
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
            reasons[_reason(skip["reason"])] += 1
    first = []
    if shard_set.shards and samples > 0:
        head = shard_set.shards[0]
        for sample in iter_shard_samples(head.path, limit=samples, count=head.count):
            check_suffixes(sample, head.name)
            first.append(summarize_sample(decode_sample(sample)))
    return {
        "path": str(folder),
        "manifest": True,
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


def _listed_shards(path: str | os.PathLike) -> Iterator[Iterator[dict[str, Any]]]:
    """The samples of each shard, from ``index.json`` (counts checked) or, without one, of each
    tar (samples that cannot be read left out)."""
    if _has_manifest(Path(path)):
        for listed in read_index(path).shards:  # names confined to the folder, types checked
            yield iter_shard_samples(listed.path, count=listed.count, check_suffix=SuffixCheck())
    else:
        for tar in foreign_shards(path)[0]:
            yield iter_shard_samples(tar, on_error="skip", require_end=False, check_suffix=SuffixCheck())


def preview_shards(path: str | os.PathLike, out: str | os.PathLike, *, count: int = 16, size: int = 128, columns: int = 8) -> Path:
    """Write a PNG grid of the first ``count`` images of a shard set (resized to ``size``); a
    folder of tars without ``index.json`` (or one tar) is read as :func:`verify_shards` does."""
    import torch
    from torchvision.transforms.v2 import functional as F
    from torchvision.utils import make_grid

    from loaders import encode

    images = []
    for shard in _listed_shards(path):
        for sample in shard:
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
        raise ValueError(f"{os.fspath(path)!r} has no samples with an image field to preview")
    grid = make_grid(torch.stack(images), nrow=columns, padding=2)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encode("png", grid))
    return target
