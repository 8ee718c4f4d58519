"""Layer statistics through a real `tensorboard` process, with both loaders.

The log dir is written as a user writes it: a training loop records each
module's output with forward hooks, computes its statistics with torch (float64)
and logs them with `writer.add_layer_statistics` (the covariance eigenvalues of
the Linear outputs every third step only), and the parameters' gradient and
weight norms under a second tag (a frozen bias has no gradient: logged as None,
served as not measured; at one step a NaN is planted in a gradient: a
non-finite gradient norm, served as measured); a run holds every kind of damaged event among
good ones. The routes' numbers are compared with numpy's, computed from copies
of the same activations and gradients.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import deepscope
from deepscope.writer.layer_statistics import ActivationRows
from tests.conftest import get, wait_until
from tests.layer_statistics_data import DAMAGED, GOOD
from tests.route_helpers import LOADERS, decode, number, route

ROUTE = "/data/plugin/deepscope"
# More than the Rust data server's default of 100 tensor samples: deepscope's default keeps all.
STEPS = 120
EPS32 = float(np.finfo(np.float32).eps)
ACTS = "layer_statistics/activations"
PARAMS = "layer_statistics/parameters"
STATISTICS = ("mean", "std", "rms", "max_abs", "zero_fraction", "dead_fraction")
MODULES = ("0", "1", "2", "3")  # Linear, ReLU, Linear, Tanh
COVARIANCE_EVERY = 3
FROZEN = "2.bias"  # requires_grad=False: no gradient at any step
NAN_STEP, NAN_PARAMETER = 7, "0.weight"  # a NaN planted in this gradient at this step


def _torch_statistics(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """[len(STATISTICS)] float64 statistics of a (N, C) output, its channels, dead channels."""
    x = x.detach().to(torch.float64)
    dead = (x == 0).all(dim=0)
    row = torch.stack(
        [
            x.mean(),
            x.std(unbiased=False),
            x.square().mean().sqrt(),
            x.abs().max(),
            (x == 0).to(torch.float64).mean(),
            dead.to(torch.float64).mean(),
        ]
    )
    return row, x.shape[1], dead


def _numpy_statistics(x: np.ndarray) -> list[float]:
    x = x.astype(np.float64)
    dead = np.all(x == 0, axis=0)
    return [
        float(x.mean()),
        float(x.std()),
        float(np.sqrt(np.mean(x**2))),
        float(np.abs(x).max()),
        float(np.mean(x == 0)),
        float(dead.mean()),
    ]


def _train(logdir) -> dict:
    """Train a small MLP, logging layer statistics; returns the numpy reference."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4), torch.nn.Tanh()
    )
    model.get_parameter(FROZEN).requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(logdir / "mlp"))
    outputs: dict[str, torch.Tensor] = {}
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
    reference: dict = {"steps": [], "activations": [], "eigenvalues": [], "grad_norm": []}
    for step in range(STEPS):
        x, y = torch.randn(32, 8), torch.randn(32, 4)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        if step == NAN_STEP:
            model.get_parameter(NAN_PARAMETER).grad[0, 0] = float("nan")
        rows, channels, dead, eigen, samples = [], [], [], [], []
        ref_rows, ref_eigen = [], []
        for name in MODULES:
            out = outputs[name]
            row, c, dead_mask = _torch_statistics(out)
            rows.append(row)
            channels.append(c)
            dead.append(dead_mask.sum())
            ref_rows.append(_numpy_statistics(out.detach().numpy()))
            if name in ("0", "2") and step % COVARIANCE_EVERY == 0:
                centred = out.detach().to(torch.float64)
                centred = centred - centred.mean(dim=0)
                cov = centred.T @ centred / centred.shape[0]
                eigen.append(torch.linalg.eigvalsh(cov).flip(0).clamp(min=0))
                samples.append(centred.shape[0])
                a = out.detach().numpy().astype(np.float64)
                ref_eigen.append(np.linalg.eigvalsh(np.cov(a, rowvar=False, bias=True))[::-1])
            else:
                eigen.append(None)
                samples.append(0)
                ref_eigen.append(None)
        writer.add_layer_statistics(
            ACTS,
            ActivationRows(
                names=list(MODULES),
                values=torch.stack(rows),  # one host copy for the whole part
                statistics=STATISTICS,
                types=[type(m).__name__ for m in model],
                counts=[outputs[n].numel() for n in MODULES],
                channels=channels,
                dead_channels=torch.stack(dead),
                eigenvalues=eigen,
                covariance_samples=samples,
            ),
            global_step=step,
        )
        grads = {
            name: {
                "grad_norm": None if p.grad is None else p.grad.norm(),
                "weight_norm": p.detach().norm(),
            }
            for name, p in model.named_parameters()
        }
        writer.add_layer_statistics(PARAMS, parameters=grads, global_step=step)
        reference["steps"].append(step)
        reference["activations"].append(ref_rows)
        reference["eigenvalues"].append([None if e is None else e.tolist() for e in ref_eigen])
        reference["grad_norm"].append(
            [
                None if p.grad is None else float(np.linalg.norm(p.grad.numpy().astype(np.float64)))
                for _, p in model.named_parameters()
            ]
        )
        if step == NAN_STEP:  # logged; training goes on with a finite gradient
            model.get_parameter(NAN_PARAMETER).grad.nan_to_num_(0.0)
        optimizer.step()
    writer.close()
    reference["parameters"] = [name for name, _ in model.named_parameters()]
    return reference


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("layer-statistics-tb")
    reference = _train(logdir)
    writer = deepscope.SummaryWriter(str(logdir / "damaged"))
    writer.add_layer_statistics(ACTS, GOOD, global_step=0)
    for step, (build, _) in enumerate(DAMAGED.values(), start=1):
        writer.file_writer.add_summary(build(ACTS), step, 1.0)
    writer.add_layer_statistics(ACTS, GOOD, global_step=len(DAMAGED) + 1)
    writer.close()
    (logdir / "reference.json").write_text(json.dumps(reference))
    return logdir


