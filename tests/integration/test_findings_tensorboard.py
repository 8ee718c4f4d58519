"""`/findings` through a real `tensorboard` process, with both loaders: the planted faults'
findings, the same as `deepscope diagnose --json` of the same log dir."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

import deepscope
from tests.conftest import get
from tests.route_helpers import LOADERS, route


@pytest.mark.parametrize("load_fast", LOADERS)
def test_findings_route_is_the_cli_s_answer(planted_logdir, tensorboard_server, load_fast):
    logdir, truths = planted_logdir
    base = tensorboard_server(logdir, load_fast)
    served = route(base, "findings")
    expected = json.loads(json.dumps(deepscope.diagnose(logdir)))
    assert served["runs"] == sorted(truths)
    assert served == expected
    # Each run's top finding is its planted fault's rule.
    for run, truth in truths.items():
        top = next(f for f in served["findings"] if f["run"] == run)
        assert top["rule"] == truth.rule, run
    one = route(base, "findings", run="lr-too-high", set="learning_rate_parameter.factor=100")
    assert one["runs"] == ["lr-too-high"]
    assert "learning_rate_parameter" not in {f["rule"] for f in one["findings"]}
    assert one["rules"][2]["thresholds"]["factor"]["value"] == 100


@pytest.mark.parametrize("load_fast", LOADERS)
def test_findings_route_errors_say_what_to_ask(planted_logdir, tensorboard_server, load_fast):
    logdir, _ = planted_logdir
    base = tensorboard_server(logdir, load_fast)
    status, body = get(f"{base}/data/plugin/deepscope/findings?{urlencode({'run': 'nope'})}")
    body = body.decode()
    assert status == 404 and "no run named 'nope'" in body and "lr-too-high" in body
    status, body = get(f"{base}/data/plugin/deepscope/findings?set=dead_units.fraction")
    body = body.decode()
    assert status == 400 and "RULE.SETTING=VALUE" in body
    status, body = get(f"{base}/data/plugin/deepscope/findings?off=dead_unit")
    body = body.decode()
    assert status == 400 and "no findings rule named 'dead_unit'" in body
