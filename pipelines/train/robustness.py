"""Robustness evaluation of ImageNet classifiers: patch-transformed views (Qin et al., 2021,
Figure 2) and the ImageNet test-set variants read by :mod:`loaders.imagenet`.

Every evaluation takes ``predict``: a callable from a uint8 batch ``[B,3,S,S]`` to logits
``[B, K]`` (``K = 1000`` for the ImageNet sets), so it serves any model.

* Patch views (:func:`patch_view_ops`, :func:`evaluate_patch_views`): top-1 against the
  *original* label on P-Shuffle / P-Rotate / P-Infill views of an eval set. A model that relies
  on global structure loses accuracy there; patch-based negative training pushes it down.
* ImageNet-A (Hendrycks et al., CVPR 2021) and ImageNet-R (Hendrycks et al., ICCV 2021): the
  1k logits are restricted to the dataset's 200 classes (the adapter's mask, equal to
  ``logits[:, indices_in_1k]`` of the authors' ``eval.py``) before the arg-max.
* ImageNet-C (Hendrycks & Dietterich, ICLR 2019): top-1 per corruption and severity; the
  corruption error ``CE_c = sum_s E_{s,c} / sum_s E^{AlexNet}_{s,c}`` and ``mCE`` = the mean of
  ``CE_c`` over the 15 benchmark corruptions (:func:`corruption_errors`).
* ImageNetV2 (Recht et al., ICML 2019) and ImageNet-Sketch (Wang et al., NeurIPS 2019): top-1.
* ImageNet ReaL (Beyer et al., 2020, "Are we done with ImageNet?"): a prediction is correct if it
  is in the image's ReaL label set; images whose set is empty are left out (:func:`real_correct`).

Images are resized (shorter side to ``image_size / crop_pct``) and centre-cropped to
``image_size`` (:class:`EvalImageTransform`); ImageNet-C is centre-cropped only (``crop_pct=1``),
as its 224-px images are already the centre crops the authors evaluate.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision.transforms.v2 import functional as TF

import loaders
from augment import PatchInfill, PatchRotate, PatchShuffle, Transform
from loaders.imagenet import BENCHMARK_CORRUPTIONS, SEVERITIES, subset_logits_mask

__all__ = [
    "ALEXNET_ERRORS",
    "PATCH_VIEWS",
    "ROBUSTNESS_SETS",
    "EvalImageTransform",
    "adapter_batches",
    "check_label",
    "corruption_errors",
    "evaluate_imagenet_c",
    "evaluate_patch_views",
    "evaluate_real",
    "evaluate_robustness",
    "evaluate_subset",
    "evaluate_top1",
    "patch_view_ops",
    "real_correct",
]

Predict = Callable[[torch.Tensor], torch.Tensor]

# AlexNet's top-1 error on ImageNet-C per benchmark corruption, averaged over severities 1-5
# (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
# Perturbations", ICLR 2019). Source: the authors' repository, hendrycks/robustness
# (ImageNet-C/test.py computes these per-corruption means for `--model-name alexnet`); the same
# values are the ALEXNET_ERR table of the AugMix reference code (google-research/augmix,
# imagenet.py). The mean over severities is sum_s / 5, so CE_c = mean_s E_{s,c} / this value
# when all five severities are evaluated.
ALEXNET_ERRORS: Mapping[str, float] = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592,
    "contrast": 0.853204, "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}  # fmt: skip
assert tuple(ALEXNET_ERRORS) == BENCHMARK_CORRUPTIONS

#: the patch views of :func:`patch_view_ops`
PATCH_VIEWS = ("shuffle", "rotate", "infill")
#: the ``roots`` keys of :func:`evaluate_robustness` -> registered adapter name
ROBUSTNESS_SETS: Mapping[str, str] = {
    "imagenet_a": "imagenet-a", "imagenet_r": "imagenet-r", "imagenet_c": "imagenet-c",
    "imagenet_v2": "imagenet-v2", "imagenet_sketch": "imagenet-sketch", "imagenet_real": "imagenet",
}  # fmt: skip


# -- patch views (Figure 2 of Qin et al.) ---------------------------------------------------------

def patch_view_ops(patch_size: int, model_patch_size: int | None = None, infill_rate: float = 0.25,
                   views: Iterable[str] = PATCH_VIEWS) -> dict[str, Transform]:
    """``{name: op}`` for the requested views (``"shuffle"``, ``"rotate"``, ``"infill"``)."""
    table = {
        "shuffle": lambda: PatchShuffle(patch_size, model_patch_size),
        "rotate": lambda: PatchRotate(patch_size, model_patch_size),
        "infill": lambda: PatchInfill(patch_size, infill_rate, model_patch_size),
    }
    names = list(views)
    unknown = [v for v in names if v not in table]
    if unknown:
        raise ValueError(f"patch views must be among {PATCH_VIEWS}, got {unknown}")
    return {name: table[name]() for name in names}


@torch.no_grad()
def evaluate_patch_views(predict: Predict, batches: Iterable[Mapping[str, Any]], ops: Mapping[str, Transform],
                         *, generator: torch.Generator | None = None) -> dict[str, float]:
    """Top-1 on clean images and on each patch view, against the original label.

    Args:
        predict: uint8 ``[B,3,S,S]`` -> logits.
        batches: dicts with ``image`` (uint8 ``[B,3,S,S]``) and ``label`` (``[B]``).
        ops: from :func:`patch_view_ops`; each view is drawn per sample from ``generator``.

    Returns:
        ``{"top1", "loss" (clean cross-entropy), "patch_<name>_top1" for each op, "samples"}``.
    """
    correct = {name: 0 for name in ["clean", *ops]}
    total, loss = 0, 0.0
    for batch in batches:
        images, labels = batch["image"], torch.as_tensor(batch["label"])
        total += len(labels)
        logits = predict(images)
        correct["clean"] += _top1_correct(logits, labels)
        loss += float(F.cross_entropy(logits.float(), labels.to(logits.device).long(), reduction="sum"))
        for name, op in ops.items():
            correct[name] += _top1_correct(predict(op(images, generator=generator)), labels)
    out = {"top1": _ratio(correct["clean"], total), "loss": _ratio(loss, total), "samples": float(total)}
    out.update({f"patch_{name}_top1": _ratio(correct[name], total) for name in ops})
    return out


# -- scoring rules ------------------------------------------------------------------------------

def _ratio(correct: float, total: float) -> float:
    return correct / total if total else math.nan


def _top1_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    return int((logits.argmax(dim=1).cpu() == labels.cpu()).sum())


def masked_argmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Arg-max over the classes where ``mask`` is true (e.g. the 200 of ImageNet-A/R), as 1k indices."""
    return logits.masked_fill(~mask.to(logits.device)[None], -math.inf).argmax(dim=1)


