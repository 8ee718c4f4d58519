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
from tests.route_helpers import multiplexer_provider
from tests.unit import test_plugin_routes as plugin_routes
from tests.unit.test_plugin_routes import get_json


def _serve(logdir):
    guidance = plugin_routes._production_tensor_size_guidance()
    return plugin_routes._client(plugin_routes._provider(logdir, guidance), {})


def test_a_condition_number_beyond_float32_resolution_is_served_as_a_flagged_bound(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    # float32 singular values 2, 1, 1e-9 of a 3 x 3 matrix: 1e-9 < 2 * 3 * eps32 = 7.2e-7.
    values = torch.tensor([[2.0, 1.0, 1e-9]], dtype=torch.float32)
    writer.add_singular_values("tiny", sp.Spectrum(values, (1, 3, 3)), global_step=0)
    healthy = torch.tensor([[2.0, 1.0, 0.5]], dtype=torch.float32)
    writer.add_singular_values("healthy", sp.Spectrum(healthy, (1, 3, 3)), global_step=0)
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


def test_an_unchanged_step_is_served_as_the_step_it_repeats(tmp_path):
    from deepscope.writer.spectrum import spectrum_info
    from deepscope.writer.watch_spectra import SpectraWatcher
    from tests.route_helpers import decode

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 3))
    model[0].requires_grad_(False)
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    watcher = SpectraWatcher(model, writer, every=1, include_frozen=True)
    optimizer = torch.optim.SGD(model[1].parameters(), lr=0.5)
    for step in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 6)).square().sum().backward()
        optimizer.step()
        watcher.measure(step)
    # An unchanged step whose reference is not in the log (e.g. dropped by sampling).
    info = spectrum_info(sp.layer_spectrum(model[0].weight))
    writer.add_unchanged_spectrum("orphan", 99, global_step=5, info=info)
    writer.close()
    client = _serve(tmp_path)
    frozen = np.linalg.svd(model[0].weight.detach().numpy().astype(np.float64), compute_uv=False)
    first = get_json(client, "spectrum", run="run", tag="spectra/0", step=0)
    assert first["unchanged_since_step"] is None
    for step in (1, 2):
        body = get_json(client, "spectrum", run="run", tag="spectra/0", step=step)
        assert body["step"] == step and body["unchanged_since_step"] == 0
        assert body["error"] is None
        np.testing.assert_allclose(decode(body["singular_values"])[0], frozen, rtol=1e-5)
        assert body["metrics"] == first["metrics"]  # the same step's numbers, as stored
    trained = get_json(client, "spectrum", run="run", tag="spectra/1", step=2)
    assert trained["unchanged_since_step"] is None
    layers = get_json(client, "spectrum_metrics", run="run")["layers"]
    assert layers["spectra/0"]["unchanged"] == [[1, 0], [2, 0]]
    assert layers["spectra/1"]["unchanged"] == []
    sigma_max = layers["spectra/0"]["metrics"]["spectral_norm"]
    assert sigma_max == pytest.approx([frozen[0]] * 3, rel=1e-5)
    evolution = get_json(client, "spectrum_evolution", run="run", tag="spectra/0")
    assert evolution["unchanged"] == [[1, 0], [2, 0]] and evolution["errors"] == []
    np.testing.assert_allclose(decode(evolution["values"]), np.tile(frozen, (3, 1)), rtol=1e-5)
    orphan = get_json(client, "spectrum", run="run", tag="orphan", step=5)
    assert orphan["unchanged_since_step"] == 99
    assert "unchanged since step 99, which TensorBoard did not keep" in orphan["error"]
    assert orphan["metrics"]["condition_number"] == "NaN"


def test_remembered_metrics_responses_follow_new_steps_and_answer_304s(tmp_path, monkeypatch):
    from deepscope.tb_plugin import blob_steps

    monkeypatch.setattr(blob_steps, "LISTING_SECONDS", 0.0)  # list again at every request
    writer = deepscope.SummaryWriter(str(tmp_path / "live"))
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((5, 3)).astype(np.float32) for _ in range(2)]
    writer.add_singular_values("w", weights[0], global_step=0)
    writer.flush()
    multiplexer, provider = multiplexer_provider(tmp_path)
    client = plugin_routes._client(provider, {})
    url = "/data/plugin/deepscope/spectrum_metrics"
    first = client.get(url, query_string={"run": "live"}, headers={"Accept-Encoding": "gzip"})
    again = client.get(url, query_string={"run": "live"}, headers={"Accept-Encoding": "gzip"})
    assert again.get_data() == first.get_data() and again.headers["ETag"] == first.headers["ETag"]
    unchanged = client.get(
        url,
        query_string={"run": "live"},
        headers={"Accept-Encoding": "gzip", "If-None-Match": first.headers["ETag"]},
    )
    assert unchanged.status_code == 304
    writer.add_singular_values("w", weights[1], global_step=7)
    writer.close()
    multiplexer.Reload()
    layer = get_json(client, "spectrum_metrics", run="live")["layers"]["w"]
    assert layer["steps"] == [0, 7]
    for i, weight in enumerate(weights):
        s = np.linalg.svd(weight.astype(np.float64), compute_uv=False)
        assert layer["metrics"]["spectral_norm"][i] == pytest.approx(s[0], rel=1e-5)
    newer = client.get(
        url,
        query_string={"run": "live"},
        headers={"Accept-Encoding": "gzip", "If-None-Match": first.headers["ETag"]},
    )
    assert newer.status_code == 200 and newer.headers["ETag"] != first.headers["ETag"]
