"""HowTo100M adapter: narrated instructional videos as clip + caption-bag samples.

Miech et al., 2019, "HowTo100M" (arXiv 1906.03327); MIL-NCE, Miech et al., 2020 (arXiv
1912.06430, ``video_loader.py``); VATT, Akbari et al., 2021 (arXiv 2104.11178, ``configs/
dataset.py``). Layout (the ``HowTo100M.zip`` files at ``root``, videos beside them or in
``root/videos/``)::

    root/HowTo100M_v1.csv       video_id,category_1,category_2,rank,task_id
    root/task_ids.csv           <task_id>\\t<task name>   (header row optional)
    root/caption.json           {video_id: {"start": [...], "end": [...], "text": [...]}}
    root/raw_caption.json       same structure, unprocessed ASR (captions="raw")
    root/[videos/]<video_id>.mp4|webm|mkv

Clip sampling (``mode``):

* ``"milnce"``: window = the anchor caption's ``[start, end]`` widened symmetrically to
  ``min_duration``; the clip (``num_frames`` at ``fps``, default 16 @ 5 fps = 3.2 s) starts at
  the window start (enumeration) or uniformly in ``[start, max(start, end - clip)]`` (random);
  text = the ``bag_size`` nearest contiguous captions (MIL-NCE ``num_candidates``).
* ``"vatt"``: 32 frames at 10 fps (3.2 s) centred on the anchor caption (random: any start
  whose clip still covers the caption's midpoint), 48 kHz audio, text = up to ``bag_size = 4``
  neighbouring sentences (VATT ``max_context_sentences``).

``sampling="enumerate"`` gives one sample per caption in a fixed order (video ids sorted,
captions in time order) for sharding; ``sampling="random"`` gives one sample per video whose
anchor caption and start are drawn from a ``torch.Generator`` seeded by ``(seed, epoch, index)``
(:meth:`HowTo100MDataset.set_epoch`); nothing reseeds global RNGs.
"""

from __future__ import annotations

import bisect
import csv
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loaders.base import SampleError
from loaders.fileio import open_regular_file
from loaders.layout import require_regular_file
from loaders.multimodal.clips import VIDEO_EXTENSIONS, ClipAdapter
from loaders.multimodal.pairing import expand_window, nearest_contiguous
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key

__all__ = ["ClipEnumeration", "HowTo100MDataset", "MODES", "SamplingConfig", "read_captions", "read_task_ids", "read_videos_csv"]

SAMPLINGS = ("enumerate", "random")
CAPTIONS = {"caption": "caption.json", "raw": "raw_caption.json"}
_CSV_FIELDS = ("video_id", "category_1", "category_2", "rank", "task_id")


@dataclass(frozen=True)
class SamplingConfig:
    """Clip sampling parameters of one mode (every field can be overridden per dataset)."""

    num_frames: int
    fps: float
    sample_rate: int
    bag_size: int
    min_duration: float
    centre: bool  # clip centred on the caption (VATT) vs starting at the window start (MIL-NCE)


#: mode -> defaults (MIL-NCE README training command: 16 frames @ 5 fps, 4 candidates, min_time 5 s).
MODES: Mapping[str, SamplingConfig] = {
    "milnce": SamplingConfig(num_frames=16, fps=5.0, sample_rate=16000, bag_size=4, min_duration=5.0, centre=False),
    "vatt": SamplingConfig(num_frames=32, fps=10.0, sample_rate=48000, bag_size=4, min_duration=3.2, centre=True),
}


