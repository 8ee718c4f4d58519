"""compare()'s regression and CKA and compare_cka's matrix through a real `tensorboard`
process, on both loaders (the Python multiplexer and the Rust data server).

The log dir is written as a user writes it (tests/cross_network_data.py): two CNNs trained
from seeds 0 and 1 on scikit-learn's digits, compared at two steps. What is served must be
what compare() and compare_cka() returned, at float32 (the stored dtype), and the L1 fits
must keep Li et al.'s relations to the least-squares ones.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import numpy as np
import pytest

from tests import cross_network_data as data
from tests.conftest import get, wait_until
from tests.route_helpers import LOADERS

ROUTE = "/data/plugin/deepscope"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("cross-network-tb")
    return logdir, data.log_two_seeds(logdir)


def ask(base: str, route: str, **params) -> dict:
    status, body = get(f"{base}{ROUTE}/{route}?{urlencode(params)}")
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module", params=LOADERS)
def served(request, logged, tensorboard_server):
    base = tensorboard_server(logged[0], load_fast=request.param)

    def all_read():
        status, body = get(f"{base}{ROUTE}/cka_series?run=compare&tag={data.CKA_TAG}")
        if status != 200 or len(json.loads(body)["steps"]) != len(data.STEPS):
            return False
        status, body = get(f"{base}{ROUTE}/correlation_steps?run=compare&tag=compare/relu2")
        return status == 200 and len(json.loads(body)["steps"]) == len(data.STEPS)

    wait_until(all_read, timeout=120, what="every compare step to be read")
    return base


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


@pytest.mark.parametrize("layer", data.LAYERS)
def test_the_regression_at_each_step_is_what_compare_returned(served, logged, layer):
    for step, (results, _) in logged[1].items():
        found = results[layer]
        body = ask(
            served, "correlation_regression", run="compare", tag=f"compare/{layer}", step=step
        )
        assert body["error"] is None and body["available"] and body["regression"]
        for name in ("least_squares_error", "l1_error"):
            want = getattr(found.regression, name).astype(np.float32)
            np.testing.assert_array_equal(_floats(body[name]), want)
        assert body["l1_channels"] == found.regression.l1_channels.tolist()
        assert body["mean_l1_channels"] == pytest.approx(found.regression.mean_l1_channels)
        assert body["mean_least_squares_error"] == pytest.approx(
            found.regression.mean_least_squares_error, abs=1e-12
        )
        assert body["cka"] == pytest.approx(found.cka, abs=1e-12)
        assert body["row_name"] == f"seed0/{layer}" and body["col_name"] == f"seed1/{layer}"
        # Li et al.'s relations: the L1 fit never beats least squares, and keeps 90% of it.
        ls, l1 = _floats(body["least_squares_error"]), _floats(body["l1_error"])
        ok = np.isfinite(ls)
        assert np.all(l1[ok] >= ls[ok] - 1e-6)
        assert np.all(1 - l1[ok] >= 0.9 * (1 - ls[ok]) - 1e-6)


def test_the_cka_matrix_is_what_compare_cka_returned(served, logged):
    series = ask(served, "cka_series", run="compare", tag=data.CKA_TAG)
    assert series["steps"] == list(data.STEPS) and series["warnings"] == []
    assert series["layers_a"] == list(data.CKA_LAYERS) == series["layers_b"]
    assert series["row_name"] == "seed0" and series["col_name"] == "seed1"
    for k, step in enumerate(data.STEPS):
        want = logged[1][step][1].matrix.astype(np.float32)
        np.testing.assert_array_equal(np.array(series["matrices"][k], np.float64), want)
    newest = ask(served, "cka", run="compare", tag=data.CKA_TAG)
    assert newest["step"] == data.STEPS[-1] and newest["samples"] == 160
    np.testing.assert_array_equal(
        np.array(newest["matrix"], np.float64),
        logged[1][data.STEPS[-1]][1].matrix.astype(np.float32),
    )
    assert newest["diagonal"] == pytest.approx(np.diagonal(newest["matrix"]).tolist())
