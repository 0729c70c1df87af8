"""The sample schema shared by every adapter, shard and loader.

A sample is a plain ``dict``. Two keys are reserved:

* ``__key__`` -- unique within a dataset; characters ``[A-Za-z0-9_-/]`` only. Never a dot,
  because WebDataset splits a tar member name at the first dot of its base name, and never
  anything that could escape a directory (no leading ``/``, no empty or ``..`` components).
* ``__source__`` -- the registered name of the dataset the sample came from.

Decoded fields (see ``docs/architecture.md``): ``image`` (uint8/uint16 ``[C,H,W]``), ``mask`` (integer
``[H,W]``), ``label`` (int), ``labels`` (float32 ``[K]``, NaN = unknown), ``video`` (uint8
``[T,C,H,W]``), ``audio`` (float32 ``[channels, samples]``), ``text`` (str or list of str) and
``meta`` (JSON-serialisable dict). Encoded samples (``decode=False``) map shard suffixes
(``jpg``, ``mask.png``, ``cls``, ...) to ``bytes`` instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "KEY",
    "SOURCE",
    "RESERVED",
    "MAX_KEY_LENGTH",
    "FIELDS",
    "validate_key",
    "keys_valid_and_unique",
    "safe_key",
    "validate_sample",
]

KEY = "__key__"
SOURCE = "__source__"
RESERVED = frozenset({KEY, SOURCE})
MAX_KEY_LENGTH = 256

_KEY_RE = re.compile(r"[A-Za-z0-9_\-/]+")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_\-/]")

# Decoded field -> the shard suffix it is written under by default.
FIELDS: Mapping[str, str] = {
    "image": "png",
    "mask": "mask.png",
    "label": "cls",
    "labels": "labels.npy",
    "video": "mp4",
    "audio": "flac",
    "text": "txt",
    "meta": "json",
}

_IMAGE_DTYPES = (torch.uint8, torch.uint16, torch.int16, torch.int32, torch.float32)
_MASK_DTYPES = (torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool)


def validate_key(key: object) -> str:
    """Check a sample key and return it.

    Raises:
        TypeError: ``key`` is not a ``str``.
        ValueError: it is empty, longer than :data:`MAX_KEY_LENGTH`, contains a character
            outside ``[A-Za-z0-9_-/]`` (dots included), or has a leading/trailing ``/`` or an
            empty path component.
    """
    if not isinstance(key, str):
        raise TypeError(f"__key__ must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError("__key__ must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"__key__ is {len(key)} characters long; at most {MAX_KEY_LENGTH} allowed: {key[:40]!r}...")
    if not _KEY_RE.fullmatch(key):
        bad = sorted(set(_UNSAFE_CHARS.findall(key)))
        raise ValueError(f"__key__ {key!r} contains {bad}; only [A-Za-z0-9_-/] are allowed (no dots)")
    if key.startswith("/") or key.endswith("/") or "//" in key:
        raise ValueError(f"__key__ {key!r} must be a relative path without empty components")
    return key


_KEY_LINES = re.compile(r"[A-Za-z0-9_\-/\n]+")


def keys_valid_and_unique(keys: Sequence[object]) -> bool:
    """Whether every key passes :func:`validate_key` and no key repeats, checked in bulk.

    One regex over the newline-joined keys and one ``set`` instead of a Python call per key (a
    per-key check costs more than listing ImageNet's 1.28M files). ``False`` only says that
    something is wrong: run :func:`validate_key` per key to find out what.
    """
    if not keys:
        return True
    if not all(isinstance(key, str) for key in keys):
        return False
    blob = "\n".join(keys)  # type: ignore[arg-type]
    return bool(
        blob.count("\n") == len(keys) - 1  # no key holds a newline itself
        and _KEY_LINES.fullmatch(blob)
        and "//" not in blob
        and "\n/" not in blob
        and "/\n" not in blob
        and "\n\n" not in blob
        and blob[0] not in "/\n"  # a leading "/" or an empty first key
        and blob[-1] not in "/\n"
        and max(map(len, keys)) <= MAX_KEY_LENGTH  # type: ignore[arg-type]
        and len(set(keys)) == len(keys)
    )


def safe_key(*parts: str) -> str:
    """Build a valid key from path-like parts (e.g. a relative file path without suffix).

    Characters outside ``[A-Za-z0-9_-]`` in each part (dots, spaces, ...) become ``_``; parts are
    joined with ``/``. Adapters must still check uniqueness (the base adapter does).

    >>> safe_key("n01440764", "n01440764_10026")
    'n01440764/n01440764_10026'
    >>> safe_key("patient 1", "study.v2")
    'patient_1/study_v2'
    """
    cleaned = []
    for part in parts:
        for piece in str(part).replace("\\", "/").split("/"):
            if piece in ("", ".", ".."):
                continue
            cleaned.append(_UNSAFE_CHARS.sub("_", piece))
    return validate_key("/".join(cleaned))


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} is {value}; JSON fields must be finite")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{path} has a non-string key {k!r}")
            _check_json(item, f"{path}.{k}")
        return
    raise TypeError(f"{path} has a {type(value).__name__}, which is not JSON-serialisable")


def _check_tensor(sample: Mapping[str, Any], name: str, ndim: int, dtypes: tuple[torch.dtype, ...]) -> None:
    value = sample[name]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"sample[{name!r}] must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"sample[{name!r}] must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if value.dtype not in dtypes:
        raise TypeError(f"sample[{name!r}] has dtype {value.dtype}; allowed: {[str(d) for d in dtypes]}")


def validate_sample(sample: Mapping[str, Any]) -> Mapping[str, Any]:
    """Check a decoded sample against the schema and return it unchanged.

    Fields outside the schema table are allowed (adapters may add e.g. ``boxes``); the reserved
    keys and every known field are checked for type, rank and dtype.

    Raises:
        TypeError / ValueError naming the offending field.
    """
    if not isinstance(sample, Mapping):
        raise TypeError(f"a sample must be a dict, got {type(sample).__name__}")
    if KEY not in sample:
        raise ValueError(f"sample is missing the reserved {KEY!r} field; fields: {sorted(sample)}")
    validate_key(sample[KEY])
    if SOURCE in sample and not isinstance(sample[SOURCE], str):
        raise TypeError(f"{SOURCE} must be a str, got {type(sample[SOURCE]).__name__}")
    if "image" in sample:
        _check_tensor(sample, "image", 3, _IMAGE_DTYPES)
        if sample["image"].shape[0] not in (1, 3, 4):
            raise ValueError(f"sample['image'] must be [C,H,W] with C in (1, 3, 4), got {tuple(sample['image'].shape)}")
    if "mask" in sample:
        _check_tensor(sample, "mask", 2, _MASK_DTYPES)
        if "image" in sample and tuple(sample["mask"].shape) != tuple(sample["image"].shape[-2:]):
            raise ValueError(
                f"sample['mask'] shape {tuple(sample['mask'].shape)} does not match image size {tuple(sample['image'].shape[-2:])}"
            )
    if "label" in sample:
        label = sample["label"]
        if isinstance(label, bool) or not isinstance(label, int):
            raise TypeError(f"sample['label'] must be an int, got {type(label).__name__}")
    if "labels" in sample:
        _check_tensor(sample, "labels", 1, (torch.float32,))
    if "video" in sample:
        _check_tensor(sample, "video", 4, (torch.uint8,))
    if "audio" in sample:
        _check_tensor(sample, "audio", 2, (torch.float32,))
    if "text" in sample:
        text = sample["text"]
        if not isinstance(text, str) and not (isinstance(text, list) and all(isinstance(t, str) for t in text)):
            raise TypeError("sample['text'] must be a str or a list of str")
    if "meta" in sample:
        if not isinstance(sample["meta"], dict):
            raise TypeError(f"sample['meta'] must be a dict, got {type(sample['meta']).__name__}")
        _check_json(sample["meta"], "sample['meta']")
    return sample
