"""``AuditConfig``: every setting of an audit, checked once, recorded in ``report.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from datafactory.audit.hashing import HASH_BITS

__all__ = ["AuditConfig"]

_IMAGE_REDUCTIONS = ("crop", "resize")


def _int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")


@dataclass(frozen=True)
class AuditConfig:
    """Settings of :func:`datafactory.audit.audit` (and ``datafactory audit``).

    Attributes:
        threshold: largest pHash Hamming distance (of 64 bits) reported as a near duplicate.
        bands: bands of the multi-index hash (``None``: chosen from the split size).
        near_within: also search near duplicates within each split (not only across).
        embedding_model: a torchvision classification model name for embedding near duplicates
            (``None``: off, no model is built).
        embedding_weights: that model's weights name (``"DEFAULT"``... downloaded by torchvision
            on first use); ``None``: random weights (tests only).
        embedding_threshold: smallest cosine similarity reported as an embedding near duplicate.
        embedding_size: the side images are resized to for the model.
        embedding_device: where the embedding model runs.
        hull_dims: numbers of dimensions for the interpolation test (empty: not run; needs two splits).
        hull_reduce: ``"crop"`` (central pixels) or ``"resize"`` (smoothing-subsampling).
        hull_train, hull_test: samples drawn (seeded) from each split for the hull test.
        hull_resolution: the drawn images are first area-resized to this square side (RGB).
        seed: the seed of those draws.
        thumbnails_per_class, thumbnail_classes: the per-class thumbnail grid's size.
        pairs_shown: duplicate pairs drawn side by side in the report.
        max_listed: pairs, groups and corrupt samples listed in ``report.json`` per section.
        on_error: ``"skip"`` (default: corrupt samples are the audit's findings, recorded with
            their reasons) or ``"raise"`` (stop at the first).
    """

    threshold: int = 10
    bands: int | None = None
    near_within: bool = False
    embedding_model: str | None = None
    embedding_weights: str | None = None
    embedding_threshold: float = 0.95
    embedding_size: int = 224
    embedding_device: str = "cpu"
    hull_dims: tuple[int, ...] = ()
    hull_reduce: str = "crop"
    hull_train: int = 1000
    hull_test: int = 100
    hull_resolution: int = 32
    seed: int = 0
    thumbnails_per_class: int = 6
    thumbnail_classes: int = 24
    pairs_shown: int = 24
    max_listed: int = 10_000
    on_error: str = "skip"

    def __post_init__(self) -> None:
        _int("threshold", self.threshold, 0, HASH_BITS - 1)
        if self.bands is not None:
            _int("bands", self.bands, 1, self.threshold + 1)
        if not isinstance(self.near_within, bool):
            raise ValueError(f"near_within must be a bool, got {self.near_within!r}")
        for name in ("embedding_model", "embedding_weights"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be None or a non-empty str, got {value!r}")
        if (isinstance(self.embedding_threshold, bool) or not isinstance(self.embedding_threshold, (int, float))
                or not -1.0 <= self.embedding_threshold <= 1.0):
            raise ValueError(f"embedding_threshold must be a cosine similarity in [-1, 1], got {self.embedding_threshold!r}")
        if not isinstance(self.embedding_device, str):
            raise ValueError(f"embedding_device must be a str, got {self.embedding_device!r}")
        object.__setattr__(self, "hull_dims", tuple(self.hull_dims))
        if self.hull_reduce not in _IMAGE_REDUCTIONS:
            raise ValueError(f"hull_reduce must be 'crop' or 'resize', got {self.hull_reduce!r}")
        _int("hull_resolution", self.hull_resolution, 1)
        for d in self.hull_dims:
            _int("each of hull_dims", d, 1, 3 * self.hull_resolution**2)
        for name, low in (("embedding_size", 8), ("hull_train", 1), ("hull_test", 1), ("seed", 0), ("thumbnails_per_class", 0),
                          ("thumbnail_classes", 0), ("pairs_shown", 0), ("max_listed", 0)):
            _int(name, getattr(self, name), low)
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def record(self) -> dict[str, Any]:
        """The settings as JSON-friendly data."""
        record = asdict(self)
        record["hull_dims"] = list(self.hull_dims)
        return record
