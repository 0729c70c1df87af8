"""``datafactory datasets list|show``: what the adapter registry holds, and one dataset's summary."""

from __future__ import annotations

import argparse
import json
from typing import Any

import loaders

__all__ = ["describe_dataset", "parse_options", "register"]


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["size=8", "corruption=fog"]`` -> ``{"size": 8, "corruption": "fog"}`` (JSON values when they parse)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            options[name] = json.loads(raw)
        except json.JSONDecodeError:
            options[name] = raw
    return options


def describe_dataset(name: str, root: str | None = None, split: str | None = None, **options: Any) -> dict[str, Any]:
    """Open a dataset and summarise it: sample count, label space and the first sample's fields."""
    dataset = loaders.open_dataset(name, root, split, **options)
    classes = getattr(dataset, "classes", None)
    summary: dict[str, Any] = {
        "name": name,
        "adapter": type(dataset).__name__,
        "split": getattr(dataset, "split", split),
        "samples": len(dataset),
        "classes": None if classes is None else len(classes),
        "class_names": None if classes is None else list(classes),
    }
    parts = getattr(dataset, "parts", None)
    if parts is not None:
        summary["parts"] = list(parts)
    if len(dataset):
        summary["first_sample"] = loaders.summarize_sample(dataset.load(0))
    return summary


def _list(args: argparse.Namespace) -> int:
    for name in loaders.list_datasets():
        doc = (loaders.dataset_factory(name).__doc__ or "").strip().splitlines()
        print(f"{name:<20} {doc[0] if doc else ''}")
    return 0


def _show(args: argparse.Namespace) -> int:
    summary = describe_dataset(args.name, args.root, args.split, **parse_options(args.option))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"dataset   {summary['name']} ({summary['adapter']})")
    print(f"split     {summary['split']}")
    print(f"samples   {summary['samples']}")
    names = summary["class_names"]
    if names is None:
        print("labels    none")
    else:
        shown = ", ".join(names[:12]) + (f", ... ({len(names) - 12} more)" if len(names) > 12 else "")
        print(f"classes   {len(names)}: {shown}")
    if "parts" in summary:
        print(f"parts     {len(summary['parts'])}: {', '.join(summary['parts'])}")
    if "first_sample" in summary:
        print("sample 0")
        for field, text in summary["first_sample"].items():
            print(f"  {field:<12} {text}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``datasets list`` and ``datasets show``."""
    parser = subparsers.add_parser("datasets", help="list registered datasets or summarise one")
    commands = parser.add_subparsers(title="datasets commands", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="list the registered dataset names")
    listing.set_defaults(func=_list)
    show = commands.add_parser("show", help="count, label space and one sample of a dataset")
    show.add_argument("name", help="a name from `datafactory datasets list`")
    show.add_argument("--root", default=None, help="the dataset folder as distributed (omit for shapes)")
    show.add_argument("--split", default=None, help="split (default: the adapter's)")
    show.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="adapter option; repeatable")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.set_defaults(func=_show)
