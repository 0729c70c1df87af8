"""Robustness evaluation on tiny ImageNet-A/R/C/V2/Sketch/ReaL trees in the datasets' own layouts.

The images are real JPEGs (written with the ImageNet tests' fixture helpers) of one solid colour
that encodes the class a stand-in model "sees": ``predict`` decodes it from the pixels after the
evaluation's resize and crop, so every expected accuracy below is counted by hand from the table
of files. For ImageNet-A/R the stand-in also puts a *larger* logit on a class outside the 200,
so only a correctly masked evaluation scores.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from loaders.imagenet import imagenet_wnids, subset_indices
from pipelines.train import robustness as R

_spec = importlib.util.spec_from_file_location("imagenet_fixture_kit", Path(__file__).parents[1] / "test_imagenet" / "conftest.py")
kit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit)

WNIDS = imagenet_wnids()
A_CLASSES = subset_indices("imagenet-a")
OUTSIDE_A = next(i for i in range(1000) if i not in A_CLASSES and i not in subset_indices("imagenet-r"))


def colour_jpeg(seen: int, size: tuple[int, int] = (40, 30)) -> bytes:
    """A solid JPEG whose colour encodes class ``seen`` (5 bits in red, 5 in green)."""
    import io

    from PIL import Image

    colour = ((seen >> 5) * 8 + 4, (seen & 31) * 8 + 4, 128)
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def seen_class(images: torch.Tensor) -> torch.Tensor:
    centre = images[:, :, images.shape[2] // 2, images.shape[3] // 2].long()
    return (centre[:, 0] // 8) * 32 + centre[:, 1] // 8


def predict(images: torch.Tensor) -> torch.Tensor:
    """Logits: 1 on the class the colour encodes, 2 on a class outside ImageNet-A/R's 200."""
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 16, 16)
    logits = torch.zeros(len(images), 1000)
    logits[torch.arange(len(images)), seen_class(images)] = 1.0
    logits[:, OUTSIDE_A] = 2.0
    return logits


def plain_predict(images: torch.Tensor) -> torch.Tensor:
    logits = torch.zeros(len(images), 1000)
    logits[torch.arange(len(images)), seen_class(images)] = 1.0
    return logits


def test_corruption_errors_against_a_hand_computed_example():
    errors = {"gaussian_noise": {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8, 5: 0.9},
              "fog": {1: 0.2, 2: 0.2, 3: 0.4, 4: 0.4, 5: 0.3},
              "contrast": {1: 0.5, 3: 0.5},  # incomplete: no CE
              "spatter": {s: 0.5 for s in range(1, 6)}}  # extra corruption: no CE
    out = R.corruption_errors(errors)
    assert out["ce_gaussian_noise"] == pytest.approx(0.7 / 0.886428)
    assert out["ce_fog"] == pytest.approx(0.3 / 0.819324)
    assert out["mce_partial"] == pytest.approx((0.7 / 0.886428 + 0.3 / 0.819324) / 2)
    assert out["mce_corruptions"] == 2 and "mce" not in out
    assert set(out) == {"ce_gaussian_noise", "ce_fog", "mce_partial", "mce_corruptions"}
    # all 15 at AlexNet's own errors: every CE is 1, and so is the mCE
    alexnet = {c: {s: e for s in range(1, 6)} for c, e in R.ALEXNET_ERRORS.items()}
    assert R.corruption_errors(alexnet)["mce"] == pytest.approx(1.0)
    doubled = {c: {s: min(1.0, 2 * e) for s in range(1, 6)} for c, e in R.ALEXNET_ERRORS.items()}
    expected = sum(min(1.0, 2 * e) / e for e in R.ALEXNET_ERRORS.values()) / 15
    assert R.corruption_errors(doubled)["mce"] == pytest.approx(expected)


def test_real_correct_counts_label_sets_and_leaves_out_empty_ones():
    logits = torch.eye(4)[[0, 1, 2, 3]]  # predictions 0, 1, 2, 3
    real = torch.tensor([[1, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 1]], dtype=torch.float32)
    assert R.real_correct(logits, real) == (2, 3)  # rows 0 and 3 hit; row 2 has no label


