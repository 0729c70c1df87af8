"""Hostile shard sets on the reading side: manifest names, truncation, counts, size fields.

Every reader of a shard set (``make_loader``, ``verify_shards``, ``inspect_shards``,
``preview_shards``, ``to_hf_dataset``) goes through the same ``index.json`` checks, and every
tar goes through the same member reader; each case here is one tampered fixture under
``tmp_path``. Cases that made the old reader allocate what a header claims run in a subprocess
with an address-space limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from loaders import encode
from pipelines import ShardError, build_shards
from pipelines.loader import make_loader
from pipelines.tario import END_OF_ARCHIVE, encode_member, iter_shard_samples, ustar_header
from pipelines.verify import inspect_shards, preview_shards, verify_shards

REPO = Path(__file__).resolve().parents[2]
SAMPLES = 16


def _samples(count: int = SAMPLES) -> list[dict[str, Any]]:
    """Small in-memory samples with a decodable image and members whose sizes are not multiples of
    512 (so there is padding to cut into)."""
    image = encode("png", torch.zeros((3, 4, 4), dtype=torch.uint8))
    return [{"__key__": f"s{i:03d}", "cls": b"%d" % (i % 5), "png": image, "txt": b"x" * (100 + 37 * i)}
            for i in range(count)]


@pytest.fixture
def shard_set(tmp_path: Path) -> Path:
    """One shard of 16 samples, with its sidecar and index.json."""
    out = tmp_path / "set"
    build_shards(_samples(), out, max_count=SAMPLES)
    return out


def _index(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "index.json").read_text())


def _write_index(folder: Path, index: Any) -> None:
    (folder / "index.json").write_text(json.dumps(index))


def _read_all(shards: Any, *, shuffle: bool = False) -> int:
    """Samples delivered by a loader over ``shards`` (construction included)."""
    loader = make_loader(shards, batch_size=4, decode=False, shuffle=shuffle, shuffle_buffer=8)
    return sum(len(batch["__key__"]) for batch in loader)


def _to_hf(folder: Path) -> Any:
    pytest.importorskip("datasets")
    from pipelines.hf import to_hf_dataset

    return to_hf_dataset(folder, cache_dir=folder.parent / "hf_cache")


READERS: dict[str, Callable[[Path], Any]] = {
    "make_loader": lambda folder: _read_all(folder),
    "verify_shards": lambda folder: verify_shards(folder, raise_on_error=True),
    "inspect_shards": lambda folder: inspect_shards(folder),
    "preview_shards": lambda folder: preview_shards(folder, folder.parent / "grid.png", count=2),
    "to_hf_dataset": _to_hf,
}


# ---------------------------------------------------------------- 1. index.json names and types


def _outside_copy(shard_set: Path) -> Path:
    """A valid shard outside the folder: what a traversing name would have read."""
    secret = shard_set.parent / "elsewhere" / "secret.tar"
    secret.parent.mkdir()
    secret.write_bytes((shard_set / "000000.tar").read_bytes())
    return secret


HOSTILE_NAMES: dict[str, Callable[[Path], Any]] = {
    "parent traversal": lambda secret: "../elsewhere/secret.tar",
    "absolute path": lambda secret: str(secret),
    "subfolder": lambda secret: "sub/000000.tar",
    "backslash": lambda secret: "..\\elsewhere\\secret.tar",
    "nul byte": lambda secret: "000000.tar\x00.png",
    "dot-dot": lambda secret: "..",
    "empty": lambda secret: "",
    "not a string": lambda secret: 7,
    "not a tar name": lambda secret: "000000.stats.json",
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_index_shard_names_are_confined_to_the_folder(shard_set, reader, case):
    secret = _outside_copy(shard_set)
    name = HOSTILE_NAMES[case](secret)
    index = _index(shard_set)
    index["shards"][0]["shard"] = name
    _write_index(shard_set, index)
    with pytest.raises(ShardError, match=r"index\.json': shards\[0\]: shard name .* is not a plain \.tar file name"):
        READERS[reader](shard_set)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_index_shard_symlink_leading_out_of_the_folder_is_refused(shard_set, reader):
    secret = _outside_copy(shard_set)
    (shard_set / "000000.tar").unlink()
    (shard_set / "000000.tar").symlink_to(secret)
    with pytest.raises(ShardError, match=r"shards\[0\]: shard '000000\.tar' is a symbolic link leading out"):
        READERS[reader](shard_set)


def test_index_shard_symlink_inside_the_folder_is_read(shard_set):
    (shard_set / "000000.tar").rename(shard_set / "real.tar")
    (shard_set / "000000.tar").symlink_to("real.tar")
    assert _read_all(shard_set) == SAMPLES


MANIFESTS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "not an object": (lambda index: [index], r"index\.json': must be a JSON object"),
    "shards not a list": (lambda index: {**index, "shards": {"0": index["shards"][0]}}, r"'shards' must be a list"),
    "entry not an object": (lambda index: {**index, "shards": ["000000.tar"]}, r"shards\[0\] must be an object"),
    "count a string": (lambda index: _entry(index, count="16"), r"shards\[0\] \(000000\.tar\): 'count' must be an int >= 0"),
    "count negative": (lambda index: _entry(index, count=-1), r"shards\[0\] \(000000\.tar\): 'count' must be an int >= 0"),
    "count a bool": (lambda index: _entry(index, count=True), r"'count' must be an int >= 0, got True"),
    "count a float": (lambda index: _entry(index, count=16.0), r"'count' must be an int >= 0, got 16\.0"),
    "count missing": (lambda index: _entry(index, count=None), r"'count' must be an int >= 0, got None"),
    "bytes negative": (lambda index: _entry(index, bytes=-5), r"'bytes' must be an int >= 0"),
    "sha256 not a string": (lambda index: _entry(index, sha256=5), r"'sha256' must be a string"),
    "set count negative": (lambda index: {**index, "count": -16}, r"'count' must be an int >= 0"),
    "schema suffixes not a list": (lambda index: {**index, "schema": {"suffixes": "cls"}}, r"'schema' must be an object"),
    "shard listed twice": (lambda index: {**index, "shards": index["shards"] * 2},
                           r"shards\[1\]: shard '000000\.tar' is listed twice"),
}


def _entry(index: dict[str, Any], **fields: Any) -> dict[str, Any]:
    entry = {**index["shards"][0], **fields}
    return {**index, "shards": [{k: v for k, v in entry.items() if v is not None}]}


@pytest.mark.parametrize("reader", ["make_loader", "verify_shards"])
@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_index_types_are_checked(shard_set, reader, case):
    tamper, message = MANIFESTS[case]
    _write_index(shard_set, tamper(_index(shard_set)))
    with pytest.raises(ShardError, match=message):
        READERS[reader](shard_set)


def test_index_that_is_not_json_names_the_file(shard_set):
    (shard_set / "index.json").write_bytes(b'{"shards": [')
    with pytest.raises(ShardError, match=r"index\.json': not valid JSON"):
        make_loader(shard_set, batch_size=2)


# ------------------------------------------------------------------------------- 2. truncation


def _offsets(tar: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(tar) as archive:
        return archive.getmembers()


def _cut_at(tar: Path, where: str) -> int:
    """Byte position of a cut in a clean shard (members sorted by sample, 3 per sample)."""
    members = _offsets(tar)
    last = members[-1]
    archive_end = last.offset_data + last.size + (-last.size) % 512
    txt = members[3 * 5 + 2]  # sample 5's .txt: 285 bytes, then padding
    return {
        "sample boundary": members[3 * 12].offset,  # 12 whole samples, no end-of-archive
        "inside member data": txt.offset_data + txt.size // 2,
        "inside padding": txt.offset_data + txt.size + 10,
        "inside a header": members[3 * 7].offset + 100,
        "no end-of-archive": archive_end,
        "half the end-of-archive": archive_end + 512,
        "inside the end-of-archive": archive_end + 700,
    }[where]


CUTS = ["sample boundary", "inside member data", "inside padding", "inside a header", "no end-of-archive",
        "half the end-of-archive", "inside the end-of-archive"]


#: cuts after which the archive stops at a member boundary (or inside its zero blocks)
BOUNDARY_CUTS = {"sample boundary": 12, "no end-of-archive": SAMPLES, "half the end-of-archive": SAMPLES,
                 "inside the end-of-archive": SAMPLES}


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
@pytest.mark.parametrize("over", ["folder", "bare tar"])
@pytest.mark.parametrize("where", CUTS)
def test_truncated_shard_is_an_error(shard_set, where, over, shuffle):
    """With index.json every cut is an error. A bare list of tars is read as webdataset reads
    it: a tar that stops at a member boundary is accepted (nothing tells it from a complete
    one; the loader lists it in read_stats.unterminated), a cut inside a member is an error."""
    tar = shard_set / "000000.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[:_cut_at(tar, where)])
    if over == "bare tar" and where in BOUNDARY_CUTS:
        loader = make_loader([tar], batch_size=4, decode=False, shuffle=shuffle, shuffle_buffer=8)
        assert sum(len(batch["__key__"]) for batch in loader) == BOUNDARY_CUTS[where]
        assert loader.read_stats.unterminated == [str(tar)]
        return
    target = shard_set if over == "folder" else [tar]
    with pytest.raises(ShardError, match=r"000000\.tar'?: .*truncated"):
        _read_all(target, shuffle=shuffle)


@pytest.mark.parametrize("where", CUTS)
def test_truncated_shard_is_an_error_for_the_raw_reader(shard_set, where):
    tar = shard_set / "000000.tar"
    tar.write_bytes(tar.read_bytes()[:_cut_at(tar, where)])
    with pytest.raises(ShardError, match=r"000000\.tar'?: .*truncated"):
        list(iter_shard_samples(tar, read_data=False))


def test_records_padding_after_the_end_of_archive_is_accepted(tmp_path, helpers):
    """tarfile and GNU tar pad archives to 10 kB records after the two zero blocks."""
    tar = helpers.raw_tar(tmp_path / "padded.tar", [("a.cls", b"1"), ("b.cls", b"2")])
    assert tar.stat().st_size % 10240 == 0
    assert [s["__key__"] for s in iter_shard_samples(tar)] == ["a", "b"]


# ------------------------------------------------------------------ 3. counts that do not match


def _reterminated(tar: Path, samples: int) -> None:
    """Keep the first ``samples`` samples and end the archive properly (a valid, shorter tar)."""
    cut = _offsets(tar)[3 * samples].offset
    tar.write_bytes(tar.read_bytes()[:cut] + END_OF_ARCHIVE)


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_shard_shorter_than_its_count_is_an_error(shard_set, shuffle):
    _reterminated(shard_set / "000000.tar", 12)
    with pytest.raises(ShardError, match=r"000000\.tar': index\.json lists 16 samples, the shard holds 12"):
        _read_all(shard_set, shuffle=shuffle)


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
@pytest.mark.parametrize("listed", [3, 12, 15])
def test_shard_longer_than_its_count_is_an_error(shard_set, listed, shuffle):
    index = _index(shard_set)
    index["shards"][0]["count"] = index["count"] = listed
    _write_index(shard_set, index)
    with pytest.raises(ShardError, match=rf"000000\.tar': holds more samples than the {listed} index\.json lists"):
        _read_all(shard_set, shuffle=shuffle)


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_count_larger_than_the_shard_is_an_error(shard_set, shuffle):
    index = _index(shard_set)
    index["shards"][0]["count"] = index["count"] = 40
    _write_index(shard_set, index)
    with pytest.raises(ShardError, match=r"000000\.tar': index\.json lists 40 samples, the shard holds 16"):
        _read_all(shard_set, shuffle=shuffle)


def test_count_mismatch_in_a_later_shard_with_workers(tmp_path):
    out = tmp_path / "set"
    build_shards(_samples(), out, max_count=4)
    _reterminated(out / "000002.tar", 3)
    with pytest.raises(ShardError, match=r"000002\.tar': index\.json lists 4 samples, the shard holds 3"):
        list(make_loader(out, batch_size=2, decode=False, shuffle=False, num_workers=2))


FULL_READERS: dict[str, Callable[[Path], Any]] = {
    "preview_shards": lambda folder: preview_shards(folder, folder.parent / "grid.png", count=SAMPLES),
    "inspect_shards": lambda folder: inspect_shards(folder, samples=SAMPLES),
    "to_hf_dataset": _to_hf,
}


@pytest.mark.parametrize("reader", sorted(FULL_READERS))
def test_count_mismatch_is_seen_by_other_readers(shard_set, reader):
    _reterminated(shard_set / "000000.tar", 12)
    with pytest.raises(ShardError, match=r"000000\.tar': index\.json lists 16 samples, the shard holds 12"):
        FULL_READERS[reader](shard_set)


def test_verify_reports_a_count_mismatch(shard_set):
    _reterminated(shard_set / "000000.tar", 12)
    problems = verify_shards(shard_set).problems
    assert "000000.tar: 12 samples, index says 16" in problems


# ------------------------------------------------------------------------- 4. tar size fields


def _checksummed(header: bytes) -> bytes:
    """``header`` with its checksum field recomputed (what a crafted hostile header has)."""
    header = header[:148] + b" " * 8 + header[156:]
    return header[:148] + b"%06o\x00 " % sum(header) + header[156:]


def _with_size_field(header: bytes, field: bytes) -> bytes:
    assert len(field) == 12
    return _checksummed(header[:124] + field + header[136:])


def _pax_record(key: str, value: str) -> bytes:
    """``"<length> key=value\\n"``, where the length counts its own digits."""
    text = f" {key}={value}\n".encode()
    length = len(text) + 1
    while len(str(length)) + len(text) != length:
        length = len(str(length)) + len(text)
    return str(length).encode() + text


def _extended(body: bytes, kind: bytes = b"x") -> bytes:
    """An extended header block of type ``kind`` followed by ``body`` and its padding."""
    header = ustar_header(b"././@PaxHeader", len(body))
    return _checksummed(header[:156] + kind + header[157:]) + body + bytes((-len(body)) % 512)


def _pax_block(records: dict[str, str], kind: bytes = b"x") -> bytes:
    """A pax header (``x``) with these records, or a GNU long name (``L``) from ``path``."""
    if kind == b"x":
        return _extended(b"".join(_pax_record(k, v) for k, v in records.items()))
    return _extended(records["path"].encode() + b"\x00", kind)


def _tar(path: Path, *parts: bytes) -> Path:
    path.write_bytes(b"".join(parts) + END_OF_ARCHIVE)
    return path


def _member(name: str, data: bytes, size_field: bytes | None = None) -> bytes:
    block = encode_member(name, data)
    if size_field is not None:
        block = _with_size_field(block[:512], size_field) + block[512:]
    return block


SIZE_FIELDS = {
    "negative octal": b"-0000000001\x00",
    "octal with underscore": b"0000000_100\x00",
    "octal with plus sign": b"+0000000010\x00",
    "base-256 negative": b"\xff" + b"\xff" * 11,
    "base-256 past the file end": b"\x80" + (1 << 20).to_bytes(11, "big"),
}


@pytest.mark.parametrize("read_data", [True, False], ids=["read", "names only"])
@pytest.mark.parametrize("case", sorted(SIZE_FIELDS))
def test_bad_member_size_fields_are_refused(tmp_path, case, read_data):
    tar = _tar(tmp_path / "bad.tar", _member("a.txt", b"x" * 100, SIZE_FIELDS[case]), _member("b.cls", b"1"))
    with pytest.raises(ShardError, match=r"bad\.tar': (malformed|negative|member 'a\.txt' needs)"):
        list(iter_shard_samples(tar, read_data=read_data))


PAX_SIZES = {
    "non-numeric": ("12a", r"malformed pax size '12a'"),
    "negative": ("-5", r"malformed pax size '-5'"),
    "unicode digits": ("١٠٠", r"malformed pax size"),
    "swallowing the next member": (str(100 + 412 + 512 + 1), r"pax size 1025 disagrees with the header size 100"),
}


@pytest.mark.parametrize("read_data", [True, False], ids=["read", "names only"])
@pytest.mark.parametrize("case", sorted(PAX_SIZES))
def test_bad_pax_sizes_are_refused(tmp_path, case, read_data):
    value, message = PAX_SIZES[case]
    tar = _tar(tmp_path / "bad.tar", _pax_block({"size": value}), _member("a.txt", b"x" * 100), _member("b.cls", b"1"))
    with pytest.raises(ShardError, match=rf"bad\.tar': {message}"):
        list(iter_shard_samples(tar, read_data=read_data))


def test_pax_size_past_the_file_end_is_refused(tmp_path):
    """A zero ustar size (as writers use for > 8 GiB members) with a pax size past the end."""
    tar = _tar(tmp_path / "bad.tar", _pax_block({"size": "5000"}), _member("a.txt", b"", None), _member("b.cls", b"1"))
    with pytest.raises(ShardError, match=r"bad\.tar': member 'a\.txt' needs 5120 bytes at byte 1536, only 2048 left"):
        list(iter_shard_samples(tar, read_data=False))


def test_genuine_pax_size_overrides_are_read(tmp_path):
    """The ustar field 0 or all sevens with a pax size: how tarfile and GNU tar store > 8 GiB."""
    tar = _tar(tmp_path / "ok.tar", _pax_block({"size": "3"}), _member("a.txt", b"abc", b"00000000000\x00"),
               _pax_block({"size": "1"}), _member("b.txt", b"z", b"77777777777\x00"))
    assert list(iter_shard_samples(tar)) == [{"__key__": "a", "txt": b"abc"}, {"__key__": "b", "txt": b"z"}]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("record overruns", r"malformed pax header \(record at byte 0 overruns"),
        ("length not digits", r"malformed pax header \(bad record length"),
        ("no equals sign", r"malformed pax header \(record at byte 0\)"),
    ],
)
def test_malformed_pax_records_are_refused(tmp_path, case, message):
    body = {"record overruns": b"99 path=a.txt\n", "length not digits": b"+12 path=a.tx\n",
            "no equals sign": b"13 pathaaaaa\n"}[case]
    tar = _tar(tmp_path / "bad.tar", _extended(body), _member("a.txt", b"x"))
    with pytest.raises(ShardError, match=rf"bad\.tar': {message}"):
        list(iter_shard_samples(tar))


def test_extended_headers_over_one_mib_are_refused_before_reading(tmp_path):
    """A 2 MiB pax header of harmless records: no real writer needs that much, so it is refused."""
    tar = _tar(tmp_path / "big.tar", _pax_block({"comment": "a" * (2 << 20)}), _member("a.txt", b"x"))
    with pytest.raises(ShardError, match=r"big\.tar': extended header of 2097\d+ bytes at byte 0 \(limit 1048576"):
        list(iter_shard_samples(tar))


def _limited_reads(tars: list[tuple[str, bool]]) -> list[dict[str, str]]:
    """Read each ``(tar, read_data)`` in one child process whose address space may grow by
    512 MiB only (one child for all cases: importing torch costs seconds)."""
    code = f"""
