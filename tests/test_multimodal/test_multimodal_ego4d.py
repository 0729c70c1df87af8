"""Ego4D adapter: EgoClip windows around narrations, passes, summaries, tags, egoclip.csv, chunks."""

from __future__ import annotations

import math
import shutil

import pytest

import loaders
import loaders.multimodal  # noqa: F401  (registers the adapters until loaders/__init__ imports it)
from loaders.base import SampleError
from loaders.codecs import decode_sample
from loaders.schema import validate_sample

UID = "001e3e4e-2743-47fc-8564-d5efd11f9e90"
UID2 = "8ea8bd4d-8778-4a0e-81aa-3f34044ce7ca"
BETA_1, BETA_2, BETA_3 = (7.0 - 3.3445) / 2, 2.0, 2.0  # mean gaps: UID pass 1, UID pass 2, UID2 pass 1
ALPHA = (BETA_1 + BETA_2 + BETA_3) / 3


def test_narration_windows_follow_the_egoclip_formula(ego_root, mm):
    ds = loaders.open_dataset("ego4d", ego_root, size=(24, 32))
    assert ds.source == "narrations" and ds.alpha == pytest.approx(ALPHA)
    records = {r["__key__"]: r for r in ds.records()}
    assert len(records) == 7
    for key, t, beta in [(f"{UID}/narration_pass_1/1", 3.3445, BETA_1), (f"{UID}/narration_pass_1/0", 5.91, BETA_1),
                         (f"{UID}/narration_pass_2/1", 4.0, BETA_2), (f"{UID2}/narration_pass_1/0", 1.0, BETA_3)]:
        half = beta / (2 * ALPHA)
        assert records[key]["start"] == pytest.approx(t - half) and records[key]["end"] == pytest.approx(t + half)
    keys = list(records)
    assert keys.index(f"{UID}/narration_pass_1/1") < keys.index(f"{UID}/narration_pass_1/0")  # sorted by time
    index = keys.index(f"{UID}/narration_pass_1/1")
    sample = ds[index]
    validate_sample(sample)
    start, end = sample["meta"]["start"], sample["meta"]["end"]
    assert sample["text"] == "#C C picks a bag of clothes from the floor"
    assert sample["video"].shape == (4, 3, 24, 32)  # EgoVLP: 4 frames spread over the window
    assert mm.frame_codes(sample["video"]) == [math.floor((start + k * (end - start) / 4) * 25 + 1e-6) for k in range(4)]
    assert sample["audio"].shape == (1, round((end - start) * 16000)) and sample["meta"]["has_audio"] is True
    assert abs(mm.audio_lag(sample["audio"][0], start, 16000, search=300)) <= 256
    assert sample["meta"]["narration_time"] == 3.3445 and sample["meta"]["annotation_uid"] == "a1"
    mute = ds[keys.index(f"{UID2}/narration_pass_1/0")]  # full_scale video without audio (common in Ego4D)
    assert mute["meta"]["has_audio"] is False and float(mute["audio"].abs().max()) == 0.0


def test_passes_summaries_tags_and_splits(ego_root):
    one = loaders.open_dataset("ego4d", ego_root, passes=["narration_pass_2"], split="train")
    assert [r["__key__"] for r in one.records()] == [f"{UID}/narration_pass_2/0", f"{UID}/narration_pass_2/1"]
    assert one.alpha == pytest.approx(BETA_2)  # alpha is the mean over the indexed videos
    fixed = loaders.open_dataset("ego4d", ego_root, alpha=4.9, split="train")
    first = fixed.index[0]
    assert first["end"] - first["start"] == pytest.approx(BETA_1 / 4.9)
    tagged = loaders.open_dataset("ego4d", ego_root, tags="strip", summaries=True, drop_unsure=True, split="train")
    texts = {r["__key__"]: r["text"] for r in tagged.records()}
    assert texts[f"{UID}/narration_pass_1/1"] == "C picks a bag of clothes from the floor"
    assert f"{UID}/narration_pass_1/2" not in texts  # the #unsure narration is dropped
    summary = next(r for r in tagged.records() if r["__key__"] == f"{UID}/narration_pass_1/summary/0")
    assert summary["text"] == "C folded clothes in the bedroom" and (summary["start"], summary["end"]) == (0.0, 7.5)
    expanded = loaders.open_dataset("ego4d", ego_root, tags="expand", split="train")
    assert next(r["text"] for r in expanded.records() if r["__key__"].endswith("pass_1/2")) == "Other person man X hands something to C"
    with pytest.raises(ValueError, match="split_field"):
        loaders.open_dataset("ego4d", ego_root, split_field="split_nlq")
    with pytest.raises(ValueError, match="passes"):
        loaders.open_dataset("ego4d", ego_root, passes=["narration_pass_3"])


