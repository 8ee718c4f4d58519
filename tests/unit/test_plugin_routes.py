"""The plugin's routes, served in-process from a data provider built as TensorBoard builds it.

No tensorboard process: event files are read by TensorBoard's Python loader
(`EventMultiplexer` with the production size guidance) behind
`MultiplexerDataProvider`, and the plugin is mounted in TensorBoard's own WSGI app
(`TensorBoardWSGI`), which adds the routing, the experiment id, and the
`tensorboard.errors` → HTTP status mapping.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from deepscope import metadata
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import loader
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin

NAN, INF = math.nan, math.inf

# run "alpha", tag "model": (step, walltime, {name: ratio or None}).
ALPHA_NAMES = ["fc.weight", "fc.bias", "odd", "bad"]
ALPHA = [
    (0, 1000.0, [1e-3, 2e-3, None, NAN]),
    (10, 1010.5, [1.5e-3, None, 0.5, INF]),
    (20, 1021.25, [2e-3, 3e-3, None, -INF]),
    (30, 1030.0, [2.5e-3, 4e-3, 0.25, 7.0]),
]
# run "changed", tag "model": the parameter list changes mid-run.
CHANGED = [
    (0, {"a": 0.1, "b": 0.2}),
    (1, {"a": 0.3, "c": None}),
    (2, {"c": 0.4, "a": 0.5, "b": 0.6}),
    (3, {"a": 0.7, "b": None}),
]
# run "blocks", tag "model": one-step events and blocks of steps (as watch() writes), one
# block in other names than the series'; and, by hand, the rows a reader must give back.
BLOCK_EVENTS = [
    ("single", (0, {"p": 0.1, "q": None})),
    (
        "block",
        (
            ["p", "q"],
            [1, 2, 3],
            [[0.2, 0.3], [0.4, NAN], [0.5, 0.6]],
            [[False, False], [False, False], [False, True]],
        ),
    ),
    ("block", (["q", "r"], [4, 5], [[0.7, 0.8], [0.9, 1.0]], [[True, False], [False, False]])),
]
BLOCK_ROWS = {  # step: values of p, q, r (None: no update or absent)
    0: [0.1, None, None],
    1: [0.2, 0.3, None],
    2: [0.4, NAN, None],
    3: [0.5, None, None],
    4: [None, None, 0.8],
    5: [None, 0.9, 1.0],
}
LONG_STEPS = 30  # more than the 10 samples TensorBoard keeps by default for an unknown plugin
# run "zeros", tag "model": zero weights (undefined ratios) written by each verb; the last
# block in other names than the series'. Rows the reader must give back: "Z" is a zero weight.
ZERO_ROWS = {  # step: values of w, b, c
    0: [1e-3, "Z", None],
    1: [2e-3, 0.5, "Z"],
    2: [3e-3, "Z", 0.25],
    3: [None, "Z", 4e-3],
}


def _write_update_ratio_runs(logdir: Path) -> None:
    import deepscope

    writer = deepscope.SummaryWriter(str(logdir / "alpha"))
    for step, walltime, values in ALPHA:
        writer.add_update_ratios(
            "model", dict(zip(ALPHA_NAMES, values)), global_step=step, walltime=walltime
        )
        writer.add_update_ratios("other", {"x": step / 100}, global_step=step, walltime=walltime)
        writer.add_scalar("loss", 1.0 / (step + 1), global_step=step, walltime=walltime)
    writer.close()

    writer = deepscope.SummaryWriter(str(logdir / "changed"))
    for step, ratios in CHANGED:
        writer.add_update_ratios("model", ratios, global_step=step, walltime=2000.0 + step)
    writer.close()

    # A run restarted by another writer process with other parameters: the new process
    # writes its own metadata, which TensorBoard ignores (it keeps the tag's first).
    for names, steps in ((["a", "b"], (0, 1)), (["a", "c"], (2, 3))):
        writer = deepscope.SummaryWriter(str(logdir / "restarted"))
        for step in steps:
            ratios = {name: 0.1 * (step + 1) for name in names}
            writer.add_update_ratios("model", ratios, global_step=step, walltime=3000.0 + step)
        writer.close()

    writer = deepscope.SummaryWriter(str(logdir / "blocks"))
    for kind, payload in BLOCK_EVENTS:
        if kind == "single":
            step, ratios = payload
            writer.add_update_ratios("model", ratios, global_step=step, walltime=4000.0 + step)
        else:
            names, steps, values, no_update = payload
            writer._add_update_ratio_block(
                "model",
                names,
                np.array(values, dtype=np.float32),
                steps=steps,
                wall_times=[4000.0 + s for s in steps],
                no_update=np.array(no_update),
            )
    writer.close()

    from deepscope.writer.update_ratios import ZERO_WEIGHT

    writer = deepscope.SummaryWriter(str(logdir / "zeros"))
    writer.add_update_ratios("model", {"w": 1e-3, "b": ZERO_WEIGHT, "c": None}, global_step=0)
    writer._add_update_ratio_block(
        "model",
        ["w", "b", "c"],
        np.array([[2e-3, 0.5, 9.0], [3e-3, 9.0, 0.25]], dtype=np.float32),
        steps=[1, 2],
        wall_times=[1.0, 2.0],
        zero_weight=np.array([[False, False, True], [False, True, False]]),
    )
    writer._add_update_ratio_block(
        "model",
        ["c", "b"],
        np.array([[4e-3, 9.0]], dtype=np.float32),
        steps=[3],
        wall_times=[3.0],
        zero_weight=np.array([[False, True]]),
    )
    writer.close()

    writer = deepscope.SummaryWriter(str(logdir / "long"))
    for step in range(LONG_STEPS):
        writer.add_update_ratios("model", {"w": (step + 1) * 1e-3}, global_step=step)
    writer.close()


def _write_by_hand(logdir: Path) -> None:
    """Raw Summary protos through torch's file writer: a newer schema, and a spectrum."""
    from torch.utils.tensorboard import SummaryWriter as TorchSummaryWriter

    from deepscope.writer import summary, update_ratios

    writer = TorchSummaryWriter(str(logdir / "future"))
    writer.file_writer.add_summary(update_ratios.update_ratios_pb("current", {"w": 1e-3}), 0, 1.0)
    newer = update_ratios.update_ratios_pb("from_the_future", {"w": 1e-3})
    content = pb.PluginData.FromString(newer.value[0].metadata.plugin_data.content)
    content.version = metadata.SCHEMA_VERSION + 1
    newer.value[0].metadata.plugin_data.content = content.SerializeToString()
    writer.file_writer.add_summary(newer, 0, 1.0)

    # A blob-sequence series of another kind, as spectra will be written.
    spectrum = metadata.create_summary_metadata(pb.PluginData(kind=pb.SPECTRUM))
    blob = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]
        ),
        string_val=[pb.SpectrumStep().SerializeToString()],
    )
    value = summary_pb2.Summary.Value(tag="fc1", tensor=blob, metadata=spectrum)
    writer.file_writer.add_summary(summary_pb2.Summary(value=[value]), 0, 1.0)
    writer.close()

    # Damaged update-ratio events between good ones: bytes that do not parse, and marks
    # that point past the event's values.
    writer = TorchSummaryWriter(str(logdir / "damaged"))
    writer.file_writer.add_summary(update_ratios.update_ratios_pb("model", {"w": 0.5}), 0, 1.0)
    for step, payload in (
        (1, b"\xff\xff\xff not a message"),
        # zero_weight (field 7) = [5], past the one value.
        (2, update_ratios.update_ratios_step(["w"], [0.5]).SerializeToString() + b"\x38\x05"),
        # no_update (field 2) = [9], past the one value.
        (3, update_ratios.update_ratios_step(["w"], [0.5]).SerializeToString() + b"\x10\x09"),
    ):
        value = summary_pb2.Summary.Value(tag="model", tensor=summary._string_tensor(payload))
        writer.file_writer.add_summary(summary_pb2.Summary(value=[value]), step, 1.0)
    good = update_ratios.update_ratios_summary(
        "model", update_ratios.update_ratios_step(["w"], [0.25]), metadata_names=None
    )
    writer.file_writer.add_summary(good, 4, 1.0)
    writer.close()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("plugin-logdir")
    _write_update_ratio_runs(logdir)
    _write_by_hand(logdir)
    return logdir


