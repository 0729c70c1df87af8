"""The dataset adapter registry: ``open_dataset``, ``list_datasets``, ``register_dataset``.

Adapters register a factory (usually their class) under a public name. Names are a contract:
rename by adding an alias, never by removing a name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["dataset_factory", "list_datasets", "open_dataset", "register_dataset"]

_F = TypeVar("_F", bound=Callable[..., Any])
_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_dataset(name: str, factory: _F | None = None, *, aliases: tuple[str, ...] = ()) -> Any:
    """Register ``factory`` (called as ``factory(root=..., split=..., **options)``) under ``name``.

    Usable as a decorator (``@register_dataset("folder")``) or a call.

    Raises:
        ValueError: the name (or an alias) is already registered, or is not a non-empty
            lowercase string of ``[a-z0-9_-]``.
    """

    def add(target: _F) -> _F:
        if not callable(target):
            raise TypeError(f"register_dataset({name!r}) needs a callable, got {type(target).__name__}")
        names = (name, *aliases)
        for each in names:
            if not isinstance(each, str) or not each or not all(c.isascii() and (c.isalnum() or c in "-_") for c in each) or each != each.lower():
                raise ValueError(f"dataset name must be a non-empty lowercase [a-z0-9_-] string, got {each!r}")
            if each in _REGISTRY:
                raise ValueError(f"dataset {each!r} is already registered (by {_REGISTRY[each]!r})")
        for each in names:
            _REGISTRY[each] = target
        return target

    return add if factory is None else add(factory)


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_REGISTRY)


def dataset_factory(name: str) -> Callable[..., Any]:
    """The factory registered under ``name``; raises ``KeyError`` listing the known names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}") from None


def open_dataset(name: str, root: Any = None, split: str | None = None, **options: Any) -> Any:
    """Open a registered dataset.

    Args:
        name: a name from :func:`list_datasets` (e.g. ``"shapes"``, ``"folder"``).
        root: the dataset's root folder as distributed (``None`` for in-memory datasets).
        split: the split; ``None`` uses the adapter's default.
        **options: adapter options (``decode``, ``on_error``, ``transform``, dataset-specific).

    Raises:
        KeyError: unknown name (the message lists the known ones).
        TypeError: an option the adapter does not accept (the message lists those it does).
    """
    factory = dataset_factory(name)
    kwargs = dict(options, root=root)
    if split is not None:
        kwargs["split"] = split
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins or C callables: let the call itself complain
        signature = None
    if signature is not None and not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        allowed = [p for p, v in signature.parameters.items() if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise TypeError(f"dataset {name!r} does not accept option(s) {unknown}; allowed: {allowed}")
    return factory(**kwargs)
