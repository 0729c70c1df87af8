"""``avshapes``: rendering speed, and a raw-feature sanity check that the modalities share information.

Speed: clips rendered per second on one thread (``decode=True``), against the same clips encoded
for shards (``decode=False``: rendering + H.264 + FLAC + JSON), with their ratio.

Sanity check (reported, never thresholded): hand-made raw features, no learning beyond 1-nearest-
neighbour lookups into the train split:

* video colour: a 12-bin hue histogram of the saturated pixels (the objects; the background is
  grey-ish) -> the main object's colour;
* video motion: the displacement of the saturated pixels' centroid from the first to the last frame
  -> the main object's motion;
* audio: the log frequency of the strongest spectral peak -> the main object's shape (its tone).

Each attribute is predicted for the test clips from their nearest train clip, next to chance (the
probability that a train label drawn at random from the train frequencies equals the test label).
Then text -> clip retrieval as a VATT-style evaluation would run it: each test clip's main-object
caption ("a red star moving left") is the query, the test clips are ranked by how many of
(colour, shape, motion) their predicted attributes match, ties in random order (expected recall);
chance is K/N.

Run: ``python benchmarks/avshapes.py [--train 1000] [--test 200] [--resolution 32] [--frames 16]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

# benchmarks/augment.py would shadow the augment package for scripts run from this folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import loaders  # noqa: E402
from loaders.multimodal.avshapes import COLOURS, MOTIONS  # noqa: E402
from loaders.shapes import SHAPE_CLASSES  # noqa: E402


def video_features(video: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(hue histogram [12], centroid displacement [2] in frame widths)`` of a uint8 ``[T,3,H,W]`` clip."""
    x = video.float() / 255
    value, low = x.amax(dim=1), x.amin(dim=1)
    saturation = (value - low) / value.clamp_min(1e-6)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    hue = torch.atan2(np.sqrt(3) * (g - b), 2 * r - g - b) / (2 * np.pi) % 1.0
    mask = (saturation > 0.5) & (value > 0.35)
    histogram = torch.histc(hue[mask], bins=12, min=0.0, max=1.0).numpy()
    histogram = histogram / max(histogram.sum(), 1.0)
    h, w = mask.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    count = mask.sum(dim=(1, 2)).clamp_min(1)
    cx, cy = (mask * xs).sum(dim=(1, 2)) / count, (mask * ys).sum(dim=(1, 2)) / count
    return histogram, np.array([float(cx[-1] - cx[0]) / w, float(cy[-1] - cy[0]) / h])


def audio_feature(audio: torch.Tensor, sample_rate: int) -> np.ndarray:
    """``[log2 of the strongest frequency]`` of a ``[1, S]`` waveform."""
    y = audio[0].double().numpy()
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    spectrum[0] = 0
    return np.array([np.log2(np.argmax(spectrum) * sample_rate / len(y))])


def features(ds) -> dict[str, np.ndarray]:
    colour, motion, audio, labels = [], [], [], {"colour": [], "shape": [], "motion": []}
    for sample in ds.samples():
        histogram, displacement = video_features(sample["video"])
        colour.append(histogram)
        motion.append(displacement)
        audio.append(audio_feature(sample["audio"], sample["meta"]["sample_rate"]))
        meta = sample["meta"]
        labels["colour"].append(tuple(COLOURS).index(meta["colour"]))
        labels["shape"].append(SHAPE_CLASSES.index(meta["shape"]))
        labels["motion"].append(tuple(MOTIONS).index(meta["motion"]))
    out = {"colour_x": np.stack(colour), "motion_x": np.stack(motion), "shape_x": np.stack(audio)}
    out.update({k: np.array(v) for k, v in labels.items()})
    return out


def nearest(train_x: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    distances = ((test_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1)
    return distances.argmin(1)


def chance(train_y: np.ndarray, test_y: np.ndarray) -> float:
    classes = np.union1d(train_y, test_y)
    return float(sum(np.mean(train_y == c) * np.mean(test_y == c) for c in classes))


def expected_recall(scores: np.ndarray, k: int) -> float:
    """Mean over queries of P(the paired clip is in the top ``k``) with ties in random order;
    ``scores[q, c]`` = score of clip ``c`` for query ``q``, the pair is ``c == q``."""
    total = 0.0
    for q in range(len(scores)):
        own = scores[q, q]
        above = int((scores[q] > own).sum())
        tied = int((scores[q] == own).sum())  # includes the pair itself
        slots = min(max(k - above, 0), tied)
        total += slots / tied
    return total / len(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--speed-clips", type=int, default=200, help="clips for the decode=False (encode) timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = {"resolution": args.resolution, "num_frames": args.frames}

    train = loaders.open_dataset("avshapes", split="train", size=args.train, **options)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(len(train)):
        train.load(i)
    render, render_cpu = time.perf_counter() - start, time.process_time() - cpu
    encoded = loaders.open_dataset("avshapes", split="train", size=args.speed_clips, decode=False, **options)
    start = time.perf_counter()
    for i in range(len(encoded)):
        encoded.load(i)
    encode = (time.perf_counter() - start) / args.speed_clips
    print(f"rendering: {args.train} clips ({args.frames} x {args.resolution}^2, 16 kHz) in {render:.2f} s wall, "
          f"{render_cpu:.2f} s CPU on one thread = {args.train / render:.0f} clips/s; render+encode for shards "
          f"{1 / encode:.0f} clips/s; ratio render / (render+encode) time {render / args.train / encode:.2f}")

    test = loaders.open_dataset("avshapes", split="test", size=args.test, **options)
    tr, te = features(train), features(test)
    predicted = {}
    print(f"\n1-NN from {args.train} train clips to {args.test} test clips (raw features):")
    print(f"{'attribute':<10}{'feature':<34}{'accuracy':>9}{'chance':>9}")
    for name, what in (("colour", "video hue histogram"), ("motion", "video centroid displacement"),
                       ("shape", "audio log peak frequency")):
        predicted[name] = tr[name][nearest(tr[f"{name}_x"], te[f"{name}_x"])]
        print(f"{name:<10}{what:<34}{np.mean(predicted[name] == te[name]):>9.3f}{chance(tr[name], te[name]):>9.3f}")
    together = np.mean((predicted["colour"] == te["colour"]) & (predicted["motion"] == te["motion"]) & (predicted["shape"] == te["shape"]))
    print(f"{'all three':<10}{'(main-object caption exactly)':<34}{together:>9.3f}"
          f"{chance(tr['colour'] * 100 + tr['shape'] * 10 + tr['motion'], te['colour'] * 100 + te['shape'] * 10 + te['motion']):>9.3f}")

    n = args.test
    print(f"\ntext -> clip retrieval among {n} test clips, query = the main object's caption, "
          "clips ranked by matching predicted attributes (expected recall, random tie order):")
    print(f"{'features':<22}{'R@1':>8}{'R@5':>8}{'R@10':>8}   chance R@1/5/10 = {1 / n:.3f}/{5 / n:.3f}/{10 / n:.3f}")
    for label, used in (("video only (c, m)", ("colour", "motion")), ("audio only (s)", ("shape",)),
                        ("video + audio", ("colour", "shape", "motion"))):
        scores = sum((te[a][:, None] == predicted[a][None, :]).astype(int) for a in used)
        print(f"{label:<22}{expected_recall(scores, 1):>8.3f}{expected_recall(scores, 5):>8.3f}{expected_recall(scores, 10):>8.3f}")


if __name__ == "__main__":
    main()
