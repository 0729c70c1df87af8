"""Seeking clip readers for video and audio files (media I/O; the clip adapters read through it).

A *clip* is a time window ``[start, end)`` (seconds on the container's timeline) of one media
file. :func:`read_clip` seeks with PyAV to the key frame before ``start`` (so a window at minute 9
of a long video never decodes minutes 0-8), decodes video frames at the requested rate and size,
and decodes the audio track of the same window, resampled to the requested rate.
:func:`read_audio` does the same for audio files (WAV/FLAC through ``soundfile`` with a
sample-exact seek; any other container through PyAV).

Frame selection follows the usual "sample-and-hold" rule of clip samplers (PyTorchVideo,
MIL-NCE's ffmpeg ``fps`` filter): output frame ``k`` is the source frame on screen at
``start + k / fps``. Windows that run past the end of the media are padded (last frame held,
audio zero-padded) and say so in :attr:`Clip.video_frames_held` and
:attr:`Clip.audio_samples_padded`; a window entirely outside the media is an error.

Truncated media are errors, not padding: when decoding reaches the end of the data before the
duration the file declares (``container.duration``; a WAV ``data`` chunk size or FLAC
``STREAMINFO`` for ``soundfile``) or the duration the dataset's metadata gives (``duration=``),
by more than one packet (at least 50 ms), :class:`~loaders.base.SampleError` names the file and
where decoding stopped. That is the case of a faststart MP4 (index first) cut short: the index
still declares the full duration while the data stops early.

Resampling uses a windowed-sinc (Hann) polyphase filter on ``torch`` tensors (Smith, "Digital
Audio Resampling", https://ccrma.stanford.edu/~jos/resample/), aligned so that output sample 0
is input sample 0: no delay, exact for constant signals, no extra dependency.

Failures (missing file, a FIFO/device/directory instead of a regular file, unreadable or truncated
container, no video stream, missing audio track when one is required) raise
:class:`loaders.base.SampleError` naming the file, so adapters apply their error policy.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np
import torch

from loaders.base import SampleError
from loaders.fileio import NotRegularFileError, check_regular, open_regular_file

__all__ = [
    "AUDIO_FILE_EXTENSIONS",
    "Clip",
    "MISSING_AUDIO",
    "fit_length",
    "output_size",
    "read_audio",
    "read_audio_clip",
    "read_clip",
    "remix_channels",
    "resample",
]

#: extensions read through ``soundfile`` (sample-exact seeking); others go through PyAV.
AUDIO_FILE_EXTENSIONS = (".wav", ".flac", ".ogg")
#: what to do when a video has no audio track: raise, or return silence flagged in ``has_audio``.
MISSING_AUDIO = ("raise", "silence")
_SEEK_MARGIN = 0.25  # seconds of audio decoded before the window (codec warm-up, e.g. AAC overlap)
_MIN_SLACK = 0.05  # seconds: the least shortfall (besides one packet) taken for truncation


class Clip(NamedTuple):
    """A decoded window.

    Attributes:
        video: uint8 ``[T,3,H,W]`` or ``None`` when video was not requested.
        fps: the frame rate of ``video`` (``None`` without video).
        audio: float32 ``[channels, samples]`` or ``None`` when audio was not requested.
        sample_rate: the rate of ``audio`` (``None`` without audio).
        has_audio: ``False`` when the file had no audio track and silence was returned.
        decoded_frames: how many video frames were decoded to produce ``video`` (seek check).
        video_frames_held: how many frames of ``video`` lie past the end of the decoded video
            (the last frame held); ``0`` without video.
        audio_samples_padded: how many samples (per channel, at ``sample_rate``) of ``audio`` are
            zeros added by the reader, not decoded: padding before the start or past the end of
            the track, or the whole clip when a missing track was replaced by silence; ``0``
            without audio.
    """

    video: torch.Tensor | None
    fps: float | None
    audio: torch.Tensor | None
    sample_rate: int | None
    has_audio: bool
    decoded_frames: int
    video_frames_held: int = 0
    audio_samples_padded: int = 0


def _check_window(start: float, end: float) -> tuple[float, float]:
    start, end = float(start), float(end)
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError(f"clip window must satisfy start < end (finite seconds), got [{start}, {end}]")
    return start, end


def output_size(height: int, width: int, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """The ``(H, W)`` frames are scaled to: ``None`` keeps the source, an int is the short side
    (aspect kept, rounded to even numbers so the clip can be re-encoded as H.264), a pair is
    ``(H, W)``."""
    if size is None:
        return height, width
    if isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"size must be > 0, got {size}")
        scale = size / min(height, width)
        return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be None, a positive int (short side) or a (height, width) pair, got {size!r}")


# --- audio helpers ------------------------------------------------------------------------


def resample(audio: torch.Tensor, orig_rate: int, new_rate: int, *, zeros: int = 8, rolloff: float = 0.95) -> torch.Tensor:
    """Resample float ``[channels, samples]`` audio from ``orig_rate`` to ``new_rate`` Hz.

    Band-limited interpolation with a Hann-windowed sinc of ``zeros`` zero crossings, cut off at
    ``rolloff`` times the lower Nyquist frequency. Output length is ``ceil(n * new / orig)``.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be > 0, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate or audio.shape[-1] == 0:
        return audio
    g = math.gcd(int(orig_rate), int(new_rate))
    up, down = int(new_rate) // g, int(orig_rate) // g
    cutoff = min(up, down) * rolloff  # in units of the (up x down) grid
    half = math.ceil(zeros * down / cutoff)  # kernel half-width in input samples
    taps = torch.arange(-half, half + down, dtype=torch.float64) / down  # input offsets (units of down)
    phases = -torch.arange(up, dtype=torch.float64)[:, None] / up  # output phase within one block
    t = (phases + taps[None, :]) * cutoff
    window = torch.cos(t.clamp(-zeros, zeros) * math.pi / zeros / 2) ** 2
    arg = t * math.pi
    kernel = torch.where(arg == 0, torch.ones_like(arg), torch.sin(arg) / torch.where(arg == 0, 1, arg))
    kernel = (kernel * window * cutoff / down).to(torch.float32)
    channels, length = audio.shape
    x = torch.nn.functional.pad(audio.to(torch.float32)[:, None, :], (half, half + down))
    y = torch.nn.functional.conv1d(x, kernel[:, None, :], stride=down)  # [C, up, blocks]
    y = y.transpose(1, 2).reshape(channels, -1)
    return y[:, : math.ceil(length * up / down)].contiguous()


