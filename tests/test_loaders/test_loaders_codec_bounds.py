"""Hostile payloads for the small codecs (npy, labels.npy, cls, json, txt), the lossless round
trips, and ``decode_sample`` turning every decode failure into a keyed :class:`CodecError`."""

import io
import math
import re
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from loaders import CODECS, Adapter, CodecError, decode, decode_sample, encode
from loaders import codecs as codecs_module
from loaders.codecs import JSON_MAX_DEPTH, NPY_DTYPES, NPY_MAX_BYTES, NPY_MAX_ELEMENTS, Codec

REPO = Path(__file__).resolve().parents[2]


def npy(descr, shape, payload=b"", *, fortran=False, version=(1, 0), header=None):
    """An npy payload with a hand-written header (nothing is validated)."""
    if header is None:
        header = "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran, shape)
    text = header.encode("latin1")
    length_format = "<H" if version == (1, 0) else "<I"
    prefix = b"\x93NUMPY" + bytes(version)
    pad = -(len(prefix) + struct.calcsize(length_format) + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return prefix + struct.pack(length_format, len(text)) + text + payload


def saved(array, **kwargs):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False, **kwargs)
    return buffer.getvalue()


def nested_list(depth):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --- npy: header bounds, checked before numpy allocates -------------------------------------

_CHILD = textwrap.dedent(
    """
    import resource, sys
    from loaders.codecs import CodecError, decode

    def vm_size():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

    data = open(sys.argv[2], "rb").read()
    limit = vm_size() + (512 << 20)  # what is mapped now, plus 512 MiB
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    try:
        decode(sys.argv[1], data)
    except CodecError as error:
        print("CodecError", error)
        sys.exit(0)
    except BaseException as error:
        print("other", type(error).__name__, error)
        sys.exit(1)
    print("decoded")
    sys.exit(2)
    """
)


@pytest.mark.parametrize(
    ("suffix", "descr", "shape", "payload", "expected"),
    [
        ("npy", "<f8", (1 << 40,), b"\0" * 8, "NPY_MAX_ELEMENTS"),
        ("npy", "|b1", (NPY_MAX_ELEMENTS + 1,), b"", "NPY_MAX_ELEMENTS"),
        ("npy", "<u1", (1 << 21, 1 << 21, 1 << 21), b"", "NPY_MAX_ELEMENTS"),  # product past int64
        ("npy", "<c16", (1 << 30,), b"\0" * 16, "NPY_MAX_BYTES"),
        ("npy", "<f8", (1 << 27,), b"\0" * 64, "payload length"),  # 1 GiB claimed, 64 bytes sent
        ("labels.npy", "<f4", (1 << 32,), b"", r"\[labels\.npy\].*NPY_MAX_ELEMENTS"),
    ],
)
def test_npy_header_claims_are_bounded_before_allocation(tmp_path, suffix, descr, shape, payload, expected):
    path = tmp_path / "payload.npy"
    path.write_bytes(npy(descr, shape, payload))
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, suffix, str(path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(expected, result.stdout), result.stdout


def test_npy_bounds_are_documented_constants():
    assert NPY_MAX_ELEMENTS == 1 << 31 and NPY_MAX_BYTES == 1 << 31 and JSON_MAX_DEPTH == 64
    assert "NPY_MAX_ELEMENTS" in codecs_module.__doc__ and "JSON_MAX_DEPTH" in codecs_module.__doc__


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (saved(np.arange(3, dtype=np.int64)) + b"\0" * 8, "payload length"),  # trailing bytes
        (saved(np.arange(3, dtype=np.int64))[:-4], "payload length"),  # truncated
        (npy("<i8", (-1,)), "non-negative"),
        (npy("<i8", (True,), b"\0" * 8), "non-negative ints"),
        (npy("<i8", (1,) * 33, b"\0" * 8), "NPY_MAX_NDIM"),
        (npy("<i8", (0, 10**30)), "NPY_MAX_ELEMENTS"),
        (npy("<i8", (1,), b"\0" * 8, version=(3, 0)), "version"),
        (npy("<i8", (1,), header="[1, 2]"), "malformed npy header"),
        (npy("<i8", (1,), header="(" * 5000 + ")" * 5000), "malformed npy header"),
        (b"\x93NUMPY\x01", "magic"),
        (b"not an npy file at all", "magic"),
    ],
)
def test_npy_malformed_headers_are_codec_errors(data, expected):
    for suffix in ("npy", "labels.npy"):
        with pytest.raises(CodecError, match=expected) as info:
            decode(suffix, data)
        assert info.value.suffix == suffix


