"""Clip windows and clip-text pairing rules (pure functions, no I/O, no hidden randomness).

* :func:`nearest_contiguous` -- MIL-NCE's positive text bag (Miech et al., 2020, "End-to-End
  Learning of Visual Representations from Uncurated Instructional Videos", arXiv 1912.06430;
  ``video_loader._find_nearest_candidates``): starting from one caption, grow a contiguous run of
  captions one at a time, on the side that keeps the run's total time span shorter.
* :func:`expand_window` -- a caption's ``[start, end]`` widened symmetrically to a minimum
  duration (MIL-NCE ``min_time``; HowTo100M ``youtube_dataloader``).
* :func:`egoclip_window` / :func:`mean_gap` -- EgoVLP's EgoClip windows (Lin et al., 2022,
  arXiv 2206.01670): narration at ``t`` gets ``[t - beta/(2 alpha), t + beta/(2 alpha)]`` where
  ``beta`` is the video's mean gap between consecutive narrations and ``alpha`` the mean of
  ``beta`` over the dataset.
* :func:`normalize_tags` -- Ego4D narration tags ``#C`` (camera wearer), ``#O`` (other person),
  ``#unsure``; ``"expand"`` follows Ego4D's CLEP preprocessing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["TAG_MODES", "egoclip_window", "expand_window", "mean_gap", "nearest_contiguous", "normalize_tags"]

TAG_MODES = ("keep", "strip", "expand")
_EXPAND = {"#C": "Camera wearer", "#O": "Other person", "#unsure": "something"}
_TAG_RE = re.compile(r"#(C|O|unsure|Summary)\b")


def nearest_contiguous(starts: Sequence[float], ends: Sequence[float], index: int, count: int) -> tuple[int, int]:
    """``count`` contiguous captions around ``index``, grown greedily from it, as ``[lo, hi)``.

    At each step the run ``[lo, hi)`` grows by the previous caption or the next one, whichever
    gives the smaller ``ends[hi'-1] - starts[lo']``; ties go to the later caption (as MIL-NCE).
    Greedy growth keeps each step's run as short as one step can, not necessarily the whole run
    (a long caption on one side can be taken early). Fewer than ``count`` captions in total
    gives all of them.
    """
    n = len(starts)
    if len(ends) != n:
        raise ValueError(f"starts and ends must have the same length, got {n} and {len(ends)}")
    if not 0 <= index < n:
        raise IndexError(f"caption index {index} out of range for {n} captions")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    lo, hi = index, index + 1
    while hi - lo < min(count, n):
        if lo == 0:
            hi += 1
        elif hi == n:
            lo -= 1
        elif ends[hi - 1] - starts[lo - 1] < ends[hi] - starts[lo]:
            lo -= 1
        else:
            hi += 1
    return lo, hi


def expand_window(start: float, end: float, min_duration: float, duration: float | None = None) -> tuple[float, float]:
    """Widen ``[start, end]`` symmetrically to at least ``min_duration`` seconds.

    The window is shifted (not shrunk) to stay within ``[0, duration]`` when it can; a video
    shorter than ``min_duration`` gives ``[0, duration]``.
    """
    start, end = float(start), float(end)
    if end < start:
        raise ValueError(f"window end {end} is before its start {start}")
    if end - start < min_duration:
        pad = (min_duration - (end - start)) / 2
        start, end = start - pad, end + pad
    if start < 0:
        start, end = 0.0, end - start
    if duration is not None and end > duration:
        start, end = max(0.0, start - (end - duration)), float(duration)
    return start, end


def mean_gap(times: Sequence[float]) -> float | None:
    """Mean gap between consecutive (sorted) timestamps; ``None`` with fewer than two."""
    ordered = sorted(float(t) for t in times)
    if len(ordered) < 2:
        return None
    return (ordered[-1] - ordered[0]) / (len(ordered) - 1)


def egoclip_window(time: float, beta: float, alpha: float) -> tuple[float, float]:
    """EgoClip window ``[t - beta/(2 alpha), t + beta/(2 alpha)]`` (start clamped at 0)."""
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"alpha and beta must be > 0, got alpha={alpha}, beta={beta}")
    half = beta / (2.0 * alpha)
    return max(0.0, time - half), time + half


def normalize_tags(text: str, mode: str = "keep") -> str:
    """Handle Ego4D narration tags.

    Args:
        text: e.g. ``"#C C picks a bag of clothes from the floor"``.
        mode: ``"keep"`` (unchanged), ``"strip"`` (drop ``#C``/``#O``/``#Summary``, ``#unsure`` ->
            "something": ``"C picks a bag ..."``), or ``"expand"`` (Ego4D CLEP: ``#C`` ->
            "Camera wearer", ``#O`` -> "Other person", ``#unsure`` -> "something").
    """
    if mode not in TAG_MODES:
        raise ValueError(f"tags must be one of {TAG_MODES}, got {mode!r}")
    if mode == "keep":
        return text
    if mode == "strip":
        out = _TAG_RE.sub(lambda m: "something" if m.group(1) == "unsure" else "", text)
    else:
        out = _TAG_RE.sub(lambda m: _EXPAND.get(m.group(0), ""), text)
    return " ".join(out.split())
