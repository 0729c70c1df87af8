"""build_shards: layout, determinism, rolling, copy mode, re-encoding, sources and arguments."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile

import pytest

from loaders import decode_sample, open_dataset
from pipelines import BuildReport, Reencode, SourceSpec, build_shards
from pipelines.tario import FIXED_MTIME, iter_shard_samples


def test_copy_mode_layout_index_and_sidecars(jpeg_folder, tmp_path, helpers):
    root, files = jpeg_folder
    out = tmp_path / "out"
    report = build_shards("folder", out, root=root, max_count=10)
    assert isinstance(report, BuildReport)
    assert (report.read, report.written, report.skipped) == (24, 24, 0)
    names = sorted(p.name for p in out.iterdir())
    assert names == [".build.json", "000000.stats.json", "000000.tar", "000001.stats.json", "000001.tar",
                     "000002.stats.json", "000002.tar", "index.json"]
    index = json.loads((out / "index.json").read_text())
    assert [s["count"] for s in index["shards"]] == [10, 10, 4]
    assert index["schema"] == {"suffixes": ["cls", "jpg"], "fields": {"cls": "label", "jpg": "image"}}
    assert index["source"]["name"] == "folder" and index["source"]["root"] == str(root)
    assert index["config"]["max_count"] == 10 and index["config"]["reencode"] is None
    for shard in index["shards"]:
        data = (out / shard["shard"]).read_bytes()
        assert len(data) == shard["bytes"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
        stats = json.loads((out / shard["shard"].replace(".tar", ".stats.json")).read_text())
        assert stats["sha256"] == shard["sha256"] and stats["count"] == shard["count"] and stats["skipped"] == []
    # copy mode: the original file bytes, in input (sorted key) order, members sorted per sample
    seen = []
    for shard in index["shards"]:
        for sample in iter_shard_samples(out / shard["shard"]):
            assert sample["jpg"] == files[sample["__key__"]]
            assert int(sample["cls"]) == int(sample["__key__"].split("/")[0][-1])
            seen.append(sample["__key__"])
    assert seen == sorted(files)
    with tarfile.open(out / "000000.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:2]] == ["class_0/img_000.cls", "class_0/img_000.jpg"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(FIXED_MTIME, 0, 0, "", "", 0o444)}
    listing = subprocess.run(["tar", "-tf", str(out / "000002.tar")], capture_output=True, text=True, check=True)
    assert listing.stdout.split() == [f"class_2/img_{i:03d}.{s}" for i in range(4, 8) for s in ("cls", "jpg")]


def test_worker_counts_give_byte_identical_shards(jpeg_folder, tmp_path, helpers):
    root, _ = jpeg_folder
    one = build_shards("folder", tmp_path / "w1", root=root, max_count=7, workers=1)
    two = build_shards("folder", tmp_path / "w2", root=root, max_count=7, workers=2)
    assert helpers.tree(tmp_path / "w1") == helpers.tree(tmp_path / "w2")
    strip = lambda index: {k: v for k, v in index.items() if k != "run"}  # noqa: E731
    assert strip(one.index) == strip(two.index) and two.index["run"]["workers"] == 2


def test_rolls_by_bytes(jpeg_folder, tmp_path):
    root, files = jpeg_folder
    limit = 4 * max(len(b) for b in files.values())
    report = build_shards("folder", tmp_path / "out", root=root, max_count=1000, max_bytes=limit)
    sizes = [s["bytes"] for s in report.index["shards"]]
    assert len(sizes) > 3 and all(size <= limit for size in sizes)
    assert sum(s["count"] for s in report.index["shards"]) == 24
    # a single sample larger than max_bytes gets a shard of its own instead of failing
    tiny = build_shards("folder", tmp_path / "tiny", root=root, max_bytes=100)
    assert [s["count"] for s in tiny.index["shards"]] == [1] * 24


def test_reencode_resizes_and_changes_format(jpeg_folder, tmp_path):
    root, _ = jpeg_folder
    report = build_shards("folder", tmp_path / "out", root=root, reencode={"image": "png", "max_side": 20})
    assert report.index["schema"]["suffixes"] == ["cls", "png"]
    sample = next(iter_shard_samples(tmp_path / "out" / "000000.tar"))
    image = decode_sample(sample)["image"]
    assert tuple(image.shape) == (3, 20, 20)
    with pytest.raises(ValueError, match="reencode image must be one of"):
        Reencode(image="gif")
    with pytest.raises(ValueError, match="unknown key"):
        build_shards("folder", tmp_path / "bad", root=root, reencode={"format": "jpg"})


def test_iterable_and_adapter_sources(tmp_path, helpers):
    shapes = open_dataset("shapes", split="val", size=12, resolution=32)
    decoded = list(shapes.samples())
    from_iterable = build_shards(iter(decoded), tmp_path / "it", max_count=5, workers=2)
    from_adapter = build_shards(open_dataset("shapes", split="val", size=12, resolution=32, decode=False),
                                tmp_path / "ad", max_count=5)
    from_spec = build_shards(SourceSpec("shapes", split="val", options={"size": 12, "resolution": 32}), tmp_path / "sp", max_count=5)
    assert helpers.tree(tmp_path / "it") == helpers.tree(tmp_path / "ad") == helpers.tree(tmp_path / "sp")
    assert from_iterable.written == from_adapter.written == from_spec.written == 12
    assert from_iterable.index["source"]["type"] == "iterable"
    first = next(iter_shard_samples(tmp_path / "it" / "000000.tar"))
    restored = decode_sample(first)
    assert restored["label"] == decoded[0]["label"] and bool((restored["mask"] == decoded[0]["mask"]).all())


def test_rerun_is_a_noop_and_config_changes_are_refused(jpeg_folder, tmp_path, helpers):
    root, _ = jpeg_folder
    out = tmp_path / "out"
    build_shards("folder", out, root=root, max_count=10)
    before = helpers.tree(out)
    again = build_shards("folder", out, root=root, max_count=10)
    assert again.written == 24 and helpers.tree(out) == before
    with pytest.raises(ValueError, match="another source or config"):
        build_shards("folder", out, root=root, max_count=11)
    (out / "notes.txt").write_text("mine")
    replaced = build_shards("folder", out, root=root, max_count=11, overwrite=True)
    assert [s["count"] for s in replaced.index["shards"]] == [11, 11, 2]
    assert (out / "notes.txt").read_text() == "mine"  # overwrite removes only shard-set files
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "000000.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="did not write"):
        build_shards("folder", foreign, root=root)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_count": 0}, "max_count must be a positive int"),
        ({"max_bytes": -1}, "max_bytes must be a positive int"),
        ({"workers": 0}, "workers must be a positive int"),
        ({"engine": "spark"}, "engine must be one of"),
        ({"on_error": "ignore"}, "on_error must be one of"),
        ({"check": "full"}, "check must be one of"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_shards("shapes", tmp_path / "o", split="val", options={"size": 2}, **kwargs)


def test_bad_sources(tmp_path):
    with pytest.raises(TypeError, match="source must be"):
        build_shards(42, tmp_path / "o")
    with pytest.raises(KeyError, match="unknown dataset"):
        build_shards("no-such-dataset", tmp_path / "o")
    with pytest.raises(ValueError, match="only apply when source is a registered dataset name"):
        build_shards([], tmp_path / "o", root=tmp_path)