@pytest.fixture(scope="module", params=LOADERS)
def served(request, logdir, tensorboard_server):
    base = tensorboard_server(logdir, load_fast=request.param)

    def all_read():
        done = True
        for run, tag, count in (("mlp", ACTS, STEPS), ("mlp", PARAMS, STEPS), ("damaged", ACTS, 2)):
            status, body = get(f"{base}{ROUTE}/layer_statistics?run={run}&tag={tag}")
            done = done and status == 200 and len(json.loads(body)["steps"]) == count
        return done

    wait_until(all_read, timeout=120, what="every layer-statistics step to be read")
    return base, json.loads((logdir / "reference.json").read_text())


def test_tags_and_kinds_list_the_series(served):
    base, _ = served
    entry = route(base, "tags")["mlp"][ACTS]
    assert entry["kind"] == "layer_statistics" and "error" not in entry
    assert entry["on"] == "train"
    assert "layer_statistics" in [kind["name"] for kind in route(base, "kinds")]


@pytest.mark.parametrize("fmt", ["json", "base64"])
@pytest.mark.parametrize("statistic", STATISTICS)
def test_activation_statistics_match_numpy(served, statistic, fmt):
    base, reference = served
    body = route(base, "layer_statistics", run="mlp", tag=ACTS, statistic=statistic, format=fmt)
    assert body["steps"] == reference["steps"]  # all 120 kept on both loaders
    assert body["names"] == list(MODULES)
    assert body["types"] == ["Linear", "ReLU", "Linear", "Tanh"]
    assert body["warnings"] == []
    k = STATISTICS.index(statistic)
    expected = np.array([[row[k] for row in step] for step in reference["activations"]])
    if fmt == "json":
        values = np.array([[number(v) for v in row] for row in body["values"]], dtype=np.float64)
    else:
        values = decode(body["values"]).astype(np.float64)
        assert body["not_measured"] == []
    # float64 statistics stored as float32: half an ulp of float32, and the two
    # float64 computations' rounding (far below it).
    scale = np.maximum(np.abs(expected), 1e-30)
    assert np.all(np.abs(values - expected) <= EPS32 * scale), statistic


def test_the_relu_and_tanh_rows_look_like_their_activations(served):
    base, _ = served
    zero = route(base, "layer_statistics", run="mlp", tag=ACTS, statistic="zero_fraction")
    fractions = np.array(zero["values"], dtype=np.float64)
    assert np.all(fractions[:, 1] > 0.05)  # ReLU zeros a good part of its output
    assert np.all(fractions[:, [0, 2, 3]] == 0)  # the others almost surely none
    max_abs = route(base, "layer_statistics", run="mlp", tag=ACTS, statistic="max_abs")
    assert np.all(np.array(max_abs["values"])[:, 3] < 1)  # tanh's bound


