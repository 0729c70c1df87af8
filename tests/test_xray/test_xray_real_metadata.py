"""The real metadata files TorchXRayVision bundles (verbatim releases: NIH's bracket-comma header,
Google's CRLF file, SIIM's leading-space column, VinDr, RSNA's zip, OpenI's report archive):
our adapters and TXV give identical harmonised labels for every image. No image is read.

CheXpert (223k rows) and PadChest (160k) match too but take too long for the unit suite.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import loaders.xray  # noqa: F401
from loaders import open_dataset


@pytest.fixture
def data(txv) -> Path:
    folder = Path(os.path.dirname(txv.__file__)) / "data"
    if not (folder / "Data_Entry_2017_v2020.csv.gz").is_file():
        pytest.skip("this torchxrayvision install has no bundled metadata")
    return folder


def compare(txv, ours, theirs, column: str, strip: int = 0) -> int:
    """Assert equal label matrices, rows matched by ``theirs.csv[column]`` (minus ``strip`` chars)."""
    txv.datasets.relabel_dataset(list(txv.datasets.default_pathologies), theirs, silent=True)
    expected = np.asarray(theirs.labels, dtype=np.float32)
    mine = {r["__key__"]: r["labels"] for r in ours.index}
    keys = [str(v)[: len(str(v)) - strip] for v in theirs.csv[column].tolist()]
    assert len(mine) == len(expected) == len(set(keys))
    np.testing.assert_array_equal(np.asarray([mine[k] for k in keys], dtype=np.float32), expected)
    return len(mine)


def test_nih_and_google(txv, data, tmp_path):
    ours = open_dataset("nih", root=tmp_path, csv=data / "Data_Entry_2017_v2020.csv.gz", bbox_csv=data / "BBox_List_2017.csv.gz")
    theirs = txv.datasets.NIH_Dataset(imgpath=str(tmp_path), csvpath=str(data / "Data_Entry_2017_v2020.csv.gz"),
                                      bbox_list_path=str(data / "BBox_List_2017.csv.gz"), views=["PA", "AP"], unique_patients=False)
    assert compare(txv, ours, theirs, "Image Index", strip=4) == 112120
    assert sum(len(r["meta"]["boxes"]) for r in ours.index) == 984
    google = data / "google2019_nih-chest-xray-labels.csv.gz"
    ours = open_dataset("nih-google", root=tmp_path, csv=google, views="*")
    theirs = txv.datasets.NIH_Google_Dataset(imgpath=str(tmp_path), csvpath=str(google), views=["*"], unique_patients=False)
    assert compare(txv, ours, theirs, "Image Index", strip=4) == 4376


def test_vindr_rsna_siim(txv, data, tmp_path):
    ours = open_dataset("vindr-cxr", root=tmp_path, csv=data / "vinbigdata-train.csv.gz")
    theirs = txv.datasets.VinDr_Dataset(imgpath=str(tmp_path), csvpath=str(data / "vinbigdata-train.csv.gz"))
    assert compare(txv, ours, theirs, "image_id") == 15000
    labels, headers = data / "kaggle_stage_2_train_labels.csv.zip", data / "kaggle_stage_2_train_images_dicom_headers.csv.gz"
    ours = open_dataset("rsna-pneumonia", root=tmp_path, csv=labels, dicom_headers_csv=headers)
    theirs = txv.datasets.RSNA_Pneumonia_Dataset(imgpath=str(tmp_path), csvpath=str(labels), dicomcsvpath=str(headers), views=["PA", "AP"])
    assert compare(txv, ours, theirs, "patientId") == 26684
    (tmp_path / "dicom-images-train").mkdir()
    ours = open_dataset("siim-pneumothorax", root=tmp_path, csv=data / "siim-pneumothorax-train-rle.csv.gz")
    txv.datasets._cache_dict.pop("siim_file_map", None)
    theirs = txv.datasets.SIIM_Pneumothorax_Dataset(imgpath=str(tmp_path), csvpath=str(data / "siim-pneumothorax-train-rle.csv.gz"))
    txv.datasets._cache_dict.pop("siim_file_map", None)
    txv.datasets.relabel_dataset(list(txv.datasets.default_pathologies), theirs, silent=True)
    mine = {r["meta"]["image_id"]: r["labels"] for r in ours.index}
    assert len(mine) == 12047 and len(theirs) == 12954  # TXV: one row per mask
    rows = [mine[k] for k in theirs.csv["ImageId"].tolist()]
    np.testing.assert_array_equal(np.asarray(rows, np.float32), np.asarray(theirs.labels, np.float32))


def test_openi(txv, data, tmp_path):
    shutil.copy(data / "NLMCXR_reports.tgz", tmp_path / "NLMCXR_reports.tgz")
    ours = open_dataset("openi", root=tmp_path, view_csv=data / "nlmcxr_dicom_metadata.csv.gz")
    theirs = txv.datasets.Openi_Dataset(imgpath=str(tmp_path), xmlpath=str(data / "NLMCXR_reports.tgz"),
                                        dicomcsv_path=str(data / "nlmcxr_dicom_metadata.csv.gz"),
                                        tsnepacsv_path=str(data / "nlmcxr_tsne_pa.csv.gz"), views=["PA", "AP"], unique_patients=False)
    assert compare(txv, ours, theirs, "imageid") == 4014
