"""Seeking clip reader: exact frames and audio samples of a window, resampling, bad media."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from loaders.base import SampleError
from loaders.clip_io import fit_length, output_size, read_audio, read_clip, remix_channels, resample

HOP = 256  # audio tolerance in samples (16 ms at 16 kHz)


@pytest.mark.parametrize(
    ("start", "end", "fps"),
    [(0.0, 1.0, None), (2.0, 3.2, 10.0), (3.33, 4.0, 5.0), (9.1, 11.3, 7.0), (0.5, 0.6, 25.0)],
)
def test_frames_and_audio_come_from_the_window(media, mm, start, end, fps):
    clip = read_clip(media.long, start, end, fps=fps, sample_rate=16000)
    rate = fps or 25.0
    expected = [math.floor((start + k / rate) * 25 + 1e-6) for k in range(round((end - start) * rate))]
    assert clip.video.dtype == torch.uint8 and clip.video.shape[1:] == (3, 48, 64)
    assert mm.frame_codes(clip.video) == expected
    assert clip.fps == rate
    assert clip.audio.dtype == torch.float32 and clip.audio.shape == (1, round((end - start) * 16000))
    assert abs(mm.audio_lag(clip.audio[0], start, 16000, search=600)) <= HOP


def test_seek_does_not_decode_from_the_start(media, mm):
    clip = read_clip(media.long, 10.0, 10.4, fps=10.0, audio=False)
    assert mm.frame_codes(clip.video) == [250, 252, 255, 257]
    # GOP is 25 frames: at most one GOP before the window plus the window itself.
    assert clip.decoded_frames <= 25 + 11, clip.decoded_frames


def test_resized_and_resampled(media, mm):
    clip = read_clip(media.long, 4.0, 5.0, fps=4.0, size=(24, 32), sample_rate=48000, channels=2)
    assert clip.video.shape == (4, 3, 24, 32)
    assert mm.frame_codes(clip.video) == [100, 106, 112, 118]
    assert clip.audio.shape == (2, 48000) and clip.sample_rate == 48000
    assert torch.equal(clip.audio[0], clip.audio[1])
    assert abs(mm.audio_lag(clip.audio[0], 4.0, 48000, search=1500)) <= 3 * HOP
    short_side = read_clip(media.long, 4.0, 4.2, size=24, audio=False)
    assert short_side.video.shape[-2:] == (24, 32)


def test_window_past_the_end(media, mm):
    clip = read_clip(media.short, 5.5, 7.0, fps=10.0, sample_rate=16000)
    codes = mm.frame_codes(clip.video)
    assert codes[:5] == [137, 140, 142, 145, 147] and set(codes[5:]) == {149}  # last frame held
    assert clip.audio.shape == (1, 24000)
    assert float(clip.audio[0, 9000:].abs().max()) == 0.0  # zero-padded after the 6-s track
    with pytest.raises(SampleError, match="past the end"):
        read_clip(media.short, 8.0, 9.0, fps=10.0)


def test_missing_audio_track_policy(media):
    with pytest.raises(SampleError, match="no audio track") as info:
        read_clip(media.mute, 0.0, 1.0)
    assert "mute.mp4" in str(info.value)
    clip = read_clip(media.mute, 0.0, 1.0, sample_rate=8000, missing_audio="silence")
    assert not clip.has_audio and clip.audio.shape == (1, 8000) and float(clip.audio.abs().max()) == 0.0
    with pytest.raises(ValueError, match="missing_audio"):
        read_clip(media.mute, 0.0, 1.0, missing_audio="zeros")


def test_truncated_and_missing_files(media, tmp_path):
    data = media.long.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(SampleError) as info:
        read_clip(cut, 0.0, 1.0)
    assert "cut.mp4" in str(info.value)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(SampleError, match="garbage.mp4"):
        read_clip(garbage, 0.0, 1.0)
    with pytest.raises(SampleError, match="not found"):
        read_clip(tmp_path / "nope.mp4", 0.0, 1.0)
    with pytest.raises(ValueError, match="start < end"):
        read_clip(media.long, 2.0, 1.0)


@pytest.mark.parametrize(("fmt", "ext", "subtype"), [("WAV", "wav", "PCM_16"), ("FLAC", "flac", "PCM_16"), ("WAV", "wav", "FLOAT")])
def test_read_audio_seeks_sample_exact(tmp_path, mm, fmt, ext, subtype):
    path = mm.write_wav(tmp_path / f"a.{ext}", 3.0, 16000, fmt=fmt, subtype=subtype)
    audio, rate = read_audio(path, 1.25, 2.0)
    assert rate == 16000 and audio.shape == (1, 12000)
    expected = torch.from_numpy(mm.chirp(1.25 + np.arange(12000) / 16000)).float()
    assert float((audio[0] - expected).abs().max()) < (1e-6 if subtype == "FLOAT" else 1 / 32768 + 1e-6)
    whole, _ = read_audio(path)
    assert whole.shape == (1, 48000)


def test_read_audio_from_a_video_container(media, mm):
    audio, rate = read_audio(media.short, 1.0, 2.0)
    assert rate == 16000 and audio.shape == (1, 16000)
    assert abs(mm.audio_lag(audio[0], 1.0, 16000, search=600)) <= HOP


@pytest.mark.parametrize(("orig", "new"), [(16000, 48000), (48000, 16000), (44100, 32000), (22050, 16000)])
def test_resample_matches_the_band_limited_signal(mm, orig, new):
    t_in, t_out = np.arange(2 * orig) / orig, np.arange(2 * new) / new
    x = torch.from_numpy(mm.chirp(t_in)).float()[None]
    y = resample(x, orig, new)
    assert y.shape == (1, 2 * new)
    ref = torch.from_numpy(mm.chirp(t_out)).float()
    assert float((y[0, 100:-100] - ref[100:-100]).abs().max()) < 2e-3  # chirp < 1 kHz, well inside both bands
    assert torch.allclose(resample(torch.ones(1, 4000), 16000, 44100)[:, 50:-50], torch.ones(1, 1), atol=2e-3)
    with pytest.raises(ValueError, match="sample rates"):
        resample(x, 0, 16000)


def test_small_helpers():
    assert fit_length(torch.arange(10.0)[None], 4, offset=3).tolist() == [[3.0, 4.0, 5.0, 6.0]]
    assert fit_length(torch.ones(1, 3), 5).tolist() == [[1.0, 1.0, 1.0, 0.0, 0.0]]
    assert remix_channels(torch.tensor([[1.0, 3.0], [3.0, 5.0]]), 1).tolist() == [[2.0, 4.0]]
    assert output_size(1080, 1920, 256) == (256, 456)
    with pytest.raises(ValueError, match="size"):
        output_size(48, 64, (0, 3))


def test_the_lag_probe_itself_detects_shifts(mm):
    # Guards the probe used above: a clip labelled 1.0 s that really starts 300 samples earlier.
    rate = 16000
    shifted = mm.chirp(1.0 + (np.arange(16000) - 300) / rate)
    assert mm.audio_lag(shifted, 1.0, rate, search=600) == 300
    assert mm.audio_lag(mm.chirp(1.0 + np.arange(16000) / rate), 1.0, rate, search=600) == 0


@pytest.mark.parametrize(("orig", "new"), [(44100, 16000), (16000, 48000), (32000, 32000)])
def test_windowed_resampling_is_exact_up_to_the_edges(tmp_path, mm, orig, new):
    path = mm.write_wav(tmp_path / "b.wav", 3.0, orig, subtype="FLOAT")
    for start, end in [(1.0, 2.0), (0.0, 0.5), (2.7, 3.0)]:
        audio, rate = read_audio(path, start, end, sample_rate=new)
        expected = torch.from_numpy(mm.chirp(start + np.arange(round((end - start) * new)) / new)).float()
        assert rate == new and audio.shape == (1, expected.numel())
        inner = slice(0 if start > 0 else 40, -40 if end >= 3.0 else None)  # true file edges may ring
        assert float((audio[0, inner] - expected[inner]).abs().max()) < 2e-3, (start, end)


def test_minute_nine_of_a_ten_minute_video(tmp_path, mm):
    # 10 minutes at 1 fps with a 2-s GOP (600 frames): reading at minute 9 decodes one GOP of
    # lead-in plus the window, never the 540 frames before it.
    # (Matroska with PCM audio: encoding 10 minutes of AAC would dominate the test's run time.)
    path = mm.write_video(tmp_path / "ten.mkv", seconds=600.0, fps=1, size=(16, 32), rate=8000, gop=2, fmt="matroska", acodec="pcm_s16le")
    clip = read_clip(path, 540.25, 543.25, fps=2.0, sample_rate=8000)
    assert mm.frame_codes(clip.video) == [540, 540, 541, 541, 542, 542]
    assert clip.decoded_frames <= 2 + 5, clip.decoded_frames
    assert abs(mm.audio_lag(clip.audio[0], 540.25, 8000, search=300)) <= 128


def test_the_former_module_path_still_gives_the_same_readers():
    import loaders.clip_io as clip_io
    import loaders.multimodal.clip_io as former

    assert former.__all__ == clip_io.__all__
    assert all(getattr(former, name) is getattr(clip_io, name) for name in clip_io.__all__)
