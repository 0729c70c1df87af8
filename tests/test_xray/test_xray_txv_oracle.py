"""TorchXRayVision as an oracle: the same CSV fixtures give identical harmonised labels (NaN too).

TXV classes are always given explicit metadata paths (``csvpath`` & co.), so nothing is read from
its bundled data or downloaded. TXV's ``unique_patients`` merges columns across rows
(``groupby().first()``), so both sides use every image; rows are matched by image id.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import loaders.xray  # noqa: F401  registers the adapters until loaders/__init__ imports it
from loaders import open_dataset
from loaders.xray import PATHOLOGIES

VIEWS = ["PA", "AP"]


def txv_by_key(xrv, dataset, key) -> dict[str, np.ndarray]:
    xrv.datasets.relabel_dataset(list(xrv.datasets.default_pathologies), dataset, silent=True)
    labels = np.asarray(dataset.labels, dtype=np.float32)
    return {key(dataset.csv.iloc[i]): labels[i] for i in range(len(labels))}


def ours_by_key(dataset) -> dict[str, np.ndarray]:
    return {record["__key__"]: np.asarray(record["labels"], dtype=np.float32) for record in dataset.index}


def assert_same(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> None:
    assert sorted(ours) == sorted(theirs)
    assert ours, "the comparison must cover at least one image"
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)  # NaN == NaN here


def stem(name: str) -> str:
    return os.path.splitext(name)[0]


def test_pathology_order_is_txv_default(txv):
    assert list(PATHOLOGIES) == list(txv.datasets.default_pathologies)


@pytest.mark.parametrize("layout", ["flat", "kaggle"])
def test_nih_matches_txv(txv, xray, tmp_path, layout):
    root = xray.nih(tmp_path, layout=layout)
    ours = open_dataset("nih", root=root, views=VIEWS)
    theirs = txv.datasets.NIH_Dataset(imgpath=str(root / "images" if layout == "flat" else root), csvpath=str(root / "Data_Entry_2017_v2020.csv"),
                                      bbox_list_path=str(root / "BBox_List_2017.csv"), views=VIEWS, unique_patients=False)
    assert_same(ours_by_key(ours), txv_by_key(txv, theirs, lambda r: stem(r["Image Index"])))
    if layout == "flat":  # images too: TXV's normalize() on the same PNG, bit for bit
        floats = open_dataset("nih", root=root, views=VIEWS, image_format="float")
        for i in (0, 4):
            position = [r["__key__"] for r in floats.index].index(stem(theirs.csv.iloc[i]["Image Index"]))
            np.testing.assert_array_equal(floats[position]["image"].numpy(), theirs[i]["img"])


def test_nih_google_matches_txv(txv, xray, tmp_path):
    root = xray.nih(tmp_path)
    ours = open_dataset("nih-google", root=root, views="*")
    theirs = txv.datasets.NIH_Google_Dataset(imgpath=str(root / "images"), csvpath=str(root / "google2019_nih-chest-xray-labels.csv.gz"),
                                             views=["*"], unique_patients=False)
    assert_same(ours_by_key(ours), txv_by_key(txv, theirs, lambda r: stem(r["Image Index"])))


@pytest.mark.parametrize("views", [["PA", "AP"], ["*"], ["L"]])
def test_chexpert_matches_txv(txv, xray, tmp_path, views):
    root = xray.chexpert(tmp_path)
    ours = open_dataset("chexpert", root=root, views=views)
    theirs = txv.datasets.CheX_Dataset(imgpath=str(root), csvpath=str(root / "train.csv"), views=views, unique_patients=False)
    key = lambda r: stem(r["Path"].split("/", 1)[1])  # noqa: E731
    assert_same(ours_by_key(ours), txv_by_key(txv, theirs, key))


def test_mimic_matches_txv(txv, xray, tmp_path):
    root = xray.mimic(tmp_path)
    ours = open_dataset("mimic-cxr", root=root, views="*")
    theirs = txv.datasets.MIMIC_Dataset(imgpath=str(root / "files"), csvpath=str(root / "mimic-cxr-2.0.0-chexpert.csv.gz"),
                                        metacsvpath=str(root / "mimic-cxr-2.0.0-metadata.csv.gz"), views=["*"], unique_patients=False)
    key = lambda r: f"p{str(r['subject_id'])[:2]}/p{r['subject_id']}/s{r['study_id']}/{r['dicom_id']}"  # noqa: E731
    assert_same(ours_by_key(ours), txv_by_key(txv, theirs, key))


def test_padchest_matches_txv(txv, xray, tmp_path):
    root = xray.padchest(tmp_path)
    csv = root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"
    for views in (["PA", "AP"], ["*"]):
        ours = open_dataset("padchest", root=root, views=views)
        theirs = txv.datasets.PC_Dataset(imgpath=str(root), csvpath=str(csv), views=views, unique_patients=False)
        assert_same(ours_by_key(ours), txv_by_key(txv, theirs, lambda r: stem(r["ImageID"])))


def test_rsna_matches_txv(txv, xray, tmp_path):
    root = xray.rsna(tmp_path / "rsna")
    headers = tmp_path / "rsna_headers" / "kaggle_stage_2_train_images_dicom_headers.csv.gz"
    theirs = txv.datasets.RSNA_Pneumonia_Dataset(imgpath=str(root / "stage_2_train_images"), csvpath=str(root / "stage_2_train_labels.csv"),
                                                 dicomcsvpath=str(headers), views=["PA"], extension=".dcm")
    expected = txv_by_key(txv, theirs, lambda r: r["patientId"])
    # the view from TXV's header table and the view read from each DICOM header agree
    assert_same(ours_by_key(open_dataset("rsna-pneumonia", root=root, views="PA", dicom_headers_csv=headers)), expected)
    assert_same(ours_by_key(open_dataset("rsna-pneumonia", root=root, views="PA")), expected)


def test_siim_matches_txv(txv, xray, tmp_path):
    root = xray.siim(tmp_path)
    txv.datasets._cache_dict.pop("siim_file_map", None)  # TXV caches one file map per process
    theirs = txv.datasets.SIIM_Pneumothorax_Dataset(imgpath=str(root / "dicom-images-train"), csvpath=str(root / "train-rle.csv"))
    txv.datasets.relabel_dataset(list(txv.datasets.default_pathologies), theirs, silent=True)
    ours = {r["meta"]["image_id"]: np.asarray(r["labels"], np.float32) for r in open_dataset("siim-pneumothorax", root=root).index}
    assert len(theirs) == 4 and len(ours) == 3  # TXV has one row per mask, we one sample per image
    for i in range(len(theirs)):
        np.testing.assert_array_equal(ours[theirs.csv.iloc[i]["ImageId"]], np.asarray(theirs.labels[i], np.float32))
    txv.datasets._cache_dict.pop("siim_file_map", None)


def test_vindr_matches_txv(txv, xray, tmp_path):
    root = xray.vindr(tmp_path)
    theirs = txv.datasets.VinDr_Dataset(imgpath=str(root / "train"), csvpath=str(root / "train.csv"))
    assert_same(ours_by_key(open_dataset("vindr-cxr", root=root)), txv_by_key(txv, theirs, lambda r: r["image_id"]))


@pytest.mark.parametrize("source", ["dicom", "tsne"])
def test_openi_matches_txv(txv, xray, tmp_path, source):
    root = xray.openi(tmp_path)
    ours = open_dataset("openi", root=root, views=VIEWS, view_source=source)
    theirs = txv.datasets.Openi_Dataset(imgpath=str(root / "NLMCXR_png"), xmlpath=str(root / "NLMCXR_reports.tgz"),
                                        dicomcsv_path=str(root / "nlmcxr_dicom_metadata.csv.gz"),
                                        tsnepacsv_path=str(root / "nlmcxr_tsne_pa.csv.gz"), use_tsne_derived_view=source == "tsne",
                                        views=VIEWS, unique_patients=False)
    assert_same(ours_by_key(ours), txv_by_key(txv, theirs, lambda r: r["imageid"]))


@pytest.mark.parametrize("views", [["PA", "AP"], ["*"]])
def test_covid19_matches_txv(txv, xray, tmp_path, views):
    root = xray.covid19(tmp_path)
    ours = open_dataset("covid19", root=root, views=views)
    theirs = txv.datasets.COVID19_Dataset(imgpath=str(root / "images"), csvpath=str(root / "metadata.csv"), views=views)
    assert_same(ours_by_key(ours), txv_by_key(txv, theirs, lambda r: stem(r["filename"])))


def test_nlmtb_matches_txv(txv, xray, tmp_path):
    root = xray.nlmtb(tmp_path)
    for folder, subset in (("MontgomerySet", "montgomery"), ("ChinaSet_AllFiles", "shenzhen")):
        theirs = txv.datasets.NLMTB_Dataset(imgpath=str(root / folder))
        expected = {f"{subset}/{stem(r['fname'])}": int(theirs.labels[i][0]) for i, (_, r) in enumerate(theirs.csv.iterrows())}
        ours = open_dataset("nlm-tb", root=root, subset=subset)
        assert {r["__key__"]: r["label"] for r in ours.index} == expected
        txv.datasets.relabel_dataset(list(txv.datasets.default_pathologies), theirs, silent=True)
        assert np.isnan(np.asarray(theirs.labels, np.float64)).all() and np.isnan(ours.labels).all()
