"""AudioSet adapter on PANNs folders, flat FLAC files, a PANNs HDF5 pack and optional video."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import loaders
import loaders.multimodal  # noqa: F401  (registers the adapters until loaders/__init__ imports it)
from loaders.base import SampleError
from loaders.codecs import decode_sample
from loaders.multimodal.audioset_meta import Ontology, read_class_labels, read_segments
from loaders.schema import validate_sample


def test_segment_csv_quirks(audioset_root):
    rows, errors = read_segments(audioset_root / "metadata" / "balanced_train_segments.csv")
    assert not errors
    assert rows[0].ytid == "--PJHxphWEs" and rows[0].start == 30.0 and rows[0].mids == ("/m/09x0r", "/t/dd00088")
    assert rows[0].line == 4  # three comment lines first
    mids, names = read_class_labels(audioset_root / "metadata" / "class_labels_indices.csv")
    assert len(mids) == 527 and names[1] == "Male speech, man speaking" and names[137] == 'Buzzer, "alarm"'


def test_panns_folders_labels_resampling_and_padding(audioset_root, mm):
    ds = loaders.open_dataset("audioset", audioset_root, split="balanced_train", missing_audio="raise", on_error="skip")
    assert ds.audio_source == "files" and len(ds) == 4 and ds.missing == ["AbsentVid01_10000"]
    sample = ds[0]
    validate_sample(sample)
    assert sample["__key__"] == "--PJHxphWEs_30000" and sample["__source__"] == "audioset"
    labels = sample["labels"]
    assert labels.shape == (527,) and labels.dtype == torch.float32
    assert torch.nonzero(labels).flatten().tolist() == [0, 7]  # /m/09x0r, /t/dd00088
    assert sample["audio"].shape == (1, 320000) and sample["meta"]["sample_rate"] == 32000
    audio = sample["audio"][0]
    assert float(audio[64000:].abs().max()) == 0.0  # 2-s file zero-padded to 10 s
    expected = torch.from_numpy(mm.chirp(np.arange(64000) / 32000)).float()
    assert float((audio[:64000] - expected).abs().max()) <= 1 / 32768 + 1e-6
    resampled = ds[1]  # 44.1 kHz file -> 32 kHz
    assert resampled["audio"].shape == (1, 320000)
    assert abs(mm.audio_lag(resampled["audio"][0, :48000], 0.0, 32000, search=300)) <= 2
    third = ds[2]  # YTID starting with "Y": PANNs file YYb0RFKhbpFJ.wav
    assert third["meta"]["ytid"] == "Yb0RFKhbpFJ" and third["labels"].sum() == 3
    assert ds[3] is None  # missing media: recorded skip
    stats = ds.stats()
    assert stats["attempted"] == 4 and stats["loaded"] == 3 and stats["skipped"] == 1 and stats["missing_media"] == 1
    assert "AbsentVid01" in stats["skips"][0]["reason"]
    with pytest.raises(SampleError, match="no media for YTID 'AbsentVid01'"):
        ds.load(3)
    dropped = loaders.open_dataset("audioset", audioset_root, split="balanced_train", drop_missing=True)
    assert len(dropped) == 3 and dropped.stats()["missing_media"] == 1


def test_crop_options(audioset_root):
    ds = loaders.open_dataset("audioset", audioset_root, split="balanced_train", sample_rate=16000, clip_seconds=1.0, crop="center", drop_missing=True)
    full = loaders.open_dataset("audioset", audioset_root, split="balanced_train", sample_rate=16000, clip_seconds=None, drop_missing=True)
    a, b = ds[0]["audio"], full[0]["audio"]
    assert a.shape == (1, 16000) and b.shape == (1, 32000)
    assert torch.equal(a, b[:, 8000:24000])
    with pytest.raises(ValueError, match="crop"):
        loaders.open_dataset("audioset", audioset_root, split="balanced_train", crop="random")


def test_flat_files_match_start_times(audioset_root, mm):
    ds = loaders.open_dataset("audioset", audioset_root, split="eval", audio_source="files", sample_rate=16000, clip_seconds=2.0)
    assert [r["__key__"] for r in ds.records()] == ["--4gqARaEJE_0", "-0SdAVK79lg_30000"]
    sample = ds[1]  # file -0SdAVK79lg_30.000.flac: a chirp written from t = 0.5 s
    assert sample["meta"]["audio_file"].endswith("-0SdAVK79lg_30.000.flac")
    assert abs(mm.audio_lag(sample["audio"][0], 0.5, 16000, search=300)) == 0
    assert torch.nonzero(sample["labels"]).flatten().tolist() == [137]


def test_hdf5_pack_is_read_lazily(audioset_root, mm):
    ds = loaders.open_dataset("audioset", audioset_root, split="eval", sample_rate=None, clip_seconds=None)
    assert ds.audio_source == "hdf5" and ds.empty_rows == 1 and ds._h5 == {}  # nothing opened while indexing
    sample = ds[0]
    assert sample["meta"]["hdf5"]["row"] == 0 and sample["meta"]["sample_rate"] == 32000
    expected = np.round(np.clip(mm.chirp(np.arange(64000) / 32000), -1, 1) * 32767) / 32767
    assert np.abs(sample["audio"][0].numpy() - expected).max() < 1e-6  # int16 / 32767 (PANNs)
    assert torch.nonzero(sample["labels"]).flatten().tolist() == [0, 1]  # from the CSV MIDs
    second = ds[1]
    assert second["meta"]["hdf5"]["row"] == 2 and float(second["audio"][0, 0]) == pytest.approx(16384 / 32767)


def test_hdf5_without_csv_uses_targets_and_reports_empty_rows(audioset_root, tmp_path):
    root = tmp_path / "packs"
    shutil.copytree(audioset_root / "hdf5s", root / "hdf5s")
    shutil.copy(audioset_root / "metadata" / "class_labels_indices.csv", root / "class_labels_indices.csv")
    ds = loaders.open_dataset("audioset", root, split="eval", on_error="skip", sample_rate=16000)
    assert [r["__key__"] for r in ds.records()] == ["eval/--4gqARaEJE", "eval/row1", "eval/-0SdAVK79lg"]
    samples = list(ds.samples())
    assert len(samples) == 2 and samples[1]["meta"]["mids"] == ["/m/012xff"]
    assert samples[0]["audio"].shape == (1, 160000)
    stats = ds.stats()
    assert stats["skipped"] == 1 and "empty audio_name" in stats["skips"][0]["reason"] and stats["missing_media"] == 1
    strict = loaders.open_dataset("audioset", root, split="eval")
    with pytest.raises(SampleError, match="empty audio_name"):
        strict[1]


def test_malformed_csv_row_and_unknown_mid(audioset_root, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(audioset_root / "metadata", root / "metadata")
    shutil.copytree(audioset_root / "audios", root / "audios")
    csv_path = root / "metadata" / "balanced_train_segments.csv"
    lines = csv_path.read_text().splitlines()
    lines.insert(4, "--ZZZZZZZZZ, 30.000, 40.000")  # the label field is missing
    lines.append('--QQQQQQQQQ, 0.000, 10.000, "/m/unknown"')
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"balanced_train_segments.csv' line 5: expected 4 fields"):
        loaders.open_dataset("audioset", root, split="balanced_train")
    ds = loaders.open_dataset("audioset", root, split="balanced_train", on_error="skip", drop_missing=True)
    keys = [r["__key__"] for r in ds.records()]
    assert "bad-row/balanced_train_segments/5" in keys
    loaded = list(ds.samples())
    stats = ds.stats()
    assert stats["attempted"] == len(ds) == stats["loaded"] + stats["skipped"] and len(loaded) == 3
    assert any("unknown MID" in s["reason"] for s in stats["skips"]) and any("expected 4 fields" in s["reason"] for s in stats["skips"])


def test_ontology_helpers(audioset_root):
    ds = loaders.open_dataset("audioset", audioset_root, split="eval")
    onto = ds.ontology
    assert isinstance(onto, Ontology) and len(onto) == 5
    assert onto.ancestors("/m/05zppz") == ["/m/09x0r", "/m/09l8g", "/m/0dgw9r"]
    assert onto.descendants("/m/0dgw9r") == ["/m/09l8g", "/m/09x0r", "/m/05zppz"]
    assert onto.restrictions("/m/0dgw9r") == ("abstract",) and onto.restrictions("/t/dd00088") == ("blacklist",)
    assert onto.roots() == ["/m/0dgw9r", "/t/dd00088"]
    assert onto.expand(["/m/05zppz"]) == ["/m/05zppz", "/m/09x0r", "/m/09l8g", "/m/0dgw9r"]
    with pytest.raises(KeyError, match="/m/nope"):
        onto.ancestors("/m/nope")


def test_optional_video_and_shard_encoding(audioset_root, tmp_path, mm):
    root = tmp_path / "withvideo"
    shutil.copytree(audioset_root / "metadata", root / "metadata")
    shutil.copytree(audioset_root / "audio", root / "audio")
    mm.write_video(root / "video" / "eval" / "--4gqARaEJE_0.000.mp4", seconds=2.0, fps=25)
    mm.write_video(root / "video" / "eval" / "Y-0SdAVK79lg.mp4", seconds=2.0, fps=25)
    ds = loaders.open_dataset("audioset", root, split="eval", audio_source="files", video_dir=root / "video" / "eval",
                              fps=10.0, size=(24, 32), sample_rate=16000, clip_seconds=2.0)
    sample = ds[0]
    assert sample["video"].shape == (20, 3, 24, 32) and sample["meta"]["fps"] == 10.0
    assert mm.frame_codes(sample["video"])[:4] == [0, 2, 5, 7]
    encoded = ds.load(0, decode=False)
    assert sorted(encoded) == ["__key__", "__source__", "flac", "json", "labels.npy", "mp4"]
    back = decode_sample(encoded)
    assert back["video"].shape == (20, 3, 24, 32) and back["meta"]["fps"] == 10.0
    assert torch.equal(back["labels"], sample["labels"])
    assert float((back["audio"] - sample["audio"]).abs().max()) <= 1 / 32768 + 1e-6
    from_video = loaders.open_dataset("audioset", root, split="eval", audio_source="video", video_dir=root / "video" / "eval",
                                      fps=5.0, sample_rate=16000, clip_seconds=2.0)
    clip = from_video[1]
    assert clip["audio"].shape == (1, 32000) and abs(mm.audio_lag(clip["audio"][0], 0.0, 16000, search=300)) <= 256


def test_bad_arguments(audioset_root, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        loaders.open_dataset("audioset", audioset_root, split="train")
    with pytest.raises(ValueError, match="audio_source"):
        loaders.open_dataset("audioset", audioset_root, split="eval", audio_source="mp3")
    with pytest.raises(FileNotFoundError, match="class_labels_indices.csv"):
        loaders.open_dataset("audioset", tmp_path, split="eval")


def _batch_keys(batch):
    return [s["__key__"] for s in batch]


def test_hdf5_handles_are_per_process_and_transform_applies(audioset_root):
    from torch.utils.data import DataLoader

    ds = loaders.open_dataset("audioset", audioset_root, split="eval", sample_rate=16000,
                              transform=lambda s: {**s, "peak": float(s["audio"].abs().max())})
    first = ds[0]  # opens the pack in this process
    assert ds._h5 and first["peak"] == pytest.approx(float(first["audio"].abs().max()))
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=_batch_keys)
    assert [k for batch in loader for k in batch] == ["--4gqARaEJE_0", "-0SdAVK79lg_30000"]
    state = ds.__getstate__()
    assert state["_h5"] == {} and ds._h5  # handles never travel to another process


def test_no_audio_anywhere_is_a_clear_error(audioset_root, tmp_path):
    shutil.copytree(audioset_root / "metadata", tmp_path / "metadata")
    with pytest.raises(FileNotFoundError, match=r"no audio for split 'balanced_train'.*audios/balanced_train_segments"):
        loaders.open_dataset("audioset", tmp_path, split="balanced_train")


def test_panns_unbalanced_partial_layout(audioset_root, tmp_path, mm):
    import h5py

    root = tmp_path / "unbal"
    shutil.copytree(audioset_root / "metadata", root / "metadata")
    parts = root / "metadata" / "unbalanced_partial_csvs"
    parts.mkdir()
    (parts / "unbalanced_train_segments_part00.csv").write_text('empty\nempty\nempty\n--aE2O5G5WE, 0.000, 10.000, "/m/09x0r"\n')
    (parts / "unbalanced_train_segments_part01.csv").write_text('empty\nempty\nempty\n--aO5cdqSAg, 30.000, 40.000, "/m/07hvw1"\n')
    mm.write_wav(root / "audios" / "unbalanced_train_segments" / "unbalanced_train_segments_part00" / "Y--aE2O5G5WE.wav", 1.0, 32000)
    mm.write_wav(root / "audios" / "unbalanced_train_segments" / "unbalanced_train_segments_part01" / "Y--aO5cdqSAg.wav", 1.0, 32000)
    ds = loaders.open_dataset("audioset", root, split="unbalanced_train", clip_seconds=1.0)
    assert [s["meta"]["ytid"] for s in ds.samples()] == ["--aE2O5G5WE", "--aO5cdqSAg"]
    assert [int(torch.nonzero(s["labels"])[0]) for s in ds.samples()] == [0, 526]
    packs = root / "hdf5s" / "waveforms" / "unbalanced_train"
    packs.mkdir(parents=True)
    for part, name in enumerate([b"Y--aE2O5G5WE.wav", b"Y--aO5cdqSAg.wav"]):
        with h5py.File(packs / f"unbalanced_train_part{part:02d}.h5", "w") as handle:
            handle.create_dataset("audio_name", data=np.array([name], dtype="S20"))
            handle.create_dataset("waveform", data=np.full((1, 32000), 1000 * (part + 1), np.int16))
            handle.create_dataset("target", data=np.zeros((1, 527), bool))
            handle.attrs["sample_rate"] = 32000
    packed = loaders.open_dataset("audioset", root, split="unbalanced_train", clip_seconds=1.0)
    assert packed.audio_source == "hdf5" and len(packed.hdf5_files) == 2
    levels = [float(s["audio"][0, 100]) for s in packed.samples()]
    assert levels == pytest.approx([1000 / 32767, 2000 / 32767], abs=1e-6)
