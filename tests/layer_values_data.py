"""Damaged layer-values events for the unit and integration tests: one of each way to break one.

`DAMAGED`: name → (a function tag → the `Summary` of one damaged event, what the
route's warning says about it). `GOOD`: a step's values the damaged runs log around them.
"""

from __future__ import annotations

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import tensor_summary

GOOD = {"a": 0.5, "b": 0.25}


def _step_bytes(names, values, not_measured=()) -> bytes:
    step = pb.LayerValuesStep(names=names, not_measured=list(not_measured))
    step.values.CopyFrom(arrays.encode_array(np.asarray(values, dtype=np.float32)))
    return step.SerializeToString()


def _tensor_value(tag: str, tensor: tensor_pb2.TensorProto) -> summary_pb2.Summary:
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, tensor=tensor)])


def _float_scalar(tag: str) -> summary_pb2.Summary:
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(), float_val=[1]
    )
    return _tensor_value(tag, tensor)


def _string_vector(tag: str) -> summary_pb2.Summary:
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)]
        ),
        string_val=[_step_bytes(["a"], [1.0])] * 2,
    )
    return _tensor_value(tag, tensor)


def _payload(tag: str, payload: bytes) -> summary_pb2.Summary:
    return tensor_summary(tag, payload, None)


def _bad_bytes_step() -> bytes:
    step = pb.LayerValuesStep(names=["a", "b"])
    step.values.CopyFrom(pb.Array(shape=[2], dtype=pb.FLOAT32, data=b"\0" * 7))
    return step.SerializeToString()


def _float64_bad_bytes_step() -> bytes:
    step = pb.LayerValuesStep(names=["a", "b"])
    step.values.CopyFrom(pb.Array(shape=[2], dtype=pb.FLOAT64, data=b"\0" * 8))
    return step.SerializeToString()


def _int_step() -> bytes:
    step = pb.LayerValuesStep(names=["a", "b"])
    step.values.CopyFrom(arrays.encode_array(np.array([1, 2], dtype=np.int32)))
    return step.SerializeToString()


# name → (the Summary of a damaged event of a tag, what the warning says about it).
DAMAGED = {
    "garbage": (lambda t: _payload(t, b"\xff\xff\xff\xff"), "does not parse"),
    "float tensor": (_float_scalar, "float32 tensor of shape []"),
    "string vector": (_string_vector, "string tensor of shape [2]"),
    "more values than names": (
        lambda t: _payload(t, _step_bytes(["a", "b"], [1, 2, 3])),
        "values of shape [3] for 2 layer names",
    ),
    "not measured out of range": (
        lambda t: _payload(t, _step_bytes(["a", "b"], [1, 2], not_measured=[5])),
        "not-measured index 5 outside the step's 2 layers",
    ),
    "duplicate names": (
        lambda t: _payload(t, _step_bytes(["a", "a"], [1, 2])),
        "layer name 'a' appears twice",
    ),
    "empty name": (lambda t: _payload(t, _step_bytes(["a", ""], [1, 2])), "name is empty"),
    "no names": (lambda t: _payload(t, b""), "names no layers"),
    "byte count": (lambda t: _payload(t, _bad_bytes_step()), "7 bytes for 2 float32 values"),
    "float64 byte count": (
        lambda t: _payload(t, _float64_bad_bytes_step()),
        "needs 16 bytes, found 8",
    ),
    "int values": (lambda t: _payload(t, _int_step()), "dtype INT32, not FLOAT32"),
}
