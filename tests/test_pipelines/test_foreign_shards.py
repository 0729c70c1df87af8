"""Foreign WebDataset shards: what webdataset reads, we read, safely.

Fixtures are written the way real foreign shards are: with ``tarfile``, with webdataset's own
``TarWriter`` and with ``tar -czf`` (directory entries, ``./`` prefixes), plain and gzip-compressed,
holding real JPEGs and PNGs. webdataset's own pipeline is the reference for what a tar holds:
where our schema cannot hold a sample (a dot or a space in its key) that sample alone is left out
or raises, never the shard.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import subprocess
import tarfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch

from datafactory.cli import main
from loaders import encode
from pipelines import ShardError, build_shards
from pipelines import shardfile
from pipelines.loader import make_loader
from pipelines.tario import END_OF_ARCHIVE, ReadStats, iter_shard_samples, ustar_header
from pipelines.verify import inspect_shards, preview_shards, verify_shards

wds = pytest.importorskip("webdataset")


# ------------------------------------------------------------------------------------- fixtures


def _png(seed: int) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    return encode("mask.png", torch.randint(0, 5, (12, 10), dtype=torch.int64, generator=generator))


def _samples(keys: list[str], helpers: Any, tmp_path: Path) -> list[dict[str, Any]]:
    """Encoded samples with a real JPEG (PIL), a PNG mask and a class label each."""
    return [{"__key__": key, "jpg": helpers.jpeg(tmp_path / "jpegs" / f"{i}.jpg", seed=i, size=16),
             "mask.png": _png(i), "cls": b"%d" % (i % 3)} for i, key in enumerate(keys)]


def _tarfile(path: Path, samples: list[dict[str, Any]], *, mode: str = "w", fmt: int = tarfile.PAX_FORMAT,
             directories: tuple[str, ...] = ()) -> Path:
    """A tar written by ``tarfile`` (``mode="w:gz"`` compresses), directories first."""
    with tarfile.open(path, mode, format=fmt) as tar:
        for name in directories:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for sample in samples:
            for suffix in sorted(s for s in sample if s != "__key__"):
                info = tarfile.TarInfo(f"{sample['__key__']}.{suffix}")
                info.size = len(sample[suffix])
                tar.addfile(info, io.BytesIO(sample[suffix]))
    return path


def _tarwriter(path: Path, samples: list[dict[str, Any]]) -> Path:
    """A shard written by webdataset's TarWriter (``.tgz``: gzip-compressed by it)."""
    with wds.TarWriter(str(path), encoder=False) as writer:
        for sample in samples:
            writer.write(dict(sample))
    return path


def _tar_czf(path: Path, root: Path, what: str, *, sort: bool = True) -> Path:
    """``tar --sort=name -czf path -C root what``: GNU tar's own output, directory entries
    included (without ``--sort=name`` tar adds files in directory order, which need not keep a
    sample's files together)."""
    subprocess.run(["tar", *(["--sort=name"] if sort else []), "-czf", str(path), "-C", str(root), what], check=True,
                   capture_output=True)
    return path


def _folder_of_files(root: Path, helpers: Any) -> dict[str, dict[str, bytes]]:
    """``root/cats/0.jpg, 0.cls ...`` and ``root/dogs/...``: what a user tars up; by key."""
    expected: dict[str, dict[str, bytes]] = {}
    for c, label in enumerate(("cats", "dogs")):
        for i in range(3):
            key = f"{label}/img_{i}"
            data = {"jpg": helpers.jpeg(root / f"{key}.jpg", seed=10 * c + i, size=16), "cls": b"%d" % c}
            (root / f"{key}.cls").write_bytes(data["cls"])
            expected[key] = data
    return expected


def _ours(path: Path, **options: Any) -> list[dict[str, Any]]:
    return list(iter_shard_samples(path, **options))


def _theirs(path: Path) -> list[dict[str, Any]]:
    """What webdataset's own pipeline yields for a tar (raw bytes, bookkeeping keys dropped)."""
    dataset = wds.WebDataset(str(path), shardshuffle=False)
    return [{k: v for k, v in s.items() if k == "__key__" or not k.startswith("__")} for s in dataset]


