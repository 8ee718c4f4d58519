"""Plugin name, schema version, and the summary metadata both sides share.

Every deepscope summary carries a `PluginData` message (deepscope.proto) in
`SummaryMetadata.plugin_data.content`: the kind of series, the schema version
it was written with, and the facts that stay constant over the series. A
reader that meets a newer version raises `NewerSchemaError` instead of
guessing. The kinds (enum, name, data class, details field) come from the
registry, `deepscope.kinds.KINDS`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from tensorboard.compat.proto import summary_pb2

from deepscope import kinds
from deepscope.proto import deepscope_pb2 as pb

PLUGIN_NAME = "deepscope"

# Version 1: update ratios, spectra, correlations, saliency as in deepscope.proto.
SCHEMA_VERSION = 1

# Kind enum value <-> the name used in routes and the tab, from the registry.
KIND_NAMES: dict[int, str] = {kind.enum: kind.name for kind in kinds.KINDS}


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


class UnknownKindError(MetadataError):
    """The series is of a kind this reader does not know (a newer deepscope's, or no kind)."""

    def __init__(self, kind: int):
        self.kind = kind
        if kind == pb.KIND_UNSPECIFIED:
            message = (
                "deepscope metadata without a kind: written by another tool or damaged; "
                "log the series again with deepscope"
            )
        else:
            message = (
                f"unknown deepscope kind {kind} (this reader knows "
                f"{', '.join(KIND_NAMES.values())}): written by a newer deepscope? "
                "upgrade deepscope (pip install -U deepscope) to read it"
            )
        super().__init__(message)


def create_summary_metadata(
    plugin_data: pb.PluginData, display_name: str = "", description: str = ""
) -> summary_pb2.SummaryMetadata:
    """Build the `SummaryMetadata` for a deepscope series.

    Stamps `plugin_data` with the current schema version and sets the data
    class its kind is stored as (a summary without one is invisible).

    Raises:
      ValueError: the kind is unknown, or `plugin_data` holds another kind's details.
    """
    kind = kinds.BY_ENUM.get(plugin_data.kind)
    if kind is None:
        raise ValueError(
            f"unknown deepscope kind {plugin_data.kind}; known kinds: "
            f"{', '.join(f'{k.name} ({k.enum})' for k in kinds.KINDS)}"
        )
    details = plugin_data.WhichOneof("details")
    if details is not None and details != kind.details:
        raise ValueError(
            f"plugin data of kind {kind.name} holds {details} details; set {kind.details} instead"
        )
    stamped = pb.PluginData()
    stamped.CopyFrom(plugin_data)
    stamped.version = SCHEMA_VERSION
    return summary_pb2.SummaryMetadata(
        display_name=display_name,
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=stamped.SerializeToString()
        ),
        data_class=kind.data_class,
    )


def parse_plugin_data(content: bytes) -> pb.PluginData:
    """Parse `SummaryMetadata.plugin_data.content` of a deepscope series.

    Raises:
      NewerSchemaError: written by a newer schema version than this reader's.
      UnknownKindError: of no kind this reader knows.
      MetadataError: not a deepscope `PluginData` (unparsable, empty, no schema
        version), or its details are another kind's.
    """
    try:
        plugin_data = pb.PluginData.FromString(content)
    except Exception as error:  # protobuf raises DecodeError or RuntimeError
        raise MetadataError(
            f"unreadable deepscope metadata ({error}): written by another tool or damaged"
        ) from error
    if plugin_data.version > SCHEMA_VERSION:
        raise NewerSchemaError(plugin_data.version)
    if plugin_data.version < 1:
        raise MetadataError(
            "deepscope metadata without a schema version: written by another tool or "
            "damaged (empty metadata, or not deepscope's); log the series again with deepscope"
        )
    kind = kinds.BY_ENUM.get(plugin_data.kind)
    if kind is None:
        raise UnknownKindError(plugin_data.kind)
    details = plugin_data.WhichOneof("details")
    if details is not None and details != kind.details:
        raise MetadataError(
            f"metadata of kind {kind.name} holds {details} details, not {kind.details}: "
            "written by another tool or damaged; log the series again with deepscope"
        )
    return plugin_data


def names_crc32(names: Sequence[str]) -> int:
    """CRC-32 of names joined by newlines: the fingerprint of a series' parameter list."""
    return zlib.crc32("\n".join(names).encode("utf-8"))
