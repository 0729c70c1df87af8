import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import loaders
from loaders import CODECS, AudioClip, CodecError, VideoClip, decode, decode_sample, encode, encode_sample, get_codec


def _gradient(c, h, w, dtype=torch.uint8, high=255):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, high + 1, (c, h, w), generator=g, dtype=torch.int64).to(dtype)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_8bit_round_trips_bit_exactly(channels):
    image = _gradient(channels, 17, 23)
    assert torch.equal(decode("png", encode("png", image)), image)


def test_png_16bit_round_trips_bit_exactly_and_stays_uint16():
    image = _gradient(1, 19, 11, dtype=torch.int64, high=65535).to(torch.uint16)
    data = encode("png", image)
    assert Image.open(io.BytesIO(data)).mode in ("I;16", "I;16B", "I")  # a real 16-bit PNG
    out = decode("png", data)
    assert out.dtype == torch.uint16 and torch.equal(out.to(torch.int64), image.to(torch.int64))


@pytest.mark.parametrize("padding", [753, 0])  # a 256-entry palette (8-bit PNG); 5 entries (PIL writes 4-bit)
def test_palette_png_decodes_to_rgb_but_palette_mask_keeps_indices(padding):
    indices = np.random.default_rng(0).integers(0, 5, (6, 7), dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([10, 20, 30, 200, 0, 0, 0, 200, 0, 0, 0, 200, 255, 255, 255] + [0] * padding)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert buffer.getvalue()[24] == (8 if padding else 4)  # IHDR bit depth
    rgb = decode("png", buffer.getvalue())
    assert rgb.shape == (3, 6, 7)
    assert rgb[:, 0, 0].tolist() == [[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200], [255, 255, 255]][indices[0, 0]]
    assert torch.equal(decode("mask.png", buffer.getvalue()), torch.from_numpy(indices.astype(np.int64)))


@pytest.mark.parametrize("high", [3, 255, 1000, 65535])
def test_mask_round_trips_bit_exactly(high):
    mask = _gradient(1, 9, 13, dtype=torch.int64, high=high)[0]
    out = decode("mask.png", encode("mask.png", mask))
    assert out.dtype == torch.int64 and torch.equal(out, mask)


@pytest.mark.parametrize("bad", [torch.tensor([[-1, 0]]), torch.tensor([[70000]]), torch.zeros(2, 2), torch.zeros(1, 2, 2, dtype=torch.int64)])
def test_mask_encoder_rejects_what_a_png_mask_cannot_hold(bad):
    with pytest.raises(CodecError, match="mask.png"):
        encode("mask.png", bad)


def test_jpeg_is_lossy_but_close_and_cmyk_becomes_rgb():
    x = torch.linspace(0, 255, 32).round().to(torch.uint8)
    image = torch.stack([x[None].expand(32, 32), x[:, None].expand(32, 32), torch.full((32, 32), 128, dtype=torch.uint8)])
    out = decode("jpg", encode("jpg", image))
    assert out.shape == image.shape and (out.float() - image.float()).abs().mean() < 3
    buffer = io.BytesIO()
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(buffer, format="JPEG")
    rgb = decode("jpg", buffer.getvalue())
    assert rgb.shape == (3, 6, 8) and rgb[0].float().mean() > 200 and rgb[1].float().mean() < 60


def _pil_jpeg(array: np.ndarray, mode: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"subsampling": 0}, {"subsampling": 1},
                                     {"quality": 40, "optimize": True}, {"restart_marker_blocks": 2}])
@pytest.mark.parametrize("source", ["RGB", "L", "CMYK"])
def test_jpeg_decoding_equals_torchvision_io_pixel_for_pixel(options, source):
    """The simplejpeg fast path (YCbCr and grey JPEGs) must give torchvision.io's exact pixels."""
    from loaders import media

    if media._torchvision_io() is None:
        pytest.skip("this torchvision has no image codecs to compare with")
    from torchvision.io import ImageReadMode, decode_image

    rng = np.random.default_rng(1)
    data = _pil_jpeg((rng.random((61, 83, 3)) * 255).astype(np.uint8), source, **options)
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    fast_path_taken = media._decode_plain_jpeg(data, "RGB") is not None
    assert fast_path_taken == (source != "CMYK")  # CMYK is left to torchvision.io
    for mode, tv_mode in (("RGB", ImageReadMode.RGB), ("L", ImageReadMode.GRAY)):
        out = media.decode_image(data, suffix="jpg", mode=mode)
        assert torch.equal(out, decode_image(raw, mode=tv_mode)), (mode, options)
    native = media.decode_image(data, suffix="jpg")
    assert native.shape == ((1 if source == "L" else 3), 61, 83) and native.dtype == torch.uint8


