"""Clip windows and text pairing rules: MIL-NCE bags, min-duration windows, EgoClip, tags."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loaders.multimodal.pairing import egoclip_window, expand_window, mean_gap, nearest_contiguous, normalize_tags


def test_nearest_contiguous_known_cases():
    starts, ends = [0.0, 1.0, 2.2, 2.9, 4.0, 5.5], [1.0, 2.2, 2.9, 4.0, 5.5, 6.0]
    assert nearest_contiguous(starts, ends, 2, 1) == (2, 3)
    # from caption 2: right (2.2..4.0 = 1.8) beats left (1.0..2.9 = 1.9); then left (1.0..4.0 = 3.0) beats right (2.2..5.5)
    assert nearest_contiguous(starts, ends, 2, 2) == (2, 4)
    assert nearest_contiguous(starts, ends, 2, 3) == (1, 4)
    assert nearest_contiguous(starts, ends, 0, 3) == (0, 3)  # at the left edge, grow right
    assert nearest_contiguous(starts, ends, 5, 3) == (3, 6)  # at the right edge, grow left
    assert nearest_contiguous(starts, ends, 1, 10) == (0, 6)  # fewer captions than asked
    with pytest.raises(IndexError):
        nearest_contiguous(starts, ends, 6, 1)
    with pytest.raises(ValueError, match="count"):
        nearest_contiguous(starts, ends, 0, 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0.1, 3)), min_size=1, max_size=9), st.data())
def test_nearest_contiguous_grows_greedily_around_the_anchor(caps, data):
    starts = sorted(s for s, _ in caps)
    ends = [s + d for s, (_, d) in zip(starts, caps)]
    index = data.draw(st.integers(0, len(starts) - 1))
    count = data.draw(st.integers(1, len(starts) + 2))
    lo, hi = nearest_contiguous(starts, ends, index, count)
    assert lo <= index < hi and hi - lo == min(count, len(starts))
    # greedy growth (MIL-NCE's): each run holds the previous one, one caption shorter
    if count > 1 and len(starts) >= count:
        lo1, hi1 = nearest_contiguous(starts, ends, index, count - 1)
        assert lo <= lo1 and hi1 <= hi and (hi - lo) - (hi1 - lo1) == 1
    # with two captions there is one choice to make, so greedy is optimal there
    pairs = [(a, a + 2) for a in (index - 1, index) if 0 <= a and a + 2 <= len(starts)]
    if pairs:
        lo2, hi2 = nearest_contiguous(starts, ends, index, 2)
        assert ends[hi2 - 1] - starts[lo2] <= min(ends[b - 1] - starts[a] for a, b in pairs) + 1e-9


def test_greedy_is_not_always_the_shortest_run():
    """The counterexample hypothesis found: greedy takes the long caption on the right first."""
    starts, ends = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 2.0, 3.0]
    assert nearest_contiguous(starts, ends, 4, 3) == (3, 6)  # span 3, where (2, 5) spans 2


def test_expand_window():
    assert expand_window(2.0, 3.0, 5.0) == (0.0, 5.0)  # would start at -0.0: shifted right
    assert expand_window(10.0, 11.0, 5.0) == (8.0, 13.0)
    assert expand_window(10.0, 20.0, 5.0) == (10.0, 20.0)
    assert expand_window(10.0, 11.0, 5.0, duration=12.0) == (7.0, 12.0)
    assert expand_window(1.0, 2.0, 5.0, duration=3.0) == (0.0, 3.0)
    with pytest.raises(ValueError):
        expand_window(3.0, 2.0, 1.0)


def test_egoclip_window_matches_the_readme_row():
    # egoclip.csv README row: narration 3.3445 s -> clip [2.967651, 3.721266] (half widths 0.37685
    # and 0.37677: the published row is symmetric to within 1e-4 s).
    start, end = egoclip_window(3.3445, beta=0.753615 * 4.9, alpha=4.9)
    assert start == pytest.approx(2.967651, abs=1e-4) and end == pytest.approx(3.721266, abs=1e-4)
    assert egoclip_window(0.1, 4.0, 2.0) == (0.0, 1.1)
    assert mean_gap([5.91, 3.3445, 7.0]) == pytest.approx((7.0 - 3.3445) / 2)
    assert mean_gap([1.0]) is None
    with pytest.raises(ValueError):
        egoclip_window(1.0, 0.0, 1.0)


def test_tags():
    text = "#C C picks a bag and gives #unsure to #O man X"
    assert normalize_tags(text, "keep") == text
    assert normalize_tags(text, "strip") == "C picks a bag and gives something to man X"
    assert normalize_tags(text, "expand") == "Camera wearer C picks a bag and gives something to Other person man X"
    assert normalize_tags("#Summary C folded clothes", "strip") == "C folded clothes"
    assert normalize_tags("#Cat stays", "strip") == "#Cat stays"  # only whole tags
    with pytest.raises(ValueError, match="tags"):
        normalize_tags(text, "drop")