def _provider(logdir: Path, tensor_size_guidance=None):
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=tensor_size_guidance or data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return tb_data_provider.MultiplexerDataProvider(multiplexer, str(logdir))


def _client(provider, sampling_hints) -> werkzeug_test.Client:
    context = base_plugin.TBContext(data_provider=provider, sampling_hints=sampling_hints)
    plugin = DeepscopePlugin(context)
    app = application.TensorBoardWSGI([plugin], data_provider=provider)
    return werkzeug_test.Client(app)


@pytest.fixture(scope="module")
def client(logdir) -> werkzeug_test.Client:
    return _client(_provider(logdir), {"deepscope": 0})


def get(client, route: str, **query):
    """GET /data/plugin/deepscope/<route>; returns (status, body text, content type)."""
    response = client.get(f"/data/plugin/deepscope/{route}", query_string=query)
    return response.status_code, response.get_data(as_text=True), response.headers["Content-Type"]


def get_json(client, route: str, **query):
    status, body, content_type = get(client, route, **query)
    assert status == 200, body
    assert content_type.startswith("application/json")
    return json.loads(body)


def _json_spelling(value):
    """What the json format should say for a logged value."""
    if value is None:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(np.float32(value))


# --- tags --------------------------------------------------------------------------------------


def test_tags_lists_every_deepscope_series(client):
    tags = get_json(client, "tags")
    version = metadata.SCHEMA_VERSION
    assert set(tags) == {
        "alpha",
        "blocks",
        "changed",
        "restarted",
        "long",
        "future",
        "zeros",
        "damaged",
    }
    assert tags["alpha"] == {
        "model": {"kind": "update_ratios", "version": version, "names": ALPHA_NAMES},
        "other": {"kind": "update_ratios", "version": version, "names": ["x"]},
    }  # the scalar "loss" is not ours
    assert tags["changed"] == {
        "model": {"kind": "update_ratios", "version": version, "names": ["a", "b"]}
    }
    assert tags["future"]["current"] == {
        "kind": "update_ratios",
        "version": version,
        "names": ["w"],
    }
    assert tags["future"]["fc1"] == {"kind": "spectrum", "version": version}


