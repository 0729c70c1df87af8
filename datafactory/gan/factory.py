"""The DatasetGAN factory end to end: train a generator, annotate a few of its images, fit the
interpreter, generate a labelled shard set, verify it.

Zhang et al., "DatasetGAN: Efficient Labeled Data Factory with Minimal Human Effort", CVPR 2021,
arXiv:2104.06490. The steps, each a library function of its own module:

1. :func:`datafactory.gan.gan_train.train_gan` -> ``<out>/gan/generator.pt`` (+ ``.json``);
2. :func:`datafactory.gan.annotate.sample_for_annotation` -> ``<out>/annotation/``; a person
   draws ``annotation/masks/<key>.png`` (or an ``annotator`` function does, for the demo);
3. :func:`fit_interpreter_from_annotations` -> ``<out>/interpreter.pt`` (+ ``.json``): the
   features of each annotated image are made again from its seed and latent (they are never
   stored), after checking that the generator reproduces the annotated image;
4. :func:`datafactory.gan.generate.generate_shards` -> ``<out>/generated/shards/``;
5. :func:`pipelines.verify_shards`.

:func:`run_factory` runs them in order and can be rerun: a finished stage is kept (the GAN
trainer resumes from its checkpoint, the annotation folder and the interpreter are reused while
the generator and masks they came from are unchanged, generation resumes like any shard build).
Without an ``annotator`` it stops after step 2 with a message saying where to put the masks.
:func:`run_gan_demo` is the whole chain on the embedded ``shapes`` data for ``datafactory demo``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from pipelines.manifest import read_json, write_json

__all__ = [
    "FactoryResult",
    "fit_interpreter_from_annotations",
    "oracle_label_agreement",
    "regenerate_features",
    "run_factory",
    "run_gan_demo",
]

#: the most an image made again may differ from the annotated PNG (uint8 steps: PNG rounding)
REGENERATION_TOLERANCE = 1


def regenerate_features(generator: Any, annotations: Any, *, batch_size: int = 8) -> list[list[torch.Tensor]]:
    """The feature maps of each annotated image, made again from its seed and latent.

    Args:
        generator: the :class:`~datafactory.gan.generator.Generator` that made the images.
        annotations: an :class:`~datafactory.gan.annotate.AnnotationSet`.
        batch_size: images per generator call.

    Returns:
        Per image, its levels ``(1, C_l, h_l, w_l)`` (coarse to fine, on the CPU).

    Raises:
        ValueError: the generator's resolution or latent size differs from the manifest's, or
            an image made again differs from its annotated PNG by more than PNG rounding (1/255):
            another generator made the images (the message names the image file).
    """
    from datafactory.gan.annotate import to_uint8

    expected = annotations.images.shape[-1]
    if generator.resolution != expected or generator.z_dim != annotations.latents.shape[1]:
        raise ValueError(f"{str(annotations.manifest_path)!r} holds {expected}px images with latents of "
                         f"{annotations.latents.shape[1]}, but the generator makes {generator.resolution}px images "
                         f"from latents of {generator.z_dim}: wrong generator")
    features: list[list[torch.Tensor]] = []
    for start in range(0, len(annotations), batch_size):
        stop = min(start + batch_size, len(annotations))
        sample = generator.synthesize(annotations.latents[start:stop], list(annotations.seeds[start:stop]))
        made = to_uint8(sample.images)
        for row, index in enumerate(range(start, stop)):
            difference = (made[row].int() - annotations.images[index].int()).abs()
            if int(difference.max()) > REGENERATION_TOLERANCE:
                image = annotations.manifest_path.parent / "images" / f"{annotations.keys[index]}.png"
                raise ValueError(
                    f"{str(image)!r}: the generator's image for seed {annotations.seeds[index]} differs from the "
                    f"annotated one at {int((difference > REGENERATION_TOLERANCE).sum())} pixel values (by up to "
                    f"{int(difference.max())}/255): wrong generator (the manifest records checkpoint sha256 "
                    f"{annotations.generator_sha256})")
            features.append([level[row:row + 1].detach().float().cpu() for level in sample.features])
    return features


def fit_interpreter_from_annotations(
    generator: Any,
    annotations: Any,
    config: Any = None,
    out_path: str | os.PathLike | None = None,
    *,
    progress: bool = False,
    device: torch.device | str | None = None,
) -> Any:
    """Fit the interpreter ensemble on annotated generated images (and save it).

    Args:
        generator: a Generator, or a generator checkpoint path.
        annotations: an :class:`~datafactory.gan.annotate.AnnotationSet` (from ``import_annotations``).
        config: an :class:`~datafactory.gan.interpreter.InterpreterConfig` (default: the paper's,
            with ``num_classes`` from the annotations, and their ``ignore_index`` when a mask
            has unlabeled pixels).
        out_path: where to save it (``.pt``; its config goes to the ``.json`` next to it).
        progress: a progress bar over ensemble members.
        device: where to train (default: CUDA when available).

    Returns:
        The trained :class:`~datafactory.gan.interpreter.InterpreterEnsemble`.
    """
    from datafactory.gan.annotate import _resolve_generator
    from datafactory.gan.interpreter import InterpreterConfig, fit_interpreter, save_interpreter

    unlabeled = annotations.masks >= annotations.num_classes  # the ignore value (import_annotations checked)
    if config is None:
        config = InterpreterConfig(num_classes=annotations.num_classes,
                                   ignore_index=annotations.ignore_index if bool(unlabeled.any()) else None)
    if not isinstance(config, InterpreterConfig):
        raise TypeError(f"config must be an InterpreterConfig, got {type(config).__name__}")
    if config.num_classes != annotations.num_classes:
        raise ValueError(f"config.num_classes={config.num_classes} but the annotations have {annotations.num_classes} classes")
    if bool(unlabeled.any()) and config.ignore_index != annotations.ignore_index:
        first = int(unlabeled.flatten(1).any(1).nonzero()[0])
        raise ValueError(f"mask {annotations.keys[first]}.png holds {int(unlabeled[first].sum())} unlabeled pixels "
                         f"({annotations.ignore_index}) but the interpreter config has ignore_index="
                         f"{config.ignore_index}: set ignore_index={annotations.ignore_index} to leave them out")
    model, _ = _resolve_generator(generator, device)
    features = regenerate_features(model, annotations)
    dev = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    ensemble = fit_interpreter(features, annotations.masks, config, progress=progress, device=dev)
    if out_path is not None:
        save_interpreter(ensemble.cpu(), out_path)
    return ensemble


# -- the chain ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactoryResult:
    """What :func:`run_factory` produced (paths under ``out_dir``) and how long each stage took."""

    out_dir: Path
    generator: Path
    annotation: Path
    interpreter: Path
    shards: Path
    generate: Any
    verified: bool
    seconds: dict[str, float] = field(default_factory=dict)


def _file_sha256(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _stage_record(out: Path) -> dict[str, Any]:
    path = out / "factory.json"
    if not path.exists():
        return {}
    record = read_json(path)
    return record if isinstance(record, dict) else {}


def run_factory(
    source: Any,
    out_dir: str | os.PathLike,
    *,
    gan: Any = None,
    annotate_count: int = 16,
    annotate_seed: int = 1_000_000,
    num_classes: int,
    annotator: Callable[[torch.Tensor], torch.Tensor] | None = None,
    interpreter: Any = None,
    generate: Any = None,
    dataset_options: Mapping[str, Any] | None = None,
    device: str | None = None,
    progress: bool = True,
) -> FactoryResult:
    """Run (or resume) the whole DatasetGAN chain in ``out_dir`` (see the module docstring).

    Args:
        source: the unlabelled training images of the generator: a shard folder, a registered
            dataset name or an adapter (see :func:`~datafactory.gan.gan_train.train_gan`).
        out_dir: the work folder (``gan/``, ``annotation/``, ``interpreter.pt``, ``generated/``).
        gan: a :class:`~datafactory.gan.gan_train.GanTrainConfig` (default: its defaults).
        annotate_count, annotate_seed: how many generated images to annotate, their first seed
            (kept apart from the generation seeds, which start at ``generate.seed``).
        num_classes: the classes of the masks.
        annotator: ``uint8 (B,3,H,W) -> int (B,H,W)``, standing in for the person; ``None``:
            the masks must be in ``<out>/annotation/masks/`` (the run stops with a
            ``FileNotFoundError`` saying so until they are).
        interpreter: an :class:`~datafactory.gan.interpreter.InterpreterConfig` (default: the
            paper's ensemble of 10 with ``num_classes``; mask value 255 marks unlabeled pixels).
            Its ``ignore_index`` is the unlabeled value accepted in the masks (``None``: none).
        generate: a :class:`~datafactory.gan.generate.GenerateConfig` (default: 1,000 candidates,
            the 10% most uncertain dropped).
        dataset_options: options of a registered dataset ``source``.
        device: where the models run (default: CUDA when available).
        progress: progress bars.
    """
    from datafactory.gan.annotate import (IGNORE_INDEX, import_annotations, oracle_annotate, read_manifest,
                                          sample_for_annotation)
    from datafactory.gan.gan_train import GanTrainConfig, train_gan
    from datafactory.gan.generate import GenerateConfig, generate_shards
    from datafactory.gan.generator import checkpoint_sha256, load_generator
    from datafactory.gan.interpreter import InterpreterConfig
    from pipelines import verify_shards

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gan = GanTrainConfig() if gan is None else gan
    interpreter = InterpreterConfig(num_classes=num_classes, ignore_index=IGNORE_INDEX) if interpreter is None else interpreter
    generate = GenerateConfig(count=1000, drop_fraction=0.1) if generate is None else generate
    if interpreter.num_classes != num_classes:
        raise ValueError(f"interpreter.num_classes={interpreter.num_classes} but num_classes={num_classes}")
    if generate.device is None and device is not None:
        generate = replace(generate, device=device)
    seconds: dict[str, float] = {}
    record = _stage_record(out)

    began = time.perf_counter()
    trained = train_gan(gan, source, out / "gan", progress=progress, device=device, dataset_options=dataset_options)
    generator_path = trained.generator_path
    generator_sha = checkpoint_sha256(generator_path)
    seconds["train_gan"] = time.perf_counter() - began

    began = time.perf_counter()
    annotation = out / "annotation"
    manifest_path = annotation / "manifest.json"
    if manifest_path.exists() and read_manifest(manifest_path)["generator"].get("sha256") != generator_sha:
        raise ValueError(f"{str(manifest_path)!r} holds images of another generator than {str(generator_path)!r}; "
                         "move the annotation folder away to annotate the new generator's images")
    if not manifest_path.exists():
        sample_for_annotation(generator_path, annotate_count, annotate_seed, annotation, device=device)
    masks = annotation / "masks"
    if annotator is not None and not any(masks.glob("*.png")):
        oracle_annotate(annotation, annotator=annotator)
    if not any(masks.glob("*.png")):
        raise FileNotFoundError(errno.ENOENT, f"no masks yet: draw one index PNG per image of {str(annotation / 'images')!r} "
                                "(values = class ids, same size, same name) into this folder and run again", str(masks))
    annotations = import_annotations(masks, manifest_path, num_classes, ignore_index=interpreter.ignore_index)
    seconds["annotate"] = time.perf_counter() - began

    began = time.perf_counter()
    interpreter_path = out / "interpreter.pt"
    fingerprint = {"generator_sha256": generator_sha, "config": interpreter.to_dict(),
                   "masks_sha256": _file_sha256([masks / f"{key}.png" for key in annotations.keys])}
    if not (interpreter_path.exists() and record.get("interpreter") == fingerprint):
        fit_interpreter_from_annotations(load_generator(generator_path, device=device), annotations, interpreter,
                                         interpreter_path, progress=progress, device=device)
        record["interpreter"] = fingerprint
        write_json(out / "factory.json", record)
    seconds["fit_interpreter"] = time.perf_counter() - began

    began = time.perf_counter()
    result = generate_shards(generator_path, interpreter_path, out / "generated", generate, progress=progress)
    seconds["generate"] = time.perf_counter() - began
    began = time.perf_counter()
    report = verify_shards(result.shards, raise_on_error=True)
    seconds["verify"] = time.perf_counter() - began
    return FactoryResult(out_dir=out, generator=generator_path, annotation=annotation, interpreter=interpreter_path,
                         shards=result.shards, generate=result, verified=report.ok, seconds=seconds)


# -- the demo ------------------------------------------------------------------------------------------


def oracle_label_agreement(shards: str | os.PathLike) -> dict[str, Any]:
    """How well generated masks match the ``shapes`` colour oracle's reading of the generated images.

    Meaningful for generators of the ``shapes`` domain only: it measures the interpreter's labels
    (what the oracle would have drawn on those images), not how realistic the images are.

    Returns:
        ``{"pixel_accuracy", "miou", "iou": {part: IoU}}`` over all samples of the shard set.
    """
    from loaders.shapes import PART_CLASSES, annotate_parts
    from pipelines import make_loader

    confusion = torch.zeros(len(PART_CLASSES), len(PART_CLASSES), dtype=torch.int64)
    for batch in make_loader(shards, batch_size=64, shuffle=False, decode="RGB"):
        truth = annotate_parts(batch["image"]).flatten()
        labels = batch["mask"].flatten().clamp(0, len(PART_CLASSES) - 1)
        confusion += torch.bincount(truth * len(PART_CLASSES) + labels,
                                    minlength=len(PART_CLASSES) ** 2).view(len(PART_CLASSES), -1)
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    iou = {name: float(confusion[i, i] / union[i]) for i, name in enumerate(PART_CLASSES) if union[i] > 0}
    return {"pixel_accuracy": float(confusion.diag().sum() / confusion.sum().clamp_min(1)),
            "miou": sum(iou.values()) / max(1, len(iou)), "iou": iou}


def run_gan_demo(out_dir: str | os.PathLike, *, quick: bool = True, progress: bool = True) -> dict[str, Any]:
    """The DatasetGAN factory on the embedded ``shapes`` data, for ``datafactory demo``.

    Trains the bundled generator on ``shapes`` training images (32 px; G1's quick recipe with
    ``quick=True``), samples 16 images, annotates them with the colour oracle
    (:func:`loaders.shapes.annotate_parts`, standing in for a person), fits the interpreter,
    generates labelled shards with the 20% most uncertain candidates dropped, verifies them, and
    measures how well the generated masks agree with the oracle's reading of the generated images.

    Args:
        out_dir: the work folder (a rerun resumes).
        quick: the CPU-minutes setting (else a longer, better generator and more samples).
        progress: progress bars.

    Returns:
        A JSON-friendly dict: ``out_dir``, ``generator`` / ``interpreter`` / ``shards`` /
        ``annotation`` (paths), ``counts`` (``candidates``, ``dropped``, ``written``,
        ``annotated``), ``threshold``, ``verified``, ``oracle_agreement`` (``pixel_accuracy``,
        ``miou``, per-part ``iou``), ``gan`` (``steps``, ``images_seen``, ``training_images``,
        ``resolution``, ``samples``: the trainer's PNG grid), ``seconds`` (per stage and ``total``).
    """
    from datafactory.gan.gan_train import GanTrainConfig
    from datafactory.gan.generate import GenerateConfig
    from datafactory.gan.interpreter import InterpreterConfig
    from loaders.shapes import PART_CLASSES, annotate_parts

    began = time.perf_counter()
    if quick:
        gan, images, count = GanTrainConfig.quick(), 1000, 128
        interpreter = InterpreterConfig(num_classes=len(PART_CLASSES), ensemble_size=10, max_epochs=4, patience=2,
                                        pixels_per_epoch=4096)
    else:
        gan, images, count = GanTrainConfig(steps=2000), 5000, 1000
        interpreter = InterpreterConfig(num_classes=len(PART_CLASSES))
    resolution = gan.model.resolution
    result = run_factory(
        "shapes", out_dir, gan=gan, annotate_count=16, num_classes=len(PART_CLASSES), annotator=annotate_parts,
        interpreter=interpreter, generate=GenerateConfig(count=count, drop_fraction=0.2, batch_size=32, max_count=64),
        dataset_options={"size": images, "resolution": resolution}, progress=progress,
    )
    agreement = oracle_label_agreement(result.shards)
    training = read_json(result.generator.with_suffix(".json")).get("training", {})
    samples = result.generator.parent / "samples.png"
    seconds = {**{k: round(v, 2) for k, v in result.seconds.items()}, "total": round(time.perf_counter() - began, 2)}
    return {
        "out_dir": str(result.out_dir),
        "generator": str(result.generator),
        "annotation": str(result.annotation),
        "interpreter": str(result.interpreter),
        "shards": str(result.shards),
        "counts": {"annotated": 16, "candidates": result.generate.candidates, "dropped": result.generate.dropped,
                   "written": result.generate.written},
        "threshold": result.generate.threshold,
        "verified": result.verified,
        "oracle_agreement": agreement,
        "gan": {"steps": training.get("steps", gan.steps), "images_seen": training.get("images_seen"),
                "training_images": training.get("num_training_images", images), "resolution": resolution,
                "samples": str(samples) if samples.exists() else None},
        "seconds": seconds,
    }
