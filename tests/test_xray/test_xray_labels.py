"""Label matrices checked by hand on the small fixtures (one row per image, 18 columns).

Column order: Atelectasis Consolidation Infiltration Pneumothorax Edema Emphysema Fibrosis
Effusion Pneumonia Pleural_Thickening Cardiomegaly Nodule Mass Hernia | Lung_Lesion Fracture
Lung_Opacity Enlarged_Cardiomediastinum. ``.`` = NaN (the dataset does not say).
"""

from __future__ import annotations

import numpy as np
import pytest

import loaders.xray  # noqa: F401
from loaders import open_dataset
from loaders.xray import PATHOLOGIES, harmonise, relabel, rle_decode, rle_encode
from loaders.xray.chexpert import chexpert_labels


def matrix(*rows: str) -> np.ndarray:
    out = np.array([[np.nan if t == "." else float(t) for t in row.split()] for row in rows], dtype=np.float32)
    assert out.shape[1] == len(PATHOLOGIES)
    return out


def check(dataset, keys: list[str], expected: np.ndarray) -> None:
    assert [r["__key__"] for r in dataset.index] == keys
    np.testing.assert_array_equal(dataset.labels, expected)
    for i in range(len(dataset)):  # the decoded samples carry the same vector
        np.testing.assert_array_equal(dataset[i]["labels"].numpy(), expected[i])


def test_nih(xray, tmp_path):
    ds = open_dataset("nih", root=xray.nih(tmp_path))
    check(ds, [r[0][:-4] for r in xray.NIH_ROWS], matrix(
        "0 0 0 0 0 0 0 0 0 0 1 0 0 0 . . . .",
        "0 0 0 0 0 1 0 0 0 0 1 0 0 0 . . . .",
        "0 0 0 0 0 0 0 0 0 0 0 0 0 0 . . . .",
        "0 0 0 0 0 0 0 0 0 0 0 0 0 1 . . . .",
        "0 0 1 0 0 0 0 0 0 1 0 1 0 0 . . . .",
        "0 0 0 1 0 0 0 0 1 0 0 0 1 0 . . . .",
        "1 1 0 0 1 0 1 1 0 0 0 0 0 0 . . . .",
    ))
    assert ds[4]["meta"]["boxes"] == [{"label": "Infiltration", "xyxy": [10.0, 20.0, 40.0, 60.0]},
                                      {"label": "Nodule", "xyxy": [1.5, 2.5, 4.5, 6.5]}]
    assert ds[2]["meta"]["boxes"] == [] and ds[0]["meta"]["view"] == "PA"
    assert [r["__key__"] for r in open_dataset("nih", root=tmp_path, split="test").index] == ["00000004_000", "00000005_000"]
    assert len(open_dataset("nih", root=tmp_path, views="AP")) == 2
    assert [r["__key__"] for r in open_dataset("nih", root=tmp_path, unique_patients=True).index] == [
        "00000001_000", "00000002_000", "00000003_000", "00000004_000", "00000005_000"]


def test_nih_google(xray, tmp_path):
    ds = open_dataset("nih-google", root=xray.nih(tmp_path), views="*")
    check(ds, ["00000001_000", "00000002_000", "00000003_000"], matrix(
        ". . . 0 . . . . . . . . . . . 0 1 .",
        ". . . 0 . . . . . . . . . . . 1 0 .",
        ". . . 1 . . . . . . . . . . . 0 1 .",
    ))
    assert ds[1]["meta"]["extra_labels"] == {"Nodule or mass": 1.0}
    assert [r["__key__"] for r in open_dataset("nih-google", root=tmp_path, split="val", views="*").index] == ["00000002_000"]


CHEX_HEALTHY = "0 0 . 0 0 . . 0 0 . 0 . . . 0 0 0 0"


