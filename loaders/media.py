"""Image, mask, audio and video encoders/decoders behind the codec table.

Images decode into ``[C,H,W]`` tensors at their native channel count and bit depth (16-bit PNG
stays ``uint16``); only CMYK JPEGs are converted (to RGB) because no model consumes CMYK. YCbCr and
greyscale JPEGs -- nearly every photo -- go through ``simplejpeg`` (libjpeg-turbo 3, about 8% faster
per image than ``torchvision.io`` and not deprecated); its pixels equal ``torchvision.io``'s
exactly (same library, same accurate integer IDCT and fancy upsampling; a test compares them).
Everything else (PNG, WebP, CMYK/YCCK or 12-bit JPEG, a JPEG libjpeg-turbo only warns about)
goes through ``torchvision.io`` (libjpeg-turbo / libpng / libwebp), as does every image when
``simplejpeg`` is not installed. torchvision deprecated those codecs in 0.29; where a torchvision
no longer has them, images decode and encode through PIL instead (same pixels for PNG and WebP;
16-bit RGB PNGs, which PIL cannot hold, come out 8-bit there). Palette masks always go through
PIL, which keeps the indices of 1/2/4-bit palettes. Audio goes through ``soundfile`` with our own integer
scaling (``x * 32768``, not libsndfile's asymmetric 32767/32768 pair) so that 16-bit audio
round-trips bit-exactly. Video goes through PyAV (FFmpeg), H.264 in MP4.

Every failure of an underlying library is re-raised as :class:`CodecError` naming the format, so
adapters can attach the file name and apply their error policy.

Headers are hostile. Before any image is decoded its width and height are read from the header
(PNG ``IHDR``, the JPEG frame header ``SOFn``, the WebP ``VP8 ``/``VP8L``/``VP8X`` header) and an
image of more than :func:`get_max_pixels` pixels is refused with :class:`CodecError` -- a 100 kB
PNG can otherwise claim 65535 x 65535 pixels and make the decoder allocate gigabytes. The limit
defaults to :data:`DEFAULT_MAX_PIXELS` (178,956,970 pixels: where PIL's
``DecompressionBombError`` starts), is read from the environment variable
``DATAFACTORY_MAX_PIXELS`` (a positive integer, or ``none``) at first use, and is changed with
:func:`set_max_pixels` (``None`` disables it). DataLoader workers started with ``spawn`` see the
environment variable, not a value set in the parent. The DICOM decoder applies the same limit.
"""

from __future__ import annotations

import functools
import io
import math
import numbers
import os
from fractions import Fraction
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
import torch

try:
    import simplejpeg
except ImportError:  # pragma: no cover - a core dependency; torchvision.io decodes everything then
    simplejpeg = None

__all__ = [
    "AudioClip",
    "CodecError",
    "DEFAULT_MAX_PIXELS",
    "FPS_RANGE",
    "IMAGE_MODES",
    "MAX_SAMPLE_RATE",
    "VideoClip",
    "decode_audio",
    "decode_image",
    "decode_mask",
    "decode_video",
    "encode_audio",
    "encode_image",
    "encode_mask",
    "check_max_pixels",
    "get_max_pixels",
    "image_size",
    "set_max_pixels",
    "sniff_image",
]

_INT16_SCALE = 32768.0
_INT32_SCALE = 2147483648.0
#: the highest audio sample rate the encoders accept (Hz): the fastest rate audio hardware uses
MAX_SAMPLE_RATE = 768_000
#: the frame-rate range the video encoder accepts (frames per second)
FPS_RANGE = (1e-5, 1e5)


class CodecError(ValueError):
    """A payload could not be encoded or decoded.

    Attributes:
        suffix: the format (shard member suffix) involved.
        reason: what went wrong.
    """

    def __init__(self, suffix: str, reason: str) -> None:
        super().__init__(f"[{suffix}] {reason}")
        self.suffix = suffix
        self.reason = reason


class AudioClip(NamedTuple):
    """Decoded audio: float32 ``[channels, samples]`` and its sample rate in Hz."""

    samples: torch.Tensor
    sample_rate: int


class VideoClip(NamedTuple):
    """Decoded video: uint8 ``[T,C,H,W]`` frames, fps and (optional) its audio track."""

    frames: torch.Tensor
    fps: float
    audio: torch.Tensor | None = None
    sample_rate: int | None = None