def real_correct(logits: torch.Tensor, real: torch.Tensor) -> tuple[int, int]:
    """ReaL top-1: ``(correct, counted)``; a row of ``real`` is the image's multi-hot ReaL label
    set, and an all-zero row (ReaL found no valid label) is not counted."""
    real = real.to(logits.device)
    counted = real.sum(dim=1) > 0
    hit = real.gather(1, logits.argmax(dim=1, keepdim=True))[:, 0] > 0
    return int((hit & counted).sum()), int(counted.sum())


def corruption_errors(errors: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
    """Corruption errors normalised by AlexNet's (Hendrycks & Dietterich, 2019).

    Args:
        errors: ``{corruption: {severity: top-1 error}}``.

    Returns:
        ``{"ce_<corruption>"}`` for each benchmark corruption with all five severities, and
        ``"mce"`` (their mean) when all 15 are there, else ``"mce_partial"`` over those present
        with ``"mce_corruptions"`` (how many). Extra corruptions (not in the benchmark) and
        incomplete severity sets get no CE: the published normaliser is the five-severity mean.
    """
    ce = {}
    for corruption, by_severity in errors.items():
        if corruption in ALEXNET_ERRORS and set(by_severity) >= set(SEVERITIES):
            mean_error = sum(by_severity[s] for s in SEVERITIES) / len(SEVERITIES)
            ce[corruption] = mean_error / ALEXNET_ERRORS[corruption]
    out = {f"ce_{c}": v for c, v in ce.items()}
    if ce:
        mean = sum(ce.values()) / len(ce)
        if len(ce) == len(ALEXNET_ERRORS):
            out["mce"] = mean
        else:
            out["mce_partial"], out["mce_corruptions"] = mean, float(len(ce))
    return out


# -- data ---------------------------------------------------------------------------------------

def check_label(sample: Mapping[str, Any], num_classes: int | None) -> int:
    """The sample's ``label`` as an int; ``ValueError`` naming the sample's key when it lies outside
    ``[0, num_classes)`` (the model has no such output)."""
    label = int(sample["label"])
    if num_classes is not None and not 0 <= label < num_classes:
        raise ValueError(f"sample {sample.get('__key__')!r}: label {label} is outside [0, {num_classes}) "
                         f"(config key 'num_classes' is {num_classes})")
    return label


@dataclass(frozen=True)
class EvalImageTransform:
    """Per-sample eval preprocessing: shorter side -> ``round(image_size / crop_pct)``, centre crop
    ``image_size``; keeps ``image`` (uint8), ``label`` (when present) and the fields of ``keep``.

    ``meta`` fields named in ``meta_fields`` (e.g. ImageNet-C's ``corruption``, ``severity``)
    are lifted to the top level so batches carry them. With ``num_classes``, a label outside
    ``[0, num_classes)`` raises ``ValueError`` naming the sample.
    """

    image_size: int
    crop_pct: float = 0.875
    keep: tuple[str, ...] = ()
    meta_fields: tuple[str, ...] = ()
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = sample["image"]
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        resize = int(round(self.image_size / self.crop_pct))
        image = TF.resize(image, [resize], antialias=True)
        image = TF.center_crop(image, [self.image_size, self.image_size])
        out: dict[str, Any] = {"image": image.contiguous()}
        if "label" in sample:
            out["label"] = check_label(sample, self.num_classes)
        for field in self.keep:
            out[field] = sample[field]
        meta = sample.get("meta") or {}
        for field in self.meta_fields:
            out[field] = meta[field]
        return out


class _CountingCollate:
    """Collate that drops the ``None`` of skipped samples and records how many (``"skipped"``)."""

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        from pipelines.loader import collate_samples

        kept = [s for s in samples if s is not None]
        batch = collate_samples(kept) if kept else {}
        batch["skipped"] = len(samples) - len(kept)
        return batch


def adapter_batches(dataset: Any, *, batch_size: int, num_workers: int = 0, max_samples: int = 0) -> DataLoader:
    """Ordered batches over a map-style adapter (``max_samples > 0``: an evenly spaced subset)."""
    if max_samples and len(dataset) > max_samples:
        step = len(dataset) / max_samples
        dataset = Subset(dataset, [int(i * step) for i in range(max_samples)])
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=_CountingCollate())


