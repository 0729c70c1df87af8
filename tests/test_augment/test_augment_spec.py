"""The spec language: strict parsing, round trips (string and JSON), errors naming the allowed
keys, and building working pipelines."""

from __future__ import annotations

import json

import pytest
import torch

import augment as A
from augment.spec import OPS

SPECS = [
    "patch_rotate:patch_size=32",
    "patch_shuffle:model_patch_size=16,patch_size=32 | randaugment:magnitude=9,num_ops=2,p=0.5 / trivialaugment",
    "patch_infill:patch_size=16,replace_rate=0.25~0.375 | augmix:all_ops=false,severity=2",
    "autoaugment:policy=cifar10 / autoaugment:policy=svhn,p=0.25",
]


@pytest.mark.parametrize("text", SPECS)
def test_string_and_json_round_trip(text):
    spec = A.parse_spec(text)
    assert A.format_spec(spec) == text  # these are written canonically
    assert A.parse_spec(A.format_spec(spec)) == spec
    assert A.AugmentSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())  # valid JSON
    assert isinstance(spec.build(), A.Compose)


def test_canonical_form_and_whitespace():
    spec = A.parse_spec("  randaugment : num_ops = 2 , magnitude=9 |patch_rotate:patch_size=16  ")
    assert A.format_spec(spec) == "randaugment:magnitude=9,num_ops=2 | patch_rotate:patch_size=16"


def test_bad_sections_name_the_allowed_keys():
    with pytest.raises(ValueError, match=r"unknown augment op 'rotate'.*allowed: \['augmix', 'autoaugment'"):
        A.parse_spec("rotate:patch_size=16")
    with pytest.raises(ValueError, match=r"op 'randaugment' has no argument 'n'; allowed keys: \['num_ops', 'magnitude'"):
        A.parse_spec("randaugment:n=2")
    with pytest.raises(ValueError, match="expected key=value"):
        A.parse_spec("randaugment:2")
    with pytest.raises(ValueError, match="empty section"):
        A.parse_spec("randaugment || augmix")
    with pytest.raises(ValueError, match="given twice"):
        A.parse_spec("randaugment:num_ops=1,num_ops=2")
    with pytest.raises(ValueError, match="is not a number"):
        A.parse_spec("patch_infill:patch_size=8,replace_rate=a~b")
    with pytest.raises(ValueError, match="p must be"):
        A.parse_spec("augmix:p=2")
    with pytest.raises(ValueError, match="allowed keys"):
        A.AugmentSpec.from_json('[[{"op": "augmix", "sev": 2}]]')
    with pytest.raises(ValueError, match="list of sections"):
        A.AugmentSpec.from_json('{"op": "augmix"}')
    with pytest.raises(ValueError, match="'op' key"):
        A.AugmentSpec.from_json('[[{"name": "augmix"}]]')
    # values are validated by the transforms themselves when built
    with pytest.raises(ValueError, match="patch_size"):
        A.build("patch_rotate:patch_size=0")


def test_every_op_is_reachable_and_builds(image_factory):
    x = image_factory(2, (32, 32))
    for name in OPS:
        args = ",patch_size=8" if name.startswith("patch") else ",size=32" if name == "random_resized_crop" else ""
        pipeline = A.build(f"{name}:p=1.0{args}")
        out = pipeline(x, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == x.dtype


def test_crop_and_flip_in_specs(image_factory):
    """``p`` goes to the flip itself (no RandomApply around it); the crop takes ranges."""
    pipeline = A.build("random_resized_crop:size=24,scale=0.5~1.0 | horizontal_flip:p=0.25")
    crop, flip = pipeline.transforms
    assert isinstance(crop, A.RandomResizedCrop) and crop.size == (24, 24) and crop.scale == (0.5, 1.0)
    assert isinstance(flip, A.RandomHorizontalFlip) and flip.p == 0.25
    assert A.format_spec(A.parse_spec("horizontal_flip:p=0.25")) == "horizontal_flip:p=0.25"
    assert A.build("horizontal_flip").transforms[0].p == 0.5
    out = pipeline(image_factory(3, (32, 48)), generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 24, 24)
    with pytest.raises(ValueError, match="allowed keys"):
        A.build("horizontal_flip:size=3")
