import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import loaders
from loaders import FolderDataset, SampleError


def _write_image(path: Path, seed: int, size=(12, 10), fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path, format=fmt)


@pytest.fixture
def class_tree(tmp_path):
    root = tmp_path / "pets"
    files = {"cat/a.jpg": "JPEG", "cat/sub/b.png": "PNG", "dog/c.JPEG": "JPEG", "emu/d.jpeg": "JPEG", "emu/e.webp": "WEBP"}
    for i, (rel, fmt) in enumerate(files.items()):
        _write_image(root / "train" / rel, i, fmt=fmt)
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    (root / "train" / ".hidden").mkdir()
    return root


def test_class_layout_matches_torchvision_imagefolder(class_tree):
    ours = loaders.open_dataset("folder", class_tree, split="train")
    assert ".hidden" not in ours.classes  # torchvision would make it a class (and fail: it is empty)
    (class_tree / "train" / ".hidden").rmdir()
    theirs = torchvision.datasets.ImageFolder(str(class_tree / "train"))
    assert list(ours.classes) == theirs.classes
    assert sorted((Path(r["path"]).name, r["label"]) for r in ours.records()) == sorted(
        (Path(p).name, t) for p, t in theirs.samples
    )
    sample = ours[0]
    loaders.validate_sample(sample)
    assert sample["__source__"] == "folder" and sample["__key__"] == "cat/a"


def test_decode_false_gives_the_original_bytes(class_tree):
    dataset = FolderDataset(class_tree, "train", decode=False)
    for i, record in enumerate(dataset.records()):
        encoded = dataset[i]
        suffix = next(k for k in encoded if k not in ("__key__", "__source__", "cls"))
        assert encoded[suffix] == Path(record["path"]).read_bytes()
        assert encoded["cls"] == str(record["label"]).encode()
    assert {next(k for k in dataset[i] if k in ("jpg", "png", "webp")) for i in range(len(dataset))} == {"jpg", "png", "webp"}


def test_records_do_not_touch_media(class_tree):
    dataset = FolderDataset(class_tree, "train")
    for record in dataset.records():
        os.remove(record["path"])
    assert len(list(dataset.records())) == 5  # the index is already built; media reads fail only on load
    with pytest.raises(SampleError, match="a.jpg"):
        dataset[0]


def test_error_policy_counts_add_up(tmp_path):
    root = tmp_path / "data"
    for i in range(4):
        _write_image(root / "x" / f"good{i}.jpg", i)
    good = (root / "x" / "good0.jpg").read_bytes()
    (root / "x" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "x" / "empty.jpg").write_bytes(b"")
    (root / "y").mkdir()
    (root / "y" / "text.png").write_bytes(b"this is not a png")

    strict = FolderDataset(root)
    bad_keys = {"x/truncated", "x/empty", "y/text"}
    for i, record in enumerate(strict.records()):
        if record["__key__"] in bad_keys:
            with pytest.raises(SampleError) as info:
                strict[i]
            assert Path(record["path"]).name in str(info.value) and info.value.key == record["__key__"]

    lenient = FolderDataset(root, on_error="skip")
    kept = list(lenient.samples())
    stats = lenient.stats()
    assert len(kept) == 4 and stats["skipped"] == 3 and stats["attempted"] == 7
    assert stats["attempted"] == stats["loaded"] + stats["skipped"] == stats["total"]
    assert {s["key"] for s in stats["skips"]} == bad_keys
    assert all("file" in s["reason"] for s in stats["skips"])
    batch = loaders.skip_none_collate([lenient[i] for i in range(len(lenient))])  # None where skipped
    assert batch["image"].shape[0] == 4 and lenient.stats()["skipped"] == 6  # a second pass skips again


def test_segmentation_layout_pairs_masks(tmp_path):
    root = tmp_path / "seg"
    (root / "masks").mkdir(parents=True)
    for i, name in enumerate(["a", "b"]):
        _write_image(root / "images" / f"{name}.jpg", i)
        Image.fromarray(np.full((10, 12), i + 1, dtype=np.uint8)).save(root / "masks" / f"{name}.png")
    _write_image(root / "images" / "orphan.jpg", 9)
    dataset = loaders.open_dataset("folder", root, on_error="skip")
    assert dataset.layout == "segmentation" and dataset.classes is None
    samples = list(dataset.samples())
    assert [s["__key__"] for s in samples] == ["a", "b"]
    assert samples[1]["mask"].shape == (10, 12) and int(samples[1]["mask"].max()) == 2
    assert "label" not in samples[0]
    assert dataset.stats()["skips"][0]["key"] == "orphan" and "mask" in dataset.stats()["skips"][0]["reason"]


def test_segmentation_layout_with_class_folders(tmp_path):
    root = tmp_path / "seg"
    for cls in ("b_class", "a_class"):
        _write_image(root / "images" / cls / "x.png", 1, fmt="PNG")
        (root / "masks" / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(root / "masks" / cls / "x.png")
    dataset = FolderDataset(root)
    assert dataset.classes == ("a_class", "b_class")
    assert [dataset[i]["label"] for i in range(2)] == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"root": None}, ValueError, "root"),
        ({"root": "/definitely/not/here"}, FileNotFoundError, "not a directory"),
        ({"layout": "grid"}, ValueError, "layout must be one of"),
        ({"extensions": (".tif",)}, ValueError, "not supported"),
        ({"on_error": "ignore"}, ValueError, "on_error must be one of"),
        ({"decode": "yes"}, TypeError, "decode"),
    ],
)
def test_bad_arguments_raise_naming_them(class_tree, kwargs, error, message):
    with pytest.raises(error, match=message):
        FolderDataset(**{"root": class_tree / "train", **kwargs})


def test_empty_folder_and_duplicate_keys(tmp_path):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        FolderDataset(tmp_path / "empty")
    _write_image(tmp_path / "dup" / "c" / "x.jpg", 0)
    _write_image(tmp_path / "dup" / "c" / "x.png", 1, fmt="PNG")
    with pytest.raises(ValueError, match="duplicate key 'c/x'"):
        FolderDataset(tmp_path / "dup")


def test_transform_and_index_errors(class_tree):
    dataset = FolderDataset(class_tree, "train", transform=lambda s: {**s, "image": s["image"].float()})
    assert dataset[0]["image"].dtype == torch.float32
    with pytest.raises(IndexError):
        dataset[99]
    with pytest.raises(TypeError, match="index"):
        dataset.load("0")
