"""``imagenet``: train and the three val layouts, ReaL labels, byte-exact raw samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

import loaders
from loaders.imagenet import ImageNetDataset, imagenet_wnids

TENCH, GOLDFISH, SEA_SNAKE, TOILET_TISSUE = "n01440764", "n01443537", "n01751748", "n15075141"
PNG_NAMED_JPEG = "n02105855"  # Shetland sheepdog, index 230; its n02105855_2933.JPEG is a PNG


def val_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


# standard indices checked by hand (docs/imagenet.md): tench 0, goldfish 1, sea snake 65, toilet tissue 999
EXPECTED_VAL = {1: 65, 2: 0, 3: 1, 4: 0, 5: 999}
EXPECTED_TRAIN = {
    f"{TENCH}/{TENCH}_10026": 0,
    f"{TENCH}/{TENCH}_9": 0,
    f"{GOLDFISH}/{GOLDFISH}_1309": 1,
    f"{SEA_SNAKE}/{SEA_SNAKE}_77": 65,
    f"{PNG_NAMED_JPEG}/{PNG_NAMED_JPEG}_2933": 230,
    f"{TOILET_TISSUE}/{TOILET_TISSUE}_1": 999,
}


def _labels(ds: ImageNetDataset) -> dict[str, int]:
    return {record["__key__"]: record["label"] for record in ds.records()}


def test_train_labels_keys_and_rgb_output(imagenet_torchvision):
    ds = loaders.open_dataset("imagenet", imagenet_torchvision.root, "train")
    assert _labels(ds) == EXPECTED_TRAIN
    assert [r["__key__"] for r in ds.records()] == sorted(EXPECTED_TRAIN)
    assert len(ds.classes) == 1000 and ds.classes[0] == "tench" and ds.wnids[65] == SEA_SNAKE
    assert ds.synonyms[0] == "tench, Tinca tinca" and ds.classes[134] == ds.classes[517] == "crane"
    for i in range(len(ds)):
        sample = loaders.validate_sample(ds[i])
        image = sample["image"]
        assert image.dtype == torch.uint8 and image.shape[0] == 3, sample["__key__"]  # greyscale, CMYK -> RGB
        assert sample["label"] == EXPECTED_TRAIN[sample["__key__"]]
        assert sample["meta"]["wnid"] == ds.wnids[sample["label"]]
        assert sample["__source__"] == "imagenet"


def test_train_matches_torchvision_imagefolder_on_all_1000_classes(tmp_path, kit):
    root = tmp_path / "imagenet"
    data = kit.jpeg_bytes(0, size=(4, 4))
    for wnid in imagenet_wnids():
        kit.write(root / "train" / wnid / f"{wnid}_1.JPEG", data)
    ours = loaders.open_dataset("imagenet", root, "train", decode=False)
    reference = ImageFolder(str(root / "train"))
    assert len(ours) == len(reference.samples) == 1000
    theirs = {Path(path).relative_to(root).as_posix(): label for path, label in reference.samples}
    mine = {f"{r['dir']}/{r['name']}": r["label"] for r in ours.records()}
    assert mine == theirs
    assert list(ours.wnids) == reference.classes


def test_png_named_jpeg_keeps_its_bytes_and_gets_png_suffix(imagenet_torchvision):
    ds = loaders.open_dataset("imagenet", imagenet_torchvision.root, "train", decode=False)
    for i in range(len(ds)):
        raw = ds[i]
        rel = f"{raw['__key__'].split('/')[0]}/{json.loads(raw['json'])['file'].split('/')[-1]}"
        original = imagenet_torchvision.train[rel]
        suffix = "png" if raw["__key__"].startswith(PNG_NAMED_JPEG) else "jpg"
        assert set(raw) == {"__key__", "__source__", suffix, "cls", "json"}
        assert raw[suffix] == original  # byte for byte
        assert int(raw["cls"]) == EXPECTED_TRAIN[raw["__key__"]]
        assert json.loads(raw["json"]) == {"wnid": raw["__key__"].split("/")[0], "file": f"train/{rel}"}
        decoded = loaders.decode_sample(raw, image_mode="RGB")
        assert torch.equal(decoded["image"], ds.load(i, decode=True)["image"])


def test_cmyk_and_greyscale_decode_like_pil_convert_rgb(imagenet_torchvision):
    ds = loaders.open_dataset("imagenet", imagenet_torchvision.root, "train")
    keys = [r["__key__"] for r in ds.records()]
    grey = ds[keys.index(f"{TENCH}/{TENCH}_9")]["image"]
    assert grey.shape[0] == 3 and torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    path = imagenet_torchvision.root / "train" / GOLDFISH / f"{GOLDFISH}_1309.JPEG"
    with Image.open(path) as image:
        assert image.mode == "CMYK"
        reference = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    cmyk = ds[keys.index(f"{GOLDFISH}/{GOLDFISH}_1309")]["image"]
    assert cmyk.shape == reference.shape
    assert (cmyk.int() - reference.int()).abs().max() <= 3  # libjpeg vs PIL CMYK->RGB rounding


def test_val_torchvision_layout(imagenet_torchvision):
    ds = loaders.open_dataset("imagenet", imagenet_torchvision.root, "val")
    assert ds.layout == "torchvision"
    assert [r["__key__"] for r in ds.records()] == [val_name(n)[:-5] for n in sorted(EXPECTED_VAL)]
    assert [r["label"] for r in ds.records()] == [EXPECTED_VAL[n] for n in sorted(EXPECTED_VAL)]
    reference = ImageFolder(str(imagenet_torchvision.root / "val"))
    # ImageFolder's indices are local to the 4 present folders; ours are the standard 1k ones
    assert [ds.wnids[r["label"]] for r in ds.records()] == [
        reference.classes[label] for _, label in sorted(reference.samples, key=lambda s: Path(s[0]).name)
    ]
    assert ds[3]["image"].shape[0] == 3  # the CMYK val image


def test_val_kaggle_layout(imagenet_kaggle):
    ds = loaders.open_dataset("imagenet", imagenet_kaggle.root, "val")
    assert ds.layout == "kaggle" and ds.class_source == "LOC_synset_mapping.txt"
    assert ds.synonyms[2].startswith("great white shark, white shark, man-eater")  # first-space split
    assert ds.classes[2] == "great white shark"
    records = list(ds.records())
    assert [r["__key__"] for r in records] == [f"ILSVRC2012_val_{n:08d}" for n in range(1, 6)]  # rows sorted
    assert {int(r["__key__"][-8:]): r["label"] for r in records} == EXPECTED_VAL
    raw = ds.load(0, decode=False)
    assert raw["jpg"] == imagenet_kaggle.val[1]
    assert json.loads(raw["json"])["file"] == f"ILSVRC/Data/CLS-LOC/val/{val_name(1)}"


def test_train_kaggle_layout(imagenet_kaggle):
    ds = loaders.open_dataset("imagenet", imagenet_kaggle.root, "train")
    assert _labels(ds) == EXPECTED_TRAIN
    assert next(ds.records())["dir"].startswith("ILSVRC/Data/CLS-LOC/train/")
    assert ds.layout == "kaggle"


def test_val_devkit_layout_maps_devkit_ids_through_meta_mat(imagenet_devkit):
    truth = imagenet_devkit.root / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    lines = truth.read_text().split()
    assert lines[:2] == ["490", "449"]  # devkit ids, not standard indices
    ds = loaders.open_dataset("imagenet", imagenet_devkit.root, "val")
    assert ds.layout == "devkit" and ds.class_source == "meta.mat"
    assert {int(r["__key__"][-8:]): r["label"] for r in ds.records()} == EXPECTED_VAL
    assert list(ds.wnids) == list(imagenet_wnids()) and ds.classes[65] == "sea snake"
    assert ds.load(4, decode=False)["jpg"] == imagenet_devkit.val[5]


def test_devkit_folder_option_and_explicit_layout(imagenet_devkit, tmp_path):
    moved = tmp_path / "elsewhere"
    (imagenet_devkit.root / "ILSVRC2012_devkit_t12" / "data").rename(moved)
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_validation_ground_truth"):
        loaders.open_dataset("imagenet", imagenet_devkit.root, "val")
    ds = loaders.open_dataset("imagenet", imagenet_devkit.root, "val", layout="devkit", devkit=moved)
    assert [r["label"] for r in ds.records()] == [EXPECTED_VAL[n] for n in sorted(EXPECTED_VAL)]


def test_real_labels_multi_hot_with_empty_list(imagenet_torchvision):
    ds = loaders.open_dataset("imagenet", imagenet_torchvision.root, "val", labels="real")
    first, second, fifth = ds[0], ds[1], ds[4]
    assert first["labels"].dtype == torch.float32 and first["labels"].shape == (1000,)
    assert first["labels"].sum() == 0 and first["meta"]["real_labels"] == []  # no valid ReaL label
    assert torch.nonzero(second["labels"]).flatten().tolist() == [0, 389] and second["label"] == 0
    assert torch.nonzero(fifth["labels"]).flatten().tolist() == [1, 999] and fifth["label"] == 999
    raw = ds.load(1, decode=False)
    assert set(raw) == {"__key__", "__source__", "jpg", "cls", "json", "labels.npy"}
    assert torch.equal(loaders.decode("labels.npy", raw["labels.npy"]), second["labels"])


def test_real_labels_work_in_the_kaggle_layout_too(imagenet_kaggle, tmp_path, kit):
    real = kit.write(tmp_path / "real.json", json.dumps([[65], [0], [1, 2], [], [999]]))
    ds = loaders.open_dataset("imagenet", imagenet_kaggle.root, "val", labels="real", real_json=real)
    assert [s["meta"]["real_labels"] for s in ds.samples()] == [[65], [0], [1, 2], [], [999]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"split": "test"}, "split must be one of"),
        ({"split": "val", "layout": "folders"}, "layout must be one of"),
        ({"split": "val", "labels": "reassessed"}, "labels must be one of"),
        ({"split": "train", "labels": "real"}, "split='val' only"),
        ({"split": "val", "image_mode": "BGR"}, "image_mode must be one of"),
    ],
)
def test_bad_arguments_name_the_allowed_values(imagenet_torchvision, options, message):
    with pytest.raises(ValueError, match=message):
        loaders.open_dataset("imagenet", imagenet_torchvision.root, **options)


def test_unknown_option_and_layout_problems(imagenet_torchvision, tmp_path, kit):
    with pytest.raises(TypeError, match="does not accept"):
        loaders.open_dataset("imagenet", imagenet_torchvision.root, "val", corruption="fog")
    flat = tmp_path / "flat"
    kit.write(flat / "val" / val_name(1), kit.jpeg_bytes(1))
    with pytest.raises(FileNotFoundError, match="LOC_val_solution.csv"):
        loaders.open_dataset("imagenet", flat, "val")
    with pytest.raises(FileNotFoundError, match="no train folder"):
        loaders.open_dataset("imagenet", flat, "train")
    kit.write(flat / "train" / "cats" / "a.jpg", kit.jpeg_bytes(2))
    with pytest.raises(ValueError, match=r"\['cats'\].*not wnids"):
        loaders.open_dataset("imagenet", flat, "train")
    (imagenet_torchvision.root / "real.json").unlink()
    with pytest.raises(FileNotFoundError, match="real.json"):
        loaders.open_dataset("imagenet", imagenet_torchvision.root, "val", labels="real")
