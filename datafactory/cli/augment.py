"""`datafactory augment ...` (placeholder: no subcommands yet)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `augment` command group (none yet)."""
