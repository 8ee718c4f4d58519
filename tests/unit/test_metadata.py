"""deepscope.metadata: the SummaryMetadata both the writer and the plugin rely on."""

from __future__ import annotations

import pytest
from tensorboard.compat.proto import summary_pb2

from deepscope import kinds, metadata
from deepscope.proto import deepscope_pb2 as pb

# The four kinds this schema version started with, as written to disk: a registry edit
# must not renumber or re-class them (logs already written say these numbers).
WRITTEN = {
    "update_ratios": (1, summary_pb2.DATA_CLASS_TENSOR),
    "spectrum": (2, summary_pb2.DATA_CLASS_BLOB_SEQUENCE),
    "correlation": (3, summary_pb2.DATA_CLASS_BLOB_SEQUENCE),
    "saliency": (4, summary_pb2.DATA_CLASS_BLOB_SEQUENCE),
}


def test_plugin_name_and_version():
    assert metadata.PLUGIN_NAME == "deepscope"
    assert isinstance(metadata.SCHEMA_VERSION, int) and metadata.SCHEMA_VERSION >= 1


@pytest.mark.parametrize("kind", kinds.KINDS, ids=[k.name for k in kinds.KINDS])
def test_create_summary_metadata(kind):
    result = metadata.create_summary_metadata(
        pb.PluginData(kind=kind.enum), display_name="shown", description="about it"
    )
    assert isinstance(result, summary_pb2.SummaryMetadata)
    assert result.plugin_data.plugin_name == "deepscope"
    assert result.data_class == kind.data_class
    assert result.display_name == "shown"
    assert result.summary_description == "about it"
    content = pb.PluginData.FromString(result.plugin_data.content)
    assert content.version == metadata.SCHEMA_VERSION
    assert content.kind == kind.enum
    assert metadata.KIND_NAMES[kind.enum] == kind.name


def test_the_kinds_already_written_keep_their_enum_and_data_class():
    for name, (enum, data_class) in WRITTEN.items():
        assert (kinds.BY_NAME[name].enum, kinds.BY_NAME[name].data_class) == (enum, data_class)
    assert metadata.KIND_NAMES == {kind.enum: kind.name for kind in kinds.KINDS}


@pytest.mark.parametrize("kind", kinds.KINDS, ids=[k.name for k in kinds.KINDS])
def test_each_kind_names_its_own_details_field_and_step_message(kind):
    oneof = pb.PluginData.DESCRIPTOR.oneofs_by_name["details"]
    assert kind.details in [field.name for field in oneof.fields]
    assert kind.step_message.DESCRIPTOR.full_name.startswith("deepscope.")
    assert kind.data_class in (
        summary_pb2.DATA_CLASS_TENSOR,
        summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )


def test_create_summary_metadata_stamps_version_without_touching_the_input():
    given = pb.PluginData(version=77, kind=pb.UPDATE_RATIOS)
    given.update_ratios.names.extend(["a", "b"])
    result = metadata.create_summary_metadata(given)
    assert given.version == 77  # the caller's message is left alone
    stamped = pb.PluginData.FromString(result.plugin_data.content)
    assert stamped.version == metadata.SCHEMA_VERSION
    assert list(stamped.update_ratios.names) == ["a", "b"]


@pytest.mark.parametrize("kind", [pb.KIND_UNSPECIFIED, 42])
def test_create_summary_metadata_rejects_unknown_kind(kind):
    with pytest.raises(ValueError, match="kind"):
        metadata.create_summary_metadata(pb.PluginData(kind=kind))


def test_parse_plugin_data_round_trips_details():
    given = pb.PluginData(kind=pb.SPECTRUM)
    given.spectrum.weight_shape.extend([64, 3, 3, 3])
    given.spectrum.layer_kind = "Conv2d"
    content = metadata.create_summary_metadata(given).plugin_data.content
    parsed = metadata.parse_plugin_data(content)
    assert parsed.version == metadata.SCHEMA_VERSION
    assert parsed.kind == pb.SPECTRUM
    assert parsed.WhichOneof("details") == "spectrum"
    assert list(parsed.spectrum.weight_shape) == [64, 3, 3, 3]
    assert parsed.spectrum.layer_kind == "Conv2d"


def test_parse_plugin_data_update_ratio_names():
    given = pb.PluginData(
        kind=pb.UPDATE_RATIOS, update_ratios=pb.UpdateRatiosInfo(names=["fc.weight", "fc.bias"])
    )
    content = metadata.create_summary_metadata(given).plugin_data.content
    assert list(metadata.parse_plugin_data(content).update_ratios.names) == [
        "fc.weight",
        "fc.bias",
    ]


@pytest.mark.parametrize("newer", [1, 2, 1000])
def test_newer_version_raises_newer_schema_error_saying_upgrade(newer):
    version = metadata.SCHEMA_VERSION + newer
    content = pb.PluginData(version=version, kind=pb.UPDATE_RATIOS).SerializeToString()
    with pytest.raises(metadata.NewerSchemaError) as caught:
        metadata.parse_plugin_data(content)
    error = caught.value
    assert isinstance(error, metadata.MetadataError) and isinstance(error, ValueError)
    assert error.version == version
    assert "upgrade" in str(error).lower()
    assert str(version) in str(error)


