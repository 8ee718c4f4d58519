"""deepscope.metadata: the SummaryMetadata both the writer and the plugin rely on."""

from __future__ import annotations

import zlib

import pytest
from tensorboard.compat.proto import summary_pb2

from deepscope import metadata
from deepscope.proto import deepscope_pb2 as pb

KINDS = [
    (pb.UPDATE_RATIOS, summary_pb2.DATA_CLASS_TENSOR, "update_ratios"),
    (pb.SPECTRUM, summary_pb2.DATA_CLASS_BLOB_SEQUENCE, "spectrum"),
    (pb.CORRELATION, summary_pb2.DATA_CLASS_BLOB_SEQUENCE, "correlation"),
    (pb.SALIENCY, summary_pb2.DATA_CLASS_BLOB_SEQUENCE, "saliency"),
]


def test_plugin_name_and_version():
    assert metadata.PLUGIN_NAME == "deepscope"
    assert isinstance(metadata.SCHEMA_VERSION, int) and metadata.SCHEMA_VERSION >= 1


@pytest.mark.parametrize("kind, data_class, kind_name", KINDS, ids=[k[2] for k in KINDS])
def test_create_summary_metadata(kind, data_class, kind_name):
    result = metadata.create_summary_metadata(
        pb.PluginData(kind=kind), display_name="shown", description="about it"
    )
    assert isinstance(result, summary_pb2.SummaryMetadata)
    assert result.plugin_data.plugin_name == "deepscope"
    assert result.data_class == data_class
    assert result.display_name == "shown"
    assert result.summary_description == "about it"
    content = pb.PluginData.FromString(result.plugin_data.content)
    assert content.version == metadata.SCHEMA_VERSION
    assert content.kind == kind
    assert metadata.KIND_NAMES[kind] == kind_name


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


@pytest.mark.parametrize("kind", [pb.KIND_UNSPECIFIED, 9])
def test_unknown_kind_raises_metadata_error(kind):
    content = pb.PluginData(version=metadata.SCHEMA_VERSION, kind=kind).SerializeToString()
    with pytest.raises(metadata.MetadataError, match="kind") as caught:
        metadata.parse_plugin_data(content)
    assert not isinstance(caught.value, metadata.NewerSchemaError)


@pytest.mark.parametrize(
    "names",
    [[], ["w"], ["fc1.weight", "fc1.bias", "fc2.weight"], ["größe", "名前", "a\tb"], [""] * 1],
)
def test_names_crc32_is_crc_of_newline_joined_utf8(names):
    assert metadata.names_crc32(names) == zlib.crc32("\n".join(names).encode("utf-8"))


def test_names_crc32_depends_on_order_and_grouping():
    assert metadata.names_crc32(["a", "b"]) != metadata.names_crc32(["b", "a"])
    assert metadata.names_crc32(["a", "b"]) == zlib.crc32(b"a\nb")
    assert metadata.names_crc32(["a\nb"]) == metadata.names_crc32(["a", "b"])  # as specified
    assert metadata.names_crc32(["ab"]) != metadata.names_crc32(["a", "b"])
