"""``avshapes``: a procedural audio-visual-text demo set of moving shapes (no downloads).

Each sample is a short clip in the format of the clip adapters (HowTo100M, Miech et al., 2019,
arXiv 1906.03327): ``video`` uint8 ``[T,3,H,W]`` at ``meta["fps"]``, mono ``audio`` float32
``[1, samples]`` at ``meta["sample_rate"]``, and ``text``, a bag of candidate captions
(``list[str]``, like HowTo100M's bag for MIL-NCE, Miech et al., 2020, arXiv 1912.06430), plus
``label``, the class index of the main object's shape, for linear probes. It exists so that
VATT-style training (Akbari et al., 2021, arXiv 2104.11178) runs and is tested end to end on
data whose modalities share known information.

A clip shows one or two objects of the ``shapes`` demo (:data:`loaders.shapes.SHAPE_CLASSES`,
drawn with the same signed-distance shapes, dark outline and textured background) in one of
:data:`COLOURS`, each following one of :data:`MOTIONS` (a straight path across part of the frame,
or standing still). Every shape class sounds its own tone (:data:`PITCHES`; a pure sine or a
major triad on that root) under an attack/release envelope with slow tremolo, plus a little
white noise; the main object is larger and louder than the second. The first caption
(``meta["caption"]``) names colour, shape and motion of each object ("a red star moving left and
a blue circle standing still"); the others are paraphrases and, with two objects, a sentence
about the second object alone. Colour and motion are seen only in the video, shape is seen and
heard: captions that differ only in motion tell clips apart only for a model that sees motion.

Sample ``i`` of a split depends only on ``(seed, split, i)`` (splits are independent streams),
so random access and any worker count give the same clip. Audio is rounded to the 16-bit grid,
so the ``flac`` member of a shard decodes back to exactly the same float32 samples; the video
is re-encoded as H.264 ``mp4`` (lossy).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from loaders.base import Adapter
from loaders.registry import register_dataset
from loaders.schema import KEY
from loaders.shapes import SHAPE_CLASSES, _hsv_to_rgb, _polygon, _signed_distance, _smooth_noise

__all__ = [
    "AVShapesDataset",
    "COLOURS",
    "MOTIONS",
    "PITCHES",
    "TONES",
    "caption_of",
    "render_avshapes_clip",
]

#: colour name -> HSV hue centre (bodies: saturation >= 0.75, hue jitter +-0.02).
COLOURS: Mapping[str, float] = {"red": 0.0, "orange": 0.075, "yellow": 0.15, "green": 0.33, "blue": 0.62, "purple": 0.78}
#: motion name -> unit direction in image coordinates (x right, y down).
MOTIONS: Mapping[str, tuple[float, float]] = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0), "still": (0.0, 0.0)}
#: shape class -> root frequency in Hz: semitones 0, 3, 6, 9, 14, 17 above A3 = 220 Hz. No two
#: roots are 4, 7, 12, 16, 19 or 24 semitones apart, so no root is another class's triad partial
#: or octave, and neighbours are at least a minor third apart.
PITCHES: Mapping[str, float] = {
    kind: round(220.0 * 2 ** (semitones / 12), 2) for kind, semitones in zip(SHAPE_CLASSES, (0, 3, 6, 9, 14, 17))
}
#: tone -> partials as (frequency ratio to the root, relative amplitude): a pure sine, or a
#: just-intonation major triad (root, major third 5:4, fifth 3:2) with the root loudest.
TONES: Mapping[str, tuple[tuple[float, float], ...]] = {"sine": ((1.0, 1.0),), "chord": ((1.0, 1.0), (1.25, 0.5), (1.5, 0.4))}

_SPLITS = {"train": 0, "val": 1, "test": 2}
_DEFAULT_SIZE = {"train": 1000, "val": 200, "test": 200}
_STREAM = 0xA5  # separates the random streams from those of ``shapes`` with the same seed
_PHRASES = {"left": "moving left", "right": "moving right", "up": "moving up", "down": "moving down", "still": "standing still"}
_VERBS = {"left": "moves to the left", "right": "moves to the right", "up": "moves up", "down": "moves down", "still": "stays still"}
_INT16 = 32768.0
#: shape -> circumradius in units of an object's ``size`` (every shape has the unit circle's area).
_RADIUS = {kind: 1.0 if kind == "circle" else float(np.hypot(*_polygon(kind).T).max()) for kind in SHAPE_CLASSES}


def caption_of(objects: Sequence[Mapping[str, Any]]) -> str:
    """The canonical caption of a clip's objects (``shape``, ``colour``, ``motion`` keys), main object first.

    >>> caption_of([{"shape": "star", "colour": "red", "motion": "left"}])
    'a red star moving left'
    """
    return " and ".join(f"{_a(o['colour'])} {o['colour']} {o['shape']} {_PHRASES[o['motion']]}" for o in objects)


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _paraphrases(obj: Mapping[str, Any]) -> list[str]:
    c, s, m = obj["colour"], obj["shape"], obj["motion"]
    return [
        f"the {c} {s} {_VERBS[m]}",
        f"{_a(s)} {s} coloured {c}, {_PHRASES[m]}",
        f"there is {_a(c)} {c} {s} {_PHRASES[m]}",
        f"{c} {s} {_PHRASES[m]}",
        f"{_a(c)} {c} {s} that {_VERBS[m]}",
    ]


def caption_bag(rng: np.random.Generator, objects: Sequence[Mapping[str, Any]], bag_size: int) -> list[str]:
    """``bag_size`` candidate captions: the canonical one first, then (two objects) the second
    object's own sentence, then paraphrases about the main object in a drawn order."""
    bag = [caption_of(objects)]
    if len(objects) > 1:
        bag.append(caption_of(objects[1:]))
    pool = _paraphrases(objects[0])
    order = rng.permutation(len(pool))
    bag.extend(pool[i] for i in order)
    return bag[:bag_size]


