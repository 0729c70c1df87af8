"""Truncated media are errors, not padding; legitimate end-of-media padding is counted in ``meta``.

The truncated files are real encoder output cut with a byte slice: a faststart MP4 (index first,
written by PyAV with libx264 + AAC) still declares its full duration while its data stops early,
and a WAV/FLAC header still declares the full length.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading

import pytest
import torch

from loaders.base import SampleError
from loaders.multimodal import AudioSetDataset, Ego4DDataset, HowTo100MDataset
from loaders.clip_io import read_audio, read_audio_clip, read_clip

SECONDS, FPS, RATE = 6.0, 25, 16000
CUT = 0.6  # fraction of the bytes kept


def cut_at_packet(src, dst, fraction=CUT) -> float:
    """Write ``src[:pos]`` where ``pos`` is the first packet boundary at or after ``fraction`` of
    the bytes (no partial packet: the demuxer just meets the end of the file). Returns the time
    (s) where the kept data ends."""
    import av

    data = src.read_bytes()
    with av.open(str(src)) as container:
        packets = [(p.pos, p.size, float((p.pts + (p.duration or 0)) * p.time_base)) for p in container.demux() if p.pos is not None and p.pos >= 0]
    pos = min(p for p, _, _ in packets if p >= fraction * len(data))
    dst.write_bytes(data[:pos])
    return max(end for p, size, end in packets if p + size <= pos)


@pytest.fixture(scope="module")
def faststart(tmp_path_factory, mm):
    import av

    base = tmp_path_factory.mktemp("truncated")
    full = mm.write_video(base / "full.mp4", seconds=SECONDS, fps=FPS, rate=RATE, options={"movflags": "faststart"})
    assert full.read_bytes()[4:8] == b"ftyp" and b"moov" in full.read_bytes()[:64]  # index before the data
    cut = base / "cut.mp4"
    stop = cut_at_packet(full, cut)
    raw = base / "raw.mp4"  # a plain byte slice: the last packet is partial
    raw.write_bytes(full.read_bytes()[: int(CUT * full.stat().st_size)])
    for path in (cut, raw):
        with av.open(str(path)) as container:  # the container still declares the full duration
            assert container.duration / av.time_base == pytest.approx(SECONDS, abs=0.05)
    assert 2.5 < stop < 4.5, stop
    return type("Faststart", (), {"full": full, "cut": cut, "raw": raw, "stop": stop, "base": base})


# --- read_clip -----------------------------------------------------------------------------


def test_window_before_the_cut_is_intact(faststart, mm):
    for path in (faststart.cut, faststart.raw):
        clip = read_clip(path, 0.5, 1.5, fps=10.0, sample_rate=RATE)
        reference = read_clip(faststart.full, 0.5, 1.5, fps=10.0, sample_rate=RATE)
        assert mm.frame_codes(clip.video) == [math.floor((0.5 + k / 10) * FPS + 1e-6) for k in range(10)]
        assert torch.equal(clip.video, reference.video) and torch.equal(clip.audio, reference.audio)
        assert (clip.video_frames_held, clip.audio_samples_padded) == (0, 0)


@pytest.mark.parametrize("which", ["cut", "raw"])
@pytest.mark.parametrize("streams", [{}, {"audio": False}, {"video": False}])
@pytest.mark.parametrize("window", [(3.0, 4.0), (4.5, 5.5)])
def test_window_across_or_after_the_cut_raises(faststart, which, streams, window):
    path = getattr(faststart, which)
    with pytest.raises(SampleError) as info:
        read_clip(path, *window, fps=10.0, sample_rate=RATE, **streams)
    message = str(info.value)
    assert path.name in message and info.value.path == str(path)
    assert "truncated" in message and "decoding stopped at" in message and "6.000 s" in message
    stopped = float(message.split("decoding stopped at ")[1].split(" s")[0])
    assert abs(stopped - faststart.stop) < 0.2, (stopped, faststart.stop)


def test_past_the_end_of_a_complete_file_is_padding_counted(faststart, mm):
    clip = read_clip(faststart.full, 5.5, 6.5, fps=10.0, sample_rate=RATE)
    codes = mm.frame_codes(clip.video)
    assert codes[:5] == [137, 140, 142, 145, 147] and set(codes[5:]) == {149}
    assert clip.video_frames_held == 5  # outputs at 6.0 .. 6.4 s, past the last frame's end (6.0 s)
    padded = clip.audio_samples_padded
    assert RATE // 2 - 512 <= padded <= RATE // 2, padded  # 0.5 s less the AAC frame's tail
    assert float(clip.audio[0, -padded:].abs().max()) == 0.0 and float(clip.audio[0, : -padded - 64].abs().max()) > 0.1
    # the whole complete file, window by window, is never taken for a truncated one
    for start in range(int(SECONDS)):
        clip = read_clip(faststart.full, start, start + 1.0, fps=10.0, sample_rate=RATE)
        assert (clip.video_frames_held, clip.audio_samples_padded) == (0, 0), start
    audio_only = read_clip(faststart.full, 5.5, 7.0, sample_rate=RATE, video=False)
    assert audio_only.video_frames_held == 0 and audio_only.audio_samples_padded >= RATE - 512


def test_matroska_past_the_end_is_not_truncation(tmp_path, mm):
    # Matroska declares no per-stream duration; the container's (the longer AAC track) is used.
    path = mm.write_video(tmp_path / "v.mkv", seconds=5.0, fps=30, rate=22050, fmt="matroska")
    clip = read_clip(path, 4.5, 5.5, fps=10.0, sample_rate=RATE)
    assert clip.video_frames_held == 5 and clip.audio_samples_padded > 0
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: int(CUT * path.stat().st_size)])
    with pytest.raises(SampleError, match="truncated media: decoding stopped at"):
        read_clip(cut, 4.5, 5.5, fps=10.0, sample_rate=RATE)


def test_metadata_duration_is_checked(faststart):
    # a complete 6-s file that the dataset says lasts 8 s: the data stops early
    with pytest.raises(SampleError, match=r"decoding stopped at 6\.0\d+ s, before the end the dataset metadata declares \(8\.000 s\)"):
        read_clip(faststart.full, 5.5, 6.5, fps=10.0, sample_rate=RATE, duration=8.0)
    assert read_clip(faststart.full, 5.5, 6.5, fps=10.0, sample_rate=RATE, duration=6.0).video_frames_held == 5
    assert read_clip(faststart.full, 1.0, 2.0, fps=10.0, sample_rate=RATE, duration=8.0).video_frames_held == 0


def test_missing_audio_track_counts_as_padding(media):
    clip = read_clip(media.mute, 0.0, 1.0, sample_rate=8000, missing_audio="silence")
    assert clip.has_audio is False and clip.audio_samples_padded == 8000 and clip.video_frames_held == 0


# --- WAV / FLAC ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "ext"), [("WAV", "wav"), ("FLAC", "flac")])
def test_truncated_sound_file_raises(tmp_path, mm, fmt, ext):
    full = mm.write_wav(tmp_path / f"full.{ext}", 10.0, RATE, fmt=fmt)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(full.read_bytes()[: int(CUT * full.stat().st_size)])
    for window in [(None, None), (5.0, 7.0), (9.0, 10.0)]:
        with pytest.raises(SampleError) as info:
            read_audio(cut, *window)
        message = str(info.value)
        assert cut.name in message and "truncated media: decoding stopped at" in message and "10.000 s" in message, message
        stopped = float(message.split("decoding stopped at ")[1].split(" s")[0])
        assert 5.0 < stopped < 6.5, message
    audio, rate = read_audio(cut, 1.0, 2.0)  # before the cut: intact
    reference, _ = read_audio(full, 1.0, 2.0)
    assert rate == RATE and torch.equal(audio, reference)


def test_sound_file_window_padding_is_counted(tmp_path, mm):
    path = mm.write_wav(tmp_path / "a.wav", 2.0, RATE)
    assert read_audio_clip(path).audio_samples_padded == 0
    assert read_audio_clip(path, 0.5, 1.5).audio_samples_padded == 0
    assert read_audio_clip(path, 1.5, 2.5).audio_samples_padded == RATE // 2
    assert read_audio_clip(path, 1.5, 2.5, sample_rate=8000).audio_samples_padded == 4000
    assert read_audio_clip(path, -0.25, 0.75).audio_samples_padded == RATE // 4


# --- adapters ------------------------------------------------------------------------------


def _copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


CAPTIONS = {"start": [0.5, 3.0, 5.5], "end": [1.5, 4.0, 6.5], "text": ["before the cut", "across the cut", "past the end"]}


@pytest.fixture(scope="module")
def howto_trunc(faststart):
    root = faststart.base / "howto"
    _copy(faststart.cut, root / "videos" / "cutVideo0001.mp4")
    _copy(faststart.full, root / "videos" / "fullVideo001.mp4")
    (root / "caption.json").write_text(json.dumps({"cutVideo0001": CAPTIONS, "fullVideo001": CAPTIONS}))
    return root


def _howto(root, on_error):
    return HowTo100MDataset(root, num_frames=10, fps=10.0, min_duration=0.0, bag_size=1, sample_rate=RATE, on_error=on_error)


def test_howto100m_truncated_video(howto_trunc):
    ds = _howto(howto_trunc, "raise")
    assert [ds.key(i) for i in range(len(ds))] == [f"{v}/{c}" for v in ("cutVideo0001", "fullVideo001") for c in range(3)]
    assert {k: ds[0]["meta"][k] for k in ("video_frames_held", "audio_samples_padded")} == {"video_frames_held": 0, "audio_samples_padded": 0}
    for i in (1, 2):
        with pytest.raises(SampleError, match=r"cutVideo0001\.mp4.*truncated media: decoding stopped at"):
            ds[i]
    for i in (3, 4):
        assert (ds[i]["meta"]["video_frames_held"], ds[i]["meta"]["audio_samples_padded"]) == (0, 0)
    last = ds[5]["meta"]
    assert last["video_frames_held"] == 5 and RATE // 2 - 512 <= last["audio_samples_padded"] <= RATE // 2

    skip = _howto(howto_trunc, "skip")
    loaded = list(skip.samples())
    stats = skip.stats()
    assert [s["__key__"] for s in loaded] == ["cutVideo0001/0", "fullVideo001/0", "fullVideo001/1", "fullVideo001/2"]
    assert (stats["attempted"], stats["loaded"], stats["skipped"]) == (6, 4, 2)
    assert [s["key"] for s in stats["skips"]] == ["cutVideo0001/1", "cutVideo0001/2"]
    assert all("cutVideo0001.mp4" in s["reason"] and "truncated media" in s["reason"] for s in stats["skips"])
    assert all(isinstance(s["meta"]["video_frames_held"], int) and isinstance(s["meta"]["audio_samples_padded"], int) for s in loaded)


EGO_CUT, EGO_FULL, EGO_LIAR = "0c0c0c0c-0000-4000-8000-00000000cut1", "0f0f0f0f-0000-4000-8000-0000000full1", "0a0a0a0a-0000-4000-8000-0000000liar1"
EGO_COLUMNS = ["clip_idx", "video_uid", "video_dur", "narration_source", "narration_ind", "narration_time",
               "clip_start", "clip_end", "clip_text", "tag_verb", "tag_noun"]


@pytest.mark.parametrize("durations_from", ["ego4d.json", "egoclip.csv"])
def test_ego4d_truncated_video(faststart, tmp_path, durations_from):
    full_scale = tmp_path / "v2" / "full_scale"
    _copy(faststart.cut, full_scale / f"{EGO_CUT}.mp4")
    _copy(faststart.full, full_scale / f"{EGO_FULL}.mp4")
    _copy(faststart.full, full_scale / f"{EGO_LIAR}.mp4")  # complete 6-s file, but the metadata says 8 s
    declared = {EGO_CUT: 6.0, EGO_FULL: 6.0, EGO_LIAR: 8.0}
    if durations_from == "ego4d.json":
        (tmp_path / "ego4d.json").write_text(json.dumps({"videos": [{"video_uid": u, "duration_sec": d} for u, d in declared.items()]}))
    rows = [(EGO_CUT, 0.5, 1.5), (EGO_CUT, 3.0, 4.0), (EGO_FULL, 2.0, 3.0), (EGO_FULL, 5.5, 6.5), (EGO_LIAR, 5.5, 6.5)]
    with open(tmp_path / "egoclip.csv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(EGO_COLUMNS)
        for i, (uid, start, end) in enumerate(rows):
            dur = declared[uid] if durations_from == "egoclip.csv" else 99.0
            writer.writerow([i, uid, dur, "narration_pass_1", i, (start + end) / 2, start, end, "#C C does a thing", "[1]", "[2]"])
    ds = Ego4DDataset(tmp_path, num_frames=4, sample_rate=RATE)
    assert ds.source == "egoclip"
    first = ds[0]["meta"]
    assert (first["video_frames_held"], first["audio_samples_padded"]) == (0, 0)
    with pytest.raises(SampleError, match=rf"{EGO_CUT}\.mp4.*decoding stopped at 3\.\d+ s, before the end the container declares \(6\.000 s\)"):
        ds[1]
    assert (ds[2]["meta"]["video_frames_held"], ds[2]["meta"]["audio_samples_padded"]) == (0, 0)
    past = ds[3]["meta"]  # 4 frames over [5.5, 6.5): 5.5, 5.75, 6.0, 6.25 -> the last two held
    assert past["video_frames_held"] == 2 and RATE // 2 - 512 <= past["audio_samples_padded"] <= RATE // 2
    with pytest.raises(SampleError, match=rf"{EGO_LIAR}\.mp4.*before the end the dataset metadata declares \(8\.000 s\)"):
        ds[4]

    skip = Ego4DDataset(tmp_path, num_frames=4, sample_rate=RATE, on_error="skip")
    assert [s["__key__"] for s in skip.samples()] == ["egoclip/0", "egoclip/2", "egoclip/3"]
    stats = skip.stats()
    assert (stats["attempted"], stats["loaded"], stats["skipped"]) == (5, 3, 2)
    assert all("decoding stopped at" in s["reason"] for s in stats["skips"])


def _audioset_root(base, mm, files):
    meta = base / "metadata"
    meta.mkdir(parents=True)
    with open(meta / "class_labels_indices.csv", "w", newline="") as handle:
        handle.write("index,mid,display_name\n")
        for i, (mid, name) in enumerate(mm.audioset_classes()):
            handle.write(f'{i},{mid},"{name.replace(chr(34), chr(34) * 2)}"\n')
    lines = "".join(f'{ytid}, 0.000, 10.000, "/m/09x0r"\n' for ytid in files)
    (meta / "eval_segments.csv").write_text("# a\n# b\n# YTID, start_seconds, end_seconds, positive_labels\n" + lines)
    return base


def test_audioset_truncated_audio_files(tmp_path, mm):
    folder = tmp_path / "audio" / "eval"
    full = mm.write_wav(folder / "fullWav0001_0.000.wav", 10.0, RATE)
    mm.write_wav(folder / "shortWav001_0.000.wav", 6.0, RATE)  # a complete but short clip: padded
    for name, fmt in (("cutWav00001_0.000.wav", "WAV"), ("cutFlac0001_0.000.flac", "FLAC")):
        source = mm.write_wav(tmp_path / name, 10.0, RATE, fmt=fmt)
        (folder / name).write_bytes(source.read_bytes()[: int(CUT * source.stat().st_size)])
    root = _audioset_root(tmp_path, mm, ["fullWav0001", "shortWav001", "cutWav00001", "cutFlac0001"])
    ds = AudioSetDataset(root, "eval", sample_rate=RATE)
    assert ds.audio_source == "files" and full.is_file()
    whole = ds[0]
    assert whole["audio"].shape == (1, 10 * RATE)
    assert (whole["meta"]["audio_samples_padded"], whole["meta"]["video_frames_held"]) == (0, 0)
    short = ds[1]
    assert short["meta"]["audio_samples_padded"] == 4 * RATE and float(short["audio"][0, 6 * RATE :].abs().max()) == 0.0
    for i, name in ((2, "cutWav00001_0.000.wav"), (3, "cutFlac0001_0.000.flac")):
        with pytest.raises(SampleError) as info:
            ds[i]
        assert name in str(info.value) and "truncated media: decoding stopped at" in str(info.value), str(info.value)

    skip = AudioSetDataset(root, "eval", sample_rate=RATE, on_error="skip")
    assert [s["__key__"] for s in skip.samples()] == ["fullWav0001_0", "shortWav001_0"]
    stats = skip.stats()
    assert (stats["attempted"], stats["loaded"], stats["skipped"]) == (4, 2, 2)


def test_audioset_truncated_video_track(faststart, tmp_path, mm):
    _copy(faststart.full, tmp_path / "video" / "YfullVid0001.mp4")
    _copy(faststart.cut, tmp_path / "video" / "YcutVid00001.mp4")
    root = _audioset_root(tmp_path, mm, ["fullVid0001", "cutVid00001"])
    ds = AudioSetDataset(root, "eval", audio_source="video", video_dir=tmp_path / "video", sample_rate=RATE, fps=5.0)
    meta = ds[0]["meta"]  # a 10-s segment window over a 6-s video: 4 s held / padded
    assert meta["video_frames_held"] == 20 and 4 * RATE - 512 <= meta["audio_samples_padded"] <= 4 * RATE
    with pytest.raises(SampleError, match=r"YcutVid00001\.mp4.*truncated media"):
        ds[1]


# --- FIFOs -----------------------------------------------------------------------------------


def _no_block(call):
    """Run ``call`` in a thread; if it blocks (opening a FIFO waits for a writer), unblock it and fail."""
    result = {}

    def target():
        try:
            result["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10.0)
    return thread.is_alive(), result


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["clip.mp4", "clip.wav", "clip.m4a"])
def test_fifo_is_refused_without_blocking(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    reader = (lambda: read_audio(fifo)) if name != "clip.mp4" else (lambda: read_clip(fifo, 0.0, 1.0))
    blocked, result = _no_block(reader)
    if blocked:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # let the reader through, then fail
        os.close(fd)
        pytest.fail(f"reading {name} blocked on a FIFO")
    error = result.get("error")
    assert isinstance(error, SampleError), result
    assert error.path == str(fifo) and "FIFO" in str(error) and "not a regular file" in str(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_video_in_a_dataset_is_a_recorded_skip(tmp_path):
    (tmp_path / "videos").mkdir()
    os.mkfifo(tmp_path / "videos" / "fifoVideo001.mp4")
    (tmp_path / "caption.json").write_text(json.dumps({"fifoVideo001": {"start": [0.0], "end": [1.0], "text": ["x"]}}))
    ds = _howto(tmp_path, "skip")
    blocked, result = _no_block(lambda: list(ds.samples()))
    if blocked:
        os.close(os.open(tmp_path / "videos" / "fifoVideo001.mp4", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("a FIFO video blocked the dataset")
    assert result["value"] == [] and ds.stats()["skipped"] == 1
    assert "FIFO" in ds.stats()["skips"][0]["reason"] and "fifoVideo001.mp4" in ds.stats()["skips"][0]["reason"]
