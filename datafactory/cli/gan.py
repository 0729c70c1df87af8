"""``datafactory gan``: the DatasetGAN workflow, one subcommand per step (thin wrappers).

``datafactory gan train SOURCE --out RUN`` trains the bundled generator
(:func:`datafactory.gan.gan_train.train_gan`; resumes from ``RUN/checkpoint.pt``);
``sample-for-annotation`` writes generated images to annotate
(:func:`datafactory.gan.annotate.sample_for_annotation`); ``import-annotations`` checks the
drawn masks and summarises them (:func:`~datafactory.gan.annotate.import_annotations`; ``--oracle
shapes`` draws them with the demo's colour oracle first); ``fit-interpreter`` fits and saves the
interpreter ensemble (:func:`datafactory.gan.factory.fit_interpreter_from_annotations`);
``generate`` writes the labelled shard set (:func:`datafactory.gan.generate.generate_shards`).
Configs: JSON file (``--config``), then ``--set KEY=VALUE`` (JSON values; ``model.resolution=64``
reaches a nested field), later wins. Errors go through the CLI's error path (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["parse_settings", "register"]

#: ``--oracle`` annotators (stand-ins for a person, for the embedded demo data)
ORACLES = ("shapes",)


def parse_settings(config: str | None, pairs: list[str] | None) -> dict[str, Any]:
    """A JSON config file, then ``KEY=VALUE`` overrides (JSON values; dotted keys nest)."""
    settings: dict[str, Any] = {}
    if config is not None:
        from loaders.fileio import read_regular

        try:
            settings = json.loads(read_regular(config).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"--config {config!r} is not valid JSON: {error}") from None
        if not isinstance(settings, dict):
            raise ValueError(f"--config {config!r} must hold a JSON object")
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = name.split(".")
        target = settings
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ValueError(f"--set {name}: {parent!r} is not a section")
        target[leaf] = value
    return settings


def _train(args: argparse.Namespace) -> int:
    from datafactory.cli.datasets import parse_options
    from datafactory.gan.gan_train import GanTrainConfig, train_gan

    settings = parse_settings(args.config, args.set)
    base = GanTrainConfig.quick() if args.quick else GanTrainConfig()
    cfg = GanTrainConfig.from_dict({**base.to_dict(), **settings, "model": {**base.to_dict()["model"],
                                                                           **settings.get("model", {})}})
    options = parse_options(args.option)
    if args.root is not None:
        options["root"] = args.root
    result = train_gan(cfg, args.source, args.out, progress=not args.quiet, device=args.device, split=args.split,
                       dataset_options=options)
    print(f"generator: {result.steps} steps, {result.images_seen} images seen, {result.num_training_images} training "
          f"images, {result.wall_time_s:.1f}s -> {result.generator_path}")
    if result.samples_path is not None:
        print(f"samples:   {result.samples_path}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from datafactory.gan.annotate import manifest_summary, read_manifest, sample_for_annotation

    manifest = sample_for_annotation(args.generator, args.count, args.seed, args.out, batch_size=args.batch_size,
                                     device=args.device, overwrite=args.overwrite)
    print(f"sampled {manifest_summary(read_manifest(manifest))}")
    print(f"images:   {manifest.parent / 'images'}\nmanifest: {manifest}\n"
          f"draw one mask per image into {manifest.parent / 'masks'} (<key>.png, class ids as pixel values)")
    return 0


def _masks_dir(args: argparse.Namespace) -> Path:
    return Path(args.masks) if args.masks is not None else Path(args.annotation) / "masks"


def _ignore(value: str) -> int | None:
    return None if value.lower() == "none" else int(value)


def _import(args: argparse.Namespace) -> int:
    import torch

    from datafactory.gan.annotate import import_annotations, oracle_annotate

    if args.oracle is not None:
        from loaders.shapes import annotate_parts

        oracle_annotate(args.annotation, annotator=annotate_parts, masks_dir=_masks_dir(args))
        print(f"annotated with the {args.oracle!r} colour oracle (a stand-in for a person) -> {_masks_dir(args)}")
    annotations = import_annotations(_masks_dir(args), Path(args.annotation) / "manifest.json", args.num_classes,
                                     ignore_index=args.ignore_index, partial=args.partial)
    counts = torch.bincount(annotations.masks.flatten().clamp(max=args.num_classes), minlength=args.num_classes + 1)
    shown = ", ".join(f"{c}: {int(n)}" for c, n in enumerate(counts[:args.num_classes].tolist()))
    print(f"{len(annotations)} masks OK ({annotations.masks.shape[-1]}x{annotations.masks.shape[-2]}); pixels per "
          f"class {shown}" + (f"; unlabeled {int(counts[-1])}" if int(counts[-1]) else ""))
    return 0


def _fit(args: argparse.Namespace) -> int:
    from datafactory.gan.annotate import import_annotations
    from datafactory.gan.factory import fit_interpreter_from_annotations
    from datafactory.gan.interpreter import InterpreterConfig

    settings = parse_settings(args.config, args.set)
    annotations = import_annotations(_masks_dir(args), Path(args.annotation) / "manifest.json", args.num_classes,
                                     ignore_index=args.ignore_index, partial=args.partial)
    if args.ignore_index is not None and bool((annotations.masks == args.ignore_index).any()):
        settings.setdefault("ignore_index", args.ignore_index)  # unlabeled pixels are left out of training
    cfg = InterpreterConfig.from_dict({"num_classes": args.num_classes, **settings})
    ensemble = fit_interpreter_from_annotations(args.generator, annotations, cfg, args.out, progress=not args.quiet,
                                                device=args.device)
    best = [h.best_epoch for h in getattr(ensemble, "history", ())]
    print(f"interpreter: {cfg.ensemble_size} members on {len(annotations)} annotated images"
          + (f" (best epochs {best})" if best else "") + f" -> {args.out}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from datafactory.gan.generate import GenerateConfig, generate_shards

    config = GenerateConfig(count=args.count, seed=args.seed, drop_fraction=args.drop_fraction,
                            top_fraction=args.top_fraction, batch_size=args.batch_size, max_count=args.max_count,
                            workers=args.workers, engine=args.engine, ray_address=args.ray_address, device=args.device)
    try:
        result = generate_shards(args.generator, args.interpreter, args.out, config, overwrite=args.overwrite,
                                 progress=not args.quiet)
    except RuntimeError as error:  # Ray missing or a Ray failure
        print(f"datafactory: error: {error}", file=sys.stderr)
        return 2
    threshold = "" if result.threshold is None else f" (kept scores <= {result.threshold:.4g})"
    print(f"generated {result.candidates} candidates: {result.dropped} dropped as most uncertain{threshold}, "
          f"{result.written} written in {result.seconds:.1f}s -> {result.shards}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gan`` and its subcommands."""
    gan = subparsers.add_parser("gan", help="DatasetGAN: train a generator, annotate, fit the interpreter, generate shards",
                                description="The DatasetGAN labelled-data factory (Zhang et al., 2021), step by step.")
    commands = gan.add_subparsers(title="steps", metavar="STEP")
    gan.set_defaults(func=lambda args: gan.print_help() or 0)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
        parser.add_argument("--quiet", action="store_true", help="no progress bars")

    train = commands.add_parser("train", help="train the bundled StyleGAN2-style generator (resumes)",
                                description="Train the bundled generator on unlabelled images: a shard folder or a "
                                            "registered dataset name (e.g. shapes).")
    train.add_argument("source", help="shard folder or registered dataset name")
    train.add_argument("--out", required=True, help="run folder (generator.pt + generator.json, checkpoint, metrics)")
    train.add_argument("--quick", action="store_true", help="start from the quick (CPU demo) recipe")
    train.add_argument("--config", help="JSON file with GanTrainConfig values")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, repeatable (model.resolution=64)")
    train.add_argument("--root", help="dataset root (registered datasets)")
    train.add_argument("--split", default="train", help="dataset split (default: %(default)s)")
    train.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option, repeatable")
    common(train)
    train.set_defaults(func=_train)

    sample = commands.add_parser("sample-for-annotation", help="write generated images (+ seeds, latents, manifest) to annotate")
    sample.add_argument("--generator", required=True, help="generator checkpoint (generator.pt)")
    sample.add_argument("--count", type=int, default=16, help="images (default: %(default)s, as in the paper)")
    sample.add_argument("--seed", type=int, default=1_000_000, help="first per-image seed (default: %(default)s)")
    sample.add_argument("--out", required=True, help="annotation folder")
    sample.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    sample.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    common(sample)
    sample.set_defaults(func=_sample)

    def annotation_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--annotation", required=True, help="annotation folder (manifest.json, images/)")
        parser.add_argument("--masks", help="mask folder (default: ANNOTATION/masks)")
        parser.add_argument("--num-classes", dest="num_classes", type=int, required=True, help="mask classes")
        parser.add_argument("--partial", action="store_true", help="use the images that have a mask, skip the others")
        parser.add_argument("--ignore-index", dest="ignore_index", type=_ignore, default=255,
                            help="mask value of unlabeled pixels, or 'none' (default: %(default)s)")

    check = commands.add_parser("import-annotations", help="check the drawn masks and count pixels per class")
    annotation_args(check)
    check.add_argument("--oracle", choices=ORACLES, help="draw the masks with a colour oracle first (demo data only)")
    check.set_defaults(func=_import)

    fit = commands.add_parser("fit-interpreter", help="fit the interpreter ensemble on the annotated images")
    fit.add_argument("--generator", required=True, help="the generator checkpoint that made the annotated images")
    annotation_args(fit)
    fit.add_argument("--out", required=True, help="interpreter checkpoint (.pt; its config goes to the .json beside it)")
    fit.add_argument("--config", help="JSON file with InterpreterConfig values")
    fit.add_argument("--set", action="append", metavar="KEY=VALUE", help="InterpreterConfig override, repeatable")
    common(fit)
    fit.set_defaults(func=_fit)

    generate = commands.add_parser("generate", help="generate a labelled shard set (uncertainty filtering, resumes)")
    generate.add_argument("--generator", required=True, help="generator checkpoint")
    generate.add_argument("--interpreter", required=True, help="interpreter checkpoint")
    generate.add_argument("--out", required=True, help="work folder (generate.json, scores/, shards/)")
    generate.add_argument("--count", type=int, required=True, help="candidate images")
    generate.add_argument("--seed", type=int, default=0, help="first candidate seed (default: %(default)s)")
    generate.add_argument("--drop-fraction", dest="drop_fraction", type=float, default=0.1,
                          help="most uncertain fraction left out (default: %(default)s)")
    generate.add_argument("--top-fraction", dest="top_fraction", type=float, default=0.1,
                          help="image score = mean of this fraction of its most uncertain pixels (default: %(default)s)")
    generate.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    generate.add_argument("--max-count", dest="max_count", type=int, default=1000, help="samples per shard")
    generate.add_argument("--workers", type=int, default=1, help="local worker processes")
    generate.add_argument("--engine", choices=("local", "ray"), default="local")
    generate.add_argument("--ray-address", dest="ray_address", help="Ray cluster address ('auto' on a cluster)")
    generate.add_argument("--overwrite", action="store_true", help="start over in a folder holding another generation")
    common(generate)
    generate.set_defaults(func=_generate)