@pytest.mark.parametrize(
    "data",
    [
        npy("|O", (1,), b"\0" * 8),
        saved(np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")])),
        saved(np.array(["abc", "de"])),
        saved(np.array([b"abc"])),
        saved(np.array([1, 2], dtype="M8[s]")),
        saved(np.array([1, 2], dtype="m8[s]")),
        saved(np.zeros(2, dtype=np.longdouble)),
        saved(np.zeros(2, dtype="V4")),
        npy("('<i4', (2,))", (1,), b"\0" * 8),
    ],
    ids=["object", "structured", "unicode", "bytes", "datetime", "timedelta", "longdouble", "void", "subarray"],
)
def test_npy_refuses_non_numeric_dtypes(data):
    with pytest.raises(CodecError, match=r"\[npy\].*(dtype|header)"):
        decode("npy", data)


@pytest.mark.parametrize("dtype", sorted(NPY_DTYPES, key=str), ids=str)
@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("fortran", [False, True])
def test_npy_decodes_every_numeric_dtype_either_byte_order(dtype, order, fortran):
    values = (np.arange(12) % 5).reshape(3, 4).astype(dtype).astype(dtype.newbyteorder(order))
    if fortran:
        values = np.asfortranarray(values)
    out = decode("npy", saved(values))
    assert out.shape == (3, 4) and out.is_contiguous()
    assert np.array_equal(out.numpy(), values) and out.numpy().dtype == dtype


@pytest.mark.parametrize("value", [np.array(5), np.array(1.5, dtype=np.float32), torch.tensor(3, dtype=torch.uint8), np.array(True)])
def test_zero_d_npy_keeps_its_shape(value):
    out = decode("npy", encode("npy", value))
    expected = value.numpy() if isinstance(value, torch.Tensor) else value
    assert out.shape == () and out.numpy().dtype == expected.dtype and out.item() == expected.item()


def test_complex_label_vectors_are_refused():
    with pytest.raises(CodecError, match=r"labels\.npy.*complex"):
        decode("labels.npy", saved(np.array([1 + 1j, 2], dtype=np.complex64)))


# --- cls ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"1_0", "٣".encode(), "１".encode(), b"+1", b"1e3", b"1.0", b"0x10", b"", b" ", b"-", b"--1", b"1 2", b"\x0b1",
     b"9223372036854775808", b"-9223372036854775809", b"1" * 5000],
)
def test_cls_refuses_what_is_not_an_int64_ascii_decimal(data):
    with pytest.raises(CodecError, match=r"\[cls\]"):
        decode("cls", data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"7", 7), (b" -12\n", -12), (b"-0", 0), (b"0009", 9), (b"9223372036854775807", 2**63 - 1),
     (b"-9223372036854775808", -(2**63)), (b"0" * 100 + b"1", 1)],
)
def test_cls_reads_plain_decimals(data, expected):
    assert decode("cls", data) == expected


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_cls_encode_refuses_values_outside_int64(value):
    with pytest.raises(CodecError, match=r"\[cls\].*int64"):
        encode("cls", value)


