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


def test_findings_follow_new_steps(tmp_path):
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
