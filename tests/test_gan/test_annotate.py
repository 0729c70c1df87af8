"""The annotation loop: sample generated images, import masks drawn as index or palette PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from datafactory.gan.annotate import (
    ANNOTATION_FORMAT,
    annotation_key,
    import_annotations,
    oracle_annotate,
    read_manifest,
    sample_for_annotation,
    to_uint8,
)
from datafactory.gan.generator import latents_for_seeds

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_RES, TINY_Z = 16, 8  # the tiny generator of conftest.py


@pytest.fixture
def sampled(tmp_path, tiny_generator):
    manifest = sample_for_annotation(tiny_generator, 4, 100, tmp_path / "ann", batch_size=3)
    return manifest


def _mask(value_rows):
    return np.asarray(value_rows, dtype=np.uint8)


def _write_masks(folder, keys, make):
    folder.mkdir(exist_ok=True)
    for i, key in enumerate(keys):
        make(i).save(folder / f"{key}.png")


def _keys(manifest):
    return [entry["key"] for entry in json.loads(manifest.read_text())["images"]]


def test_sample_writes_images_seeds_latents_manifest(sampled, tiny_generator):
    data = json.loads(sampled.read_text())
    assert data["format"] == ANNOTATION_FORMAT and data["resolution"] == TINY_RES and data["z_dim"] == TINY_Z
    assert [e["seed"] for e in data["images"]] == [100, 101, 102, 103]
    assert [e["key"] for e in data["images"]] == [annotation_key(s) for s in range(100, 104)]
    assert data["generator"] == {"checkpoint": None, "sha256": None}  # an in-memory module has no file
    latents = torch.tensor([e["latent"] for e in data["images"]], dtype=torch.float32)
    assert torch.equal(latents, latents_for_seeds(range(100, 104), TINY_Z))  # float32 survives JSON exactly
    reference = to_uint8(tiny_generator.sample(4, 100).images)
    for i, entry in enumerate(data["images"]):
        with Image.open(sampled.parent / entry["image"]) as image:
            assert image.mode == "RGB" and image.size == (TINY_RES, TINY_RES)
            pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
        assert (pixels.int() - reference[i].int()).abs().max() <= 1  # batches of 3 vs one batch of 4
    assert (sampled.parent / "masks").is_dir() and not any((sampled.parent / "masks").iterdir())


def test_sample_refuses_to_overwrite_and_records_checkpoint_hash(sampled, tiny_generator, tmp_path):
    with pytest.raises(FileExistsError, match="overwrite"):
        sample_for_annotation(tiny_generator, 2, 0, sampled.parent)
    checkpoint = tmp_path / "weights.pt"
    torch.save(tiny_generator.module.state_dict(), checkpoint)
    again = sample_for_annotation(tiny_generator, 2, 0, sampled.parent, checkpoint=checkpoint, overwrite=True)
    record = json.loads(again.read_text())["generator"]
    import hashlib

    assert record == {"checkpoint": "weights.pt", "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()}


def test_import_index_and_palette_masks(sampled):
    keys = _keys(sampled)
    masks = sampled.parent / "masks"
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 3, size=(TINY_RES, TINY_RES)).astype(np.uint8) for _ in keys]
    arrays[1][0, :4] = 255  # unlabeled pixels

    def make(i):
        if i % 2 == 0:
            return Image.fromarray(arrays[i], mode="L")
        palette = Image.fromarray(arrays[i], mode="P")
        palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [7] * (253 * 3))  # colours are irrelevant
        return palette

    _write_masks(masks, keys, make)
    (masks / ".DS_Store").write_bytes(b"x")  # hidden files are ignored
    annotations = import_annotations(masks, sampled, num_classes=3)
    assert annotations.keys == tuple(keys) and annotations.seeds == (100, 101, 102, 103)
    assert annotations.masks.dtype == torch.int64 and annotations.images.dtype == torch.uint8
    for i in range(4):
        assert torch.equal(annotations.masks[i], torch.from_numpy(arrays[i]).long())
    assert annotations.images.shape == (4, 3, TINY_RES, TINY_RES)
    assert torch.equal(annotations.latents, latents_for_seeds(range(100, 104), TINY_Z))


def test_import_16_bit_index_masks(sampled):
    keys = _keys(sampled)
    _write_masks(sampled.parent / "masks", keys,
                 lambda i: Image.fromarray(np.full((TINY_RES, TINY_RES), 300 + i, dtype=np.uint16)))
    annotations = import_annotations(sampled.parent / "masks", sampled, num_classes=400, ignore_index=None)
    assert annotations.masks[:, 0, 0].tolist() == [300, 301, 302, 303]


def test_wrong_size_mask_names_the_file(sampled):
    keys = _keys(sampled)
    _write_masks(sampled.parent / "masks", keys,
                 lambda i: Image.fromarray(np.zeros((TINY_RES, TINY_RES + (i == 2)), dtype=np.uint8)))
    with pytest.raises(ValueError, match=rf"{keys[2]}\.png.*17x16 pixels but its image is 16x16"):
        import_annotations(sampled.parent / "masks", sampled, num_classes=4)


def test_unknown_class_value_names_file_value_and_pixel(sampled):
    keys = _keys(sampled)

    def make(i):
        array = np.zeros((TINY_RES, TINY_RES), dtype=np.uint8)
        if i == 1:
            array[3, 5] = 7
        return Image.fromarray(array)

    _write_masks(sampled.parent / "masks", keys, make)
    with pytest.raises(ValueError, match=rf"{keys[1]}\.png.*1 pixels.*\[7\].*row 3, column 5"):
        import_annotations(sampled.parent / "masks", sampled, num_classes=4)
    # 255 is accepted as "unlabeled" only while it is the ignore value
    _write_masks(sampled.parent / "masks", keys, lambda i: Image.fromarray(np.full((TINY_RES, TINY_RES), 255, np.uint8)))
    assert int(import_annotations(sampled.parent / "masks", sampled, num_classes=4).masks.max()) == 255
    with pytest.raises(ValueError, match=r"\[255\]"):
        import_annotations(sampled.parent / "masks", sampled, num_classes=4, ignore_index=None)


def test_colour_mask_is_refused(sampled):
    keys = _keys(sampled)
    _write_masks(sampled.parent / "masks", keys,
                 lambda i: Image.fromarray(np.zeros((TINY_RES, TINY_RES, 3), dtype=np.uint8)))
    with pytest.raises(ValueError, match=rf"{keys[0]}\.png.*single-channel.*palette"):
        import_annotations(sampled.parent / "masks", sampled, num_classes=4)


def test_corrupt_mask_names_the_file(sampled):
    keys = _keys(sampled)
    _write_masks(sampled.parent / "masks", keys, lambda i: Image.fromarray(np.zeros((TINY_RES, TINY_RES), np.uint8)))
    path = sampled.parent / "masks" / f"{keys[3]}.png"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match=rf"{keys[3]}\.png"):
        import_annotations(sampled.parent / "masks", sampled, num_classes=4)


def test_missing_and_extra_files(sampled):
    keys = _keys(sampled)
    masks = sampled.parent / "masks"
    _write_masks(masks, keys[:3], lambda i: Image.fromarray(np.ones((TINY_RES, TINY_RES), np.uint8)))
    with pytest.raises(FileNotFoundError, match=rf"1 of the 4 images have no mask \('{keys[3]}\.png'\)") as caught:
        import_annotations(masks, sampled, num_classes=2)
    assert caught.value.filename.endswith(f"{keys[3]}.png")
    subset = import_annotations(masks, sampled, num_classes=2, partial=True)
    assert subset.keys == tuple(keys[:3]) and subset.masks.shape == (3, TINY_RES, TINY_RES)
    (masks / "seed_999.png").write_bytes((masks / f"{keys[0]}.png").read_bytes())
    (masks / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"2 entries that are no image's mask: 'notes\.txt', 'seed_999\.png'"):
        import_annotations(masks, sampled, num_classes=2, partial=True)


def test_bad_manifest_and_arguments(sampled, tmp_path):
    masks = sampled.parent / "masks"
    with pytest.raises(ValueError, match="num_classes"):
        import_annotations(masks, sampled, num_classes=0)
    with pytest.raises(ValueError, match="ignore_index"):
        import_annotations(masks, sampled, num_classes=4, ignore_index=2)
    with pytest.raises(FileNotFoundError):
        import_annotations(tmp_path / "nowhere", sampled, num_classes=4)
    data = json.loads(sampled.read_text())
    data["images"][1]["key"] = "../../etc/passwd"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"images\[1\]: key '\.\./\.\./etc/passwd'"):
        read_manifest(bad)
    data = json.loads(sampled.read_text())
    data["images"][0]["latent"] = data["images"][0]["latent"][:-1]
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"images\[0\]: latent must be a list of {TINY_Z} numbers"):
        read_manifest(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(bad)


def test_oracle_annotates_with_the_shapes_parts(sampled):
    folder = oracle_annotate(sampled.parent)
    annotations = import_annotations(folder, sampled, num_classes=4, ignore_index=None)
    from loaders.shapes import annotate_parts

    assert torch.equal(annotations.masks, annotate_parts(annotations.images))


def test_symlinked_masks_folder_is_not_written_through(sampled, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    masks = sampled.parent / "masks"
    masks.rmdir()
    masks.symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match="not a folder"):
        oracle_annotate(sampled.parent)
    assert not any(elsewhere.iterdir())


def test_tiny_generator_is_deterministic_per_seed(make_tiny):
    one, two = make_tiny(), make_tiny(batch_size=1)
    assert torch.allclose(one.sample(3, 5).images, two.sample(3, 5).images, atol=1e-6)
