"""deepscope.proto.arrays: numpy arrays to and from the schema's `Array` message."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb

SHAPES = [(), (0,), (1,), (7,), (2, 3), (2, 0, 4), (3, 5, 9), (1, 1, 1, 1)]
DTYPES = ["float16", "float32", "float64", "int32", "int64", "uint8", "bool"]
SCHEMA_DTYPE = {
    "float16": pb.FLOAT16,
    "float32": pb.FLOAT32,
    "float64": pb.FLOAT64,
    "int32": pb.INT32,
    "int64": pb.INT64,
    "uint8": pb.UINT8,
    "bool": pb.BOOL_PACKED,
}


def _random(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("float"):
        return (rng.standard_normal(shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype_and_shape(dtype, shape):
    values = _random(shape, dtype)
    message = arrays.encode_array(values)
    assert message.dtype == SCHEMA_DTYPE[dtype]
    assert list(message.shape) == list(shape)
    # Through the wire format, as a reader sees it.
    decoded = arrays.decode_array(pb.Array.FromString(message.SerializeToString()))
    assert decoded.shape == shape
    assert decoded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(decoded, values)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64", "uint8"])
def test_data_is_raw_little_endian_row_major_bytes(dtype):
    values = _random((3, 4), dtype, seed=1)
    message = arrays.encode_array(values)
    itemsize = np.dtype(dtype).itemsize
    assert len(message.data) == values.size * itemsize
    # Element (1, 2) is the 6th in row-major order; its bytes are little-endian.
    code = {"float16": "<e", "float32": "<f", "float64": "<d", "int32": "<i"}.get(dtype)
    code = code or {"int64": "<q", "uint8": "<B"}[dtype]
    start = (1 * 4 + 2) * itemsize
    (element,) = struct.unpack(code, message.data[start : start + itemsize])
    assert element == values[1, 2].item()


def test_special_float_values_survive():
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38], dtype=np.float32)
    decoded = arrays.decode_array(arrays.encode_array(values))
    assert np.isnan(decoded[0])
    assert decoded[1] == np.inf and decoded[2] == -np.inf
    assert decoded[3] == 0 and np.signbit(decoded[3])
    np.testing.assert_array_equal(decoded[4:], values[4:])


def test_non_contiguous_input_is_stored_row_major():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base.T[::2]  # shape (3, 4), neither C- nor F-contiguous
    assert not view.flags.c_contiguous
    decoded = arrays.decode_array(arrays.encode_array(view))
    np.testing.assert_array_equal(decoded, np.array(view.tolist(), dtype=np.float32))


def test_big_endian_input_is_accepted_and_stored_little_endian():
    # A big-endian float32 array is still float32: the codec should store it, byte-swapped.
    values = np.array([1.5, -2.0, 3.25], dtype=">f4")
    message = arrays.encode_array(values)
    assert message.dtype == pb.FLOAT32
    assert message.data == struct.pack("<3f", 1.5, -2.0, 3.25)
    np.testing.assert_array_equal(arrays.decode_array(message), [1.5, -2.0, 3.25])


def test_bool_packing_is_numpy_packbits_big_endian_bit_order():
    bits = np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], dtype=bool)
    message = arrays.encode_array(bits)
    assert message.dtype == pb.BOOL_PACKED
    # 9 bits → 2 bytes, first bit is the most significant; the tail is zero-padded.
    assert message.data == bytes([0b10110000, 0b10000000])
    np.testing.assert_array_equal(arrays.decode_array(message), bits)


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 16, 17, 1000])
def test_bool_packed_size_is_one_bit_per_element(count):
    values = _random((count,), "bool", seed=count)
    message = arrays.encode_array(values)
    assert len(message.data) == -(-count // 8)
    np.testing.assert_array_equal(arrays.decode_array(message), values)


def test_zero_d_bool():
    for value in (True, False):
        decoded = arrays.decode_array(arrays.encode_array(np.array(value)))
        assert decoded.shape == () and decoded.dtype == np.bool_ and bool(decoded) is value


def test_uint8_linear_decodes_offset_plus_scale_times_q():
    q = np.array([[0, 1, 2], [127, 128, 255]], dtype=np.uint8)
    scale, offset = 2.0 / 255.0, -1.0
    message = pb.Array(
        shape=[2, 3], dtype=pb.UINT8_LINEAR, data=q.tobytes(), scale=scale, offset=offset
    )
    decoded = arrays.decode_array(message)
    assert decoded.dtype == np.float32
    assert decoded.shape == (2, 3)
    # The proto stores scale and offset as float32.
    expected = np.float64(np.float32(offset)) + np.float64(np.float32(scale)) * q.astype(np.float64)
    np.testing.assert_allclose(decoded, expected, rtol=1e-6, atol=1e-7)
    assert decoded[0, 0] == pytest.approx(-1.0)
    assert decoded[1, 2] == pytest.approx(1.0, abs=1e-6)


def test_uint8_linear_zero_size():
    message = pb.Array(shape=[0, 4], dtype=pb.UINT8_LINEAR, data=b"", scale=1.0, offset=2.0)
    decoded = arrays.decode_array(message)
    assert decoded.shape == (0, 4) and decoded.dtype == np.float32


def test_decoded_plain_array_is_read_only():
    decoded = arrays.decode_array(arrays.encode_array(np.ones(3, dtype=np.float32)))
    assert not decoded.flags.writeable


@pytest.mark.parametrize(
    "message",
    [
        pb.Array(shape=[3], dtype=pb.FLOAT32, data=b"\0" * 11),
        pb.Array(shape=[3], dtype=pb.FLOAT32, data=b"\0" * 16),
        pb.Array(shape=[2, 2], dtype=pb.FLOAT64, data=b"\0" * 8),
        pb.Array(shape=[], dtype=pb.INT64, data=b""),
        pb.Array(shape=[0], dtype=pb.INT32, data=b"\0\0\0\0"),
        pb.Array(shape=[4], dtype=pb.UINT8_LINEAR, data=b"\0" * 3, scale=1.0),
        pb.Array(shape=[9], dtype=pb.BOOL_PACKED, data=b"\0"),
        pb.Array(shape=[8], dtype=pb.BOOL_PACKED, data=b"\0\0"),
    ],
    ids=[
        "f32-short",
        "f32-long",
        "f64-2x2",
        "i64-0d-empty",
        "i32-empty",
        "u8lin",
        "bool9",
        "bool8",
    ],
)
def test_wrong_byte_count_raises_value_error(message):
    with pytest.raises(ValueError, match="bytes"):
        arrays.decode_array(message)


def test_wrong_byte_count_message_says_what_was_expected():
    message = pb.Array(shape=[2, 3], dtype=pb.FLOAT32, data=b"\0" * 20)
    with pytest.raises(ValueError) as caught:
        arrays.decode_array(message)
    assert "24" in str(caught.value) and "20" in str(caught.value)


@pytest.mark.parametrize(
    "message",
    [
        pb.Array(shape=[-2, -2], dtype=pb.FLOAT32, data=b"\0" * 16),
        pb.Array(shape=[-1, -1], dtype=pb.FLOAT32, data=b"\0" * 4),
        pb.Array(shape=[-8], dtype=pb.BOOL_PACKED, data=b""),
        pb.Array(shape=[2**40, 2**40], dtype=pb.UINT8, data=b""),  # the count overflows int64
    ],
    ids=["neg-neg", "minus-ones", "neg-bool", "overflowing-count"],
)
def test_impossible_shapes_raise_value_error(message):
    with pytest.raises(ValueError):
        arrays.decode_array(message)


@pytest.mark.parametrize("dtype", [pb.DTYPE_UNSPECIFIED, 99])
def test_unknown_dtype_raises_value_error(dtype):
    message = pb.Array(shape=[1], dtype=dtype, data=b"\0" * 4)
    with pytest.raises(ValueError, match="dtype"):
        arrays.decode_array(message)


@pytest.mark.parametrize("dtype", ["complex64", "int16", "uint32", "float128", "U3", "object"])
def test_unsupported_dtype_raises_type_error_saying_what_to_do(dtype):
    if dtype == "float128" and not hasattr(np, "float128"):
        dtype = "longdouble"
    values = np.zeros(3, dtype=dtype) if dtype != "object" else np.array([1, "a", None])
    with pytest.raises(TypeError) as caught:
        arrays.encode_array(values)
    message = str(caught.value)
    assert "convert" in message
    assert "float32" in message
    assert str(values.dtype) in message


@pytest.mark.parametrize(
    "message, words",
    [
        (pb.Array(shape=[-2, -2], dtype=pb.FLOAT32, data=b"\0" * 16), "negative dimension"),
        (pb.Array(shape=[2**40, 2**40], dtype=pb.UINT8, data=b""), "more than any payload"),
        (pb.Array(shape=[2**32, 2**32, 2**32], dtype=pb.FLOAT64, data=b""), "elements"),
        (pb.Array(shape=[9], dtype=pb.BOOL_PACKED, data=b"\0"), "needs 2 bytes, found 1"),
        (pb.Array(shape=[2], dtype=99, data=b"\0" * 8), "FLOAT16"),
    ],
    ids=["negative", "overflow-int64", "overflow-3d", "bool-short", "unknown-dtype"],
)
def test_damaged_arrays_say_what_is_wrong(message, words):
    """A flipped byte in a shape or dtype is named, not decoded into a wrong array."""
    with pytest.raises(ValueError, match=words):
        arrays.decode_array(message)