def _gunzip(path: Path, to: Path) -> Path:
    with gzip.open(path, "rb") as source, open(to, "wb") as target:
        shutil.copyfileobj(source, target)
    return to


# ------------------------------------------------------------------------------ 1. gzip shards


@pytest.mark.parametrize("writer", ["tarfile w:gz", "TarWriter .tgz"])
def test_gzip_shard_reads_like_its_plain_tar_and_like_webdataset(tmp_path, helpers, writer):
    samples = _samples([f"s{i:02d}" for i in range(6)], helpers, tmp_path)
    if writer == "tarfile w:gz":
        shard = _tarfile(tmp_path / "a.tar.gz", samples, mode="w:gz")
    else:
        shard = _tarwriter(tmp_path / "a.tgz", samples)
    assert shard.read_bytes()[:2] == b"\x1f\x8b"
    ours = _ours(shard)
    assert ours == samples == _theirs(shard)
    assert _ours(_gunzip(shard, tmp_path / "plain.tar")) == ours
    assert [s["__key__"] for s in _ours(shard, read_data=False, skip=2, limit=3)] == ["s02", "s03", "s04"]


def test_tar_czf_shard_with_directory_entries(tmp_path, helpers):
    expected = _folder_of_files(tmp_path / "data" / "pets", helpers)
    shard = _tar_czf(tmp_path / "pets.tgz", tmp_path / "data", "pets")
    with tarfile.open(shard) as tar:
        directories = [m.name for m in tar.getmembers() if m.isdir()]
    assert sorted(directories) == ["pets", "pets/cats", "pets/dogs"]
    stats = ReadStats()
    ours = _ours(shard, stats=stats)
    theirs = _theirs(shard)
    assert ours == theirs  # member order is tar's (directory order); grouping is the same
    assert {s["__key__"]: {k: v for k, v in s.items() if k != "__key__"} for s in ours} == {
        f"pets/{key}": data for key, data in expected.items()}
    assert stats.directories == 3 and stats.samples == 6 and stats.skipped == [] and stats.unterminated == []


def test_tar_czf_of_dot_drops_the_leading_dot_slash(tmp_path, helpers):
    expected = _folder_of_files(tmp_path / "data", helpers)
    shard = _tar_czf(tmp_path / "dot.tgz", tmp_path / "data", ".")
    stats = ReadStats()
    ours = _ours(shard, stats=stats)
    theirs = _theirs(shard)  # webdataset keeps "./" in the key; ours drops it (a dot is no key character)
    assert [s["__key__"] for s in theirs] == [f"./{s['__key__']}" for s in ours]
    assert {s["__key__"] for s in ours} == set(expected) and stats.directories == 3


def test_compression_is_recognised_by_the_bytes_not_the_name(tmp_path, helpers):
    samples = _samples(["a", "b"], helpers, tmp_path)
    gz_named_tar = _tarfile(tmp_path / "really-gzip.tar", samples, mode="w:gz")
    tar_named_tgz = _tarfile(tmp_path / "really-plain.tgz", samples)
    assert _ours(gz_named_tar) == _ours(tar_named_tgz) == samples
    bz2 = _tarfile(tmp_path / "a.tar.bz2", samples, mode="w:bz2")
    with pytest.raises(ShardError, match=r"a\.tar\.bz2'?: compressed with bzip2: only plain and gzip"):
        _ours(bz2)


