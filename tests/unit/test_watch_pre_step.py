"""watch(..., pre_step="manual"): the pre-step measurements run when monitor.before_step() says.

For loops that compute a step's gradients inside `optimizer.step(closure)`
(PyTorch Lightning): the optimizer's pre-hook runs before the closure, so it
would see the previous step's gradients. Checked against the gradients'
norms taken by numpy at the moment of the step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepscope
from tests.logged_numbers import read_logged


def _closure_training(pre_step: str, steps: int, tmp_path, call_before_step: bool = True):
    """SGD whose gradients are computed inside step(closure); returns (logged, numpy norms)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(tmp_path))
    monitor = deepscope.watch(
        model, optimizer, writer, measure=[deepscope.ParameterNorms(every=1)], pre_step=pre_step
    )
    expected = []
    for step in range(steps):
        x = torch.randn(4, 3) * (step + 1)

        def closure(x=x):
            optimizer.zero_grad()
            loss = model(x).square().sum()
            loss.backward()
            expected.append(
                [np.linalg.norm(p.grad.numpy().astype(np.float64)) for p in model.parameters()]
            )
            if pre_step == "manual" and call_before_step:
                monitor.before_step()  # the gradients of this step exist now
            return loss

        optimizer.step(closure)
    monitor.close()
    writer.close()
    logged = read_logged(tmp_path)
    return logged, np.array(expected)


def test_manual_pre_step_measures_the_gradients_of_the_step(tmp_path):
    logged, expected = _closure_training("manual", 3, tmp_path)
    assert sorted(logged) == [("layer_statistics/parameters", s) for s in range(3)]
    eps = np.finfo(np.float32).eps
    for step in range(3):
        values = logged[("layer_statistics/parameters", step)]["parameter_values"]
        np.testing.assert_allclose(values[:, 0], expected[step], rtol=8 * eps)


def test_the_hook_runs_before_a_closure_and_so_sees_the_previous_gradients(tmp_path):
    logged, expected = _closure_training("hook", 3, tmp_path)
    first = logged[("layer_statistics/parameters", 0)]["parameter_values"]
    assert np.isnan(first[:, 0]).all()  # no gradient yet when the pre-hook ran
    eps = np.finfo(np.float32).eps
    for step in (1, 2):  # one step late: why pre_step="manual" exists
        values = logged[("layer_statistics/parameters", step)]["parameter_values"]
        np.testing.assert_allclose(values[:, 0], expected[step - 1], rtol=8 * eps)
        assert not np.allclose(values[:, 0], expected[step], rtol=1e-3)


def test_manual_pre_step_never_called_measures_nothing_and_fails_nothing(tmp_path):
    logged, _ = _closure_training("manual", 2, tmp_path, call_before_step=False)
    assert logged == {}


def test_pre_step_must_be_hook_or_manual(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="pre_step must be 'hook'.*or 'manual'"):
        deepscope.watch(model, optimizer, writer, pre_step="late")
