"""Adapter behaviour shared by every collection: image output options, encoded (shard) samples,
the error policy, option validation, ``merge``, the CLI summary and a real shard build."""

from __future__ import annotations

import inspect
import io
import re
import tarfile

import numpy as np
import pytest
import torch

import loaders.xray  # noqa: F401
from loaders import SampleError, dataset_factory, open_dataset, validate_sample
from loaders.codecs import decode_sample
from loaders.dicom import DicomOptions
from loaders.xray import PATHOLOGIES, XRayDataset, merge

COLLECTIONS = {  # name -> (builder, sub-folder the adapter opens, options)
    "nih": ("nih", "", {}),
    "nih-google": ("nih", "", {"views": "*"}),
    "chexpert": ("chexpert", "CheXpert-v1.0-small", {}),
    "mimic-cxr": ("mimic", "", {}),
    "padchest": ("padchest", "", {}),
    "rsna-pneumonia": ("rsna", "", {}),
    "siim-pneumothorax": ("siim", "", {}),
    "vindr-cxr": ("vindr", "", {}),
    "openi": ("openi", "", {}),
    "covid19": ("covid19", "", {}),
    "nlm-tb": ("nlmtb", "", {}),
}


def build(xray, tmp_path, name, **options):
    builder, sub, defaults = COLLECTIONS[name]
    getattr(xray, builder)(tmp_path)
    return open_dataset(name, root=tmp_path / sub if sub else tmp_path, **{**defaults, **options})


@pytest.mark.parametrize("name", sorted(COLLECTIONS))
def test_datasets_show_summarises_each_collection(xray, tmp_path, name):
    from datafactory.cli.datasets import describe_dataset

    ds = build(xray, tmp_path, name)
    builder, sub, defaults = COLLECTIONS[name]
    summary = describe_dataset(name, str(tmp_path / sub if sub else tmp_path), None, **defaults)
    assert summary["samples"] == len(ds) > 0 and summary["adapter"] == type(ds).__name__
    assert summary["first_sample"]["labels"].startswith("torch.float32 [18]")


@pytest.mark.parametrize("name", sorted(COLLECTIONS))
def test_encoded_samples_decode_to_the_decoded_ones(xray, tmp_path, name):
    """What a shard stores (decode=False) decodes back to the native sample, losslessly."""
    ds = build(xray, tmp_path, name)
    assert len(ds) > 0
    for i in range(len(ds)):
        decoded = validate_sample(ds[i])
        encoded = ds.load(i, decode=False)
        assert all(isinstance(v, bytes) for k, v in encoded.items() if not k.startswith("__"))
        back = decode_sample(encoded)
        image = back["image"][:1]  # an RGB JPEG is stored as is; the adapter keeps channel 0
        assert image.dtype == decoded["image"].dtype and torch.equal(image, decoded["image"])
        np.testing.assert_array_equal(back["labels"].numpy(), decoded["labels"].numpy())
        assert back["meta"] == decoded["meta"]
        if "mask" in decoded:
            assert torch.equal(back["mask"], decoded["mask"].long())
        if "label" in decoded:
            assert back["label"] == decoded["label"]
        record = ds.index[i]
        if record["kind"] != "dcm":  # PNG/JPEG: the original bytes, byte for byte
            assert encoded[record["kind"]] == open(record["path"], "rb").read()
        else:
            assert "png" in encoded and "dcm" not in encoded


