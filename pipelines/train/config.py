"""Trainer configs: one ``@dataclass`` per trainer, read strictly from JSON and ``key=value`` strings.

:class:`TrainConfig` holds the fields every trainer shares; a trainer subclasses it with its own
fields and defaults (and may extend :meth:`TrainConfig.validate`). Only :func:`load_config`
builds configs from user input: a JSON object first, then ``--set key=value`` overrides, each
value parsed by its field's type. Unknown keys and mistyped values raise, naming the key (and
listing the valid ones); nothing is guessed. :func:`save_config` writes the resolved config into
the run folder, and :func:`config_help` lists the fields with their defaults for ``--help``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "TrainConfig",
    "config_from_dict",
    "config_help",
    "config_to_dict",
    "load_config",
    "parse_override",
    "save_config",
]

C = TypeVar("C", bound="TrainConfig")

#: one-line descriptions of the shared fields, for ``--help`` (subclasses add theirs in ``HELP``)
_CORE_HELP = {
    "shards": "training shard folder (pipelines.make_loader)",
    "eval_shards": 'eval shard folder ("" = none)',
    "eval_dataset": 'evaluate on a registered dataset adapter instead of shards ("" = none)',
    "eval_root": "the eval adapter's root folder",
    "eval_split": "the eval adapter's split",
    "eval_options": "the eval adapter's options as a JSON object",
    "out": "run folder (config.json, ckpt.pt, metrics.jsonl, metrics.png, eval/)",
    "epochs": "epochs to train",
    "max_steps": ">0: stop after this many optimizer steps (overrides epochs)",
    "batch_size": "global batch; each of W DDP ranks takes batch_size // W",
    "lr": "peak learning rate",
    "weight_decay": "decoupled (adamw) or L2 (sgd) weight decay",
    "optimizer": "adamw | sgd",
    "momentum": "sgd momentum",
    "scheduler": "cosine | constant (after warmup_steps of linear warm-up)",
    "warmup_steps": "linear warm-up steps",
    "grad_clip": "max gradient norm (0 = off)",
    "seed": "seeds model init, data order and augmentation",
    "ema_decay": "EMA of the weights per step (0 = off), evaluated beside the raw weights",
    "amp": "none | bf16 | fp16 (fp16 needs CUDA)",
    "compile": "torch.compile the model (CUDA only)",
    "device": "auto | cpu | cuda",
    "num_workers": "loader worker processes per rank",
    "eval_every": "epochs between evaluations (and at the end)",
    "checkpoint_every": "steps between checkpoints (0 = end of each epoch only)",
    "log_every": "steps between metric lines in metrics.jsonl",
    "progress": "show progress bars",
    "sync_bn": "with DDP on CUDA, convert BatchNorm layers to SyncBatchNorm",
}

_OPTIMIZERS = ("adamw", "sgd")
_SCHEDULERS = ("cosine", "constant")
_AMP = ("none", "bf16", "fp16")
_DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Fields shared by every trainer. Build it with :func:`load_config`.

    Subclasses add fields with defaults (and may set a ``HELP`` class attribute mapping field
    name to a one-line description, and extend :meth:`validate`).
    """

    shards: str = ""
    eval_shards: str = ""
    eval_dataset: str = ""
    eval_root: str = ""
    eval_split: str = ""
    eval_options: str = ""
    out: str = ""
    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_steps: int = 0
    grad_clip: float = 0.0
    seed: int = 0
    ema_decay: float = 0.0
    amp: str = "none"
    compile: bool = False
    device: str = "auto"
    num_workers: int = 0
    eval_every: int = 1
    checkpoint_every: int = 0
    log_every: int = 10
    progress: bool = True
    sync_bn: bool = True

    HELP: typing.ClassVar[Mapping[str, str]] = {}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check value ranges and choices; raise ``ValueError`` naming the key. Subclasses that
        extend it call ``super().validate()`` first."""
        _check_types(self)
        for key, allowed in (("optimizer", _OPTIMIZERS), ("scheduler", _SCHEDULERS), ("amp", _AMP), ("device", _DEVICES)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"config key {key!r} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        for key, low in (("epochs", 1), ("max_steps", 0), ("batch_size", 1), ("warmup_steps", 0), ("seed", 0),
                         ("num_workers", 0), ("eval_every", 1), ("checkpoint_every", 0), ("log_every", 1)):
            if getattr(self, key) < low:
                raise ValueError(f"config key {key!r} must be >= {low}, got {getattr(self, key)!r}")
        for key in ("lr", "weight_decay", "momentum", "grad_clip"):
            if not getattr(self, key) >= 0:  # also refuses NaN
                raise ValueError(f"config key {key!r} must be >= 0, got {getattr(self, key)!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"config key 'ema_decay' must be in [0, 1), got {self.ema_decay!r}")
        if self.eval_options:
            try:
                options = json.loads(self.eval_options)
            except json.JSONDecodeError as error:
                raise ValueError(f"config key 'eval_options' must be a JSON object: {error}") from None
            if not isinstance(options, dict):
                raise ValueError(f"config key 'eval_options' must be a JSON object, got {self.eval_options!r}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is not None:
        return str(kind).replace("typing.", "")
    return getattr(kind, "__name__", None) or str(kind)


def _check_value(key: str, kind: Any, value: Any) -> Any:
    """``value`` as ``kind`` (int, float, bool, str or tuple[...]); ``TypeError`` naming ``key``."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"config key {key!r} must be a list ({_type_name(kind)}), got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_value(key, args[0], v) for v in value)
        if len(args) != len(value):
            raise TypeError(f"config key {key!r} must have {len(args)} items ({_type_name(kind)}), got {value!r}")
        return tuple(_check_value(key, a, v) for a, v in zip(args, value))
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"config key {key!r} must be a bool (true/false), got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"config key {key!r} must be an int, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"config key {key!r} must be a string, got {value!r}")
        return value
    raise TypeError(f"config key {key!r} has an unsupported type {_type_name(kind)} (int, float, bool, str, tuple)")


