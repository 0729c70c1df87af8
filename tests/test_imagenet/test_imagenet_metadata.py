"""Package data (1000 wnids, A/R subsets) and the metadata-file parsers."""

from __future__ import annotations

import numpy as np
import pytest

from loaders.imagenet import imagenet_class_names, imagenet_wnids, subset_indices, subset_wnids
from loaders.imagenet.metadata import (
    parse_synset_mapping,
    read_devkit_ground_truth,
    read_devkit_meta,
    read_real_labels,
    read_val_solution,
)


def test_packaged_imagenet_classes_are_the_standard_sorted_list():
    wnids, names = imagenet_wnids(), imagenet_class_names()
    assert len(wnids) == len(set(wnids)) == len(names) == 1000 and list(wnids) == sorted(wnids)
    assert (wnids[0], names[0]) == ("n01440764", "tench, Tinca tinca")
    assert (wnids[1], names[1]) == ("n01443537", "goldfish, Carassius auratus")
    assert (wnids[65], names[65]) == ("n01751748", "sea snake")
    assert (wnids[999], names[999]) == ("n15075141", "toilet tissue, toilet paper, bathroom tissue")
    assert names[134] == names[517] == "crane"  # the bird and the machine share a name


def test_packaged_subsets_match_the_published_lists():
    # as in the datasets' own eval.py (indices_in_1k of natural-adv-examples and imagenet-r)
    a, r = subset_indices("imagenet-a"), subset_indices("imagenet-r")
    assert len(a) == len(r) == 200 and a == sorted(a) and r == sorted(r)
    assert a[:10] == [6, 11, 13, 15, 17, 22, 23, 27, 30, 37] and a[-5:] == [981, 984, 986, 987, 988]
    assert r[:10] == [1, 2, 4, 6, 8, 9, 11, 13, 22, 23] and r[-5:] == [967, 980, 981, 983, 988]
    assert subset_wnids("imagenet-a")[:3] == ("n01498041", "n01531178", "n01534433")
    assert subset_wnids("imagenet-r")[-3:] == ("n09835506", "n10565667", "n12267677")
    assert len(set(subset_wnids("imagenet-a")) & set(subset_wnids("imagenet-r"))) == 86
    with pytest.raises(ValueError, match="subset must be one of"):
        subset_indices("imagenet-o")


def test_synset_mapping_splits_on_the_first_space_only():
    wnids, names = parse_synset_mapping(
        "n01440764 tench, Tinca tinca\n\nn01484850 great white shark, white shark, man-eater\n"
    )
    assert wnids == ("n01440764", "n01484850")
    assert names == ("tench, Tinca tinca", "great white shark, white shark, man-eater")
    with pytest.raises(ValueError, match="LOC.txt: wnid n01440764 appears on lines 1 and 2"):
        parse_synset_mapping("n01440764 a\nn01440764 b\n", source="LOC.txt")
    with pytest.raises(ValueError, match="line 1 does not start with a WordNet id"):
        parse_synset_mapping("tench n01440764\n")


def test_val_solution(tmp_path):
    path = tmp_path / "LOC_val_solution.csv"
    path.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n"
        "ILSVRC2012_val_00000001,n01751748 111 108 441 193 \n"
    )
    assert read_val_solution(path) == {"ILSVRC2012_val_00008726": "n02119789", "ILSVRC2012_val_00000001": "n01751748"}
    path.write_text("ImageId,Label\nx,n01440764\n")
    with pytest.raises(ValueError, match="expected header 'ImageId,PredictionString'"):
        read_val_solution(path)
    path.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,\n")
    with pytest.raises(ValueError, match="line 2 .* empty PredictionString"):
        read_val_solution(path)


def test_devkit_meta_reads_leaves_by_field_name(tmp_path, kit):
    ids = kit.devkit_ids()
    meta = read_devkit_meta(kit.write_meta_mat(tmp_path / "meta.mat", ids))
    assert len(meta.id_to_wnid) == 1000 and meta.wnids == imagenet_wnids()  # ancestors (ids > 1000) left out
    assert meta.id_to_wnid[449] == "n01440764" and meta.id_to_wnid[490] == "n01751748"
    assert meta.names[0] == "tench, Tinca tinca"
    assert ids != {w: i + 1 for i, w in enumerate(imagenet_wnids())}  # the fixture's devkit order is not sorted order


def test_devkit_meta_errors(tmp_path):
    from scipy.io import savemat

    bad = tmp_path / "meta.mat"
    synsets = np.zeros((1, 1), dtype=[("ILSVRC2012_ID", object), ("WNID", object)])
    synsets[0, 0] = (np.uint16(1), "n01440764")
    savemat(bad, {"synsets": synsets})
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['words', 'num_children'\]"):
        read_devkit_meta(bad)
    savemat(bad, {"other": np.zeros(3)})
    with pytest.raises(ValueError, match="no 'synsets' variable"):
        read_devkit_meta(bad)
    bad.write_bytes(b"not a MATLAB file at all" * 8)
    with pytest.raises(ValueError, match="cannot read MATLAB file"):
        read_devkit_meta(bad)


def test_ground_truth_and_real_json_errors(tmp_path):
    truth = tmp_path / "gt.txt"
    truth.write_text("490\n361\n\n171\n")
    assert read_devkit_ground_truth(truth) == [490, 361, 171]
    truth.write_text("490\nn01440764\n")
    with pytest.raises(ValueError, match="line 2 is not an integer id"):
        read_devkit_ground_truth(truth)
    real = tmp_path / "real.json"
    real.write_text("[[], [970, 795], [230, 231]]")
    assert read_real_labels(real) == [[], [970, 795], [230, 231]]
    for text, message in (("{}", "expected a JSON list"), ("[[1000]]", "entry 0"), ("[[1], [true]]", "entry 1"), ("[[", "malformed")):
        real.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_real_labels(real)


def test_folder_rows_behave_like_a_list_of_dicts():
    from loaders.imagenet.common import FolderRows

    rows = FolderRows()
    rows.add("train/a", 0, ["a/x", "a/y"], ["x.JPEG", "y.JPEG"])
    rows.add("train/empty", 1, [], [])
    rows.add("train/b", 2, ["b/z"], ["z.JPEG"], {"severity": 3})
    as_list = [
        {"__key__": "a/x", "dir": "train/a", "name": "x.JPEG", "label": 0},
        {"__key__": "a/y", "dir": "train/a", "name": "y.JPEG", "label": 0},
        {"__key__": "b/z", "dir": "train/b", "name": "z.JPEG", "label": 2, "severity": 3},
    ]
    assert len(rows) == 3 and list(rows) == as_list and rows.keys() == ["a/x", "a/y", "b/z"]
    assert [rows[i] for i in range(3)] == as_list and rows[-1] == as_list[-1] and rows[1:] == as_list[1:]
    with pytest.raises(IndexError):
        rows[3]
    with pytest.raises(ValueError, match="same length"):
        rows.add("x", 0, ["k"], [])
