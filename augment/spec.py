"""A strict text / JSON form for augment pipelines, parsed into frozen dataclasses.

String form (spaces and tabs around separators are ignored)::

    spec     := section ("|" section)*          # applied in order (Compose)
    section  := choice ("/" choice)*            # several choices -> OneOf, one per sample
    choice   := name [":" arg ("," arg)*]
    arg      := key "=" value                   # int, float, true/false, none, a name, or low~high

Numbers are ASCII only: ``[+-]digits`` is an int; a float is decimal with an optional exponent
(``0.25``, ``.5``, ``1e3``). Unicode digits, underscores, ``inf`` and ``nan`` are refused, although
Python's ``int()`` / ``float()`` take them. Names (``bilinear``) are ASCII letters, digits and ``_``.

The key ``p`` on any choice wraps it in :class:`~augment.compose.RandomApply`, except on ops that
take a probability themselves (``horizontal_flip``), which receive it. Example::

    "patch_rotate:patch_size=32 | randaugment:num_ops=2,magnitude=9,p=0.5 / trivialaugment"

JSON form: ``[[{"op": "patch_rotate", "patch_size": 32}], [{"op": "randaugment", ...}, ...]]``
(a list of sections, each a list of choices). :func:`parse_spec` and :func:`format_spec` round-trip
(``format_spec(parse_spec(s))`` is the canonical spelling of ``s``), as do :meth:`AugmentSpec.to_json`
and :meth:`AugmentSpec.from_json`. Unknown ops or keys raise ``ValueError`` naming the allowed ones.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Union

from augment.autoaugment import AugMix, AutoAugment, RandAugment, TrivialAugmentWide
from augment.compose import Compose, OneOf, RandomApply
from augment.geometry import RandomHorizontalFlip, RandomResizedCrop
from augment.patch import PatchInfill, PatchRotate, PatchShuffle

__all__ = ["OPS", "AugmentSpec", "OpSpec", "build", "format_spec", "parse_spec"]

#: spec op name -> transform class (the whole table; names are a contract)
OPS: dict[str, type] = {
    "patch_shuffle": PatchShuffle,
    "patch_rotate": PatchRotate,
    "patch_infill": PatchInfill,
    "autoaugment": AutoAugment,
    "randaugment": RandAugment,
    "trivialaugment": TrivialAugmentWide,
    "augmix": AugMix,
    "random_resized_crop": RandomResizedCrop,
    "horizontal_flip": RandomHorizontalFlip,
}

Value = Union[int, float, bool, str, None, tuple[float, float]]


def _own_keys(name: str) -> list[str]:
    return [p for p in inspect.signature(OPS[name].__init__).parameters if p != "self"]


def _allowed_keys(name: str) -> list[str]:
    own = _own_keys(name)
    return own if "p" in own else own + ["p"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"a JSON spec holds finite numbers only, got {name}")


def _check_finite(name: str, key: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"op {name!r}: {key} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class OpSpec:
    """One op: its name, its arguments (sorted by key) and an optional per-sample probability."""

    name: str
    args: tuple[tuple[str, Value], ...] = ()
    p: float | None = None

    def __post_init__(self) -> None:
        if self.name not in OPS:
            raise ValueError(f"unknown augment op {self.name!r}; allowed: {sorted(OPS)}")
        allowed = _allowed_keys(self.name)
        for key, _ in self.args:
            if key not in allowed or key == "p":
                raise ValueError(f"op {self.name!r} has no argument {key!r}; allowed keys: {allowed}")
        if self.p is not None and not (isinstance(self.p, (int, float)) and 0.0 <= self.p <= 1.0):
            raise ValueError(f"op {self.name!r}: p must be in [0, 1], got {self.p!r}")
        object.__setattr__(self, "args", tuple(sorted(self.args)))

    def build(self) -> Any:
        if self.p is not None and "p" in _own_keys(self.name):  # the op's own probability
            return OPS[self.name](**dict(self.args), p=self.p)
        transform = OPS[self.name](**dict(self.args))
        return transform if self.p is None else RandomApply(transform, self.p)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"op": self.name}
        data.update({k: list(v) if isinstance(v, tuple) else v for k, v in self.args})
        if self.p is not None:
            data["p"] = self.p
        return data

    @classmethod
    def from_json(cls, data: Any) -> OpSpec:
        if not isinstance(data, dict) or "op" not in data:
            raise ValueError(f"an op must be a JSON object with an 'op' key (allowed ops: {sorted(OPS)}), got {data!r}")
        name = data["op"]
        if name not in OPS:
            raise ValueError(f"unknown augment op {name!r}; allowed: {sorted(OPS)}")
        args = []
        for key, value in data.items():
            if key in ("op", "p"):
                continue
            if isinstance(value, list):
                if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                    raise ValueError(f"op {name!r}: {key} ranges must be [low, high] numbers, got {value!r}")
                value = (float(value[0]), float(value[1]))
                _check_finite(name, key, value[0])
                _check_finite(name, key, value[1])
            elif not (value is None or isinstance(value, (bool, int, float, str))):
                raise ValueError(f"op {name!r}: {key} must be a number, bool, string, null or [low, high], got {value!r}")
            _check_finite(name, key, value)
            args.append((key, value))
        return cls(name, tuple(args), data.get("p"))


@dataclass(frozen=True)
class AugmentSpec:
    """A pipeline: ``sections`` applied in order; a section with several choices is a OneOf."""

    sections: tuple[tuple[OpSpec, ...], ...]

    def __post_init__(self) -> None:
        for section in self.sections:
            if not section:
                raise ValueError("a spec section needs at least one op")

    def build(self) -> Compose:
        """The transform: ``Compose([OneOf([...]) or op, ...])``."""
        built = []
        for section in self.sections:
            ops = [op.build() for op in section]
            built.append(ops[0] if len(ops) == 1 else OneOf(ops))
        return Compose(built)

    def to_json(self) -> str:
        return json.dumps([[op.to_json() for op in section] for section in self.sections])

    @classmethod
    def from_json(cls, text: str | list) -> AugmentSpec:
        data = json.loads(text, parse_constant=_refuse_constant) if isinstance(text, str) else text
        if not isinstance(data, list) or not all(isinstance(section, list) for section in data):
            raise ValueError("a JSON spec must be a list of sections, each a list of op objects")
        return cls(tuple(tuple(OpSpec.from_json(op) for op in section) for section in data))

    def __str__(self) -> str:
        return format_spec(self)


#: whitespace ignored around separators and values: ASCII space and tab only (``str.strip()`` would
#: also drop Unicode spaces such as U+00A0 or U+2003)
_SPACE = " \t"
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NON_FINITE = frozenset({"inf", "infinity", "nan"})


def _parse_value(text: str, where: str) -> Value:
    text = text.strip(_SPACE)
    if not text.isascii():
        raise ValueError(f"{where}: {text!r} is not a number or a name (spec values are ASCII)")
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if "~" in text:
        low, _, high = text.partition("~")
        return (float(_parse_number(low, where)), float(_parse_number(high, where)))
    if _WORD.fullmatch(text) and lowered.lstrip("+-") not in _NON_FINITE:
        return text
    return _parse_number(text, where)


def _parse_number(text: str, where: str) -> int | float:
    """An ASCII decimal number: ``[+-]digits`` (an int) or a decimal float with an optional
    exponent (``1e3``, ``.5``, ``2.``). Python's ``int()`` / ``float()`` also accept other
    Unicode digits (``'٣'``), underscores (``'1_0'``), surrounding Unicode whitespace and
    ``inf`` / ``nan``; none of those is a spec number."""
    text = text.strip(_SPACE)
    if _INT.fullmatch(text):
        return int(text)
    if not _FLOAT.fullmatch(text):
        if text.lower().lstrip("+-") in _NON_FINITE:
            raise ValueError(f"{where}: {text!r} is not a finite number")
        raise ValueError(f"{where}: {text!r} is not a number (ASCII digits, e.g. 16, 0.25, 1e-3)")
    value = float(text)
    if not math.isfinite(value):  # an exponent too large: 1e999
        raise ValueError(f"{where}: {text!r} is not a finite number")
    return value


def _parse_choice(text: str) -> OpSpec:
    name, sep, rest = text.strip(_SPACE).partition(":")
    name = name.strip(_SPACE)
    if name not in OPS:
        raise ValueError(f"unknown augment op {name!r} in section {text.strip(_SPACE)!r}; allowed: {sorted(OPS)}")
    args: dict[str, Value] = {}
    p = None
    if sep:
        for part in rest.split(","):
            key, eq, raw = part.partition("=")
            key = key.strip(_SPACE)
            if not eq or not key:
                raise ValueError(f"op {name!r}: expected key=value, got {part.strip(_SPACE)!r}; allowed keys: {_allowed_keys(name)}")
            if key not in _allowed_keys(name):
                raise ValueError(f"op {name!r} has no argument {key!r}; allowed keys: {_allowed_keys(name)}")
            if key in args or (key == "p" and p is not None):
                raise ValueError(f"op {name!r}: argument {key!r} given twice")
            value = _parse_value(raw, f"op {name!r}, {key}")
            if key == "p":
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise ValueError(f"op {name!r}: p must be a number in [0, 1], got {raw.strip(_SPACE)!r}")
                p = float(value)
            else:
                args[key] = value
    return OpSpec(name, tuple(args.items()), p)


def parse_spec(text: str) -> AugmentSpec:
    """Parse the string form (see the module docstring) strictly.

    Raises:
        ValueError: empty sections, unknown ops (naming the allowed ones), unknown keys (naming
            the op's allowed keys), malformed values.
    """
    if not isinstance(text, str) or not text.strip(_SPACE):
        raise ValueError(f"a spec must be a non-empty string, got {text!r}")
    sections = []
    for section in text.split("|"):
        if not section.strip(_SPACE):
            raise ValueError(f"empty section in spec {text!r}")
        sections.append(tuple(_parse_choice(choice) for choice in section.split("/")))
    return AugmentSpec(tuple(sections))


def _format_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return f"{_format_value(value[0])}~{_format_value(value[1])}"
    return repr(value) if isinstance(value, float) else str(value)


def format_spec(spec: AugmentSpec) -> str:
    """The canonical string form of ``spec`` (arguments sorted, ``p`` last)."""
    sections = []
    for section in spec.sections:
        choices = []
        for op in section:
            args = [f"{k}={_format_value(v)}" for k, v in op.args] + ([f"p={op.p!r}"] if op.p is not None else [])
            choices.append(op.name + (":" + ",".join(args) if args else ""))
        sections.append(" / ".join(choices))
    return " | ".join(sections)


def build(spec: str | AugmentSpec) -> Compose:
    """Build the transform of a spec string (or a parsed spec)."""
    return (parse_spec(spec) if isinstance(spec, str) else spec).build()
