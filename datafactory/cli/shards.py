"""``datafactory shards build | verify | inspect | preview``: thin wrappers over :mod:`pipelines`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from datafactory.cli.datasets import parse_options

__all__ = ["register"]


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    lowered = text.strip().lower().rstrip("b").rstrip("i")
    try:
        if lowered and lowered[-1] in units:
            return int(float(lowered[:-1]) * units[lowered[-1]])
        return int(lowered)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 500000000, 512M or 1G, got {text!r}") from None


def _build(args: argparse.Namespace) -> int:
    from pipelines import build_shards

    reencode = None
    if args.reencode:
        reencode = {"image": args.reencode, "quality": args.quality, "max_side": args.max_side}
    try:
        report = build_shards(
            args.name, args.out, root=args.root, split=args.split, options=parse_options(args.option),
            max_count=args.max_count, max_bytes=args.max_bytes, workers=args.workers, engine=args.engine,
            reencode=reencode, on_error=args.on_error, check=args.check, ray_address=args.ray_address,
            overwrite=args.overwrite, progress=not args.quiet,
        )
    except RuntimeError as error:  # Ray missing or a Ray failure
        print(f"datafactory: error: {error}", file=sys.stderr)
        return 2
    rate = report.read / report.seconds if report.seconds > 0 else float("nan")
    resumed = f", {report.resumed_shards} kept from an earlier run" if report.resumed_shards else ""
    print(f"{len(report.index['shards'])} shards in {report.out_dir}{resumed}: read {report.read} = written "
          f"{report.written} + skipped {report.skipped} ({rate:.0f} samples/s)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pipelines.verify import verify_shards

    report = verify_shards(args.path, decode=not args.no_decode)
    for note in report.notes:
        print(f"NOTE {note}")
    for problem in report.problems:
        print(f"FAIL {problem}")
    checked = "" if report.manifest else " (no manifest: structural check only)"
    print(f"{'OK' if report.ok else 'FAILED'}: {report.shards} shards, {report.samples} samples{checked}")
    return 0 if report.ok else 1


def _inspect(args: argparse.Namespace) -> int:
    from pipelines.verify import inspect_shards

    print(json.dumps(inspect_shards(args.path, samples=args.samples), indent=2, sort_keys=True))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from pipelines.verify import preview_shards

    print(preview_shards(args.path, args.out, count=args.count, size=args.size))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``shards`` command group."""
    parser = subparsers.add_parser("shards", help="build, verify, inspect and preview WebDataset shards")
    commands = parser.add_subparsers(title="shards commands", metavar="COMMAND")

    build = commands.add_parser("build", help="build (or resume) shards from a registered dataset")
    build.add_argument("name", help="registered dataset name (see `datafactory datasets list`)")
    build.add_argument("--root", help="the dataset folder as distributed (omit for in-memory datasets)")
    build.add_argument("--split", help="dataset split")
    build.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                       help="adapter option (JSON value), repeatable, e.g. --option size=500")
    build.add_argument("--out", required=True, help="output folder")
    build.add_argument("--workers", type=int, default=1, help="worker processes (local) / parallel tasks (ray)")
    build.add_argument("--engine", choices=("local", "ray"), default="local")
    build.add_argument("--ray-address", help='Ray cluster address ("auto" on a node of a running cluster)')
    build.add_argument("--max-count", type=int, default=10_000, help="samples per shard at most")
    build.add_argument("--max-bytes", type=_size, default=1 << 30, help="bytes per shard at most (e.g. 512M)")
    build.add_argument("--on-error", choices=("raise", "skip"), default="raise")
    build.add_argument("--check", choices=("structure", "decode", "none"), default="structure",
                       help="per-sample check before writing")
    build.add_argument("--reencode", choices=("jpg", "png"), help="re-encode images (default: copy bytes)")
    build.add_argument("--quality", type=int, default=90, help="JPEG quality with --reencode jpg")
    build.add_argument("--max-side", type=int, help="downscale images so the longer side fits (with --reencode)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing shard set in --out")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_build)

    verify = commands.add_parser("verify", help="check checksums, counts, member names and decoding")
    verify.add_argument("path", help="shard folder; a folder of tars without index.json, or one tar, gets a "
                                     "structural check")
    verify.add_argument("--no-decode", action="store_true", help="skip decoding members")
    verify.set_defaults(func=_verify)

    inspect = commands.add_parser("inspect", help="print a summary of a shard set as JSON")
    inspect.add_argument("path", help="shard folder, a folder of tars without index.json, or one tar")
    inspect.add_argument("--samples", type=int, default=1, help="summarise this many first samples")
    inspect.set_defaults(func=_inspect)

    preview = commands.add_parser("preview", help="write a PNG grid of the first images")
    preview.add_argument("path", help="shard folder, a folder of tars without index.json, or one tar")
    preview.add_argument("--out", required=True, help="output PNG")
    preview.add_argument("--count", type=int, default=16)
    preview.add_argument("--size", type=int, default=128, help="tile size in pixels")
    preview.set_defaults(func=_preview)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)
