"""The thin base class of the clip adapters (AudioSet, HowTo100M, Ego4D).

A clip adapter's index rows name a media file and a window; :class:`ClipAdapter` holds the
decoding options shared by every family (frame rate, frame size, audio rate and channels, which
streams to read, what a missing audio track means) and turns a :class:`~loaders.clip_io.Clip`
into schema fields. Encoding for shards comes from the base adapter: ``video`` is
re-encoded to H.264 ``mp4`` at the clip's fps and size, ``audio`` to 16-bit ``flac``, ``text``
to ``txt`` (a caption bag to ``text.json``), ``labels`` to ``labels.npy``, ``meta`` to ``json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from loaders.base import Adapter
from loaders.clip_io import MISSING_AUDIO, Clip, output_size, read_clip
from loaders.layout import first_existing

__all__ = ["ClipAdapter", "VIDEO_EXTENSIONS", "find_video"]

#: container extensions probed for a video id, in order.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv")


def find_video(folder: str | os.PathLike, stem: str, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> str | None:
    """The first ``folder/<stem><ext>`` that exists, or ``None``."""
    return first_existing((os.path.join(folder, stem + ext) for ext in extensions), os.path.isfile)


class ClipAdapter(Adapter):
    """Shared options of the clip adapters.

    Args:
        fps: output frame rate (``None``: the source rate).
        size: output frame size: ``None`` (source), an int (short side) or ``(H, W)``.
        sample_rate: output audio rate in Hz (``None``: the source rate).
        channels: ``None`` (source), ``1`` (mono) or ``2``.
        video, audio: which streams a sample carries.
        missing_audio: ``"raise"`` (a video without an audio track is a bad sample) or
            ``"silence"`` (zeros, with ``meta["has_audio"] = False``).
        decode, on_error, transform: see :class:`loaders.base.Adapter`.
    """

    suffixes: ClassVar[Mapping[str, str]] = {"video": "mp4", "audio": "flac", "text": "txt", "labels": "labels.npy", "meta": "json"}

    def __init__(
        self,
        *,
        fps: float | None,
        size: int | tuple[int, int] | None,
        sample_rate: int | None,
        channels: int | None,
        video: bool,
        audio: bool,
        missing_audio: str,
        decode: bool,
        on_error: str,
        transform: Callable[[dict[str, Any]], Any] | None,
    ) -> None:
        super().__init__(decode=decode, on_error=on_error, transform=transform)
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
            raise ValueError(f"fps must be a positive number or None, got {fps!r}")
        output_size(2, 2, size)  # validates size
        if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0):
            raise ValueError(f"sample_rate must be a positive int or None, got {sample_rate!r}")
        if channels not in (None, 1, 2):
            raise ValueError(f"channels must be None, 1 or 2, got {channels!r}")
        if missing_audio not in MISSING_AUDIO:
            raise ValueError(f"missing_audio must be one of {MISSING_AUDIO}, got {missing_audio!r}")
        if not (video or audio):
            raise ValueError("at least one of video=True / audio=True is needed")
        self.fps = None if fps is None else float(fps)
        self.size = tuple(size) if isinstance(size, list) else size
        self.sample_rate = sample_rate
        self.channels = channels
        self.with_video = bool(video)
        self.with_audio = bool(audio)
        self.missing_audio = missing_audio
        self.missing: list[str] = []  # keys whose media was not found when indexing

    def read_window(
        self,
        path: str,
        start: float,
        end: float,
        *,
        fps: float | None = None,
        video: bool | None = None,
        audio: bool | None = None,
        duration: float | None = None,
    ) -> Clip:
        """Decode ``[start, end)`` of ``path`` with this adapter's options (``fps`` overrides);
        ``duration`` is the media's length per the dataset's metadata (truncation check)."""
        return read_clip(
            path,
            start,
            end,
            fps=self.fps if fps is None else fps,
            size=self.size,
            sample_rate=self.sample_rate,
            channels=self.channels,
            video=self.with_video if video is None else video,
            audio=self.with_audio if audio is None else audio,
            missing_audio=self.missing_audio,
            duration=duration,
        )

    @staticmethod
    def clip_fields(clip: Clip, meta: dict[str, Any]) -> dict[str, Any]:
        """Schema fields for a decoded clip; rates, ``has_audio`` and the padding counts
        (``video_frames_held``, ``audio_samples_padded``; ``0`` when none) go into ``meta``."""
        out: dict[str, Any] = {}
        if clip.video is not None:
            out["video"] = clip.video
            meta["fps"] = clip.fps
        if clip.audio is not None:
            out["audio"] = clip.audio
            meta["sample_rate"] = clip.sample_rate
            meta["has_audio"] = clip.has_audio
        meta["video_frames_held"] = int(clip.video_frames_held)
        meta["audio_samples_padded"] = int(clip.audio_samples_padded)
        out["meta"] = meta
        return out

    def stats(self) -> dict[str, Any]:
        """Base counts plus ``missing_media``: index rows whose media file was not found."""
        return {**super().stats(), "missing_media": len(self.missing)}
