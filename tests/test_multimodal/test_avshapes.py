"""``avshapes``: the rendered audio-visual-text demo (clips, tones, caption bags, shards round trip)."""

from __future__ import annotations

import colorsys
import json

import numpy as np
import pytest
import torch

import loaders
from loaders.codecs import decode_sample
from loaders.multimodal.avshapes import _RADIUS, COLOURS, MOTIONS, PITCHES, AVShapesDataset, caption_bag, caption_of
from loaders.schema import validate_sample
from loaders.shapes import SHAPE_CLASSES

SMALL = {"resolution": 32, "num_frames": 8, "fps": 4.0, "sample_rate": 8000}


def _main_pixels(video: torch.Tensor, hue: float) -> np.ndarray:
    """Boolean ``[T,H,W]``: saturated pixels whose hue is within 0.05 of ``hue`` (circular)."""
    x = video.permute(0, 2, 3, 1).numpy().astype(np.float64) / 255
    hsv = np.vectorize(colorsys.rgb_to_hsv, otypes=[float, float, float])(x[..., 0], x[..., 1], x[..., 2])
    h, s, v = hsv
    distance = np.minimum(np.abs(h - hue), 1 - np.abs(h - hue))
    return (s > 0.55) & (v > 0.4) & (distance < 0.05)


def test_registered_sample_fields_and_schema():
    assert "avshapes" in loaders.list_datasets()
    ds = loaders.open_dataset("avshapes", split="val", size=5, bag_size=3, **SMALL)
    assert isinstance(ds, AVShapesDataset) and len(ds) == 5 and ds.key(-1) == "val_000004"
    for sample in ds.samples():
        validate_sample(sample)
        meta = sample["meta"]
        assert sample["__source__"] == "avshapes"
        assert sample["video"].shape == (8, 3, 32, 32) and sample["video"].dtype == torch.uint8
        assert sample["audio"].shape == (1, 16000) and sample["audio"].dtype == torch.float32  # 8 frames / 4 fps * 8 kHz
        assert meta["fps"] == 4.0 and meta["sample_rate"] == 8000
        assert isinstance(sample["text"], list) and len(sample["text"]) == 3 and len(set(sample["text"])) == 3
        assert sample["text"][0] == meta["caption"] == caption_of(meta["objects"])
        assert sample["label"] == SHAPE_CLASSES.index(meta["shape"]) == SHAPE_CLASSES.index(meta["objects"][0]["shape"])
        assert (meta["colour"], meta["motion"]) == (meta["objects"][0]["colour"], meta["objects"][0]["motion"])
        json.dumps(meta, allow_nan=False)


def test_deterministic_in_seed_split_index_and_splits_independent():
    a = loaders.open_dataset("avshapes", split="train", size=4, **SMALL)
    b = loaders.open_dataset("avshapes", split="train", size=40, **SMALL)  # the size does not change clip i
    for i in (0, 3):
        x, y = a[i], b[i]
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["audio"], y["audio"])
        assert x["text"] == y["text"] and x["meta"] == y["meta"]
    val = loaders.open_dataset("avshapes", split="val", size=4, **SMALL)
    other_seed = loaders.open_dataset("avshapes", split="train", size=4, seed=1, **SMALL)
    for i in range(4):
        assert not torch.equal(a[i]["audio"], val[i]["audio"]) and not torch.equal(a[i]["video"], val[i]["video"])
        assert not torch.equal(a[i]["audio"], other_seed[i]["audio"])


@pytest.mark.parametrize(
    ("argument", "value"),
    [("size", 0), ("size", 2.5), ("resolution", 33), ("resolution", 8), ("resolution", True), ("num_frames", 1),
     ("fps", 0), ("fps", float("nan")), ("fps", "8"), ("sample_rate", 1000), ("sample_rate", 16000.0), ("seed", -1),
     ("max_objects", 3), ("tone", "square"), ("bag_size", 0), ("bag_size", 7), ("split", "dev"), ("root", "somewhere")],
)
def test_bad_options_name_the_argument(argument, value):
    options = {argument: value} if argument != "split" else {}
    with pytest.raises(ValueError, match=argument):
        if argument == "split":
            AVShapesDataset(split=value)
        elif argument == "root":
            AVShapesDataset(value)
        else:
            AVShapesDataset(**options)


def test_unknown_option_is_refused_by_the_registry():
    with pytest.raises(TypeError, match="frames"):
        loaders.open_dataset("avshapes", frames=8)


def test_audio_is_on_the_16_bit_grid_and_sounds_the_main_shape():
    ds = loaders.open_dataset("avshapes", split="test", size=12, max_objects=1, tone="sine", **SMALL)
    shapes_heard = set()
    for sample in ds.samples():
        audio = sample["audio"][0].double().numpy()
        assert np.array_equal(audio * 32768, np.round(audio * 32768))
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
        peak = np.argmax(spectrum) * 8000 / len(audio)
        shape = sample["meta"]["shape"]
        assert peak == pytest.approx(PITCHES[shape], rel=0.01)
        assert sample["meta"]["objects"][0]["pitch_hz"] == pytest.approx(PITCHES[shape], rel=0.006)
        shapes_heard.add(shape)
    assert len(shapes_heard) >= 3


