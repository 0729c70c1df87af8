"""Hostile shards are refused: pickle payloads, path traversal, unknown suffixes, tampering."""

from __future__ import annotations

import pickle

import pytest

from pipelines import ShardError, build_shards
from pipelines.loader import make_loader
from pipelines.verify import verify_shards

PAYLOAD = pickle.dumps({"boom": 1})  # bytes only; nothing here is ever unpickled


@pytest.mark.parametrize("suffix", ["pyd", "pickle", "pth"])
def test_pickle_members_are_refused_by_the_loader(tmp_path, helpers, suffix):
    tar = helpers.raw_tar(tmp_path / "bad.tar", [("s0.cls", b"1"), (f"s0.{suffix}", PAYLOAD)])
    loader = make_loader([tar], batch_size=1)
    with pytest.raises(ShardError, match=rf"s0\.{suffix} refused.*pickle"):
        next(iter(loader))
    with pytest.raises(ShardError, match="pickle"):
        next(iter(make_loader([tar], batch_size=1, decode=False)))  # even without decoding


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../escape.jpg", r"unsafe member name '\.\./escape\.jpg'"),
        ("a/../../b.jpg", "unsafe member name"),
        ("/etc/passwd.txt", "unsafe member name '/etc/passwd.txt'"),
        ("noext", "no key.suffix form"),
    ],
)
def test_unsafe_member_names_are_refused(tmp_path, helpers, name, message):
    tar = helpers.raw_tar(tmp_path / "bad.tar", [(name, b"x")])
    with pytest.raises(ShardError, match=message):
        make_loader([tar], batch_size=1)


def test_unknown_suffix_is_refused(tmp_path, helpers):
    tar = helpers.raw_tar(tmp_path / "bad.tar", [("s0.exe", b"MZ")])
    with pytest.raises(ShardError, match="s0.exe refused.*unknown suffix"):
        next(iter(make_loader([tar], batch_size=1)))


def test_verify_reports_tampering_and_hostile_members(tmp_path, helpers):
    out = tmp_path / "out"
    build_shards("shapes", out, split="val", options={"size": 6, "resolution": 16}, max_count=3)
    assert verify_shards(out).ok
    data = bytearray((out / "000001.tar").read_bytes())
    data[600] ^= 0xFF  # inside the first member's payload
    (out / "000001.tar").write_bytes(bytes(data))
    report = verify_shards(out)
    assert not report.ok and any("000001.tar: sha256 mismatch" in p for p in report.problems)
    helpers.raw_tar(out / "000000.tar", [("s0.cls", b"1"), ("s0.pth", PAYLOAD)])
    report = verify_shards(out)
    assert any("pickle" in p for p in report.problems) and any("000000.tar" in p for p in report.problems)
    with pytest.raises(ShardError, match="failed verification"):
        verify_shards(out, raise_on_error=True)


def test_build_refuses_pickle_samples_and_bad_keys(tmp_path):
    with pytest.raises(Exception, match="pickle-based formats are never decoded"):
        build_shards([{"__key__": "a", "pyd": PAYLOAD}], tmp_path / "a")
    report = build_shards([{"__key__": "a", "pth": PAYLOAD}, {"__key__": "../b", "cls": b"1"}, {"__key__": "c", "cls": b"2"}],
                          tmp_path / "b", on_error="skip")
    assert (report.written, report.skipped) == (1, 2)


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_reader_handles_long_names_from_other_writers(tmp_path, fmt):
    import io
    import tarfile

    from pipelines.tario import iter_shard_samples

    key = "/".join(["deep"] * 30) + "/sample"
    path = tmp_path / "long.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT if fmt == "gnu" else tarfile.PAX_FORMAT) as tar:
        for suffix, data in (("cls", b"7"), ("txt", "é".encode())):
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert list(iter_shard_samples(path)) == [{"__key__": key, "cls": b"7", "txt": "é".encode()}]


def test_reader_refuses_broken_tars(tmp_path, helpers):
    from pipelines.tario import iter_shard_samples

    good = helpers.raw_tar(tmp_path / "good.tar", [("a.txt", b"x" * 2000), ("b.txt", b"y")])
    (tmp_path / "cut.tar").write_bytes(good.read_bytes()[:1200])
    with pytest.raises(ShardError, match="truncated"):
        list(iter_shard_samples(tmp_path / "cut.tar"))
    (tmp_path / "noise.tar").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ShardError, match="checksum"):
        list(iter_shard_samples(tmp_path / "noise.tar"))
    import tarfile

    with tarfile.open(tmp_path / "link.tar", "w") as tar:  # directories are passed over (test_foreign_shards)
        info = tarfile.TarInfo("a.txt")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ShardError, match="not a regular file"):
        list(iter_shard_samples(tmp_path / "link.tar"))