def _path(rng: np.random.Generator, radius: float, motion: str) -> tuple[list[float], list[float]]:
    """Start and end centre of a straight path along ``motion`` that keeps an object of
    circumradius ``radius`` inside the frame; it covers 0.3-0.42 frame widths (0 when still)."""
    dx, dy = MOTIONS[motion]
    margin = radius + 0.01
    travel = min(rng.uniform(0.3, 0.42), 1 - 2 * margin)
    start = []
    for d in (dx, dy):
        low, high = (margin, 1 - margin - travel) if d > 0 else (margin + travel, 1 - margin) if d < 0 else (margin, 1 - margin)
        start.append(float(rng.uniform(low, high)))
    return start, [start[0] + dx * travel, start[1] + dy * travel]


def _closest_approach(a: Mapping[str, Any], start: Sequence[float], end: Sequence[float]) -> float:
    """Smallest distance between the centres of object ``a`` and a path ``start -> end`` (same timing)."""
    p = np.linspace(0.0, 1.0, 17)[:, None]
    first = np.asarray(a["start"]) + (np.asarray(a["end"]) - np.asarray(a["start"])) * p
    second = np.asarray(start) + (np.asarray(end) - np.asarray(start)) * p
    return float(np.hypot(*(first - second).T).min())


def _draw_objects(rng: np.random.Generator, max_objects: int) -> list[dict[str, Any]]:
    """The main object (larger, louder) and possibly a second one, of distinct shapes and colours.

    The second object's path is redrawn (up to 64 times) while the two circumcircles would
    overlap at some time, so the objects rarely hide each other.
    """
    count = int(rng.integers(1, max_objects + 1))
    kinds = rng.choice(len(SHAPE_CLASSES), size=count, replace=False)
    colours = rng.choice(len(COLOURS), size=count, replace=False)
    motions = rng.integers(len(MOTIONS), size=count)
    objects: list[dict[str, Any]] = []
    for rank, (kind, colour, motion) in enumerate(zip(kinds, colours, motions)):
        size = float(rng.uniform(0.14, 0.18) if rank == 0 else rng.uniform(0.09, 0.12))
        name, colour_name, shape = tuple(MOTIONS)[int(motion)], tuple(COLOURS)[int(colour)], SHAPE_CLASSES[int(kind)]
        start, end = _path(rng, _RADIUS[shape] * size, name)
        for _ in range(64 if objects else 0):
            if _closest_approach(objects[0], start, end) >= _RADIUS[objects[0]["shape"]] * objects[0]["size"] + _RADIUS[shape] * size:
                break
            start, end = _path(rng, _RADIUS[shape] * size, name)
        objects.append({
            "shape": shape, "colour": colour_name, "motion": name, "size": size,
            "angle": float(rng.uniform(0, 2 * np.pi)), "start": start, "end": end,
            "hsv": ((COLOURS[colour_name] + rng.uniform(-0.02, 0.02)) % 1.0, rng.uniform(0.75, 1.0), rng.uniform(0.7, 0.92)),
            "amplitude": float(rng.uniform(0.3, 0.4) if rank == 0 else rng.uniform(0.12, 0.18)),
        })
    return objects