def test_newer_version_of_unknown_kind_still_says_upgrade():
    # A newer writer may add kinds: the reader must blame its own age, not the data.
    content = pb.PluginData(version=metadata.SCHEMA_VERSION + 1, kind=57).SerializeToString()
    with pytest.raises(metadata.NewerSchemaError, match="(?i)upgrade"):
        metadata.parse_plugin_data(content)


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xff\xff",  # truncated varint / bad tag
        b"\x0f",  # field 1 with the invalid wire type 7
        b"\x08",  # a field tag with its value missing
        b"\x12\x05ab",  # a length-delimited field shorter than it says
    ],
    ids=["bad-tag", "bad-wire-type", "truncated", "short-bytes"],
)
def test_garbage_bytes_raise_metadata_error(content):
    with pytest.raises(metadata.MetadataError):
        metadata.parse_plugin_data(content)


def test_version_zero_raises_metadata_error():
    content = pb.PluginData(version=0, kind=pb.UPDATE_RATIOS).SerializeToString()
    with pytest.raises(metadata.MetadataError, match="version") as caught:
        metadata.parse_plugin_data(content)
    assert not isinstance(caught.value, metadata.NewerSchemaError)


def test_empty_content_raises_metadata_error():
    with pytest.raises(metadata.MetadataError):
        metadata.parse_plugin_data(b"")


@pytest.mark.parametrize("kind", [pb.KIND_UNSPECIFIED, max(pb.Kind.values()) + 1])
def test_unknown_kind_raises_metadata_error(kind):
    content = pb.PluginData(version=metadata.SCHEMA_VERSION, kind=kind).SerializeToString()
    with pytest.raises(metadata.MetadataError, match="kind") as caught:
        metadata.parse_plugin_data(content)
    assert not isinstance(caught.value, metadata.NewerSchemaError)


def test_names_crc32_known_vectors():
    # The CRC-32 check value: crc32(b"123456789") == 0xCBF43926 (e.g. RFC 3720 B.4's table).
    assert metadata.names_crc32(["123456789"]) == 0xCBF43926
    # b"a\nb", computed once with binascii.crc32 and with a bitwise CRC-32 (polynomial
    # 0xEDB88320), both 0xEF0790FB.
    assert metadata.names_crc32(["a", "b"]) == 0xEF0790FB
    # UTF-8: "größe\n名前", computed once the same two ways.
    assert metadata.names_crc32(["größe", "名前"]) == 0x9605EF0E
    assert metadata.names_crc32([]) == 0


def test_names_crc32_depends_on_order_and_grouping():
    assert metadata.names_crc32(["a", "b"]) != metadata.names_crc32(["b", "a"])
    assert metadata.names_crc32(["a\nb"]) == metadata.names_crc32(["a", "b"])  # as specified
    assert metadata.names_crc32(["ab"]) != metadata.names_crc32(["a", "b"])


# --- details must be the kind's own -------------------------------------------------------------


def _other_details(kind: kinds.Kind) -> kinds.Kind:
    return next(other for other in kinds.KINDS if other.details != kind.details)


@pytest.mark.parametrize("kind", kinds.KINDS, ids=[k.name for k in kinds.KINDS])
def test_details_of_another_kind_raise_metadata_error_naming_both(kind):
    other = _other_details(kind)
    plugin_data = pb.PluginData(version=metadata.SCHEMA_VERSION, kind=kind.enum)
    getattr(plugin_data, other.details).SetInParent()
    with pytest.raises(metadata.MetadataError) as caught:
        metadata.parse_plugin_data(plugin_data.SerializeToString())
    message = str(caught.value)
    assert kind.name in message and other.details in message
    assert "another tool" in message
    with pytest.raises(ValueError, match=other.details):
        metadata.create_summary_metadata(plugin_data)


@pytest.mark.parametrize("kind", kinds.KINDS, ids=[k.name for k in kinds.KINDS])
def test_own_details_parse(kind):
    plugin_data = pb.PluginData(version=metadata.SCHEMA_VERSION, kind=kind.enum)
    getattr(plugin_data, kind.details).SetInParent()
    parsed = metadata.parse_plugin_data(plugin_data.SerializeToString())
    assert parsed.WhichOneof("details") == kind.details


def test_unknown_kind_message_says_upgrade_and_no_kind_says_another_tool():
    unknown = pb.PluginData(version=metadata.SCHEMA_VERSION, kind=99).SerializeToString()
    with pytest.raises(metadata.UnknownKindError, match="(?i)upgrade"):
        metadata.parse_plugin_data(unknown)
    none = pb.PluginData(version=metadata.SCHEMA_VERSION).SerializeToString()
    with pytest.raises(metadata.UnknownKindError, match="another tool"):
        metadata.parse_plugin_data(none)
