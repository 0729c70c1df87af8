"""AudioSet adapter: segment CSVs + audio (PANNs folders, flat files or PANNs HDF5 packs) + video.

Layouts accepted under ``root`` (see ``docs/multimodal.md``)::

    root/                                     (or root/metadata/ for the CSVs, as PANNs)
      {eval,balanced_train,unbalanced_train}_segments.csv
      metadata/unbalanced_partial_csvs/unbalanced_train_segments_partNN.csv
      class_labels_indices.csv   ontology.json (optional)
      audios/<split>_segments/[..._partNN/]Y<YTID>.wav       PANNs download folders
      audio/<split>/<YTID>_<start>.<wav|flac|...>              flat files (AST/SSAST naming)
      hdf5s/waveforms/<split>.h5 | hdf5s/waveforms/<split>/*.h5 PANNs waveform packs
      video/<split>/Y<YTID>.mp4 | <YTID>_<start>.mp4           optional video (video_dir=)

Samples: ``audio`` float32 ``[channels, samples]`` (resampled to ``sample_rate``, cropped or
zero-padded to ``clip_seconds``), ``labels`` float32 527-way multi-hot (MID -> index from
``class_labels_indices.csv``), optional ``video``, and ``meta`` (``ytid``, ``start``, ``end``,
``mids``, ``sample_rate``, ``fps``, ``video_frames_held``, ``audio_samples_padded``). HDF5
waveforms decode as ``int16 / 32767`` (PANNs' inverse of its ``float32_to_int16``); file audio as
``int16 / 32768``. A truncated audio or video file (data ending before the length its header
declares) is a bad sample, not a padded one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loaders.base import SampleError
from loaders.clip_io import fit_length, read_audio_clip, remix_channels, resample
from loaders.fileio import check_regular
from loaders.layout import first_existing, require_regular_file
from loaders.multimodal.audioset_meta import Ontology, read_class_labels, read_segments
from loaders.multimodal.clips import VIDEO_EXTENSIONS, ClipAdapter
from loaders.registry import register_dataset
from loaders.schema import KEY

__all__ = ["AUDIO_EXTENSIONS", "AUDIO_SOURCES", "AudioSetDataset", "SPLITS", "media_id"]

SPLITS = ("eval", "balanced_train", "unbalanced_train")
AUDIO_SOURCES = ("auto", "hdf5", "files", "video")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".webm")
CROPS = ("start", "center")
_FLAT_RE = re.compile(r"^(?P<id>.+)_(?P<start>\d+(?:\.\d+)?)$")


def media_id(filename: str) -> list[tuple[str, int | None]]:
    """The ``(ytid, start_ms)`` keys a media file name can stand for.

    ``Y<YTID>.wav`` (PANNs) -> ``(YTID, None)``; ``<YTID>_<start>.flac`` -> ``(YTID, start*1000)``;
    a bare ``<YTID>.mp4`` -> ``(YTID, None)``. Ambiguous names give every reading.
    """
    stem = os.path.splitext(os.path.basename(filename))[0]
    keys: list[tuple[str, int | None]] = []
    match = _FLAT_RE.match(stem)
    if match:
        keys.append((match["id"], round(float(match["start"]) * 1000)))
    if stem.startswith("Y") and len(stem) > 1:
        keys.append((stem[1:], None))
    keys.append((stem, None))
    return keys


def _scan_media(folder: Path, extensions: Sequence[str]) -> dict[tuple[str, int | None], str]:
    found: dict[tuple[str, int | None], str] = {}
    if not folder.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in extensions and not name.startswith("."):
                for key in media_id(name):
                    found.setdefault(key, os.path.join(dirpath, name))
    return found


@register_dataset("audioset")
class AudioSetDataset(ClipAdapter):
    """AudioSet segments as clips with 527-way multi-hot labels.

    Args:
        root: the folder holding the CSVs (directly or under ``metadata/``) and the media.
        split: ``"eval"``, ``"balanced_train"`` or ``"unbalanced_train"``.
        audio_source: ``"auto"`` (HDF5 pack if present, else audio files, else the video's
            track), ``"hdf5"``, ``"files"`` or ``"video"``.
        audio_dir: folder of audio files (default: ``root/audios/<split>_segments`` if present,
            else ``root/audio/<split>``); searched recursively.
        hdf5: waveform pack path(s) (default: ``root/hdf5s/waveforms/<split>.h5`` or every
            ``*.h5`` under ``root/hdf5s/waveforms/<split>/``).
        video_dir: optional folder of video files; when given, samples carry ``video`` too.
        video_timeline: ``"segment"`` (video files are cut to the 10-s segment) or ``"source"``
            (full YouTube videos: read ``[start, end]``).
        segments, class_labels, ontology: override the metadata file paths.
        sample_rate: output rate (default 32000, PANNs'); ``None`` keeps the source rate.
        clip_seconds: crop/zero-pad audio to this many seconds (``None``: keep the length).
        crop: ``"start"`` or ``"center"`` when audio is longer than ``clip_seconds``.
        drop_missing: leave rows without media out of the index (they stay counted in
            ``missing`` / ``stats()["missing_media"]``); by default they fail on load.
        fps, size, channels, missing_audio, decode, on_error, transform: see :class:`ClipAdapter`.
    """

    name = "audioset"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "balanced_train",
        *,
        audio_source: str = "auto",
        audio_dir: str | os.PathLike | None = None,
        hdf5: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        video_dir: str | os.PathLike | None = None,
        video_timeline: str = "segment",
        segments: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        class_labels: str | os.PathLike | None = None,
        ontology: str | os.PathLike | None = None,
        sample_rate: int | None = 32000,
        clip_seconds: float | None = 10.0,
        crop: str = "start",
        channels: int | None = 1,
        fps: float | None = None,
        size: int | tuple[int, int] | None = None,
        missing_audio: str = "raise",
        drop_missing: bool = False,
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if root is None:
            raise ValueError("audioset needs root= (the folder with the segment CSVs and media)")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if audio_source not in AUDIO_SOURCES:
            raise ValueError(f"audio_source must be one of {AUDIO_SOURCES}, got {audio_source!r}")
        if video_timeline not in ("segment", "source"):
            raise ValueError(f"video_timeline must be 'segment' or 'source', got {video_timeline!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if clip_seconds is not None and clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be > 0 or None, got {clip_seconds}")
        super().__init__(
            fps=fps, size=size, sample_rate=sample_rate, channels=channels, video=video_dir is not None, audio=True,
            missing_audio=missing_audio, decode=decode, on_error=on_error, transform=transform,
        )
        self.root, self.split = Path(root), split
        meta_dirs = (self.root, self.root / "metadata")
        labels_path = Path(class_labels) if class_labels else first_existing(
            (d / "class_labels_indices.csv" for d in meta_dirs), Path.exists)
        labels_path = require_regular_file(labels_path, what="audioset: class_labels_indices.csv",
                                           where=f"under {str(self.root)!r} or its metadata/ folder")
        self.mids, self.display_names = read_class_labels(labels_path)
        self.classes = tuple(self.display_names)
        self.mid_index = {mid: i for i, mid in enumerate(self.mids)}
        onto_path = Path(ontology) if ontology else first_existing((d / "ontology.json" for d in meta_dirs), Path.exists)
        self.ontology = Ontology.from_json(onto_path) if onto_path is not None else None
        self.segment_files = self._segment_files(segments, meta_dirs)
        self.hdf5_files = self._hdf5_files(hdf5) if audio_source in ("auto", "hdf5") else []
        if audio_source == "hdf5" and not self.hdf5_files:
            raise FileNotFoundError(f"audioset: no HDF5 waveform pack for split {split!r} under {str(self.root / 'hdf5s/waveforms')!r}")
        if audio_source == "auto":
            audio_source = "hdf5" if self.hdf5_files else ("video" if audio_dir is None and video_dir is not None and not self._default_audio_dir().is_dir() else "files")
        self.audio_source = audio_source
        self.audio_dir = Path(audio_dir) if audio_dir else self._default_audio_dir()
        if self.audio_source == "files" and not self.audio_dir.is_dir():
            raise FileNotFoundError(
                f"audioset: no audio for split {split!r}: {str(self.audio_dir)!r} is not a folder and there is no HDF5 pack "
                f"(expected audios/{split}_segments/Y<YTID>.wav, audio/{split}/<YTID>_<start>.<ext> or hdf5s/waveforms/{split}.h5)"
            )
        self.video_dir = None if video_dir is None else Path(video_dir)
        self.video_timeline = video_timeline
        self.clip_seconds, self.crop, self.drop_missing = clip_seconds, crop, drop_missing
        self.empty_rows = 0  # HDF5 rows with an empty audio_name (failed downloads)
        self._h5: dict[str, Any] = {}
        self._h5_pid = os.getpid()
        self.index  # index now: bad metadata fails at construction, not in a worker

    # -- layout discovery -------------------------------------------------------------------

    def _segment_files(self, segments: Any, meta_dirs: Sequence[Path]) -> list[Path]:
        if segments is not None:
            files = [Path(segments)] if isinstance(segments, (str, os.PathLike)) else [Path(s) for s in segments]
            for f in files:
                if not f.is_file():
                    raise FileNotFoundError(f"audioset: segments file {str(f)!r} not found")
            return files
        found = first_existing((d / f"{self.split}_segments.csv" for d in meta_dirs), Path.exists)
        if found is not None:
            return [found]
        parts = self.root / "metadata" / "unbalanced_partial_csvs"
        if self.split == "unbalanced_train" and parts.is_dir():
            return sorted(parts.glob("unbalanced_train_segments_part*.csv"))
        return []

    def _hdf5_files(self, hdf5: Any) -> list[Path]:
        if hdf5 is not None:
            files = [Path(hdf5)] if isinstance(hdf5, (str, os.PathLike)) else [Path(h) for h in hdf5]
            for f in files:
                if not f.is_file():
                    raise FileNotFoundError(f"audioset: HDF5 pack {str(f)!r} not found")
            return files
        base = self.root / "hdf5s" / "waveforms"
        single = base / f"{self.split}.h5"
        if single.is_file():
            return [single]
        return sorted((base / self.split).glob("*.h5")) if (base / self.split).is_dir() else []

    def _default_audio_dir(self) -> Path:
        panns = self.root / "audios" / f"{self.split}_segments"
        return panns if panns.is_dir() else self.root / "audio" / self.split

    # -- index --------------------------------------------------------------------------------

    def _hdf5_names(self) -> tuple[dict[str, tuple[str, int]], list[tuple[str, int, Any]]]:
        import h5py

        by_id: dict[str, tuple[str, int]] = {}
        rows: list[tuple[str, int, Any]] = []
        for path in self.hdf5_files:
            check_regular(path)  # HDF5 opens a FIFO or device and blocks: refuse it, naming the path
            with h5py.File(path, "r") as handle:
                if "audio_name" not in handle or "waveform" not in handle:
                    raise ValueError(f"audioset: {str(path)!r} is not a PANNs waveform pack (needs 'audio_name' and 'waveform')")
                names = handle["audio_name"][()]
            for row, raw in enumerate(names):
                name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                name = name.strip("\x00 ")
                stem = os.path.splitext(name)[0]
                ytid = stem[1:] if stem.startswith("Y") else stem  # PANNs names are Y<YTID>.wav
                rows.append((str(path), row, ytid if name else None))
                if name:
                    by_id.setdefault(ytid, (str(path), row))
                else:
                    self.empty_rows += 1
        return by_id, rows

    def _build_index(self) -> list[dict[str, Any]]:
        h5_by_id, h5_rows = self._hdf5_names() if self.audio_source == "hdf5" else ({}, [])
        if not self.segment_files:
            if not h5_rows:
                raise FileNotFoundError(
                    f"audioset: no {self.split}_segments.csv under {str(self.root)!r} (or metadata/) and no HDF5 pack"
                )
            return self._index_from_hdf5(h5_rows)
        files = {} if self.audio_source != "files" else _scan_media(self.audio_dir, AUDIO_EXTENSIONS)
        videos = {} if self.video_dir is None else _scan_media(self.video_dir, VIDEO_EXTENSIONS)
        records: list[dict[str, Any]] = []
        self.missing = []
        for csv_path in self.segment_files:
            segments, errors = read_segments(csv_path)
            for err in errors:
                if self.on_error == "raise":
                    raise ValueError(f"audioset: {err.path!r} line {err.line}: {err.reason}")
                records.append({KEY: f"bad-row/{Path(err.path).stem}/{err.line}", "error": f"line {err.line}: {err.reason}", "path": err.path})
            for seg in segments:
                key = f"{seg.ytid}_{round(seg.start * 1000)}"
                unknown = [m for m in seg.mids if m not in self.mid_index]
                record: dict[str, Any] = {KEY: key, "ytid": seg.ytid, "start": seg.start, "end": seg.end, "mids": list(seg.mids)}
                if unknown:
                    if self.on_error == "raise":
                        raise ValueError(f"audioset: {str(csv_path)!r} line {seg.line}: unknown MID(s) {unknown}")
                    record["error"] = f"line {seg.line}: unknown MID(s) {unknown}"
                ms = round(seg.start * 1000)
                if self.audio_source == "hdf5":
                    record["h5"] = h5_by_id.get(seg.ytid)
                elif self.audio_source == "files":
                    record["path"] = files.get((seg.ytid, ms)) or files.get((seg.ytid, None))
                if self.video_dir is not None:
                    record["video_path"] = videos.get((seg.ytid, ms)) or videos.get((seg.ytid, None))
                if "error" not in record and self._lacks_media(record):
                    self.missing.append(key)
                    if self.drop_missing:
                        continue
                records.append(record)
        return records

    def _index_from_hdf5(self, rows: list[tuple[str, int, Any]]) -> list[dict[str, Any]]:
        records = []
        for path, row, ytid in rows:
            part = Path(path).stem
            if ytid is None:
                self.missing.append(f"{part}/row{row}")
                if not self.drop_missing:
                    records.append({KEY: f"{part}/row{row}", "h5": None, "path": path, "error": f"HDF5 row {row} has an empty audio_name (failed download)"})
                continue
            records.append({KEY: f"{part}/{ytid}", "ytid": ytid, "h5": (path, row), "mids": None, "start": None, "end": None})
        return records

    def _lacks_media(self, record: Mapping[str, Any]) -> bool:
        if self.audio_source == "hdf5" and record.get("h5") is None:
            return True
        if self.audio_source == "files" and record.get("path") is None:
            return True
        needs_video = self.video_dir is not None or self.audio_source == "video"
        return needs_video and record.get("video_path") is None

    # -- loading ------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"] = {}  # h5py handles never cross process boundaries
        return state

    def _h5_file(self, path: str) -> Any:
        import h5py

        if self._h5_pid != os.getpid():
            self._h5, self._h5_pid = {}, os.getpid()
        if path not in self._h5:
            check_regular(path)
            self._h5[path] = h5py.File(path, "r")
        return self._h5[path]

    def _describe_record(self, record: Mapping[str, Any]) -> str | None:
        if record.get("h5"):
            return f"{record['h5'][0]}[{record['h5'][1]}]"
        return record.get("path") or record.get("video_path")

    def _load_decoded(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if "error" in record:
            raise SampleError(record["error"])
        meta: dict[str, Any] = {"ytid": record["ytid"], "start": record["start"], "end": record["end"]}
        if self._lacks_media(record):
            where = {"hdf5": [str(p) for p in self.hdf5_files], "files": str(self.audio_dir)}.get(self.audio_source, str(self.video_dir))
            raise SampleError(f"no media for YTID {record['ytid']!r} (start {record['start']}) in {where}")
        labels = torch.zeros(len(self.mids), dtype=torch.float32)
        if record["mids"] is not None:
            labels[[self.mid_index[m] for m in record["mids"]]] = 1.0
        video_fields: dict[str, Any] = {}
        held, padded = 0, 0
        if self.audio_source == "hdf5":
            handle = self._h5_file(record["h5"][0])
            row = record["h5"][1]
            audio = torch.from_numpy(handle["waveform"][row].astype(np.float32) / 32767.0)[None]
            rate = int(handle.attrs.get("sample_rate", 32000))
            if record["mids"] is None and "target" in handle:
                labels = torch.from_numpy(handle["target"][row].astype(np.float32))
            audio, rate = resample(remix_channels(audio, self.channels), rate, self.sample_rate or rate), self.sample_rate or rate
            meta["hdf5"] = {"file": record["h5"][0], "row": row}
        elif self.audio_source == "files":
            read = read_audio_clip(record["path"], sample_rate=self.sample_rate, channels=self.channels)
            audio, rate, padded = read.audio, int(read.sample_rate), read.audio_samples_padded
            meta["audio_file"] = record["path"]
        if self.video_dir is not None or self.audio_source == "video":
            seg = record["end"] - record["start"]
            length = self.clip_seconds or seg
            base = (0.0 if self.video_timeline == "segment" else record["start"]) + (max(0.0, seg - length) / 2 if self.crop == "center" else 0.0)
            start, end = base, base + length
            clip = self.read_window(record["video_path"], start, end, video=self.video_dir is not None, audio=self.audio_source == "video")
            if clip.video is not None:
                video_fields["video"] = clip.video
                meta["fps"] = clip.fps
                held = clip.video_frames_held
            if self.audio_source == "video":
                audio, rate, padded = clip.audio, int(clip.sample_rate), clip.audio_samples_padded
                meta["has_audio"] = clip.has_audio
            meta["video_file"] = record["video_path"]
        if self.clip_seconds is not None:
            length = round(self.clip_seconds * rate)
            offset = max(0, (audio.shape[1] - length) // 2) if self.crop == "center" else 0
            padded = min(length, padded + max(0, length - (audio.shape[1] - offset)))
            audio = fit_length(audio, length, offset=offset)
        meta["sample_rate"] = rate
        meta["video_frames_held"] = int(held)
        meta["audio_samples_padded"] = int(padded)
        meta["mids"] = [self.mids[i] for i in torch.nonzero(labels).flatten().tolist()] if record["mids"] is None else record["mids"]
        return {**video_fields, "audio": audio.to(torch.float32).contiguous(), "labels": labels, "meta": meta}