# --- json -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"[" * (JSON_MAX_DEPTH + 1) + b"]" * (JSON_MAX_DEPTH + 1),
        b'{"a":' * (JSON_MAX_DEPTH + 1) + b"1" + b"}" * (JSON_MAX_DEPTH + 1),
        b"[" * 100_000 + b"]" * 100_000,  # json.loads alone raises RecursionError
        b'[{"a": ' * 50_000 + b"0" + b"}]" * 50_000,
        b"[" * 1_000_000,
    ],
    ids=["65-arrays", "65-objects", "deep-arrays", "deep-mixed", "unclosed"],
)
@pytest.mark.parametrize("suffix", ["json", "text.json"])
def test_json_nesting_beyond_the_bound_is_a_codec_error(data, suffix):
    with pytest.raises(CodecError, match=re.escape(f"[{suffix}]") + ".*(JSON_MAX_DEPTH|malformed)"):
        decode(suffix, data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"[" * JSON_MAX_DEPTH + b"]" * JSON_MAX_DEPTH, nested_list(JSON_MAX_DEPTH)),
        (b'{"a": "' + b"[" * 1000 + b'"}', {"a": "[" * 1000}),
        (b'["\\"[[[[", "\\\\", {"b": "}}}"}]', ['"[[[[', "\\", {"b": "}}}"}]),
        ('{"é": "[ü"}'.encode(), {"é": "[ü"}),
    ],
)
def test_json_brackets_in_strings_do_not_count_as_nesting(data, expected):
    assert decode("json", data) == expected


@pytest.mark.parametrize(
    "data",
    [b'"' + b'\\"' * 200_000, b'["' + b"\\" * 200_001, b'"' * 200_001, b"[" * 1000 + b'"' + b"[" * 200_000],
    ids=["escaped-quotes", "backslashes", "quotes", "unterminated-string"],
)
def test_json_depth_scan_is_linear_on_unterminated_strings(data):
    start = time.perf_counter()
    with pytest.raises(CodecError, match=r"\[json\]"):
        decode("json", data)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {True: "a"}, {None: 1}, {1.5: "x"}, {(1, 2): "a"}, {"ok": [{"deep": {2: 3}}]}, {"a": 1, 2: "b"}],
    ids=["int", "bool", "none", "float", "tuple", "nested", "mixed"],
)
def test_json_encode_refuses_non_string_keys(value):
    with pytest.raises(CodecError, match=r"\[json\].*key"):
        encode("json", value)


@pytest.mark.parametrize(
    "value",
    [float("nan"), {"a": [float("inf")]}, -math.inf, nested_list(JSON_MAX_DEPTH + 1), nested_list(100_000), ["\ud800"], {"\udfff": 1}],
    ids=["nan", "inf", "-inf", "65-deep", "very-deep", "surrogate-value", "surrogate-key"],
)
def test_json_encode_refuses_what_decode_would_refuse(value):
    with pytest.raises(CodecError, match=r"\[json\]"):
        encode("json", value)


def test_text_json_errors_name_their_suffix():
    with pytest.raises(CodecError, match=r"\[text\.json\].*key"):
        encode("text.json", {1: "a"})


# --- txt ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["\ud800", "ok \udc00 then", "\udbff\udfff"[0]])
def test_txt_encode_refuses_lone_surrogates(text):
    with pytest.raises(CodecError, match=r"\[txt\].*Unicode"):
        encode("txt", text)


# --- decode_sample: every failure is a keyed CodecError --------------------------------------


def _raiser(error):
    def decode_fn(data):
        raise error

    return decode_fn