def test_imagenet_a_and_r_mask_the_logits_to_their_200_classes(tmp_path):
    a_root = tmp_path / "imagenet-a"
    kit.write(a_root / "README.txt", "ImageNet-A\n")
    files = {  # wnid folder -> classes the model sees, one image each
        WNIDS[A_CLASSES[0]]: [A_CLASSES[0], A_CLASSES[0], A_CLASSES[5]],
        WNIDS[A_CLASSES[7]]: [A_CLASSES[7]],
    }
    for wnid, seen in files.items():
        for k, cls in enumerate(seen):
            kit.write(a_root / wnid / f"0.00{k}_name with spaces_{k}.jpg", colour_jpeg(cls))
    out = R.evaluate_robustness(predict, {"imagenet_a": str(tmp_path)}, image_size=16, batch_size=3)
    assert out == {"imagenet_a_top1": 3 / 4, "imagenet_a_samples": 4.0}
    # unmasked, the outside class wins every time
    from loaders import open_dataset

    dataset = open_dataset("imagenet-a", tmp_path, transform=R.EvalImageTransform(16))
    assert R.evaluate_top1(predict, R.adapter_batches(dataset, batch_size=2))["top1"] == 0.0

    r_root = tmp_path / "imagenet-r"
    r_class = subset_indices("imagenet-r")[3]
    kit.write(r_root / WNIDS[r_class] / "art_0.jpg", colour_jpeg(r_class))
    kit.write(r_root / WNIDS[r_class] / "cartoon_1.jpg", colour_jpeg(subset_indices("imagenet-r")[4]))
    out = R.evaluate_robustness(predict, {"imagenet_r": str(r_root), "imagenet_a": ""}, image_size=16)
    assert out == {"imagenet_r_top1": 0.5, "imagenet_r_samples": 2.0}


def test_imagenet_c_top1_per_corruption_and_severity_and_mce(tmp_path):
    root = tmp_path / "imagenet-c"
    tench, goldfish = 0, 1
    # gaussian_noise (flat layout): severity s -> the model is right on 2 of 2 images for s <= 2, 1 of 2 for
    # s = 3, 0 of 2 for s >= 4 -> errors 0, 0, 0.5, 1, 1 (mean 0.5). defocus_blur (grouped layout): right on
    # everything at every severity except severity 5 where 1 of 2 -> mean error 0.1.
    for severity in range(1, 6):
        right = {1: 2, 2: 2, 3: 1, 4: 0, 5: 0}[severity]
        for number, wnid, label in ((1, WNIDS[tench], tench), (2, WNIDS[goldfish], goldfish)):
            seen = label if number <= right else 500
            kit.write(root / "gaussian_noise" / str(severity) / wnid / kit.val_name(number), colour_jpeg(seen, (24, 24)))
            seen = label if (severity < 5 or number == 1) else 500
            kit.write(root / "blur" / "defocus_blur" / str(severity) / wnid / kit.val_name(number), colour_jpeg(seen, (24, 24)))
    out = R.evaluate_robustness(plain_predict, {"imagenet_c": str(root)}, image_size=16, batch_size=4,
                                out_dir=tmp_path / "run")
    assert out["imagenet_c_gaussian_noise_s1_top1"] == 1.0
    assert out["imagenet_c_gaussian_noise_s3_top1"] == 0.5
    assert out["imagenet_c_gaussian_noise_s5_top1"] == 0.0
    assert out["imagenet_c_defocus_blur_s5_top1"] == 0.5
    assert out["imagenet_c_samples"] == 20.0
    assert out["imagenet_c_mean_top1"] == pytest.approx((2 + 2 + 1 + 0 + 0 + 2 * 4 + 1) / 20)
    assert out["imagenet_c_ce_gaussian_noise"] == pytest.approx(0.5 / 0.886428)
    assert out["imagenet_c_ce_defocus_blur"] == pytest.approx(0.1 / 0.819880)
    assert out["imagenet_c_mce_partial"] == pytest.approx((0.5 / 0.886428 + 0.1 / 0.819880) / 2)
    assert "imagenet_c_mce" not in out
    assert json.loads((tmp_path / "run" / "robustness.json").read_text()) == pytest.approx(out)
    # one corruption only, through the adapter's selection
    only = R.evaluate_robustness(plain_predict, {"imagenet_c": str(root)}, image_size=16, c_corruptions="defocus_blur")
    assert "imagenet_c_ce_gaussian_noise" not in only and only["imagenet_c_samples"] == 10.0


def test_imagenet_v2_sketch_and_max_samples(tmp_path):
    v2 = tmp_path / "imagenetv2-matched-frequency-format-val"
    # folders are 1k indices, mapped numerically: 10 is class 10, not the third folder
    for folder, seen in (("0", 0), ("2", 2), ("10", 10), ("10", 3)):
        kit.write(v2 / folder / f"{seen:040x}.jpeg", colour_jpeg(seen))
    out = R.evaluate_robustness(plain_predict, {"imagenet_v2": str(tmp_path)}, image_size=16)
    assert out == {"imagenet_v2_top1": 3 / 4, "imagenet_v2_samples": 4.0}
    sketch = tmp_path / "sketch"
    for k, seen in enumerate((999, 999, 0)):
        kit.write(sketch / WNIDS[999] / f"sketch_{k}.JPEG", colour_jpeg(seen))
    out = R.evaluate_robustness(plain_predict, {"imagenet_sketch": str(tmp_path)}, image_size=16)
    assert out["imagenet_sketch_top1"] == pytest.approx(2 / 3)
    out = R.evaluate_robustness(plain_predict, {"imagenet_sketch": str(tmp_path)}, image_size=16, max_samples=2)
    assert out["imagenet_sketch_samples"] == 2.0


