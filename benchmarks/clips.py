"""Audio/video clip benchmarks for the multimodal adapters; figures and ratios side by side.

* ``seek``: decoding a 3.2-s clip (video + audio) from the middle of a long video with
  :func:`loaders.multimodal.clip_io.read_clip` against decoding the same 3.2 s from a 3.2-s file
  (the physical floor: nothing to skip). Target: ratio <= 3. The naive peer -- PyAV decoding
  from the start up to the window, what a reader without seeking does -- is timed once on the
  same file for contrast. The long video is generated once into a temp dir (H.264 ultrafast,
  small frames, a 2-s GOP as in streaming/YouTube encodes; the GOP bounds what any seek must
  decode).
* ``throughput``: clips/s through a ``DataLoader`` for each adapter (``audioset``, ``howto100m``,
  ``ego4d``) with 1 and 2 workers, on small generated corpora in their native layouts; the
  2-worker/1-worker ratio is printed.

Run: ``python benchmarks/clips.py [--minutes 10] [--size 160x120] [--repeats 5] [--clips 48]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

# benchmarks/augment.py would shadow the augment package: drop this folder from sys.path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import loaders  # noqa: E402
import loaders.multimodal  # noqa: E402,F401  (registers the adapters)
from loaders.multimodal.clip_io import read_clip  # noqa: E402


def write_video(path: Path, seconds: float, fps: int, size: tuple[int, int], *, first_frame: int = 0, gop_seconds: float = 2.0,
                rate: int = 16000, audio: bool = True) -> Path:
    """An H.264 (ultrafast) + AAC MP4 of moving noise-free gradients and a tone."""
    import av

    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    base = np.add.outer(np.arange(h), np.arange(w)).astype(np.int64)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(int(gop_seconds * fps)), "crf": "23"}
        astream = container.add_stream("aac", rate=rate) if audio else None
        if astream is not None:
            astream.layout = "mono"
        for i in range(int(seconds * fps)):
            k = first_frame + i
            img = (np.stack([base + k, base * 2 - k, np.full_like(base, k)], axis=-1) % 256).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if astream is not None:
            t0 = first_frame / fps
            n = int(seconds * rate)
            for s in range(0, n, 1024):
                t = t0 + np.arange(s, min(n, s + 1024)) / rate
                chunk = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = rate, s
                container.mux(astream.encode(frame))
            container.mux(astream.encode())
    return path


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _naive_decode(path: Path, start: float, end: float) -> int:
    """What a reader without seeking does: decode every frame from 0 up to ``end``."""
    import av

    kept = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time >= end:
                break
            if frame.time >= start:
                frame.to_ndarray(format="rgb24")
                kept += 1
    return kept


def bench_seek(tmp: Path, minutes: float, size: tuple[int, int], fps: int, repeats: int) -> list[tuple]:
    seconds = minutes * 60
    middle = round(seconds / 2 / 2) * 2 + 0.6  # mid-GOP: the seek must decode up to a GOP of lead-in
    t0 = time.perf_counter()
    long = write_video(tmp / "long.mp4", seconds, fps, size)
    short = write_video(tmp / "short.mp4", 3.2, fps, size, first_frame=int(middle * fps))
    print(f"# generated a {minutes:g}-min {size[0]}x{size[1]}@{fps} video in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    ours = _median_time(lambda: read_clip(long, middle, middle + 3.2, sample_rate=16000), repeats)
    floor = _median_time(lambda: read_clip(short, 0.0, 3.2, sample_rate=16000), repeats)
    naive = _median_time(lambda: _naive_decode(long, middle, middle + 3.2), 1)
    return [
        ("seek: 3.2 s from the middle (ours) vs 3.2-s file", ours, floor, ours / floor, "<= 3"),
        ("no-seek decode from start (peer) vs ours", naive, ours, naive / ours, "(contrast)"),
    ]


def make_corpora(tmp: Path, clips: int) -> dict[str, dict]:
    """Small corpora in each adapter's native layout; returns ``open_dataset`` kwargs per adapter."""
    import soundfile

    audioset = tmp / "audioset"
    (audioset / "metadata").mkdir(parents=True)
    mids = [f"/m/x{i:04d}" for i in range(527)]
    (audioset / "metadata" / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n" + "".join(f'{i},{m},"Class {i}"\n' for i, m in enumerate(mids)))
    rows = ["# Segments csv created Sun Mar  5 10:54:31 2017", "# num_ytids=0", "# YTID, start_seconds, end_seconds, positive_labels"]
    folder = audioset / "audios" / "balanced_train_segments"
    folder.mkdir(parents=True)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(320000) / 32000)).astype(np.float32)
    for i in range(clips):
        ytid = f"bench{i:06d}"
        rows.append(f'{ytid}, 30.000, 40.000, "{mids[i % 527]},{mids[(i * 7) % 527]}"')
        soundfile.write(str(folder / f"Y{ytid}.wav"), tone, 32000, subtype="PCM_16")
    (audioset / "metadata" / "balanced_train_segments.csv").write_text("\n".join(rows) + "\n")

    howto = tmp / "howto100m"
    captions, per_video = {}, 8
    for v in range(max(1, clips // per_video)):
        vid = f"howtoVid{v:03d}"
        write_video(howto / "videos" / f"{vid}.mp4", 2.0 * per_video + 4, 25, (160, 120), first_frame=v * 1000)
        captions[vid] = {"start": [2.0 * k for k in range(per_video)], "end": [2.0 * k + 1.8 for k in range(per_video)],
                         "text": [f"step {k}" for k in range(per_video)]}
    (howto / "caption.json").write_text(json.dumps(captions))

    ego = tmp / "ego4d"
    narr, videos = {}, []
    for v in range(max(1, clips // per_video)):
        uid = f"0000000{v}-aaaa-bbbb-cccc-dddddddddddd"
        write_video(ego / "v2" / "full_scale" / f"{uid}.mp4", 1.5 * per_video + 3, 30, (160, 120), first_frame=v * 1000)
        videos.append({"video_uid": uid, "duration_sec": 1.5 * per_video + 3, "split_fho": "train", "video_metadata": {"fps": 30.0}})
        narr[uid] = {"status": "complete", "narration_pass_1": {"narrations": [
            {"timestamp_sec": 1.0 + 1.5 * k, "timestamp_frame": int(30 + 45 * k), "narration_text": f"#C C does {k}", "annotation_uid": "u"}
            for k in range(per_video)], "summaries": []}}
    (ego / "ego4d.json").write_text(json.dumps({"videos": videos}))
    (ego / "v2" / "annotations").mkdir(parents=True)
    (ego / "v2" / "annotations" / "narration.json").write_text(json.dumps(narr))
    return {
        "audioset": {"root": audioset, "split": "balanced_train", "sample_rate": 16000},
        "howto100m": {"root": howto, "size": 112},
        "ego4d": {"root": ego, "size": 112, "alpha": 0.5},
    }


def _as_list(batch):
    return batch


def bench_throughput(tmp: Path, clips: int) -> list[tuple]:
    from torch.utils.data import DataLoader

    rows = []
    for name, kwargs in make_corpora(tmp, clips).items():
        ds = loaders.open_dataset(name, **kwargs)
        rates = {}
        for workers in (1, 2):
            loader = DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=_as_list)
            start = time.perf_counter()
            count = sum(len(batch) for batch in loader)
            rates[workers] = count / (time.perf_counter() - start)
        rows.append((f"throughput {name} ({len(ds)} clips), clips/s: 2 workers vs 1", rates[2], rates[1], rates[2] / rates[1], "(reported)"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long video (default 10)")
    parser.add_argument("--size", default="160x120", help="WxH of the generated videos")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clips", type=int, default=48, help="clips per adapter corpus for the throughput rows")
    parser.add_argument("--only", choices=("seek", "throughput"))
    args = parser.parse_args(argv)
    w, h = (int(x) for x in args.size.lower().split("x"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="df-av-bench-") as tmp:
        if args.only in (None, "seek"):
            rows += bench_seek(Path(tmp), args.minutes, (w, h), args.fps, args.repeats)
        if args.only in (None, "throughput"):
            rows += bench_throughput(Path(tmp), args.clips)
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}  {'ours/A':>10}  {'ref/B':>10}  {'ratio':>7}  target")
    for label, a, b, ratio, target in rows:
        unit = "" if "throughput" in label else " s"
        print(f"{label:<{width}}  {a:>8.4g}{unit:2}  {b:>8.4g}{unit:2}  {ratio:>7.2f}  {target}")


if __name__ == "__main__":
    main()
