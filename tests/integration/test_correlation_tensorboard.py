"""Correlation routes through a real `tensorboard` process, with both loaders.

The log dir is written during real training by deepscope.SummaryWriter's
add_channel_correlation (tests/correlation_data.py); every matrix is compared
with numpy.corrcoef of the probe activations saved at each logged step, and the
matchings with scipy's assignment on that reference.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from tests.correlation_data import (
    CROSS_TAG,
    DEAD_CHANNEL,
    LOG_EVERY,
    PACKED_TAG,
    PROBE,
    RUNS,
    TRAIN_STEPS,
    WITHIN_TAG,
    load_activations,
    numpy_correlation,
)
from tests.route_helpers import LOADERS, decode, route
from tests.tensorboard_process import get, wait_until

ROUTE = "/data/plugin/deepscope"
STEPS = list(range(0, TRAIN_STEPS, LOG_EVERY))
# float16 storage: half a unit in the last place near 1 is 2**-12.
TOLERANCE = 5e-4


@pytest.fixture(scope="module", params=LOADERS)
def served(request, correlation_logdir, tensorboard_server):
    base = tensorboard_server(correlation_logdir, load_fast=request.param)

    def all_steps_read():
        for run in RUNS:
            for tag in (WITHIN_TAG, CROSS_TAG, PACKED_TAG):
                query = urlencode({"run": run, "tag": tag})
                status, body = get(f"{base}{ROUTE}/correlation_steps?{query}")
                if status != 200 or json.loads(body)["steps"] != STEPS:
                    return False
        return True

    wait_until(all_steps_read, timeout=120, what="every correlation step to be read")
    return base


def matrix_of(body: dict) -> np.ndarray:
    return decode(body["values"]).astype(np.float64)


def reference(logdir, run: str, step: int, cross: bool) -> np.ndarray:
    acts = load_activations(logdir, run, step)
    if not cross:
        return numpy_correlation(acts)
    other = RUNS[1 - RUNS.index(run)]
    return numpy_correlation(acts, load_activations(logdir, other, step))


def test_tags_list_both_correlation_series_with_their_facts(served):
    tags = route(served, "tags")
    for run in RUNS:
        within, cross = tags[run][WITHIN_TAG], tags[run][CROSS_TAG]
        assert within["kind"] == cross["kind"] == "correlation"
        assert within.get("cross", False) is False and cross["cross"] is True
        assert (cross["row_name"], cross["col_name"]) == ("model_a/conv2", "model_b/conv2")


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("tag", [WITHIN_TAG, CROSS_TAG])
def test_every_step_matches_numpy_corrcoef_of_the_activations(served, correlation_logdir, run, tag):
    for step in STEPS:
        body = route(served, "correlation_matrix", run=run, tag=tag, step=step)
        assert body["step"] == step and body["reduction"] == "none"
        expected = reference(correlation_logdir, run, step, cross=tag == CROSS_TAG)
        got = matrix_of(body)
        assert got.shape == expected.shape == (16, 16)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_dead_channel_is_reported_on_its_side(served):
    assert route(served, "correlation_matrix", run="seed0", tag=WITHIN_TAG)["row_dead"] == [
        DEAD_CHANNEL
    ]
    assert route(served, "correlation_matrix", run="seed1", tag=WITHIN_TAG)["row_dead"] == []
    seed0 = route(served, "correlation_matrix", run="seed0", tag=CROSS_TAG)
    assert (seed0["row_dead"], seed0["col_dead"]) == ([DEAD_CHANNEL], [])
    seed1 = route(served, "correlation_channels", run="seed1", tag=CROSS_TAG)
    assert seed1["rows"]["dead"] == [] and seed1["cols"]["dead"] == [DEAD_CHANNEL]
    assert seed1["cols"]["std"][DEAD_CHANNEL] == 0.0


def test_overview_cells_are_block_means_of_the_reference(served, correlation_logdir):
    body = route(
        served,
        "correlation_matrix",
        run="seed1",
        tag=WITHIN_TAG,
        step=20,
        size=5,
        order="clustered",
    )
    order = np.array(body["row_order"])
    assert sorted(order.tolist()) == list(range(16)) and body["col_order"] == body["row_order"]
    assert body["block"] == [4, 4] and body["reduction"] == "mean"
    expected = reference(correlation_logdir, "seed1", 20, cross=False)[np.ix_(order, order)]
    blocks = expected.reshape(4, 4, 4, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(matrix_of(body), blocks, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("run", RUNS)
def test_matching_is_optimal_on_the_reference(served, correlation_logdir, run):
    body = route(served, "correlation_matching", run=run, tag=CROSS_TAG, step=30)
    expected = reference(correlation_logdir, run, 30, cross=True)
    # Semi-matching: each row's best ρ.
    np.testing.assert_allclose(body["semi"]["corr"], expected.max(axis=1), atol=TOLERANCE)
    rows, cols = linear_sum_assignment(expected, maximize=True)
    best = expected[rows, cols]
    assert sum(body["bipartite"]["corr"]) == pytest.approx(best.sum(), abs=16 * TOLERANCE)
    np.testing.assert_allclose(body["bipartite"]["sorted"], np.sort(best)[::-1], atol=0.02)
    # The matched order lays the pairs on the diagonal.
    matched = route(served, "correlation_matrix", run=run, tag=CROSS_TAG, step=30, order="matched")
    diagonal = np.diag(matrix_of(matched))
    pairs = dict(zip(body["bipartite"]["rows"], body["bipartite"]["corr"]))
    np.testing.assert_allclose(diagonal, [pairs[r] for r in matched["row_order"]], atol=TOLERANCE)


def test_errors_keep_their_status_through_tensorboard(served):
    query = urlencode({"run": "seed0", "tag": WITHIN_TAG, "step": 5})
    status, body = get(f"{served}{ROUTE}/correlation_matrix?{query}")
    assert status == 404 and b"nearest kept steps: 0, 10" in body
    query = urlencode({"run": "seed0", "tag": WITHIN_TAG})
    status, body = get(f"{served}{ROUTE}/correlation_matching?{query}")
    assert status == 400 and b"cross-network" in body


UINT8_HALF_STEP = 0.5 / 127  # the uint8 codec's rounding of rho


@pytest.mark.parametrize("run", RUNS)
def test_packed_uint8_steps_unpack_to_the_reference(served, correlation_logdir, run):
    for step in STEPS:
        body = route(served, "correlation_matrix", run=run, tag=PACKED_TAG, step=step)
        got = matrix_of(body)
        np.testing.assert_array_equal(got, got.T)  # the triangle's mirror, exactly
        expected = reference(correlation_logdir, run, step, cross=False)
        np.testing.assert_allclose(got, expected, rtol=0, atol=UINT8_HALF_STEP + TOLERANCE)


def test_every_step_states_its_channel_dim_shape_and_samples(served):
    for tag in (WITHIN_TAG, CROSS_TAG, PACKED_TAG):
        body = route(served, "correlation_matrix", run="seed1", tag=tag)
        assert body["channel_dim"] == 1, tag
        assert body["activation_shape"] == [PROBE, 16, 6, 6], tag
        assert body["samples"] == PROBE * 36 and body["rank_deficient"] is False


def test_max_abs_overview_is_the_brute_force_reduction(served):
    full = route(served, "correlation_matrix", run="seed0", tag=WITHIN_TAG, step=30)
    peak = route(
        served, "correlation_matrix", run="seed0", tag=WITHIN_TAG, step=30, size=5, reduce="max_abs"
    )
    values, matrix = matrix_of(peak), matrix_of(full)
    assert peak["reduction"] == "max_abs" and peak["block"] == [4, 4]
    for i in range(4):
        for j in range(4):
            cell = matrix[4 * i : 4 * i + 4, 4 * j : 4 * j + 4].ravel()
            largest = np.abs(cell).max()
            assert values[i, j] == cell[np.abs(cell) == largest].max()
