"""The annotation loop of DatasetGAN: generated images out, hand-drawn part masks in.

DatasetGAN (Zhang et al., "DatasetGAN: Efficient Labeled Data Factory with Minimal Human
Effort", CVPR 2021, arXiv:2104.06490) asks a person to label a handful of *generated* images
(16 faces, 20 cars, 30 cats in the paper); the generator's features of exactly those images then
train the pixel interpreter. So the annotation folder records how to make each image again
(its seed and latent) and which generator made it, and the features are never stored.

Layout of an annotation folder (written by :func:`sample_for_annotation`)::

    <folder>/manifest.json       format, generator checkpoint (file name, sha256), resolution,
                                 z_dim, first seed, and per image: key, seed, latent, image file
    <folder>/images/<key>.png    the generated images, 8-bit RGB, <key> = "seed_<seed>"
    <folder>/masks/<key>.png     the masks a person draws (the default place; any folder works)

A mask is a PNG of the image's size whose pixel values are class ids ``0 .. num_classes - 1``:
an index image (mode ``"L"``, 8-bit, or ``"I"``/``"I;16"``, 16-bit greyscale) or a palette image
(mode ``"P"``, whose *indices* are the classes, whatever the colours). The value
:data:`IGNORE_INDEX` (255) may mark pixels left unlabeled (``ignore_index=None`` forbids it).
:func:`import_annotations` refuses, naming the file: a mask of another size than its image, a
colour (RGB) mask, a value that is not a class, a mask for no image of the manifest, and (unless
``partial=True``) an image without a mask.

For the embedded demo, :func:`oracle_annotate` labels the images with the ``shapes`` colour
oracle (:func:`loaders.shapes.annotate_parts`, 4 part classes): a stand-in for the person.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from loaders import CodecError, decode, encode
from loaders.fileio import read_regular
from pipelines.manifest import write_atomic, write_json

__all__ = [
    "ANNOTATION_FORMAT",
    "IGNORE_INDEX",
    "AnnotationSet",
    "annotation_key",
    "import_annotations",
    "oracle_annotate",
    "read_manifest",
    "sample_for_annotation",
    "to_uint8",
]

ANNOTATION_FORMAT = "datafactory.gan.annotation/1"
#: the mask value that marks unlabeled pixels (left out of the interpreter's training)
IGNORE_INDEX = 255
_KEY = re.compile(r"seed_-?[0-9]{1,20}")
_LISTED = 5
_MAX_IMAGES = 100_000
_MAX_MANIFEST_BYTES = 512 << 20


def annotation_key(seed: int) -> str:
    """The key (and file stem) of the generated image with per-image ``seed``: ``seed_<seed>``."""
    return f"seed_{int(seed)}"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator images in ``[-1, 1]`` (``(n, 3, H, W)`` float) -> uint8 ``[0, 255]``, rounded."""
    return ((images.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5).round_().to(torch.uint8)


# -- writing ------------------------------------------------------------------------------------


def _make_folder(path: Path) -> Path:
    """Create ``path`` (and parents); refuse an existing symlink or non-folder at that name."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        path.mkdir(parents=True, exist_ok=True)
        return path
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a folder (a symlink or file?); nothing is written through it",
                              str(path))
    return path


def _generator_record(generator: Any, checkpoint: str | os.PathLike | None) -> dict[str, Any]:
    from datafactory.gan.generator import checkpoint_sha256

    path = checkpoint if checkpoint is not None else getattr(generator, "checkpoint", None)
    if path is None:
        return {"checkpoint": None, "sha256": None}
    return {"checkpoint": Path(path).name, "sha256": checkpoint_sha256(path)}


def _resolve_generator(generator: Any, device: Any) -> tuple[Any, str | os.PathLike | None]:
    """A :class:`~datafactory.gan.generator.Generator`, loading it when given a checkpoint path."""
    if isinstance(generator, (str, os.PathLike)):
        from datafactory.gan.generator import load_generator

        return load_generator(generator, device=device), generator
    for name in ("sample", "synthesize"):
        if not callable(getattr(generator, name, None)):
            raise TypeError(f"generator must be a checkpoint path or a Generator (with sample() and synthesize()), "
                            f"got {type(generator).__name__}")
    return generator, None


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def sample_for_annotation(
    generator: Any,
    n: int,
    seed: int,
    out_dir: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``n`` generated images to annotate, with their seeds, latents and a manifest.

    Image ``i`` has the per-image seed ``seed + i``; see the module docstring for the layout.

    Args:
        generator: a :class:`~datafactory.gan.generator.Generator`, or the path of a bundled
            generator checkpoint (``generator.pt``, loaded with its ``generator.json``).
        n: how many images.
        seed: the first seed.
        out_dir: the annotation folder (created; it must not hold a manifest unless ``overwrite``).
        checkpoint: the generator's checkpoint file, whose sha256 the manifest records (default:
            the path given as ``generator``, or the generator's ``checkpoint`` attribute; else
            none is recorded).
        batch_size: images generated per call.
        device: where a generator loaded from a path runs.
        overwrite: replace an existing manifest and its images.

    Returns:
        The path of ``manifest.json``.
    """
    n = _positive(n, "n")
    batch_size = _positive(batch_size, "batch_size")
    if n > _MAX_IMAGES:
        raise ValueError(f"n must be at most {_MAX_IMAGES} (images to annotate by hand), got {n}")
    model, path = _resolve_generator(generator, device)
    record = _generator_record(model, checkpoint if checkpoint is not None else path)
    out = _make_folder(Path(out_dir))
    manifest_path = out / "manifest.json"
    if os.path.lexists(manifest_path) and not overwrite:
        raise FileExistsError(errno.EEXIST, "an annotation manifest is already there; pass overwrite=True "
                              "(--overwrite) or choose another folder", str(manifest_path))
    images_dir = _make_folder(out / "images")
    _make_folder(out / "masks")
    entries = []
    for start in range(0, n, batch_size):
        batch = model.sample(min(batch_size, n - start), seed + start)
        pixels = to_uint8(batch.images)
        if pixels.shape[1:] != (3, model.resolution, model.resolution):
            raise ValueError(f"the generator returned images of shape {tuple(pixels.shape[1:])}, expected "
                             f"(3, {model.resolution}, {model.resolution})")
        for i, image_seed in enumerate(batch.seeds):
            key = annotation_key(image_seed)
            write_atomic(images_dir / f"{key}.png", encode("png", pixels[i]))
            entries.append({"key": key, "seed": int(image_seed), "image": f"images/{key}.png",
                            "latent": [float(v) for v in batch.latents[i].tolist()]})
    manifest = {
        "format": ANNOTATION_FORMAT,
        "generator": record,
        "resolution": int(model.resolution),
        "z_dim": int(model.z_dim),
        "seed": int(seed),
        "count": n,
        "masks": "masks/<key>.png: an index (L) or palette (P) PNG of the image's size, values = class ids, "
                 f"{IGNORE_INDEX} = unlabeled",
        "images": entries,
    }
    write_json(manifest_path, manifest)
    return manifest_path


# -- reading ------------------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and check an annotation ``manifest.json``; errors name the file and the entry."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    info = os.stat(path)  # FileNotFoundError names the path
    if info.st_size > _MAX_MANIFEST_BYTES:
        raise ValueError(f"{str(path)!r}: {info.st_size} bytes is too large for an annotation manifest")
    try:
        manifest = json.loads(read_regular(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ANNOTATION_FORMAT:
        raise ValueError(f"{str(path)!r} is not an annotation manifest (format {ANNOTATION_FORMAT!r})")
    for name in ("resolution", "z_dim"):
        value = manifest.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{str(path)!r}: {name!r} must be a positive int, got {value!r}")
    images = manifest.get("images")
    if not isinstance(images, list) or not images or len(images) > _MAX_IMAGES:
        raise ValueError(f"{str(path)!r}: 'images' must be a list of 1 to {_MAX_IMAGES} entries")
    seen: set[str] = set()
    for position, entry in enumerate(images):
        where = f"{str(path)!r}: images[{position}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object")
        key, seed, latent = entry.get("key"), entry.get("seed"), entry.get("latent")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"{where}: key {key!r} is not of the form 'seed_<int>'")
        if key in seen:
            raise ValueError(f"{where}: key {key!r} repeats")
        seen.add(key)
        if isinstance(seed, bool) or not isinstance(seed, int) or annotation_key(seed) != key:
            raise ValueError(f"{where}: seed {seed!r} does not match key {key!r}")
        if (not isinstance(latent, list) or len(latent) != manifest["z_dim"]
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in latent)):
            raise ValueError(f"{where}: latent must be a list of {manifest['z_dim']} numbers")
    generator = manifest.get("generator")
    if not isinstance(generator, dict):
        raise ValueError(f"{str(path)!r}: 'generator' must be an object")
    return manifest


