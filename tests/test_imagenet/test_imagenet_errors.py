"""Error policy of the ImageNet adapters: missing, truncated, non-image files; duplicate keys."""

from __future__ import annotations

import tarfile

import pytest
import webdataset as wds

import loaders
from loaders import SampleError


def test_val_file_deleted_after_indexing_raises_naming_it_or_is_skipped_with_counts(imagenet_kaggle, kit):
    # a file absent when the index is built is left out (test_imagenet_missing.py); one that
    # disappears afterwards is an error of that sample
    missing = imagenet_kaggle.root / "ILSVRC" / "Data" / "CLS-LOC" / "val" / kit.val_name(3)
    ds = loaders.open_dataset("imagenet", imagenet_kaggle.root, "val")
    skipping = loaders.open_dataset("imagenet", imagenet_kaggle.root, "val", on_error="skip")
    missing.unlink()
    assert len(ds) == 5 and ds.stats()["missing"] == 0
    with pytest.raises(SampleError, match=r"ILSVRC2012_val_00000003\.JPEG") as caught:
        ds[2]
    assert caught.value.key == "ILSVRC2012_val_00000003" and caught.value.path == str(missing)
    keys = [s["__key__"] for s in skipping.samples()]
    assert keys == [f"ILSVRC2012_val_{n:08d}" for n in (1, 2, 4, 5)]
    stats = skipping.stats()
    assert (stats["attempted"], stats["loaded"], stats["skipped"]) == (5, 4, 1)
    assert stats["skips"][0]["key"] == "ILSVRC2012_val_00000003" and str(missing) in stats["skips"][0]["reason"]