def test_truncated_jpeg_keeps_torchvision_io_behaviour():
    from loaders import media

    if media._torchvision_io() is None:
        pytest.skip("this torchvision has no image codecs to compare with")
    from torchvision.io import ImageReadMode, decode_image

    data = _pil_jpeg((np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8), "RGB")
    cut = data[: len(data) // 2]
    assert media._decode_plain_jpeg(cut, "RGB") is None  # libjpeg-turbo only warns: not ours to hide
    try:
        expected = decode_image(torch.frombuffer(bytearray(cut), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:
        with pytest.raises(CodecError, match="jpg"):
            decode("jpg", cut)
    else:
        assert torch.equal(decode("jpg", cut), expected)


def _pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_pil_path_decodes_like_torchvision_io_where_torchvision_has_no_codecs(monkeypatch):
    """torchvision 0.29 deprecated its image codecs; without them PIL must give the same images."""
    from loaders import media

    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (13, 17, 3), dtype=np.uint8))
    grey16 = Image.fromarray(rng.integers(0, 65536, (13, 17), dtype=np.uint16))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=7)
    payloads = {
        "L": _pil_bytes(rgb.convert("L"), "PNG"), "RGB": _pil_bytes(rgb, "PNG"), "RGBA": _pil_bytes(rgb.convert("RGBA"), "PNG"),
        "LA": _pil_bytes(rgb.convert("LA"), "PNG"), "P": _pil_bytes(palette, "PNG"), "I;16": _pil_bytes(grey16, "PNG"),
        "webp": _pil_bytes(rgb, "WEBP", lossless=True),
    }
    cases = [(name, suffix, mode) for name in payloads for suffix in ("png", "mask.png") for mode in ("unchanged", "RGB", "L")]
    scaled = torch.from_numpy(np.round(np.array(grey16) / 257).astype(np.uint8))
    assert torch.equal(media.decode_image(payloads["I;16"], mode="L"), scaled[None])  # 16 -> 8 bits, rescaled
    assert torch.equal(media.decode_image(payloads["I;16"], mode="RGB"), scaled.expand(3, -1, -1))
    expected = {case: media.decode_image(payloads[case[0]], suffix=case[1], mode=case[2]) for case in cases}
    cmyk = _pil_bytes(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "JPEG")
    cmyk_expected = media.decode_image(cmyk, suffix="jpg")
    webp_grey = expected[("webp", "png", "L")]
    assert webp_grey.shape == (1, 13, 17) and torch.equal(webp_grey, torch.from_numpy(np.array(rgb.convert("L")))[None])
    monkeypatch.setattr(media, "_torchvision_io", lambda: None)
    for case in cases:
        out = media.decode_image(payloads[case[0]], suffix=case[1], mode=case[2])
        assert out.dtype == expected[case].dtype and out.shape == expected[case].shape, case
        # colour -> grey: libpng's rounding is within 1 of PIL's; everything else is exact
        tolerance = 1 if case[2] == "L" and case[0] in ("RGB", "RGBA", "P") else 0
        assert (out.int() - expected[case].int()).abs().max() <= tolerance, case
    out = media.decode_image(cmyk, suffix="jpg")
    assert out.shape == cmyk_expected.shape and (out.int() - cmyk_expected.int()).abs().max() <= 3
    with pytest.raises(CodecError, match="cannot decode"):
        media.decode_image(payloads["RGB"][:40], suffix="png")
    image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()
    assert torch.equal(decode("png", encode("png", image)), image)
    assert torch.equal(decode("png", encode("png", image[:1])), image[:1])
    x = torch.linspace(0, 255, 32).round().to(torch.uint8)
    smooth = torch.stack([x[None].expand(32, 32), x[:, None].expand(32, 32), torch.full((32, 32), 128, dtype=torch.uint8)])
    assert (decode("jpg", encode("jpg", smooth)).float() - smooth.float()).abs().mean() < 3
    assert decode("jpg", encode("jpg", smooth[:1])).shape == (1, 32, 32)


