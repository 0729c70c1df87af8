import math

import pytest
import torch

from loaders.schema import MAX_KEY_LENGTH, safe_key, validate_key, validate_sample


@pytest.mark.parametrize("key", ["a", "n01440764/n01440764_10026", "train_000001", "p-1/s_2/v-3", "x" * MAX_KEY_LENGTH])
def test_valid_keys_pass(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "empty"),
        ("img.jpg", "no dots"),
        ("../etc/passwd", "no dots"),
        ("/abs/path", "relative"),
        ("a//b", "relative"),
        ("a/", "relative"),
        ("a b", "only"),
        ("x" * (MAX_KEY_LENGTH + 1), "at most"),
        ("tab\there", "only"),
        ("back\\slash", "only"),
    ],
)
def test_invalid_keys_raise_naming_the_problem(key, message):
    with pytest.raises(ValueError, match=message):
        validate_key(key)


def test_non_string_key_is_a_type_error():
    with pytest.raises(TypeError, match="__key__ must be a str"):
        validate_key(3)


def test_safe_key_sanitises_and_drops_traversal():
    assert safe_key("n01440764", "n01440764_10026") == "n01440764/n01440764_10026"
    assert safe_key("patient 1/../study.v2") == "patient_1/study_v2"
    assert safe_key("a\\b.c") == "a/b_c"


def _sample(**fields):
    return {"__key__": "k", "__source__": "test", **fields}


def test_validate_sample_accepts_every_schema_field():
    sample = _sample(
        image=torch.zeros(3, 4, 5, dtype=torch.uint8),
        mask=torch.zeros(4, 5, dtype=torch.int64),
        label=2,
        labels=torch.tensor([1.0, math.nan]),
        video=torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
        audio=torch.zeros(1, 10),
        text=["a", "b"],
        meta={"fps": 10.0, "nested": {"list": [1, "x", None]}},
    )
    assert validate_sample(sample) is sample


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"image": torch.zeros(4, 5, dtype=torch.uint8)}, ValueError, "image"),
        ({"image": torch.zeros(3, 4, 5, dtype=torch.float64)}, TypeError, "dtype"),
        ({"image": torch.zeros(3, 4, 5, dtype=torch.uint8), "mask": torch.zeros(4, 6, dtype=torch.int64)}, ValueError, "does not match"),
        ({"mask": torch.zeros(4, 5)}, TypeError, "mask"),
        ({"label": 1.0}, TypeError, "label"),
        ({"label": True}, TypeError, "label"),
        ({"labels": torch.zeros(2, 2)}, ValueError, "labels"),
        ({"video": torch.zeros(2, 3, 4, 4)}, TypeError, "video"),
        ({"audio": torch.zeros(10)}, ValueError, "audio"),
        ({"text": ["a", 1]}, TypeError, "text"),
        ({"meta": {"x": float("nan")}}, ValueError, r"meta'\]\.x"),
        ({"meta": {"t": torch.zeros(1)}}, TypeError, "JSON"),
        ({"meta": []}, TypeError, "meta"),
    ],
)
def test_validate_sample_names_the_bad_field(fields, error, message):
    with pytest.raises(error, match=message):
        validate_sample(_sample(**fields))


def test_validate_sample_requires_a_key():
    with pytest.raises(ValueError, match="__key__"):
        validate_sample({"image": torch.zeros(3, 2, 2, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="no dots"):
        validate_sample({"__key__": "a.b"})


@pytest.mark.parametrize(
    "keys",
    [["a/b", "a/b"], ["a//b"], ["/a"], ["a/"], ["a.b"], [""], ["a\nb"], ["x" * (MAX_KEY_LENGTH + 1)], [3], ["a b"], ["ok", "a/"], ["", "a"], ["a", ""], ["a", "", "b"]],
)
def test_bulk_key_check_rejects_what_validate_key_rejects(keys):
    from loaders.schema import keys_valid_and_unique

    assert not keys_valid_and_unique(keys)


def test_bulk_key_check_accepts_valid_unique_keys():
    from loaders.schema import keys_valid_and_unique

    assert keys_valid_and_unique([]) and keys_valid_and_unique(["n01440764/x_1", "ILSVRC2012_val_00000001", "c/3/a-b"])
