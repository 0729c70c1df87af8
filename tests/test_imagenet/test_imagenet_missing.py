"""ImageNet val from a partial folder: metadata entries without an image are left out and counted.

In the Kaggle and devkit layouts (and for ReaL in every layout) the metadata names all 50,000
val images; a folder holding a subset must index the images present, report how many entries
had no image (``stats()["missing"]`` and one warning naming the count and an example), and
raise with ``strict=True``.
"""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

import loaders
from loaders import SampleError
from loaders.base import MissingFilesWarning

LAYOUTS = ["imagenet_kaggle", "imagenet_devkit"]


def val_dir(fixture) -> object:
    kaggle = fixture.root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    return kaggle if kaggle.is_dir() else fixture.root / "val"


def labels_by_key(ds) -> dict[str, int]:
    return {record["__key__"]: record["label"] for record in ds.records()}


@pytest.fixture(params=LAYOUTS)
def flat_val(request):
    return request.getfixturevalue(request.param)


def test_subset_folder_indexes_present_images_counts_and_warns(flat_val, kit):
    full = loaders.open_dataset("imagenet", flat_val.root, "val")
    expected = labels_by_key(full)
    assert len(expected) == 5
    for number in (2, 4):
        (val_dir(flat_val) / kit.val_name(number)).unlink()
    with pytest.warns(MissingFilesWarning, match=r"2 of the 5 val images .*ILSVRC2012_val_00000002\.JPEG") as caught:
        ds = loaders.open_dataset("imagenet", flat_val.root, "val")
    assert len(caught) == 1
    keys = [f"ILSVRC2012_val_{n:08d}" for n in (1, 3, 5)]
    assert len(ds) == 3 and [ds.key(i) for i in range(len(ds))] == keys
    assert labels_by_key(ds) == {key: expected[key] for key in keys}  # labels of the present images unchanged
    samples = list(ds.samples())
    assert [int(s["label"]) for s in samples] == [expected[key] for key in keys]
    stats = ds.stats()
    assert stats["missing"] == 2 and stats["skipped"] == 0
    assert stats["attempted"] == stats["loaded"] + stats["skipped"] == 3


def test_strict_raises_naming_the_count_and_the_first_missing_file(flat_val, kit):
    (val_dir(flat_val) / kit.val_name(3)).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 5 val images .*ILSVRC2012_val_00000003\.JPEG"):
        loaders.open_dataset("imagenet", flat_val.root, "val", strict=True)
    with pytest.raises(TypeError, match="strict"):
        loaders.open_dataset("imagenet", flat_val.root, "val", strict="yes")


def test_complete_folder_is_silent_and_counts_zero(flat_val, imagenet_torchvision):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingFilesWarning)
        for root, split in ((flat_val.root, "val"), (imagenet_torchvision.root, "val"), (imagenet_torchvision.root, "train")):
            ds = loaders.open_dataset("imagenet", root, split, strict=True)
            assert ds.stats()["missing"] == 0


def test_no_image_at_all_keeps_a_metadata_only_index_that_says_so(flat_val, kit):
    expected = labels_by_key(loaders.open_dataset("imagenet", flat_val.root, "val"))
    for number in range(1, 6):
        (val_dir(flat_val) / kit.val_name(number)).unlink()
    with pytest.warns(MissingFilesWarning, match=r"5 of the 5 .*none is present"):
        ds = loaders.open_dataset("imagenet", flat_val.root, "val")
    assert labels_by_key(ds) == expected and ds.stats()["missing"] == 5
    with pytest.raises(SampleError, match=r"ILSVRC2012_val_00000001\.JPEG"):
        ds[0]


def test_real_entries_without_an_image_are_counted_in_every_layout(imagenet_kaggle, imagenet_torchvision, kit):
    real = [[], [0, 389], [1], [0], [999, 1], [7]]  # entry 6 names an image no folder holds
    json.dump(real, open(imagenet_kaggle.root / "real.json", "w"))
    (val_dir(imagenet_kaggle) / kit.val_name(2)).unlink()
    with pytest.warns(MissingFilesWarning, match=r"2 of the 6 val images named by LOC_val_solution\.csv and real\.json"
                                                 r".*ILSVRC2012_val_00000002\.JPEG"):
        ds = loaders.open_dataset("imagenet", imagenet_kaggle.root, "val", labels="real")
    assert [ds.key(i)[-1] for i in range(len(ds))] == ["1", "3", "4", "5"] and ds.stats()["missing"] == 2
    assert [r["real"] for r in ds.records()] == [real[0], real[2], real[3], real[4]]
    with pytest.raises(FileNotFoundError, match="2 of the 6"):
        loaders.open_dataset("imagenet", imagenet_kaggle.root, "val", labels="real", strict=True)

    # torchvision: the index is the listing; ReaL entries whose image is absent are counted
    shutil.rmtree(imagenet_torchvision.root / "val" / kit.TOILET_TISSUE)  # image 5
    with pytest.warns(MissingFilesWarning, match=r"1 of the 5 val images named by real\.json .*ILSVRC2012_val_00000005\.JPEG"):
        tv = loaders.open_dataset("imagenet", imagenet_torchvision.root, "val", labels="real")
    assert len(tv) == 4 and tv.stats()["missing"] == 1
    plain = loaders.open_dataset("imagenet", imagenet_torchvision.root, "val")  # no metadata names files
    assert len(plain) == 4 and plain.stats()["missing"] == 0
