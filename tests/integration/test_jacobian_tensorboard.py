"""Jacobian spectra through a real `tensorboard` process, with both loaders.

The log dir is written as users write it: a small CNN trained under `deepscope.watch` with
the `JacobianSpectra` measurer (the network's map and three layers'), a run of numpy-made
spectra logged with `add_jacobian_singular_values` at more steps than the Rust data
server's default of 100 tensor samples, and a run holding damaged events among good ones.
The numbers served are compared with numpy summaries of what was logged (the synthetic
run) and of the events read back with TensorBoard's own EventAccumulator (the training run).
"""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from tests import jacobian_data as data
from tests.conftest import get, wait_until
from tests.kind_cases.jacobian import MAPS, spectra
from tests.route_helpers import LOADERS, number, route

ROUTE = "/data/plugin/deepscope"
STEPS = tuple(range(0, 1200, 10))  # 120 steps
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("jacobian-tb")
    data.log_training(logdir, steps=9, every=4)
    data.log_synthetic(logdir, steps=STEPS)
    with data.writer(logdir / "damaged") as w:
        good = spectra("damaged", 0)
        w.add_jacobian_singular_values(data.TAG, good, global_step=0)
        for step, (build, _) in enumerate(data.DAMAGED.values(), start=1):
            w.file_writer.add_summary(build(data.TAG), step, 1.0)
        w.add_jacobian_singular_values(data.TAG, good, global_step=len(data.DAMAGED) + 1)
    return logdir


@pytest.fixture(scope="module", params=LOADERS)
def served(request, logdir, tensorboard_server):
    base = tensorboard_server(logdir, load_fast=request.param)

    def all_read():
        status, body = get(f"{base}{ROUTE}/jacobian?run=synthetic&tag={data.TAG}")
        if status != 200 or len(
            route(base, "jacobian", run="synthetic", tag=data.TAG)["steps"]
        ) != len(STEPS):
            return False
        status, _ = get(f"{base}{ROUTE}/jacobian?run=cnn&tag={data.TAG}")
        done = status == 200 and len(route(base, "jacobian", run="cnn", tag=data.TAG)["steps"]) == 3
        status, _ = get(f"{base}{ROUTE}/jacobian?run=damaged&tag={data.TAG}")
        return (
            done
            and status == 200
            and len(route(base, "jacobian", run="damaged", tag=data.TAG)["steps"]) == 2
        )

    wait_until(all_read, timeout=120, what="every Jacobian step to be read")
    return base


def _matrix(rows) -> np.ndarray:
    return np.array([[np.nan if v is None else number(v) for v in row] for row in rows])


def test_tags_and_kinds_list_the_series(served):
    entry = route(served, "tags")["cnn"][data.TAG]
    assert entry["kind"] == "jacobian" and "error" not in entry
    assert "jacobian" in [kind["name"] for kind in route(served, "kinds")]


def test_every_step_is_kept_and_summarised_as_numpy_does(served):
    body = route(served, "jacobian", run="synthetic", tag=data.TAG)
    assert body["steps"] == list(STEPS) and body["maps"] == list(MAPS)
    want = np.array(
        [
            [
                np.float32(spectra(f"synthetic/{data.TAG}", s)[m].singular_values)[:, 0].mean()
                for m in MAPS
            ]
            for s in STEPS
        ],
        dtype=np.float64,
    )
    np.testing.assert_allclose(_matrix(body["sigma_max"]["mean"]), want, rtol=8 * EPS32)


def test_the_training_run_serves_what_its_events_hold(served, logdir):
    accumulator = event_accumulator.EventAccumulator(
        str(logdir / "cnn"), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    events = accumulator.Tensors(data.TAG)
    last = pb.JacobianStep.FromString(events[-1].tensor_proto.string_val[0])
    stored = arrays.decode_array(last.singular_values).astype(np.float64)
    body = route(served, "jacobian_spectrum", run="cnn", tag=data.TAG)
    assert body["step"] == 8 and body["steps"] == [0, 4, 8]
    assert [m["name"] for m in body["maps"]] == ["", *data.TRAINING_LAYERS]
    for i, entry in enumerate(body["maps"]):
        assert entry["error"] is None and entry["full"] is True
        got = _matrix(entry["singular_values"])
        np.testing.assert_array_equal(got, stored[i])
    series = route(served, "jacobian", run="cnn", tag=data.TAG)
    assert series["dims"]["0.0"] == [64, 256] and series["dims"][""] == [64, 10]
    top = _matrix(series["sigma_max"]["mean"])[-1]
    np.testing.assert_allclose(top, np.nanmax(stored, axis=2).mean(axis=1), rtol=4 * EPS32)


def test_damaged_events_drop_only_their_steps_on_both_loaders(served):
    body = route(served, "jacobian", run="damaged", tag=data.TAG)
    assert body["steps"] == [0, len(data.DAMAGED) + 1]
    (warning,) = body["warnings"]
    assert warning.startswith(f"{len(data.DAMAGED)} event(s) (first at step 1) are malformed")
    for step, (_, reason) in list(enumerate(data.DAMAGED.values(), start=1))[:5]:
        assert f"step {step}: " in warning and reason in warning, warning
    for step, (_, reason) in enumerate(data.DAMAGED.values(), start=1):
        one = route(served, "jacobian_spectrum", run="damaged", tag=data.TAG, step=step)
        assert reason in one["error"]


def test_errors_are_plain_text_with_a_status_never_500(served):
    status, body = get(f"{served}{ROUTE}/jacobian_spectrum?run=cnn&tag={data.TAG}&step=5")
    assert status == 404 and b"has no step 5" in body
    status, body = get(f"{served}{ROUTE}/jacobian?run=cnn")
    assert status == 400 and b"missing query parameter 'tag'" in body
