"""Event files written by hand, byte for byte, for tests of damaged or foreign data.

No deepscope writer and no torch: each event's tensor and metadata are built
here, so a test can write what deepscope's writer never would (a float tensor
where a string belongs, a payload of the wrong size, metadata of another tool).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tensorboard.compat.proto import (
    event_pb2,
    summary_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from deepscope import metadata
from deepscope.proto import deepscope_pb2 as pb


def string_tensor(*payloads: bytes, shape: list[int] | None = None) -> tensor_pb2.TensorProto:
    """A DT_STRING tensor of `payloads`: a scalar for one payload unless `shape` says otherwise."""
    if shape is None:
        shape = [] if len(payloads) == 1 else [len(payloads)]
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in shape]
        ),
        string_val=list(payloads),
    )


def float_tensor(values) -> tensor_pb2.TensorProto:
    """A DT_FLOAT tensor of `values` (any shape)."""
    values = np.asarray(values, dtype="<f4")
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in values.shape]
        ),
        tensor_content=values.tobytes(),
    )


def update_ratios_metadata(names: list[str]) -> summary_pb2.SummaryMetadata:
    """What deepscope writes on an update-ratio series' first event."""
    return metadata.create_summary_metadata(
        pb.PluginData(kind=pb.UPDATE_RATIOS, update_ratios=pb.UpdateRatiosInfo(names=names))
    )


def raw_metadata(
    content: bytes, data_class: int = summary_pb2.DATA_CLASS_TENSOR
) -> summary_pb2.SummaryMetadata:
    """deepscope's plugin name with any `content` (garbage, empty, another kind's details)."""
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content
        ),
        data_class=data_class,
    )


def ratios_step(
    values,
    *,
    names: list[str] | None = None,
    crc_names: list[str] | None = None,
    **fields,
) -> pb.UpdateRatiosStep:
    """An `UpdateRatiosStep` of float32 `values` (shape as given), other fields as given.

    `crc_names`: the names whose CRC-32 the step carries (none when None).
    """
    values = np.asarray(values, dtype="<f4")
    step = pb.UpdateRatiosStep(
        ratios=pb.Array(shape=values.shape, dtype=pb.FLOAT32, data=values.tobytes()), **fields
    )
    if names:
        step.names.extend(names)
    if crc_names is not None:
        step.names_crc32 = metadata.names_crc32(crc_names)
    return step


def write_events(
    run_dir: Path,
    events: Iterable[
        tuple[str, int, float, tensor_pb2.TensorProto, summary_pb2.SummaryMetadata | None]
    ],
) -> None:
    """Write (tag, step, wall time, tensor, metadata or None) events to one file in `run_dir`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(run_dir))
    for tag, step, wall_time, tensor, summary_metadata in events:
        value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
        if summary_metadata is not None:
            value.metadata.CopyFrom(summary_metadata)
        writer.add_event(
            event_pb2.Event(
                step=step, wall_time=wall_time, summary=summary_pb2.Summary(value=[value])
            )
        )
    writer.close()