def test_image_mode_conversions_in_decode_sample():
    grey = encode("jpg", torch.full((1, 8, 8), 90, dtype=torch.uint8))
    assert decode_sample({"jpg": grey})["image"].shape == (1, 8, 8)
    assert decode_sample({"jpg": grey}, image_mode="RGB")["image"].shape == (3, 8, 8)


def test_small_codecs_round_trip():
    assert decode("cls", encode("cls", 7)) == 7
    assert decode("cls", encode("cls", np.int64(3))) == 3
    assert decode("txt", encode("txt", "héllo\nworld")) == "héllo\nworld"
    meta = {"b": [1, 2.5, None, "x"], "a": {"nested": True}}
    assert decode("json", encode("json", meta)) == meta
    labels = torch.tensor([0.0, 1.0, float("nan"), 0.25])
    out = decode("labels.npy", encode("labels.npy", labels))
    assert out.dtype == torch.float32 and torch.equal(out.isnan(), labels.isnan())
    assert torch.equal(out.nan_to_num(), labels.nan_to_num())
    for array in (np.arange(12, dtype=np.int16).reshape(3, 4), np.random.default_rng(0).random((2, 3, 4))):
        assert np.array_equal(decode("npy", encode("npy", array)).numpy(), array)
    assert decode("text.json", encode("text.json", ["a", "b"])) == ["a", "b"]


@pytest.mark.parametrize(("suffix", "value"), [("cls", 1.5), ("cls", True), ("txt", b"bytes"), ("json", {"x": float("nan")}), ("json", {"x": object()}), ("labels.npy", torch.zeros(2, 2))])
def test_encoders_refuse_values_they_cannot_store_exactly(suffix, value):
    with pytest.raises(CodecError, match=suffix.split(".")[0]):
        encode(suffix, value)


@pytest.mark.parametrize(("suffix", "payload"), [("cls", b"seven"), ("json", b"{bad"), ("json", b'{"x": NaN}'), ("txt", b"\xff\xfe\xfa"), ("npy", b"\x93NUMPY garbage"), ("png", b""), ("jpg", b"\xff\xd8\xff\xe0 truncated")])
def test_corrupt_payloads_raise_codec_errors(suffix, payload):
    with pytest.raises(CodecError) as info:
        decode(suffix, payload)
    assert info.value.suffix in (suffix, "npy")


def test_audio_round_trips_bit_exactly():
    rng = np.random.default_rng(0)
    pcm = rng.integers(-32768, 32768, size=(2, 4000)).astype(np.float32) / 32768.0
    clip = AudioClip(torch.from_numpy(pcm), 16000)
    for suffix in ("wav", "flac"):
        out = decode(suffix, encode(suffix, clip))
        assert out.sample_rate == 16000 and out.samples.dtype == torch.float32
        assert torch.equal(out.samples, clip.samples), suffix
    floats = AudioClip(torch.from_numpy(rng.uniform(-1, 1, (1, 1000)).astype(np.float32)), 8000)
    assert torch.equal(decode("wav", encode("wav", floats)).samples, floats.samples)  # float WAV is exact for any float32


def test_video_round_trip_with_audio_track():
    t = torch.arange(6, dtype=torch.uint8)
    frames = (t[:, None, None, None] * 40).expand(6, 3, 16, 24).contiguous()
    tone = torch.sin(torch.arange(4800) / 16000 * 2 * torch.pi * 440)[None] * 0.5
    data = encode("mp4", VideoClip(frames, 10.0, tone, 16000))
    out = decode("mp4", data)
    assert out.frames.shape == (6, 3, 16, 24) and abs(out.fps - 10.0) < 1e-6
    assert (out.frames.float().mean(dim=(1, 2, 3)) - frames.float().mean(dim=(1, 2, 3))).abs().max() < 4
    assert out.audio is not None and out.sample_rate == 16000 and out.audio.shape[1] >= 4800 - 1024
    sample = decode_sample({"__key__": "v", "mp4": data})
    assert sample["video"].shape == (6, 3, 16, 24) and sample["meta"]["fps"] == pytest.approx(10.0)
    assert sample["meta"]["sample_rate"] == 16000 and sample["audio"].ndim == 2


