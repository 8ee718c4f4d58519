"""What /findings reads of blob series: a few steps, not all of them; and it follows reloads."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from tensorboard import context
from tensorboard.plugins import base_plugin

import deepscope
from deepscope.findings import thresholds
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from tests.route_helpers import CountingProvider, multiplexer_provider

STEPS = 40


def _plugin(logdir):
    multiplexer, provider = multiplexer_provider(logdir, {"deepscope": 0})
    counting = CountingProvider(provider)
    context_ = base_plugin.TBContext(data_provider=counting, sampling_hints={"deepscope": 0})
    return multiplexer, counting, DeepscopePlugin(context_)


@pytest.mark.parametrize("first_bad", [1, 23, STEPS - 1])
def test_the_first_non_finite_spectrum_is_found_by_bisection_in_few_reads(tmp_path, first_bad):
    torch.manual_seed(0)
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    weight = torch.randn(16, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the NaN steps warn, as they should
        for step in range(STEPS):
            if step == first_bad:
                weight[3, 2] = math.nan
            writer.add_singular_values("spectra/fc", weight + 1e-3 * step, global_step=step)
            writer.add_singular_values("spectra/ok", torch.eye(4) * (1 + step), global_step=step)
    writer.close()
    _, counting, plugin = _plugin(tmp_path)
    report = plugin.findings.report(context.RequestContext(), "", None, thresholds.resolve())
    (finding,) = [f for f in report["findings"] if f["rule"] == "non_finite"]
    assert (finding["layer"], finding["first_step"]) == ("fc", first_bad)
    assert finding["evidence"] == {"kind": "spectrum", "tag": "spectra/fc", "step": first_bad}
    # First and last of both series, then one read per halving of fc's 40 steps.
    assert counting.blob_reads <= 4 + math.ceil(math.log2(STEPS)), counting.blob_reads
    # Warm: nothing is read again.
    reads = counting.blob_reads
    again = plugin.findings.report(context.RequestContext(), "", None, thresholds.resolve())
    assert again == report and counting.blob_reads == reads


def test_findings_follow_new_steps(tmp_path, monkeypatch):
    from deepscope.tb_plugin import blob_steps

    monkeypatch.setattr(blob_steps, "LISTING_SECONDS", 0.0)  # no listing reused
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    names = ["a.weight", "b.weight"]
    for step in range(0, 100, 5):
        writer.add_update_ratios("update_ratios", dict(zip(names, [1e-3, 1e-3])), global_step=step)
    writer.flush()
    multiplexer, _, plugin = _plugin(tmp_path)
    ctx = context.RequestContext()
    assert plugin.findings.report(ctx, "", None, thresholds.resolve())["findings"] == []
    for step in range(100, 250, 5):
        writer.add_update_ratios("update_ratios", dict(zip(names, [1e-3, 0.2])), global_step=step)
    writer.close()
    multiplexer.Reload()
    (finding,) = plugin.findings.report(ctx, "", None, thresholds.resolve())["findings"]
    assert (finding["rule"], finding["layer"], finding["last_step"]) == (
        "learning_rate_parameter",
        "b.weight",
        245,
    )
    assert finding["numbers"]["factor"] == pytest.approx(np.float32(0.2) / 1e-3, rel=1e-6)


def _collapsing_weights(steps: int):
    """A 32 × 32 weight whose spectrum collapses onto one direction over `steps` steps."""
    generator = torch.Generator().manual_seed(2)
    start = torch.randn(32, 32, generator=generator)
    spike = torch.outer(torch.randn(32, generator=generator), torch.randn(32, generator=generator))
    return [start * (1 - s / steps) + 20 * spike * (s / steps) for s in range(steps)]


def test_a_series_with_start_summaries_is_read_by_its_newest_step_alone(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path / "new"))
    for step, weight in enumerate(_collapsing_weights(30)):
        writer.add_singular_values("spectra/fc", weight, global_step=step)
    writer.close()
    # The same spectra written as an older deepscope wrote them: no start summary.
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    from deepscope.writer.spectrum import spectrum_pb

    old = TorchWriter(str(tmp_path / "old"))
    for step, weight in enumerate(_collapsing_weights(30)):
        old.file_writer.add_summary(spectrum_pb("spectra/fc", weight), step)
    old.close()
    _, counting, plugin = _plugin(tmp_path)
    ctx = context.RequestContext()
    new = plugin.findings.report(ctx, "", ["new"], thresholds.resolve())
    assert counting.blob_reads == 1 and counting.listings == 1  # one-step listing, one read
    older = plugin.findings.report(ctx, "", ["old"], thresholds.resolve())
    assert counting.blob_reads == 3 and counting.listings == 3  # + the whole listing, the first
    finding = new["findings"][0]
    assert (finding["rule"], finding["layer"], finding["first_step"]) == ("rank_collapse", "fc", 0)
    same = older["findings"][0]
    assert {**same, "run": "new"} == finding
    weights = _collapsing_weights(30)
    ranks = []
    for weight in (weights[0], weights[-1]):
        sigma = np.linalg.svd(weight.double().numpy(), compute_uv=False)
        p = sigma / sigma.sum()
        ranks.append(float(np.exp(-(p * np.log(p)).sum())))  # Roy & Vetterli
    assert finding["numbers"]["start"] == pytest.approx(ranks[0], rel=1e-4)
    assert finding["numbers"]["end"] == pytest.approx(ranks[1], rel=1e-4)


def test_findings_reuse_the_listing_tags_just_made(tmp_path):
    from tensorboard.backend import application
    from werkzeug import test as werkzeug_test

    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    for step in range(0, 100, 5):
        writer.add_singular_values("spectra/fc", torch.eye(3) * (1 + step), global_step=step)
    writer.close()
    _, counting, plugin = _plugin(tmp_path)
    app = application.TensorBoardWSGI([plugin], data_provider=counting)
    client = werkzeug_test.Client(app)
    assert client.get("/data/plugin/deepscope/tags").status_code == 200
    assert counting.series_listings == 1
    assert client.get("/data/plugin/deepscope/findings").status_code == 200
    assert counting.series_listings == 1  # the tab's refresh: one listing for both
    assert client.get("/data/plugin/deepscope/findings?run=run").status_code == 200
    assert counting.series_listings == 1


def test_non_finite_layer_values_and_jacobians_are_found_with_their_first_step(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    x = torch.randn(2, 4)

    def spectrum_or_error(module, **kwargs):
        try:  # as the JacobianSpectra measurer records a map that fails
            return deepscope.jacobian_singular_values(module, x, k=3, **kwargs)
        except Exception as error:
            return f"{type(error).__name__}: {error}"

    for step in range(0, 50, 10):
        if step == 30:
            with torch.no_grad():
                model[2].weight[0, 0] = math.nan
        maps = {"2": spectrum_or_error(model[2], within=model), "": spectrum_or_error(model)}
        writer.add_jacobian_singular_values("jacobian", maps, global_step=step)
        values = {"0": 1.0, "2": math.nan if step >= 40 else 2.0}
        writer.add_layer_values("grad_norm", values, global_step=step)
    writer.close()
    _, _, plugin = _plugin(tmp_path)
    report = plugin.findings.report(context.RequestContext(), "", None, thresholds.resolve())
    (finding,) = report["findings"]
    assert (finding["rule"], finding["layer"], finding["first_step"]) == ("non_finite", "2", 30)
    assert finding["evidence"] == {"kind": "jacobian", "tag": "jacobian", "step": 30, "name": "2"}
    assert "layer value 'grad_norm' of 2 from step 40" in finding["message"]
