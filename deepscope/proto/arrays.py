"""numpy arrays to and from the schema's `Array` message.

Arrays travel as raw little-endian bytes so that a reader turns them into
numpy in constant time (`numpy.frombuffer`), and each element costs exactly its
size on disk. Shared by the writer and the plugin; needs numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from deepscope.proto import deepscope_pb2 as pb

# More elements than a protobuf message (at most 2 GiB) can hold bytes for.
_MAX_ELEMENTS = 2**31

_NUMPY_DTYPES: dict[int, np.dtype] = {
    pb.FLOAT32: np.dtype("<f4"),
    pb.FLOAT16: np.dtype("<f2"),
    pb.FLOAT64: np.dtype("<f8"),
    pb.INT32: np.dtype("<i4"),
    pb.INT64: np.dtype("<i8"),
    pb.UINT8: np.dtype("u1"),
    pb.UINT8_LINEAR: np.dtype("u1"),
}

_SCHEMA_DTYPES: dict[np.dtype, int] = {
    np.dtype("float32"): pb.FLOAT32,
    np.dtype("float16"): pb.FLOAT16,
    np.dtype("float64"): pb.FLOAT64,
    np.dtype("int32"): pb.INT32,
    np.dtype("int64"): pb.INT64,
    np.dtype("uint8"): pb.UINT8,
}


def encode_array(values: np.ndarray) -> pb.Array:
    """Encode a numpy array (float16/32/64, int32/64, uint8, bool) as an `Array`."""
    values = np.asarray(values)
    if values.dtype == np.bool_:
        packed = np.packbits(values.reshape(-1))
        return pb.Array(shape=values.shape, dtype=pb.BOOL_PACKED, data=packed.tobytes())
    dtype = _SCHEMA_DTYPES.get(values.dtype.newbyteorder("="))
    if dtype is None:
        raise TypeError(
            f"cannot store arrays of dtype {values.dtype}; convert to one of "
            f"{sorted(str(d) for d in _SCHEMA_DTYPES)} first"
        )
    data = np.ascontiguousarray(values, dtype=_NUMPY_DTYPES[dtype]).tobytes()
    return pb.Array(shape=values.shape, dtype=dtype, data=data)


def decode_array(message: pb.Array) -> np.ndarray:
    """Decode an `Array` into a read-only numpy array of its shape.

    UINT8_LINEAR arrays come back as float32 (`offset + scale * q`); packed
    booleans as bool. Everything is checked before numpy sees it, so that a
    damaged payload (a flipped byte, a truncated blob) is a ValueError saying
    what is wrong, never a wrong array.

    Raises:
      ValueError: the message is malformed: an unknown dtype, a negative
        dimension, more elements than memory holds, or a byte count other than
        elements × itemsize (ceil(elements / 8) for packed booleans).
    """
    shape = tuple(int(n) for n in message.shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"array shape {list(shape)} has a negative dimension")
    count = math.prod(shape)  # Python ints: no int64 overflow
    if count > _MAX_ELEMENTS:
        raise ValueError(f"array shape {list(shape)} holds {count} elements, more than any payload")
    if message.dtype == pb.BOOL_PACKED:
        bits = np.frombuffer(message.data, dtype=np.uint8)
        if bits.size != (count + 7) // 8:
            raise ValueError(
                f"packed boolean array of shape {list(shape)} needs {(count + 7) // 8} bytes, "
                f"found {bits.size}"
            )
        unpacked = np.unpackbits(bits, count=count).astype(bool).reshape(shape)
        unpacked.setflags(write=False)
        return unpacked
    dtype = _NUMPY_DTYPES.get(message.dtype)
    if dtype is None:
        raise ValueError(
            f"unknown array dtype {int(message.dtype)} (known: "
            f"{', '.join(pb.DType.Name(d) for d in (*_NUMPY_DTYPES, pb.BOOL_PACKED))}; "
            "written by a newer deepscope, or damaged?)"
        )
    if len(message.data) != count * dtype.itemsize:
        raise ValueError(
            f"array of shape {list(shape)} and dtype {dtype} needs {count * dtype.itemsize} "
            f"bytes, found {len(message.data)}"
        )
    values = np.frombuffer(message.data, dtype=dtype).reshape(shape)
    if message.dtype == pb.UINT8_LINEAR:
        dequantized = (np.float32(message.offset) + np.float32(message.scale) * values).astype(
            np.float32
        )
        dequantized.setflags(write=False)
        return dequantized
    return values