def fit_length(audio: torch.Tensor, length: int, *, offset: int = 0) -> torch.Tensor:
    """Crop ``audio[..., offset:offset+length]`` and zero-pad the end to exactly ``length``."""
    out = audio[..., max(0, offset) : max(0, offset) + length]
    if out.shape[-1] < length:
        out = torch.nn.functional.pad(out, (0, length - out.shape[-1]))
    return out.contiguous()


def remix_channels(audio: torch.Tensor, channels: int | None) -> torch.Tensor:
    """``None`` keeps the channels; ``1`` averages to mono; ``2`` duplicates mono (or keeps stereo)."""
    if channels is None or audio.shape[0] == channels:
        return audio
    if channels == 1:
        return audio.mean(dim=0, keepdim=True)
    if channels == 2 and audio.shape[0] == 1:
        return audio.expand(2, -1).contiguous()
    raise ValueError(f"channels must be None, 1 or 2 (and 2 only from mono or stereo), got {channels} for {audio.shape[0]}-channel audio")


def _planar_float(frame: Any) -> np.ndarray:
    """An ``av.AudioFrame`` as float32 ``[channels, samples]`` (our scaling: int16 / 32768)."""
    array = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        array = array.reshape(-1, channels).T
    kind = array.dtype
    if kind == np.int16:
        return array.astype(np.float32) / 32768.0
    if kind == np.int32:
        return (array.astype(np.float64) / 2147483648.0).astype(np.float32)
    if kind == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    return array.astype(np.float32, copy=False)


def _margin(native: int, target: int | None) -> int:
    """Native samples of context decoded on each side of a window so that resampling sees real
    signal at the window edges (not zero padding). A multiple of ``native / gcd`` so that it maps
    to a whole number of output samples and the cut stays sample-aligned."""
    if not target or target == native:
        return 0
    step = native // math.gcd(native, target)
    return step * math.ceil(0.02 * native / step)