def test_tags_show_a_newer_schema_with_an_error_saying_upgrade(client):
    entry = get_json(client, "tags")["future"]["from_the_future"]
    assert entry["kind"] == "update_ratios"
    assert entry["version"] == metadata.SCHEMA_VERSION + 1
    assert "upgrade" in entry["error"].lower()
    assert "names" not in entry


@pytest.mark.parametrize(
    "route, query, status",
    [
        ("tags", {}, 200),
        ("update_ratios", {"run": "alpha", "tag": "model"}, 200),
        ("update_ratios", {"run": "alpha"}, 400),
        ("update_ratios", {"run": "nope", "tag": "model"}, 404),
    ],
)
def test_responses_go_through_http_util_respond(client, route, query, status):
    response = client.get(f"/data/plugin/deepscope/{route}", query_string=query)
    assert response.status_code == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_plugin_is_listed_when_the_logdir_has_its_data(client):
    response = client.get("/data/plugins_listing")
    assert response.status_code == 200
    listing = json.loads(response.get_data(as_text=True))
    assert listing["deepscope"]["enabled"] is True
    assert listing["deepscope"]["tab_name"] == "deepscope"


def test_tags_of_an_empty_logdir(tmp_path):
    assert get_json(_client(_provider(tmp_path), {"deepscope": 0}), "tags") == {}


# --- update_ratios, json -----------------------------------------------------------------------


def test_update_ratios_json_values_equal_what_was_logged(client):
    body = get_json(client, "update_ratios", run="alpha", tag="model")
    assert body["run"] == "alpha" and body["tag"] == "model"
    assert body["steps"] == [step for step, _, _ in ALPHA]
    assert body["wall_times"] == [walltime for _, walltime, _ in ALPHA]
    assert body["names"] == ALPHA_NAMES
    assert body["values"] == [[_json_spelling(v) for v in values] for _, _, values in ALPHA]
    measured = [v for _, _, values in ALPHA for v in values if v is not None]
    assert body["non_finite"] == sum(not math.isfinite(v) for v in measured) == 3
    assert body["warnings"] == []


def test_update_ratios_json_is_strict_json(client):
    _, text, _ = get(client, "update_ratios", run="alpha", tag="model")

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    json.loads(text, parse_constant=refuse)