@pytest.mark.parametrize(("height", "width"), [(24, 32), (48, 64)])
def test_video_encoding_is_reproducible(height, width):
    t = torch.arange(20)[:, None, None, None]
    y, x = torch.arange(height)[None, None, :, None], torch.arange(width)[None, None, None, :]
    frames = ((t * 7 + y * 3 + x * 5 + torch.arange(3)[None, :, None, None] * 40) % 256).to(torch.uint8)
    clip = VideoClip(frames.expand(20, 3, height, width).contiguous(), 25.0)
    assert len({encode("mp4", clip) for _ in range(12)}) == 1


def test_truncated_video_raises():
    frames = torch.zeros(4, 3, 16, 16, dtype=torch.uint8)
    data = encode("mp4", VideoClip(frames, 5.0))
    with pytest.raises(CodecError, match="mp4"):
        decode("mp4", data[: len(data) // 3])
    with pytest.raises(CodecError, match="even"):
        encode("mp4", VideoClip(torch.zeros(1, 3, 15, 16, dtype=torch.uint8), 5.0))


@pytest.mark.parametrize("suffix", ["pyd", "pickle", "pkl", "pth", "pt", "model.pth"])
def test_pickle_suffixes_are_refused(suffix):
    payload = pickle.dumps({"x": 1})
    with pytest.raises(CodecError, match="pickle"):
        decode(suffix, payload)


def test_pickled_npy_object_array_is_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)  # what an attacker would write
    with pytest.raises(CodecError, match="npy"):
        decode("npy", buffer.getvalue())
    with pytest.raises(CodecError, match="object"):
        encode("npy", np.array([None], dtype=object))


def test_unknown_suffix_raises_listing_known_ones():
    with pytest.raises(CodecError, match="unknown suffix.*'cls'"):
        get_codec("xyz")
    with pytest.raises(CodecError, match="unknown"):
        decode_sample({"__key__": "k", "weird": b"1"})


def test_compound_suffix_falls_back_to_last_part_and_keeps_its_field_name():
    image = _gradient(3, 4, 4)
    sample = decode_sample({"__key__": "k", "left.png": encode("png", image), "mask.png": encode("mask.png", image[0].long())})
    assert torch.equal(sample["left.png"], image) and sample["mask"].dtype == torch.int64


def test_dcm_is_decode_only():
    assert CODECS["dcm"].encode is None
    with pytest.raises(CodecError, match="decode-only"):
        encode("dcm", torch.zeros(1, 2, 2, dtype=torch.uint16))


def test_encode_sample_decode_sample_round_trip_with_rates():
    sample = {
        "__key__": "clip/0",
        "__source__": "test",
        "image": _gradient(3, 8, 8),
        "mask": _gradient(1, 8, 8, dtype=torch.int64, high=3)[0],
        "label": 4,
        "labels": torch.tensor([1.0, 0.0]),
        "audio": torch.zeros(1, 160),
        "text": ["first caption", "second"],
        "meta": {"sample_rate": 16000, "source": "x"},
    }
    encoded = encode_sample(sample)
    assert sorted(encoded) == sorted(["__key__", "__source__", "png", "mask.png", "cls", "labels.npy", "flac", "text.json", "json"])
    decoded = decode_sample(encoded)
    loaders.validate_sample(decoded)
    assert torch.equal(decoded["image"], sample["image"]) and torch.equal(decoded["mask"], sample["mask"])
    assert decoded["text"] == sample["text"] and decoded["meta"] == sample["meta"] and decoded["label"] == 4
    with pytest.raises(CodecError, match="sample_rate"):
        encode_sample({"__key__": "a", "audio": torch.zeros(1, 4)})
    with pytest.raises(CodecError, match="no suffix"):
        encode_sample({"__key__": "a", "boxes": torch.zeros(1, 4)})
    assert "boxes.npy" in encode_sample({"__key__": "a", "boxes": torch.zeros(1, 4)}, {"boxes": "boxes.npy"})
