"""Spectrum routes on steps written for issue 9: condition-number bounds and unchanged weights.

Log dirs are written with `deepscope.SummaryWriter` (by hand-made spectra, or by
`SpectraWatcher`) and served in-process with the production sampling.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepscope
from deepscope.analysis import spectrum as sp
from tests.unit import test_plugin_routes as plugin_routes
from tests.unit.test_plugin_routes import get_json


def _serve(logdir):
    guidance = plugin_routes._production_tensor_size_guidance()
    return plugin_routes._client(plugin_routes._provider(logdir, guidance), {})


def test_a_condition_number_beyond_float32_resolution_is_served_as_a_flagged_bound(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    # float32 singular values 2, 1, 1e-9 of a 3 x 3 matrix: 1e-9 < 2 * 3 * eps32 = 7.2e-7.
    values = torch.tensor([[2.0, 1.0, 1e-9]], dtype=torch.float32)
    writer.add_spectrum("tiny", sp.Spectrum(values, (1, 3, 3)), global_step=0)
    healthy = torch.tensor([[2.0, 1.0, 0.5]], dtype=torch.float32)
    writer.add_spectrum("healthy", sp.Spectrum(healthy, (1, 3, 3)), global_step=0)
    writer.close()
    client = _serve(tmp_path)
    eps32 = float(np.finfo(np.float32).eps)
    one = get_json(client, "spectrum", run="run", tag="tiny", step=0)["metrics"]
    assert one["condition_number_is_bound"] is True
    assert one["condition_number"] == pytest.approx(1 / (3 * eps32), rel=1e-6)
    assert one["numerical_rank"] == 2
    layers = get_json(client, "spectrum_metrics", run="run")["layers"]
    assert layers["tiny"]["metrics"]["condition_number_is_bound"] == [True]
    assert layers["healthy"]["metrics"]["condition_number_is_bound"] == [False]
    assert layers["healthy"]["metrics"]["condition_number"][0] == pytest.approx(4.0, rel=1e-6)