def test_format_json_is_the_default(client):
    default = get_json(client, "update_ratios", run="alpha", tag="model")
    explicit = get_json(client, "update_ratios", run="alpha", tag="model", format="json")
    assert default == explicit


def test_name_filter_selects_and_orders_columns(client):
    body = get_json(client, "update_ratios", run="alpha", tag="model", name=["bad", "fc.weight"])
    assert body["names"] == ["bad", "fc.weight"]
    assert body["values"] == [
        [_json_spelling(values[3]), _json_spelling(values[0])] for _, _, values in ALPHA
    ]
    assert body["non_finite"] == 3


def test_name_filter_counts_non_finite_of_the_selection_only(client):
    body = get_json(client, "update_ratios", run="alpha", tag="model", name="fc.bias")
    assert body["values"] == [[_json_spelling(values[1])] for _, _, values in ALPHA]
    assert body["non_finite"] == 0


# --- update_ratios, base64 ---------------------------------------------------------------------


def test_update_ratios_base64_decodes_to_the_logged_values(client):
    body = get_json(client, "update_ratios", run="alpha", tag="model", format="base64")
    assert body["names"] == ALPHA_NAMES
    assert body["steps"] == [step for step, _, _ in ALPHA]
    assert body["values"]["dtype"] == "float32"
    assert body["values"]["shape"] == [len(ALPHA), len(ALPHA_NAMES)]
    raw = base64.b64decode(body["values"]["base64"])
    values = np.frombuffer(raw, dtype="<f4").reshape(body["values"]["shape"])
    expected = np.array(
        [[NAN if v is None else v for v in row] for _, _, row in ALPHA], dtype=np.float32
    )
    np.testing.assert_array_equal(values, expected)  # NaN == NaN here
    expected_marks = [[i, j] for i, (_, _, row) in enumerate(ALPHA) for j, v in enumerate(row)]
    expected_marks = [[i, j] for i, j in expected_marks if ALPHA[i][2][j] is None]
    assert sorted(body["no_update"]) == expected_marks
    assert body["non_finite"] == 3


def test_base64_with_name_filter(client):
    body = get_json(
        client, "update_ratios", run="alpha", tag="model", format="base64", name=["odd"]
    )
    values = np.frombuffer(base64.b64decode(body["values"]["base64"]), dtype="<f4")
    assert body["values"]["shape"] == [len(ALPHA), 1]
    odd = [row[2] for _, _, row in ALPHA]
    np.testing.assert_array_equal(values, np.float32([NAN if v is None else v for v in odd]))
    assert body["no_update"] == [[i, 0] for i, v in enumerate(odd) if v is None]


# --- blocks of steps in one event -----------------------------------------------------------


def test_blocks_and_single_steps_give_one_row_per_step(client):
    body = get_json(client, "update_ratios", run="blocks", tag="model")
    assert body["steps"] == sorted(BLOCK_ROWS)
    assert body["wall_times"] == [4000.0 + s for s in sorted(BLOCK_ROWS)]
    assert body["names"] == ["p", "q", "r"]
    assert body["values"] == [[_json_spelling(v) for v in BLOCK_ROWS[s]] for s in body["steps"]]
    assert body["non_finite"] == 1
    assert body["warnings"] == []


def test_blocks_in_base64(client):
    body = get_json(client, "update_ratios", run="blocks", tag="model", format="base64")
    values = np.frombuffer(base64.b64decode(body["values"]["base64"]), "<f4").reshape(6, 3)
    marks = {tuple(pair) for pair in body["no_update"]}
    for i, step in enumerate(sorted(BLOCK_ROWS)):
        for j, want in enumerate(BLOCK_ROWS[step]):
            assert ((i, j) in marks) == (want is None)
            if want is not None:
                assert (
                    np.isnan(values[i, j]) if math.isnan(want) else values[i, j] == np.float32(want)
                )


# --- zero weights (undefined ratios) ---------------------------------------------------------


def _zero_weight_pairs(names: list[str]) -> list[list[int]]:
    columns = ["w", "b", "c"]
    return [
        [i, j]
        for i, step in enumerate(sorted(ZERO_ROWS))
        for j, name in enumerate(names)
        if ZERO_ROWS[step][columns.index(name)] == "Z"
    ]