def test_truncated_jpeg_fails_to_decode_but_raw_copy_is_kept(imagenet_torchvision, kit):
    path = imagenet_torchvision.root / "train" / kit.TENCH / f"{kit.TENCH}_10026.JPEG"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    ds = loaders.open_dataset("imagenet", imagenet_torchvision.root, "train")
    position = [r["__key__"] for r in ds.records()].index(f"{kit.TENCH}/{kit.TENCH}_10026")
    with pytest.raises(SampleError, match=f"{kit.TENCH}_10026.JPEG.*truncated"):
        ds[position]
    assert ds.load(position, decode=False)["jpg"] == data[: len(data) // 3]  # decode=False copies bytes as they are
    skipping = loaders.open_dataset("imagenet", imagenet_torchvision.root, "train", on_error="skip")
    assert len(list(skipping.samples())) == len(skipping) - 1
    assert skipping.stats()["skipped"] == 1


@pytest.mark.parametrize(("content", "message"), [(b"", "empty file"), (b"GIF89a\x01\x00", "neither JPEG nor PNG")])
def test_non_image_files_fail_in_both_modes(imagenet_torchvision, kit, content, message):
    (imagenet_torchvision.root / "train" / kit.SEA_SNAKE / f"{kit.SEA_SNAKE}_77.JPEG").write_bytes(content)
    for decode in (True, False):
        ds = loaders.open_dataset("imagenet", imagenet_torchvision.root, "train", decode=decode)
        keys = [r["__key__"] for r in ds.records()]
        with pytest.raises(SampleError, match=message):
            ds[keys.index(f"{kit.SEA_SNAKE}/{kit.SEA_SNAKE}_77")]


def test_hidden_and_non_image_files_are_not_indexed(imagenet_torchvision, kit):
    folder = imagenet_torchvision.root / "train" / kit.TENCH
    kit.write(folder / ".DS_Store", b"x")
    kit.write(folder / "notes.txt", "not an image")
    kit.write(folder / f"{kit.TENCH}_10026.png", kit.png_bytes(9))  # same stem as a .JPEG
    ds = loaders.open_dataset("imagenet", imagenet_torchvision.root, "train")
    keys = [r["__key__"] for r in ds.records() if r["label"] == 0]
    assert keys == [f"{kit.TENCH}/{kit.TENCH}_10026", f"{kit.TENCH}/{kit.TENCH}_10026-2", f"{kit.TENCH}/{kit.TENCH}_9"]
    assert [s["image"].shape[0] for s in ds.samples()] == [3] * len(ds)


def test_the_same_val_image_in_two_class_folders_is_a_duplicate_key(imagenet_torchvision, kit):
    kit.write(imagenet_torchvision.root / "val" / kit.GOLDFISH / kit.val_name(2), kit.jpeg_bytes(5))  # also under tench
    with pytest.raises(ValueError, match=r"duplicate key 'ILSVRC2012_val_00000002'.*n01440764.*n01443537|n01443537.*n01440764"):
        loaders.open_dataset("imagenet", imagenet_torchvision.root, "val")


def test_unknown_wnid_in_kaggle_solution_names_the_row(imagenet_kaggle):
    csv_path = imagenet_kaggle.root / "LOC_val_solution.csv"
    csv_path.write_text(csv_path.read_text() + "ILSVRC2012_val_00000009,n99999999 1 2 3 4\n")
    with pytest.raises(ValueError, match="ILSVRC2012_val_00000009 is labelled 'n99999999'"):
        loaders.open_dataset("imagenet", imagenet_kaggle.root, "val")


def test_raw_samples_go_into_a_webdataset_tar_byte_for_byte(imagenet_torchvision, tmp_path):
    ds = loaders.open_dataset("imagenet", imagenet_torchvision.root, "train", decode=False)
    shard = tmp_path / "shard-000000.tar"
    with wds.TarWriter(str(shard)) as writer:
        for sample in ds.samples():
            writer.write({k: v for k, v in sample.items() if k != "__source__"})
    with tarfile.open(shard) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    for sample in ds.samples():
        suffix = "png" if "png" in sample else "jpg"
        assert members[f"{sample['__key__']}.{suffix}"] == sample[suffix]
        assert members[f"{sample['__key__']}.cls"] == sample["cls"]
    decoded = loaders.decode_sample(
        {k.split(".", 1)[1]: v for k, v in members.items() if k.startswith("n02105855/")}, image_mode="RGB"
    )
    assert decoded["image"].shape[0] == 3 and decoded["label"] == 230


def test_decoded_samples_go_through_a_dataloader(imagenet_sketch):
    from torch.utils.data import DataLoader

    ds = loaders.open_dataset("imagenet-sketch", imagenet_sketch, on_error="skip")
    batches = list(DataLoader(ds, batch_size=2, collate_fn=loaders.skip_none_collate))
    assert [b["label"].tolist() for b in batches] == [[0, 0], [999, 999]]
    assert batches[0]["image"].shape == (2, 3, 10, 12)


@pytest.mark.parametrize(
    "keys",
    [["a/b", "a/b"], ["a//b"], ["/a"], ["a/"], ["a.b"], [""], ["a\nb"], ["x" * 257], [3], ["a b"]],
)
def test_bulk_key_check_agrees_with_validate_key(keys):
    from loaders.schema import keys_valid_and_unique

    assert not keys_valid_and_unique(list(keys))
    assert keys_valid_and_unique(["n01440764/x_1", "ILSVRC2012_val_00000001", "c/3/a-b"])


def test_build_shards_copies_imagenet_files_and_counts_skips(imagenet_torchvision, tmp_path, kit):
    from pipelines.build import build_shards

    broken = imagenet_torchvision.root / "train" / kit.SEA_SNAKE / f"{kit.SEA_SNAKE}_77.JPEG"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated
    report = build_shards(
        "imagenet", tmp_path / "shards", root=imagenet_torchvision.root, split="train", on_error="skip", check="decode"
    )
    assert (report.read, report.written, report.skipped) == (6, 5, 1)
    members: dict[str, bytes] = {}
    for shard in sorted((tmp_path / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            members.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
    assert f"{kit.SEA_SNAKE}/{kit.SEA_SNAKE}_77.jpg" not in members
    assert members[f"{kit.PNG_NAMED_JPEG}/{kit.PNG_NAMED_JPEG}_2933.png"] == imagenet_torchvision.train[
        f"{kit.PNG_NAMED_JPEG}/{kit.PNG_NAMED_JPEG}_2933.JPEG"
    ]
    assert members[f"{kit.TENCH}/{kit.TENCH}_10026.jpg"] == imagenet_torchvision.train[f"{kit.TENCH}/{kit.TENCH}_10026.JPEG"]


def test_copy_mode_builds_copy_imagenet_files_directly_and_byte_identically(imagenet_torchvision, tmp_path, kit,
                                                                             direct_copies):
    """ImageNet files take the direct file-copy path (suffix sniffed from each file's first bytes:
    the PNG named .JPEG stays a png) and give the generic path's bytes, bad files included."""
    from loaders.imagenet.imagenet1k import ImageNetDataset
    from pipelines.build import build_shards
    from pipelines.filecopy import file_members_for

    class GenericImageNet(ImageNetDataset):  # same loading, unknown to the direct path
        def _load_encoded(self, record):
            return super()._load_encoded(record)

    train = imagenet_torchvision.root / "train"
    (train / kit.SEA_SNAKE / f"{kit.SEA_SNAKE}_77.JPEG").write_bytes(b"GIF89a not an image")  # sniffs as neither
    broken = train / kit.TENCH / f"{kit.TENCH}_9.JPEG"
    broken.write_bytes(broken.read_bytes()[:30])  # truncated: fails the structure check
    options = dict(split="train", on_error="skip", max_count=2)
    direct = build_shards("imagenet", tmp_path / "direct", root=imagenet_torchvision.root, **options)
    assert direct_copies["ok"] == 4  # every good file went the direct way
    generic_adapter = GenericImageNet(imagenet_torchvision.root, split="train", decode=False, on_error="skip")
    assert file_members_for(generic_adapter, "structure") is None
    generic = build_shards(generic_adapter, tmp_path / "generic", max_count=2, on_error="skip")
    assert direct_copies["ok"] == 4
    assert (direct.read, direct.written, direct.skipped) == (generic.read, generic.written, generic.skipped) == (6, 4, 2)
    tars = sorted(p.name for p in (tmp_path / "direct").glob("*.tar"))
    assert tars and tars == sorted(p.name for p in (tmp_path / "generic").glob("*.tar"))
    for name in tars:
        assert (tmp_path / "direct" / name).read_bytes() == (tmp_path / "generic" / name).read_bytes(), name
    names = []
    for name in tars:
        with tarfile.open(tmp_path / "direct" / name) as tar:
            names += tar.getnames()
    assert [n for n in names if n.endswith(".png")] == [f"{kit.PNG_NAMED_JPEG}/{kit.PNG_NAMED_JPEG}_2933.png"]
    assert len([n for n in names if n.endswith(".jpg")]) == 3