def _render_video(rng: np.random.Generator, objects: Sequence[Mapping[str, Any]], resolution: int, num_frames: int) -> torch.Tensor:
    """uint8 ``[T,3,R,R]``: static textured background, objects drawn with anti-aliased edges
    (coverage from the signed distance) along their paths, per-frame pixel noise."""
    r, t = resolution, num_frames
    coords = (np.arange(r) + 0.5) / r
    gx, gy = np.meshgrid(coords, coords)
    tone = _hsv_to_rgb(rng.random(), rng.uniform(0.04, 0.18), rng.uniform(0.42, 0.52))
    texture = np.zeros((r, r))
    for _ in range(3):
        fx, fy, phase = rng.uniform(-12, 12), rng.uniform(-12, 12), rng.uniform(0, 2 * np.pi)
        texture += np.sin(2 * np.pi * (fx * gx + fy * gy) / 2 + phase)
    texture = texture / 3 * 0.035 + _smooth_noise(rng, gx, gy, cells=4) * 0.02
    background = tone[None, None, :] + texture[..., None]
    rgb = np.broadcast_to(background, (t, r, r, 3)).copy()
    outline = max(1.0, r / 32) / r
    progress = np.linspace(0.0, 1.0, t)[:, None, None]
    for obj in reversed(objects):  # the main object is drawn last, on top
        (x0, y0), (x1, y1), size = obj["start"], obj["end"], obj["size"]
        cx, cy = x0 + (x1 - x0) * progress, y0 + (y1 - y0) * progress
        cos, sin = math.cos(obj["angle"]), math.sin(obj["angle"])
        ux, uy = ((gx - cx) * cos + (gy - cy) * sin) / size, (-(gx - cx) * sin + (gy - cy) * cos) / size
        distance = _signed_distance(obj["shape"], ux, uy) * size * r  # in pixels
        cover = np.clip(0.5 - distance, 0.0, 1.0)[..., None]
        body = np.clip(0.5 - (distance + outline * r), 0.0, 1.0)[..., None]
        dark = np.array([0.06, 0.06, 0.07]) * rng.uniform(0.6, 1.4)
        rgb = rgb * (1 - cover) + dark * cover
        rgb = rgb * (1 - body) + _hsv_to_rgb(*obj["hsv"]) * body
    light_angle, gain = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.1)
    lighting = 1 + gain * ((gx - 0.5) * math.cos(light_angle) + (gy - 0.5) * math.sin(light_angle)) * 2
    rgb = rgb * lighting[None, :, :, None] + rng.normal(0, 0.02, size=rgb.shape)
    frames = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))