def _batches(batches: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for batch in batches:
        if "image" in batch:
            yield batch


def _skipped(batches: Iterable[Mapping[str, Any]], counter: list[int]) -> Iterable[Mapping[str, Any]]:
    for batch in batches:
        counter[0] += int(batch.get("skipped", 0))
        yield batch


@torch.no_grad()
def evaluate_top1(predict: Predict, batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``{"top1", "samples"}`` over 1k-labelled batches."""
    correct = total = 0
    for batch in _batches(batches):
        labels = torch.as_tensor(batch["label"])
        correct += _top1_correct(predict(batch["image"]), labels)
        total += len(labels)
    return {"top1": _ratio(correct, total), "samples": float(total)}


@torch.no_grad()
def evaluate_subset(predict: Predict, batches: Iterable[Mapping[str, Any]], mask: torch.Tensor) -> dict[str, float]:
    """Top-1 with the logits restricted to ``mask``'s classes (ImageNet-A/R: 200 of 1000)."""
    correct = total = 0
    for batch in _batches(batches):
        labels = torch.as_tensor(batch["label"])
        correct += int((masked_argmax(predict(batch["image"]), mask).cpu() == labels).sum())
        total += len(labels)
    return {"top1": _ratio(correct, total), "samples": float(total)}


@torch.no_grad()
def evaluate_real(predict: Predict, batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """ReaL top-1 (``"top1"``), original-label top-1 on the same images (``"original_top1"``),
    ``"samples"`` (counted for ReaL) and ``"no_label"`` (left out: empty ReaL set)."""
    correct = counted = original = total = 0
    for batch in _batches(batches):
        logits = predict(batch["image"])
        hit, n = real_correct(logits, batch["labels"])
        correct, counted = correct + hit, counted + n
        labels = torch.as_tensor(batch["label"])
        original += _top1_correct(logits, labels)
        total += len(labels)
    return {"top1": _ratio(correct, counted), "original_top1": _ratio(original, total),
            "samples": float(counted), "no_label": float(total - counted)}


@torch.no_grad()
def evaluate_imagenet_c(predict: Predict, batches: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Top-1 per ``(corruption, severity)`` (``"<corruption>_s<severity>_top1"``), their mean
    (``"mean_top1"``), and the corruption errors of :func:`corruption_errors`."""
    correct: dict[tuple[str, int], int] = {}
    total: dict[tuple[str, int], int] = {}
    for batch in _batches(batches):
        hits = predict(batch["image"]).argmax(dim=1).cpu() == torch.as_tensor(batch["label"])
        for hit, corruption, severity in zip(hits.tolist(), batch["corruption"], torch.as_tensor(batch["severity"]).tolist()):
            cell = (corruption, int(severity))
            correct[cell] = correct.get(cell, 0) + int(hit)
            total[cell] = total.get(cell, 0) + 1
    out: dict[str, float] = {}
    errors: dict[str, dict[int, float]] = {}
    for (corruption, severity), n in sorted(total.items()):
        top1 = correct[(corruption, severity)] / n
        out[f"{corruption}_s{severity}_top1"] = top1
        errors.setdefault(corruption, {})[severity] = 1.0 - top1
    if total:
        out["mean_top1"] = sum(out.values()) / len(out)
        out["samples"] = float(sum(total.values()))
    out.update(corruption_errors(errors))
    return out


def evaluate_robustness(predict: Predict, roots: Mapping[str, str], *, image_size: int, crop_pct: float = 0.875,
                        batch_size: int = 64, num_workers: int = 0, max_samples: int = 0,
                        c_corruptions: str | Iterable[str] = "all", real_json: str = "", on_error: str = "raise",
                        out_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Evaluate ``predict`` on every ImageNet variant whose root is given.

    Args:
        roots: ``{key: root}`` with keys from :data:`ROBUSTNESS_SETS` (empty roots are skipped);
            ``imagenet_real`` is the ImageNet root whose ``val`` split is read with
            ``labels="real"`` (``real_json``: its ``real.json`` when not ``root/real.json``).
        max_samples: per set, an evenly spaced subset of this many images (0 = all).
        c_corruptions: ImageNet-C's ``corruption=`` (a name, a list, ``"benchmark"``, ``"all"``).
        on_error: the adapters' error policy; skipped images are counted in ``<key>_skipped``.
        out_dir: if given, the metrics are also written to ``robustness.json`` there.

    Returns:
        Flat metrics prefixed by the set's key, e.g. ``imagenet_a_top1``, ``imagenet_c_mce``,
        ``imagenet_c_gaussian_noise_s3_top1``, ``imagenet_real_top1``.
    """
    unknown = sorted(set(roots) - set(ROBUSTNESS_SETS))
    if unknown:
        raise ValueError(f"unknown robustness set(s) {unknown}; known: {sorted(ROBUSTNESS_SETS)}")
    metrics: dict[str, float] = {}
    for key, root in roots.items():
        if not root:
            continue
        options: dict[str, Any] = {"on_error": on_error}
        split = None
        if key == "imagenet_c":
            options["corruption"] = c_corruptions
            transform = EvalImageTransform(image_size, 1.0, meta_fields=("corruption", "severity"))
        elif key == "imagenet_real":
            split, options["labels"] = "val", "real"
            if real_json:
                options["real_json"] = real_json
            transform = EvalImageTransform(image_size, crop_pct, keep=("labels",))
        else:
            transform = EvalImageTransform(image_size, crop_pct)
        dataset = loaders.open_dataset(ROBUSTNESS_SETS[key], root, split, transform=transform, **options)
        skipped = [0]
        batches = _skipped(adapter_batches(dataset, batch_size=batch_size, num_workers=num_workers,
                                           max_samples=max_samples), skipped)
        if key in ("imagenet_a", "imagenet_r"):
            result = evaluate_subset(predict, batches, subset_logits_mask(ROBUSTNESS_SETS[key]))
        elif key == "imagenet_c":
            result = evaluate_imagenet_c(predict, batches)
        elif key == "imagenet_real":
            result = evaluate_real(predict, batches)
        else:
            result = evaluate_top1(predict, batches)
        metrics.update({f"{key}_{name}": value for name, value in result.items()})
        if on_error == "skip":
            metrics[f"{key}_skipped"] = float(skipped[0])
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "robustness.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