def test_image_formats(xray, tmp_path):
    native = build(xray, tmp_path, "padchest")
    assert native[0]["image"].dtype == torch.uint16 and native[0]["meta"]["maxval"] == 65535
    x = native[0]["image"].to(torch.float64)
    eight = build(xray, tmp_path, "padchest", image_format="uint8")[0]["image"]
    assert eight.dtype == torch.uint8 and torch.equal(eight, (x * 255 / 65535).round().to(torch.uint8))
    floats = build(xray, tmp_path, "padchest", image_format="float")[0]["image"]
    assert floats.dtype == torch.float32
    torch.testing.assert_close(floats.double(), (2 * x / 65535 - 1) * 1024, rtol=0, atol=1e-3)
    assert -1024 <= floats.min() and floats.max() <= 1024
    vindr = build(xray, tmp_path / "v", "vindr-cxr", image_format="float")[0]  # 12-bit DICOM: maxval 4095
    assert vindr["meta"]["maxval"] == 4095 and vindr["image"].dtype == torch.float32
    with pytest.raises(ValueError, match="image_format"):
        build(xray, tmp_path, "nih", image_format="rgb")


def test_dicom_collections_apply_the_display_pipeline(xray, tmp_path):
    ds = build(xray, tmp_path, "vindr-cxr")
    first = ds[0]  # 12-bit MONOCHROME1 with a window
    assert first["meta"]["dicom"]["photometric"] == "MONOCHROME1" and first["meta"]["dicom"]["inverted"]
    assert first["meta"]["dicom"]["voi"]["width"] == 1024.0
    third = ds[2]  # 8-bit MONOCHROME1, RLE: display = 255 - stored
    stored = xray.image_array(62)
    np.testing.assert_array_equal(third["image"][0].numpy(), 255 - stored)
    from loaders.dicom import DicomOptions

    raw = build(xray, tmp_path, "vindr-cxr", dicom=DicomOptions(fix_monochrome=False))[2]
    np.testing.assert_array_equal(raw["image"][0].numpy(), stored)
    rsna = build(xray, tmp_path / "r", "rsna-pneumonia")
    np.testing.assert_array_equal(rsna[0]["image"][0].numpy(), xray.image_array(40))  # uncompressed, exact


def test_missing_and_corrupt_files_follow_the_error_policy(xray, tmp_path):
    ds = build(xray, tmp_path, "siim-pneumothorax")
    path = ds.index[1]["path"]
    data = open(path, "rb").read()
    open(path, "wb").write(data[:200])
    (tmp_path / "extra").mkdir()
    with pytest.raises(SampleError, match=path.split("/")[-1]):
        ds[1]
    skipping = build(xray, tmp_path, "siim-pneumothorax", on_error="skip")
    open(path, "wb").write(data[:200])  # the builder rewrote it; damage it again
    import os

    os.remove(skipping.index[2]["path"])
    samples = list(skipping.samples())
    stats = skipping.stats()
    assert len(samples) == 1 and stats["attempted"] == 3 and stats["loaded"] == 1 and stats["skipped"] == 2
    assert any(s["key"] == skipping.index[2]["__key__"] for s in stats["skips"])
    nih = build(xray, tmp_path / "n", "nih")
    os.remove(nih.index[0]["path"])
    with pytest.raises(SampleError, match="00000001_000.png"):
        nih[0]


def _transform(sample):
    return sample


@pytest.mark.parametrize("name", sorted(COLLECTIONS))
def test_each_constructor_keeps_the_shared_options_explicit_and_passes_them_on(xray, tmp_path, name):
    """Every collection passes the options it shares with XRayDataset on in one call; its own
    signature (which the registry checks options against) still lists each one, same default."""
    factory = dataset_factory(name)
    shared = dict(inspect.signature(XRayDataset.__init__).parameters)
    shared.pop("self")
    own = inspect.signature(factory).parameters
    for option, parameter in shared.items():
        assert option in own, option
        assert own[option].kind == parameter.kind, option
        if option != "split":  # each collection has its own default split
            assert (own[option].default, own[option].annotation) == (parameter.default, parameter.annotation), option
    dicom = DicomOptions(voi_lut=False)
    ds = build(xray, tmp_path, name, views="*", unique_patients=True, image_format="uint8", dicom=dicom, decode=False,
               on_error="skip", transform=_transform)
    assert (ds.views, ds.unique_patients, ds.image_format, ds.dicom, ds.decode, ds.on_error, ds.transform, ds.strict) == (
        None, True, "uint8", dicom, False, "skip", _transform, False)
    assert ds.root == tmp_path / COLLECTIONS[name][1] and ds.split == own["split"].default
    assert ds.split in factory.splits
    with pytest.raises(ValueError, match=rf"^{name}: split must be one of {re.escape(str(list(factory.splits)))}, got 'bogus'$"):
        build(xray, tmp_path, name, split="bogus")
    with pytest.raises(ValueError, match="image_format must be one of"):
        build(xray, tmp_path, name, image_format="bogus")
    with pytest.raises(TypeError, match="strict must be a bool"):
        build(xray, tmp_path, name, strict="yes")


