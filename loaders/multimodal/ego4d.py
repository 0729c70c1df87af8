"""Ego4D adapter: egocentric video windows around narrations (EgoClip-style) or from egoclip.csv.

Grauman et al., 2022, "Ego4D" (arXiv 2110.07058; ``facebookresearch/Ego4d`` CLI layout);
Lin et al., 2022, "Egocentric Video-Language Pretraining" (EgoVLP, arXiv 2206.01670). Layout
written by ``ego4d --output_directory <root> --datasets full_scale annotations``::

    root/ego4d.json  or  root/v2/ego4d.json            {"videos": [{"video_uid", "duration_sec", ...}]}
    root/v2/full_scale|clips|video_540ss/<uid>.mp4
    root/v2/annotations/narration.json                  {uid: {"narration_pass_1": {...}, ...}}
    root/egoclip.csv  (optional, TAB-separated EgoVLP clip list)
    <video_dir>/<uid>/<chunk>.mp4                       EgoVLP 600-s chunks (video_dir=)

``source="narrations"``: one sample per narration of the chosen passes, window
``[t - beta/(2 alpha), t + beta/(2 alpha)]`` with ``beta`` the mean gap between consecutive
narrations of that video's pass and ``alpha`` the mean ``beta`` over the indexed videos (or
given); optionally one sample per summary (``[start_sec, end_sec]``). ``source="egoclip"``: one
sample per ``egoclip.csv`` row (``clip_start``/``clip_end``/``clip_text``, tags as int lists).
``"auto"`` uses egoclip.csv when present. Text tags follow ``tags`` (see
:func:`~loaders.multimodal.pairing.normalize_tags`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from loaders.base import SampleError
from loaders.fileio import open_regular_file
from loaders.layout import first_existing, require_regular_file
from loaders.multimodal.clips import ClipAdapter
from loaders.multimodal.pairing import TAG_MODES, egoclip_window, mean_gap, normalize_tags
from loaders.registry import register_dataset
from loaders.schema import KEY, safe_key

__all__ = ["EGOCLIP_COLUMNS", "Ego4DDataset", "VIDEO_SOURCES", "read_egoclip"]

VIDEO_SOURCES = ("full_scale", "clips", "video_540ss")
SOURCES = ("auto", "narrations", "egoclip")
PASSES = ("narration_pass_1", "narration_pass_2")
EGOCLIP_COLUMNS = (
    "clip_idx", "video_uid", "video_dur", "narration_source", "narration_ind", "narration_time",
    "clip_start", "clip_end", "clip_text", "tag_verb", "tag_noun",
)


def _int_list(text: str) -> list[int]:
    value = json.loads(text)  # "[93]" / "[192, 115, 12]": parsed as JSON, never eval()'d
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"expected a list of ints, got {text!r}")
    return value


def read_egoclip(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Parse a TAB-separated ``egoclip.csv`` into rows and ``(line, reason)`` errors.

    A leading unnamed index column (pandas ``to_csv``) is tolerated.
    """
    rows: list[dict[str, Any]] = []
    errors: list[tuple[int, str]] = []
    with open_regular_file(path, "r", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None) or []
        skip = 1 if header and header[0] == "" else 0
        if tuple(h.strip() for h in header[skip:]) != EGOCLIP_COLUMNS:
            raise ValueError(f"{os.fspath(path)!r}: expected a tab-separated header {EGOCLIP_COLUMNS}, got {header!r}")
        for line, fields in enumerate(reader, start=2):
            if not fields:
                continue
            fields = fields[skip:]
            if len(fields) != len(EGOCLIP_COLUMNS):
                errors.append((line, f"expected {len(EGOCLIP_COLUMNS)} tab-separated fields, got {len(fields)}"))
                continue
            row: dict[str, Any] = dict(zip(EGOCLIP_COLUMNS, fields))
            try:
                for k in ("video_dur", "narration_time", "clip_start", "clip_end"):
                    row[k] = float(row[k])
                row["narration_ind"] = int(row["narration_ind"])
                row["tag_verb"], row["tag_noun"] = _int_list(row["tag_verb"]), _int_list(row["tag_noun"])
            except ValueError as error:
                errors.append((line, f"bad field: {error}"))
                continue
            if not row["video_uid"] or row["clip_end"] <= row["clip_start"]:
                errors.append((line, "empty video_uid or clip_end <= clip_start"))
                continue
            rows.append(row)
    return rows, errors