@functools.cache
def _torchvision_io() -> Any:
    """torchvision.io's image codecs, or ``None`` where this torchvision no longer has them."""
    try:
        from torchvision.io import ImageReadMode, decode_image, encode_jpeg, encode_png
    except ImportError:
        return None
    return SimpleNamespace(ImageReadMode=ImageReadMode, decode_image=decode_image, encode_jpeg=encode_jpeg,
                           encode_png=encode_png)


def _as_uint8_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


# --- images -----------------------------------------------------------------------------


#: The default pixel limit: 2 x PIL's ``Image.MAX_IMAGE_PIXELS`` (89,478,485), the size at which
#: PIL raises ``DecompressionBombError``.
DEFAULT_MAX_PIXELS = 178_956_970
MAX_PIXELS_ENV = "DATAFACTORY_MAX_PIXELS"
_UNSET: Any = object()
_max_pixels: Any = _UNSET  # int, None (no limit) or _UNSET (not read from the environment yet)


def _validate_max_pixels(value: Any, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{source} must be a positive int or None, got {value!r}")
    return int(value)


def _max_pixels_from_env() -> int | None:
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    if text.lower() == "none":
        return None
    try:
        value = int(text.replace("_", ""), 10)
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive integer or 'none', got {text!r}") from None
    return _validate_max_pixels(value, MAX_PIXELS_ENV)


def get_max_pixels() -> int | None:
    """The largest image (width x height pixels) the decoders accept, or ``None`` for no limit.

    On first use the value comes from ``DATAFACTORY_MAX_PIXELS`` (a positive integer, or ``none``
    for no limit), else :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        ValueError: ``DATAFACTORY_MAX_PIXELS`` is set to something else (a configuration error,
            deliberately not a :class:`CodecError`, so that it is never skipped as a bad sample).
    """
    global _max_pixels
    if _max_pixels is _UNSET:
        _max_pixels = _max_pixels_from_env()
    return _max_pixels


def set_max_pixels(limit: int | None) -> int | None:
    """Set the pixel limit of every image and DICOM decode (``None``: no limit); returns the old one.

    The setting is per process: ``fork``-ed DataLoader workers inherit it, ``spawn``-ed ones read
    ``DATAFACTORY_MAX_PIXELS`` instead.
    """
    global _max_pixels
    new = _validate_max_pixels(limit, "max_pixels")
    previous = get_max_pixels()
    _max_pixels = new
    return previous


def check_max_pixels(pixels: int, *, suffix: str, what: str) -> None:
    """Raise :class:`CodecError` when ``pixels`` exceeds :func:`get_max_pixels`.

    Args:
        pixels: the pixel count the header asks for (width x height, times frames/samples
            where the decoder allocates those too).
        suffix: the format, for the error.
        what: a description of the size, e.g. ``"65535x65535 PNG"``.
    """
    limit = get_max_pixels()
    if limit is not None and pixels > limit:
        raise CodecError(suffix, f"{what} has {pixels:,} pixels, more than the limit of {limit:,} "
                                 f"(loaders.set_max_pixels / {MAX_PIXELS_ENV}); not decoded")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF0-3, 5-7, 9-11, 13-15 (0xC4 DHT, 0xC8 JPG and 0xCC DAC are not frame headers)
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_IMAGE_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP"}


def sniff_image(data: bytes) -> str | None:
    """The image format of ``data`` from its magic bytes: ``"jpeg"``, ``"png"``, ``"webp"`` or ``None``.

    The one place image magic bytes are matched: decoders, :func:`loaders.layout.image_suffix`
    (ImageNet's file copies) and the Hugging Face adapter all sniff through it.
    """
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == _PNG_SIGNATURE:
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def image_size(data: bytes, fmt: str, *, suffix: str = "image") -> tuple[int, int]:
    """``(width, height)`` from the header of a ``fmt`` image (see :func:`sniff_image`), no decoding.

    Reads a few bytes: the PNG ``IHDR`` chunk, the JPEG markers up to the first frame header
    (segments skipped by their lengths, as libjpeg does), the WebP ``VP8 ``/``VP8L`` frame
    header or the ``VP8X`` canvas (which every frame of an extended WebP must fit in).

    Raises:
        CodecError: the header is truncated or malformed, or a dimension is zero.
    """
    if fmt == "png":
        # signature (8) + IHDR length (4) + "IHDR" (4) + width (4) + height (4); PNG needs IHDR first
        if len(data) < 33 or data[12:16] != b"IHDR":
            raise CodecError(suffix, "malformed PNG: no IHDR chunk after the signature")
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    elif fmt == "jpeg":
        width, height = _jpeg_size(data, suffix)
    elif fmt == "webp":
        width, height = _webp_size(data, suffix)
    else:
        raise CodecError(suffix, f"unknown image format {fmt!r}")
    if width == 0 or height == 0:
        raise CodecError(suffix, f"malformed {_IMAGE_FORMATS[fmt]}: the header gives a size of {width}x{height}")
    return width, height


def _jpeg_size(data: bytes, suffix: str) -> tuple[int, int]:
    """The size in the first frame header (SOFn), walking the markers as libjpeg does.

    Fill bytes and stray bytes between markers are skipped as libjpeg skips them; every other
    segment is skipped by its length, so a frame header inside an EXIF thumbnail is never read.
    libjpeg refuses a second frame header before allocating; PIL (which would take the last one)
    has its size checked again in :func:`_decode_with_pil`.
    """
    end, i = len(data), 2
    while i < end:
        if data[i] != 0xFF:  # stray bytes before a marker
            i = data.find(b"\xff", i)
            if i < 0:
                break
        while i < end and data[i] == 0xFF:  # fill bytes
            i += 1
        if i + 2 >= end:
            break
        marker = data[i]
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # stuffed zero, TEM, RSTn, SOI: no length
            i += 1
            continue
        if marker == 0xD9 or marker == 0xDA:  # EOI, SOS: no frame header before the scan
            break
        length = (data[i + 1] << 8) | data[i + 2]
        if marker in _JPEG_SOF:
            if length < 8 or i + 8 > end:
                break
            # marker (1), length (2), precision (1), height (2), width (2)
            return (data[i + 6] << 8) | data[i + 7], (data[i + 4] << 8) | data[i + 5]
        if length < 2:
            raise CodecError(suffix, f"malformed JPEG: marker 0xFF{marker:02X} has length {length}")
        i += 1 + length
    raise CodecError(suffix, "malformed JPEG: no complete frame header (SOF) before the scan")


def _webp_size(data: bytes, suffix: str) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        # frame tag (3) at 20, start code 9d 01 2a, then 14-bit width and height (+ 2 scale bits)
        if data[23:26] != b"\x9d\x01\x2a":
            raise CodecError(suffix, "malformed WebP: bad VP8 start code")
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        if data[20] != 0x2F:
            raise CodecError(suffix, "malformed WebP: bad VP8L signature")
        bits = int.from_bytes(data[21:25], "little")  # 14-bit width - 1, 14-bit height - 1
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        # flags (1), reserved (3), 24-bit canvas width - 1, 24-bit canvas height - 1
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise CodecError(suffix, f"malformed WebP: unknown or truncated first chunk {bytes(chunk)!r}")


IMAGE_MODES = ("unchanged", "RGB", "L")


def decode_image(data: bytes, *, suffix: str = "image", mode: str = "unchanged") -> torch.Tensor:
    """Decode JPEG / PNG / WebP bytes into a ``[C,H,W]`` tensor (uint8, or uint16 for 16-bit PNG).

    The format is sniffed from the bytes, never from the suffix (ImageNet has PNGs named .JPEG):
    a CMYK JPEG named ``.png`` decodes exactly as one named ``.jpg``. Anything but JPEG, PNG or
    WebP is refused, and so is an image whose header asks for more than :func:`get_max_pixels`
    pixels (checked before anything is allocated).

    Args:
        mode: ``"unchanged"`` keeps the native channels (CMYK JPEGs become RGB, grey+alpha grey);
            ``"RGB"`` / ``"L"`` convert to 3 / 1 uint8 channels (the decoder's own conversion,
            within 1 of PIL's ``convert``; PIL's exact formula where the decoder has none;
            16-bit values are rescaled, ``round(v / 257)``).
    """
    if mode not in IMAGE_MODES:
        raise ValueError(f"mode must be one of {IMAGE_MODES}, got {mode!r}")
    if not data:
        raise CodecError(suffix, "empty payload")
    fmt = sniff_image(data)
    if fmt is None:
        raise CodecError(suffix, f"not a JPEG, PNG or WebP image (starts with {bytes(data[:8])!r})")
    width, height = image_size(data, fmt, suffix=suffix)
    check_max_pixels(width * height, suffix=suffix, what=f"a {width}x{height} {_IMAGE_FORMATS[fmt]} image")
    if fmt == "jpeg":
        fast = _decode_plain_jpeg(data, mode)
        if fast is not None:
            return fast
    tv = _torchvision_io()
    # PIL for palette masks too: torchvision.io returns no palette indices for 1/2/4-bit ones
    # (PIL writes those for palettes of up to 16 colours)
    if tv is None or (mode == "unchanged" and suffix == "mask.png" and _is_palette_png(data)):
        return _decode_with_pil(data, suffix, mode)
    ImageReadMode, tv_decode = tv.ImageReadMode, tv.decode_image
    raw = _as_uint8_tensor(data)
    if mode != "unchanged":
        try:
            if mode == "RGB" or fmt == "webp":  # libwebp has no grey output: convert below
                image = _to_uint8(tv_decode(raw, mode=ImageReadMode.RGB))
                return image if mode == "RGB" else _rgb_to_l(image)
            return _to_uint8(tv_decode(raw, mode=ImageReadMode.GRAY))  # 16-bit PNGs stay 16-bit there
        except (RuntimeError, ValueError) as error:
            raise CodecError(suffix, f"cannot decode image: {error}") from None
    # UNCHANGED would return palette indices for a palette PNG: expand those to RGB (masks use
    # decode_mask, which keeps the indices).
    mode = ImageReadMode.RGB if _is_palette_png(data) and suffix != "mask.png" else ImageReadMode.UNCHANGED
    try:
        image = tv_decode(raw, mode=mode)
        if image.shape[0] == 4 and fmt == "jpeg":  # CMYK JPEG, whatever its name
            image = tv_decode(raw, mode=ImageReadMode.RGB)
        elif image.shape[0] == 2:  # grey + alpha: keep the grey plane
            image = image[:1].contiguous()
    except (RuntimeError, ValueError) as error:
        raise CodecError(suffix, f"cannot decode image: {error}") from None
    return image


def _decode_plain_jpeg(data: bytes, mode: str) -> torch.Tensor | None:
    """A YCbCr or greyscale JPEG through simplejpeg, or ``None`` to leave it to ``torchvision.io``.

    ``None`` too for a JPEG that libjpeg-turbo decodes only with a warning (``strict=True``), so
    truncated and corrupt files keep ``torchvision.io``'s behaviour and error messages.
    """
    if simplejpeg is None or sniff_image(data) != "jpeg":
        return None
    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray"):
        return None
    grey = mode == "L" or (mode == "unchanged" and colorspace == "Gray")
    try:
        array = simplejpeg.decode_jpeg(data, colorspace="GRAY" if grey else "RGB", strict=True)
    except ValueError:
        return None
    # [H,W,C] -> [C,H,W] view: the same channels-last strides torchvision.io returns
    return torch.from_numpy(array).permute(2, 0, 1)


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    """16-bit values to 8 bits, ``round(v / 257)`` (never a tie: 257 is odd); uint8 unchanged."""
    return image if image.dtype == torch.uint8 else ((image.to(torch.int32) + 128) // 257).to(torch.uint8)


def _rgb_to_l(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[3,H,W]`` -> ``[1,H,W]`` with PIL's integer ITU-R 601 luma, bit for bit."""
    r, g, b = image.to(torch.int32)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)[None]


def _decode_with_pil(data: bytes, suffix: str, mode: str) -> torch.Tensor:
    """:func:`decode_image` through PIL (a torchvision without image codecs; palette masks).

    The caller has checked the header's size; PIL's own size is checked again before ``load``, and
    PIL's decompression-bomb refusal (its ``DecompressionBombError``, or its warning where
    warnings are errors) becomes a :class:`CodecError` too.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "WEBP")) as image:
            width, height = image.size
            check_max_pixels(width * height, suffix=suffix, what=f"a {width}x{height} {image.format} image")
            image.load()
            if mode != "unchanged" and image.mode.startswith("I;16"):  # PIL would clip, not rescale
                grey = _to_uint8(torch.from_numpy(np.array(image.convert("I;16")).astype(np.int32)))[None]
                return grey.expand(3, -1, -1).contiguous() if mode == "RGB" else grey
            if mode != "unchanged":
                image = image.convert(mode)
            elif image.mode == "P" and suffix == "mask.png":
                pass  # masks keep their palette indices
            elif image.mode in ("P", "PA", "CMYK", "YCbCr", "1"):
                image = image.convert("RGBA" if image.mode == "PA" else "L" if image.mode == "1" else "RGB")
            elif image.mode in ("LA", "La"):
                image = image.getchannel("L")
            elif image.mode == "I;16B":
                image = image.convert("I;16")
            array = np.array(image)
    except CodecError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise CodecError(suffix, f"refused by PIL's decompression-bomb check: {error}") from None
    except (OSError, ValueError, SyntaxError) as error:  # PIL raises these for broken files
        raise CodecError(suffix, f"cannot decode image: {error}") from None
    if array.dtype not in (np.uint8, np.uint16):
        raise CodecError(suffix, f"cannot decode image: unsupported PIL mode {image.mode!r}")
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)


def _is_palette_png(data: bytes) -> bool:
    # PNG signature (8) + IHDR length (4) + "IHDR" (4) + width (4) + height (4) + bit depth (1)
    return data[:8] == _PNG_SIGNATURE and len(data) > 25 and data[25] == 3


def encode_image(value: Any, fmt: str, *, suffix: str = "image", quality: int = 95) -> bytes:
    """Encode a ``[C,H,W]`` image tensor as ``fmt`` ("jpeg" or "png").

    PNG accepts uint8 with 1/3/4 channels and uint16 with one channel (lossless); JPEG accepts
    uint8 with 1 or 3 channels.
    """
    if not isinstance(value, torch.Tensor) or value.ndim != 3:
        raise CodecError(suffix, f"expects a [C,H,W] tensor, got {_describe(value)}")
    if value.shape[1] == 0 or value.shape[2] == 0:  # libpng/libjpeg would crash the process
        raise CodecError(suffix, f"cannot encode an empty image, got {_describe(value)}")
    image = value.detach().cpu().contiguous()
    channels = image.shape[0]
    if fmt == "jpeg":
        if image.dtype != torch.uint8 or channels not in (1, 3):
            raise CodecError(suffix, f"JPEG needs uint8 with 1 or 3 channels, got {_describe(image)}")
        tv = _torchvision_io()
        if tv is None:
            array = image.permute(1, 2, 0).numpy()
            return _pil_encode(array[:, :, 0] if channels == 1 else array, "JPEG", quality=quality)
        return tv.encode_jpeg(image, quality=quality).numpy().tobytes()
    if fmt != "png":
        raise CodecError(suffix, f"unknown image format {fmt!r}")
    if image.dtype == torch.uint8 and channels in (1, 3):
        tv = _torchvision_io()
        if tv is None:
            return _pil_png(image[0].numpy() if channels == 1 else image.permute(1, 2, 0).numpy(), None)
        return tv.encode_png(image).numpy().tobytes()
    if image.dtype == torch.uint8 and channels == 4:
        return _pil_png(image.permute(1, 2, 0).numpy(), "RGBA")
    if image.dtype in (torch.uint16, torch.int32, torch.int64, torch.int16) and channels == 1:
        array = image[0].to(torch.int64).numpy()
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise CodecError(suffix, "16-bit PNG values must lie in [0, 65535]")
        return _pil_png(array.astype(np.uint16), None)
    raise CodecError(suffix, f"PNG needs uint8 with 1/3/4 channels or 16-bit with 1 channel, got {_describe(image)}")


def _pil_png(array: np.ndarray, mode: str | None) -> bytes:
    return _pil_encode(array, "PNG", mode=mode)


def _pil_encode(array: np.ndarray, fmt: str, *, mode: str | None = None, **options: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def encode_mask(value: Any) -> bytes:
    """Encode an integer ``[H,W]`` mask as an 8-bit (max < 256) or 16-bit greyscale PNG."""
    if not isinstance(value, torch.Tensor) or value.ndim != 2:
        raise CodecError("mask.png", f"expects an [H,W] tensor, got {_describe(value)}")
    if value.is_floating_point() or value.is_complex():
        raise CodecError("mask.png", f"expects an integer mask, got dtype {value.dtype}")
    if value.numel() == 0:
        raise CodecError("mask.png", f"cannot encode an empty mask, got {_describe(value)}")
    mask = value.detach().cpu().to(torch.int64)
    low, high = (int(mask.min()), int(mask.max())) if mask.numel() else (0, 0)
    if low < 0 or high > 65535:
        raise CodecError("mask.png", f"mask values must lie in [0, 65535], got [{low}, {high}]")
    if high < 256:
        return encode_image(mask.to(torch.uint8)[None], "png", suffix="mask.png")
    return _pil_png(mask.numpy().astype(np.uint16), None)


def decode_mask(data: bytes) -> torch.Tensor:
    """Decode a single-channel PNG mask into an int64 ``[H,W]`` tensor (class indices)."""
    image = decode_image(data, suffix="mask.png")
    if image.shape[0] != 1:
        raise CodecError("mask.png", f"a mask must be single-channel, got {image.shape[0]} channels")
    return image[0].to(torch.int64)


# --- audio ------------------------------------------------------------------------------


def encode_audio(value: Any, fmt: str) -> bytes:
    """Encode an :class:`AudioClip` (or ``(samples, sample_rate)``) as ``fmt`` ("wav" or "flac").

    WAV stores 32-bit float (exact for any float32 input). FLAC stores 16-bit PCM: exact for
    audio that came from 16-bit sources (multiples of 1/32768); other values are rounded and
    values outside [-1, 1) are clipped.
    """
    import soundfile

    samples, rate = value if isinstance(value, tuple) and len(value) == 2 else (None, None)
    if not isinstance(samples, torch.Tensor) or samples.ndim != 2:
        raise CodecError(fmt, "expects AudioClip(samples=float [channels, samples], sample_rate=int > 0)")
    rate = _check_sample_rate(rate, fmt)
    if fmt not in ("wav", "flac"):
        raise CodecError(fmt, "audio format must be 'wav' or 'flac'")
    array = samples.detach().cpu().to(torch.float32).numpy().T  # soundfile wants [frames, channels]
    buffer = io.BytesIO()
    try:
        if fmt == "wav":
            soundfile.write(buffer, array, rate, format="WAV", subtype="FLOAT")
        else:
            pcm = np.clip(np.round(array.astype(np.float64) * _INT16_SCALE), -32768, 32767).astype(np.int16)
            soundfile.write(buffer, pcm, rate, format="FLAC", subtype="PCM_16")
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:  # e.g. FLAC above 655,350 Hz
        raise CodecError(fmt, f"cannot encode audio: {error}") from None
    return buffer.getvalue()


def _check_sample_rate(rate: Any, suffix: str) -> int:
    """An integer sample rate in ``[1, MAX_SAMPLE_RATE]`` Hz, else :class:`CodecError`."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or not 1 <= rate <= MAX_SAMPLE_RATE:
        raise CodecError(suffix, f"sample_rate must be an int in [1, {MAX_SAMPLE_RATE}] Hz, got {rate!r}")
    return int(rate)


def decode_audio(data: bytes, *, suffix: str = "audio") -> AudioClip:
    """Decode WAV/FLAC bytes into float32 ``[channels, samples]`` in [-1, 1) and the rate."""
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as handle:
            subtype = handle.subtype
            if subtype in ("PCM_16", "PCM_S8", "PCM_U8"):
                array = handle.read(dtype="int16", always_2d=True).astype(np.float32) / _INT16_SCALE
            elif subtype in ("PCM_24", "PCM_32"):
                array = (handle.read(dtype="int32", always_2d=True).astype(np.float64) / _INT32_SCALE).astype(np.float32)
            else:
                array = handle.read(dtype="float32", always_2d=True)
            rate = int(handle.samplerate)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise CodecError(suffix, f"cannot decode audio: {error}") from None
    return AudioClip(torch.from_numpy(np.ascontiguousarray(array.T)), rate)


# --- video ------------------------------------------------------------------------------


def encode_video(value: Any, *, crf: int = 18, codec: str = "libx264") -> bytes:
    """Encode a :class:`VideoClip` (uint8 ``[T,3,H,W]``, fps, optional audio) as H.264/AAC MP4.

    Height and width must be even (YUV 4:2:0). Encoding uses one thread so the output bytes are
    reproducible.
    """
    import av

    if not isinstance(value, VideoClip):
        raise CodecError("mp4", f"expects a VideoClip, got {type(value).__name__}")
    frames = value.frames
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.dtype != torch.uint8 or frames.shape[1] != 3:
        raise CodecError("mp4", f"frames must be uint8 [T,3,H,W], got {_describe(frames)}")
    t, _, h, w = frames.shape
    if t == 0 or h == 0 or w == 0 or h % 2 or w % 2:
        raise CodecError("mp4", f"need at least one frame and even, non-zero height/width, got {tuple(frames.shape)}")
    fps = value.fps
    low, high = FPS_RANGE
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or not low <= fps <= high:
        raise CodecError("mp4", f"fps must be a finite number in [{low:g}, {high:g}], got {fps!r}")
    audio_rate = None
    if value.audio is not None:
        if value.sample_rate is None:
            raise CodecError("mp4", "audio needs a sample_rate")
        audio_rate = _check_sample_rate(value.sample_rate, "mp4")
        audio = value.audio
        if not isinstance(audio, torch.Tensor) or audio.ndim != 2 or audio.shape[0] not in (1, 2) or audio.shape[1] == 0:
            raise CodecError("mp4", f"audio must be a float [1 or 2 channels, samples > 0] tensor, got {_describe(audio)}")
    try:
        return _encode_mp4(av, value, fps, audio_rate, crf, codec, h, w)
    except (av.FFmpegError, ValueError, OverflowError) as error:
        raise CodecError("mp4", f"cannot encode video: {error}") from None


def _encode_mp4(av: Any, value: VideoClip, fps: float, audio_rate: int | None, crf: int, codec: str,
                h: int, w: int) -> bytes:
    frames = value.frames
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(100000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # Byte-identical shard rebuilds need byte-identical encodes. Two things made x264 vary
        # from run to run: PyAV's automatic frame threads, and (for heights/widths that are not
        # multiples of 16, e.g. 24x32) the macroblock-tree lookahead. Both are switched off.
        stream.options = {"crf": str(crf), **({"x264-params": "mbtree=0"} if codec == "libx264" else {})}
        stream.codec_context.thread_count = 1
        audio_stream = None
        if audio_rate is not None:
            audio_stream = container.add_stream("aac", rate=audio_rate)
            audio_stream.layout = "mono" if value.audio.shape[0] == 1 else "stereo"
        for array in frames.permute(0, 2, 3, 1).contiguous().numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
        if audio_stream is not None:
            _mux_audio(container, audio_stream, value.audio, audio_rate)
    return buffer.getvalue()


def _mux_audio(container: Any, stream: Any, audio: torch.Tensor, rate: int) -> None:
    import av

    planar = audio.detach().cpu().to(torch.float32).contiguous().numpy()
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=stream.layout.name)
    frame.sample_rate = rate
    frame.pts = 0
    container.mux(stream.encode(frame))
    container.mux(stream.encode())


def decode_video(data: bytes) -> VideoClip:
    """Decode a whole video file (every frame, plus its first audio track if any).

    For windows of long videos use the seeking clip readers of the AV adapters instead.
    """
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise CodecError("mp4", "no video stream")
            vstream = container.streams.video[0]
            fps = float(vstream.average_rate or vstream.guessed_rate or 0)
            # one reformatter for the clip: a per-frame one (what frame.to_ndarray(format=...) makes)
            # rebuilds the conversion context each frame, ~3x slower on small frames
            reformatter = av.video.reformatter.VideoReformatter()
            frames = [reformatter.reformat(f, format="rgb24").to_ndarray() for f in container.decode(vstream)]
        audio, rate = None, None
        with av.open(io.BytesIO(data), mode="r") as container:
            if container.streams.audio:
                astream = container.streams.audio[0]
                rate = int(astream.rate)
                resampler = av.AudioResampler(format="fltp", layout=astream.layout.name, rate=rate)
                chunks = [c.to_ndarray() for f in container.decode(astream) for c in resampler.resample(f)]
                chunks += [c.to_ndarray() for c in resampler.resample(None)]
                if chunks:
                    audio = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32))
    except CodecError:
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError) as error:
        raise CodecError("mp4", f"cannot decode video: {error}") from None
    if not frames:
        raise CodecError("mp4", "the video stream has no decodable frame")
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    return VideoClip(video, fps, audio, rate)