def read_videos_csv(path: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], list[tuple[int, str]]]:
    """``HowTo100M_v1.csv`` -> ``({video_id: row}, [(line, reason), ...])``; empty fields -> ``None``."""
    rows: dict[str, dict[str, Any]] = {}
    errors: list[tuple[int, str]] = []
    with open_regular_file(path, "r", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != _CSV_FIELDS:
            raise ValueError(f"{os.fspath(path)!r}: expected header {','.join(_CSV_FIELDS)}, got {header!r}")
        for line, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != len(_CSV_FIELDS) or not fields[0].strip():
                errors.append((line, f"expected {len(_CSV_FIELDS)} fields ({','.join(_CSV_FIELDS)}), got {len(fields)}: {fields!r}"))
                continue
            row: dict[str, Any] = {k: (v.strip() or None) for k, v in zip(_CSV_FIELDS, fields)}
            for k in ("rank", "task_id"):
                row[k] = int(row[k]) if row[k] is not None and row[k].lstrip("-").isdigit() else row[k]
            rows[row["video_id"]] = row
    return rows, errors


def read_task_ids(path: str | os.PathLike) -> dict[str, str]:
    """``task_ids.csv`` (tab-separated ``task_id``, ``task name``; a header row is detected
    because its first field is not numeric) -> ``{task_id: name}``."""
    out: dict[str, str] = {}
    with open_regular_file(path, "r", encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            first, _, rest = line.partition("\t") if "\t" in line else line.partition(",")
            if not first.strip().isdigit():
                continue  # header row (e.g. "id\ttask_name")
            out[first.strip()] = rest.strip()
    return out


def read_captions(path: str | os.PathLike) -> dict[str, Any]:
    """Load ``caption.json`` / ``raw_caption.json`` (dict of parallel ``start``/``end``/``text``)."""
    with open_regular_file(path, "r", encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{os.fspath(path)!r}: expected a JSON object keyed by video id")
    return data


def _caption_table(entry: Any) -> tuple[list[float], list[float], list[str]]:
    if not isinstance(entry, dict) or not all(k in entry for k in ("start", "end", "text")):
        raise ValueError("caption entry needs 'start', 'end' and 'text' arrays")
    starts, ends, texts = entry["start"], entry["end"], entry["text"]
    if not (len(starts) == len(ends) == len(texts)):
        raise ValueError(f"caption arrays differ in length: start {len(starts)}, end {len(ends)}, text {len(texts)}")
    order = sorted(range(len(starts)), key=lambda i: (float(starts[i]), i))
    return [float(starts[i]) for i in order], [float(ends[i]) for i in order], [str(texts[i]) for i in order]


class ClipEnumeration(Sequence):
    """The enumeration index: ``extra`` rows (recorded errors) then one row per caption.

    Only one row per *video* is stored; a caption's row (``<video key>/<caption index>``, with
    ``anchor``) is built on access by bisecting the cumulative caption counts, so enumerating
    HowTo100M's ~136M captions costs memory per video, not per caption.
    """

    def __init__(self, extra: list[dict[str, Any]], videos: list[dict[str, Any]]) -> None:
        self._extra, self._videos = extra, videos
        self._offsets = np.cumsum([len(extra)] + [len(v["starts"]) for v in videos]).tolist()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        if i < len(self._extra):
            return self._extra[i]
        v = bisect.bisect_right(self._offsets, i) - 1
        video, anchor = self._videos[v], i - self._offsets[v]
        return {**video, KEY: f"{video[KEY]}/{anchor}", "anchor": anchor}


@register_dataset("howto100m")
class HowTo100MDataset(ClipAdapter):
    """HowTo100M clips paired with caption bags.

    Args:
        root: the folder with ``HowTo100M_v1.csv``, ``task_ids.csv`` and ``caption.json``.
        split: HowTo100M has no official split: ``None`` or ``"train"`` (all videos).
        mode: ``"milnce"`` or ``"vatt"`` (defaults in :data:`MODES`).
        sampling: ``"enumerate"`` (one sample per caption, fixed order) or ``"random"``
            (one per video, drawn from ``seed`` and the epoch).
        seed: the seed of random sampling.
        captions: ``"caption"`` (``caption.json``) or ``"raw"`` (``raw_caption.json``).
        video_dir: where ``<video_id>.<ext>`` live (default ``root/videos`` if present, else root).
        videos: optional subset of video ids (e.g. one shard's worth).
        present_only: index only videos found on disk (the others are counted in ``missing``).
        num_frames, fps, sample_rate, bag_size, min_duration: override the mode's defaults.
        window_from: ``"caption"`` (the anchor caption's span) or ``"bag"`` (the whole text bag's).
        size, channels, video, audio, missing_audio, decode, on_error, transform: see
            :class:`ClipAdapter`.
    """

    name = "howto100m"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        mode: str = "milnce",
        sampling: str = "enumerate",
        seed: int = 0,
        captions: str = "caption",
        video_dir: str | os.PathLike | None = None,
        videos: Sequence[str] | None = None,
        present_only: bool = False,
        num_frames: int | None = None,
        fps: float | None = None,
        sample_rate: int | None = None,
        bag_size: int | None = None,
        min_duration: float | None = None,
        window_from: str = "caption",
        size: int | tuple[int, int] | None = None,
        channels: int | None = 1,
        video: bool = True,
        audio: bool = True,
        missing_audio: str = "raise",
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if root is None:
            raise ValueError("howto100m needs root= (the folder with caption.json and HowTo100M_v1.csv)")
        if split not in (None, "train"):
            raise ValueError(f"split must be None or 'train' (HowTo100M has no official splits), got {split!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {tuple(MODES)}, got {mode!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if captions not in CAPTIONS:
            raise ValueError(f"captions must be one of {tuple(CAPTIONS)}, got {captions!r}")
        if window_from not in ("caption", "bag"):
            raise ValueError(f"window_from must be 'caption' or 'bag', got {window_from!r}")
        preset = MODES[mode]
        self.config = SamplingConfig(
            num_frames=preset.num_frames if num_frames is None else int(num_frames),
            fps=preset.fps if fps is None else float(fps),
            sample_rate=preset.sample_rate if sample_rate is None else int(sample_rate),
            bag_size=preset.bag_size if bag_size is None else int(bag_size),
            min_duration=preset.min_duration if min_duration is None else float(min_duration),
            centre=preset.centre,
        )
        if self.config.num_frames < 1 or self.config.bag_size < 1 or self.config.min_duration < 0:
            raise ValueError(f"num_frames and bag_size must be >= 1 and min_duration >= 0, got {self.config}")
        super().__init__(
            fps=self.config.fps, size=size, sample_rate=self.config.sample_rate, channels=channels, video=video,
            audio=audio, missing_audio=missing_audio, decode=decode, on_error=on_error, transform=transform,
        )
        self.root, self.mode, self.sampling, self.seed, self.epoch = Path(root), mode, sampling, int(seed), 0
        self.window_from = window_from
        self.caption_path = self.root / CAPTIONS[captions]
        require_regular_file(self.caption_path, what=f"howto100m: {str(self.caption_path)!r}",
                             where=f"(captions={captions!r})")
        default_dir = self.root / "videos"
        self.video_dir = Path(video_dir) if video_dir else (default_dir if default_dir.is_dir() else self.root)
        self.subset = None if videos is None else set(videos)
        self.present_only = present_only
        self.index

    @property
    def clip_seconds(self) -> float:
        """Duration of one clip: ``num_frames / fps``."""
        return self.config.num_frames / self.config.fps

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch for ``sampling="random"`` (call it in each worker / before each epoch)."""
        self.epoch = int(epoch)

    # -- index --------------------------------------------------------------------------------

    def _build_index(self) -> Any:
        csv_path, tasks_path = self.root / "HowTo100M_v1.csv", self.root / "task_ids.csv"
        rows, errors = read_videos_csv(csv_path) if csv_path.is_file() else ({}, [])
        tasks = read_task_ids(tasks_path) if tasks_path.is_file() else {}
        records: list[dict[str, Any]] = []
        for line, reason in errors:
            if self.on_error == "raise":
                raise ValueError(f"howto100m: {str(csv_path)!r} line {line}: {reason}")
            records.append({KEY: f"bad-row/HowTo100M_v1/{line}", "error": f"line {line}: {reason}", "path": str(csv_path)})
        on_disk: dict[str, str] = {}
        if self.video_dir.is_dir():
            for entry in os.scandir(self.video_dir):
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() in VIDEO_EXTENSIONS and (stem not in on_disk or VIDEO_EXTENSIONS.index(ext.lower()) < VIDEO_EXTENSIONS.index(os.path.splitext(on_disk[stem])[1].lower())):
                    on_disk[stem] = entry.path
        captions = read_captions(self.caption_path)
        self.missing = []
        videos: list[dict[str, Any]] = []
        keys: dict[str, str] = {}
        for video_id in sorted(captions):
            if self.subset is not None and video_id not in self.subset:
                continue
            base = {"video_id": video_id, "path": on_disk.get(video_id)}
            try:
                starts, ends, texts = _caption_table(captions[video_id])
            except (ValueError, TypeError) as error:
                if self.on_error == "raise":
                    raise ValueError(f"howto100m: {str(self.caption_path)!r} video {video_id!r}: {error}") from None
                records.append({KEY: safe_key(video_id, "bad-captions"), **base, "error": f"captions of {video_id!r}: {error}"})
                continue
            if not starts:
                continue  # no narration: no clip can be paired
            if base["path"] is None:
                self.missing.append(video_id)
                if self.present_only:
                    continue
            row = rows.get(video_id, {})
            info = {k: row.get(k) for k in _CSV_FIELDS[1:]}
            info["task_name"] = tasks.get(str(row.get("task_id"))) if row else None
            key = safe_key(video_id)
            if key in keys:
                raise ValueError(f"howto100m: video ids {keys[key]!r} and {video_id!r} give the same key {key!r}")
            keys[key] = video_id
            videos.append({KEY: key, **base, "info": info, "starts": starts, "ends": ends, "texts": texts})
        if self.sampling == "random":
            return records + [{**video, "position": len(records) + i} for i, video in enumerate(videos)]
        return ClipEnumeration(records, videos)

    @property
    def index(self) -> Sequence[dict[str, Any]]:  # type: ignore[override]
        """The index rows; in enumeration mode a lazy :class:`ClipEnumeration` (keys are unique
        by construction: distinct video keys, checked while indexing, plus caption numbers)."""
        if self._records is None:
            self._records = self._build_index()
        return self._records

    # -- sampling -----------------------------------------------------------------------------

    def clip_window(self, record: Mapping[str, Any], anchor: int, generator: torch.Generator | None = None) -> tuple[float, float, int, int]:
        """``(start, end, bag_lo, bag_hi)`` for caption ``anchor`` of ``record``.

        Deterministic without ``generator``; with one, the clip start is drawn uniformly from
        the mode's allowed range (the only randomness).
        """
        starts, ends = record["starts"], record["ends"]
        lo, hi = nearest_contiguous(starts, ends, anchor, self.config.bag_size)
        span = (starts[lo], ends[hi - 1]) if self.window_from == "bag" else (starts[anchor], ends[anchor])
        length = self.clip_seconds
        if self.config.centre:
            mid = (span[0] + span[1]) / 2
            first, last = mid - length, mid  # any clip start that still covers the midpoint
            default = mid - length / 2
        else:
            w0, w1 = expand_window(span[0], span[1], self.config.min_duration)
            first, last, default = w0, max(w0, w1 - length), w0
        if generator is None:
            start = default
        else:
            start = first + float(torch.rand((), generator=generator, dtype=torch.float64)) * (last - first)
        start = max(0.0, start)
        return start, start + length, lo, hi

    def _generator(self, position: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, self.epoch, position]).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def _load_decoded(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if "error" in record:
            raise SampleError(record["error"], path=record.get("path"))
        if record["path"] is None:
            raise SampleError(f"video {record['video_id']!r} not found as <id>{{{','.join(VIDEO_EXTENSIONS)}}} in {str(self.video_dir)!r}")
        if self.sampling == "random":
            generator = self._generator(record["position"])
            anchor = int(torch.randint(len(record["starts"]), (), generator=generator))
        else:
            generator, anchor = None, record["anchor"]
        start, end, lo, hi = self.clip_window(record, anchor, generator)
        clip = self.read_window(record["path"], start, end)
        meta = {
            "video_id": record["video_id"], "start": start, "end": end, "mode": self.mode, "anchor": anchor,
            "caption_indices": [lo, hi], "caption_start": record["starts"][lo], "caption_end": record["ends"][hi - 1],
            **record["info"],
        }
        return {**self.clip_fields(clip, meta), "text": list(record["texts"][lo:hi])}
