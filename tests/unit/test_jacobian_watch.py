"""watch()'s `JacobianSpectra` measurer: what it logs, what it leaves as it was, its cost.

A small CNN with batch norm trains under `deepscope.watch(..., measure=[JacobianSpectra])`
(tests/jacobian_data.py). The last measurement (after the last optimizer step, so at the
final weights) is compared with the explicit Jacobians of `torch.autograd.functional.
jacobian` and numpy's SVD, the model in eval mode on the probe; a layer's map at the input
it sees in the network.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.watch_jacobian import JacobianSpectra
from tests import jacobian_data as data

EPS32 = float(np.finfo(np.float32).eps)


def _explicit_svd(fn, x: torch.Tensor) -> np.ndarray:
    found = []
    for sample in x:
        jac = torch.autograd.functional.jacobian(lambda z: fn(z[None])[0], sample)
        rows = math.prod(jac.shape[: jac.dim() - sample.dim()])
        found.append(np.linalg.svd(jac.reshape(rows, -1).double().numpy(), compute_uv=False))
    return np.stack(found)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("jacobian-watch")
    measurer = data.log_training(logdir, steps=9, every=4)
    return logdir, measurer


def _steps(logdir, read):
    return [(v.step, pb.JacobianStep.FromString(v.value.tensor.string_val[0])) for v in read]


def test_it_logs_the_network_and_each_layer_at_its_cadence(trained, read_values):
    logdir, measurer = trained
    written = _steps(logdir, read_values(logdir / "cnn", data.TAG))
    assert [step for step, _ in written] == [0, 4, 8]
    _, last = written[-1]
    assert list(last.maps) == ["", *data.TRAINING_LAYERS]
    assert list(last.errors) == ["", "", "", ""]
    dims = arrays.decode_array(last.dims).tolist()
    assert dims == [[64, 10], [64, 256], [256, 128], [128, 10]]
    assert list(last.full) == [True, True, True, True]  # min(m, n) <= 256 each
    assert measurer.measurements == 3 and measurer.last_seconds > 0
    assert last.seconds > 0


def test_the_last_measurement_matches_explicit_jacobians(trained, read_values):
    logdir, measurer = trained
    _, last = _steps(logdir, read_values(logdir / "cnn", data.TAG))[-1]
    values = arrays.decode_array(last.singular_values).astype(np.float64)
    model, probe = measurer.model, measurer.probe
    model.eval()
    try:
        hidden = model[0][:3](probe).detach()  # the second conv's input
        flat = model[0](probe).detach()  # the head's input
        references = [
            _explicit_svd(model, probe),
            _explicit_svd(model[0][0], probe),
            _explicit_svd(model[0][3], hidden),
            _explicit_svd(model[1][0], flat),
        ]
    finally:
        model.train()
    for i, want in enumerate(references):
        got = values[i][:, : want.shape[1]]
        np.testing.assert_allclose(got, want, rtol=0, atol=128 * EPS32 * float(want.max()))


def test_the_model_is_left_as_it_was(tmp_path):
    model = data.small_cnn()
    model.train()
    probe = torch.randn(3, 1, 8, 8)
    measurer = JacobianSpectra(probe, every=1, layers=["0.3"])
    with data.writer(tmp_path) as w:
        measurer.start(model, None, w)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        measurer.measure(0)
    assert all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # batch-norm statistics untouched
    assert all(p.grad is None for p in model.parameters())


def test_it_is_off_by_default(tmp_path):
    model = data.small_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with data.writer(tmp_path) as w:
        monitor = deepscope.watch(model, optimizer, w)
        assert "jacobian" not in monitor.measurers
        monitor.close()


class _Broken(torch.nn.Module):
    """A network whose layer "unused" never runs."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.unused = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x)


def test_a_failing_map_is_its_error_and_training_goes_on(tmp_path, read_values):
    model = _Broken()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    measurer = JacobianSpectra(torch.randn(2, 4), every=1, layers=["unused"])
    with data.writer(tmp_path) as w:
        monitor = deepscope.watch(model, optimizer, w, measure=[measurer])
        for _ in range(2):
            optimizer.zero_grad()
            model(torch.randn(5, 4)).sum().backward()
            optimizer.step()
        stats = monitor.stats.measurers["jacobian"]
        monitor.close()
    assert stats.runs == 2 and stats.error_count == 2 and stats.seconds > 0
    assert "unused" in stats.errors[0] and "did not run" in stats.errors[0]
    written = _steps(tmp_path, read_values(tmp_path, data.TAG))
    assert [s for s, _ in written] == [0, 1]
    step = written[0][1]
    assert list(step.maps) == ["", "unused"] and step.errors[0] == ""
    assert "did not run" in step.errors[1]


def test_bad_arguments_say_what_to_do():
    probe = torch.randn(2, 4)
    with pytest.raises(ValueError, match="nothing to measure"):
        JacobianSpectra(probe, network=False)
    with pytest.raises(TypeError, match="unknown option"):
        JacobianSpectra(probe, lanczos_steps=3)
    with pytest.raises(TypeError, match="floating-point input"):
        JacobianSpectra(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="names a layer twice"):
        JacobianSpectra(probe, layers=["fc", "fc"])
    with pytest.raises(ValueError, match="no module named 'nope'"):
        JacobianSpectra(probe, layers=["nope"]).start(data.small_cnn(), None, _FakeWriter())


class _FakeWriter:
    def add_jacobian_singular_values(self, *args, **kwargs):
        pass
