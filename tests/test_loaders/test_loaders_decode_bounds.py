"""Hostile image headers and encoder inputs (security issue items 9, 12, 13).

* Every image decode (PNG, JPEG, WebP, ``mask.png``) reads the size from the header and refuses
  more than ``loaders.get_max_pixels()`` pixels before anything is allocated. Files that claim
  gigapixels run in a child process whose address space may grow by 1 GiB only, so that the old
  code (which allocated what the header said) fails there instead of eating the machine.
* Zero-size images are refused by the encoders (libpng/libjpeg crashed the process: child
  process again); frame and sample rates are checked.
* The image format comes from the bytes, whatever the suffix says.

Fixtures are built with PIL (real encoders) or by patching the size fields of PIL's output.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

import loaders
from loaders import media
from loaders.codecs import decode, encode
from loaders.media import AudioClip, CodecError, VideoClip

LIMIT_MESSAGE = r"pixels, more than the limit of"


# --- fixture builders ------------------------------------------------------------------------


def _pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def crafted_png(width: int, height: int, *, palette: bool = False, colour: int = 0) -> bytes:
    """A PNG whose IHDR claims ``width x height`` over a tiny zlib stream (a few hundred bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3 if palette else colour, 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", ihdr)]
    if palette:
        chunks.append(_png_chunk(b"PLTE", bytes(range(12))))
    chunks += [_png_chunk(b"IDAT", zlib.compress(bytes(1 << 16), 9)), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def crafted_jpeg(width: int, height: int, *, decoy_thumbnail: bool = False) -> bytes:
    """A real 16x16 greyscale JPEG whose frame header (SOF0) is patched to ``width x height``."""
    data = bytearray(_pil_bytes(Image.new("L", (16, 16), 7), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    if decoy_thumbnail:  # an APP1 segment holding a small JPEG: its SOF must be skipped, not read
        thumbnail = _pil_bytes(Image.new("L", (8, 8), 7), "JPEG")
        body = b"Exif\x00\x00" + thumbnail
        data[2:2] = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    return bytes(data)


def crafted_webp(kind: str, width: int, height: int) -> bytes:
    """A real PIL WebP (``VP8 ``, ``VP8L`` or ``VP8X`` layout) with its size fields patched."""
    image = Image.new("RGB", (16, 16), (10, 20, 30))
    if kind == "VP8L":
        data = bytearray(_pil_bytes(image, "WEBP", lossless=True))
        assert data[12:16] == b"VP8L"
        data[21:25] = ((width - 1) | (height - 1) << 14).to_bytes(4, "little")
    elif kind == "VP8 ":
        data = bytearray(_pil_bytes(image, "WEBP", quality=50))
        assert data[12:16] == b"VP8 "
        data[26:30] = struct.pack("<HH", width, height)
    else:
        data = bytearray(_pil_bytes(image, "WEBP", lossless=True, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"))
        assert data[12:16] == b"VP8X"
        data[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


# --- item 9: the pixel limit -------------------------------------------------------------------

HUGE = {
    "png 65535x65535 grey": ("png", lambda: crafted_png(65535, 65535)),
    "png 65535x65535 rgb": ("png", lambda: crafted_png(65535, 65535, colour=2)),
    "png 30000x30000 palette": ("png", lambda: crafted_png(30000, 30000, palette=True)),
    "mask.png 65535x65535 grey": ("mask.png", lambda: crafted_png(65535, 65535)),
    "mask.png 65535x65535 palette": ("mask.png", lambda: crafted_png(65535, 65535, palette=True)),
    "jpg 65535x65535": ("jpg", lambda: crafted_jpeg(65535, 65535)),
    "jpg 65535x65535 behind an EXIF thumbnail": ("jpg", lambda: crafted_jpeg(65535, 65535, decoy_thumbnail=True)),
    "jpeg 30000x30000": ("jpeg", lambda: crafted_jpeg(30000, 30000)),
    "webp VP8L 16384x16384": ("webp", lambda: crafted_webp("VP8L", 16384, 16384)),
    "webp VP8 16383x16383": ("webp", lambda: crafted_webp("VP8 ", 16383, 16383)),
    "webp VP8X canvas 16384x16384": ("webp", lambda: crafted_webp("VP8X", 16384, 16384)),
    "png named jpg 65535x65535": ("jpg", lambda: crafted_png(65535, 65535)),
}


CHILD_IMPORTS = "from loaders.codecs import decode, encode\nfrom loaders.media import decode_image"


@pytest.fixture(scope="module")
def huge_outcomes(tmp_path_factory, limited_child) -> dict[str, dict[str, str]]:
    calls = {}
    for case, (suffix, build) in HUGE.items():
        data = build()
        assert len(data) < 4096
        calls[f"{case}/unchanged"] = (data, f"decode({suffix!r}, data)")
        calls[f"{case}/RGB"] = (data, f"decode_image(data, suffix={suffix!r}, mode='RGB')")
    return limited_child(tmp_path_factory.mktemp("huge"), calls, imports=CHILD_IMPORTS)


@pytest.mark.parametrize("mode", ["unchanged", "RGB"])
@pytest.mark.parametrize("case", sorted(HUGE))
def test_huge_headers_are_refused_before_allocating(huge_outcomes, case, mode):
    suffix, _ = HUGE[case]
    outcome = huge_outcomes[f"{case}/{mode}"]
    assert outcome["error"] == "CodecError", outcome
    assert "more than the limit of 178,956,970" in outcome["message"] and f"[{suffix}]" in outcome["message"]


def test_default_limit_is_twice_pils_warning_size():
    assert media.DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS == 178_956_970
    assert loaders.get_max_pixels() == media.DEFAULT_MAX_PIXELS


def _real_images() -> dict[str, tuple[str, bytes]]:
    rgb = Image.new("RGB", (40, 30), (200, 100, 50))
    return {
        "png": ("png", _pil_bytes(rgb, "PNG")),
        "jpg": ("jpg", _pil_bytes(rgb, "JPEG")),
        "cmyk jpg": ("jpg", _pil_bytes(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")),
        "webp": ("webp", _pil_bytes(rgb, "WEBP", lossless=True)),
        "mask.png": ("mask.png", _pil_bytes(Image.new("L", (40, 30), 3), "PNG")),
        "palette mask.png": ("mask.png", _pil_bytes(Image.new("L", (40, 30), 3).convert("P"), "PNG")),
    }


@pytest.mark.parametrize("case", sorted(_real_images()))
def test_set_max_pixels_lowers_and_raises_the_bound(case):
    suffix, data = _real_images()[case]
    assert loaders.set_max_pixels(40 * 30 - 1) == media.DEFAULT_MAX_PIXELS
    with pytest.raises(CodecError, match=rf"\[{suffix}\] a 40x30 \w+ image has 1,200 {LIMIT_MESSAGE} 1,199"):
        decode(suffix, data)
    assert loaders.set_max_pixels(40 * 30) == 40 * 30 - 1  # the limit itself is allowed
    expected_shape = (30, 40) if suffix == "mask.png" else (3, 30, 40)
    assert tuple(decode(suffix, data).shape) == expected_shape
    loaders.set_max_pixels(None)
    assert loaders.get_max_pixels() is None and tuple(decode(suffix, data).shape) == expected_shape


def test_environment_variable_is_read_at_first_use(monkeypatch):
    data = _pil_bytes(Image.new("L", (10, 10)), "PNG")
    monkeypatch.setenv(media.MAX_PIXELS_ENV, "99")
    with pytest.raises(CodecError, match=rf"100 {LIMIT_MESSAGE} 99 \(loaders.set_max_pixels / DATAFACTORY_MAX_PIXELS\)"):
        decode("png", data)
    monkeypatch.setenv(media.MAX_PIXELS_ENV, "1")  # read once: later changes do not count
    assert loaders.get_max_pixels() == 99
    monkeypatch.setattr(media, "_max_pixels", media._UNSET)
    monkeypatch.setenv(media.MAX_PIXELS_ENV, " None ")
    assert loaders.get_max_pixels() is None and decode("png", data).shape == (1, 10, 10)


@pytest.mark.parametrize("text", ["abc", "-5", "0", "1.5"])
def test_a_bad_environment_value_is_a_configuration_error_not_a_codec_error(monkeypatch, text):
    # media raises a plain ValueError (a codec-table wrapper may still re-wrap it)
    monkeypatch.setenv(media.MAX_PIXELS_ENV, text)
    with pytest.raises(ValueError, match="DATAFACTORY_MAX_PIXELS") as caught:
        media.decode_image(_pil_bytes(Image.new("L", (4, 4)), "PNG"), suffix="png")
    assert not isinstance(caught.value, CodecError)
    with pytest.raises(ValueError, match="DATAFACTORY_MAX_PIXELS"):
        loaders.get_max_pixels()


def test_a_bad_environment_value_is_not_wrapped_by_the_codec_table(monkeypatch):
    # under on_error="skip" a wrapped error would skip every image instead of stopping the run
    monkeypatch.setenv(media.MAX_PIXELS_ENV, "lots")
    png = _pil_bytes(Image.new("L", (4, 4)), "PNG")
    for call in (lambda: decode("png", png), lambda: loaders.decode_sample({"__key__": "k", "png": png})):
        with pytest.raises(ValueError, match="DATAFACTORY_MAX_PIXELS") as caught:
            call()
        assert not isinstance(caught.value, CodecError)


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "100"])
def test_set_max_pixels_validates(value):
    with pytest.raises(ValueError, match="max_pixels"):
        loaders.set_max_pixels(value)
    assert loaders.get_max_pixels() == media.DEFAULT_MAX_PIXELS


def test_pils_decompression_bomb_error_becomes_a_codec_error():
    # with our limit switched off, PIL's own refusal (> 2 x MAX_IMAGE_PIXELS) on the PIL path
    # (palette masks) must still be a CodecError, not PIL.Image.DecompressionBombError
    loaders.set_max_pixels(None)
    with pytest.raises(CodecError, match=r"\[mask.png\] refused by PIL's decompression-bomb check"):
        decode("mask.png", crafted_png(20000, 10000, palette=True))


def test_pils_decompression_bomb_warning_raised_as_an_error_becomes_a_codec_error():
    # 100M pixels: under our limit, over PIL's warning size; where warnings are errors, the
    # warning PIL raises must be a CodecError too
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(CodecError, match=r"\[mask.png\] refused by PIL's decompression-bomb check"):
            decode("mask.png", crafted_png(10000, 10000, palette=True))


def test_pil_fallback_checks_the_size_too(monkeypatch):
    monkeypatch.setattr(media, "_torchvision_io", lambda: None)
    monkeypatch.setattr(media, "simplejpeg", None)
    data = _pil_bytes(Image.new("RGB", (40, 30)), "JPEG")
    assert decode("jpg", data).shape == (3, 30, 40)
    loaders.set_max_pixels(1000)
    with pytest.raises(CodecError, match=rf"40x30 JPEG image has 1,200 {LIMIT_MESSAGE}"):
        decode("jpg", data)
    # PIL takes the size of the *last* frame header; ours reads the first (libjpeg refuses a
    # second): PIL's own size is checked before it allocates
    small = bytearray(_pil_bytes(Image.new("L", (16, 16)), "JPEG"))
    sof = small.find(b"\xff\xc0")
    second = bytearray(small[sof:sof + 2 + int.from_bytes(small[sof + 2:sof + 4], "big")])
    second[5:9] = struct.pack(">HH", 100, 100)
    small[sof + len(second):sof + len(second)] = second
    assert media.image_size(bytes(small), "jpeg") == (16, 16)
    with pytest.raises(CodecError, match=rf"100x100 JPEG image has 10,000 {LIMIT_MESSAGE}"):
        decode("jpg", bytes(small))


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"exif": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"},
                                     {"icc_profile": b"\x00" * 70000, "progressive": True}, {"subsampling": 0}])
@pytest.mark.parametrize("source", ["RGB", "L", "CMYK"])
def test_jpeg_header_size_agrees_with_pil(options, source):
    image = Image.new(source, (37, 21))
    data = _pil_bytes(image, "JPEG", **options)
    assert media.image_size(data, "jpeg") == (37, 21)
    assert decode("jpg", data).shape[1:] == (21, 37)


@pytest.mark.parametrize(("case", "data", "message"), [
    ("png without IHDR", b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IEND", b"") * 3, "no IHDR chunk"),
    ("png 0x10", crafted_png(0, 10), "size of 0x10"),
    ("jpeg without SOF", b"\xff\xd8\xff\xfe\x00\x04ab\xff\xd9", r"no complete frame header \(SOF\)"),
    ("jpeg with two SOFs", b"\xff\xd8" + (b"\xff\xc0\x00\x0b\x08\x00\x10\x00\x10\x01\x01\x11\x00") * 2 + b"\xff\xd9",
     r"\[png\] cannot decode image"),  # libjpeg refuses the second one
    ("jpeg 16x0", crafted_jpeg(16, 0), "size of 16x0"),
    ("webp with an unknown chunk", b"RIFF\x10\x00\x00\x00WEBPVP9 " + bytes(20), "unknown or truncated first chunk"),
    ("gif", _pil_bytes(Image.new("P", (4, 4)), "GIF"), "not a JPEG, PNG or WebP image"),
    ("bmp", _pil_bytes(Image.new("RGB", (4, 4)), "BMP"), "not a JPEG, PNG or WebP image"),
])
def test_malformed_or_foreign_headers_raise_codec_errors(case, data, message):
    with pytest.raises(CodecError, match=message):
        decode("png", data)


# --- item 13: the format comes from the bytes -------------------------------------------------


def _formats() -> dict[str, tuple[str, bytes]]:
    rgba = Image.new("RGBA", (12, 10), (10, 200, 30, 128))
    return {
        "cmyk jpeg": ("jpg", _pil_bytes(Image.new("CMYK", (12, 10), (0, 255, 255, 0)), "JPEG")),
        "rgba png": ("png", _pil_bytes(rgba, "PNG")),
        "rgba webp": ("webp", _pil_bytes(rgba, "WEBP", lossless=True)),
        "grey+alpha png": ("png", _pil_bytes(Image.new("LA", (12, 10), (9, 100)), "PNG")),
    }


@pytest.mark.parametrize("named", ["jpg", "jpeg", "png", "webp", "left.jpg", "x.png"])
@pytest.mark.parametrize("case", sorted(_formats()))
def test_every_image_suffix_decodes_by_content(case, named):
    true_suffix, data = _formats()[case]
    expected = decode(true_suffix, data)
    got = decode(named, data)
    assert got.shape == expected.shape and torch.equal(got, expected)
    assert got.shape[0] == {"cmyk jpeg": 3, "rgba png": 4, "rgba webp": 4, "grey+alpha png": 1}[case]
    for mode in ("RGB", "L"):
        assert torch.equal(media.decode_image(data, suffix=named, mode=mode),
                           media.decode_image(data, suffix=true_suffix, mode=mode))


def test_cmyk_jpeg_named_mask_png_is_refused_as_multichannel_not_read_as_cmyk():
    data = _formats()["cmyk jpeg"][1]
    with pytest.raises(CodecError, match="must be single-channel, got 3 channels"):
        decode("mask.png", data)


# --- item 12: encoders ------------------------------------------------------------------------


ZERO_SIZE = {
    "png rgb 0 rows": ("png", "torch.zeros(3, 0, 8, dtype=torch.uint8)"),
    "png grey 0 columns": ("png", "torch.zeros(1, 8, 0, dtype=torch.uint8)"),
    "png rgba 0x0": ("png", "torch.zeros(4, 0, 0, dtype=torch.uint8)"),
    "png 16-bit 0 rows": ("png", "torch.zeros(1, 0, 4, dtype=torch.int32)"),
    "jpg rgb 0 rows": ("jpg", "torch.zeros(3, 0, 8, dtype=torch.uint8)"),
    "jpg grey 0 columns": ("jpg", "torch.zeros(1, 8, 0, dtype=torch.uint8)"),
    "mask.png 0 rows": ("mask.png", "torch.zeros(0, 8, dtype=torch.int64)"),
    "mask.png 0 columns": ("mask.png", "torch.zeros(8, 0, dtype=torch.int64)"),
}


@pytest.fixture(scope="module")
def zero_size_outcomes(tmp_path_factory, limited_child) -> dict[str, dict[str, str]]:
    # in a child: the old encoders segfaulted the process
    calls = {case: (b"", f"encode({suffix!r}, {tensor})") for case, (suffix, tensor) in ZERO_SIZE.items()}
    return limited_child(tmp_path_factory.mktemp("zero"), calls, imports=CHILD_IMPORTS)


@pytest.mark.parametrize("case", sorted(ZERO_SIZE))
def test_zero_size_images_are_refused_by_the_encoders(zero_size_outcomes, case):
    suffix, _ = ZERO_SIZE[case]
    outcome = zero_size_outcomes[case]
    assert outcome["error"] == "CodecError", outcome
    assert f"[{suffix}] cannot encode an empty" in outcome["message"]


def _video(fps, audio=None, rate=None) -> VideoClip:
    return VideoClip(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), fps, audio, rate)


@pytest.mark.parametrize("fps", [float("nan"), float("inf"), -float("inf"), 0, -1, 1e-7, 1e9, "30", True, None])
def test_video_fps_must_be_finite_and_sane(fps):
    with pytest.raises(CodecError, match=r"\[mp4\] fps must be a finite number"):
        encode("mp4", _video(fps))


@pytest.mark.parametrize("rate", [0, -1, 44100.5, 44100.0, float("nan"), 10**9, 768_001, True, "44100"])
def test_audio_sample_rates_are_checked(rate):
    with pytest.raises(CodecError, match=r"\[wav\] sample_rate must be an int in \[1, 768000\]"):
        encode("wav", AudioClip(torch.zeros(1, 100), rate))
    with pytest.raises(CodecError, match=r"\[mp4\] sample_rate must be an int in \[1, 768000\]"):
        encode("mp4", _video(25.0, torch.zeros(1, 4000), rate))


def test_rates_the_container_cannot_store_are_codec_errors():
    # 768 kHz is a legal rate, but FLAC stops at 655,350 Hz: libsndfile's refusal is a CodecError
    assert encode("wav", AudioClip(torch.zeros(1, 100), 768_000))
    with pytest.raises(CodecError, match=r"\[flac\] cannot encode audio"):
        encode("flac", AudioClip(torch.zeros(1, 100), 768_000))


@pytest.mark.parametrize("fps", [1e-5, 0.5, 29.97, 1e5])
def test_sane_frame_rates_still_encode(fps):
    clip = media.decode_video(encode("mp4", _video(fps)))
    assert clip.frames.shape == (2, 3, 16, 16) and abs(clip.fps - fps) <= fps * 1e-3


def test_public_names_are_exported():
    assert loaders.get_max_pixels is media.get_max_pixels and loaders.set_max_pixels is media.set_max_pixels
    assert {"get_max_pixels", "set_max_pixels"} <= set(loaders.__all__)
    assert json.dumps(media.DEFAULT_MAX_PIXELS)