@pytest.mark.parametrize("damage", ["cut in half", "cut before the trailer", "no trailer CRC", "flipped byte"])
def test_cut_or_corrupt_gzip_is_an_error_naming_the_shard(tmp_path, helpers, damage):
    shard = _tarwriter(tmp_path / "a.tgz", _samples([f"s{i}" for i in range(4)], helpers, tmp_path))
    data = bytearray(shard.read_bytes())
    if damage == "cut in half":
        data = data[:len(data) // 2]
    elif damage == "cut before the trailer":  # the tar inside is whole; the gzip CRC/length are not there
        data = data[:-8]
    elif damage == "no trailer CRC":
        data[-8] ^= 0xFF
    else:
        data[len(data) // 3] ^= 0x55
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"a\.tgz'?: "):
        _ours(shard, read_data=False)
    if damage.startswith("cut"):
        with pytest.raises(ShardError, match="truncated"):
            _ours(shard)


def _gzip_claiming(path: Path, claimed: int, present: bytes) -> Path:
    """A gzip shard whose one member's header claims ``claimed`` bytes and holds ``present``."""
    path.write_bytes(gzip.compress(ustar_header(b"bomb.bin", claimed) + present))
    return path


def test_a_member_past_the_decompression_bound_is_refused_before_reading(tmp_path):
    shard = _gzip_claiming(tmp_path / "bomb.tgz", shardfile.GZIP_MIN_BUDGET + 512, b"\x00" * 4096)
    assert shard.stat().st_size < 1000
    with pytest.raises(ShardError, match=r"bomb\.tgz'?: member 'bomb\.bin' needs .* left in the decompression bound"):
        _ours(shard)


def test_a_gzip_bomb_stops_at_the_bound_and_the_gunzipped_tar_reads(tmp_path, monkeypatch):
    zeros = b"\x00" * (4 << 20)
    shard = _tarfile(tmp_path / "zeros.tgz", [{"__key__": "z", "npy": zeros}], mode="w:gz")
    assert shard.stat().st_size < 40_000  # about 1000:1
    monkeypatch.setattr(shardfile, "GZIP_MIN_BUDGET", 1 << 20)
    monkeypatch.setattr(shardfile, "GZIP_MAX_RATIO", 10)
    with pytest.raises(ShardError, match=r"zeros\.tgz'?: .*decompression bound"):
        _ours(shard, read_data=False)
    # the documented way out: decompress it first, then the plain-tar rules apply
    assert _ours(_gunzip(shard, tmp_path / "zeros.tar"), read_data=False) == [{"__key__": "z", "npy": None}]


def test_a_lying_member_size_in_a_gzip_shard_is_read_in_bounded_chunks(tmp_path):
    """A member claiming 200 MiB (within the bound) in a shard holding 4 kB: reading it fails as
    truncated without first allocating what the header claims (``GzipFile.read(n)`` would:
    200 MiB traced)."""
    shard = _gzip_claiming(tmp_path / "lying.tgz", 200 << 20, b"\x01" * 4096)
    tracemalloc.start()
    try:
        with pytest.raises(ShardError, match=r"lying\.tgz'?: member 'bomb\.bin' is truncated"):
            _ours(shard)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


# ------------------------------------------------------------ 2. keys our schema cannot hold


KEYS = ["s0", "v1.0/s5", "s1", "my file", "s2"]


def test_dotted_and_spaced_keys_affect_their_sample_only(tmp_path, helpers):
    shard = _tarwriter(tmp_path / "keys.tar", _samples(KEYS, helpers, tmp_path))
    theirs = _theirs(shard)
    assert [s["__key__"] for s in theirs] == KEYS  # webdataset groups v1.0/s5.* into key "v1.0/s5"
    stats = ReadStats()
    ours = _ours(shard, on_error="skip", stats=stats)
    assert ours == [s for s in theirs if s["__key__"] in ("s0", "s1", "s2")]
    assert [key for key, _ in stats.skipped] == ["v1.0/s5", "my file"]
    assert "member 'v1.0/s5.cls'" in stats.skipped[0][1] and "contains ['.']" in stats.skipped[0][1]
    assert "contains [' ']" in stats.skipped[1][1] and "keys.tar" in stats.skipped[1][1]
    assert stats.samples == 3 and stats.samples + len(stats.skipped) == len(theirs)
    # positions count the readable samples only, with or without data
    assert [s["__key__"] for s in _ours(shard, on_error="skip", skip=1, limit=1, read_data=False)] == ["s1"]
    # on_error="raise" (the default): the samples before it are read, then the error names the member
    read = []
    with pytest.raises(ShardError, match=r"keys\.tar'?: member 'v1\.0/s5\.cls': __key__ 'v1\.0/s5' contains"):
        for sample in iter_shard_samples(shard):
            read.append(sample["__key__"])
    assert read == ["s0"]


def test_the_loader_skips_unreadable_samples_of_a_tar_list_and_reports_them(tmp_path, helpers):
    good = _tarwriter(tmp_path / "good.tgz", _samples(["g0", "g1", "g2"], helpers, tmp_path))
    mixed = _tarwriter(tmp_path / "mixed.tar", _samples(KEYS, helpers, tmp_path))
    with pytest.raises(ShardError, match=r"mixed\.tar'?: member 'v1\.0/s5\.cls'"):
        make_loader([good, mixed], batch_size=2)
    for workers in (0, 2):
        loader = make_loader([good, mixed], batch_size=2, on_error="skip", shuffle=False, num_workers=workers)
        batches = list(loader)
        assert [k for b in batches for k in b["__key__"]] == ["g0", "g1", "g2", "s0", "s1", "s2"]
        assert batches[0]["image"].shape == (2, 3, 16, 16) and batches[0]["mask"].shape == (2, 12, 10)
        assert [v for b in batches for v in b["label"].tolist()] == [0, 1, 2, 0, 2, 1]
        assert [key for key, _ in loader.read_stats.skipped] == ["v1.0/s5", "my file"]
        assert loader.read_stats.samples == 6 and len(loader) == 3


def test_members_with_no_key_suffix_form_and_duplicates(tmp_path):
    members = [("a.txt", b"a"), ("README", b"r"), ("._a.txt", b"apple double"), ("a.cls", b"1"),
               ("b.txt", b"b"), ("b.txt", b"again"), ("c.txt", b"c")]
    shard = tmp_path / "odd.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    stats = ReadStats()
    assert _ours(shard, on_error="skip", stats=stats) == [{"__key__": "a", "txt": b"a", "cls": b"1"},
                                                          {"__key__": "c", "txt": b"c"}]
    assert [what for what, _ in stats.skipped] == ["README", "._a.txt", "b"]
    assert "no key.suffix form" in stats.skipped[0][1] and "duplicate member 'b.txt'" in stats.skipped[2][1]
    with pytest.raises(ShardError, match=r"member 'README' has no key\.suffix form"):
        _ours(shard)
    # as in webdataset (which passes them over silently), a stray member does not split a sample
    without_duplicate = tmp_path / "strays.tar"
    with tarfile.open(without_duplicate, "w") as tar:
        for name, data in members[:4] + members[6:]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert _ours(without_duplicate, on_error="skip") == _theirs(without_duplicate)


def test_a_sample_split_across_the_tar_is_refused_with_the_fix(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    for i in range(6):
        (root / f"f{i}.txt").write_text(str(i))
        (root / f"f{i}.cls").write_text(str(i))
    unsorted = _tar_czf(tmp_path / "unsorted.tgz", root, ".", sort=False)
    names = [n for n in tarfile.open(unsorted).getnames() if "." in n.lstrip("./")]
    if names == sorted(names, key=lambda n: n.rsplit(".", 1)[0]):
        pytest.skip("this file system lists the folder in an order that keeps samples together")
    with pytest.raises(ShardError, match=r"not contiguous .*tar --sort=name"):
        _ours(unsorted)
    assert len(_ours(_tar_czf(tmp_path / "sorted.tgz", root, "."))) == 6


def test_links_and_devices_still_refuse_the_shard(tmp_path):
    shard = tmp_path / "link.tgz"
    with tarfile.open(shard, "w:gz") as tar:
        info = tarfile.TarInfo("a.txt")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ShardError, match=r"member 'a\.txt' is not a regular file"):
        _ours(shard, on_error="skip")


def test_old_style_directories_and_contiguous_files(tmp_path):
    """v7 tars mark a directory as a regular file whose name ends in '/'; type '7' (contiguous)
    is a regular file (tarfile.isreg()); webdataset reads both so."""
    shard = tmp_path / "old.tar"
    with tarfile.open(shard, "w", format=tarfile.GNU_FORMAT) as tar:
        folder = tarfile.TarInfo("d/")
        folder.type = tarfile.AREGTYPE
        tar.addfile(folder)
        info = tarfile.TarInfo("d/a.txt")
        info.type, info.size = tarfile.CONTTYPE, 2
        tar.addfile(info, io.BytesIO(b"hi"))
    stats = ReadStats()
    assert _ours(shard, stats=stats) == _theirs(shard) == [{"__key__": "d/a", "txt": b"hi"}]
    assert stats.directories == 1


# ------------------------------------------------------------------------- 3. end of archive


def _cut(tar: Path, where: str) -> bytes:
    data = tar.read_bytes()
    with tarfile.open(tar) as archive:
        members = archive.getmembers()
    last = members[-1]
    end = last.offset_data + last.size + (-last.size) % 512
    third = members[2 * 3 + 1]  # the mask of sample 2
    return data[:{
        "member boundary": members[3 * 3].offset,
        "no end blocks": end,
        "one end block": end + 512,
        "inside the second": end + 700,
        "inside member data": third.offset_data + third.size // 2,
        "inside padding": third.offset_data + third.size + 3,
        "inside a header": members[3 * 3].offset + 100,
    }[where]]


ACCEPTED = ["member boundary", "no end blocks", "one end block", "inside the second"]


@pytest.mark.parametrize("where", [*ACCEPTED, "inside member data", "inside padding", "inside a header"])
def test_a_tar_cut_short_is_read_as_webdataset_reads_it(tmp_path, helpers, where):
    plain = _tarfile(tmp_path / "whole.tar", _samples([f"s{i}" for i in range(5)], helpers, tmp_path))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(_cut(plain, where))
    squeezed = tmp_path / "cut.tgz"
    squeezed.write_bytes(gzip.compress(cut.read_bytes()))
    for shard in (cut, squeezed):
        with pytest.raises(ShardError, match="truncated"):
            _ours(shard)  # require_end=True (the default, and for sets with index.json)
        if where in ACCEPTED:
            stats = ReadStats()
            assert _ours(shard, require_end=False, stats=stats) == _theirs(shard)
            assert stats.unterminated == [str(shard)]
        else:  # webdataset raises inside member data; stopping inside a header it reads as an end
            with pytest.raises(ShardError, match="truncated"):
                _ours(shard, require_end=False)
    if where != "inside a header" and where not in ACCEPTED:
        with pytest.raises(Exception, match="unexpected end of data"):
            _theirs(cut)


def test_our_own_set_still_needs_its_end_blocks_and_counts(tmp_path):
    out = tmp_path / "set"
    build_shards([{"__key__": f"k{i}", "cls": b"%d" % i} for i in range(6)], out, max_count=6)
    tar = out / "000000.tar"
    assert tar.read_bytes().endswith(END_OF_ARCHIVE)
    tar.write_bytes(tar.read_bytes()[:-len(END_OF_ARCHIVE)])
    with pytest.raises(ShardError, match="truncated"):
        list(make_loader(out, batch_size=2, decode=False))
    assert len(list(make_loader([tar], batch_size=2, decode=False))) == 3  # as a bare tar: webdataset's rules


# ------------------------------------------------------------------- 4. naming a decoder


def _gunzip_text(data: bytes) -> str:
    return gzip.decompress(data).decode("utf-8")


def _broken(data: bytes) -> str:
    raise RuntimeError("no")


def _label_times_ten(data: bytes) -> int:
    return int(data) * 10


@pytest.fixture
def txt_gz(tmp_path):
    """Like webdataset's testgz.tar: gzip-compressed text members ``.txt.gz`` (plus a label)."""
    texts = [f"caption {i} " * 3 for i in range(4)]
    samples = [{"__key__": f"t{i}", "txt.gz": gzip.compress(t.encode(), mtime=0), "cls": b"%d" % i}
               for i, t in enumerate(texts)]
    return _tarfile(tmp_path / "testgz.tar", samples), texts


def test_an_unknown_suffix_is_refused_until_a_decoder_is_named(txt_gz):
    shard, texts = txt_gz
    with pytest.raises(ShardError, match=r"member t0\.txt\.gz refused: \[txt\.gz\] unknown suffix"):
        next(iter(make_loader([shard], batch_size=2)))
    with pytest.raises(ShardError, match="unknown suffix"):
        next(iter(make_loader([shard], batch_size=2, decode=False)))  # raw bytes do not bypass the table
    loader = make_loader([shard], batch_size=2, shuffle=False, decoders={"txt.gz": _gunzip_text})
    batches = list(loader)
    assert [t for b in batches for t in b["txt.gz"]] == texts
    assert [v for b in batches for v in b["label"].tolist()] == [0, 1, 2, 3]
    raw = list(make_loader([shard], batch_size=4, shuffle=False, decode=False, decoders={"TXT.GZ": _gunzip_text}))
    assert [gzip.decompress(b).decode() for b in raw[0]["txt.gz"]] == texts  # decode=False: named, kept as bytes
    skipped = make_loader([shard], batch_size=2, on_error="skip")
    assert len(skipped) == 0 and len(skipped.read_stats.skipped) == 4
    # a named suffix the table knows is decoded by the named function instead
    own = list(make_loader([shard], batch_size=4, shuffle=False, decoders={"txt.gz": _gunzip_text,
                                                                           "CLS": _label_times_ten}))
    assert own[0]["cls"].tolist() == [0, 10, 20, 30] and "label" not in own[0]


def test_decoders_are_checked(txt_gz):
    shard, _ = txt_gz
    with pytest.raises(ValueError, match=r"'model\.pth': pickle-based formats are never decoded"):
        make_loader([shard], batch_size=2, decoders={"model.pth": _gunzip_text})
    with pytest.raises(TypeError, match=r"decoders\['txt\.gz'\] must be callable"):
        make_loader([shard], batch_size=2, decoders={"txt.gz": "gunzip"})
    with pytest.raises(TypeError, match="decoders must be a mapping"):
        make_loader([shard], batch_size=2, decoders=[("txt.gz", _gunzip_text)])
    with pytest.raises(ValueError, match="on_error must be one of"):
        make_loader([shard], batch_size=2, on_error="ignore")
    with pytest.raises(ShardError, match=r"sample 't0': member 'txt\.gz': your decoder .*_broken.* failed: RuntimeError"):
        next(iter(make_loader([shard], batch_size=2, shuffle=False, decoders={"txt.gz": _broken})))


# ------------------------------------------------ 5. verify / inspect / preview without index.json


@pytest.fixture
def foreign_folder(tmp_path, helpers):
    """A folder of foreign shards: a TarWriter .tgz, a tar -czf .tgz with directories, a plain
    tarfile .tar; no index.json, and a file that is not a shard."""
    folder = tmp_path / "foreign"
    folder.mkdir()
    _tarwriter(folder / "a-000.tgz", _samples(["a0", "a1", "a2"], helpers, tmp_path))
    _folder_of_files(tmp_path / "files" / "pets", helpers)
    _tar_czf(folder / "b-000.tar.gz", tmp_path / "files", "pets")
    _tarfile(folder / "c-000.tar", _samples(["c0"], helpers, tmp_path))
    (folder / "README.md").write_text("not a shard")
    return folder


def test_verify_without_index_json_does_a_structural_check(foreign_folder, capsys):
    report = verify_shards(foreign_folder)
    assert report.ok, report.problems
    assert not report.manifest and (report.shards, report.samples) == (3, 10)
    assert "no manifest (index.json) found" in report.notes[0] and "structural check only" in report.notes[0]
    assert any("b-000.tar.gz: 3 directory entries passed over" == note for note in report.notes)
    assert main(["shards", "verify", str(foreign_folder)]) == 0
    out = capsys.readouterr().out
    assert "NOTE no manifest (index.json) found" in out and "not a finished shard set" not in out
    assert "OK: 3 shards, 10 samples (no manifest: structural check only)" in out
    single = verify_shards(foreign_folder / "a-000.tgz")
    assert single.ok and not single.manifest and (single.shards, single.samples) == (1, 3)


def test_verify_without_index_json_reports_each_problem_and_reads_on(foreign_folder, helpers, tmp_path, capsys):
    _tarwriter(foreign_folder / "d-000.tar", _samples(KEYS, helpers, tmp_path))
    _tarfile(foreign_folder / "e-000.tar", [{"__key__": "e0", "exe": b"MZ", "cls": b"1"}, {"__key__": "e1", "cls": b"2"}])
    cut = foreign_folder / "f-000.tar"
    cut.write_bytes(_cut(_tarfile(tmp_path / "f.tar", _samples([f"f{i}" for i in range(5)], helpers, tmp_path)),
                         "member boundary"))
    (foreign_folder / "g-000.tar").write_bytes(b"\x01" * 1024)
    (foreign_folder / "a-000.tgz").write_bytes((foreign_folder / "a-000.tgz").read_bytes()[:-8])
    (foreign_folder / "h-000.tar").symlink_to(tmp_path / "f.tar")
    report = verify_shards(foreign_folder)
    problems = "\n".join(report.problems)
    assert "d-000.tar: sample 'v1.0/s5' cannot be read" in problems and "contains ['.']" in problems
    assert "d-000.tar: sample 'my file' cannot be read" in problems
    assert "e-000.tar: sample 'e0' cannot be read" in problems and "e0.exe refused" in problems
    assert "f-000.tar: ends without the end-of-archive blocks" in problems
    assert re.search(r"g-000\.tar': bad tar header checksum", problems)
    assert re.search(r"a-000\.tgz': truncated gzip stream", problems)
    assert "h-000.tar: a symbolic link leading out of the folder, not read" in problems
    assert len(report.problems) == 7 and report.shards == 7
    # every readable sample of every tar: b 6, c 1, d 3, e 1, f 3, g 0, and a 2: its last sample
    # would have been yielded once the gzip stream's CRC was checked, at its end
    assert report.samples == 16
    assert main(["shards", "verify", str(foreign_folder)]) == 1
    assert "FAIL d-000.tar: sample 'v1.0/s5'" in capsys.readouterr().out
    with pytest.raises(ShardError, match="failed verification"):
        verify_shards(foreign_folder, raise_on_error=True)


def test_inspect_and_preview_without_index_json(foreign_folder, tmp_path, capsys):
    (foreign_folder / ".build.json").write_text("{}")
    summary = inspect_shards(foreign_folder, samples=2)
    assert summary["manifest"] is False and "no manifest (index.json) found" in summary["note"]
    assert "an unfinished build?" in summary["note"]
    assert (summary["shards"], summary["samples"], summary["skipped"], summary["directories"]) == (3, 10, 0, 3)
    assert summary["schema"] == {"suffixes": ["cls", "jpg", "mask.png"]}
    assert summary["suffix_counts"] == {"cls": 10, "jpg": 10, "mask.png": 4}
    assert summary["bytes"] == sum(p.stat().st_size for p in foreign_folder.iterdir() if p.name[0] in "abc")
    first = summary["first_samples"]
    assert [s["__key__"] for s in first] == ["'a0'", "'a1'"] and "uint8" in first[0]["image"]
    assert main(["shards", "inspect", str(foreign_folder)]) == 0
    assert '"manifest": false' in capsys.readouterr().out
    grid = preview_shards(foreign_folder, tmp_path / "grid.png", count=10, size=16)
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_describes_members_it_cannot_decode(txt_gz):
    shard, _ = txt_gz
    summary = inspect_shards(shard)
    assert summary["samples"] == 4 and summary["schema"] == {"suffixes": ["cls", "txt.gz"]}
    assert summary["first_samples"][0]["label"] == "0"
    assert "not decoded: unknown suffix" in summary["first_samples"][0]["txt.gz"]


def test_an_empty_folder_and_a_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    report = verify_shards(tmp_path / "empty")
    assert not report.ok and "no index.json and no .tar/.tar.gz/.tgz files" in report.problems[0]
    with pytest.raises(FileNotFoundError, match="no index.json"):
        verify_shards(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="pass their paths as a list"):
        make_loader(tmp_path / "empty", batch_size=1)
    assert os.listdir(tmp_path / "empty") == []
