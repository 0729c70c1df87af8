"""Chest X-ray metadata naming images that are absent (a partial download): the index keeps the
images present, ``stats()["missing"]`` counts the others, one warning names the count and the
first, and ``strict=True`` raises. No image is read to find out: folder listings only."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest

import loaders.xray  # noqa: F401
from loaders import SampleError, open_dataset
from loaders.base import MissingFilesWarning

COLLECTIONS = {  # name -> (builder, sub-folder the adapter opens, options)
    "nih": ("nih", "", {}),
    "nih-google": ("nih", "", {"views": "*"}),
    "chexpert": ("chexpert", "CheXpert-v1.0-small", {}),
    "mimic-cxr": ("mimic", "", {}),
    "padchest": ("padchest", "", {}),
    "rsna-pneumonia": ("rsna", "", {}),  # no header table next to it: views come from the DICOMs
    "siim-pneumothorax": ("siim", "", {"views": ["PA", "AP"]}),  # views read from the DICOMs
    "vindr-cxr": ("vindr", "", {"views": "*"}),
    "openi": ("openi", "", {}),
    "covid19": ("covid19", "", {}),
}


def root_of(tmp_path, name):
    builder, sub, _ = COLLECTIONS[name]
    return tmp_path / sub if sub else tmp_path


def opened(xray, tmp_path, name, **options):
    builder, sub, defaults = COLLECTIONS[name]
    if not any(tmp_path.iterdir()):
        getattr(xray, builder)(tmp_path)
    return open_dataset(name, root=root_of(tmp_path, name), **{**defaults, **options})


def labels_by_key(ds) -> dict[str, list[float]]:
    return {r["__key__"]: np.nan_to_num(np.asarray(r["labels"], np.float32), nan=-9.0).tolist() for r in ds.index}  # NaN != NaN


def silent(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingFilesWarning)
        return function(*args, **kwargs)


@pytest.mark.parametrize("layout", ["flat", "kaggle"])
def test_nih_partial_folder_indexes_present_images(xray, tmp_path, layout):
    xray.nih(tmp_path, layout=layout)
    full = silent(open_dataset, "nih", root=tmp_path)
    assert len(full) == 7 and full.stats()["missing"] == 0
    expected = labels_by_key(full)
    gone = {"00000001_001", "00000004_000"}
    for record in full.index:
        if record["__key__"] in gone:
            os.remove(record["path"])
    with pytest.warns(MissingFilesWarning, match=r"nih: 2 of the 7 images named by Data_Entry_2017_v2020\.csv .*00000001_001\.png") as caught:
        ds = open_dataset("nih", root=tmp_path)
    assert len(caught) == 1
    keys = [k for k in expected if k not in gone]
    assert [r["__key__"] for r in ds.index] == keys and len(ds) == 5
    assert labels_by_key(ds) == {k: expected[k] for k in keys}  # labels of the present images unchanged
    assert len(list(ds.samples())) == 5
    stats = ds.stats()
    assert stats["missing"] == 2 and stats["attempted"] == stats["loaded"] + stats["skipped"] == 5
    with pytest.raises(FileNotFoundError, match=r"2 of the 7 .*00000001_001\.png"):
        open_dataset("nih", root=tmp_path, strict=True)
    with pytest.raises(TypeError, match="strict"):
        open_dataset("nih", root=tmp_path, strict=1)


def test_chexpert_counts_only_rows_of_the_requested_views(xray, tmp_path):
    root = xray.chexpert(tmp_path)
    full = silent(open_dataset, "chexpert", root=root, views="*")
    expected = labels_by_key(full)
    os.remove(root / "train/patient00002/study1/view2_lateral.jpg")  # a lateral: not requested by default
    os.remove(root / "train/patient00002/study1/view1_frontal.jpg")
    shutil.rmtree(root / "train/patient00003")  # a whole patient folder
    with pytest.warns(MissingFilesWarning, match=r"chexpert: 2 of the 4 images named by train\.csv .*patient00002/study1/view1_frontal\.jpg"):
        ds = open_dataset("chexpert", root=root)
    assert [r["__key__"] for r in ds.index] == ["train/patient00001/study1/view1_frontal", "train/patient00002/study2/view1_frontal"]
    assert labels_by_key(ds) == {k: expected[k] for k in labels_by_key(ds)} and ds.stats()["missing"] == 2
    with pytest.warns(MissingFilesWarning, match=r"3 of the 6 .*"):
        every_view = open_dataset("chexpert", root=root, views="*")
    assert len(every_view) == 3 and every_view.stats()["missing"] == 3
    with pytest.raises(FileNotFoundError, match=r"chexpert: 2 of the 4 .*patient00002/study1/view1_frontal\.jpg"):
        open_dataset("chexpert", root=root, strict=True)


def test_unique_patients_falls_back_to_an_image_that_is_present(xray, tmp_path):
    root = xray.chexpert(tmp_path)
    os.remove(root / "train/patient00002/study2/view1_frontal.jpg")  # the patient's first row
    with pytest.warns(MissingFilesWarning, match="1 of the 4"):
        ds = open_dataset("chexpert", root=root, unique_patients=True)
    assert [r["__key__"] for r in ds.index] == ["train/patient00001/study1/view1_frontal", "train/patient00002/study1/view1_frontal",
                                                "train/patient00003/study1/view1_frontal"]


def test_no_image_at_all_keeps_the_metadata_and_says_so(xray, tmp_path):
    xray.nih(tmp_path)
    expected = labels_by_key(open_dataset("nih", root=tmp_path))
    shutil.rmtree(tmp_path / "images")
    with pytest.warns(MissingFilesWarning, match="7 of the 7 .*none is present"):
        ds = open_dataset("nih", root=tmp_path)
    assert labels_by_key(ds) == expected and ds.stats()["missing"] == 7
    with pytest.raises(SampleError, match="00000001_000.png"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="7 of the 7"):
        open_dataset("nih", root=tmp_path, strict=True)


@pytest.mark.parametrize("name", sorted(COLLECTIONS))
def test_every_collection_leaves_out_counts_and_warns(xray, tmp_path, name):
    full = silent(opened, xray, tmp_path, name, strict=True)
    assert full.stats()["missing"] == 0 and len(full) >= 2
    expected = labels_by_key(full)
    victim = full.index[1]
    os.remove(victim["path"])
    with pytest.warns(MissingFilesWarning, match=rf"{name}: 1 of the {len(full)} images .*{os.path.basename(victim['path'])}"):
        ds = opened(xray, tmp_path, name)
    assert len(ds) == len(full) - 1 and ds.stats()["missing"] == 1
    assert victim["__key__"] not in labels_by_key(ds)
    assert labels_by_key(ds) == {k: v for k, v in expected.items() if k != victim["__key__"]}
    with pytest.raises(FileNotFoundError, match="1 of the"):
        opened(xray, tmp_path, name, strict=True)


def test_merge_adds_up_the_missing_counts(xray, tmp_path):
    xray.nih(tmp_path / "n")
    root = xray.chexpert(tmp_path / "c")
    os.remove(tmp_path / "n/images/00000002_000.png")
    os.remove(root / "train/patient00001/study1/view1_frontal.jpg")
    with pytest.warns(MissingFilesWarning):
        both = loaders.xray.merge(open_dataset("nih", root=tmp_path / "n"), open_dataset("chexpert", root=root))
    assert both.stats()["missing"] == 2 and len(both) == 6 + 3