@pytest.mark.parametrize("fmt", ["json", "base64"])
def test_gradient_norms_match_numpy(served, fmt):
    base, reference = served
    body = route(base, "layer_statistics", run="mlp", tag=PARAMS, statistic="grad_norm", format=fmt)
    assert body["names"] == reference["parameters"] and body["part"] == "parameters"
    frozen = reference["parameters"].index(FROZEN)
    planted = (NAN_STEP, reference["parameters"].index(NAN_PARAMETER))
    expected = np.array(
        [[np.nan if v is None else v for v in row] for row in reference["grad_norm"]]
    )
    # Not measured: the frozen bias, at every step (null; base64's not_measured).
    not_measured = np.zeros(expected.shape, dtype=bool)
    not_measured[:, frozen] = True
    if fmt == "json":
        assert [[v is None for v in row] for row in body["values"]] == not_measured.tolist()
        assert body["values"][planted[0]][planted[1]] == "NaN"  # measured: a NaN gradient
        values = np.array([[number(v) for v in row] for row in body["values"]], np.float64)
    else:
        assert body["not_measured"] == np.argwhere(not_measured).tolist()
        values = decode(body["values"]).astype(np.float64)
    assert body["non_finite"] == 1  # the planted NaN
    assert np.isnan(expected[planted]) and np.isnan(values[planted])
    finite = np.isfinite(expected)
    # torch's float32 norm of float32 gradients against numpy's float64 norm: a few ulps.
    np.testing.assert_allclose(values[finite], expected[finite], rtol=16 * EPS32)


def test_the_step_names_the_parameter_without_a_gradient(served):
    base, reference = served
    body = route(base, "layer_statistics_step", run="mlp", tag=PARAMS, step=NAN_STEP)
    assert body["parameters"] == reference["parameters"] and body["without_gradient"] == [FROZEN]
    values = body["parameter_values"]
    k = body["parameter_statistics"].index("weight_norm")
    assert all(isinstance(row[k], float) for row in values)  # every weight norm measured
    assert values[reference["parameters"].index(NAN_PARAMETER)][0] == "NaN"


def test_one_step_serves_every_statistic_and_the_counts(served):
    base, reference = served
    step = 30
    body = route(base, "layer_statistics_step", run="mlp", tag=ACTS, step=step)
    assert body["error"] is None and body["step"] == step
    assert body["layers"] == list(MODULES) and body["activation_statistics"] == list(STATISTICS)
    expected = np.array(reference["activations"][step])
    values = np.array([[number(v) for v in row] for row in body["activations"]])
    assert np.all(np.abs(values - expected) <= EPS32 * np.maximum(np.abs(expected), 1e-30))
    assert body["channels"] == [16, 16, 4, 4] and body["counts"] == [512, 512, 128, 128]
    assert body["eigenvalue_counts"] == [16, 0, 4, 0]
    assert body["covariance_samples"] == [32, 0, 32, 0]


@pytest.mark.parametrize("layer, row", [("0", 0), ("2", 2)])
def test_the_covariance_spectrum_matches_numpy(served, layer, row):
    base, reference = served
    body = route(base, "layer_statistics_spectrum", run="mlp", tag=ACTS, layer=layer)
    steps = [s for s in reference["steps"] if s % COVARIANCE_EVERY == 0]
    assert body["steps"] == steps and body["samples"] == [32] * len(steps)
    for step, served_values in zip(steps, body["eigenvalues"], strict=True):
        want = np.array(reference["eigenvalues"][step][row])
        got = np.array([number(v) for v in served_values])
        # float64 eigenvalues stored as float32, and the two solvers' rounding.
        np.testing.assert_allclose(got, want, rtol=0, atol=4 * EPS32 * want.max())


def test_damaged_events_drop_only_their_steps_on_both_loaders(served):
    base, _ = served
    last = len(DAMAGED) + 1
    for fmt in ("json", "base64"):
        body = route(base, "layer_statistics", run="damaged", tag=ACTS, format=fmt)
        assert body["steps"] == [0, last] and body["names"] == list(GOOD)
        (warning,) = body["warnings"]
        assert warning.startswith(f"{len(DAMAGED)} event(s) (first at step 1) are malformed")
        for step, (_, reason) in list(enumerate(DAMAGED.values(), start=1))[:5]:
            assert f"step {step}: " in warning and reason in warning, warning
    for step, (_, reason) in enumerate(DAMAGED.values(), start=1):
        body = route(base, "layer_statistics_step", run="damaged", tag=ACTS, step=step)
        assert body["step"] == step and reason in body["error"], (step, body["error"])


def test_errors_are_plain_text_with_a_status_never_500(served):
    base, _ = served
    status, body = get(f"{base}{ROUTE}/layer_statistics?run=mlp&tag={ACTS}&statistic=nope")
    assert status == 400 and b"has no statistic 'nope'" in body
    status, body = get(f"{base}{ROUTE}/layer_statistics_step?run=mlp&tag={ACTS}&step=1000")
    assert status == 404 and b"has no step 1000" in body
    status, body = get(f"{base}{ROUTE}/layer_statistics_spectrum?run=mlp&tag={ACTS}&layer=9")
    assert status == 404 and b"has no layer '9'" in body
    status, body = get(f"{base}{ROUTE}/layer_statistics_spectrum?run=mlp&tag={ACTS}")
    assert status == 400 and b"missing query parameter 'layer'" in body
