"""loaders.layout: the path finders, split checks, tables and image-type helpers the file-backed
adapters share, and the one table of image magic bytes behind every sniffer."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loaders import layout
from loaders.hf import _sniff_image as hf_suffix
from loaders.media import sniff_image


def _encoded(fmt: str, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_first_existing_takes_the_first_accepted_and_stops_there(tmp_path):
    (tmp_path / "b").write_text("x")
    (tmp_path / "c").write_text("x")
    looked: list[Path] = []

    def candidates():
        for name in ("a", "b", "c"):
            looked.append(tmp_path / name)
            yield tmp_path / name

    assert layout.first_existing(candidates(), Path.is_file) == tmp_path / "b"
    assert looked == [tmp_path / "a", tmp_path / "b"]
    assert layout.first_existing([tmp_path / "a"], Path.is_file) is None
    assert layout.first_existing([str(tmp_path / "a"), str(tmp_path)], os.path.isdir) == str(tmp_path)


def test_find_file_tries_each_candidate_and_its_gz_and_names_the_option(tmp_path):
    (tmp_path / "second.csv.gz").write_bytes(gzip.compress(b"a,b\n"))
    assert layout.find_file(tmp_path, ("first.csv", "second.csv"), what="x", option="csv") == tmp_path / "second.csv.gz"
    (tmp_path / "first.csv").mkdir()  # a folder is not the file
    assert layout.find_file(tmp_path, ("first.csv", "second.csv"), what="x", option="csv") == tmp_path / "second.csv.gz"
    with pytest.raises(FileNotFoundError, match=r"no labels CSV under .* \(looked for \['none.csv', 'none.csv.gz'\]\); pass labels= "):
        layout.find_file(tmp_path, ("none.csv",), what="labels CSV", option="labels")


def test_find_dir_accepts_the_first_folder_with_the_layout_and_lists_what_it_tried(tmp_path):
    (tmp_path / "inner" / "n01440764").mkdir(parents=True)
    (tmp_path / "file").write_text("not a folder")

    def has_wnids(path: Path) -> bool:
        return any(name.startswith("n") for name in layout.list_subdirs(path))

    assert layout.find_dir(tmp_path, ("", "file", "inner"), has_wnids, what="set") == tmp_path / "inner"
    with pytest.raises(FileNotFoundError, match="set: none of these folders") as error:
        layout.find_dir(tmp_path, ("", "file"), has_wnids, what="set")
    assert str(tmp_path / "file") in str(error.value)


def test_list_subdirs_is_sorted_and_skips_hidden_entries_and_files(tmp_path):
    for name in ("b", "a", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "c.txt").write_text("")
    assert layout.list_subdirs(tmp_path) == ["a", "b"]


def test_split_checks_name_the_dataset_and_the_allowed_splits():
    assert layout.check_split("nih", None, (None, "train")) is None
    with pytest.raises(ValueError, match=r"nih: split must be one of \[None, 'train'\], got 'val'"):
        layout.check_split("nih", "val", (None, "train"))
    assert layout.check_test_split("imagenet-a", "test") == "test"
    with pytest.raises(ValueError, match=r"imagenet-a is a test set: split must be one of \('test',\), got 'val'"):
        layout.check_test_split("imagenet-a", "val")


@pytest.mark.parametrize("compression", ["plain", "gz", "zip"])
def test_read_table_reads_plain_gz_and_zip_verbatim(tmp_path, compression):
    text = "\ufeffImage Index, EncodedPixels,extra\r\na.png,1 2\r\n\r\nb.png,-1,x\r\n"
    if compression == "plain":
        path = tmp_path / "t.csv"
        path.write_text(text, encoding="utf-8", newline="")
    elif compression == "gz":
        path = tmp_path / "t.csv.gz"
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        import zipfile

        path = tmp_path / "t.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("inner/t.csv", text)
    table = layout.read_table(path)
    assert table.header == ["Image Index", " EncodedPixels", "extra"]
    assert table.column("EncodedPixels") == 1 and table.column("nope", required=False) is None
    assert list(table.rows) == [["a.png", "1 2", ""], ["b.png", "-1", "x"]]
    with pytest.raises(ValueError, match="missing column 'nope'"):
        table.column("nope")


def test_kind_of_reads_the_extension():
    assert [layout.kind_of(n) for n in ("a.PNG", "b.jpeg", "c.jpg", "d.dcm", "e.dicom")] == ["png", "jpg", "jpg", "dcm", "dcm"]
    with pytest.raises(ValueError, match="unsupported image file extension '.nii'"):
        layout.kind_of("ct.nii")


def test_every_sniffer_reads_real_encoder_output_the_same_way():
    """image_suffix (ImageNet copies), the HF adapter and the decoders share sniff_image."""
    cases = {
        "jpeg": _encoded("JPEG"),
        "png": _encoded("PNG"),
        "webp": _encoded("WEBP"),
        "cmyk-jpeg": _encoded("JPEG", "CMYK"),
        "grey-png": _encoded("PNG", "L"),
    }
    expected = {"jpeg": "jpg", "png": "png", "webp": "webp", "cmyk-jpeg": "jpg", "grey-png": "png"}
    for name, data in cases.items():
        fmt = sniff_image(data)
        assert hf_suffix(data) == expected[name] == {"jpeg": "jpg"}.get(fmt, fmt)
        assert layout.image_suffix(data) == (None if fmt == "webp" else expected[name])
    gif = io.BytesIO()
    Image.new("L", (4, 4)).save(gif, format="GIF")
    for data in (gif.getvalue(), b"", b"\xff\xd8", b"RIFF\x00\x00\x00\x00WAVE"):
        assert sniff_image(data) is None and layout.image_suffix(data) is None


def test_the_former_module_paths_give_the_layout_helpers():
    import loaders.imagenet.common as imagenet_common
    import loaders.xray.common as xray_common

    for name in ("FileListings", "Table", "check_split", "find_file", "read_table"):
        assert getattr(xray_common, name) is getattr(layout, name) and name in xray_common.__all__
    for name in ("TEST_SPLITS", "check_test_split", "find_dir", "image_suffix", "list_subdirs"):
        assert getattr(imagenet_common, name) is getattr(layout, name) and name in imagenet_common.__all__