def test_chexpert(xray, tmp_path):
    root = xray.chexpert(tmp_path)
    ds = open_dataset("chexpert", root=root)  # frontal PA/AP: the lateral and the blank-AP/PA frontal go
    check(ds, ["train/patient00001/study1/view1_frontal", "train/patient00002/study2/view1_frontal",
               "train/patient00002/study1/view1_frontal", "train/patient00003/study1/view1_frontal"], matrix(
        CHEX_HEALTHY,
        ". . . . . . . . . . . . . . . 1 1 .",
        ". . . . . . . . . . . . . . . 1 1 .",
        CHEX_HEALTHY,  # No Finding = 1 overrides its -1.0 and 0.0 cells
    ))
    assert ds[0]["meta"]["extra_labels"] == {"Pleural Other": 0.0, "Support Devices": 1.0, "No Finding": 1.0}
    assert ds[3]["meta"]["extra_labels"]["Support Devices"] is None  # not zeroed by No Finding; -1 -> NaN
    everything = open_dataset("chexpert", root=root, views="*")
    assert [r["view"] for r in everything.index] == ["AP", "AP", "AP", "L", "PA", "UNKNOWN"]
    np.testing.assert_array_equal(everything.labels[5], matrix(". . . 1 0 . . 0 1 . 0 . . . 1 . . 1")[0])
    ones = open_dataset("chexpert", root=root, uncertain="one")
    np.testing.assert_array_equal(ones.labels[1], matrix("1 1 . . 1 . . 1 . . 1 . . . . 1 1 .")[0])
    zeros = open_dataset("chexpert", root=root, uncertain="zero")
    np.testing.assert_array_equal(zeros.labels[1], matrix("0 0 . . 0 . . 0 . . 0 . . . . 1 1 .")[0])
    unique = open_dataset("chexpert", root=root, views="*", unique_patients=True)
    assert [r["patient"] for r in unique.index] == ["patient00001", "patient00002", "patient00003", "patient00004"]
    assert unique.index[1]["__key__"] == "train/patient00002/study2/view1_frontal"  # the first row, whole


def test_mimic(xray, tmp_path):
    root = xray.mimic(tmp_path)
    ds = open_dataset("mimic-cxr", root=root)
    check(ds, ["p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",
               "p10/p10000764/s57375967/096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4",
               "p10/p10000898/s50771383/b7c6c3f4-00000000-00000000-00000000-00000002"], matrix(
        CHEX_HEALTHY,
        ". 1 . . . . . . . . . . . . . . . .",
        "0 . . . . . . 1 . . 1 . . . . . . .",
    ))
    assert ds[0]["meta"]["extra_labels"]["Support Devices"] == 0.0  # MIMIC zeroes it too
    assert len(open_dataset("mimic-cxr", root=root, split="test", views="*")) == 2
    assert [r["view"] for r in open_dataset("mimic-cxr", root=root, split="train", views="*").index] == ["PA", "LATERAL"]


def test_padchest(xray, tmp_path):
    root = xray.padchest(tmp_path)
    ds = open_dataset("padchest", root=root)
    check(ds, ["20536686640136348236148679891455886468_k6ga29", "100000000000000000000000000000000000003_cccccc",
               "100000000000000000000000000000000000005_eeeeee"], matrix(
        "0 0 0 0 0 0 0 0 0 0 0 0 0 0 . 0 . .",
        "0 0 0 0 0 0 0 0 0 1 0 0 0 1 . 1 . .",
        "0 0 0 0 0 1 1 0 0 0 0 1 0 0 . 0 . .",
    ))
    everything = open_dataset("padchest", root=root, views="*")
    np.testing.assert_array_equal(everything.labels[1:3], matrix(
        "0 0 0 0 0 0 0 1 0 0 1 0 0 0 . 0 . .",   # L: pleural effusion, cardiomegaly
        "0 1 1 0 0 0 0 0 0 0 0 0 0 0 . 0 . .",   # AP Supine: infiltrates, air bronchogram
    ))
    assert everything.index[2]["view"] == "AP Supine"
    assert len(open_dataset("padchest", root=root, views="*", exclude_children=False)) == 7  # + born 2012, + no birth year
    assert len(open_dataset("padchest", root=root, views="*", drop_known_broken=False)) == 6


