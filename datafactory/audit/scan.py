"""One pass over a split: decode each sample once and keep what the audit needs from it.

Per sample read: its key and locator, the digests of its image's encoded bytes and decoded
pixels, its pHash, width, height, channels and bit depth, its label(s); a few thumbnails per
class; for a seeded sample of positions, a small RGB copy for the hull test; and, when an
embedder is given, its embedding. Corrupt samples (load or decode failures, under
``on_error="skip"``) are recorded with the error policy's reason and their shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from datafactory.audit.hashing import bytes_digest, grey_thumbnail, phash_from_grey, pixel_digest
from datafactory.audit.sources import AuditSource
from loaders import CODECS, CodecError, SampleError, decode_sample

__all__ = ["ScanOptions", "SplitScan", "image_suffix", "scan_split", "thumbnail", "to_rgb_float"]

UNLABELLED = "(unlabelled)"
_HASH_BATCH = 4096  # grey thumbnails hashed together (one batched DCT)


@dataclass(frozen=True)
class ScanOptions:
    """What to collect besides the per-sample columns."""

    thumbnails_per_class: int = 6
    thumbnail_classes: int = 24
    thumbnail_side: int = 64
    hull_positions: frozenset[int] = frozenset()
    hull_resolution: int = 32
    embedder: Any = None
    progress: bool = True


@dataclass
class SplitScan:
    """The columns collected from one split (row ``r`` = the ``r``-th sample read)."""

    name: str
    source: AuditSource
    keys: list[str] = field(default_factory=list)
    locators: list[tuple[int, int]] = field(default_factory=list)
    shards: list[str | None] = field(default_factory=list)
    byte_digests: list[str | None] = field(default_factory=list)
    pixel_digests: list[str | None] = field(default_factory=list)
    labels: list[int | None] = field(default_factory=list)
    image_rows: list[int] = field(default_factory=list)
    width: list[int] = field(default_factory=list)
    height: list[int] = field(default_factory=list)
    channels: list[int] = field(default_factory=list)
    bits: list[int] = field(default_factory=list)
    multilabel_rows: list[int] = field(default_factory=list)
    multilabels: list[np.ndarray] = field(default_factory=list)
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    thumbnails: dict[str, list[np.ndarray]] = field(default_factory=dict)
    hull_images: list[torch.Tensor] = field(default_factory=list)
    embedding_rows: list[int] = field(default_factory=list)
    embeddings: np.ndarray | None = None
    phash: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))

    @property
    def read(self) -> int:
        return len(self.keys)


def image_suffix(encoded: dict[str, Any]) -> str | None:
    """The member holding the sample's ``image`` field (``jpg``, ``png``, ``webp``, ``dcm``...)."""
    for suffix in sorted(encoded):
        codec = CODECS.get(suffix.lower()) if isinstance(suffix, str) else None
        if codec is not None and codec.field == "image":
            return suffix
    return None


def bit_depth(image: torch.Tensor) -> int:
    """Bits per channel of a decoded image's dtype (8 for uint8, 16 for uint16...)."""
    return torch.iinfo(image.dtype).bits if not image.dtype.is_floating_point else torch.finfo(image.dtype).bits


def to_rgb_float(image: torch.Tensor, side: int) -> torch.Tensor:
    """``[3, side, side]`` float32 in [0, 1]: area-resized, grey replicated, alpha dropped."""
    scale = float(torch.iinfo(image.dtype).max) if not image.dtype.is_floating_point else 1.0
    x = image.float() / scale
    x = x[:1].expand(3, -1, -1) if x.shape[0] < 3 else x[:3]
    return torch.nn.functional.adaptive_avg_pool2d(x[None], (side, side))[0].contiguous()


