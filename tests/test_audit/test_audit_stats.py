"""Label and image statistics, hand-computed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datafactory.audit.stats import image_statistics, label_statistics, multilabel_statistics


def test_single_labels_counts_imbalance_and_empty_classes():
    stats = label_statistics([0, 0, 0, 2, None, 2, 0, None], ["cat", "dog", "emu"])
    assert [(c["name"], c["count"]) for c in stats["classes"]] == [("cat", 4), ("dog", 0), ("emu", 2)]
    assert stats["imbalance_ratio"] == 2.0 and stats["empty_classes"] == ["dog"]
    assert (stats["samples"], stats["labelled"], stats["unlabelled"]) == (8, 6, 2) and stats["unlabelled_share"] == 0.25
    unnamed = label_statistics([5, 5, 1])
    assert [(c["index"], c["name"], c["count"]) for c in unnamed["classes"]] == [(1, "1", 1), (5, "5", 2)]
    assert label_statistics([None, None])["imbalance_ratio"] is None


def test_multilabel_positives_nan_other_and_cooccurrence():
    nan = math.nan
    matrix = np.array([[1, 0, nan], [1, 1, 1], [nan, nan, nan], [0, 1, -1]])
    stats = multilabel_statistics(matrix, ["Atelectasis", "Edema", "Mass"])
    assert [(c["positive"], c["negative"], c["unlabelled"], c["other"]) for c in stats["columns"]] == [
        (2, 1, 1, 0), (2, 1, 1, 0), (1, 0, 2, 1)]
    assert stats["cooccurrence"] == [[2, 1, 1], [1, 2, 1], [1, 1, 1]]
    assert stats["samples_without_any_label"] == 1 and stats["unlabelled_share"] == pytest.approx(4 / 12)
    assert stats["imbalance_ratio"] == 2.0 and stats["columns"][2]["name"] == "Mass"
    with pytest.raises(ValueError, match="samples, labels"):
        multilabel_statistics(np.zeros(3))


def test_image_sizes_channels_and_depths():
    stats = image_statistics([64, 64, 128, 32], [64, 64, 64, 48], [3, 3, 1, 4], [8, 8, 16, 8])
    assert stats["images"] == 4 and stats["distinct_sizes"] == 3
    assert stats["top_sizes"][0] == {"width": 64, "height": 64, "count": 2}
    assert stats["width"] == {"min": 32.0, "median": 64.0, "max": 128.0}
    assert stats["aspect"]["max"] == 2.0 and stats["aspect"]["min"] == pytest.approx(32 / 48)
    assert stats["channels"] == {"1": 1, "3": 2, "4": 1} and stats["bit_depths"] == {"8": 3, "16": 1}
    empty = image_statistics([], [], [], [])
    assert empty["images"] == 0 and empty["width"] is None and empty["aspect"] is None
