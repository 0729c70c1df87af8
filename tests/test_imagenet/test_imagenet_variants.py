"""``imagenet-a``, ``imagenet-r``, ``imagenet-c``, ``imagenet-v2``, ``imagenet-sketch``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.datasets import ImageFolder

import loaders
from loaders.imagenet import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, subset_indices, subset_logits_mask


def test_imagenet_a_labels_keys_readme_and_helpers(imagenet_a, kit):
    ds = loaders.open_dataset("imagenet-a", imagenet_a)  # the folder holding imagenet-a/
    records = list(ds.records())
    # n01498041 (stingray) is 1k index 6 / A label 0; n12267677 (acorn) is 988 / 199 (eval.py)
    assert [(r["__key__"], r["label"]) for r in records] == [
        ("n01498041/0_000116_digital_clock___digital_clock_0_865662", 6),
        ("n01498041/0_000524_stingray___stingray_0_9", 6),
        ("n12267677/0_00239_acorn___acorn_0_5", 988),
    ]
    samples = list(ds.samples())
    assert [s["meta"]["label_200"] for s in samples] == [0, 0, 199]
    assert samples[0]["meta"]["file"] == "n01498041/0.000116_digital clock _ digital clock_0.865662.jpg"
    assert all(s["image"].shape[0] == 3 for s in samples)  # one greyscale JPEG -> RGB
    assert ds.indices_in_1k == subset_indices("imagenet-a") and len(ds.indices_in_1k) == 200
    assert ds.indices_in_1k[0] == 6 and ds.indices_in_1k[199] == 988
    mask = ds.logits_mask()
    assert mask.dtype == torch.bool and mask.shape == (1000,) and int(mask.sum()) == 200 and mask[6] and not mask[0]
    # ImageFolder (what the README uses) gives the 200-class label: same class order as label_200
    reference = ImageFolder(str(imagenet_a / "imagenet-a"))
    assert [reference.classes[label] for _, label in reference.samples] == [s["meta"]["wnid"] for s in samples]
    logits = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0))
    in_200 = logits[:, ds.indices_in_1k].argmax(1)  # Hendrycks' eval: 200-class prediction
    in_1k = logits.masked_fill(~mask, float("-inf")).argmax(1)  # same prediction as a 1k index
    assert torch.equal(torch.tensor(ds.indices_in_1k)[in_200], in_1k)


def test_imagenet_a_rejects_folders_outside_its_200_classes(imagenet_a, kit):
    kit.write(imagenet_a / "imagenet-a" / kit.TENCH / "x.jpg", kit.jpeg_bytes(1))  # tench is not in A
    with pytest.raises(ValueError, match=rf"\['{kit.TENCH}'\].*not wnids"):
        loaders.open_dataset("imagenet-a", imagenet_a)


def test_imagenet_r(imagenet_r):
    ds = loaders.open_dataset("imagenet-r", imagenet_r)
    assert [(r["__key__"], r["label"]) for r in ds.records()] == [
        ("n01443537/art_0", 1),
        ("n01443537/cartoon_1", 1),
        ("n12267677/sketch_3", 988),
    ]
    assert [s["meta"]["label_200"] for s in ds.samples()] == [0, 0, 199]
    assert ds.indices_in_1k[:5] == [1, 2, 4, 6, 8] and ds.indices_in_1k[-1] == 988
    assert int((subset_logits_mask("imagenet-a") & subset_logits_mask("imagenet-r")).sum()) == 86  # A and R share 86


def test_imagenet_c_corruption_and_severity_selection(imagenet_c):
    ds = loaders.open_dataset("imagenet-c", imagenet_c, corruption=["defocus_blur", "gaussian_noise"], severity=[3, 1])
    assert ds.corruptions == ("gaussian_noise", "defocus_blur") and ds.severities == (1, 3)  # canonical order
    keys = [r["__key__"] for r in ds.records()]
    assert keys[:2] == ["gaussian_noise/1/ILSVRC2012_val_00000002", "gaussian_noise/1/ILSVRC2012_val_00000001"]
    assert len(keys) == 8 and len(set(keys)) == 8
    sample = ds[len(ds) - 1]
    assert sample["meta"] == {
        "wnid": "n01751748", "file": "blur/defocus_blur/3/n01751748/ILSVRC2012_val_00000001.JPEG",
        "corruption": "defocus_blur", "severity": 3,
    }  # fmt: skip
    assert sample["label"] == 65
    one = loaders.open_dataset("imagenet-c", imagenet_c, corruption="gaussian_noise", severity=3, decode=False)
    assert len(one) == 2 and json.loads(one[0]["json"])["severity"] == 3


def test_imagenet_c_all_means_the_ones_on_disk_but_missing_severity_raises(imagenet_c):
    with pytest.raises(FileNotFoundError, match="missing severity folder"):
        loaders.open_dataset("imagenet-c", imagenet_c)  # severity="all" but only 1 and 3 exist
    ds = loaders.open_dataset("imagenet-c", imagenet_c, severity=[1, 3])
    assert ds.corruptions == ("gaussian_noise", "defocus_blur") and len(ds) == 8


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"corruption": "rain"}, ValueError, "corruption must be"),
        ({"corruption": []}, ValueError, "corruption must be"),
        ({"severity": 6}, ValueError, "severity must be"),
        ({"severity": [0, 1]}, ValueError, "severity must be"),
        ({"severity": True}, ValueError, "severity must be"),
        ({"corruption": "fog", "severity": 1}, FileNotFoundError, "not found"),
        ({"corruption": "benchmark", "severity": 1}, FileNotFoundError, "not found"),
        ({"split": "val"}, ValueError, "split must be"),
    ],
)
def test_imagenet_c_bad_arguments(imagenet_c, options, error, message):
    with pytest.raises(error, match=message):
        loaders.open_dataset("imagenet-c", imagenet_c, **options)


def test_corruption_lists():
    assert len(BENCHMARK_CORRUPTIONS) == 15 and len(ALL_CORRUPTIONS) == 19
    assert BENCHMARK_CORRUPTIONS[0] == "gaussian_noise" and BENCHMARK_CORRUPTIONS[-1] == "jpeg_compression"
    assert ALL_CORRUPTIONS[15:] == ("speckle_noise", "gaussian_blur", "spatter", "saturate")


def test_imagenet_v2_numeric_folders_are_mapped_numerically(imagenet_v2):
    ds = loaders.open_dataset("imagenet-v2", imagenet_v2, variant="matched-frequency")
    assert [r["label"] for r in ds.records()] == [0, 1, 2, 10]
    assert [r["__key__"].split("/")[0] for r in ds.records()] == ["0", "1", "2", "10"]
    # the README's ImageFolder suggestion sorts "0","1","10","2" and mislabels folder "10" as 2
    reference = ImageFolder(str(imagenet_v2 / "imagenetv2-matched-frequency-format-val"))
    assert reference.class_to_idx["10"] == 2 and reference.class_to_idx["2"] == 3
    sample = ds[3]
    assert sample["label"] == 10 and sample["meta"]["variant"] == "matched-frequency"
    assert sample["meta"]["wnid"] == ds.wnids[10]
    with pytest.raises(FileNotFoundError, match="threshold0.7"):
        loaders.open_dataset("imagenet-v2", imagenet_v2, variant="threshold0.7")


def test_imagenet_v2_rejects_non_index_folders(imagenet_v2, kit):
    with pytest.raises(ValueError, match="variant must be one of"):
        loaders.open_dataset("imagenet-v2", imagenet_v2, variant="matched_frequency")
    kit.write(imagenet_v2 / "imagenetv2-matched-frequency-format-val" / "1000" / "a.jpeg", kit.jpeg_bytes(1))
    with pytest.raises(ValueError, match=r"\['1000'\].*class indices 0\.\.999"):
        loaders.open_dataset("imagenet-v2", imagenet_v2)


def test_imagenet_sketch(imagenet_sketch):
    ds = loaders.open_dataset("imagenet-sketch", imagenet_sketch)
    assert [(r["__key__"], r["label"]) for r in ds.records()] == [
        ("n01440764/sketch_0", 0), ("n01440764/sketch_1", 0), ("n15075141/sketch_0", 999), ("n15075141/sketch_1", 999),
    ]  # fmt: skip
    image = ds[0]["image"]
    assert image.shape[0] == 3 and torch.equal(image[0], image[2])  # greyscale sketch -> RGB
    assert loaders.open_dataset("imagenet-sketch", imagenet_sketch, image_mode="unchanged")[0]["image"].shape[0] == 1
    with pytest.raises(ValueError, match="split must be"):
        loaders.open_dataset("imagenet-sketch", imagenet_sketch, "train")


@pytest.mark.parametrize("name", ["imagenet-a", "imagenet-r", "imagenet-c", "imagenet-v2", "imagenet-sketch"])
def test_empty_root_fails_with_the_expected_layout(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="docs/imagenet.md"):
        loaders.open_dataset(name, tmp_path)


@pytest.mark.parametrize(
    ("name", "fixture", "argv", "first_label"),
    [
        ("imagenet", "imagenet_torchvision", ["--split", "val"], "65"),
        ("imagenet", "imagenet_kaggle", ["--split", "val"], "65"),
        ("imagenet", "imagenet_devkit", ["--split", "val"], "65"),
        ("imagenet-a", "imagenet_a", [], "6"),
        ("imagenet-r", "imagenet_r", [], "1"),
        ("imagenet-c", "imagenet_c", ["-o", "corruption=defocus_blur", "-o", "severity=[1,3]"], "0"),
        ("imagenet-v2", "imagenet_v2", ["-o", "variant=matched-frequency"], "0"),
        ("imagenet-sketch", "imagenet_sketch", [], "0"),
    ],
)
def test_datafactory_datasets_show(request, capsys, name, fixture, argv, first_label):
    from datafactory.cli import main

    built = request.getfixturevalue(fixture)
    root = built if isinstance(built, Path) else built.root
    assert main(["datasets", "show", name, "--root", str(root), *argv]) == 0
    out = capsys.readouterr().out
    assert "classes   1000: tench, goldfish, great white shark" in out
    assert f"label        {first_label}\n" in out and "torch.uint8 [3," in out