@pytest.mark.parametrize(
    "error",
    [
        Image.DecompressionBombError("image size exceeds limit"),
        MemoryError("cannot allocate"),
        RecursionError("maximum recursion depth exceeded"),
        OverflowError("int too large"),
        ValueError("bad value"),
        TypeError("bad type"),
        KeyError("tag"),
        np.exceptions.AxisError("axis"),
        CodecError("png", "already a codec error"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("image_mode", ["unchanged", "RGB"])
def test_decode_sample_turns_every_member_failure_into_a_keyed_codec_error(monkeypatch, error, image_mode):
    monkeypatch.setitem(codecs_module.CODECS, "png", Codec("png", "image", _raiser(error), None, True))
    monkeypatch.setattr(codecs_module.media, "decode_image", lambda data, **kw: _raiser(error)(data))
    sample = {"__key__": "sample-0007", "cls": b"3", "png": b"\x89PNG..."}
    with pytest.raises(CodecError) as info:
        decode_sample(sample, image_mode=image_mode)
    assert info.value.suffix == "png"
    reason = error.reason if isinstance(error, CodecError) else str(error)
    assert "key 'sample-0007'" in str(info.value) and reason in str(info.value)
    if not isinstance(error, CodecError):
        assert info.value.__cause__ is error or info.value.__cause__.__cause__ is error


@pytest.mark.parametrize(
    ("suffix", "data"),
    [
        ("json", b"[" * 100_000 + b"]" * 100_000),
        ("npy", saved(np.array(["x"]))),
        ("npy", saved(np.arange(3, dtype=">i4"))[:-1]),
        ("cls", b"1_0"),
        ("left.cls", b"\xff"),
        ("mp3", b"unknown suffix"),
    ],
)
def test_decode_sample_names_member_and_key_for_real_payloads(suffix, data):
    with pytest.raises(CodecError) as info:
        decode_sample({"__key__": "k/42", "txt": b"fine", suffix: data})
    assert info.value.suffix == suffix and "key 'k/42'" in str(info.value)


def test_decode_sample_codec_error_without_key_passes_through():
    with pytest.raises(CodecError, match=r"^\[cls\] payload") as info:
        decode_sample({"cls": b"1_0"})
    assert info.value.suffix == "cls"


class _TinyAdapter(Adapter):
    name = "tiny"
    payloads = {
        "bad-json": {"json": b"[" * 100_000 + b"]" * 100_000},
        "good": {"json": b'{"a": 1}', "cls": b"2"},
        "bad-npy": {"npy": npy("<f8", (1 << 40,), b"")},
        "bad-cls": {"cls": b"1_0"},
    }

    def _build_index(self):
        return [{"__key__": key} for key in self.payloads]

    def _load_encoded(self, record):
        return dict(self.payloads[record["__key__"]])


def test_adapter_on_error_skip_really_skips_hostile_members():
    adapter = _TinyAdapter(on_error="skip")
    samples = list(adapter.samples())
    assert [s["__key__"] for s in samples] == ["good"]
    assert [key for key, _ in adapter.skipped] == ["bad-json", "bad-npy", "bad-cls"]
    assert all(key in reason for key, reason in adapter.skipped)


# --- lossless round trips -------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_npy_arrays = hnp.arrays(
    dtype=st.sampled_from(sorted(NPY_DTYPES, key=str)), shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
)
_ROUND_TRIPS = {
    "cls": st.integers(-(2**63), 2**63 - 1),
    "npy": _npy_arrays,
    "labels.npy": hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=1, min_side=0, max_side=8)),
    "json": _json_values,
    "text.json": _json_values,
    "txt": st.text(),
}


def test_round_trip_strategies_cover_the_simple_lossless_codecs():
    media_codecs = {"png", "mask.png", "wav", "flac", "dcm"}  # round trips tested in test_loaders_codecs
    assert {s for s, c in CODECS.items() if c.lossless} == set(_ROUND_TRIPS) | media_codecs


def _same(a, b):
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return type(b) is float and (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, dict)):
        if type(a) is not type(b) or len(a) != len(b):
            return False
        pairs = zip(a, b) if isinstance(a, list) else ((a[k], b[k]) for k in a if k in b)
        return (isinstance(a, list) or a.keys() == b.keys()) and all(_same(x, y) for x, y in pairs)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("suffix", sorted(_ROUND_TRIPS))
def test_lossless_codecs_round_trip_exactly(suffix):
    @settings(max_examples=60, deadline=None)
    @given(_ROUND_TRIPS[suffix])
    def check(value):
        out = decode(suffix, encode(suffix, value))
        if isinstance(out, torch.Tensor):
            out = out.numpy()
        assert _same(value, out), (value, out)

    check()