def test_imagenet_real_counts_label_sets_and_excludes_empty_ones(tmp_path):
    root = tmp_path / "imagenet"
    val = {1: (65, 65), 2: (0, 389), 3: (1, 1), 4: (0, 5), 5: (999, 1)}  # number -> (label, model sees)
    for number, (label, seen) in val.items():
        kit.write(root / "val" / WNIDS[label] / kit.val_name(number), colour_jpeg(seen))
    kit.write(root / "real.json", json.dumps(kit.REAL))  # [[], [0, 389], [1], [0], [999, 1]]
    out = R.evaluate_robustness(plain_predict, {"imagenet_real": str(root)}, image_size=16, batch_size=2)
    # image 1: empty set (left out); 2: 389 in {0, 389}; 3: 1 in {1}; 4: 5 not in {0}; 5: 1 in {999, 1}
    assert out["imagenet_real_top1"] == pytest.approx(3 / 4)
    assert out["imagenet_real_samples"] == 4.0 and out["imagenet_real_no_label"] == 1.0
    # original labels: right on images 1 and 3 only
    assert out["imagenet_real_original_top1"] == pytest.approx(2 / 5)


def test_skipped_images_are_counted(tmp_path):
    sketch = tmp_path / "sketch" / WNIDS[3]
    kit.write(sketch / "sketch_0.JPEG", colour_jpeg(3))
    kit.write(sketch / "sketch_1.JPEG", b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(Exception, match="sketch_1"):
        R.evaluate_robustness(plain_predict, {"imagenet_sketch": str(tmp_path)}, image_size=16)
    out = R.evaluate_robustness(plain_predict, {"imagenet_sketch": str(tmp_path)}, image_size=16, on_error="skip")
    assert out == {"imagenet_sketch_top1": 1.0, "imagenet_sketch_samples": 1.0, "imagenet_sketch_skipped": 1.0}


def test_bad_set_names_and_arguments():
    with pytest.raises(ValueError, match="imagenet_x"):
        R.evaluate_robustness(plain_predict, {"imagenet_x": "/nowhere"}, image_size=16)
    with pytest.raises(ValueError, match="crop_pct"):
        R.EvalImageTransform(16, 0.0)
    with pytest.raises(ValueError, match="patch views"):
        R.patch_view_ops(8, views=["mirror"])


def test_patch_views_score_against_the_original_label():
    """A model that reads the top-left patch: exact on clean images; on views it scores what the
    same draws of the same ops give, computed independently here."""
    torch.manual_seed(0)
    labels = torch.arange(6) % 3
    images = torch.zeros(6, 3, 16, 16, dtype=torch.uint8)
    images[:, 0, :4, :4] = (labels * 80)[:, None, None].to(torch.uint8)  # top-left 4x4 patch encodes the label
    images[:, 1] = torch.randint(0, 256, (6, 16, 16), dtype=torch.uint8)

    def top_left(x):
        return torch.nn.functional.one_hot((x[:, 0, 0, 0].long() + 40) // 80, 3).float()

    ops = R.patch_view_ops(4, views=["shuffle", "rotate", "infill"], infill_rate=0.25)
    batches = [{"image": images[:3], "label": labels[:3]}, {"image": images[3:], "label": labels[3:]}]
    out = R.evaluate_patch_views(top_left, batches, ops, generator=torch.Generator().manual_seed(5))
    assert out["top1"] == 1.0 and out["samples"] == 6.0
    g = torch.Generator().manual_seed(5)
    expected = {name: 0 for name in ops}
    for batch in batches:
        for name, op in ops.items():
            view = op(batch["image"], generator=g)
            expected[name] += int((top_left(view).argmax(1) == batch["label"]).sum())
    for name in ops:
        assert out[f"patch_{name}_top1"] == expected[name] / 6
    assert out["patch_shuffle_top1"] < 1.0  # shuffling moves the label patch away
    assert set(out) == {"top1", "loss", "samples", "patch_shuffle_top1", "patch_rotate_top1", "patch_infill_top1"}
    assert math.isnan(R.evaluate_patch_views(top_left, [], ops)["top1"])
