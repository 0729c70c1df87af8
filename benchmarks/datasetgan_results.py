"""The DatasetGAN comparison in miniature, on the embedded ``shapes`` domain: the table of
``docs/datasetgan.md``.

Zhang et al. (CVPR 2021, arXiv:2104.06490) annotate K = 16 generated images, let the generator and
the interpreter produce a large labelled set, train a segmentation network on it and evaluate on
real images. This script does the same at toy scale, with the ``shapes`` colour oracle standing
in for the person who draws the 16 masks:

1. train the bundled generator on unlabelled real ``shapes`` training images;
2. sample K = 16 images, annotate them with the oracle, fit the interpreter ensemble;
3. generate N labelled images twice: without filtering (N candidates) and with uncertainty
   filtering (N / (1 - drop) candidates, the most uncertain ``drop`` fraction left out, so both
   sets hold N images);
4. train the same ``segment`` U-Net, for the same number of steps, on: the N synthetic images,
   the N filtered synthetic images, 16 real images with their true masks (repeated to N samples,
   so that every setting runs the same epochs and schedule), and N real images with their true
   masks (the upper bound);
5. evaluate each by mIoU over the 4 part classes on held-out REAL ``shapes`` test images with
   their true masks. The oracle's own labels of those test images are scored too: the ceiling of
   what its 16 annotations can teach.

Every stage is timed; the downstream runs repeat for each ``--seeds`` value (mean and min-max).
Nothing is tuned towards an outcome: the numbers are printed as they come out.

    python benchmarks/datasetgan_results.py                       # the docs' table (about 15 min, 2 cores)
    python benchmarks/datasetgan_results.py --synthetic 200 --gan-steps 100 --seeds 0   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# benchmarks/augment.py would shadow the augment package: keep this folder off the path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import torch  # noqa: E402

from loaders.shapes import PART_CLASSES  # noqa: E402


def _build_real(workdir: Path, split: str, size: int, resolution: int, seed: int) -> Path:
    from pipelines import build_shards

    target = workdir / f"real-{split}-{size}-{resolution}-{seed}"
    if not (target / "index.json").exists():
        build_shards("shapes", target, split=split, options={"size": size, "resolution": resolution, "seed": seed},
                     max_count=256)
    return target


def _repeated(source: Path, copies: int, target: Path) -> Path:
    """The samples of ``source`` repeated ``copies`` times (keys ``r<copy>/<key>``), so a training
    epoch over K images is as long as one over N and every setting runs the same schedule."""
    from pipelines import build_shards
    from pipelines.manifest import read_index
    from pipelines.tario import iter_shard_samples

    if (target / "index.json").exists():
        return target
    samples = [sample for shard in read_index(source).shards for sample in iter_shard_samples(shard.path)]
    repeated = ({**sample, "__key__": f"r{copy:03d}/{sample['__key__']}"} for copy in range(copies) for sample in samples)
    build_shards(repeated, target, max_count=256)
    return target


def _oracle_on_test(test_shards: Path) -> dict[str, float]:
    """mIoU of the colour oracle's labels against the true masks of the real test images."""
    from loaders.shapes import annotate_parts
    from pipelines import make_loader
    from pipelines.train.segment_ops import confusion_matrix, iou_scores

    classes = len(PART_CLASSES)
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    for batch in make_loader(test_shards, batch_size=64, shuffle=False, decode="RGB"):
        confusion += confusion_matrix(annotate_parts(batch["image"]), batch["mask"], classes, 255)
    _, miou, accuracy = iou_scores(confusion)
    return {"miou": float(miou), "pixel_acc": float(accuracy)}


