"""Series whose deepscope metadata this reader cannot read, written by hand.

`UNREADABLE`: tag → (metadata content, data class, the kind `/tags` must say,
what its error must say). `write_unreadable_series(run_dir)` writes one event of
each to one event file.
"""

from __future__ import annotations

from pathlib import Path

from tensorboard.compat.proto import summary_pb2

from deepscope import metadata
from deepscope.proto import deepscope_pb2 as pb
from tests.event_files import ratios_step, raw_metadata, string_tensor, write_events

BLOB = summary_pb2.DATA_CLASS_BLOB_SEQUENCE
_PAYLOAD = ratios_step([1e-3], crc_names=["w"]).SerializeToString()


def _content(**fields) -> bytes:
    return pb.PluginData(**fields).SerializeToString()


# tag: (metadata content, data class, the kind /tags must say, what its error must say)
UNREADABLE = {
    "garbage": (b"\xff\xff\xff", summary_pb2.DATA_CLASS_TENSOR, "unknown", "another tool"),
    "empty": (b"", summary_pb2.DATA_CLASS_TENSOR, "unknown", "another tool"),
    "no_kind": (_content(version=1), summary_pb2.DATA_CLASS_TENSOR, "unknown", "another tool"),
    "unknown_kind": (
        _content(version=1, kind=99),
        summary_pb2.DATA_CLASS_TENSOR,
        "unknown",
        "upgrade deepscope",
    ),
    "newer": (
        _content(version=metadata.SCHEMA_VERSION + 1, kind=pb.UPDATE_RATIOS),
        summary_pb2.DATA_CLASS_TENSOR,
        "update_ratios",
        "upgrade deepscope",
    ),
    "other_details": (
        _content(version=1, kind=pb.SPECTRUM, update_ratios=pb.UpdateRatiosInfo(names=["w"])),
        BLOB,
        "spectrum",
        "holds update_ratios details",
    ),
    "other_data_class": (
        _content(version=1, kind=pb.SPECTRUM),
        summary_pb2.DATA_CLASS_TENSOR,
        "spectrum",
        "stored as a tensor, but spectrum series are stored as a blob sequence",
    ),
}


def write_unreadable_series(run_dir: Path) -> None:
    """One event of each of `UNREADABLE`'s series, in `run_dir`."""
    events = []
    for tag, (content, data_class, _, _) in UNREADABLE.items():
        tensor = (
            string_tensor(_PAYLOAD, shape=[1]) if data_class == BLOB else string_tensor(_PAYLOAD)
        )
        events.append((tag, 0, 1.0, tensor, raw_metadata(content, data_class)))
    write_events(run_dir, events)
