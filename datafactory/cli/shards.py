"""`datafactory shards ...` (placeholder: no subcommands yet)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `shards` command group (none yet)."""