def test_options_are_validated(xray, tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        build(xray, tmp_path, "chexpert", split="test")
    with pytest.raises(TypeError, match="views"):
        build(xray, tmp_path, "nih", views=5)
    with pytest.raises(ValueError, match="uncertain"):
        build(xray, tmp_path, "mimic-cxr", uncertain="maybe")
    with pytest.raises(TypeError, match="does not accept"):
        build(xray, tmp_path, "nih", colour=True)
    with pytest.raises(FileNotFoundError, match="csv="):
        open_dataset("nih", root=tmp_path / "CheXpert-v1.0-small")
    with pytest.raises(ValueError, match="missing column 'Finding Labels'"):
        xray.write_text(tmp_path / "bad" / "Data_Entry_2017.csv", "Image Index,Labels\nx.png,Mass\n")
        open_dataset("nih", root=tmp_path / "bad")


def test_merge_aligns_labels(xray, tmp_path):
    nih = build(xray, tmp_path / "a", "nih")
    chex = build(xray, tmp_path / "b", "chexpert")
    both = merge(nih, chex)
    assert len(both) == len(nih) + len(chex)
    np.testing.assert_array_equal(both.labels, np.concatenate([nih.labels, chex.labels]))
    sample = both[len(nih)]
    assert sample["__key__"] == "chexpert/" + chex.index[0]["__key__"] and sample["__source__"] == "chexpert"
    some = merge(nih, chex, pathologies=["Fracture", "Cardiomegaly", "Tuberculosis"])
    np.testing.assert_array_equal(some.labels[0], [np.nan, 1.0, np.nan])  # NIH: no Fracture column
    np.testing.assert_array_equal(some[0]["labels"].numpy(), [np.nan, 1.0, np.nan])
    encoded = merge(build(xray, tmp_path / "c", "nih", decode=False), pathologies=["Cardiomegaly"])[0]
    np.testing.assert_array_equal(decode_sample(encoded)["labels"].numpy(), [1.0])
    with pytest.raises(TypeError, match="XRayDataset"):
        merge(nih, open_dataset("shapes", size=2))


def test_cli_summary_and_shard_build(xray, tmp_path):
    from datafactory.cli.datasets import describe_dataset

    xray.rsna(tmp_path / "rsna")
    summary = describe_dataset("rsna-pneumonia", str(tmp_path / "rsna"))
    assert summary["samples"] == 4 and summary["class_names"] == list(PATHOLOGIES)
    assert summary["first_sample"]["image"].startswith("torch.uint8 [1, 24, 24]")
    from pipelines.build import build_shards

    report = build_shards("rsna-pneumonia", tmp_path / "shards", root=tmp_path / "rsna")
    assert report.written == 4 and report.skipped == 0
    with tarfile.open(tmp_path / "shards" / "000000.tar") as tar:
        names = sorted(m.name for m in tar.getmembers())
        png = tar.extractfile(f"{xray.RSNA_PATIENTS[0][0]}.png").read()
    assert f"{xray.RSNA_PATIENTS[0][0]}.labels.npy" in names and not any(n.endswith(".dcm") for n in names)
    from loaders.media import decode_image

    np.testing.assert_array_equal(decode_image(io.BytesIO(png).getvalue())[0].numpy(), xray.image_array(40))
