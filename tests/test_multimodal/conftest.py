"""Fixture builders for the multimodal adapter tests: real media in the datasets' native layouts.

Videos are H.264 + AAC MP4s written with PyAV. Frame ``i`` is two flat grey halves coding ``i``
(left: ``8 * (i % 32) + 4``, right: ``8 * (i // 32) + 4``), so a decoded frame names its source
index; the audio is a linear chirp ``f(t) = F0 + 2 K t`` whose phase pins every sample to its time.
"""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

F0, K = 200.0, 60.0  # chirp: phase = 2 pi (F0 t + K t^2)


def chirp(t: np.ndarray) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * (F0 * t + K * t * t))


def code_frame(i: int, h: int, w: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:, : w // 2] = (i % 32) * 8 + 4
    img[:, w // 2 :] = (i // 32) * 8 + 4
    return img


def frame_codes(video) -> list[int]:
    """Source frame indices of a decoded uint8 ``[T,3,H,W]`` clip."""
    h, w = video.shape[-2:]
    out = []
    for frame in video.float():
        lo = float(frame[:, h // 4 : 3 * h // 4, w // 8 : 3 * w // 8].mean())
        hi = float(frame[:, h // 4 : 3 * h // 4, 5 * w // 8 : 7 * w // 8].mean())
        out.append(round((hi - 4) / 8) * 32 + round((lo - 4) / 8))
    return out


def audio_lag(audio, start: float, rate: int, search: int = 2000) -> int:
    """Samples by which ``audio`` (mono, starting at ``start`` s) lags the reference chirp
    (the argmax of the normalised cross-correlation over ``[-search, search]``)."""
    y = np.asarray(audio, dtype=np.float64).reshape(-1)
    a = min(400, len(y) // 4)
    seg = y[a : len(y) - a]
    # ref[j] = chirp at sample (a - search + j) of the clip; lag L aligns seg[i] with ref[i + search - L]
    ref = chirp(start + (a - search + np.arange(len(seg) + 2 * search)) / rate)
    n = 1 << int(len(ref) + len(seg)).bit_length()
    scores = np.fft.irfft(np.fft.rfft(ref, n) * np.conj(np.fft.rfft(seg, n)), n)[: 2 * search + 1]  # sum_i seg[i] ref[i + m]
    energy = np.sqrt(np.convolve(ref * ref, np.ones(len(seg)), mode="valid"))
    m = int(np.argmax(scores / (energy * np.linalg.norm(seg) + 1e-12)))
    return search - m


def write_video(path, seconds=6.0, fps=25, size=(48, 64), rate=16000, audio=True, gop=25, fmt=None, acodec="aac", options=None) -> Path:
    """``options``: muxer options, e.g. ``{"movflags": "faststart"}`` (MP4 index before the data)."""
    import av

    h, w = size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10", "g": str(gop), "preset": "ultrafast", "threads": "1", "bf": "0"}
        astream = None
        if audio:
            astream = container.add_stream(acodec, rate=rate)
            astream.layout = "mono"
            afmt = "s16" if acodec == "pcm_s16le" else "fltp"
        for i in range(int(round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(code_frame(i, h, w), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if astream is not None:
            x = chirp(np.arange(int(seconds * rate)) / rate).astype(np.float32)[None]
            for k in range(0, x.shape[1], 1024):
                chunk = x[:, k : k + 1024] if afmt == "fltp" else np.round(x[:, k : k + 1024] * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=afmt, layout="mono")
                frame.sample_rate, frame.pts = rate, k
                container.mux(astream.encode(frame))
            container.mux(astream.encode())
    return path


def write_wav(path, seconds, rate, fmt="WAV", subtype="PCM_16", start=0.0) -> Path:
    """A chirp starting at time ``start`` (so a flat file's samples are tied to segment time)."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = chirp(start + np.arange(int(seconds * rate)) / rate)
    soundfile.write(str(path), x, rate, format=fmt, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def mm():
    """Helpers shared by the test modules (conftest functions are not importable under importlib)."""
    return SimpleNamespace(chirp=chirp, frame_codes=frame_codes, audio_lag=audio_lag, write_video=write_video, write_wav=write_wav,
                           audioset_classes=audioset_classes)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Reusable media files: a 12-s video with GOP 1 s, a 6-s one, one without audio."""
    base = tmp_path_factory.mktemp("media")
    return SimpleNamespace(
        long=write_video(base / "long.mp4", seconds=12.0, fps=25, gop=25),
        short=write_video(base / "short.mp4", seconds=6.0, fps=25, gop=25),
        mute=write_video(base / "mute.mp4", seconds=4.0, fps=25, audio=False),
        base=base,
    )


# --- AudioSet ----------------------------------------------------------------------------

AUDIOSET_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)
REAL_CLASSES = {0: ("/m/09x0r", "Speech"), 1: ("/m/05zppz", "Male speech, man speaking"), 7: ("/t/dd00088", "Gush"),
                137: ("/m/012xff", "Buzzer, \"alarm\""), 526: ("/m/07hvw1", "Field recording")}


def audioset_classes() -> list[tuple[str, str]]:
    return [REAL_CLASSES.get(i, (f"/m/x{i:04d}", f"Class {i}, synthetic")) for i in range(527)]


@pytest.fixture(scope="session")
def audioset_root(tmp_path_factory):
    """PANNs layout: metadata/ CSVs, audios/ WAV folders, hdf5s/ packs, plus flat FLAC files."""
    import h5py

    root = tmp_path_factory.mktemp("audioset")
    meta = root / "metadata"
    meta.mkdir()
    with open(meta / "class_labels_indices.csv", "w", newline="") as handle:
        handle.write("index,mid,display_name\n")
        for i, (mid, name) in enumerate(audioset_classes()):
            handle.write(f'{i},{mid},"{name.replace(chr(34), chr(34) * 2)}"\n')
    (meta / "balanced_train_segments.csv").write_text(
        AUDIOSET_HEADER
        + '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
        + '--ZhevVpy1s, 50.000, 60.000, "/m/012xff"\n'
        + 'Yb0RFKhbpFJ, 0.000, 10.000, "/m/07hvw1,/m/05zppz,/m/09x0r"\n'
        + 'AbsentVid01, 10.000, 20.000, "/m/09x0r"\n'
    )
    (meta / "eval_segments.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:25 2017\n"
        "# num_ytids=20371, num_segs=20371, num_unique_labels=527, num_positive_labels=51804\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--4gqARaEJE, 0.000, 10.000, "/m/09x0r,/m/05zppz"\n'
        + '-0SdAVK79lg, 30.000, 40.000, "/m/012xff"\n'
    )
    ontology = [
        {"id": "/m/0dgw9r", "name": "Human sounds", "description": "", "citation_uri": "", "positive_examples": [],
         "child_ids": ["/m/09l8g"], "restrictions": ["abstract"]},
        {"id": "/m/09l8g", "name": "Human voice", "description": "", "citation_uri": "", "positive_examples": [],
         "child_ids": ["/m/09x0r"], "restrictions": []},
        {"id": "/m/09x0r", "name": "Speech", "description": "", "citation_uri": "",
         "positive_examples": ["youtu.be/8uI9H5jGRV8?start=30&end=40"], "child_ids": ["/m/05zppz"], "restrictions": []},
        {"id": "/m/05zppz", "name": "Male speech, man speaking", "description": "", "citation_uri": "",
         "positive_examples": [], "child_ids": [], "restrictions": []},
        {"id": "/t/dd00088", "name": "Gush", "description": "", "citation_uri": "", "positive_examples": [],
         "child_ids": [], "restrictions": ["blacklist"]},
    ]
    (meta / "ontology.json").write_text(json.dumps(ontology, indent=1))
    folder = root / "audios" / "balanced_train_segments"
    write_wav(folder / "Y--PJHxphWEs.wav", 2.0, 32000)
    write_wav(folder / "Y--ZhevVpy1s.wav", 1.5, 44100)
    write_wav(folder / "YYb0RFKhbpFJ.wav", 2.0, 16000)
    write_wav(root / "audio" / "eval" / "--4gqARaEJE_0.000.flac", 2.0, 16000, fmt="FLAC")
    write_wav(root / "audio" / "eval" / "-0SdAVK79lg_30.000.flac", 2.0, 16000, fmt="FLAC", start=0.5)
    # PANNs waveform pack: S20 names, int16 waveforms (2 s at 32 kHz here), bool targets, an empty row.
    h5dir = root / "hdf5s" / "waveforms"
    h5dir.mkdir(parents=True)
    n, length = 3, 64000
    wave = np.zeros((n, length), np.int16)
    wave[0] = np.round(np.clip(chirp(np.arange(length) / 32000), -1, 1) * 32767).astype(np.int16)
    wave[2, :32000] = 16384
    target = np.zeros((n, 527), bool)
    target[0, [0, 1]] = True
    target[2, 137] = True
    with h5py.File(h5dir / "eval.h5", "w") as handle:
        handle.create_dataset("audio_name", data=np.array([b"Y--4gqARaEJE.wav", b"", b"Y-0SdAVK79lg.wav"], dtype="S20"))
        handle.create_dataset("waveform", data=wave, dtype=np.int16)
        handle.create_dataset("target", data=target, dtype=bool)
        handle.attrs.create("sample_rate", data=32000, dtype=np.int32)
    return root


# --- HowTo100M ---------------------------------------------------------------------------

HOWTO_CAPTIONS = {
    "nVbIUDjzWY4": {"start": [0.0, 1.0, 2.2, 2.9, 4.0, 5.5], "end": [1.0, 2.2, 2.9, 4.0, 5.5, 6.0],
                    "text": ["hi guys", "today show change oil", "motorcycle", "drain plug", "new filter", 42]},
    "CTPAZ2euJ2Q": {"start": [0.5, 3.0], "end": [2.5, 4.5], "text": ["clean chain", "lube chain"]},
    "gkjnR3-ZVts": {"start": [], "end": [], "text": []},
}


@pytest.fixture(scope="session")
def howto_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("howto100m")
    (root / "HowTo100M_v1.csv").write_text(
        "video_id,category_1,category_2,rank,task_id\n"
        "nVbIUDjzWY4,Cars & Other Vehicles,Motorcycles,27,52907\n"
        "CTPAZ2euJ2Q,Cars & Other Vehicles,,35,109057\n"
        "gkjnR3-ZVts,Food and Entertaining,Drinks,6,25938\n"
    )
    (root / "task_ids.csv").write_text("52907\tChange Motorcycle Oil\n109057\tClean a Motorcycle Chain\n25938\tMake Lemonade\n")
    (root / "caption.json").write_text(json.dumps(HOWTO_CAPTIONS))
    write_video(root / "videos" / "nVbIUDjzWY4.mp4", seconds=6.0, fps=25, rate=16000)
    write_video(root / "videos" / "CTPAZ2euJ2Q.mkv", seconds=5.0, fps=30, rate=22050, fmt="matroska")
    return root


# --- Ego4D -------------------------------------------------------------------------------

EGO_UID = "001e3e4e-2743-47fc-8564-d5efd11f9e90"
EGO_UID2 = "8ea8bd4d-8778-4a0e-81aa-3f34044ce7ca"


@pytest.fixture(scope="session")
def ego_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ego4d")
    videos = [
        {"video_uid": EGO_UID, "duration_sec": 8.0, "split_em": "train", "split_av": None, "split_fho": "train",
         "is_stereo": False, "redacted_intervals": [], "display_resolution_height": 48,
         "video_metadata": {"fps": 25.0, "num_frames": 200, "video_start_sec": 0.0, "video_duration_sec": 8.0}},
        {"video_uid": EGO_UID2, "duration_sec": 4.0, "split_em": None, "split_av": None, "split_fho": "test",
         "is_stereo": False, "redacted_intervals": [], "display_resolution_height": 48,
         "video_metadata": {"fps": 25.0, "num_frames": 100, "video_start_sec": 0.0, "video_duration_sec": 4.0}},
    ]
    (root / "ego4d.json").write_text(json.dumps({"date": "2023-01-01", "videos": videos}))
    narr = {
        EGO_UID: {
            "status": "complete",
            "narration_pass_1": {
                "narrations": [
                    {"timestamp_sec": 5.91, "timestamp_frame": 177, "narration_text": "#C C drops the bag on the bed", "annotation_uid": "a1"},
                    {"timestamp_sec": 3.3445, "timestamp_frame": 100, "narration_text": "#C C picks a bag of clothes from the floor", "annotation_uid": "a1"},
                    {"timestamp_sec": 7.0, "timestamp_frame": 210, "narration_text": "#O man X hands #unsure to C", "annotation_uid": "a1"},
                ],
                "summaries": [{"start_sec": 0.0, "end_sec": 7.5, "start_frame": 0, "end_frame": 225,
                               "summary_text": "#Summary C folded clothes in the bedroom", "annotation_uid": "s1"}],
            },
            "narration_pass_2": {"narrations": [
                {"timestamp_sec": 2.0, "timestamp_frame": 60, "narration_text": "#C C opens the wardrobe", "annotation_uid": "a2"},
                {"timestamp_sec": 4.0, "timestamp_frame": 120, "narration_text": "#C C folds a shirt", "annotation_uid": "a2"},
            ], "summaries": []},
        },
        EGO_UID2: {"status": "redacted", "narration_pass_1": {"narrations": [
            {"timestamp_sec": 1.0, "timestamp_frame": 30, "narration_text": "#C C walks", "annotation_uid": "b1"},
            {"timestamp_sec": 3.0, "timestamp_frame": 90, "narration_text": "#C C sits", "annotation_uid": "b1"},
        ], "summaries": []}},
    }
    annotations = root / "v2" / "annotations"
    annotations.mkdir(parents=True)
    (annotations / "narration.json").write_text(json.dumps(narr))
    full = root / "v2" / "full_scale"
    write_video(full / f"{EGO_UID}.mp4", seconds=8.0, fps=25, rate=16000)
    write_video(full / f"{EGO_UID2}.mp4", seconds=4.0, fps=25, audio=False)
    with open(full / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_uid", "path", "duration_sec"])
        writer.writerow([EGO_UID, f"s3://ego4d/full_scale/{EGO_UID}.mp4", 8.0])
        writer.writerow([EGO_UID2, f"s3://ego4d/full_scale/{EGO_UID2}.mp4", 4.0])
    return root


@pytest.fixture(scope="session")
def egoclip_rows():
    return [
        ["0", EGO_UID, "8.0", "narration_pass_1", "0", "3.3445", "2.967651", "3.721266",
         "#C C picks a bag of clothes from the floor", "[93]", "[192, 115, 12]"],
        ["1", EGO_UID, "8.0", "narration_pass_1", "1", "5.91", "5.5", "6.3", "#C C drops the bag on the bed", "[12]", "[4]"],
    ]
