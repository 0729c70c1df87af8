"""The ``vatt`` trainer's data path: clip samples -> fixed-size video, audio and caption-bag tensors.

:class:`ClipTransform` runs per sample in the loader (seeded per sample key by the core, so a
resumed run draws the same crops). It takes the schema's clip fields -- ``video`` uint8
``[T, C, H, W]``, ``audio`` float32 ``[channels, S]``, ``text`` (one caption, a caption bag or
absent) -- as the HowTo100M, AudioSet, Ego4D and ``avshapes`` adapters write them, and returns:

* ``video`` uint8 ``[num_frames, 3, frame_size, frame_size]``: ``num_frames`` consecutive frames
  (a random start in training, the centre in evaluation; a shorter clip repeats its last frame,
  counted in ``video_frames_held``),
  grey expanded to RGB, the shorter side resized to ``frame_size`` (bilinear, antialiased) and a
  square crop (random in training, centred in evaluation), optionally flipped;
* ``audio`` float32 ``[audio_samples]``: the channels averaged, starting at the same point of
  the clip as the frames (``round(start / T * S)``), zero-padded at the end when short (counted
  in ``audio_samples_padded``; both counts are ``0`` when nothing was held or padded, the same
  names the clip adapters use in ``meta``);
* ``text_ids`` int64 ``[bag_size, max_words]`` and ``text_mask`` bool ``[bag_size]``
  (:class:`~pipelines.train.text_tokens.HashTokenizer`), ``query`` the bag position of the
  clip's retrieval caption (HowTo100M: its anchor caption; otherwise the first) and ``caption``
  its text (``""`` for a clip without text);
* the probe target when asked for: ``label`` (int, ``-1`` when absent) or ``labels`` (float32
  multi-hot, NaN = unknown).

The tensors keep their dtypes small (uint8 video) for the trip from the loader workers;
:func:`normalize_video` maps them to ``[-1, 1]`` on the device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from loaders.schema import KEY
from pipelines.train.text_tokens import HashTokenizer

__all__ = ["PROBE_TARGETS", "ClipTransform", "normalize_video"]

#: what the linear probe reads: nothing, a class index or a multi-hot vector
PROBE_TARGETS = ("none", "label", "labels")
#: characters of the retrieval caption carried along (for the evaluation's retrieval.json)
_CAPTION_CHARS = 200


def normalize_video(video: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float in ``[-1, 1]``."""
    return video.float().div(127.5).sub(1.0)


def _resize_square(frames: torch.Tensor, size: int, train: bool) -> torch.Tensor:
    """uint8 ``[T, 3, H, W]`` -> ``[T, 3, size, size]``: shorter side to ``size``, square crop."""
    t, c, h, w = frames.shape
    if (h, w) != (size, size):
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        if (new_h, new_w) != (h, w):
            resized = F.interpolate(frames.float(), size=(new_h, new_w), mode="bilinear", antialias=True,
                                    align_corners=False)
            frames = resized.round().clamp(0, 255).to(torch.uint8)
        h, w = new_h, new_w
        if train:
            top, left = int(torch.randint(h - size + 1, ())), int(torch.randint(w - size + 1, ()))
        else:
            top, left = (h - size) // 2, (w - size) // 2
        frames = frames[:, :, top:top + size, left:left + size]
    return frames.contiguous()