@pytest.mark.parametrize("fmt", ["json", "base64"])
def test_zero_weights_are_listed_apart_and_not_non_finite(client, fmt):
    body = get_json(client, "update_ratios", run="zeros", tag="model", format=fmt)
    assert body["steps"] == sorted(ZERO_ROWS)
    assert body["names"] == ["w", "b", "c"]
    assert body["zero_weight"] == _zero_weight_pairs(body["names"])
    assert body["non_finite"] == 0
    assert body["warnings"] == []
    if fmt == "json":
        # Neither a number nor a non-finite measurement: null, told apart by zero_weight.
        want = [
            [None if v == "Z" else _json_spelling(v) for v in row] for row in ZERO_ROWS.values()
        ]
        assert body["values"] == want
    else:
        values = np.frombuffer(base64.b64decode(body["values"]["base64"]), "<f4").reshape(4, 3)
        for i, j in body["zero_weight"]:
            assert np.isnan(values[i, j])
        assert [[i, j] for i, j in body["no_update"]] == [[0, 2], [3, 0]]
        assert values[1, 1] == np.float32(0.5) and values[3, 2] == np.float32(4e-3)


@pytest.mark.parametrize("fmt", ["json", "base64"])
def test_zero_weights_follow_the_name_filter(client, fmt):
    body = get_json(client, "update_ratios", run="zeros", tag="model", format=fmt, name=["c", "b"])
    assert body["zero_weight"] == _zero_weight_pairs(["c", "b"])
    assert body["zero_weight"] == [[0, 1], [1, 0], [2, 1], [3, 1]]


def test_series_without_zero_weights_lists_none(client):
    assert get_json(client, "update_ratios", run="alpha", tag="model")["zero_weight"] == []


# --- damaged events --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "base64"])
def test_damaged_events_are_left_out_with_a_warning_not_a_500(client, fmt):
    body = get_json(client, "update_ratios", run="damaged", tag="model", format=fmt)
    assert body["steps"] == [0, 4]
    (warning,) = body["warnings"]
    assert "3 event(s)" in warning and "first at step 1" in warning and "malformed" in warning


# --- a series whose parameter list changed -----------------------------------------------------


def test_changed_names_give_the_union_with_no_update_where_absent(client):
    body = get_json(client, "update_ratios", run="changed", tag="model")
    assert body["steps"] == [0, 1, 2, 3]
    assert body["names"] == ["a", "b", "c"]
    expected = []
    for _, ratios in CHANGED:
        expected.append([_json_spelling(ratios.get(name)) for name in body["names"]])
    assert body["values"] == expected
    assert body["values"][0][2] is None  # "c" did not exist yet
    assert body["values"][1][1] is None  # "b" was absent at step 1
    assert body["values"][1][2] is None  # "c" was present but got no update
    assert body["warnings"] == []


def test_changed_names_base64(client):
    body = get_json(client, "update_ratios", run="changed", tag="model", format="base64")
    shape = body["values"]["shape"]
    assert shape == [4, 3]
    values = np.frombuffer(base64.b64decode(body["values"]["base64"]), "<f4").reshape(shape)
    marks = {tuple(pair) for pair in body["no_update"]}
    for i, (_, ratios) in enumerate(CHANGED):
        for j, name in enumerate(body["names"]):
            if ratios.get(name) is None:
                assert (i, j) in marks
            else:
                assert (i, j) not in marks
                assert values[i, j] == np.float32(ratios[name])


def test_steps_of_a_restarted_writer_with_other_names_are_left_out_with_a_warning(client):
    body = get_json(client, "update_ratios", run="restarted", tag="model")
    assert body["names"] == ["a", "b"]
    assert body["steps"] == [0, 1]
    assert body["values"] == [[float(np.float32(0.1 * (s + 1)))] * 2 for s in (0, 1)]
    (warning,) = body["warnings"]
    assert "2 step(s)" in warning and "first: 2" in warning and "new tag" in warning


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, missing",
    [
        ({"tag": "model"}, "run"),
        ({"run": "alpha"}, "tag"),
        ({}, "run"),
        ({"run": "", "tag": "m"}, "run"),
    ],
)
def test_missing_argument_is_400_naming_it(client, query, missing):
    status, body, _ = get(client, "update_ratios", **query)
    assert status == 400
    assert f"'{missing}'" in body