def _finish_audio(
    audio: torch.Tensor, rate: int, margin: int, duration: float, sample_rate: int | None, channels: int | None
) -> tuple[torch.Tensor, int]:
    """Remix, resample, drop the ``margin`` context samples and fix the length to ``duration``."""
    audio = remix_channels(audio, channels)
    target = int(sample_rate or rate)
    audio = resample(audio, rate, target)
    return fit_length(audio, round(duration * target), offset=margin * target // rate), target


def _padded_samples(span: tuple[float, float] | None, start: float, end: float, rate: int) -> int:
    """Samples of a ``[start, end)`` window at ``rate`` that the decoded span ``(first, last)``
    (seconds) does not cover, i.e. that are zero padding (the whole window when ``span`` is ``None``)."""
    n = round((end - start) * rate)
    if span is None:
        return n
    lo = min(max(round((span[0] - start) * rate), 0), n)
    hi = min(max(round((span[1] - start) * rate), 0), n)
    return n - max(0, hi - lo)


def _check_file(path: str | os.PathLike) -> None:
    """``SampleError`` unless ``path`` is an existing regular file (a FIFO or device would block)."""
    try:
        check_regular(path)
    except NotRegularFileError as error:
        raise SampleError(f"not a media file: {error.strerror}", path=path) from None
    except FileNotFoundError:
        raise SampleError("media file not found", path=path) from None
    except OSError as error:
        raise SampleError(f"cannot stat media file: {error.strerror or error}", path=path) from None


# --- PyAV readers --------------------------------------------------------------------------

#: container formats whose duration is declared by an index/header (not estimated from the bit
#: rate), so that data ending before it means the file was cut short.
_INDEXED_FORMATS = frozenset({"mov", "mp4", "m4a", "matroska", "webm"})


def _open(path: str | os.PathLike) -> Any:
    import av

    _check_file(path)
    try:
        return av.open(os.fspath(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as error:
        raise SampleError(f"cannot open media: {error}", path=path) from None


class _Reach:
    """How far demuxing got: ``end``, the latest packet end (s) of any stream (``None`` before a
    packet was read); ``packet``, the longest packet (s); ``eof``, the last scan ran out of data."""

    __slots__ = ("end", "eof", "packet")

    def __init__(self) -> None:
        self.end: float | None = None
        self.packet = 0.0
        self.eof = False

    def see(self, packet: Any) -> None:
        if packet.pts is not None and packet.time_base is not None:
            length = float((packet.duration or 0) * packet.time_base)
            end = float(packet.pts * packet.time_base) + length
            self.end = end if self.end is None else max(self.end, end)
            self.packet = max(self.packet, length)


def _frames(container: Any, stream: Any, reach: _Reach) -> Any:
    """Decode ``stream`` from the current position. Every stream is demuxed (as
    ``container.decode(stream)`` does) so that ``reach`` records how far the data goes."""
    reach.eof = False
    for packet in container.demux():
        reach.see(packet)
        if packet.stream.index == stream.index:
            yield from packet.decode()
    reach.eof = True


def _declared_end(container: Any, duration: float | None) -> tuple[float, str] | None:
    """``(seconds, who declares it)``: the later of the container's declared end (indexed formats
    only) and the metadata ``duration``; ``None`` when neither is known."""
    import av

    ends = []
    if container.duration and _INDEXED_FORMATS & set(str(container.format.name).split(",")):
        ends.append((((container.start_time or 0) + container.duration) / av.time_base, "container"))
    if duration is not None and math.isfinite(float(duration)) and duration > 0:
        ends.append((float(duration), "dataset metadata"))
    return max(ends, key=lambda e: e[0]) if ends else None  # a tie names the container


def _check_complete(container: Any, reach: _Reach, declared: tuple[float, str] | None, path: Any) -> None:
    """After a scan that ran out of data: ``SampleError`` if the data stops more than one packet
    (at least ``_MIN_SLACK``) before the declared end, i.e. the file is truncated."""
    if not reach.eof or declared is None:
        return
    if reach.end is None:  # the seek landed past the data (an index pointing beyond a cut): find its end
        container.seek(0)
        for packet in container.demux():
            reach.see(packet)
    stop = reach.end if reach.end is not None else 0.0
    end, source = declared
    if stop < end - max(reach.packet, _MIN_SLACK) - 1e-3:
        raise SampleError(
            f"truncated media: decoding stopped at {stop:.3f} s, before the end the {source} declares ({end:.3f} s)", path=path
        )


def _scan_frames(container: Any, stream: Any, first: float, last: float, native: float, reach: _Reach, *, bail_if_late: bool) -> tuple[int, Any, list]:
    """Decode from the current position: the frame on screen at ``first`` and those up to ``last``."""
    decoded, held, window = 0, None, []
    for frame in _frames(container, stream, reach):
        decoded += 1
        t = frame.time if frame.time is not None else (decoded - 1) / native
        if t <= first + 1e-6:
            held = (t, frame)
            continue
        if held is None and bail_if_late:
            break
        if t > last:
            break
        window.append((t, frame))
    return decoded, held, window


def _decode_video(
    container: Any, path: Any, start: float, end: float, fps: float | None, size: Any, reach: _Reach, declared: Any
) -> tuple[torch.Tensor, float, int, int]:
    """``(frames, fps, decoded frame count, frames held past the end of the video)``."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    native = float(stream.average_rate or stream.guessed_rate or 25.0)
    rate = float(fps or native)
    count = max(1, round((end - start) * rate))
    targets = [start + k / rate for k in range(count)]
    last_target = targets[-1] + 1e-6
    tb = float(stream.time_base)
    decoded, held, window = 0, None, []
    if start > 0:
        container.seek(max(0, int(start / tb)), stream=stream, backward=True)
        decoded, held, window = _scan_frames(container, stream, targets[0], last_target, native, reach, bail_if_late=True)
        _check_complete(container, reach, declared, path)
    if held is None:  # start <= 0, or the seek landed after the window (bad index): from the start
        container.seek(0, stream=stream, backward=True)
        more, held, window = _scan_frames(container, stream, targets[0], last_target, native, reach, bail_if_late=False)
        decoded += more
        _check_complete(container, reach, declared, path)
    candidates = ([held] if held is not None else []) + window
    if not window and held is not None and held[0] + 1.0 / native < start - 1e-6:
        candidates = []  # only a frame that ended before the window: the window is past the end
    if not candidates:
        raise SampleError(f"no video frame in the window [{start:.3f}, {end:.3f}) s (past the end of the video?)", path=path)
    # past the end of the decoded video (only known when the data ran out): the last frame is held
    video_end = candidates[-1][0] + 1.0 / native if reach.eof else math.inf
    height, width = output_size(stream.codec_context.height, stream.codec_context.width, size)
    converted: dict[int, np.ndarray] = {}
    out, j, held_frames = [], 0, 0
    for target in targets:
        while j + 1 < len(candidates) and candidates[j + 1][0] <= target + 1e-6:
            j += 1
        if j not in converted:
            converted[j] = candidates[j][1].to_ndarray(format="rgb24", width=width, height=height)
        out.append(converted[j])
        held_frames += target >= video_end - tb / 2 - 1e-6  # timestamps are rounded to the time base
    video = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()
    return video, rate, decoded, held_frames


def _decode_audio_window(
    container: Any, path: Any, start: float, end: float, reach: _Reach, declared: Any
) -> tuple[torch.Tensor, int, tuple[float, float] | None]:
    """``(audio [channels, round((end - start) * rate)], rate, decoded span (s) or None)``."""
    stream = container.streams.audio[0]
    rate = int(stream.rate or stream.codec_context.sample_rate)
    tb = float(stream.time_base)
    container.seek(max(0, int((start - _SEEK_MARGIN) / tb)), stream=stream, backward=True)
    chunks: list[np.ndarray] = []
    first_time = None
    for frame in _frames(container, stream, reach):
        t = frame.time if frame.time is not None else 0.0
        if t + frame.samples / rate <= start:
            continue
        if t >= end:
            break
        if first_time is None:
            first_time = t
        chunks.append(_planar_float(frame))
    _check_complete(container, reach, declared, path)
    n = round((end - start) * rate)
    if first_time is None:
        return torch.zeros(max(1, stream.codec_context.channels or 1), n), rate, None
    audio = torch.from_numpy(np.concatenate(chunks, axis=1))
    span = (first_time, first_time + audio.shape[1] / rate)
    offset = round((start - first_time) * rate)
    if offset < 0:  # the track starts after the window start: pad its beginning
        audio = torch.nn.functional.pad(audio, (-offset, 0))
        offset = 0
    return fit_length(audio, n, offset=offset), rate, span


def read_clip(
    path: str | os.PathLike,
    start: float,
    end: float,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    video: bool = True,
    audio: bool = True,
    missing_audio: str = "raise",
    duration: float | None = None,
) -> Clip:
    """Decode the window ``[start, end)`` of a video (and/or its audio track) with seeking.

    Args:
        path: the media file (mp4, webm, mkv, ...).
        start, end: the window in seconds on the file's timeline.
        fps: output frame rate (``None``: the source rate); the clip has
            ``round((end - start) * fps)`` frames.
        size: see :func:`output_size`.
        sample_rate: output audio rate (``None``: the source rate).
        channels: ``None`` keeps the source channels, ``1`` mono, ``2`` stereo.
        video, audio: which streams to decode.
        missing_audio: ``"raise"`` or ``"silence"`` (zeros at ``sample_rate``, 16 kHz if ``None``; ``has_audio=False``)
            when ``audio`` is requested but the file has no audio track.
        duration: the media's duration in seconds according to the dataset's metadata, if known:
            data that stops before it (or before the container's declared duration) is a
            truncated file.

    Raises:
        SampleError: missing/corrupt/truncated file, not a regular file, no video stream, or no
            audio track under ``"raise"``.
        ValueError: bad arguments.
    """
    import av

    start, end = _check_window(start, end)
    if missing_audio not in MISSING_AUDIO:
        raise ValueError(f"missing_audio must be one of {MISSING_AUDIO}, got {missing_audio!r}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be > 0 or None, got {fps}")
    if not (video or audio):
        raise ValueError("read_clip needs video=True or audio=True")
    container = _open(path)
    reach = _Reach()
    declared = None
    try:
        declared = _declared_end(container, duration)
        frames, out_fps, decoded, held = None, None, 0, 0
        if video:
            if not container.streams.video:
                raise SampleError("the file has no video stream", path=path)
            frames, out_fps, decoded, held = _decode_video(container, path, start, end, fps, size, reach, declared)
        samples, rate, has_audio, padded = None, None, True, 0
        if audio:
            if container.streams.audio:
                astream = container.streams.audio[0]
                margin = _margin(int(astream.rate or astream.codec_context.sample_rate), sample_rate)
                pad = margin / int(astream.rate or astream.codec_context.sample_rate)
                samples, native, span = _decode_audio_window(container, path, start - pad, end + pad, reach, declared)
                samples, rate = _finish_audio(samples, native, margin, end - start, sample_rate, channels)
                padded = _padded_samples(span, start, end, rate)
            elif missing_audio == "raise":
                raise SampleError("the file has no audio track (pass missing_audio='silence' to accept that)", path=path)
            else:
                has_audio = False
                rate = int(sample_rate or 16000)
                samples = torch.zeros(channels or 1, round((end - start) * rate))
                padded = samples.shape[1]
        return Clip(frames, out_fps, samples, rate, has_audio, decoded, held, padded)
    except av.FFmpegError as error:
        if reach.end is not None and declared is not None and reach.end < declared[0] - max(reach.packet, _MIN_SLACK) - 1e-3:
            reason = f"truncated media: decoding stopped at {reach.end:.3f} s, before the end the {declared[1]} declares ({declared[0]:.3f} s)"
        else:
            reason = "cannot decode media" + ("" if reach.end is None else f" after {reach.end:.3f} s")
        raise SampleError(f"{reason}: {error}", path=path) from None
    finally:
        container.close()


def _wav_declared_frames(path: str | os.PathLike) -> int | None:
    """Frames a RIFF/WAVE header declares (``data`` chunk size / block align); ``None`` when the
    header gives no usable size (streamed WAVs write 0 or a huge placeholder)."""
    with open_regular_file(path) as handle:  # checked by the caller too; this checks what is read
        head = handle.read(1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 22 <= len(head):
            block = int.from_bytes(head[pos + 20 : pos + 22], "little")
        elif chunk == b"data":
            return size // block if block and 0 < size < 0x7FFFF000 else None
        pos += 8 + size + (size & 1)
    return None


def _readable_frames(path: str | os.PathLike) -> int:
    """How many frames ``soundfile`` reads from the start of ``path`` before it fails."""
    import soundfile

    got, block = 0, 1 << 12
    try:
        with soundfile.SoundFile(os.fspath(path)) as handle:
            while True:
                part = len(handle.read(block, dtype="float32"))
                got += part
                if part < block:
                    break
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass
    return got


def read_audio_clip(
    path: str | os.PathLike,
    start: float | None = None,
    end: float | None = None,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    duration: float | None = None,
) -> Clip:
    """:func:`read_audio` returning a :class:`Clip` (``video=None``) with ``audio_samples_padded``.

    ``duration`` (seconds, from the dataset's metadata) is checked for PyAV containers (see
    :func:`read_clip`); WAV/FLAC are checked against their headers.
    """
    if os.path.splitext(os.fspath(path))[1].lower() not in AUDIO_FILE_EXTENSIONS:
        if start is None and end is None:
            import av

            container = _open(path)
            try:
                if not container.streams.audio:
                    raise SampleError("the file has no audio track", path=path)
                whole = float(container.duration or 0) / av.time_base
            finally:
                container.close()
            start, end = 0.0, whole
        return read_clip(path, start or 0.0, end, sample_rate=sample_rate, channels=channels, video=False, duration=duration)
    import soundfile

    _check_file(path)
    rate, declared = 0, 0
    try:
        with soundfile.SoundFile(os.fspath(path)) as handle:
            rate = int(handle.samplerate)
            declared = handle.frames
            if handle.format in ("WAV", "WAVEX"):
                declared = max(declared, _wav_declared_frames(path) or 0)
            margin = 0 if start is None and end is None else _margin(rate, sample_rate)
            first = (0 if start is None else round(start * rate)) - margin
            total = -1 if end is None else round(end * rate) - first + margin
            lead = max(0, -first)  # a window starting before the file: zeros in front
            position = min(max(first, 0), handle.frames)
            count = -1 if total < 0 else max(0, total - lead)
            handle.seek(position)
            integer = handle.subtype in ("PCM_16", "PCM_S8", "PCM_U8")
            array = handle.read(count, dtype="int16" if integer else "float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        if not rate:
            raise SampleError(f"cannot decode audio: {error}", path=path) from None
        stop = _readable_frames(path)
        what = "truncated media" if stop < declared else "cannot decode audio"
        raise SampleError(
            f"{what}: decoding stopped at {stop / rate:.3f} s, before the end the file header declares ({declared / rate:.3f} s): {error}",
            path=path,
        ) from None
    stop = position + array.shape[0]
    if (count < 0 or array.shape[0] < count) and stop < declared:
        raise SampleError(
            f"truncated media: decoding stopped at {stop / rate:.3f} s, before the end the file header declares ({declared / rate:.3f} s)",
            path=path,
        )
    data = array.astype(np.float32) / 32768.0 if integer else array
    audio = torch.nn.functional.pad(torch.from_numpy(np.ascontiguousarray(data.T)), (lead, 0))
    seconds = (audio.shape[1] - margin) / rate if end is None else end - (start or 0.0)
    audio, out_rate = _finish_audio(audio, rate, margin, seconds, sample_rate, channels)
    padded = 0
    if start is not None or end is not None:
        padded = _padded_samples((position / rate, stop / rate), start or 0.0, (start or 0.0) + seconds, out_rate)
    return Clip(None, None, audio, out_rate, True, 0, 0, padded)


def read_audio(
    path: str | os.PathLike,
    start: float | None = None,
    end: float | None = None,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Read ``[start, end)`` seconds of an audio file (whole file when both are ``None``).

    WAV/FLAC/OGG are read with ``soundfile`` (sample-exact seek, int16 scaled by 1/32768 as in
    :func:`loaders.media.decode_audio`); other containers (mp3, m4a, opus, webm) via PyAV. A file
    whose data stops before the length its header declares (a truncated WAV/FLAC) raises
    :class:`~loaders.base.SampleError`; :func:`read_audio_clip` also reports the padding.

    Returns:
        ``(float32 [channels, samples], sample_rate)``.
    """
    clip = read_audio_clip(path, start, end, sample_rate=sample_rate, channels=channels)
    return clip.audio, int(clip.sample_rate)
