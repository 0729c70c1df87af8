import json

import pytest
import torch

import loaders
from loaders import PART_CLASSES, SHAPE_CLASSES, ShapesDataset, annotate_parts


def test_shapes_meets_the_spec():
    dataset = loaders.open_dataset("shapes", split="val", size=40)
    assert len(SHAPE_CLASSES) >= 5 and len(PART_CLASSES) >= 4 and dataset.classes == SHAPE_CLASSES
    counts = torch.zeros(len(SHAPE_CLASSES))
    for sample in dataset.samples():
        loaders.validate_sample(sample)
        image, mask, objects = sample["image"], sample["mask"], sample["meta"]["objects"]
        assert image.shape == (3, 64, 64) and image.dtype == torch.uint8 and mask.shape == (64, 64)
        assert 1 <= len(objects) <= 3
        assert set(mask.unique().tolist()) <= set(range(len(PART_CLASSES)))
        visible = [o["visible_pixels"] for o in objects]
        assert SHAPE_CLASSES[sample["label"]] == objects[visible.index(max(visible))]["shape"]
        assert sum(visible) == int((mask > 0).sum())  # every object pixel belongs to exactly one object
        counts[sample["label"]] += 1
        background = image[:, mask == 0].float()
        assert background.std(dim=1).mean() > 2  # textured and noisy, not flat
    assert (counts > 0).sum() >= 4  # the label space is actually used


def test_rendering_is_deterministic_and_random_access():
    a = ShapesDataset(split="train", size=6, seed=3)
    b = ShapesDataset(split="train", size=50, seed=3)
    for i in (5, 0, 3):
        sa, sb = a[i], b[i]
        assert torch.equal(sa["image"], sb["image"]) and torch.equal(sa["mask"], sb["mask"]) and sa["label"] == sb["label"]
    assert not torch.equal(a[0]["image"], ShapesDataset(split="train", size=1, seed=4)[0]["image"])
    assert not torch.equal(a[0]["image"], ShapesDataset(split="val", size=1, seed=3)[0]["image"])
    assert a[0]["__key__"] == "train_000000"


@pytest.mark.parametrize("resolution", [16, 32, 96])
def test_resolution_is_configurable(resolution):
    sample = ShapesDataset(split="test", size=1, resolution=resolution)[0]
    assert sample["image"].shape == (3, resolution, resolution) and sample["mask"].shape == (resolution, resolution)


def test_oracle_labels_rendered_parts(capsys):
    dataset = ShapesDataset(split="test", size=64, seed=11)
    samples = list(dataset.samples())
    images = torch.stack([s["image"] for s in samples])
    truth = torch.stack([s["mask"] for s in samples])
    guess = annotate_parts(images)
    assert guess.shape == truth.shape and guess.dtype == torch.int64
    accuracy = (guess == truth).float().mean().item()
    ious = {}
    for i, name in enumerate(PART_CLASSES):
        union = ((truth == i) | (guess == i)).sum().item()
        ious[name] = ((truth == i) & (guess == i)).sum().item() / union
    with capsys.disabled():
        print(f"\n[shapes oracle] pixel accuracy {accuracy:.4f}, IoU " + ", ".join(f"{k} {v:.3f}" for k, v in ious.items()))
    assert accuracy > 0.99 and min(ious.values()) > 0.95
    assert torch.equal(annotate_parts(images[0]), guess[0])  # unbatched == batched
    assert torch.equal(annotate_parts(images.float() / 255), guess)  # float input in [0, 1]


def test_oracle_is_not_fooled_by_a_plain_background():
    grey = torch.full((3, 8, 8), 120, dtype=torch.uint8)
    assert int(annotate_parts(grey).sum()) == 0
    red = torch.zeros(3, 8, 8, dtype=torch.uint8)
    red[0] = 220
    assert (annotate_parts(red) == 1).all()
    with pytest.raises(ValueError, match="image"):
        annotate_parts(torch.zeros(1, 8, 8))


def test_encoded_samples_decode_to_the_same_sample():
    dataset = ShapesDataset(split="val", size=3)
    encoded = ShapesDataset(split="val", size=3, decode=False)[2]
    assert sorted(encoded) == ["__key__", "__source__", "cls", "json", "mask.png", "png"]
    decoded = loaders.decode_sample(encoded)
    original = dataset[2]
    assert torch.equal(decoded["image"], original["image"]) and torch.equal(decoded["mask"], original["mask"])
    assert decoded["label"] == original["label"] and decoded["meta"] == original["meta"]


def test_on_disk_root_renders_once_and_reads_back(tmp_path):
    on_disk = ShapesDataset(tmp_path, split="val", size=5)
    manifest = tmp_path / "val" / "shapes.json"
    assert manifest.exists() and len(list((tmp_path / "val" / "images").rglob("*.png"))) == 5
    memory = ShapesDataset(split="val", size=5)
    for i in range(5):
        assert torch.equal(on_disk[i]["image"], memory[i]["image"]) and on_disk[i]["label"] == memory[i]["label"]
    stamp = manifest.stat().st_mtime_ns
    ShapesDataset(tmp_path, split="val", size=5)
    assert manifest.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="rendered with"):
        ShapesDataset(tmp_path, split="val", size=6)
    # the rendered folder is the `folder` adapter's segmentation layout
    folder = loaders.open_dataset("folder", tmp_path, split="val")
    assert folder.layout == "segmentation" and len(folder) == 5
    assert json.loads(manifest.read_text())["config"]["size"] == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"split": "dev"}, "split must be one of"), ({"size": 0}, "size"), ({"resolution": 8}, "resolution"),
     ({"seed": -1}, "seed"), ({"max_objects": 4}, "max_objects"), ({"size": 2.5}, "size")],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapesDataset(**kwargs)