def test_metadata_under_v2_and_clamped_ends(ego_root, tmp_path):
    root = tmp_path / "v2meta"
    shutil.copytree(ego_root, root)
    (root / "ego4d.json").rename(root / "v2" / "ego4d.json")
    ds = loaders.open_dataset("ego4d", root, split="test")
    assert {r["video_uid"] for r in ds.records()} == {UID2}
    last = loaders.open_dataset("ego4d", root, alpha=0.1, split="train")
    assert max(r["end"] for r in last.records()) == 8.0  # clamped at duration_sec


def _write_egoclip(path, rows):
    header = ["clip_idx", "video_uid", "video_dur", "narration_source", "narration_ind", "narration_time",
              "clip_start", "clip_end", "clip_text", "tag_verb", "tag_noun"]
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")


def test_egoclip_rows_and_bad_rows(ego_root, egoclip_rows, tmp_path, mm):
    root = tmp_path / "egoclip"
    shutil.copytree(ego_root, root)
    _write_egoclip(root / "egoclip.csv", egoclip_rows)
    ds = loaders.open_dataset("ego4d", root, num_frames=None, fps=10.0, size=(24, 32))
    assert ds.source == "egoclip" and [r["__key__"] for r in ds.records()] == ["egoclip/0", "egoclip/1"]
    sample = ds[0]
    assert (sample["meta"]["start"], sample["meta"]["end"]) == (2.967651, 3.721266)
    assert sample["meta"]["tag_verb"] == [93] and sample["meta"]["tag_noun"] == [192, 115, 12]
    assert mm.frame_codes(sample["video"]) == [math.floor((2.967651 + k / 10) * 25 + 1e-6) for k in range(8)]
    encoded = ds.load(1, decode=False)
    assert sorted(encoded) == ["__key__", "__source__", "flac", "json", "mp4", "txt"]
    assert decode_sample(encoded)["text"] == "#C C drops the bag on the bed"
    _write_egoclip(root / "egoclip.csv", egoclip_rows + [["2", UID, "8.0", "narration_pass_1", "2", "7.0", "6.5", "7.5", "#C C x", "[1]"],
                                                        ["3", "ffffffff-0000", "9.0", "narration_pass_1", "0", "1.0", "0.5", "1.5", "#C C y", "[1]", "[2]"]])
    with pytest.raises(ValueError, match="egoclip.csv'.*line 4: expected 11 tab-separated fields"):
        loaders.open_dataset("ego4d", root)
    skipping = loaders.open_dataset("ego4d", root, on_error="skip", num_frames=2)
    assert skipping.missing == ["ffffffff-0000"]
    loaded = list(skipping.samples())
    stats = skipping.stats()
    assert stats["attempted"] == 4 and len(loaded) == stats["loaded"] == 2 and stats["skipped"] == 2
    assert any("line 4" in s["reason"] for s in stats["skips"]) and any("ffffffff-0000" in s["reason"] for s in stats["skips"])
    with pytest.raises(SampleError, match="not found"):
        skipping.load(3)


def test_egovlp_chunked_videos(ego_root, tmp_path, mm):
    chunks = tmp_path / "chunks"
    mm.write_video(chunks / UID / "0.mp4", seconds=4.0, fps=25)
    mm.write_video(chunks / UID / "1.mp4", seconds=4.0, fps=25)
    ds = loaders.open_dataset("ego4d", ego_root, video_dir=chunks, chunk_seconds=4.0, num_frames=None, fps=10.0,
                              split="train", alpha=BETA_2 / 2.0, passes=["narration_pass_2"])
    sample = ds[1]  # narration at 4.0 s, half width 1.0 -> [3.0, 5.0], across chunks 0 and 1
    assert (sample["meta"]["start"], sample["meta"]["end"]) == (3.0, 5.0)
    assert mm.frame_codes(sample["video"]) == [75, 77, 80, 82, 85, 87, 90, 92, 95, 97] + [0, 2, 5, 7, 10, 12, 15, 17, 20, 22]
    assert sample["audio"].shape == (1, 32000)
