"""The error policy of shard builds: truncated, empty and missing files with skip and raise."""

from __future__ import annotations

import json
import os

import pytest

from loaders import SampleError, open_dataset
from pipelines import build_shards
from pipelines.tario import iter_shard_samples


@pytest.fixture
def damaged_folder(jpeg_folder):
    root, files = jpeg_folder
    good = files["class_0/img_001"]
    (root / "class_0" / "img_001.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (root / "class_1" / "img_002.jpg").write_bytes(b"")  # zero-byte file
    os.symlink(root / "nowhere.jpg", root / "class_2" / "img_999.jpg")  # listed, but missing
    bad = {"class_0/img_001": "truncated JPEG", "class_1/img_002": "empty payload", "class_2/img_999": "No such file"}
    return root, files, bad


@pytest.mark.parametrize("workers", [1, 2])
def test_skip_records_reasons_and_counts_add_up(damaged_folder, tmp_path, workers):
    root, files, bad = damaged_folder
    out = tmp_path / "out"
    report = build_shards("folder", out, root=root, max_count=5, on_error="skip", workers=workers)
    total = len(files) + 1  # the dangling link is one more listed file
    assert report.read == total == report.written + report.skipped
    assert report.skipped == 3
    skipped = {}
    for shard in report.index["shards"]:
        stats = json.loads((out / shard["shard"].replace(".tar", ".stats.json")).read_text())
        assert stats["read"] == stats["count"] + len(stats["skipped"]) == stats["end"] - stats["start"]
        skipped.update({s["key"]: s["reason"] for s in stats["skipped"]})
    assert sorted(skipped) == sorted(bad)
    for key, reason in skipped.items():
        assert bad[key] in reason and key.split("/")[-1] in reason  # names the file
    written = [s["__key__"] for shard in report.index["shards"] for s in iter_shard_samples(out / shard["shard"])]
    assert len(written) == report.written and not set(written) & set(bad)


@pytest.mark.parametrize("workers", [1, 2])
def test_raise_stops_and_names_the_file(damaged_folder, tmp_path, workers):
    root, _, _ = damaged_folder
    out = tmp_path / "out"
    with pytest.raises(SampleError, match=r"img_001\.jpg.*truncated JPEG"):
        build_shards("folder", out, root=root, max_count=5, workers=workers)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    assert not (out / "index.json").exists()


def test_zero_byte_and_missing_each_raise(tmp_path, helpers):
    root = tmp_path / "imgs"
    helpers.jpeg_folder(root, classes=1, per_class=3)
    (root / "class_0" / "img_001.jpg").write_bytes(b"")
    with pytest.raises(SampleError, match=r"img_001\.jpg.*empty payload"):
        build_shards("folder", tmp_path / "a", root=root)
    (root / "class_0" / "img_001.jpg").unlink()
    adapter = open_dataset("folder", root, decode=False)  # indexed now, then a file disappears
    (root / "class_0" / "img_002.jpg").unlink()
    with pytest.raises(SampleError, match=r"img_002\.jpg"):
        build_shards(adapter, tmp_path / "b")


def test_decode_check_catches_corruption_inside_the_data(tmp_path, helpers):
    root = tmp_path / "imgs"
    files = helpers.jpeg_folder(root, classes=1, per_class=2)
    data = bytearray(files["class_0/img_000"])
    data[2:40] = b"\x00" * 38  # header destroyed, start and end markers intact
    (root / "class_0" / "img_000.jpg").write_bytes(bytes(data))
    assert build_shards("folder", tmp_path / "structure", root=root, check="structure").written == 2
    report = build_shards("folder", tmp_path / "decode", root=root, check="decode", on_error="skip")
    assert (report.written, report.skipped) == (1, 1)


def test_a_unit_with_every_sample_skipped_gives_an_empty_shard(tmp_path, helpers):
    from pipelines import make_loader, verify_shards

    root = tmp_path / "imgs"
    helpers.jpeg_folder(root, classes=1, per_class=5, size=16)
    for i in (0, 1):
        (root / "class_0" / f"img_{i:03d}.jpg").write_bytes(b"")
    report = build_shards("folder", tmp_path / "out", root=root, max_count=2, on_error="skip")
    assert [(s["count"], s["start"], s["end"]) for s in report.index["shards"]] == [(0, 0, 2), (2, 2, 4), (1, 4, 5)]
    assert (report.read, report.written, report.skipped) == (5, 3, 2)
    assert verify_shards(tmp_path / "out").ok
    keys = [k for batch in make_loader(tmp_path / "out", batch_size=2, shuffle=False) for k in batch["__key__"]]
    assert keys == ["class_0/img_002", "class_0/img_003", "class_0/img_004"]
