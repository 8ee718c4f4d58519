"""Damaged update-ratio events drop only their own rows, with a warning naming the step.

Each case is one tag: a good event at step 0, the damaged one at step 40, a good
one at step 80, written by hand (tests/event_files.py). Read through the route
without HTTP (`UpdateRatioRoutes.update_ratios`) and through TensorBoard's own
WSGI app (werkzeug's test client).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.context import RequestContext
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import series
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from deepscope.tb_plugin.route_context import RouteContext
from deepscope.tb_plugin.update_ratio_routes import UpdateRatioRoutes
from tests.event_files import (
    float_tensor,
    ratios_step,
    string_tensor,
    update_ratios_metadata,
    write_events,
)
from tests.route_helpers import multiplexer_provider

NAMES = ["w", "b", "c", "d"]
GOOD = {0: [1e-3, 2e-3, 3e-3, 4e-3], 80: [5e-3, 6e-3, 7e-3, 8e-3]}
BAD_STEP = 40
EPS = np.finfo(np.float32).eps


def _good(step: int) -> bytes:
    return ratios_step(GOOD[step], crc_names=NAMES).SerializeToString()


def _array(dtype: int, data: bytes, shape: list[int]) -> pb.Array:
    return pb.Array(dtype=dtype, data=data, shape=shape)


def _step(ratios: pb.Array, **fields) -> bytes:
    return pb.UpdateRatiosStep(ratios=ratios, **fields).SerializeToString()


FOUR = np.float32([0.1, 0.2, 0.3, 0.4]).tobytes()
# tag: (the damaged event's tensor, what its warning must say after "step 40: ")
CASES = {
    "garbage": (string_tensor(b"\xff\xff\xff not a message"), "the payload does not parse"),
    "float_tensor": (
        float_tensor([0.1, 0.2, 0.3, 0.4]),
        "the payload is a float32 tensor of shape [4], not a serialized UpdateRatiosStep",
    ),
    "string_vector": (
        string_tensor(_good(0), _good(0)),
        "the payload is a string tensor of shape [2], not one serialized UpdateRatiosStep",
    ),
    "short_payload": (
        string_tensor(ratios_step([0.1, 0.2, 0.3], crc_names=NAMES).SerializeToString()),
        "12 bytes of ratios for 4 parameters × 1 step (expected 16)",
    ),
    "short_payload_without_crc": (
        string_tensor(ratios_step([0.1, 0.2, 0.3]).SerializeToString()),
        "12 bytes of ratios for 4 parameters × 1 step (expected 16)",
    ),
    "short_block": (
        string_tensor(
            ratios_step(
                np.zeros((2, 3)), crc_names=NAMES, steps=[39, 40], wall_times=[1.0, 2.0]
            ).SerializeToString()
        ),
        "24 bytes of ratios for 4 parameters × 2 steps (expected 32)",
    ),
    "own_names_short": (
        string_tensor(ratios_step([0.1, 0.2, 0.3], names=["x", "y"]).SerializeToString()),
        "12 bytes of ratios for 2 parameters × 1 step (expected 8)",
    ),
    "shape_disagrees": (
        string_tensor(_step(_array(pb.FLOAT32, FOUR, [2, 3]))),
        "ratios of shape [2, 3] for 4 parameters × 1 step",
    ),
    "float64": (
        string_tensor(_step(_array(pb.FLOAT64, FOUR * 2, [4]))),
        "ratios of dtype FLOAT64, not FLOAT32",
    ),
    "unknown_dtype": (
        string_tensor(_step(_array(42, FOUR, [4]))),
        "ratios of dtype unknown dtype 42, not FLOAT32",
    ),
    "no_update_out_of_range": (
        string_tensor(_step(_array(pb.FLOAT32, FOUR, [4]), no_update=[9])),
        "no-update mark 9 outside the event's 4 values",
    ),
    "zero_weight_out_of_range": (
        string_tensor(_step(_array(pb.FLOAT32, FOUR, [4]), zero_weight=[1, 4])),
        "zero-weight mark 4 outside the event's 4 values",
    ),
    "marked_twice": (
        string_tensor(_step(_array(pb.FLOAT32, FOUR, [4]), no_update=[1], zero_weight=[1])),
        "value 1 is marked both no-update and zero-weight",
    ),
    "steps_without_wall_times": (
        string_tensor(
            ratios_step(np.zeros((2, 4)), steps=[39, 40], wall_times=[1.0]).SerializeToString()
        ),
        "2 steps but 1 wall time",
    ),
    "nan_wall_time": (
        string_tensor(
            ratios_step(np.zeros((1, 4)), steps=[40], wall_times=[math.nan]).SerializeToString()
        ),
        "wall time nan is not a number of seconds",
    ),
    "names_twice": (
        string_tensor(ratios_step([0.1, 0.2], names=["x", "x"]).SerializeToString()),
        "parameter name 'x' appears twice",
    ),
}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("damaged-update-ratios")
    events = []
    for tag, (tensor, _) in CASES.items():
        events += [
            (tag, 0, 100.0, string_tensor(_good(0)), update_ratios_metadata(NAMES)),
            (tag, BAD_STEP, 140.0, tensor, None),
            (tag, 80, 180.0, string_tensor(_good(80)), None),
        ]
    # A restarted run with other names (the names' CRC differs): the names warning.
    restarted = ratios_step([0.1, 0.2, 0.3, 0.4], crc_names=["w", "b", "c", "e"])
    restarted_longer = ratios_step([0.1, 0.2, 0.3, 0.4, 0.5], crc_names=["w", "b", "c", "d", "e"])
    for tag, step in (("restarted", restarted), ("restarted_longer", restarted_longer)):
        events += [
            (tag, 0, 100.0, string_tensor(_good(0)), update_ratios_metadata(NAMES)),
            (tag, BAD_STEP, 140.0, string_tensor(step.SerializeToString()), None),
            (tag, 80, 180.0, string_tensor(_good(80)), None),
        ]
    # Metadata listing no names, and an event that names none either.
    named = ratios_step([0.5], names=["x"]).SerializeToString()
    events += [
        ("nameless", 0, 100.0, string_tensor(named), update_ratios_metadata([])),
        ("nameless", BAD_STEP, 140.0, string_tensor(ratios_step([]).SerializeToString()), None),
        ("nameless", 80, 180.0, string_tensor(named), None),
    ]
    # Seven damaged events in a row: the warning spells out five and counts the rest.
    events.append(("many", 0, 100.0, string_tensor(_good(0)), update_ratios_metadata(NAMES)))
    for k in range(7):
        events.append(("many", 10 + k, 110.0 + k, string_tensor(b"\xff" * (k + 1)), None))
    write_events(logdir / "damaged", events)
    return logdir


@pytest.fixture(scope="module")
def provider(logdir):
    return multiplexer_provider(logdir)[1]


@pytest.fixture(scope="module")
def routes(provider) -> UpdateRatioRoutes:
    return UpdateRatioRoutes(RouteContext(provider, series.SeriesCatalog(provider), 0))


@pytest.fixture(scope="module")
def client(provider) -> werkzeug_test.Client:
    plugin = DeepscopePlugin(
        base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    )
    return werkzeug_test.Client(application.TensorBoardWSGI([plugin], data_provider=provider))


def _assert_only_the_good_rows(steps, values, names):
    assert list(steps) == [0, 80]
    assert list(names) == NAMES
    np.testing.assert_allclose(
        np.asarray(values, dtype=np.float32), np.float32([GOOD[0], GOOD[80]]), rtol=EPS, atol=0
    )


@pytest.mark.parametrize("tag", list(CASES))
def test_a_damaged_event_drops_its_own_rows_with_a_warning_naming_the_step(routes, tag):
    ratios = routes.update_ratios(RequestContext(), "", "damaged", tag)
    _assert_only_the_good_rows(ratios.steps, ratios.values, ratios.names)
    assert not ratios.no_update.any() and not ratios.zero_weight.any()
    (warning,) = ratios.warnings
    assert "1 event(s) (first at step 40) are malformed and left out" in warning
    assert f"step {BAD_STEP}: {CASES[tag][1]}" in warning
    assert "restarted run" not in warning


@pytest.mark.parametrize("fmt", ["json", "base64"])
@pytest.mark.parametrize("tag", list(CASES))
def test_through_http_a_damaged_event_is_a_warning_not_a_5xx(client, tag, fmt):
    response = client.get(
        "/data/plugin/deepscope/update_ratios",
        query_string={"run": "damaged", "tag": tag, "format": fmt},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = json.loads(response.get_data(as_text=True))
    if fmt == "base64":
        import base64

        values = np.frombuffer(base64.b64decode(body["values"]["base64"]), "<f4")
        values = values.reshape(body["values"]["shape"])
        assert body["no_update"] == []
    else:
        values = body["values"]
    _assert_only_the_good_rows(body["steps"], values, body["names"])
    assert body["wall_times"] == [100.0, 180.0]
    (warning,) = body["warnings"]
    assert f"step {BAD_STEP}: {CASES[tag][1]}" in warning


@pytest.mark.parametrize("tag", ["restarted", "restarted_longer"])
def test_other_names_keep_the_restarted_run_warning(routes, tag):
    ratios = routes.update_ratios(RequestContext(), "", "damaged", tag)
    _assert_only_the_good_rows(ratios.steps, ratios.values, ratios.names)
    (warning,) = ratios.warnings
    assert "1 step(s) (first: 40)" in warning and "restarted run" in warning
    assert "malformed" not in warning


def test_no_names_anywhere_is_that_events_error(routes):
    ratios = routes.update_ratios(RequestContext(), "", "damaged", "nameless")
    assert list(ratios.steps) == [0, 80] and ratios.names == ["x"]
    np.testing.assert_allclose(ratios.values, np.float32([[0.5], [0.5]]), rtol=EPS)
    (warning,) = ratios.warnings
    assert "step 40: no parameter names" in warning


def test_many_damaged_events_spell_out_five_and_count_the_rest(routes):
    ratios = routes.update_ratios(RequestContext(), "", "damaged", "many")
    assert list(ratios.steps) == [0]
    (warning,) = ratios.warnings
    assert warning.startswith("7 event(s) (first at step 10) are malformed")
    for step in range(10, 15):
        assert f"step {step}: " in warning
    assert "step 15: " not in warning and warning.endswith("; and 2 more")
