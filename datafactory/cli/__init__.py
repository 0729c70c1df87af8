"""The ``datafactory`` command line: a thin layer over library functions.

Each subcommand group lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments; returns an exit code). The table below is the whole dispatch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

#: subcommand modules, in --help order
COMMAND_MODULES = (
    "datafactory.cli.datasets",
    "datafactory.cli.demo",
    "datafactory.cli.shards",
    "datafactory.cli.augment",
)


def build_parser() -> argparse.ArgumentParser:
    from datafactory import __version__

    parser = argparse.ArgumentParser(
        prog="datafactory",
        description="Build safe WebDataset shards, load and augment data, and generate labeled sets.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    from loaders import SampleError

    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError, SampleError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"datafactory: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