def _check_types(cfg: TrainConfig) -> None:
    for key, kind in _field_types(type(cfg)).items():
        setattr(cfg, key, _check_value(key, kind, getattr(cfg, key)))


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def parse_override(cls: type[TrainConfig], text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` string for ``cls``: the value by the field's type.

    int/float by ``int()``/``float()``, bool from true/false/1/0/yes/no/on/off, str as given,
    tuples as a JSON list. Raises ``ValueError`` naming an unknown key (listing the valid ones)
    or a value that does not parse.
    """
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"override must be key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    types = _field_types(cls)
    if key not in types:
        raise ValueError(_unknown(cls, [key]))
    kind = types[key]
    try:
        if typing.get_origin(kind) is tuple:
            value: Any = json.loads(raw)
        elif kind is bool:
            lowered = raw.strip().lower()
            if lowered not in _TRUE + _FALSE:
                raise ValueError(f"expected one of {list(_TRUE + _FALSE)}")
            value = lowered in _TRUE
        elif kind is int:
            value = int(raw)
        elif kind is float:
            value = float(raw)
        else:
            value = raw
    except ValueError as error:
        raise ValueError(f"config key {key!r}: cannot parse {raw!r} as {_type_name(kind)} ({error})") from None
    return key, _check_value(key, kind, value)


def _unknown(cls: type, keys: Iterable[str]) -> str:
    valid = ", ".join(f.name for f in dataclasses.fields(cls))
    return f"unknown config key(s) {sorted(keys)} for {cls.__name__}; valid keys: {valid}"


def config_from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
    """Build ``cls`` from a mapping, strictly: unknown keys and mistyped values raise naming the key."""
    if not isinstance(values, Mapping):
        raise TypeError(f"config must be a JSON object, got {type(values).__name__}")
    types = _field_types(cls)
    unknown = [k for k in values if k not in types]
    if unknown:
        raise ValueError(_unknown(cls, unknown))
    checked = {k: _check_value(k, types[k], v) for k, v in values.items()}
    return cls(**checked)


def load_config(cls: type[C], path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> C:
    """The config of ``cls`` from defaults, then the JSON file at ``path``, then ``key=value`` overrides.

    Raises:
        ValueError: an unknown key (the message lists the valid keys), an unparsable override, a
            value out of range; ``TypeError``: a JSON value of the wrong type. Each names the key.
    """
    if isinstance(overrides, str):
        raise TypeError("overrides must be a list of 'key=value' strings, not one string")
    values: dict[str, Any] = {}
    if path is not None:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"config file {os.fspath(path)!r} is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise ValueError(f"config file {os.fspath(path)!r} must hold a JSON object, got {type(document).__name__}")
        types = _field_types(cls)
        unknown = [k for k in document if k not in types]
        if unknown:
            raise ValueError(f"config file {os.fspath(path)!r}: " + _unknown(cls, unknown))
        values.update(document)
    for text in overrides:
        key, value = parse_override(cls, text)
        values[key] = value
    return config_from_dict(cls, values)


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as JSON-ready values (tuples become lists)."""
    return {f.name: (list(v) if isinstance(v := getattr(cfg, f.name), tuple) else v) for f in dataclasses.fields(cfg)}


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config as JSON: into ``path/config.json`` for a folder, else to ``path``.

    The file is written under a temporary name and renamed (never through a link).
    """
    from pipelines.manifest import write_json

    target = Path(path)
    if target.suffix != ".json":
        target.mkdir(parents=True, exist_ok=True)
        target = target / "config.json"
    write_json(target, config_to_dict(cfg))
    return target


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def config_help(cls: type[TrainConfig], *, own_only: bool = False) -> str:
    """One line per field: name, type, default and description (for ``datafactory train --help``).

    ``own_only``: only the fields ``cls`` adds to :class:`TrainConfig` or whose default it changes.
    """
    types = _field_types(cls)
    notes = {**_CORE_HELP, **getattr(cls, "HELP", {})}
    shared = {f.name: _default(f) for f in dataclasses.fields(TrainConfig)}
    lines = []
    for f in dataclasses.fields(cls):
        default = _default(f)
        if own_only and f.name in shared and shared[f.name] == default:
            continue
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        note = notes.get(f.name, "")
        lines.append(f"  {f.name} ({_type_name(types[f.name])}, default {shown})" + (f": {note}" if note else ""))
    return "\n".join(lines)