def _render_audio(rng: np.random.Generator, objects: Sequence[Mapping[str, Any]], samples: int, sample_rate: int, tone: str) -> torch.Tensor:
    """float32 ``[1, samples]`` on the 16-bit grid: each object's tone under its envelope, plus noise."""
    time = np.arange(samples) / sample_rate
    duration = samples / sample_rate
    wave = np.zeros(samples)
    for obj in objects:
        root = PITCHES[obj["shape"]] * (1 + rng.uniform(-0.005, 0.005))
        onset, offset = rng.uniform(0, 0.1) * duration, (1 - rng.uniform(0, 0.1)) * duration
        attack, release = rng.uniform(0.01, 0.06), rng.uniform(0.03, 0.12)
        envelope = np.clip((time - onset) / attack, 0, 1) * np.clip((offset - time) / release, 0, 1)
        envelope *= 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(2, 6) * time + rng.uniform(0, 2 * np.pi))
        partials = TONES[tone]
        norm = sum(weight for _, weight in partials)
        for ratio, weight in partials:
            wave += obj["amplitude"] * weight / norm * envelope * np.sin(2 * np.pi * root * ratio * time + rng.uniform(0, 2 * np.pi))
        obj["pitch_hz"] = round(float(root), 3)
    wave += rng.normal(0, 0.01, size=samples)
    pcm = np.clip(np.round(wave * _INT16), -_INT16, _INT16 - 1) / _INT16
    return torch.from_numpy(pcm.astype(np.float32)[None])


def render_avshapes_clip(
    rng: np.random.Generator,
    *,
    resolution: int = 32,
    num_frames: int = 16,
    fps: float = 8.0,
    sample_rate: int = 16000,
    max_objects: int = 2,
    tone: str = "chord",
    bag_size: int = 4,
) -> dict[str, Any]:
    """Render one clip with the random numbers drawn from ``rng`` (arguments unchecked: see
    :class:`AVShapesDataset`).

    Returns:
        ``{"video": uint8 [T,3,R,R], "audio": float32 [1, S], "text": list[str], "label": int,
        "meta": {...}}`` with ``S = round(num_frames / fps * sample_rate)``.
    """
    objects = _draw_objects(rng, max_objects)
    video = _render_video(rng, objects, resolution, num_frames)
    audio = _render_audio(rng, objects, int(round(num_frames / fps * sample_rate)), sample_rate, tone)
    text = caption_bag(rng, objects, bag_size)
    described = [
        {"shape": o["shape"], "colour": o["colour"], "motion": o["motion"], "size": round(o["size"], 4),
         "angle": round(o["angle"], 4), "start": [round(v, 4) for v in o["start"]], "end": [round(v, 4) for v in o["end"]],
         "pitch_hz": o["pitch_hz"], "amplitude": round(o["amplitude"], 4)}
        for o in objects
    ]
    main = objects[0]
    meta = {"caption": text[0], "shape": main["shape"], "colour": main["colour"], "motion": main["motion"],
            "objects": described, "fps": float(fps), "sample_rate": int(sample_rate), "tone": tone}
    return {"video": video, "audio": audio, "text": text, "label": SHAPE_CLASSES.index(main["shape"]), "meta": meta}


def _check_int(argument: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{argument} must be an int in [{low}, {high}], got {value!r}")
    return int(value)


class _Rows(Sequence):
    """The index: row ``i`` is ``{"__key__": "<split>_<i:06d>", "index": i}``, made on access."""

    def __init__(self, split: str, size: int) -> None:
        self.split, self.size = split, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.size))]
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} out of range for {self.size} clips")
        return {KEY: f"{self.split}_{i:06d}", "index": i}