def test_rsna(xray, tmp_path):
    ds = open_dataset("rsna-pneumonia", root=xray.rsna(tmp_path / "rsna"))
    check(ds, [p for p, _, _ in xray.RSNA_PATIENTS], matrix(
        ". . . . . . . . 0 . . . . . . . 0 .",
        ". . . . . . . . 1 . . . . . . . 1 .",
        ". . . . . . . . 1 . . . . . . . 1 .",
        ". . . . . . . . 0 . . . . . . . 0 .",
    ))
    assert ds[1]["meta"]["boxes"] == [{"label": "Lung Opacity", "xyxy": [264.0, 152.0, 477.0, 531.0]},
                                      {"label": "Lung Opacity", "xyxy": [562.0, 152.0, 818.0, 605.0]}]
    assert ds[1]["meta"]["class"] == "Lung Opacity" and ds[0]["meta"]["boxes"] == []
    assert [r["view"] for r in ds.index] == ["PA", "AP", "PA", "AP"]  # read from the DICOM headers


def test_siim_labels_and_masks(xray, tmp_path):
    ds = open_dataset("siim-pneumothorax", root=xray.siim(tmp_path))
    np.testing.assert_array_equal(ds.labels[:, PATHOLOGIES.index("Pneumothorax")], [0, 1, 1])
    assert np.isnan(np.delete(ds.labels, PATHOLOGIES.index("Pneumothorax"), axis=1)).all()
    masks = [ds[i]["mask"].numpy() for i in range(3)]
    assert masks[0].shape == (8, 8) and not masks[0].any()
    # "1 2 3 1" + "40 3": flat column-major indices 1, 2, 6 and 40, 41, 42 -> (row, col)
    assert sorted(zip(*np.nonzero(masks[1]))) == [(0, 5), (1, 0), (1, 5), (2, 0), (2, 5), (6, 0)]
    assert sorted(zip(*np.nonzero(masks[2]))) == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert ds[1]["meta"]["masks"] == 2


def test_rle_helpers():
    # absolute 1-based start 2, length 2 on a 2x2 image: flat indices 1, 2 -> (1, 0), (0, 1)
    np.testing.assert_array_equal(rle_decode("2 2", 2, 2, mode="absolute"), [[0, 1], [1, 0]])
    mask = np.zeros((5, 7), np.uint8)
    mask[1:3, 2:6] = 1
    mask[4, 0] = 1
    for mode in ("relative", "absolute"):
        np.testing.assert_array_equal(rle_decode(rle_encode(mask, mode=mode), 5, 7, mode=mode), mask)
    with pytest.raises(ValueError, match="odd"):
        rle_decode("1 2 3", 4, 4)
    with pytest.raises(ValueError, match="outside"):
        rle_decode("10 10", 4, 4)


def test_vindr(xray, tmp_path):
    ds = open_dataset("vindr-cxr", root=xray.vindr(tmp_path))
    check(ds, ["50a418190bc3fb1ef1633bf9678929b3", "9a5094b2563a1ef3ff50dc5c7ff71345", "051132a778e61a86eb147c7c6f564dfe"], matrix(
        "0 0 0 0 . . . 0 . 0 0 . . . . . 0 .",
        "0 0 0 0 . . . 1 . 0 1 . . . . . 0 .",
        "0 0 0 0 . . . 0 . 1 0 . . . . . 1 .",
    ))
    meta = ds[2]["meta"]
    assert meta["findings"] == ["Aortic enlargement", "Lung Opacity", "Other lesion", "Pleural thickening"]
    assert {"label": "Pleural thickening", "reader": "R9", "xyxy": [5.0, 6.0, 7.0, 8.0]} in meta["boxes"]
    assert {b["reader"] for b in meta["boxes"]} == {"R8", "R9", "R10"} and ds[0]["meta"]["boxes"] == []


