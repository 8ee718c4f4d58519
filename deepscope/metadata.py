"""Plugin name, schema version, and the summary metadata both sides share.

Every deepscope summary carries a `PluginData` message (deepscope.proto) in
`SummaryMetadata.plugin_data.content`: the kind of series, the schema version
it was written with, and the facts that stay constant over the series. A
reader that meets a newer version raises `NewerSchemaError` instead of
guessing.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from tensorboard.compat.proto import summary_pb2

from deepscope.proto import deepscope_pb2 as pb

PLUGIN_NAME = "deepscope"

# Version 1: update ratios, spectra, correlations, saliency as in deepscope.proto.
SCHEMA_VERSION = 1

# Kind enum value <-> the name used in routes and the tab.
KIND_NAMES: dict[int, str] = {
    pb.UPDATE_RATIOS: "update_ratios",
    pb.SPECTRUM: "spectrum",
    pb.CORRELATION: "correlation",
    pb.SALIENCY: "saliency",
}

# Small per-step series are tensors; large per-step payloads are blob sequences.
_DATA_CLASSES: dict[int, int] = {
    pb.UPDATE_RATIOS: summary_pb2.DATA_CLASS_TENSOR,
    pb.SPECTRUM: summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    pb.CORRELATION: summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    pb.SALIENCY: summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
}


class MetadataError(ValueError):
    """The plugin data of a series cannot be read."""


class NewerSchemaError(MetadataError):
    """The series was written with a newer schema than this reader knows."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(
            f"written with deepscope schema version {version}, newer than this "
            f"reader's version {SCHEMA_VERSION}: upgrade deepscope "
            "(pip install -U deepscope) to read it"
        )


def create_summary_metadata(
    plugin_data: pb.PluginData, display_name: str = "", description: str = ""
) -> summary_pb2.SummaryMetadata:
    """Build the `SummaryMetadata` for a deepscope series.

    Stamps `plugin_data` with the current schema version and sets the data
    class its kind is stored as (a summary without one is invisible).
    """
    if plugin_data.kind not in _DATA_CLASSES:
        raise ValueError(f"unknown deepscope kind {plugin_data.kind}")
    stamped = pb.PluginData()
    stamped.CopyFrom(plugin_data)
    stamped.version = SCHEMA_VERSION
    return summary_pb2.SummaryMetadata(
        display_name=display_name,
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=stamped.SerializeToString()
        ),
        data_class=_DATA_CLASSES[plugin_data.kind],
    )


def parse_plugin_data(content: bytes) -> pb.PluginData:
    """Parse `SummaryMetadata.plugin_data.content` of a deepscope series.

    Raises:
      NewerSchemaError: written by a newer schema version than this reader's.
      MetadataError: not a deepscope `PluginData`, or of no known kind.
    """
    try:
        plugin_data = pb.PluginData.FromString(content)
    except Exception as error:  # protobuf raises DecodeError or RuntimeError
        raise MetadataError(f"unreadable deepscope metadata: {error}") from error
    if plugin_data.version > SCHEMA_VERSION:
        raise NewerSchemaError(plugin_data.version)
    if plugin_data.version < 1:
        raise MetadataError("deepscope metadata without a schema version")
    if plugin_data.kind not in KIND_NAMES:
        raise MetadataError(f"unknown deepscope kind {plugin_data.kind}")
    return plugin_data


def names_crc32(names: Sequence[str]) -> int:
    """CRC-32 of names joined by newlines: the fingerprint of a series' parameter list."""
    return zlib.crc32("\n".join(names).encode("utf-8"))