@dataclass(frozen=True)
class AnnotationSet:
    """Annotated generated images, in manifest order.

    Attributes:
        keys, seeds: per image.
        latents: ``(K, z_dim)`` float32, the latents the images were made from.
        images: ``(K, 3, R, R)`` uint8, the images that were annotated.
        masks: ``(K, R, R)`` int64 class ids (``ignore_index`` where unlabeled).
        num_classes: the number of classes.
        ignore_index: the unlabeled value, or ``None``.
        generator_sha256: the generator checkpoint hash the manifest records (or ``None``).
        manifest_path: where the manifest was read.
    """

    keys: tuple[str, ...]
    seeds: tuple[int, ...]
    latents: torch.Tensor
    images: torch.Tensor
    masks: torch.Tensor
    num_classes: int
    ignore_index: int | None
    generator_sha256: str | None
    manifest_path: Path

    def __len__(self) -> int:
        return len(self.keys)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _read_png(path: Path, suffix: str) -> torch.Tensor:
    try:
        return decode(suffix, read_regular(path))
    except CodecError as error:
        hint = ("; save masks as index (mode L) or palette (mode P) PNGs whose values are the class ids"
                if suffix == "mask.png" else "")
        raise ValueError(f"{str(path)!r}: {error}{hint}") from None