def test_bad_format_is_400_listing_the_formats(client):
    status, body, _ = get(client, "update_ratios", run="alpha", tag="model", format="csv")
    assert status == 400
    assert "'csv'" in body and "json" in body and "base64" in body


def test_unknown_run_is_404_naming_the_runs(client):
    status, body, _ = get(client, "update_ratios", run="nope", tag="model")
    assert status == 404
    assert "'nope'" in body
    for run in ("alpha", "changed", "restarted", "future", "long"):
        assert f"'{run}'" in body


def test_unknown_tag_is_404_naming_the_tags(client):
    status, body, _ = get(client, "update_ratios", run="alpha", tag="loss")
    assert status == 404
    assert "'loss'" in body and "'model'" in body and "'other'" in body


def test_unknown_name_is_404_naming_the_parameters(client):
    status, body, _ = get(
        client, "update_ratios", run="alpha", tag="model", name=["fc.weight", "zz"]
    )
    assert status == 404
    assert "'zz'" in body
    for name in ALPHA_NAMES:
        assert name in body


def test_newer_schema_is_400_saying_upgrade_not_500(client):
    status, body, _ = get(client, "update_ratios", run="future", tag="from_the_future")
    assert status == 400
    assert "upgrade" in body.lower()


def test_series_of_another_kind_is_400_naming_its_kind(client):
    status, body, _ = get(client, "update_ratios", run="future", tag="fc1")
    assert status == 400
    assert "spectrum" in body


# --- sampling ------------------------------------------------------------------------------------


class _CountingProvider:
    """A data provider that counts its read_tensors calls (else the one it wraps)."""

    def __init__(self, inner):
        self._inner = inner
        self.tensor_reads = 0

    def read_tensors(self, *args, **kwargs):
        self.tensor_reads += 1
        return self._inner.read_tensors(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _live_ratios(step: int) -> dict[str, float]:
    return {"w": 1e-3 * (step + 1), "b": 2e-3 / (step + 1)}


@pytest.mark.parametrize("fmt", ["json", "base64"])
def test_remembered_update_ratios_follow_new_steps_and_answer_304(tmp_path, fmt):
    """A repeated request is served from memory (no read); new steps are served once loaded."""
    import deepscope

    writer = deepscope.SummaryWriter(str(tmp_path / "live"))
    for step in range(3):
        writer.add_update_ratios(
            "model", _live_ratios(step), global_step=step, walltime=100.0 + step
        )
    writer.flush()
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
    )
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    counting = _CountingProvider(
        tb_data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    )
    client = _client(counting, {"deepscope": 0})
    url = "/data/plugin/deepscope/update_ratios"
    query = {"run": "live", "tag": "model", "format": fmt}

    def decoded(response) -> tuple[list[int], np.ndarray]:
        body = json.loads(response.get_data())
        if fmt == "base64":
            raw = base64.b64decode(body["values"]["base64"])
            values = np.frombuffer(raw, "<f4").reshape(body["values"]["shape"])
        else:
            values = np.array(body["values"], dtype=np.float32)
        return body["steps"], values[:, [body["names"].index("w"), body["names"].index("b")]]

    def expected(steps: range) -> np.ndarray:
        return np.array([[_live_ratios(s)["w"], _live_ratios(s)["b"]] for s in steps], np.float32)

    first = client.get(url, query_string=query)
    assert first.status_code == 200
    steps, values = decoded(first)
    assert steps == [0, 1, 2]
    np.testing.assert_allclose(values, expected(range(3)), rtol=np.finfo(np.float32).eps)
    reads = counting.tensor_reads
    again = client.get(url, query_string=query)
    assert again.get_data() == first.get_data()
    assert counting.tensor_reads == reads  # remembered: the series was not read again
    etag = first.headers["ETag"]
    revalidated = client.get(url, query_string=query, headers={"If-None-Match": etag})
    assert (revalidated.status_code, revalidated.get_data()) == (304, b"")

    for step in range(3, 6):
        writer.add_update_ratios(
            "model", _live_ratios(step), global_step=step, walltime=100.0 + step
        )
    writer.close()
    multiplexer.Reload()
    grown = client.get(url, query_string=query, headers={"If-None-Match": etag})
    assert grown.status_code == 200
    steps, values = decoded(grown)
    assert steps == list(range(6))
    np.testing.assert_allclose(values, expected(range(6)), rtol=np.finfo(np.float32).eps)
    assert grown.headers["ETag"] != etag
    assert counting.tensor_reads == reads + 1
    settled = client.get(url, query_string=query, headers={"If-None-Match": grown.headers["ETag"]})
    assert (settled.status_code, settled.get_data()) == (304, b"")
    assert counting.tensor_reads == reads + 1