def test_openi(xray, tmp_path):
    root = xray.openi(tmp_path, extracted=True)
    ds = open_dataset("openi", root=root)
    check(ds, ["CXR1_1_IM-0001-3001", "CXR10_IM-0002-1001", "CXR11_IM-0067-1001", "CXR12_IM-0090-1001"], matrix(
        "0 . 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 .",
        "1 . 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 .",
        "0 . 1 0 0 0 0 1 0 0 0 0 0 0 0 0 1 .",
        "1 . 0 0 0 0 0 0 0 1 1 1 0 0 1 0 0 .",
    ))
    assert ds[0]["meta"]["patient"] == "CXR1" and ds[2]["meta"]["view"] == "AP"
    assert len(open_dataset("openi", root=root, views="*")) == 6
    (root / "nlmcxr_dicom_metadata.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="views='\\*'"):
        open_dataset("openi", root=root)
    assert len(open_dataset("openi", root=root, views="*")) == 6


def test_covid19(xray, tmp_path):
    ds = open_dataset("covid19", root=xray.covid19(tmp_path))
    pneumonia = ". . . . . . . . {} . . . . . . . . ."
    check(ds, ["auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus", "streptococcus-pneumoniae", "normal-1", "tb-1"],
          matrix(pneumonia.format(1), pneumonia.format(1), pneumonia.format(0), pneumonia.format(0)))
    assert ds[0]["meta"]["findings"] == ["Pneumonia", "Viral", "COVID-19"]
    assert ds[0]["image"].shape[0] == 1  # an RGB JPEG keeps its first channel


def test_nlmtb(xray, tmp_path):
    root = xray.nlmtb(tmp_path)
    ds = open_dataset("nlm-tb", root=root)
    assert [(r["__key__"], r["label"]) for r in ds.index] == [
        ("montgomery/MCUCXR_0001_0", 0), ("montgomery/MCUCXR_0002_1", 1), ("montgomery/MCUCXR_0003_0", 0),
        ("shenzhen/CHNCXR_0001_0", 0), ("shenzhen/CHNCXR_0330_1", 1)]
    assert np.isnan(ds.labels).all() and ds[1]["label"] == 1 and ds.classes[1] == "tuberculosis"
    assert len(open_dataset("nlm-tb", root=root / "ChinaSet_AllFiles")) == 2
    assert len(open_dataset("nlm-tb", root=root, subset="montgomery")) == 3


def test_label_helpers():
    assert np.isnan(harmonise({})).all() and harmonise({"Hernia": 1.0})[13] == 1.0
    with pytest.raises(KeyError, match="Tuberculosis"):
        harmonise({"Tuberculosis": 1.0})
    moved = relabel(np.array([[1.0, 0.0]]), ["Hernia", "Mass"], ["Mass", "Edema", "Hernia"])
    np.testing.assert_array_equal(moved, [[0.0, np.nan, 1.0]])
    with pytest.raises(ValueError, match="uncertain"):
        chexpert_labels({}, uncertain="maybe")
    labels, extra = chexpert_labels({"No Finding": "1.0", "Edema": "-1.0", "Support Devices": " -1.0 ", "Fracture": ""})
    assert labels[4] == 0.0 and labels[PATHOLOGIES.index("Fracture")] == 0.0  # blank, but No Finding = 1
    assert np.isnan(labels[PATHOLOGIES.index("Pneumonia")]) and extra["No Finding"] == 1.0  # no such column
    assert np.isnan(extra["Support Devices"])  # not zeroed by No Finding in CheXpert; -1 -> NaN
    with pytest.raises(ValueError, match="'Edema': 'maybe' is not a CheXpert label"):
        chexpert_labels({"Edema": "maybe"})


def test_malformed_chexpert_label_names_the_file_and_column(xray, tmp_path):
    root = xray.chexpert(tmp_path)
    csv = root / "train.csv"
    lines = csv.read_text().splitlines()
    lines[1] = lines[1].replace(",1.0,", ",yes,", 1)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train\.csv.*is not a CheXpert label"):
        open_dataset("chexpert", root=root)