def _check_mask(mask: torch.Tensor, path: Path, size: int, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    if tuple(mask.shape) != (size, size):
        raise ValueError(f"{str(path)!r}: the mask is {mask.shape[1]}x{mask.shape[0]} pixels but its image is "
                         f"{size}x{size}; draw the mask at the image's size")
    bad = mask >= num_classes
    if ignore_index is not None:
        bad &= mask != ignore_index
    if bool(bad.any()):
        values = sorted({int(v) for v in mask[bad].unique()[:_LISTED].tolist()})
        row, column = (int(v) for v in bad.nonzero()[0])
        allowed = f"class ids 0..{num_classes - 1}" + (f" or {ignore_index} (unlabeled)" if ignore_index is not None else "")
        raise ValueError(f"{str(path)!r}: {int(bad.sum())} pixels hold values that are not {allowed}: "
                         f"{values} (first at row {row}, column {column}); is num_classes={num_classes} right?")
    return mask


def _mask_files(folder: Path, keys: set[str]) -> dict[str, Path]:
    """``key -> mask path`` of the folder; an entry that is no manifest image's mask is an error."""
    found: dict[str, Path] = {}
    extra: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files (editor and OS droppings) are not masks
            stem, dot, suffix = entry.name.rpartition(".")
            if dot and suffix.lower() == "png" and stem in keys:
                found[stem] = folder / entry.name
            else:
                extra.append(entry.name)
    if extra:
        extra.sort()
        raise ValueError(f"mask folder {str(folder)!r} holds {len(extra)} entries that are no image's mask: "
                         f"{_listed(extra)}; masks are named <key>.png after the manifest's images "
                         "(move other files elsewhere)")
    return found


def import_annotations(
    folder: str | os.PathLike,
    manifest: str | os.PathLike,
    num_classes: int,
    *,
    ignore_index: int | None = IGNORE_INDEX,
    partial: bool = False,
) -> AnnotationSet:
    """Read the masks drawn for the images of an annotation manifest.

    Args:
        folder: the mask folder, one ``<key>.png`` per image (see the module docstring).
        manifest: the ``manifest.json`` written by :func:`sample_for_annotation` (or its folder).
        num_classes: class ids are ``0 .. num_classes - 1``.
        ignore_index: the value of unlabeled pixels (``None``: every pixel must be a class).
        partial: accept images without a mask (at least one must have one); default: an error.

    Raises:
        FileNotFoundError: the folder, the manifest, an image, or (without ``partial``) a mask is
            missing (the message names it).
        ValueError: a mask has another size than its image, is not single-channel, holds a value
            that is not a class, or the folder holds a file that is no image's mask.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= 65536:
        raise ValueError(f"num_classes must be an int in [1, 65536], got {num_classes!r}")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
                                     or not num_classes <= ignore_index <= 65535):
        raise ValueError(f"ignore_index must be None or an int in [num_classes={num_classes}, 65535], got {ignore_index!r}")
    manifest_path = Path(manifest)
    manifest_path = manifest_path / "manifest.json" if manifest_path.is_dir() else manifest_path
    data = read_manifest(manifest_path)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the mask folder does not exist", str(folder))
    entries = data["images"]
    found = _mask_files(folder, {entry["key"] for entry in entries})
    missing = [f"{entry['key']}.png" for entry in entries if entry["key"] not in found]
    if missing and (not partial or len(missing) == len(entries)):
        raise FileNotFoundError(errno.ENOENT, f"{len(missing)} of the {len(entries)} images have no mask "
                                f"({_listed(missing)}){'' if partial else '; pass partial=True to use the others'}",
                                str(folder / missing[0]))
    size = data["resolution"]
    keys, seeds, latents, images, masks = [], [], [], [], []
    for entry in entries:
        if entry["key"] not in found:
            continue
        image_path = manifest_path.parent / "images" / f"{entry['key']}.png"
        image = _read_png(image_path, "png")
        if tuple(image.shape) != (3, size, size) or image.dtype != torch.uint8:
            raise ValueError(f"{str(image_path)!r}: expected an 8-bit RGB image of {size}x{size}, "
                             f"got {image.dtype} {tuple(image.shape)}")
        mask_path = found[entry["key"]]
        masks.append(_check_mask(_read_png(mask_path, "mask.png"), mask_path, size, num_classes, ignore_index))
        keys.append(entry["key"])
        seeds.append(entry["seed"])
        latents.append(entry["latent"])
        images.append(image)
    return AnnotationSet(
        keys=tuple(keys), seeds=tuple(seeds), latents=torch.tensor(latents, dtype=torch.float32),
        images=torch.stack(images), masks=torch.stack(masks).to(torch.int64), num_classes=num_classes,
        ignore_index=ignore_index, generator_sha256=data["generator"].get("sha256"), manifest_path=manifest_path,
    )


def oracle_annotate(
    folder: str | os.PathLike,
    *,
    annotator: Callable[[torch.Tensor], torch.Tensor] | None = None,
    masks_dir: str | os.PathLike | None = None,
) -> Path:
    """Annotate an annotation folder's images automatically (a stand-in for the person).

    The default annotator is the ``shapes`` colour oracle, :func:`loaders.shapes.annotate_parts`
    (4 part classes: background, body, outline, marking), which is only meaningful for images of
    the embedded ``shapes`` domain, e.g. those of a generator trained on it.

    Args:
        folder: the annotation folder (holding ``manifest.json`` and ``images/``).
        annotator: ``uint8 (B, 3, H, W) -> int (B, H, W)`` class ids.
        masks_dir: where the masks go (default ``<folder>/masks``).

    Returns:
        The mask folder, ready for :func:`import_annotations`.
    """
    if annotator is None:
        from loaders.shapes import annotate_parts as annotator
    if not callable(annotator):
        raise TypeError(f"annotator must be callable, got {type(annotator).__name__}")
    folder = Path(folder)
    data = read_manifest(folder / "manifest.json")
    target = _make_folder(Path(masks_dir) if masks_dir is not None else folder / "masks")
    for entry in data["images"]:
        image = _read_png(folder / "images" / f"{entry['key']}.png", "png")
        mask = annotator(image[None])
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (1, *image.shape[1:]):
            raise ValueError(f"annotator returned {getattr(mask, 'shape', type(mask))} for a {tuple(image.shape)} image; "
                             f"expected (1, {image.shape[1]}, {image.shape[2]})")
        write_atomic(target / f"{entry['key']}.png", encode("mask.png", mask[0].to(torch.int64)))
    return target


def manifest_summary(manifest: Mapping[str, Any]) -> str:
    """One line about a manifest (for the CLI)."""
    generator = manifest.get("generator", {})
    return (f"{len(manifest['images'])} images of {manifest['resolution']}x{manifest['resolution']} from seed "
            f"{manifest.get('seed')}; generator {generator.get('checkpoint')} (sha256 {str(generator.get('sha256'))[:12]})")