def test_chord_tones_have_three_partials_on_the_root():
    sample = loaders.open_dataset("avshapes", split="val", size=1, max_objects=1, tone="chord", **SMALL)[0]
    audio = sample["audio"][0].double().numpy()
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    freqs = np.fft.rfftfreq(len(audio), 1 / 8000)
    root = sample["meta"]["objects"][0]["pitch_hz"]
    strongest = sorted(freqs[np.argsort(spectrum)[::-1]][:30])
    for ratio in (1.0, 1.25, 1.5):
        assert min(abs(f - root * ratio) for f in strongest) < 1.0


def test_video_shows_the_named_colour_moving_the_named_way():
    ds = loaders.open_dataset("avshapes", split="train", size=40, max_objects=1, **SMALL)
    seen, colours = set(), set()
    for sample in ds.samples():
        meta = sample["meta"]
        seen.add(meta["motion"])
        colours.add(meta["colour"])
        pixels = _main_pixels(sample["video"], COLOURS[meta["colour"]])
        assert pixels.sum(axis=(1, 2)).min() > 20  # the body is visible in every frame
        ys, xs = np.mgrid[0:32, 0:32]
        cx = (pixels * xs).sum(axis=(1, 2)) / pixels.sum(axis=(1, 2))
        cy = (pixels * ys).sum(axis=(1, 2)) / pixels.sum(axis=(1, 2))
        dx, dy = MOTIONS[meta["motion"]]
        moved = np.array([cx[-1] - cx[0], cy[-1] - cy[0]])
        if meta["motion"] == "still":
            assert np.abs(moved).max() < 1.0
        else:
            assert moved @ np.array([dx, dy]) > 0.25 * 32  # at least 0.3 frame widths minus edge effects
            assert abs(moved @ np.array([dy, dx])) < 1.0  # and nothing across (edge pixels flicker)
    assert seen == set(MOTIONS) and colours == set(COLOURS)


def test_two_object_bags_name_the_second_object():
    objects = [{"shape": "star", "colour": "red", "motion": "left"}, {"shape": "circle", "colour": "blue", "motion": "still"}]
    assert caption_of(objects) == "a red star moving left and a blue circle standing still"
    assert caption_of([{"shape": "cross", "colour": "orange", "motion": "up"}]) == "an orange cross moving up"
    bag = caption_bag(np.random.default_rng(0), objects, 4)
    assert bag[:2] == ["a red star moving left and a blue circle standing still", "a blue circle standing still"]
    assert all("red star" in t or "star coloured red" in t for t in bag[2:])
    ds = loaders.open_dataset("avshapes", split="val", size=20, **SMALL)
    counts = [len(s["meta"]["objects"]) for s in ds.samples()]
    assert set(counts) == {1, 2}
    for sample in ds.samples():
        objs = sample["meta"]["objects"]
        for obj in objs:  # the circumcircle stays inside the frame along the whole path
            reach = _RADIUS[obj["shape"]] * obj["size"]
            assert all(reach - 1e-3 < v < 1 - reach + 1e-3 for v in obj["start"] + obj["end"])
        if len(objs) == 2:
            assert objs[0]["shape"] != objs[1]["shape"] and objs[0]["colour"] != objs[1]["colour"]
            assert objs[0]["size"] > objs[1]["size"] and objs[0]["amplitude"] > objs[1]["amplitude"]


def test_encoded_members_decode_back():
    ds = loaders.open_dataset("avshapes", split="val", size=2, **SMALL)
    encoded = ds.load(1, decode=False)
    assert set(encoded) == {"__key__", "__source__", "mp4", "flac", "text.json", "cls", "json"}
    decoded = decode_sample(encoded)
    original = ds[1]
    assert torch.equal(decoded["audio"], original["audio"])
    assert decoded["video"].shape == original["video"].shape
    assert decoded["text"] == original["text"] and decoded["label"] == original["label"] and decoded["meta"] == original["meta"]


def test_shards_round_trip_through_make_loader(tmp_path):
    from pipelines import build_shards, make_loader

    options = {"size": 6, **SMALL}
    report = build_shards("avshapes", tmp_path / "a", split="val", options=options, max_count=4)
    assert report.written == 6 and report.index["schema"]["fields"] == {
        "cls": "label", "flac": "audio", "json": "meta", "mp4": "video", "text.json": "text"}
    again = build_shards("avshapes", tmp_path / "b", split="val", options=options, max_count=4)
    assert [s["sha256"] for s in again.index["shards"]] == [s["sha256"] for s in report.index["shards"]]

    ds = loaders.open_dataset("avshapes", split="val", **options)
    seen = []
    for batch in make_loader(tmp_path / "a", batch_size=3, shuffle=False):
        assert batch["video"].shape == (3, 8, 3, 32, 32) and batch["video"].dtype == torch.uint8
        assert batch["audio"].shape == (3, 1, 16000) and batch["audio"].dtype == torch.float32
        for j, key in enumerate(batch["__key__"]):
            original = ds[int(key.rsplit("_", 1)[1])]
            assert torch.equal(batch["audio"][j], original["audio"])  # flac is lossless on the 16-bit grid
            error = (batch["video"][j].float() - original["video"].float()).abs().mean()
            assert error < 10  # H.264 at crf 18 (the 2% pixel noise is most of it)
            assert batch["text"][j] == original["text"] and int(batch["label"][j]) == original["label"]
            assert batch["meta"][j]["fps"] == 4.0 and batch["meta"][j]["sample_rate"] == 8000
            seen.append(key)
    assert sorted(seen) == [f"val_{i:06d}" for i in range(6)]