def thumbnail(image: torch.Tensor, side: int) -> np.ndarray:
    """A uint8 ``[h, w, 3]`` (or ``[h, w]`` for grey) picture fitting in ``side`` x ``side``.

    8-bit images keep their values; deeper ones are stretched from their own min to max.
    """
    x = image.float()
    if image.dtype != torch.uint8:
        low, high = x.min(), x.max()
        x = (x - low) / (high - low).clamp_min(1e-12) * 255
    x = x[:1] if x.shape[0] < 3 else x[:3]
    height, width = x.shape[1:]
    factor = min(1.0, side / max(height, width))
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    if size != (height, width):
        x = torch.nn.functional.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    array = np.clip(np.rint(x.permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8)
    return array[..., 0] if array.shape[2] == 1 else array


def _thumbnail_classes(label: int | None, labels: np.ndarray | None, names: Sequence[str] | None) -> list[str]:
    """The classes a sample's thumbnail may stand for: its label, its positive labels, or none."""
    if label is not None:
        return [names[label] if names is not None and 0 <= label < len(names) else str(label)]
    if labels is not None:
        positive = np.flatnonzero(labels == 1)
        return [names[k] if names is not None and k < len(names) else str(k) for k in positive] or [UNLABELLED]
    return [UNLABELLED]


def _add_thumbnail(scan: SplitScan, classes: list[str], image: torch.Tensor, options: ScanOptions) -> None:
    picture = None
    for name in classes:
        bucket = scan.thumbnails.get(name)
        if bucket is None:
            if len(scan.thumbnails) >= options.thumbnail_classes:
                continue
            bucket = scan.thumbnails[name] = []
        if len(bucket) < options.thumbnails_per_class:
            picture = thumbnail(image, options.thumbnail_side) if picture is None else picture
            bucket.append(picture)


class _Scanner:
    def __init__(self, source: AuditSource, options: ScanOptions) -> None:
        self.source, self.options = source, options
        self.scan = SplitScan(source.name, source)
        self.names = source.class_names
        self.grey: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.pending: list[torch.Tensor] = []
        self.embedded: list[np.ndarray] = []
        self.label_width: int | None = None

    def corrupt(self, item: Any, reason: str) -> None:
        self.scan.corrupt.append({"key": item.key, "shard": item.shard, "reason": reason})
        if item.shard is not None:
            self.source.tallies[item.locator[0]].corrupt += 1

    def add(self, ordinal: int, item: Any) -> None:
        if item.error is not None:
            self.corrupt(item, item.error)
            return
        encoded = item.encoded
        try:
            decoded = decode_sample(encoded)
        except CodecError as error:
            named = self.source.decode_error(item, error)  # names the file or the shard
            if self.source.on_error == "raise":
                raise named from error
            self.corrupt(item, str(named))
            return
        image = decoded.get("image")
        labels = decoded.get("labels")
        if labels is not None:
            labels = labels.detach().cpu().numpy().astype(np.float64).reshape(-1)
            if self.label_width is None:
                self.label_width = len(labels)
            elif len(labels) != self.label_width:
                error = SampleError(f"labels has {len(labels)} entries, earlier samples have {self.label_width}", key=item.key)
                if self.source.on_error == "raise":
                    raise error
                self.corrupt(item, str(error))
                return
        scan, row = self.scan, self.scan.read
        label = decoded.get("label")
        scan.keys.append(item.key)
        scan.locators.append(item.locator)
        scan.shards.append(item.shard)
        scan.labels.append(int(label) if isinstance(label, int) and not isinstance(label, bool) else None)
        if labels is not None:
            scan.multilabel_rows.append(row)
            scan.multilabels.append(labels)
        if item.shard is not None:
            self.source.tallies[item.locator[0]].read += 1
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            scan.byte_digests.append(None)
            scan.pixel_digests.append(None)
            return
        suffix = image_suffix(encoded)
        scan.byte_digests.append(bytes_digest(encoded[suffix]) if suffix is not None else None)
        scan.pixel_digests.append(pixel_digest(image))
        scan.image_rows.append(row)
        scan.channels.append(int(image.shape[0]))
        scan.height.append(int(image.shape[1]))
        scan.width.append(int(image.shape[2]))
        scan.bits.append(bit_depth(image))
        self.grey.append(grey_thumbnail(image))
        if len(self.grey) >= _HASH_BATCH:
            self.hash_pending()
        options = self.options
        _add_thumbnail(scan, _thumbnail_classes(scan.labels[-1], labels, self.names), image, options)
        if ordinal in options.hull_positions:
            scan.hull_images.append(to_rgb_float(image, options.hull_resolution))
        if options.embedder is not None:
            from datafactory.audit.embed import prepare_image

            scan.embedding_rows.append(row)
            self.pending.append(prepare_image(image, options.embedder.size))
            if len(self.pending) >= options.embedder.batch_size:
                self.flush()

    def hash_pending(self) -> None:
        if self.grey:
            self.hashes.append(phash_from_grey(np.stack(self.grey)))
            self.grey = []

    def flush(self) -> None:
        if self.pending:
            self.embedded.append(self.options.embedder.embed_prepared(torch.stack(self.pending)))
            self.pending = []

    def finish(self) -> SplitScan:
        self.flush()
        self.hash_pending()
        scan = self.scan
        scan.phash = np.concatenate(self.hashes) if self.hashes else np.zeros(0, dtype=np.uint64)
        if self.options.embedder is not None:
            scan.embeddings = np.concatenate(self.embedded) if self.embedded else np.zeros((0, 0), dtype=np.float32)
        return scan


def scan_split(source: AuditSource, options: ScanOptions) -> SplitScan:
    """Read every sample of ``source`` once and collect the audit's columns."""
    scanner = _Scanner(source, options)
    bar = None
    if options.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(source), desc=f"audit {source.name}", unit="sample", dynamic_ncols=True)
    try:
        for ordinal, item in enumerate(source.items()):
            scanner.add(ordinal, item)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return scanner.finish()
