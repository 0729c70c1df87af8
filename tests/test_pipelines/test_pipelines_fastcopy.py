"""The direct file-copy path of copy-mode builds gives exactly the generic path's bytes."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import pipelines.engines as engines_module
import pipelines.writer as writer_module
from loaders import open_dataset
from loaders.folder import FolderDataset
from pipelines import build_shards
from pipelines.filecopy import file_members_for
from pipelines.tario import FIXED_MTIME, iter_shard_samples, ustar_header


class GenericFolder(FolderDataset):
    """Loads through FolderDataset's own code, but is not known to the direct path."""

    def _load_encoded(self, record):
        return super()._load_encoded(record)


def _png(path, seed, size=24, mode="L"):
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 4, shape).astype(np.uint8), mode=mode).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


@pytest.fixture
def counted(direct_copies):
    """Counts the samples the direct path wrote."""
    return direct_copies


@pytest.fixture
def mixed_folder(tmp_path, helpers):
    root = tmp_path / "imgs"
    files = helpers.jpeg_folder(root, classes=3, per_class=9, size=40)
    good = files["class_0/img_001"]
    (root / "class_0" / "img_001.jpg").write_bytes(good[: len(good) - 600])  # truncated
    (root / "class_1" / "img_002.jpg").write_bytes(b"")  # zero bytes
    (root / "class_1" / "img_003.jpg").write_bytes(b"GIF89a not a jpeg at all")  # wrong format
    _png(root / "class_2" / "img_100.png", seed=1, mode="RGB")  # a PNG among the JPEGs
    helpers.jpeg(root / "class_2" / "img_101.jpg", seed=7, size=160)  # larger than the tiny buffer can grow
    helpers.jpeg(root / "class_2" / "img_102.jpg", seed=8, size=80)  # makes the tiny buffer grow
    os.symlink(root / "nowhere.jpg", root / "class_2" / "img_999.jpg")  # listed but missing
    return root


@pytest.mark.parametrize("buffer_bytes", [None, 4096])
def test_direct_copy_is_byte_identical_to_the_generic_path(mixed_folder, tmp_path, helpers, counted, monkeypatch,
                                                            buffer_bytes):
    if buffer_bytes is not None:  # many flushes, a buffer that grows, a sample that must bypass it
        monkeypatch.setattr(writer_module, "_BUFFER_BYTES", buffer_bytes)
        monkeypatch.setattr(writer_module, "_MAX_BUFFER_BYTES", 3 * buffer_bytes)
    options = dict(max_count=8, max_bytes=9000, on_error="skip")  # several parts per unit
    direct = build_shards("folder", tmp_path / "direct", root=mixed_folder, **options)
    used = counted["ok"]
    generic = build_shards(GenericFolder(mixed_folder, decode=False), tmp_path / "generic", **options)
    assert counted["ok"] == used  # the subclass never took the direct path
    assert used == direct.written - (1 if buffer_bytes else 0)  # every good sample but the big one went direct
    assert direct.skipped == 4 and direct.written == 27 and len(direct.index["shards"]) > 4
    assert helpers.tree(tmp_path / "direct") == helpers.tree(tmp_path / "generic")
    assert direct.index["shards"] == generic.index["shards"]


def test_direct_copy_with_masks_matches_the_generic_path(tmp_path, helpers, counted):
    root = tmp_path / "seg"
    for i in range(6):
        helpers.jpeg(root / "images" / "cat" / f"im_{i}.jpg", seed=i)
        if i != 3:  # one image without its mask
            _png(root / "masks" / "cat" / f"im_{i}.png", seed=i)
    direct = build_shards("folder", tmp_path / "direct", root=root, max_count=4, on_error="skip")
    generic = build_shards(GenericFolder(root, decode=False), tmp_path / "generic", max_count=4, on_error="skip")
    assert counted["ok"] == 5 and direct.skipped == 1 and "mask" in str(direct.index)
    assert helpers.tree(tmp_path / "direct") == helpers.tree(tmp_path / "generic")
    sample = next(iter_shard_samples(tmp_path / "direct" / "000000.tar"))
    assert sorted(sample) == ["__key__", "cls", "jpg", "mask.png"]
    assert sample["mask.png"] == (root / "masks" / "cat" / "im_0.png").read_bytes()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("error", [-10, +10])
