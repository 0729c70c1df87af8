"""``datafactory demo``: the whole flow on the embedded ``shapes`` data (no downloads)."""

from __future__ import annotations

import argparse
from dataclasses import fields

from datafactory.demo import DemoConfig, run_demo

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    config = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig)})
    summary = run_demo(config)
    oracle = summary["oracle"]
    print(f"rendered {summary['samples']} shapes images ({config.resolution}px, split {config.split}, seed {config.seed})")
    print("classes   " + ", ".join(f"{name} {count}" for name, count in summary["classes"].items()))
    print(f"oracle    pixel accuracy {oracle['pixel_accuracy']:.4f}; IoU " + ", ".join(f"{k} {v:.3f}" for k, v in oracle["iou"].items()))
    print(f"preview   {summary['preview']}")
    shards = summary["shards"]
    print(f"shards    {shards['shards']} shards, {shards['written']} samples written, {shards['skipped']} skipped, "
          f"verified={shards['verified']} -> {shards['out_dir']}")
    print(f"loader    {shards['batches']} batches, {shards['samples_read']} samples read back, batch image {shards['image_batch_shape']}")
    for name, run in (summary["training"] or {}).items():
        if name == "segment":
            scores = f"mIoU {run['miou']:.3f} (EMA {run['ema_miou']:.3f})"
        else:
            scores = (f"top-1 {run['top1']:.3f}; on P-Shuffle / P-Rotate / P-Infill views "
                      f"{run['patch_shuffle_top1']:.3f} / {run['patch_rotate_top1']:.3f} / {run['patch_infill_top1']:.3f}")
        print(f"train     {name}: {run['steps']} steps in {run['seconds']:.0f} s, {scores} -> {run['out']}")
    gan = summary["gan"]
    if gan is not None:
        counts, agreement = gan["counts"], gan["oracle_agreement"]
        print(f"gan       generator {gan['gan']['steps']} steps on {gan['gan']['training_images']} images "
              f"({gan['gan']['resolution']} px), samples {gan['gan']['samples']}")
        print(f"gan       {counts['annotated']} generated images annotated by the colour oracle; "
              f"{counts['candidates']} candidates, {counts['dropped']} most uncertain dropped, {counts['written']} written, "
              f"verified={gan['verified']} -> {gan['shards']}")
        print(f"gan       generated masks vs the oracle on the generated images: pixel accuracy "
              f"{agreement['pixel_accuracy']:.3f}, mIoU {agreement['miou']:.3f} ({gan['seconds']['total']:.0f} s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo``."""
    defaults = DemoConfig()
    parser = subparsers.add_parser("demo", help="run the demo flow on the embedded shapes data")
    parser.add_argument("--out", default=defaults.out, help="output folder (default: %(default)s)")
    parser.add_argument("--split", default=defaults.split, choices=("train", "val", "test"))
    parser.add_argument("--size", type=int, default=defaults.size, help="number of images (default: %(default)s)")
    parser.add_argument("--resolution", type=int, default=defaults.resolution, help="image size in pixels")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--columns", type=int, default=defaults.columns, help="preview grid columns")
    parser.add_argument("--scale", type=int, default=defaults.scale, help="preview upscaling factor")
    parser.add_argument("--shard-samples", dest="shard_samples", type=int, default=defaults.shard_samples,
                        help="training images written to shards (default: %(default)s)")
    parser.add_argument("--max-count", dest="max_count", type=int, default=defaults.max_count, help="samples per shard")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=defaults.batch_size, help="loader batch size")
    parser.add_argument("--val-samples", dest="val_samples", type=int, default=defaults.val_samples,
                        help="validation images written to shards for evaluating the short runs (default: %(default)s)")
    parser.add_argument("--train-epochs", dest="train_epochs", type=int, default=defaults.train_epochs,
                        help="epochs of the short segment and vit runs; 0 skips them (default: %(default)s)")
    parser.add_argument("--gan", action=argparse.BooleanOptionalAction, default=defaults.gan,
                        help="run the DatasetGAN factory at a tiny size (default: %(default)s)")
    parser.set_defaults(func=_run)