@register_dataset("ego4d")
class Ego4DDataset(ClipAdapter):
    """Ego4D narration windows (or EgoClip rows) as video + audio + text clips.

    Args:
        root: the CLI output directory.
        split: ``None`` (all videos) or a value of ``split_field`` in ``ego4d.json``
            (``"train"``, ``"val"``, ``"test"``).
        split_field: ``"split_em"``, ``"split_fho"`` or ``"split_av"``.
        source: ``"auto"``, ``"narrations"`` or ``"egoclip"``.
        version: the CLI's major version folder (``"v2"``; ``"v1"`` for old downloads).
        video_source: ``"full_scale"``, ``"clips"`` or ``"video_540ss"``.
        video_dir: override the video folder; ``<video_dir>/<uid>/<n>.mp4`` (EgoVLP chunks of
            ``chunk_seconds``) is detected per video.
        passes: which narration passes to use.
        summaries: also one sample per pass summary.
        tags: ``"keep"``, ``"strip"`` or ``"expand"`` (``#C``/``#O``/``#unsure`` handling).
        drop_unsure: leave out narrations containing ``#unsure``.
        alpha: EgoClip's dataset-mean gap (``None``: computed over the indexed videos).
        num_frames: frames per clip spread uniformly over the window (EgoVLP: 4); ``None`` uses
            ``fps`` (or the source rate).
        narrations, metadata, egoclip: override the file paths.
        fps, size, sample_rate, channels, video, audio, missing_audio (default ``"silence"``:
            many Ego4D videos have no audio track), decode, on_error, transform: see
            :class:`ClipAdapter`.
    """

    name = "ego4d"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        *,
        split_field: str = "split_fho",
        source: str = "auto",
        version: str = "v2",
        video_source: str = "full_scale",
        video_dir: str | os.PathLike | None = None,
        passes: Sequence[str] = PASSES,
        summaries: bool = False,
        tags: str = "keep",
        drop_unsure: bool = False,
        alpha: float | None = None,
        num_frames: int | None = 4,
        chunk_seconds: float = 600.0,
        narrations: str | os.PathLike | None = None,
        metadata: str | os.PathLike | None = None,
        egoclip: str | os.PathLike | None = None,
        fps: float | None = None,
        size: int | tuple[int, int] | None = None,
        sample_rate: int | None = 16000,
        channels: int | None = 1,
        video: bool = True,
        audio: bool = True,
        missing_audio: str = "silence",
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        if root is None:
            raise ValueError("ego4d needs root= (the ego4d CLI output directory)")
        for arg, value, allowed in (("source", source, SOURCES), ("video_source", video_source, VIDEO_SOURCES),
                                    ("tags", tags, TAG_MODES), ("split_field", split_field, ("split_em", "split_fho", "split_av"))):
            if value not in allowed:
                raise ValueError(f"{arg} must be one of {allowed}, got {value!r}")
        bad = [p for p in passes if p not in PASSES]
        if bad or not passes:
            raise ValueError(f"passes must be a non-empty subset of {PASSES}, got {list(passes)!r}")
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"num_frames must be >= 1 or None, got {num_frames}")
        if alpha is not None and alpha <= 0:
            raise ValueError(f"alpha must be > 0 or None, got {alpha}")
        super().__init__(
            fps=fps, size=size, sample_rate=sample_rate, channels=channels, video=video, audio=audio,
            missing_audio=missing_audio, decode=decode, on_error=on_error, transform=transform,
        )
        self.root, self.split, self.split_field = Path(root), split, split_field
        versioned = self.root / version
        self.metadata_path = Path(metadata) if metadata else first_existing(
            (self.root / "ego4d.json", versioned / "ego4d.json"), Path.is_file)
        self.narration_path = Path(narrations) if narrations else first_existing(
            (versioned / "annotations" / "narration.json", self.root / "annotations" / "narration.json", self.root / "narration.json"),
            Path.is_file,
        )
        self.egoclip_path = Path(egoclip) if egoclip else first_existing(
            (self.root / "egoclip.csv", versioned / "egoclip.csv"), Path.is_file)
        if source == "auto":
            source = "egoclip" if self.egoclip_path is not None else "narrations"
        if source == "narrations":
            require_regular_file(self.narration_path, what="ego4d: narration.json",
                                 where=f"under {str(versioned / 'annotations')!r} or {str(self.root)!r}")
        if source == "egoclip":
            require_regular_file(self.egoclip_path, what="ego4d: egoclip.csv", where=f"under {str(self.root)!r}")
        if split is not None and self.metadata_path is None:
            raise FileNotFoundError(f"ego4d: split={split!r} needs ego4d.json (looked in {str(self.root)!r} and {str(versioned)!r})")
        self.source, self.passes, self.summaries = source, tuple(passes), summaries
        self.tags, self.drop_unsure, self.num_frames, self.chunk_seconds = tags, drop_unsure, num_frames, float(chunk_seconds)
        self.video_dir = Path(video_dir) if video_dir else versioned / video_source
        self.video_source = video_source
        self.alpha = alpha
        self.videos: dict[str, dict[str, Any]] = {}
        self.index

    # -- index --------------------------------------------------------------------------------

    def _load_metadata(self) -> None:
        if self.metadata_path is None:
            return
        with open_regular_file(self.metadata_path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
            raise ValueError(f"ego4d: {str(self.metadata_path)!r} must be an object with a 'videos' list")
        self.videos = {v["video_uid"]: v for v in data["videos"] if isinstance(v, dict) and "video_uid" in v}

    def _keep_video(self, uid: str) -> bool:
        return self.split is None or (self.videos.get(uid) or {}).get(self.split_field) == self.split

    def _fail(self, records: list, key: str, reason: str, path: Any) -> None:
        if self.on_error == "raise":
            raise ValueError(f"ego4d: {os.fspath(path)!r}: {reason}")
        records.append({KEY: key, "error": reason, "path": os.fspath(path)})

    def _build_index(self) -> list[dict[str, Any]]:
        self._load_metadata()
        records = self._index_egoclip() if self.source == "egoclip" else self._index_narrations()
        uids = {r["video_uid"] for r in records if "error" not in r}
        self.missing = sorted(uid for uid in uids if self._video_path(uid) is None)
        return records

    def _index_egoclip(self) -> list[dict[str, Any]]:
        rows, errors = read_egoclip(self.egoclip_path)
        records: list[dict[str, Any]] = []
        for line, reason in errors:
            self._fail(records, f"bad-row/egoclip/{line}", f"line {line}: {reason}", self.egoclip_path)
        for row in rows:
            if not self._keep_video(row["video_uid"]):
                continue
            if self.drop_unsure and "#unsure" in row["clip_text"]:
                continue
            records.append({
                KEY: safe_key("egoclip", row["clip_idx"]), "video_uid": row["video_uid"], "start": row["clip_start"],
                "end": row["clip_end"], "text": normalize_tags(row["clip_text"], self.tags), "video_dur": row["video_dur"],
                "info": {k: row[k] for k in ("narration_source", "narration_ind", "narration_time", "tag_verb", "tag_noun")},
            })
        return records

    def _index_narrations(self) -> list[dict[str, Any]]:
        with open_regular_file(self.narration_path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict):
            raise ValueError(f"ego4d: {str(self.narration_path)!r} must be an object keyed by video_uid")
        records: list[dict[str, Any]] = []
        groups: list[tuple[str, str, list[tuple[int, float, dict]], float | None]] = []
        for uid in sorted(data):
            if not self._keep_video(uid):
                continue
            for name in self.passes:
                block = (data[uid] or {}).get(name)
                if not block:
                    continue  # passes may be missing
                items = []
                for i, item in enumerate(block.get("narrations", [])):
                    if not isinstance(item, dict) or not isinstance(item.get("timestamp_sec"), (int, float)) or "narration_text" not in item:
                        self._fail(records, safe_key(uid, name, f"bad-{i}"), f"{uid} {name} narration {i} lacks timestamp_sec/narration_text", self.narration_path)
                        continue
                    items.append((i, float(item["timestamp_sec"]), item))
                items.sort(key=lambda x: (x[1], x[0]))  # narrations are not guaranteed sorted
                groups.append((uid, name, items, mean_gap([t for _, t, _ in items])))
                if self.summaries:
                    for j, summary in enumerate(block.get("summaries", [])):
                        try:
                            start, end, text = float(summary["start_sec"]), float(summary["end_sec"]), str(summary["summary_text"])
                        except (KeyError, TypeError, ValueError):
                            self._fail(records, safe_key(uid, name, f"bad-summary-{j}"), f"{uid} {name} summary {j} is malformed", self.narration_path)
                            continue
                        records.append({KEY: safe_key(uid, name, "summary", str(j)), "video_uid": uid, "start": start, "end": end,
                                        "text": normalize_tags(text, self.tags), "info": {"narration_source": name, "summary_ind": j}})
        betas = [beta for *_, beta in groups if beta]
        if self.alpha is None:
            self.alpha = sum(betas) / len(betas) if betas else 1.0
        for uid, name, items, beta in groups:
            duration = (self.videos.get(uid) or {}).get("duration_sec")
            for i, t, item in items:
                text = str(item["narration_text"])
                if self.drop_unsure and "#unsure" in text:
                    continue
                start, end = egoclip_window(t, beta or self.alpha, self.alpha)
                if isinstance(duration, (int, float)):
                    end = min(end, float(duration))
                if end <= start:
                    continue
                records.append({KEY: safe_key(uid, name, str(i)), "video_uid": uid, "start": start, "end": end,
                                "text": normalize_tags(text, self.tags),
                                "info": {"narration_source": name, "narration_ind": i, "narration_time": t, "beta": beta,
                                         "annotation_uid": item.get("annotation_uid")}})
        return records

    # -- loading ------------------------------------------------------------------------------

    def _video_path(self, uid: str) -> str | None:
        flat = self.video_dir / f"{uid}.mp4"
        if flat.is_file():
            return str(flat)
        chunked = self.video_dir / uid
        return str(chunked) if chunked.is_dir() else None

    def _describe_record(self, record: Mapping[str, Any]) -> str | None:
        return record.get("path") or (self._video_path(record["video_uid"]) if "video_uid" in record else None)

    def _read_chunked(self, folder: str, start: float, end: float, fps: float) -> Any:
        size = self.chunk_seconds
        first, last = int(start // size), int(max(start, end - 1e-9) // size)
        parts = []
        for chunk in range(first, last + 1):
            lo, hi = max(start, chunk * size), min(end, (chunk + 1) * size)
            if hi - lo <= 0:
                continue
            path = os.path.join(folder, f"{chunk}.mp4")
            parts.append(self.read_window(path, lo - chunk * size, hi - chunk * size, fps=fps))
        video = torch.cat([p.video for p in parts]) if parts[0].video is not None else None
        audio = torch.cat([p.audio for p in parts], dim=1) if parts[0].audio is not None else None
        return parts[0]._replace(video=video, audio=audio, has_audio=all(p.has_audio for p in parts),
                                 decoded_frames=sum(p.decoded_frames for p in parts),
                                 video_frames_held=sum(p.video_frames_held for p in parts),
                                 audio_samples_padded=sum(p.audio_samples_padded for p in parts))

    def _duration(self, record: Mapping[str, Any]) -> float | None:
        """The video's duration per ``ego4d.json`` (or the egoclip row's ``video_dur``), for the
        truncation check; ``None`` for ``video_source="clips"`` (durations are the full video's)."""
        if self.video_source == "clips":
            return None
        value = (self.videos.get(record["video_uid"]) or {}).get("duration_sec", record.get("video_dur"))
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None

    def _load_decoded(self, record: Mapping[str, Any]) -> dict[str, Any]:
        if "error" in record:
            raise SampleError(record["error"], path=record.get("path"))
        uid, start, end = record["video_uid"], record["start"], record["end"]
        path = self._video_path(uid)
        if path is None:
            raise SampleError(f"video {uid!r} not found as {str(self.video_dir / (uid + '.mp4'))!r} or a chunk folder")
        fps = self.num_frames / (end - start) if self.num_frames is not None else self.fps
        if os.path.isdir(path):
            clip = self._read_chunked(path, start, end, fps)
        else:
            clip = self.read_window(path, start, end, fps=fps, duration=self._duration(record))
        meta = {"video_uid": uid, "start": start, "end": end, "alpha": self.alpha if self.source == "narrations" else None, **record["info"]}
        return {**self.clip_fields(clip, meta), "text": record["text"]}
