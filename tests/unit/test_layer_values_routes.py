"""The `layer_values` route, served in-process through TensorBoard's multiplexer data provider.

Log dirs are written with `deepscope.SummaryWriter.add_layer_values` (and damaged
events by hand); the plugin is mounted in TensorBoard's own WSGI app. Every
response is compared with a reference built here from what was logged: the
union of the steps' layer names in order of first appearance, float32 values,
null (json) / NaN + `not_measured` (base64) where a layer was not measured.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from tensorboard import context as tb_context
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import series
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from deepscope.tb_plugin.layer_values_routes import LayerValuesRoutes, StepDecoder, decode_payload
from deepscope.tb_plugin.route_context import RouteContext
from deepscope.writer.summary import tensor_summary
from tests.layer_values_data import DAMAGED, GOOD
from tests.route_helpers import decode, multiplexer_provider, number

NAN, INF = math.nan, math.inf
EPS32 = float(np.finfo(np.float32).eps)

# run "grads", tag "grad_norm": (step, wall time, {layer: value or None}). Steps name
# different layers, in different orders.
GRADS = [
    (0, 1000.0, {"conv1": 0.5, "conv2": 0.25, "fc": None}),
    (5, 1005.5, {"conv2": 0.125, "fc": NAN, "head": 3.0}),
    (10, 1010.25, {"conv1": INF, "conv2": -INF, "fc": 1e-6, "head": None}),
    (15, 1015.0, {"head": 2.0, "conv1": 0.75}),
]


def _damaged_run(name: str) -> str:
    return "damaged-" + name.replace(" ", "-")


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("layer-values")
    writer = deepscope.SummaryWriter(str(logdir / "grads"))
    for step, wall_time, values in GRADS:
        writer.add_layer_values(
            "grad_norm", values, step, wall_time, quantity="gradient norm", unit="", scale="log"
        )
    writer.add_layer_values("dead", {"fc": 0.0, "conv": 0.5}, 0, quantity="dead", scale="linear")
    writer.add_update_ratios("update", {"fc.weight": 1e-3}, global_step=0)
    writer.close()
    for name, (build, _) in DAMAGED.items():
        writer = deepscope.SummaryWriter(str(logdir / _damaged_run(name)))
        writer.add_layer_values("dead", GOOD, 0, 10.0, quantity="dead units", unit="fraction")
        writer.file_writer.add_summary(build("dead"), 1, 11.0)
        writer.add_layer_values("dead", GOOD, 2, 12.0)
        writer.close()
    # Seven damaged events among good ones: the warning spells out five.
    writer = deepscope.SummaryWriter(str(logdir / "many-damaged"))
    writer.add_layer_values("dead", GOOD, 0)
    for step in range(1, 8):
        writer.file_writer.add_summary(tensor_summary("dead", b"\xff" * step, None), step, 1.0)
    writer.add_layer_values("dead", GOOD, 8)
    writer.close()
    return logdir


def _client(provider) -> werkzeug_test.Client:
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    return werkzeug_test.Client(app)


@pytest.fixture(scope="module")
def client(logdir):
    return _client(multiplexer_provider(logdir)[1])


def get(client, **query):
    response = client.get("/data/plugin/deepscope/layer_values", query_string=query)
    return response.status_code, response.get_data(as_text=True)


def get_json(client, **query) -> dict:
    status, body = get(client, **query)
    assert status == 200, body
    return json.loads(body)


def _reference(logged):
    """(names, float32 values [S, P] NaN where not measured, measured [S, P]) from the log."""
    names: list[str] = []
    for _, _, values in logged:
        names += [name for name in values if name not in names]
    values = np.full((len(logged), len(names)), np.nan, dtype=np.float32)
    measured = np.zeros(values.shape, dtype=bool)
    for i, (_, _, row) in enumerate(logged):
        for name, value in row.items():
            if value is not None:
                values[i, names.index(name)] = np.float32(value)
                measured[i, names.index(name)] = True
    return names, values, measured


def test_json_holds_the_union_of_layers_with_null_where_not_measured(client):
    body = get_json(client, run="grads", tag="grad_norm")
    names, values, measured = _reference(GRADS)
    assert body["run"] == "grads" and body["tag"] == "grad_norm"
    assert body["names"] == names == ["conv1", "conv2", "fc", "head"]
    assert body["steps"] == [step for step, _, _ in GRADS]
    np.testing.assert_allclose(body["wall_times"], [t for _, t, _ in GRADS], rtol=1e-15)
    assert (body["quantity"], body["unit"], body["scale"]) == ("gradient norm", "", "log")
    served = body["values"]
    assert [[v is None for v in row] for row in served] == (~measured).tolist()
    as_floats = np.array(
        [[NAN if v is None else number(v) for v in row] for row in served], dtype=np.float64
    )
    np.testing.assert_allclose(as_floats, values, rtol=EPS32, equal_nan=True)
    assert served[1][2] == "NaN" and served[2][0] == "Infinity" and served[2][1] == "-Infinity"
    assert body["non_finite"] == int((~np.isfinite(values) & measured).sum()) == 3
    assert body["warnings"] == []


def test_base64_holds_the_same_values_and_the_not_measured_pairs(client):
    body = get_json(client, run="grads", tag="grad_norm", format="base64")
    names, values, measured = _reference(GRADS)
    assert body["names"] == names
    assert body["values"]["dtype"] == "float32"
    assert body["values"]["shape"] == [len(GRADS), len(names)]
    served = decode(body["values"])
    np.testing.assert_allclose(served, values, rtol=EPS32, equal_nan=True)
    assert body["not_measured"] == np.argwhere(~measured).tolist()
    assert body["non_finite"] == 3


def test_name_picks_layers_in_the_order_asked(client):
    body = get_json(client, run="grads", tag="grad_norm", name=["head", "conv1"])
    names, values, measured = _reference(GRADS)
    columns = [names.index("head"), names.index("conv1")]
    assert body["names"] == ["head", "conv1"]
    expected = [
        [None if not measured[i, j] else number(values[i, j]) for j in columns]
        for i in range(len(GRADS))
    ]
    for row, want in zip(body["values"], expected, strict=True):
        for got, wanted in zip(row, want, strict=True):
            if wanted is None:
                assert got is None
            else:
                assert math.isclose(number(got), wanted, rel_tol=EPS32) or got == "Infinity"
    assert body["non_finite"] == 1  # conv1's Infinity at step 10


def test_a_linear_series_says_so(client):
    body = get_json(client, run="grads", tag="dead")
    assert (body["quantity"], body["scale"]) == ("dead", "linear")
    assert body["names"] == ["fc", "conv"] and body["values"] == [[0.0, 0.5]]


def test_tags_name_the_scale_as_the_route_does(client):
    response = client.get("/data/plugin/deepscope/tags")
    assert response.status_code == 200
    tags = json.loads(response.get_data(as_text=True))["grads"]
    assert (tags["dead"]["kind"], tags["dead"]["scale"]) == ("layer_values", "linear")
    assert (tags["grad_norm"]["quantity"], tags["grad_norm"]["scale"]) == ("gradient norm", "log")


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_a_damaged_event_drops_its_own_step_with_a_warning_naming_it(client, damage):
    _, reason = DAMAGED[damage]
    for fmt in ("json", "base64"):
        body = get_json(client, run=_damaged_run(damage), tag="dead", format=fmt)
        assert body["steps"] == [0, 2]
        assert body["names"] == ["a", "b"]
        assert body["quantity"] == "dead units" and body["unit"] == "fraction"
        (warning,) = body["warnings"]
        assert "1 event(s) (first at step 1) are malformed" in warning
        assert "step 1: " in warning and reason in warning, warning
    assert get_json(client, run=_damaged_run(damage), tag="dead")["values"] == [
        [0.5, 0.25],
        [0.5, 0.25],
    ]


def test_values_stored_in_another_float_dtype_are_served_as_float32(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    writer.add_layer_values("x", {"a": 1.0, "b": 2.0}, 0)
    for step, dtype in ((1, np.float64), (2, np.float16)):
        payload = pb.LayerValuesStep(names=["a", "b"])
        payload.values.CopyFrom(arrays.encode_array(np.array([0.1, 3e-3], dtype=dtype)))
        summary = tensor_summary("x", payload.SerializeToString(), None)
        writer.file_writer.add_summary(summary, step, 1.0)
    writer.close()
    body = get_json(_client(multiplexer_provider(tmp_path)[1]), run="run", tag="x")
    assert body["steps"] == [0, 1, 2] and body["warnings"] == []
    expected = [[1.0, 2.0], [0.1, 3e-3], [np.float16(0.1), np.float16(3e-3)]]
    np.testing.assert_allclose(
        np.array(body["values"]), np.array(expected, dtype=np.float32), rtol=EPS32
    )


def test_many_damaged_events_are_counted_and_the_first_five_explained(client):
    body = get_json(client, run="many-damaged", tag="dead")
    assert body["steps"] == [0, 8]
    (warning,) = body["warnings"]
    assert warning.startswith("7 event(s) (first at step 1) are malformed and left out: ")
    assert all(f"step {s}: " in warning for s in range(1, 6))
    assert "step 6: " not in warning and warning.endswith("; and 2 more")


@pytest.mark.parametrize(
    "query, status, message",
    [
        ({"tag": "grad_norm"}, 400, "missing query parameter 'run'"),
        ({"run": "grads"}, 400, "missing query parameter 'tag'"),
        ({"run": "grads", "tag": "grad_norm", "format": "csv"}, 400, "format must be one of"),
        ({"run": "nope", "tag": "grad_norm"}, 404, "no run named 'nope'"),
        ({"run": "grads", "tag": "nope"}, 404, "run 'grads' has no deepscope tag 'nope'"),
        ({"run": "grads", "tag": "update"}, 400, "holds update_ratios data, not layer_values"),
        (
            {"run": "grads", "tag": "grad_norm", "name": "conv9"},
            404,
            "has no layer 'conv9'; its layers: conv1, conv2, fc, head",
        ),
    ],
    ids=["no run", "no tag", "format", "unknown run", "unknown tag", "other kind", "name"],
)
def test_bad_requests_get_a_message_saying_what_exists(client, query, status, message):
    got, body = get(client, **query)
    assert got == status, body
    assert message in body


def test_new_steps_are_served_once_the_loader_has_them(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    writer.add_layer_values("x", {"a": 1.0}, 0)
    writer.flush()
    multiplexer, provider = multiplexer_provider(tmp_path)
    client = _client(provider)
    assert get_json(client, run="run", tag="x")["steps"] == [0]
    assert get_json(client, run="run", tag="x")["steps"] == [0]  # remembered
    writer.add_layer_values("x", {"a": 2.0, "b": 4.0}, 1)
    writer.close()
    multiplexer.Reload()
    body = get_json(client, run="run", tag="x")
    assert body["steps"] == [0, 1] and body["names"] == ["a", "b"]
    assert body["values"] == [[1.0, None], [2.0, 4.0]]


def test_the_handlers_return_data_without_http(logdir):
    _, provider = multiplexer_provider(logdir)
    routes = LayerValuesRoutes(RouteContext(provider, series.SeriesCatalog(provider), None))
    decoded = routes.layer_values(tb_context.RequestContext(), "", "grads", "grad_norm")
    names, values, measured = _reference(GRADS)
    assert decoded.names == names
    assert decoded.steps.tolist() == [0, 5, 10, 15]
    np.testing.assert_array_equal(decoded.measured, measured)
    np.testing.assert_allclose(decoded.values, values, rtol=EPS32, equal_nan=True)


def test_the_decoder_reusing_the_previous_names_decodes_as_a_fresh_parse():
    def payload(names, values, not_measured=()) -> np.ndarray:
        step = pb.LayerValuesStep(names=names, not_measured=list(not_measured))
        step.values.CopyFrom(arrays.encode_array(np.asarray(values, dtype=np.float32)))
        return np.array(step.SerializeToString(), dtype=object)

    def concatenated(*parts: pb.LayerValuesStep) -> np.ndarray:
        # A message is the merge of its parts: names after the values, as no writer orders them.
        return np.array(b"".join(p.SerializeToString() for p in parts), dtype=object)

    values_ab = pb.LayerValuesStep(values=arrays.encode_array(np.array([1, 2, 3], np.float32)))
    payloads = [
        payload(["a", "b"], [1.0, 2.0]),
        payload(["a", "b"], [3.0, 4.0], not_measured=[0]),  # the same names: reused
        concatenated(
            pb.LayerValuesStep(names=["a", "b"]), values_ab, pb.LayerValuesStep(names=["c"])
        ),
        payload(["a", "b"], [5.0, 6.0]),
        payload(["a", "bb"], [7.0, 8.0]),  # a name that begins like the previous one
        payload(["a", "b", "a"], [1.0, 2.0, 3.0]),  # damaged: a repeated name
        payload(["a", "b"], [9.0]),  # damaged: too few values
        payload(["a", "b"], [10.0, 11.0]),
    ]
    decoder = StepDecoder()
    for i, one in enumerate(payloads):
        try:
            fresh = decode_payload(one)
        except ValueError as error:
            with pytest.raises(ValueError, match=re.escape(str(error))):
                decoder.decode(one)
            continue
        names, values, not_measured = decoder.decode(one)
        assert names == fresh[0], i
        np.testing.assert_allclose(values, fresh[1], rtol=EPS32, equal_nan=True)
        assert not_measured == fresh[2], i
    assert decode_payload(payloads[2])[0] == ("a", "b", "c")


class GradNorms(deepscope.Measurer):
    """A user's own measurer, as the README shows one: each parameter's gradient norm."""

    name = "grad_norms"

    def before_step(self, step, model, optimizer, writer):  # this step's gradients are there
        norms = {n: p.grad.norm() for n, p in model.named_parameters() if p.grad is not None}
        writer.add_layer_values("grad_norm", norms, global_step=step, quantity="‖∇W‖₂")


def test_a_users_measurer_under_watch_is_served_with_its_numbers(tmp_path):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    model[2].bias.requires_grad_(False)  # no gradient: not in the measurer's mapping
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    monitor = deepscope.watch(model, optimizer, writer, measure=[GradNorms(every=2)])
    reference = []  # per optimizer step: name → numpy norm of the gradient
    for _ in range(6):
        optimizer.zero_grad()
        model(torch.randn(8, 4)).square().mean().backward()
        reference.append(
            {
                n: np.linalg.norm(p.grad.numpy().astype(np.float64))
                for n, p in model.named_parameters()
                if p.grad is not None
            }
        )
        optimizer.step()
    stats = monitor.stats.measurers["grad_norms"]
    monitor.close()
    writer.close()
    assert stats.runs == 3 and stats.error_count == 0, stats
    body = get_json(_client(multiplexer_provider(tmp_path)[1]), run="run", tag="grad_norm")
    assert body["quantity"] == "‖∇W‖₂" and body["warnings"] == []
    assert body["names"] == ["0.weight", "0.bias", "2.weight"]
    assert body["steps"] == [0, 2, 4]  # every=2 from global step 0
    expected = [[reference[step][n] for n in body["names"]] for step in body["steps"]]
    np.testing.assert_allclose(np.array(body["values"]), np.array(expected), rtol=8 * EPS32)
