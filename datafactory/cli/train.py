"""``datafactory train`` and ``datafactory eval``: thin wrappers over :mod:`pipelines.train`.

``datafactory train <trainer> --shards DIR [--eval-shards DIR] [--config cfg.json] [--set k=v ...] --out RUN``
builds the trainer's config (JSON file, then the flags, then ``--set`` in order: later wins),
then calls :func:`pipelines.train.fit`, which resumes from ``RUN/ckpt.pt`` when present. Run it
under ``torchrun --nproc_per_node N -m datafactory train ...`` for DDP.
``datafactory eval <trainer> --checkpoint RUN/ckpt.pt`` evaluates a checkpoint
(:func:`pipelines.train.evaluate_run`). ``datafactory train --help`` lists every trainer's
options with their defaults; a trainer whose module cannot be imported is reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["register", "trainers_help"]


def trainers_help(names: list[str] | None = None) -> str:
    """The options of each trainer (or of ``names``) with defaults, one block per trainer."""
    from pipelines.train import TrainConfig, config_help, get_task, trainer_names

    blocks = [f"options of every trainer (--set key=value):\n{config_help(TrainConfig)}"]
    for name in names or trainer_names():
        try:
            task = get_task(name)
            blocks.append(f"{name} options (its own, and shared ones whose default it changes):\n"
                          f"{config_help(task.config_class, own_only=True)}")
        except Exception as error:  # one broken trainer module must not hide the others
            blocks.append(f"{name}: unavailable ({type(error).__name__}: {error})")
    return "\n\n".join(blocks)


class _HelpWithTrainers(argparse.Action):
    """``-h``: the usage, then the options of the named trainer (or of all), imported only now."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        trainer = getattr(namespace, "trainer", None)
        parser.epilog = trainers_help([trainer] if trainer else None)
        parser.print_help()
        parser.exit()


def _overrides(args: argparse.Namespace, flags: dict[str, str | None]) -> list[str]:
    return [f"{key}={value}" for key, value in flags.items() if value is not None] + list(args.set or [])


def _train(args: argparse.Namespace) -> int:
    from pipelines.train import fit, get_task, load_config

    task = get_task(args.trainer)
    overrides = _overrides(args, {"shards": args.shards, "eval_shards": args.eval_shards, "out": args.out})
    cfg = load_config(task.config_class, args.config, overrides)
    try:
        result = fit(task, cfg)
    except FloatingPointError as error:  # the loss diverged: the run folder keeps the last checkpoint
        print(f"datafactory: error: {error}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(result.final.items()))
        print(f"{task.name}: {result.steps} steps in {result.out}" + (f"; final {shown}" if shown else ""))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pipelines.train import evaluate_run, get_task

    task = get_task(args.trainer)
    overrides = _overrides(args, {"eval_shards": args.eval_shards})
    metrics = evaluate_run(task, args.checkpoint, overrides)
    print(json.dumps(metrics, indent=1, sort_keys=True))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``eval`` commands."""
    from pipelines.train.registry import trainer_names

    names = trainer_names()
    train = subparsers.add_parser(
        "train", help="train a bundled trainer on shards (resumes from RUN/ckpt.pt)", add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one of the bundled trainers. Config: defaults < --config JSON < flags < --set (in order).",
    )
    train.add_argument("-h", "--help", action=_HelpWithTrainers, help="show this help and each trainer's options")
    train.add_argument("trainer", choices=names, help="trainer name")
    train.add_argument("--shards", help="training shard folder")
    train.add_argument("--eval-shards", help="eval shard folder")
    train.add_argument("--config", help="JSON file with config values")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    train.add_argument("--out", help="run folder")
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "eval", help="evaluate a training checkpoint", add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a checkpoint with its stored config (changed by --eval-shards and --set).",
    )
    evaluate.add_argument("-h", "--help", action=_HelpWithTrainers, help="show this help and each trainer's options")
    evaluate.add_argument("trainer", choices=names, help="trainer name")
    evaluate.add_argument("--checkpoint", required=True, help="RUN/ckpt.pt")
    evaluate.add_argument("--eval-shards", help="eval shard folder (default: the one the run used)")
    evaluate.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    evaluate.set_defaults(func=_eval)