class ClipTransform:
    """A clip sample -> the ``vatt`` trainer's tensors (see the module docstring); picklable.

    Args:
        num_frames, frame_size: frames per clip and their square side.
        audio_samples: waveform samples per clip.
        tokenizer: the caption tokenizer.
        bag_size: captions kept per clip (the first ``bag_size`` of the bag).
        train: random crops (and flips) instead of centred ones.
        hflip: flip the frames horizontally with probability 1/2 in training (off by default:
            a flip turns "moving left" into "moving right").
        sample_rate: when > 0, a sample whose ``meta["sample_rate"]`` differs is an error.
        probe: which probe target to keep (:data:`PROBE_TARGETS`).

    Raises (when called): ``ValueError`` naming the sample key for a missing or malformed field.
    """

    def __init__(self, num_frames: int, frame_size: int, audio_samples: int, tokenizer: HashTokenizer, bag_size: int,
                 *, train: bool, hflip: bool = False, sample_rate: int = 0, probe: str = "none") -> None:
        if probe not in PROBE_TARGETS:
            raise ValueError(f"probe must be one of {list(PROBE_TARGETS)}, got {probe!r}")
        self.num_frames, self.frame_size, self.audio_samples = num_frames, frame_size, audio_samples
        self.tokenizer, self.bag_size = tokenizer, bag_size
        self.train, self.hflip, self.sample_rate, self.probe = train, hflip, sample_rate, probe

    def _frames(self, key: Any, video: Any) -> tuple[torch.Tensor, float]:
        if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.dtype != torch.uint8:
            raise ValueError(f"sample {key!r}: 'video' must be a uint8 tensor [T, C, H, W], got "
                             f"{getattr(video, 'dtype', type(video).__name__)} {tuple(getattr(video, 'shape', ()))}")
        t, c = video.shape[0], video.shape[1]
        if t < 1 or c not in (1, 3, 4):
            raise ValueError(f"sample {key!r}: 'video' must have >= 1 frame and 1, 3 or 4 channels, got {tuple(video.shape)}")
        if t > self.num_frames:
            start = int(torch.randint(t - self.num_frames + 1, ())) if self.train else (t - self.num_frames) // 2
        else:
            start = 0
        index = torch.arange(start, start + self.num_frames).clamp_max(t - 1)
        frames = video.index_select(0, index)
        frames = frames.expand(-1, 3, -1, -1) if c == 1 else frames[:, :3]
        frames = _resize_square(frames, self.frame_size, self.train)
        if self.train and self.hflip and bool(torch.rand(()) < 0.5):
            frames = frames.flip(-1)
        return frames, start / t, max(0, start + self.num_frames - t)

    def _audio(self, key: Any, audio: Any, offset: float, meta: Any) -> tuple[torch.Tensor, int]:
        if not isinstance(audio, torch.Tensor) or audio.ndim != 2 or not audio.is_floating_point():
            raise ValueError(f"sample {key!r}: 'audio' must be a float tensor [channels, samples], got "
                             f"{getattr(audio, 'dtype', type(audio).__name__)} {tuple(getattr(audio, 'shape', ()))}")
        if self.sample_rate:
            rate = meta.get("sample_rate") if isinstance(meta, Mapping) else None
            if rate != self.sample_rate:
                raise ValueError(f"sample {key!r}: audio at {rate!r} Hz (meta 'sample_rate'), the config's sample_rate "
                                 f"is {self.sample_rate}: build the shards at that rate or set sample_rate=0")
        wave = audio.float().mean(0)
        start = min(round(offset * wave.shape[0]), wave.shape[0])
        out = wave[start:start + self.audio_samples]
        padded = self.audio_samples - out.shape[0]
        if padded:
            out = F.pad(out, (0, padded))
        return out.contiguous(), padded

    @staticmethod
    def _query(text: Any, meta: Any) -> int:
        """The bag position of the retrieval caption: HowTo100M's anchor, else the first."""
        if isinstance(text, list) and isinstance(meta, Mapping):
            anchor, span = meta.get("anchor"), meta.get("caption_indices")
            if isinstance(anchor, int) and isinstance(span, list) and span and isinstance(span[0], int):
                position = anchor - span[0]
                if 0 <= position < len(text):
                    return position
        return 0

    def _target(self, key: Any, sample: Mapping[str, Any]) -> dict[str, Any]:
        if self.probe == "label":
            label = sample.get("label", -1)
            if isinstance(label, torch.Tensor) and label.numel() == 1:
                label = int(label)
            if isinstance(label, bool) or not isinstance(label, int):
                raise ValueError(f"sample {key!r}: 'label' must be an int class index, got {label!r}")
            return {"label": label}
        if self.probe == "labels":
            labels = sample.get("labels")
            if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
                raise ValueError(f"sample {key!r}: 'labels' must be a multi-hot vector [K], got {type(labels).__name__}")
            return {"labels": labels.float()}
        return {}

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        key = sample.get(KEY)
        for field in ("video", "audio"):
            if field not in sample:
                present = sorted(k for k in sample if not k.startswith("__"))
                raise ValueError(f"sample {key!r} has no {field!r} field (it has {present})")
        frames, offset, held = self._frames(key, sample["video"])
        meta = sample.get("meta")
        audio, padded = self._audio(key, sample["audio"], offset, meta)
        text = sample.get("text")
        try:
            ids, mask = self.tokenizer.encode_bag(text, self.bag_size)
        except TypeError as error:
            raise ValueError(f"sample {key!r}: 'text' {error}") from None
        query = self._query(text, meta)
        if query >= self.bag_size or not bool(mask[query]):
            valid = mask.nonzero()
            query = int(valid[0]) if len(valid) else 0
        caption = ""
        if bool(mask[query]):
            caption = (text if isinstance(text, str) else text[query])[:_CAPTION_CHARS]
        return {KEY: key, "video": frames, "audio": audio, "text_ids": ids, "text_mask": mask, "query": query,
                "caption": caption, "video_frames_held": held, "audio_samples_padded": padded,
                **self._target(key, sample)}

    def __repr__(self) -> str:
        return (f"ClipTransform(num_frames={self.num_frames}, frame_size={self.frame_size}, "
                f"audio_samples={self.audio_samples}, {self.tokenizer!r}, bag_size={self.bag_size}, train={self.train})")
