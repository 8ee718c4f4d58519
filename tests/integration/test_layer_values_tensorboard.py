"""Layer values through a real `tensorboard` process, with both loaders.

The log dir is written as a user's own measurer would write it: a training loop
logs each layer's gradient norm with `writer.add_layer_values` (the bias norms
every other step only, so steps name different layers), and a run holds every
kind of damaged event among good ones. The routes' numbers are compared with
numpy norms of the gradients copied in the loop.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import deepscope
from tests.conftest import get, wait_until
from tests.layer_values_data import DAMAGED, GOOD
from tests.route_helpers import LOADERS, decode, number, route

ROUTE = "/data/plugin/deepscope"
# More than the Rust data server's default of 100 tensor samples: deepscope's default keeps all.
STEPS = 150
EPS32 = float(np.finfo(np.float32).eps)


def _train(logdir) -> dict:
    """Train a small MLP, logging gradient norms per layer; returns the numpy reference."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(logdir / "mlp"))
    reference: dict = {"steps": [], "rows": []}
    for step in range(STEPS):
        x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        norms, row = {}, {}
        for name, parameter in model.named_parameters():
            if name.endswith("bias") and step % 2:
                continue  # a measurer that looks at biases every other step
            norms[name] = parameter.grad.norm()  # 0-d tensors, copied to the host together
            row[name] = float(np.linalg.norm(parameter.grad.numpy().astype(np.float64)))
        writer.add_layer_values(
            "grad_norm", norms, step, quantity="gradient norm", unit="", scale="log"
        )
        reference["steps"].append(step)
        reference["rows"].append(row)
        optimizer.step()
    writer.close()
    return reference


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("layer-values-tb")
    reference = _train(logdir)
    writer = deepscope.SummaryWriter(str(logdir / "damaged"))
    writer.add_layer_values("dead", GOOD, 0, quantity="dead units", scale="linear")
    for step, (build, _) in enumerate(DAMAGED.values(), start=1):
        writer.file_writer.add_summary(build("dead"), step, 1.0)
    writer.add_layer_values("dead", GOOD, len(DAMAGED) + 1)
    writer.close()
    (logdir / "reference.json").write_text(json.dumps(reference))
    return logdir


@pytest.fixture(scope="module", params=LOADERS)
def served(request, logdir, tensorboard_server):
    base = tensorboard_server(logdir, load_fast=request.param)

    def all_read():
        status, body = get(f"{base}{ROUTE}/layer_values?run=mlp&tag=grad_norm")
        done = status == 200 and len(json.loads(body)["steps"]) == STEPS
        status, body = get(f"{base}{ROUTE}/layer_values?run=damaged&tag=dead")
        return done and status == 200 and len(json.loads(body)["steps"]) == 2

    wait_until(all_read, timeout=120, what="every layer-values step to be read")
    return base, json.loads((logdir / "reference.json").read_text())


def _expected(reference) -> tuple[list[str], np.ndarray]:
    names: list[str] = []
    for row in reference["rows"]:
        names += [name for name in row if name not in names]
    values = np.full((len(reference["rows"]), len(names)), np.nan)
    for i, row in enumerate(reference["rows"]):
        for name, value in row.items():
            values[i, names.index(name)] = value
    return names, values


def test_tags_and_kinds_list_the_series(served):
    base, _ = served
    entry = route(base, "tags")["mlp"]["grad_norm"]
    assert entry["kind"] == "layer_values" and "error" not in entry
    assert entry["quantity"] == "gradient norm"
    assert "layer_values" in [kind["name"] for kind in route(base, "kinds")]


@pytest.mark.parametrize("fmt", ["json", "base64"])
def test_gradient_norms_match_numpy_with_missing_layers_null(served, fmt):
    base, reference = served
    body = route(base, "layer_values", run="mlp", tag="grad_norm", format=fmt)
    names, expected = _expected(reference)
    assert body["steps"] == reference["steps"]  # all 150 kept on both loaders
    assert body["names"] == names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert (body["quantity"], body["unit"], body["scale"]) == ("gradient norm", "", "log")
    assert body["warnings"] == [] and body["non_finite"] == 0
    if fmt == "json":
        served_values = np.array(
            [[np.nan if v is None else number(v) for v in row] for row in body["values"]]
        )
    else:
        served_values = decode(body["values"]).astype(np.float64)
        missing = np.argwhere(np.isnan(expected)).tolist()
        assert body["not_measured"] == missing
    # float32 storage of float32 gradients' norms: a few float32 ulps.
    np.testing.assert_allclose(served_values, expected, rtol=8 * EPS32, equal_nan=True)
    assert np.isnan(served_values[1::2, 1]).all() and np.isfinite(served_values[::2]).all()


def test_damaged_events_drop_only_their_steps_on_both_loaders(served):
    base, _ = served
    for fmt in ("json", "base64"):
        body = route(base, "layer_values", run="damaged", tag="dead", format=fmt)
        assert body["steps"] == [0, len(DAMAGED) + 1]
        assert body["names"] == list(GOOD)
        assert body["scale"] == "linear"
        (warning,) = body["warnings"]
        assert warning.startswith(f"{len(DAMAGED)} event(s) (first at step 1) are malformed")
        for step, (_, reason) in list(enumerate(DAMAGED.values(), start=1))[:5]:
            assert f"step {step}: " in warning and reason in warning, warning


def test_errors_are_plain_text_with_a_status_never_500(served):
    base, _ = served
    status, body = get(f"{base}{ROUTE}/layer_values?run=mlp&tag=grad_norm&name=nope")
    assert status == 404 and b"has no layer 'nope'" in body
    status, body = get(f"{base}{ROUTE}/layer_values?run=mlp")
    assert status == 400 and b"missing query parameter 'tag'" in body