import json, resource, sys
sys.path.insert(0, {str(REPO)!r})
from pipelines.tario import iter_shard_samples  # imports first: torch maps a lot of address space
with open("/proc/self/statm") as statm:
    used = int(statm.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + (512 << 20), resource.RLIM_INFINITY))
for tar, read_data in {tars!r}:
    try:
        list(iter_shard_samples(tar, read_data=read_data))
        outcome = {{"error": None, "message": ""}}
    except BaseException as error:
        outcome = {{"error": type(error).__name__, "message": str(error)[:500]}}
    print(json.dumps(outcome), flush=True)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


HUGE = {
    "member size 8 GiB (octal max)": lambda: _member("a.txt", b"x" * 100, b"77777777777\x00"),
    "member size 2**80 (base-256)": lambda: _member("a.txt", b"x" * 100, b"\x80" + (1 << 80).to_bytes(11, "big")),
    "pax header of 8 GiB": lambda: _with_size_field(_pax_block({"size": "1"})[:512], b"77777777777\x00") + bytes(512),
    "GNU long name of 8 GiB": lambda: _with_size_field(_pax_block({"path": "a.txt"}, kind=b"L")[:512],
                                                       b"77777777777\x00") + bytes(512),
    "pax size 2**70": lambda: _pax_block({"size": str(1 << 70)}) + _member("a.txt", b"", None),
}


@pytest.fixture(scope="module")
def huge_outcomes(tmp_path_factory) -> dict[tuple[str, bool], dict[str, str]]:
    """The outcome of reading each ``HUGE`` case, both ways, under the address-space limit."""
    folder = tmp_path_factory.mktemp("huge")
    cases = []
    for number, case in enumerate(sorted(HUGE)):
        tar = _tar(folder / f"huge{number}.tar", HUGE[case](), _member("b.cls", b"1"))
        cases += [(case, str(tar), True), (case, str(tar), False)]
    outcomes = _limited_reads([(tar, read_data) for _, tar, read_data in cases])
    return {(case, read_data): {**outcome, "tar": Path(tar).name}
            for (case, tar, read_data), outcome in zip(cases, outcomes, strict=True)}


@pytest.mark.parametrize("read_data", [True, False], ids=["read", "names only"])
@pytest.mark.parametrize("case", sorted(HUGE))
def test_sizes_past_the_file_end_never_allocate(huge_outcomes, case, read_data):
    outcome = huge_outcomes[case, read_data]
    assert outcome["error"] == "ShardError", outcome
    assert f"{outcome['tar']}'" in outcome["message"]