def _train_segment(shards: Path, test: Path, out: Path, *, steps: int, seed: int, resolution: int) -> dict[str, float]:
    from pipelines.train.config import load_config
    from pipelines.train.loop import fit
    from pipelines.train.registry import get_task

    task = get_task("segment")
    names = json.dumps(list(PART_CLASSES))
    cfg = load_config(task.config_class, overrides=[
        f"shards={shards}", f"eval_shards={test}", f"out={out}", f"max_steps={steps}", "batch_size=16",
        "base_channels=16", "depth=3", "lr=3e-3", "warmup_steps=10", f"seed={seed}", "progress=false",
        "eval_every=1000000", "num_predictions=0", f"class_names={names}", f"image_size={resolution}", "device=cpu"])
    began = time.perf_counter()
    result = fit(task, cfg)
    return {"miou": result.final["miou"], "pixel_acc": result.final["pixel_acc"], "steps": result.steps,
            "seconds": time.perf_counter() - began}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from datafactory.gan.annotate import import_annotations, oracle_annotate, sample_for_annotation
    from datafactory.gan.factory import fit_interpreter_from_annotations, oracle_label_agreement
    from datafactory.gan.gan_train import GanTrainConfig, train_gan
    from datafactory.gan.generate import GenerateConfig, generate_shards
    from datafactory.gan.interpreter import InterpreterConfig
    from loaders.shapes import annotate_parts

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="datasetgan-results-"))
    workdir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    res = args.resolution

    began = time.perf_counter()
    gan_cfg = GanTrainConfig.quick(steps=args.gan_steps, seed=args.seed, sample_grid=16)
    gan_cfg = GanTrainConfig.from_dict({**gan_cfg.to_dict(), "model": {**gan_cfg.model.to_dict(), "resolution": res}})
    trained = train_gan(gan_cfg, "shapes", workdir / "gan", progress=args.progress, device="cpu",
                        dataset_options={"size": args.gan_images, "seed": args.seed})
    times["train generator"] = time.perf_counter() - began

    began = time.perf_counter()
    annotation = workdir / "annotation"
    if not (annotation / "manifest.json").exists():
        sample_for_annotation(trained.generator_path, args.annotated, 1_000_000, annotation, device="cpu")
        oracle_annotate(annotation, annotator=annotate_parts)
    annotations = import_annotations(annotation / "masks", annotation / "manifest.json", len(PART_CLASSES))
    interpreter_path = workdir / "interpreter.pt"
    if not interpreter_path.exists():
        fit_interpreter_from_annotations(trained.generator_path, annotations,
                                         InterpreterConfig(num_classes=len(PART_CLASSES), seed=args.seed,
                                                           max_epochs=args.interpreter_epochs),
                                         interpreter_path, device="cpu")
    times["annotate K + fit interpreter"] = time.perf_counter() - began

    synthetic: dict[str, Any] = {}
    for name, drop in (("synthetic", 0.0), ("synthetic, filtered", args.drop)):
        began = time.perf_counter()
        count = round(args.synthetic / (1 - drop))
        result = generate_shards(trained.generator_path, interpreter_path, workdir / f"generated-{drop}",
                                 GenerateConfig(count=count, seed=0, drop_fraction=drop, batch_size=32, max_count=256,
                                                device="cpu"), progress=args.progress)
        times[f"generate {name}"] = time.perf_counter() - began
        synthetic[name] = result

    test = _build_real(workdir, "test", args.test, res, args.seed)
    copies = -(-args.synthetic // args.annotated)
    sources = {f"synthetic N={synthetic['synthetic'].written}": synthetic["synthetic"].shards,
               f"synthetic N={synthetic['synthetic, filtered'].written}, {args.drop:.0%} most uncertain of "
               f"{synthetic['synthetic, filtered'].candidates} dropped": synthetic["synthetic, filtered"].shards,
               f"real K={args.annotated} (x{copies} = {copies * args.annotated} samples)": _repeated(
                   _build_real(workdir, "train", args.annotated, res, args.seed), copies,
                   workdir / f"real-train-{args.annotated}-x{copies}"),
               f"real N={args.synthetic} (upper bound)": _build_real(workdir, "train", args.synthetic, res, args.seed)}
    rows = []
    for setting, shards in sources.items():
        runs = []
        for seed in args.seeds:
            out = workdir / "runs" / f"{len(rows)}-{seed}"
            runs.append(_train_segment(shards, test, out, steps=args.seg_steps, seed=seed, resolution=res))
        mious = [r["miou"] for r in runs]
        rows.append({"setting": setting, "miou_mean": statistics.fmean(mious), "miou_min": min(mious),
                     "miou_max": max(mious), "pixel_acc_mean": statistics.fmean(r["pixel_acc"] for r in runs),
                     "steps": runs[0]["steps"], "seconds_per_run": statistics.fmean(r["seconds"] for r in runs)})
    oracle = _oracle_on_test(test)
    return {"rows": rows, "oracle_on_test": oracle, "times": times,
            "settings": {"resolution": res, "gan_images": args.gan_images, "gan_steps": args.gan_steps,
                         "gan_recipe": {k: v for k, v in gan_cfg.to_dict().items()
                                        if k in ("batch_size", "diffaugment", "r1_gamma", "lr_g", "lr_d")},
                         "generator": {k: gan_cfg.model.to_dict()[k] for k in ("channel_base", "channel_max", "z_dim",
                                                                               "w_dim", "mapping_layers")},
                         "annotated": args.annotated, "synthetic": args.synthetic, "drop": args.drop,
                         "test": args.test, "seg_steps": args.seg_steps, "seeds": list(args.seeds),
                         "seed": args.seed, "threads": torch.get_num_threads()},
            "counts": {name: {"candidates": r.candidates, "dropped": r.dropped, "written": r.written,
                              "threshold": r.threshold, "oracle_agreement": oracle_label_agreement(r.shards)}
                       for name, r in synthetic.items()},
            "workdir": str(workdir)}


def table(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [f"Downstream U-Net (segment trainer, 16 base channels, depth 3) trained {s['seg_steps']} steps of batch 16 "
             f"at {s['resolution']} px; mIoU over the 4 part classes on {s['test']} held-out real `shapes` test images "
             f"(true masks); downstream seeds {s['seeds']} (mean, min-max).", "",
             "| training data | mIoU | (min-max) | pixel acc. | steps | s / run |", "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| {row['setting']} | {row['miou_mean']:.3f} | {row['miou_min']:.3f}-{row['miou_max']:.3f} | "
                     f"{row['pixel_acc_mean']:.3f} | {row['steps']} | {row['seconds_per_run']:.0f} |")
    oracle = results["oracle_on_test"]
    lines.append(f"| (no training: the colour oracle's labels of the test images) | {oracle['miou']:.3f} | | "
                 f"{oracle['pixel_acc']:.3f} | | |")
    lines += ["", "Label quality of the synthetic sets: their masks against the colour oracle's reading of the same "
              "generated images (what a perfect interpreter would output; realism of the images is not measured "
              "here).", "", "| set | candidates | dropped | written | kept scores <= | pixel acc. | mIoU |",
              "|---|---|---|---|---|---|---|"]
    for name, count in results["counts"].items():
        agreement = count["oracle_agreement"]
        threshold = "-" if count["threshold"] is None else f"{count['threshold']:.3f}"
        lines.append(f"| {name} | {count['candidates']} | {count['dropped']} | {count['written']} | {threshold} | "
                     f"{agreement['pixel_accuracy']:.3f} | {agreement['miou']:.3f} |")
    network = ", ".join(f"{k}={v}" for k, v in s["generator"].items())
    recipe = ", ".join(f"{k}={v!r}" for k, v in s["gan_recipe"].items())
    lines += ["", f"Generator: the bundled network ({network}) trained {s['gan_steps']} steps ({recipe}) on "
              f"{s['gan_images']} unlabelled real images (seed {s['seed']}); K = {s['annotated']} generated images "
              "annotated by the colour oracle; interpreter: 10 MLPs, the paper's architecture.", "",
              "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.0f} |" for stage, seconds in results["times"].items()]
    lines.append(f"| {s['threads']} torch threads | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="keep data and runs here (default: a temporary folder); reruns reuse them")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--gan-images", dest="gan_images", type=int, default=1000, help="unlabelled real images")
    parser.add_argument("--gan-steps", dest="gan_steps", type=int, default=800)
    parser.add_argument("--annotated", type=int, default=16, help="K: generated images annotated (the paper: 16)")
    parser.add_argument("--synthetic", type=int, default=500, help="N: labelled images per training set")
    parser.add_argument("--drop", type=float, default=0.2, help="fraction dropped by uncertainty filtering")
    parser.add_argument("--interpreter-epochs", dest="interpreter_epochs", type=int, default=20)
    parser.add_argument("--test", type=int, default=200, help="held-out real test images")
    parser.add_argument("--seg-steps", dest="seg_steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="downstream training seeds")
    parser.add_argument("--seed", type=int, default=0, help="generator, interpreter and data seed")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: robust on a shared machine)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    results = run(args)
    results["times"]["total"] = time.perf_counter() - began
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
