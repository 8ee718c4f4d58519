"""compare()'s logged regression and CKA, and compare_cka's layer × layer CKA matrix.

References: the `LayerComparison` compare() returns (itself tested against numpy's lstsq
and sklearn's Lasso in test_channel_regression.py and test_compare.py) for what the
`correlation_regression` route serves, and linear CKA by its definition (HSIC with the
centring matrix H, numpy float64) on the raw activations for `compare_cka`: 1 for a
network against itself, invariant to an orthogonal transform and an isotropic scale.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

import deepscope
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from deepscope.writer.cka import cka_matrix_pb
from tests.route_helpers import multiplexer_provider
from tests.unit.test_compare import _net, _probe

F32 = float(np.finfo(np.float32).eps)


def _direct_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA by its definition (Kornblith et al. 2019), samples as rows."""
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)))


class Mlp(torch.nn.Module):
    def __init__(self, width: int = 16, out: int = 8):
        super().__init__()
        self.fc1 = torch.nn.Linear(10, width)
        self.act = torch.nn.Tanh()
        self.fc2 = torch.nn.Linear(width, out)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _rotated_copy(net: Mlp, seed: int, scale: float) -> Mlp:
    """The same network with fc2's outputs turned by an orthogonal Q and scaled by `scale`."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((8, 8)))
    q = torch.from_numpy(q).float()
    copy = Mlp()
    copy.load_state_dict(net.state_dict())
    with torch.no_grad():
        copy.fc2.weight.copy_(scale * q @ net.fc2.weight)
        copy.fc2.bias.copy_(scale * q @ net.fc2.bias)
    return copy


def _outputs(net: torch.nn.Module, probe: torch.Tensor, names: list[str]) -> list[np.ndarray]:
    found = {}
    hooks = [
        dict(net.named_modules())[n].register_forward_hook(
            lambda m, i, o, n=n: found.__setitem__(n, o.detach().reshape(o.shape[0], -1))
        )
        for n in names
    ]
    with torch.no_grad():
        net.eval()(probe)
    for hook in hooks:
        hook.remove()
    return [found[n].double().numpy() for n in names]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("cross")
    a, b = _net(3), _net(4)
    probe = _probe(5, 10)
    with deepscope.SummaryWriter(str(logdir / "run")) as writer:
        results = compare(a, b, probe, ["conv1", "conv2"], writer, 7)
        skipped = compare(a, b, probe, ["conv2"], writer, 8, regression=False)
        cka = deepscope.compare_cka(
            a, b, probe, ["conv1", "bn1", "conv2"], writer=writer, global_step=7
        )
        summary = cka_matrix_pb("cka", cka.matrix, cka.layers_a, cka.layers_b)
        step = pb.CkaStep.FromString(summary.value[0].tensor.string_val[0])
        step.seconds = -2.0
        summary.value[0].tensor.string_val[0] = step.SerializeToString()
        writer.file_writer.add_summary(summary, 9)
    return logdir, results, skipped, cka


def compare(a, b, probe, layers, writer, step, regression=True):
    return deepscope.compare(
        a, b, probe, layers, writer=writer, global_step=step, regression=regression
    )


@pytest.fixture(scope="module")
def client(logged):
    provider = multiplexer_provider(logged[0])[1]
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    return werkzeug_test.Client(app)


def get(client, route: str, status: int = 200, **query):
    response = client.get(f"/data/plugin/deepscope/{route}", query_string=query)
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    return json.loads(text) if status == 200 else text


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def test_the_regression_route_serves_what_compare_returned(client, logged):
    _, results, _, _ = logged
    for label in ("conv1", "conv2"):
        found = results[label]
        body = get(client, "correlation_regression", run="run", tag=f"compare/{label}", step=7)
        assert body["error"] is None and body["available"] and body["regression"]
        want = found.regression
        for name in ("least_squares_error", "l1_error", "l1_alpha"):
            np.testing.assert_allclose(
                _floats(body[name]), getattr(want, name).astype(np.float32), rtol=0, atol=0
            )
        assert body["l1_channels"] == want.l1_channels.tolist()
        assert body["mean_least_squares_error"] == pytest.approx(
            want.mean_least_squares_error, abs=1e-15
        )
        assert body["mean_l1_error"] == pytest.approx(want.mean_l1_error, abs=1e-15)
        assert body["mean_l1_channels"] == pytest.approx(want.mean_l1_channels, abs=1e-15)
        assert body["cka"] == pytest.approx(found.cka, abs=1e-15)
        assert body["keep"] == pytest.approx(0.9) and body["path_factor"] == pytest.approx(0.85)
        assert body["predictors"] == found.correlation.matrix.shape[1]
        assert body["shape"] == list(found.correlation.matrix.shape)


def test_regression_false_logs_the_cka_alone(client, logged):
    skipped = logged[2]["conv2"]
    body = get(client, "correlation_regression", run="run", tag="compare/conv2", step=8)
    assert body["available"] and body["regression"] is False
    assert body["least_squares_error"] is None and body["mean_l1_error"] is None
    assert body["cka"] == pytest.approx(skipped.cka, abs=1e-15)


def test_a_step_without_a_fit_says_so(tmp_path):
    with deepscope.SummaryWriter(str(tmp_path / "run")) as writer:
        a, b = torch.randn(50, 4), torch.randn(50, 3)
        writer.add_channel_correlation("plain", a, other=b, global_step=0)
        with pytest.raises(ValueError, match="cross-network result"):
            writer.add_channel_correlation(
                "within", a, global_step=0, cross_network=pb.CrossNetworkFit(cka=0.5)
            )
    provider = multiplexer_provider(tmp_path)[1]
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    body = get(werkzeug_test.Client(app), "correlation_regression", run="run", tag="plain")
    assert body["available"] is False and body["cka"] is None and body["error"] is None


def test_cka_matrix_is_the_definition_on_the_raw_activations(logged):
    cka = logged[3]
    a, b = _net(3), _net(4)
    probe = _probe(5, 10)
    names = ["conv1", "bn1", "conv2"]
    xs, ys = _outputs(a, probe, names), _outputs(b, probe, names)
    want = np.array([[_direct_cka(x, y) for y in ys] for x in xs])
    np.testing.assert_allclose(cka.matrix, want, rtol=0, atol=1e-6)
    assert cka.samples == 10 and cka.layers_a == names and cka.layers_b == names


def test_cka_of_a_network_with_itself_and_a_rotated_scaled_copy():
    torch.manual_seed(0)
    net = Mlp()
    probe = torch.randn(40, 10)
    names = ["fc1", "act", "fc2"]
    itself = deepscope.compare_cka(net, net, probe, names)
    np.testing.assert_allclose(np.diagonal(itself.matrix), 1.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(itself.matrix, itself.matrix.T, rtol=0, atol=1e-12)
    copy = _rotated_copy(net, seed=1, scale=3.5)
    turned = deepscope.compare_cka(net, copy, [probe[:25], probe[25:]], names)
    # fc2 of the copy is Q·s·fc2: its CKA with anything is fc2's
    np.testing.assert_allclose(turned.matrix, itself.matrix, rtol=0, atol=1e-6)
    out = _outputs(copy, probe, ["fc2"])[0]
    assert not np.allclose(out, _outputs(net, probe, ["fc2"])[0], atol=0.1)
    # layers of different widths compare; B's layers default to A's names
    wide = Mlp(width=32)
    other = deepscope.compare_cka(net, wide, probe, ["fc1"], ["fc1", "fc2"])
    x, y1, y2 = _outputs(net, probe, ["fc1"])[0], *_outputs(wide, probe, ["fc1", "fc2"])
    np.testing.assert_allclose(
        other.matrix, [[_direct_cka(x, y1), _direct_cka(x, y2)]], rtol=0, atol=1e-6
    )


def test_compare_cka_errors_and_restores_the_models():
    net = Mlp().train()
    probe = torch.randn(6, 10)
    with pytest.raises(ValueError, match="no module named"):
        deepscope.compare_cka(net, net, probe, ["nope"])
    with pytest.raises(ValueError, match="at least 2"):
        deepscope.compare_cka(net, net, probe[:1], ["fc1"])
    with pytest.raises(ValueError, match="twice"):
        deepscope.compare_cka(net, net, probe, ["fc1", "fc1"])
    deepscope.compare_cka(net, net, probe, ["fc1"])
    assert net.training and not net.fc1._forward_hooks


def test_the_cka_routes_serve_the_matrix_and_a_damaged_step_is_its_error(client, logged):
    cka = logged[3]
    body = get(client, "cka", run="run", tag="cka", step=7)
    assert body["error"] is None and body["steps"] == [7, 9]
    np.testing.assert_array_equal(
        np.array(body["matrix"], np.float64), cka.matrix.astype(np.float32)
    )
    assert body["layers_a"] == ["conv1", "bn1", "conv2"] and body["samples"] == 10
    assert body["row_name"] == "model_a" and body["col_name"] == "model_b"
    assert [b["col"] for b in body["best"]] == np.argmax(cka.matrix, axis=1).tolist()
    np.testing.assert_array_equal(body["diagonal"], np.diagonal(cka.matrix).astype(np.float32))
    damaged = get(client, "cka", run="run", tag="cka")
    assert damaged["step"] == 9 and "seconds -2" in damaged["error"]
    series = get(client, "cka_series", run="run", tag="cka", name="conv2")
    assert series["steps"] == [7] and "9" in series["warnings"][0]
    np.testing.assert_array_equal(
        np.array(series["matrices"][0], np.float64), cka.matrix[2:].astype(np.float32)
    )
    assert "has no step 8" in get(client, "cka", 404, run="run", tag="cka", step=8)
    assert "has no layer 'fc'" in get(client, "cka_series", 404, run="run", tag="cka", name="fc")
    assert "not cka" in get(client, "cka", 400, run="run", tag="compare/conv2")


def test_add_cka_matrix_checks_its_input(tmp_path):
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            writer.add_cka_matrix("cka", [[1.5]], ["a"], ["b"])
        with pytest.raises(ValueError, match="shape"):
            writer.add_cka_matrix("cka", [[0.5, 0.5]], ["a"], ["b"])
        with pytest.raises(TypeError, match="list of layer names"):
            writer.add_cka_matrix("cka", [[0.5]], "a", ["b"])
        writer.add_cka_matrix("cka", [[0.5]], ["a"], ["b"], global_step=0)
        with pytest.raises(ValueError, match="other layers"):
            writer.add_cka_matrix("cka", [[0.5]], ["a2"], ["b"], global_step=1)
