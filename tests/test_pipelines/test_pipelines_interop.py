"""Our shards through other readers (tar, webdataset, Hugging Face) and the Ray engine."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import loaders
from pipelines import RAY_INSTALL_HINT, build_shards
from pipelines.hf import to_hf_dataset
from pipelines.tario import iter_shard_samples

importlib.import_module("loaders.hf")  # registers "hf" until loaders/__init__ imports it


@pytest.fixture
def built(jpeg_folder, tmp_path):
    root, files = jpeg_folder
    out = tmp_path / "out"
    report = build_shards("folder", out, root=root, max_count=10)
    return out, files, report


def test_tar_and_plain_webdataset_read_our_shards(built):
    import webdataset as wds

    out, files, report = built
    tars = [str(out / s["shard"]) for s in report.index["shards"]]
    listed = []
    for tar in tars:
        listed += subprocess.run(["tar", "-tf", tar], capture_output=True, text=True, check=True).stdout.split()
    assert len(listed) == 2 * len(files)
    dataset = wds.WebDataset(tars, shardshuffle=False, empty_check=False)  # no decoders: raw bytes
    samples = list(dataset)
    assert [s["__key__"] for s in samples] == sorted(files)
    assert all(s["jpg"] == files[s["__key__"]] for s in samples)


def test_hugging_face_loads_our_shards(built, tmp_path):
    import datasets

    out, files, report = built
    tars = [str(out / s["shard"]) for s in report.index["shards"]]
    generic = datasets.load_dataset("webdataset", data_files={"train": tars}, split="train", cache_dir=str(tmp_path / "hf1"))
    assert generic.num_rows == len(files) and sorted(generic["__key__"]) == sorted(files)
    ours = to_hf_dataset(out, cache_dir=tmp_path / "hf2")
    assert ours.column_names == ["__key__", "cls", "jpg"] and ours.num_rows == len(files)
    row = ours[0]
    assert row["jpg"].size == (40, 40) and row["cls"] == 0


def test_hf_adapter_round_trip_from_memory_and_disk(built, tmp_path, helpers):
    out, files, _ = built
    ours = to_hf_dataset(out, cache_dir=tmp_path / "hf")
    in_memory = loaders.open_dataset("hf", ours, decode=False)
    assert len(in_memory) == len(files) and in_memory.load(3, decode=False)["jpg"] == files[in_memory.key(3)]
    ours.save_to_disk(str(tmp_path / "saved"))
    rebuilt = build_shards("hf", tmp_path / "again", root=tmp_path / "saved", max_count=10)
    assert rebuilt.index["source"]["name"] == "hf"
    assert helpers.tree(tmp_path / "again") == helpers.tree(out)  # byte-identical round trip


def test_hf_adapter_maps_columns(tmp_path, helpers):
    import datasets

    jpegs = [{"bytes": helpers.jpeg(tmp_path / f"{i}.jpg", i, size=16), "path": None} for i in range(3)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"]),
                                  "caption": datasets.Value("string"), "scores": datasets.Sequence(datasets.Value("float32"))})
    table = datasets.Dataset.from_dict({"image": jpegs, "label": [0, 2, 1], "caption": ["x", "y", "z"],
                                        "scores": [[0.5], [1.5], [2.5]]}, features=features)
    adapter = loaders.open_dataset("hf", table)
    assert adapter.classes == ("a", "b", "c")
    assert sorted(adapter.load(1, decode=False)) == ["__key__", "__source__", "cls", "jpg", "scores.json", "txt"]
    sample = adapter[1]
    assert sample["label"] == 2 and sample["text"] == "y" and sample["scores.json"] == [1.5]
    assert tuple(sample["image"].shape) == (3, 16, 16)
    with pytest.raises(ValueError, match="key_column 'id' is not a column"):
        loaders.open_dataset("hf", table, key_column="id")
    with pytest.raises(FileNotFoundError, match="save_to_disk folder"):
        loaders.open_dataset("hf", tmp_path / "missing")


def test_ray_missing_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RuntimeError, match=r"pip install \"datafactory-toolkit\[ray\]\"") as caught:
        build_shards("shapes", tmp_path / "o", split="val", options={"size": 2}, engine="ray")
    assert str(caught.value) == RAY_INSTALL_HINT


def test_ray_engine_is_byte_identical_to_local(tmp_path, helpers):
    ray = pytest.importorskip("ray")
    root = tmp_path / "imgs"
    helpers.jpeg_folder(root, classes=2, per_class=10, size=24)
    (root / "class_1" / "img_003.jpg").write_bytes(b"")
    local = build_shards("folder", tmp_path / "local", root=root, max_count=6, on_error="skip")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = build_shards("folder", tmp_path / "ray", root=root, max_count=6, on_error="skip", engine="ray")
    finally:
        ray.shutdown()
    assert helpers.tree(tmp_path / "ray") == helpers.tree(tmp_path / "local")
    assert remote.index["run"]["engine"] == "ray" and (remote.written, remote.skipped) == (local.written, 1)
    first = next(iter_shard_samples(tmp_path / "ray" / "000000.tar"))
    assert first["__key__"] == "class_0/img_000"
