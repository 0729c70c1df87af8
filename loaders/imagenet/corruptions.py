"""``imagenet-c``: ImageNet-C common corruptions, in the 1k label space.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019 (``hendrycks/robustness``). The Zenodo tars (``noise.tar``,
``blur.tar``, ``weather.tar``, ``digital.tar``, ``extra.tar``) extract to
``<corruption>/<severity 1..5>/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG`` (224x224 JPEGs keeping the
val file names); some users keep them nested as ``<group>/<corruption>/...``. Both are accepted.

Samples: ``image``, ``label`` (1k index), ``meta`` (``wnid``, ``file``, ``corruption``,
``severity``). Keys are ``<corruption>/<severity>/ILSVRC2012_val_XXXXXXXX``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loaders.layout import check_test_split, find_dir, first_existing
from loaders.registry import register_dataset

from loaders.imagenet.common import FolderRows, ImageNetFamily, index_class_folders, wnid_folders

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTION_GROUPS",
    "EXTRA_CORRUPTIONS",
    "ImageNetCDataset",
    "SEVERITIES",
    "resolve_corruptions",
    "resolve_severities",
]

#: the 15 benchmark corruptions, in the paper's (and mCE's) canonical order.
BENCHMARK_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
#: the 4 held-out corruptions (``corruption_number`` 15-18 of the ``imagenet_c`` package).
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
#: Zenodo archive (group folder) -> its corruptions.
CORRUPTION_GROUPS: Mapping[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": EXTRA_CORRUPTIONS,
}
_GROUP_OF = {c: g for g, members in CORRUPTION_GROUPS.items() for c in members}
SEVERITIES = (1, 2, 3, 4, 5)


def resolve_corruptions(corruption: str | Iterable[str]) -> tuple[str, ...] | None:
    """Normalise ``corruption=``: a name, a list of names, ``"benchmark"`` (the 15) or ``"all"``.

    Returns the names in canonical order, or ``None`` for ``"all"`` (= all 19 that are on disk).

    Raises:
        ValueError: an unknown name (the message lists the allowed ones) or an empty list.
    """
    if isinstance(corruption, str):
        if corruption == "all":
            return None
        names = list(BENCHMARK_CORRUPTIONS) if corruption == "benchmark" else [corruption]
    else:
        names = list(corruption)
    unknown = [n for n in names if n not in ALL_CORRUPTIONS]
    if unknown or not names:
        raise ValueError(
            f"corruption must be 'all', 'benchmark', one of {ALL_CORRUPTIONS} or a non-empty list of them; got {corruption!r}"
        )
    return tuple(c for c in ALL_CORRUPTIONS if c in names)


def resolve_severities(severity: int | str | Iterable[int]) -> tuple[int, ...]:
    """Normalise ``severity=``: an int 1..5, a list of them, or ``"all"``."""
    if severity == "all":
        return SEVERITIES
    values = [severity] if isinstance(severity, int) else list(severity)  # type: ignore[arg-type]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v not in SEVERITIES for v in values):
        raise ValueError(f"severity must be 'all', an int in {SEVERITIES} or a non-empty list of them; got {severity!r}")
    return tuple(sorted(set(values)))


def _corruption_dir(base: Path, corruption: str) -> str | None:
    """The path of a corruption's folder relative to ``base`` (flat or grouped), if present."""
    return first_existing((corruption, f"{_GROUP_OF[corruption]}/{corruption}"), lambda rel: (base / rel).is_dir())


@register_dataset("imagenet-c")
class ImageNetCDataset(ImageNetFamily):
    """ImageNet-C: 19 corruptions x 5 severities of the 50,000 val images.

    Args:
        root: the folder the tars were extracted into (holding ``<corruption>/`` or
            ``<group>/<corruption>/``), or its parent if that folder is named ``imagenet-c``.
        split: ``"test"`` (the only split).
        corruption: one name, a list, ``"benchmark"`` (the 15) or ``"all"`` (default: every one
            of the 19 found on disk).
        severity: an int 1..5, a list, or ``"all"`` (default).
        image_mode, decode, on_error, transform: see :class:`~loaders.imagenet.common.ImageNetFamily`.

    Attributes:
        corruptions, severities: what was indexed, in canonical order.
    """

    name = "imagenet-c"
    meta_fields = ("corruption", "severity")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        *,
        corruption: str | Iterable[str] = "all",
        severity: int | str | Iterable[int] = "all",
        image_mode: str = "RGB",
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(root, image_mode=image_mode, decode=decode, on_error=on_error, transform=transform)
        self.split = check_test_split(self.name, split)
        wanted = resolve_corruptions(corruption)
        self.severities = resolve_severities(severity)

        def has_corruptions(path: Path) -> bool:
            return any(_corruption_dir(path, c) for c in ALL_CORRUPTIONS)

        self.root = find_dir(self.root, ("", "imagenet-c", "ImageNet-C"), has_corruptions, what="imagenet-c")
        found = {c: _corruption_dir(self.root, c) for c in (wanted or ALL_CORRUPTIONS)}
        missing = [c for c, rel in found.items() if rel is None]
        if wanted is not None and missing:
            raise FileNotFoundError(
                f"imagenet-c: corruption(s) {missing} not found under {str(self.root)!r} (as <corruption>/ or <group>/<corruption>/)"
            )
        self._dirs = {c: rel for c, rel in found.items() if rel is not None}
        self.corruptions = tuple(self._dirs)
        self.index  # index now: a bad root fails at construction, not in a worker

    def _build_index(self) -> Sequence[dict[str, Any]]:
        known = {wnid: i for i, wnid in enumerate(self.wnids)}
        records = FolderRows()
        for corruption, rel in self._dirs.items():
            for severity in self.severities:
                folder = self.root / rel / str(severity)
                if not folder.is_dir():
                    raise FileNotFoundError(f"imagenet-c: missing severity folder {str(folder)!r}")
                index_class_folders(
                    os.fspath(self.root),
                    wnid_folders(folder, known, what="imagenet-c"),
                    prefix=f"{rel}/{severity}/",
                    key_prefix=f"{corruption}/{severity}/",
                    key_by_folder=False,
                    extra={"corruption": corruption, "severity": severity},
                    into=records,
                )
        return records
