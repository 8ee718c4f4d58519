"""Summary protos every kind is written as, and the rule that metadata goes on a tag's first event.

Core: used by every kind. A kind's builder (`update_ratios_pb`, `spectrum_pb`,
`channel_correlation_pb`, `saliency_pb`, ...) serializes its `*Step` and wraps
it with one of the two containers here: `tensor_summary` for small per-step
payloads (a scalar string tensor), `blob_sequence_summary` for large ones (a
string vector, one blob each). Builders always include the series' metadata,
so their `Summary` stands on its own for any writer
(`file_writer.add_summary(spectrum_pb(...), step)`).

TensorBoard keeps the metadata of a tag's first event only, so repeating it
costs bytes and changes nothing. `FirstEventMetadata` is the one place that
decides, for every kind, which event carries it: the first one of each tag a
writer writes. `deepscope.SummaryWriter` passes every summary through it.
"""

from __future__ import annotations

from collections.abc import Sequence

from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from deepscope import metadata
from deepscope.proto import deepscope_pb2 as pb


def _value(
    tag: str, tensor: tensor_pb2.TensorProto, plugin_data: pb.PluginData | None, description: str
) -> summary_pb2.Summary:
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if plugin_data is not None:
        value.metadata.CopyFrom(
            metadata.create_summary_metadata(plugin_data, description=description)
        )
    return summary_pb2.Summary(value=[value])


def _string_tensor(payload: bytes) -> tensor_pb2.TensorProto:
    """A scalar string tensor holding `payload`."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        string_val=[payload],
    )


def tensor_summary(
    tag: str,
    payload: bytes,
    plugin_data: pb.PluginData | None,
    description: str = "",
) -> summary_pb2.Summary:
    """A `Summary` holding one step of a tensor series (update ratios): a scalar string tensor.

    Args:
      payload: the step's serialized `*Step` message.
      plugin_data: the series' constant facts for its metadata; None leaves the
        metadata out.
      description: shown by TensorBoard next to the tag (in the metadata).
    """
    return _value(tag, _string_tensor(payload), plugin_data, description)


def blob_sequence_summary(
    tag: str,
    blobs: Sequence[bytes],
    plugin_data: pb.PluginData | None,
    description: str = "",
) -> summary_pb2.Summary:
    """A `Summary` holding one step of a blob-sequence series (spectra, correlations, saliency).

    Args:
      blobs: the step's blobs; by deepscope's convention the first is the
        kind's serialized `*Step` message.
      plugin_data: the series' constant facts for its metadata; None leaves the
        metadata out.
      description: shown by TensorBoard next to the tag (in the metadata).
    """
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]
        ),
        string_val=list(blobs),
    )
    return _value(tag, tensor, plugin_data, description)


class SeriesKindError(ValueError):
    """A tag already holds a series of another kind in this writer."""


class FirstEventMetadata:
    """Which of a writer's events carry their series' metadata: each tag's first one.

    `keep_first(summary)` removes the metadata of every value whose tag already
    had its metadata written through this object, and remembers the
    `PluginData` of those that keep it (`plugin_data(tag)`), so a kind can read
    its series' facts (e.g. the parameter names of an update-ratio series)
    without keeping its own record. An event without metadata claims nothing:
    a later one with metadata is still the tag's first.
    """

    def __init__(self) -> None:
        # tag → (the metadata's serialized content, its parsed PluginData)
        self._written: dict[str, tuple[bytes, pb.PluginData]] = {}

    def plugin_data(self, tag: str) -> pb.PluginData | None:
        """The `PluginData` written in `tag`'s metadata, or None before its first event."""
        written = self._written.get(tag)
        return None if written is None else written[1]

    def check(self, summary: summary_pb2.Summary) -> None:
        """Raise `SeriesKindError` if a value's metadata is of another kind than its tag's series.

        TensorBoard reads a tag as one series of one kind: another kind's
        steps under it would be unreadable.
        """
        for value in summary.value:
            if not value.HasField("metadata"):
                continue
            written = self._written.get(value.tag)
            content = value.metadata.plugin_data.content
            if written is None or written[0] == content:
                continue
            kind = metadata.parse_plugin_data(content).kind
            if kind != written[1].kind:
                raise SeriesKindError(
                    f"tag {value.tag!r} holds a {metadata.KIND_NAMES.get(written[1].kind)} "
                    f"series in this writer; log the {metadata.KIND_NAMES.get(kind)} "
                    "under another tag"
                )

    def keep_first(self, summary: summary_pb2.Summary) -> summary_pb2.Summary:
        """`summary` (changed in place) with metadata only on its tags' first events.

        Raises:
          SeriesKindError: a value's metadata is of another kind than its tag's
            series (nothing is changed or recorded then).
        """
        self.check(summary)
        for value in summary.value:
            if not value.HasField("metadata"):
                continue
            if value.tag in self._written:
                value.ClearField("metadata")
                continue
            content = value.metadata.plugin_data.content
            self._written[value.tag] = (content, metadata.parse_plugin_data(content))
        return summary
