"""The settings of a shard build, checked once, as two small frozen dataclasses.

:class:`BuildConfig` holds what decides the bytes of a shard set; it is recorded as the
``"config"`` of ``index.json`` and ``.build.json`` (:meth:`BuildConfig.record`), and a rerun
resumes only under an equal one. :class:`EngineConfig` holds how the build runs (engine,
workers, Ray address), which never changes the bytes; it is recorded as ``"run"``. Both raise
``ValueError``/``TypeError`` naming the argument and what is allowed; :func:`pipelines.build_shards`
builds them from its keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from loaders import check_on_error
from pipelines.engines import ENGINES
from pipelines.sources import CHECKS, Reencode

__all__ = ["BuildConfig", "EngineConfig"]


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _suffixes(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, tuple) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in value):
        value = dict(value)  # the normalised form, given back (dataclasses.replace)
    if not isinstance(value, Mapping):
        raise TypeError(f"suffixes must be a dict of field -> suffix, got {type(value).__name__}")
    bad = [k for k, v in value.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise TypeError(f"suffixes must map field names (str) to suffixes (str); bad entry for {bad[0]!r}")
    return tuple(sorted(value.items()))


@dataclass(frozen=True)
class BuildConfig:
    """What decides the bytes of a shard set (see :func:`pipelines.build_shards` for each field).

    Attributes:
        max_count: input positions per shard at most (shards start at multiples of it).
        max_bytes: tar size a shard stays under (a single larger sample gets a shard of its own).
        reencode: ``None`` copies original bytes; a :class:`Reencode` (given as one, a dict of its
            fields or a format name) re-encodes images.
        on_error: ``"raise"`` or ``"skip"``.
        check: per-sample check, one of :data:`pipelines.sources.CHECKS`.
        suffixes: field -> suffix overrides for decoded samples, as sorted ``(field, suffix)``
            pairs (given as a dict).
    """

    max_count: int = 10_000
    max_bytes: int = 1 << 30
    reencode: Reencode | None = None
    on_error: str = "raise"
    check: str = "structure"
    suffixes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _positive("max_count", self.max_count)
        _positive("max_bytes", self.max_bytes)
        check_on_error(self.on_error)
        if self.check not in CHECKS:
            raise ValueError(f"check must be one of {CHECKS}, got {self.check!r}")
        object.__setattr__(self, "reencode", Reencode.parse(self.reencode))
        object.__setattr__(self, "suffixes", _suffixes(self.suffixes))

    @property
    def job(self) -> tuple[str, Reencode | None, dict[str, str] | None]:
        """``(check, reencode, suffixes)``: the per-sample arguments of
        :func:`pipelines.sources.process_chunk` (picklable, sent to every worker)."""
        return self.check, self.reencode, dict(self.suffixes) if self.suffixes else None

    def record(self) -> dict[str, Any]:
        """The JSON form recorded in ``index.json`` and ``.build.json`` (:meth:`from_record` reads it)."""
        return {"max_count": self.max_count, "max_bytes": self.max_bytes,
                "reencode": None if self.reencode is None else asdict(self.reencode),
                "on_error": self.on_error, "check": self.check, "suffixes": dict(self.suffixes)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BuildConfig:
        """Parse :meth:`record`'s form back (strictly: unknown or missing keys are refused)."""
        if not isinstance(record, Mapping):
            raise TypeError(f"a build config must be a dict, got {type(record).__name__}")
        allowed = {"max_count", "max_bytes", "reencode", "on_error", "check", "suffixes"}
        unknown, missing = sorted(set(record) - allowed), sorted(allowed - set(record))
        if unknown or missing:
            raise ValueError(f"build config: unknown key(s) {unknown}, missing key(s) {missing}; allowed: {sorted(allowed)}")
        return cls(**record)


@dataclass(frozen=True)
class EngineConfig:
    """How a build runs; never changes the bytes.

    Attributes:
        engine: ``"local"`` or ``"ray"`` (:data:`pipelines.engines.ENGINES`).
        workers: local workers, or the minimum Ray tasks in flight.
        ray_address: passed to ``ray.init`` when Ray is not initialised.
    """

    engine: str = "local"
    workers: int = 1
    ray_address: str | None = None

    def __post_init__(self) -> None:
        _positive("workers", self.workers)
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.ray_address is not None and not isinstance(self.ray_address, str):
            raise TypeError(f"ray_address must be a str or None, got {type(self.ray_address).__name__}")

    def record(self) -> dict[str, Any]:
        """The JSON form recorded as ``index.json``'s ``"run"``."""
        return {"engine": self.engine, "workers": self.workers, "ray_address": self.ray_address}
