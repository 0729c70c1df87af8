"""``datafactory audit``: duplicates, statistics and the interpolation test over one or two splits.

A thin wrapper over :func:`datafactory.audit.audit`: each SOURCE is a shard folder (with its
``index.json``) or a registered dataset ``NAME[:SPLIT]`` (``--root`` and ``--option`` apply to
dataset sources). Two sources are audited as train (first) vs test (second).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from datafactory.cli.datasets import parse_options

__all__ = ["register", "resolve_source"]


def resolve_source(token: str, root: str | None, options: dict[str, Any]) -> Any:
    """A shard folder path (it holds ``index.json``), else a :class:`pipelines.SourceSpec` for a
    registered ``NAME[:SPLIT]``; a folder that is neither gets a hint to use the ``folder`` dataset."""
    import loaders
    from pipelines import SourceSpec

    path = Path(token)
    if path.name == "index.json" or (path / "index.json").exists():
        return token
    name, _, split = token.partition(":")
    if name in loaders.list_datasets():
        return SourceSpec(name, root, split or None, options)
    if path.is_dir():
        raise ValueError(f"{token!r} has no index.json, so it is not a shard set; for a folder of images use the "
                         f"registered dataset: datafactory audit folder --root {token}")
    raise ValueError(f"source {token!r} is neither a shard folder nor a registered dataset NAME[:SPLIT]; "
                     f"known datasets: {', '.join(loaders.list_datasets())}")


def _run(args: argparse.Namespace) -> int:
    from datafactory.audit import AuditConfig, audit

    if len(args.sources) not in (1, 2):
        raise ValueError(f"give one source, or two (train then test), got {len(args.sources)}")
    options = parse_options(args.option)
    sources = [resolve_source(token, args.root, options) for token in args.sources]
    config = AuditConfig(
        threshold=args.threshold, bands=args.bands, near_within=args.near_within,
        embedding_model=args.embedding_model, embedding_weights=args.embedding_weights,
        embedding_threshold=args.embedding_threshold, embedding_size=args.embedding_size, embedding_device=args.device,
        hull_dims=tuple(args.hull_dims or ()), hull_reduce=args.hull_reduce, hull_train=args.hull_train,
        hull_test=args.hull_test, hull_resolution=args.hull_resolution, seed=args.seed,
        pairs_shown=args.pairs_shown, on_error=args.on_error,
    )
    report = audit(sources[0], sources[1] if len(sources) > 1 else None, args.out, config=config, progress=not args.quiet)
    data = report.data
    for name, split in data["splits"].items():
        print(f"{name}: {split['listed']} listed = {split['read']} read + {split['corrupt']} corrupt + "
              f"{split['unreadable']} unreadable")
    exact = data["exact_duplicates"]["pixels"]
    within = ", ".join(f"{name} {count}" for name, count in exact["duplicates_within"].items())
    print(f"exact duplicates (pixels): {exact['groups']} groups; repeats within splits: {within}"
          + (f"; test samples in train: {exact['test_in_train']}" if exact["test_in_train"] is not None else ""))
    across = data["near_duplicates"]["phash"]["across"]
    if across is not None:
        print(f"near duplicates (pHash <= {across['threshold']}): {across['pairs']} pairs, "
              f"{across['samples_with_match']} test samples with a train match")
    if data["interpolation"] is not None:
        rates = ", ".join(f"d={d}: {r:.2f}" for d, r in zip(data["interpolation"]["actual_dims"], data["interpolation"]["rates"]))
        print(f"in the training hull: {rates}")
    print(f"report: {report.out / 'report.html'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``audit`` command."""
    defaults = _defaults()
    parser = subparsers.add_parser(
        "audit", help="duplicates across splits, label/image statistics, interpolation test; writes report.html",
        description="Audit one split, or train vs test: exact and near duplicates (pHash), labels, image sizes, "
                    "corrupt samples, and optionally the convex-hull interpolation test.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="a shard folder or a registered dataset NAME[:SPLIT]; two sources = train then test")
    parser.add_argument("--out", required=True, help="output folder for report.json, report.html and the figures")
    parser.add_argument("--root", help="dataset root for NAME[:SPLIT] sources")
    parser.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                        help="adapter option for NAME[:SPLIT] sources (JSON value), repeatable")
    parser.add_argument("--threshold", type=int, default=defaults.threshold,
                        help="largest pHash Hamming distance (of 64 bits) counted as a near duplicate")
    parser.add_argument("--bands", type=int, default=None, help="multi-index hash bands (default: chosen from the size)")
    parser.add_argument("--near-within", action="store_true", help="also search near duplicates within each split")
    parser.add_argument("--embedding-model", help="torchvision model for embedding near duplicates (off by default)")
    parser.add_argument("--embedding-weights",
                        help="its weights name, e.g. DEFAULT (downloaded by torchvision); omitted: random weights")
    parser.add_argument("--embedding-threshold", type=float, default=defaults.embedding_threshold,
                        help="smallest cosine similarity counted as a near duplicate")
    parser.add_argument("--embedding-size", type=int, default=defaults.embedding_size,
                        help="side in pixels the images are resized to for the embedding model")
    parser.add_argument("--device", default=defaults.embedding_device, help="device for the embedding model")
    parser.add_argument("--hull-dims", type=int, nargs="+", metavar="D",
                        help="run the interpolation test at these numbers of dimensions (needs two sources)")
    parser.add_argument("--hull-reduce", choices=("crop", "resize"), default=defaults.hull_reduce,
                        help="dimension reduction: central crop or smoothing-subsampling")
    parser.add_argument("--hull-train", type=int, default=defaults.hull_train, help="train samples in the hull test")
    parser.add_argument("--hull-test", type=int, default=defaults.hull_test, help="test samples in the hull test")
    parser.add_argument("--hull-resolution", type=int, default=defaults.hull_resolution,
                        help="images are resized to this square side before the hull test")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the hull-test samples")
    parser.add_argument("--pairs-shown", type=int, default=defaults.pairs_shown, help="duplicate pairs drawn in the report")
    parser.add_argument("--on-error", choices=("skip", "raise"), default=defaults.on_error,
                        help="skip (record) corrupt samples, or stop at the first")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def _defaults() -> Any:
    from datafactory.audit.config import AuditConfig

    return AuditConfig()