def _production_tensor_size_guidance():
    """What TensorBoard's Python loader uses once the plugin's loader has fixed the flags."""
    flags = argparse.Namespace(samples_per_plugin={})
    loader.DeepscopeLoader().fix_flags(flags)
    guidance = dict(data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE)
    guidance.update(flags.samples_per_plugin)
    return guidance


def test_loader_default_keeps_every_step_of_a_long_series(logdir):
    # Without the loader's default the Python loader keeps 10 samples (checked, so that this
    # test could fail) ...
    bare = get_json(
        _client(_provider(logdir), {"deepscope": 0}), "update_ratios", run="long", tag="model"
    )
    assert len(bare["steps"]) == 10
    # ... with it, every step.
    client = _client(_provider(logdir, _production_tensor_size_guidance()), {"deepscope": 0})
    body = get_json(client, "update_ratios", run="long", tag="model")
    assert body["steps"] == list(range(LONG_STEPS))
    assert body["values"] == [[float(np.float32((s + 1) * 1e-3))] for s in range(LONG_STEPS)]


def test_user_samples_per_plugin_wins_over_the_loader_default():
    flags = argparse.Namespace(samples_per_plugin={"deepscope": 7})
    loader.DeepscopeLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"deepscope": 7}


@pytest.mark.parametrize("hints", [{"deepscope": 5}, {"deepscope": 1}])
def test_sampling_hint_downsamples_keeping_the_last_step(logdir, hints):
    client = _client(_provider(logdir, _production_tensor_size_guidance()), hints)
    body = get_json(client, "update_ratios", run="long", tag="model")
    k = hints["deepscope"]
    assert len(body["steps"]) == k
    assert body["steps"] == sorted(set(body["steps"]))
    assert body["steps"][-1] == LONG_STEPS - 1
    assert body["values"] == [[float(np.float32((s + 1) * 1e-3))] for s in body["steps"]]


@pytest.mark.parametrize("hints", [None, {}, {"scalars": 3}])
def test_no_sampling_hint_means_every_kept_step(logdir, hints):
    client = _client(_provider(logdir, _production_tensor_size_guidance()), hints)
    body = get_json(client, "update_ratios", run="long", tag="model")
    assert body["steps"] == list(range(LONG_STEPS))


# --- plugin basics -------------------------------------------------------------------------------


def test_frontend_metadata_and_routes():
    plugin = DeepscopePlugin(base_plugin.TBContext(data_provider=None, sampling_hints={}))
    assert plugin.plugin_name == "deepscope"
    assert plugin.frontend_metadata().es_module_path == "/index.js"
    assert {"/index.js", "/tags", "/kinds", "/update_ratios"} <= set(plugin.get_plugin_apps())
    assert plugin.is_active() is False  # the listing comes from the data provider


def test_loader_builds_the_plugin():
    context = base_plugin.TBContext(data_provider=None, sampling_hints={"deepscope": 0})
    assert isinstance(loader.DeepscopeLoader().load(context), DeepscopePlugin)


def test_the_plugin_side_never_imports_torch():
    code = (
        "import sys\n"
        "import deepscope, deepscope.tb_plugin.loader, deepscope.tb_plugin.deepscope_plugin\n"
        "import deepscope.tb_plugin.series, deepscope.metadata, deepscope.proto.arrays\n"
        "import deepscope.tb_plugin.update_ratio_routes, deepscope.kinds\n"
        "for kind in deepscope.kinds.KINDS:\n"
        "    kind.load_routes()\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_entry_point_is_tiny_and_names_the_plugin_as_metadata_does():
    assert loader.PLUGIN_NAME == metadata.PLUGIN_NAME
    code = (
        "import sys\n"
        "import deepscope.tb_plugin.loader\n"
        "heavy = [m for m in sys.modules if m.startswith('deepscope.') and m not in (\n"
        "    'deepscope.tb_plugin', 'deepscope.tb_plugin.loader')]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