@register_dataset("avshapes")
class AVShapesDataset(Adapter):
    """The audio-visual-text demo: clips of moving shapes with a tone per shape and captions.

    Args:
        root: must be ``None`` (clips are rendered in memory; store them with
            ``pipelines.build_shards("avshapes", out, ...)``).
        split: ``"train"``, ``"val"`` or ``"test"`` (independent random streams).
        size: number of clips (default 1000 / 200 / 200).
        resolution: frame height and width in pixels, even, in [16, 256].
        num_frames: frames per clip, in [2, 256].
        fps: frame rate in (0, 120]; a clip lasts ``num_frames / fps`` seconds.
        sample_rate: audio rate in Hz, in [4000, 96000] (every partial stays below Nyquist).
        seed: the dataset seed (>= 0).
        max_objects: 1 or 2 objects per clip (the count is drawn uniformly up to it).
        tone: ``"sine"`` or ``"chord"`` (see :data:`TONES`).
        bag_size: captions in ``text``, in [1, 6] (the first is the canonical caption).
        decode, on_error, transform: see :class:`loaders.base.Adapter`.
    """

    name = "avshapes"
    classes = SHAPE_CLASSES
    suffixes: ClassVar[Mapping[str, str]] = {"video": "mp4", "audio": "flac", "text": "txt", "label": "cls", "meta": "json"}

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        *,
        size: int | None = None,
        resolution: int = 32,
        num_frames: int = 16,
        fps: float = 8.0,
        sample_rate: int = 16000,
        seed: int = 0,
        max_objects: int = 2,
        tone: str = "chord",
        bag_size: int = 4,
        decode: bool = True,
        on_error: str = "raise",
        transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        super().__init__(decode=decode, on_error=on_error, transform=transform)
        if root is not None:
            raise ValueError(f"root must be None for avshapes (clips are rendered in memory; build shards to store them), got {root!r}")
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        self.size = _check_int("size", _DEFAULT_SIZE[split] if size is None else size, 1, 1 << 31)
        self.resolution = _check_int("resolution", resolution, 16, 256)
        if self.resolution % 2:
            raise ValueError(f"resolution must be even (H.264 stores 4:2:0 colour), got {resolution!r}")
        self.num_frames = _check_int("num_frames", num_frames, 2, 256)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 120 or not math.isfinite(fps):
            raise ValueError(f"fps must be a number in (0, 120], got {fps!r}")
        self.fps = float(fps)
        self.sample_rate = _check_int("sample_rate", sample_rate, 4000, 96000)
        self.seed = _check_int("seed", seed, 0, (1 << 63) - 1)
        self.max_objects = _check_int("max_objects", max_objects, 1, 2)
        if tone not in TONES:
            raise ValueError(f"tone must be one of {tuple(TONES)}, got {tone!r}")
        self.tone = tone
        self.bag_size = _check_int("bag_size", bag_size, 1, 6)
        self.split = split

    @property
    def config(self) -> dict[str, Any]:
        """The rendering options (everything a clip depends on besides its index)."""
        return {"split": self.split, "size": self.size, "resolution": self.resolution, "num_frames": self.num_frames,
                "fps": self.fps, "sample_rate": self.sample_rate, "seed": self.seed, "max_objects": self.max_objects,
                "tone": self.tone, "bag_size": self.bag_size}

    def render(self, index: int) -> dict[str, Any]:
        """Render clip ``index`` (deterministic in ``(seed, split, index)`` and the options)."""
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], int(index), _STREAM])
        return render_avshapes_clip(rng, resolution=self.resolution, num_frames=self.num_frames, fps=self.fps,
                                    sample_rate=self.sample_rate, max_objects=self.max_objects, tone=self.tone,
                                    bag_size=self.bag_size)

    def _build_index(self) -> Sequence[dict[str, Any]]:
        return _Rows(self.split, self.size)

    def _check_index(self, records: Sequence[dict[str, Any]]) -> None:
        pass  # keys are valid and unique by construction

    def _load_decoded(self, record: Mapping[str, Any]) -> dict[str, Any]:
        sample = self.render(record["index"])
        sample["meta"].update(seed=self.seed, split=self.split, index=record["index"])
        return sample
