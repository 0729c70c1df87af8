"""The ``datafactory`` command line: a thin layer over library functions.

Each subcommand group lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments; returns an exit code). The table below is the whole dispatch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

#: subcommand modules, in --help order
COMMAND_MODULES = (
    "datafactory.cli.datasets",
    "datafactory.cli.demo",
    "datafactory.cli.shards",
    "datafactory.cli.augment",
    "datafactory.cli.train",
    "datafactory.cli.audit",
    "datafactory.cli.gan",
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
    except (ValueError, TypeError, KeyError, OSError, SampleError) as error:
        print(f"datafactory: error: {_describe(error)}", file=sys.stderr)
        return 2


def _path(name: object) -> str:
    return repr(os.fsdecode(name)) if isinstance(name, (str, bytes, os.PathLike)) else str(name)


def _describe(error: BaseException) -> str:
    """One line for an error: a ``KeyError``'s message, an ``OSError``'s reason and path(s)."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and error.filename is not None:  # "[Errno 28] ..." says less than the path
        paths = " -> ".join(_path(name) for name in (error.filename, error.filename2) if name is not None)
        return f"{paths}: {error.strerror or error}"
    return str(error)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