def test_a_file_that_changes_size_is_left_to_the_generic_path(mixed_folder, tmp_path, helpers, counted, monkeypatch,
                                                               error):
    import pipelines.filecopy as filecopy_module

    real_fstat = os.fstat

    def fake_fstat(fd):
        stat = real_fstat(fd)
        if os.readlink(f"/proc/self/fd/{fd}").endswith("img_004.jpg"):  # fstat disagrees with read()
            fields = list(stat)
            fields[6] += error  # st_size
            return os.stat_result(fields)
        return stat

    monkeypatch.setattr(filecopy_module.os, "fstat", fake_fstat)
    options = dict(max_count=8, on_error="skip")
    direct = build_shards("folder", tmp_path / "direct", root=mixed_folder, **options)
    assert counted["ok"] == direct.written - 3  # class_0..2/img_004 went the generic way
    monkeypatch.undo()
    build_shards(GenericFolder(mixed_folder, decode=False), tmp_path / "generic", **options)
    assert helpers.tree(tmp_path / "direct") == helpers.tree(tmp_path / "generic")


def test_process_pool_and_threads_agree(mixed_folder, tmp_path, helpers, monkeypatch):
    # the generic path runs on worker processes, the direct path on threads: same bytes
    options = dict(max_count=5, max_bytes=9000, on_error="skip")
    used = []
    for name in ("ProcessPoolExecutor", "ThreadPoolExecutor"):
        real = getattr(engines_module, name)
        monkeypatch.setattr(engines_module, name, lambda *a, _real=real, _name=name, **k: used.append(_name) or _real(*a, **k))
    build_shards(GenericFolder(mixed_folder, decode=False), tmp_path / "processes", workers=2, **options)
    build_shards("folder", tmp_path / "threads", root=mixed_folder, workers=2, **options)
    assert used == ["ProcessPoolExecutor", "ThreadPoolExecutor"]
    monkeypatch.undo()
    build_shards("folder", tmp_path / "one", root=mixed_folder, workers=1, **options)
    assert helpers.tree(tmp_path / "processes") == helpers.tree(tmp_path / "threads") == helpers.tree(tmp_path / "one")


def test_only_known_file_adapters_take_the_direct_path(mixed_folder):
    folder = open_dataset("folder", mixed_folder, decode=False)
    assert file_members_for(folder, "structure") is not None and file_members_for(folder, "none") is not None
    assert file_members_for(folder, "decode") is None  # decoding is the cost there; generic path
    assert file_members_for(GenericFolder(mixed_folder, decode=False), "structure") is None
    assert file_members_for(open_dataset("shapes", split="val", size=4, resolution=16), "structure") is None
    assert file_members_for(None, "structure") is None


def test_no_direct_path_without_readv(mixed_folder, monkeypatch):
    """Windows has no os.readv/os.pread: builds take the generic path there."""
    monkeypatch.delattr(os, "readv")
    assert file_members_for(FolderDataset(mixed_folder, decode=False), "structure") is None


def _tarfile_ustar(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, FIXED_MTIME, 0o444, 0, 0, "", ""
    return info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.text("abcXYZ019_-", min_size=1, max_size=70), min_size=1, max_size=4),
       size=st.one_of(st.integers(0, 1 << 20), st.sampled_from([0, 511, 512, 513, 8 ** 11 - 1])))
def test_ustar_header_matches_tarfile(parts, size):
    name = "/".join(parts) + ".jpg"
    header = ustar_header(name.encode(), size)
    if header is None:  # long names go to pax; tarfile's ustar cannot hold them either
        with pytest.raises(ValueError):
            _tarfile_ustar(name, size)
    else:
        assert header == _tarfile_ustar(name, size)
