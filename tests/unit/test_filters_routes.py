"""The `filters_steps` and `filters` routes, in process through TensorBoard's multiplexer
data provider and its own WSGI app.

Log dirs are written with `add_filters` and `add_feature_maps` from seeded values
(tests/filters_data.py); damaged steps by hand. Every number served is checked against
numpy on what was logged: tiles are `numpy.float16(values)` in numpy's reshape order,
ranges numpy's min and max of those.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import filters_routes
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from deepscope.writer.filters import filters_pb
from tests import filters_data as data
from tests.route_helpers import decode, multiplexer_provider


def _damaged(tag: str, change) -> object:
    summary = filters_pb(tag, data.weight(data.WEIGHT_SHAPE, 99))
    step = pb.FiltersStep.FromString(summary.value[0].tensor.string_val[0])
    change(step)
    summary.value[0].tensor.string_val[0] = step.SerializeToString()
    return summary


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("filters")
    good = data.log_series(logdir / "good")
    with deepscope.SummaryWriter(str(logdir / "damaged")) as w:
        w.add_filters("gray", data.weight(data.WEIGHT_SHAPE, 1), global_step=0)

        def too_many(step):
            step.total = 1

        w.file_writer.add_summary(_damaged("gray", too_many), 1)
        w.file_writer.add_summary(_damaged("gray", lambda s: s.values.Clear()), 2)
        w.add_filters("gray", data.weight(data.WEIGHT_SHAPE, 3), global_step=3)
        w.add_update_ratios("update", {"fc.weight": 1e-3}, global_step=0)
    return logdir, good


@pytest.fixture(scope="module")
def client(logged):
    provider = multiplexer_provider(logged[0])[1]
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    return werkzeug_test.Client(app)


def get(client, route: str, status: int = 200, **query):
    response = client.get(f"/data/plugin/deepscope/{route}", query_string=query)
    assert response.status_code == status, response.get_data(as_text=True)
    text = response.get_data(as_text=True)
    return json.loads(text) if status == 200 else text


def test_steps_list_the_series_and_its_newest_tiles(client):
    body = get(client, "filters_steps", run="good", tag="gray")
    assert body["steps"] == list(data.STEPS)
    assert body["source"] == "weights" and body["layer"] == "conv2" and body["scale"] == "per_tile"
    assert body["tiles"] == data.WEIGHT_SHAPE[0] * data.WEIGHT_SHAPE[1]
    assert body["tile_shape"] == list(data.WEIGHT_SHAPE[2:])
    assert body["rgb"] is False and body["errors"] == []
    rgb = get(client, "filters_steps", run="good", tag="rgb")
    assert rgb["rgb"] is True and rgb["tiles"] == data.RGB_SHAPE[0] and rgb["scale"] == "shared"
    assert rgb["tile_shape"] == list(data.RGB_SHAPE[1:])
    maps = get(client, "filters_steps", run="good", tag="maps")
    assert maps["source"] == "feature_maps" and maps["tiles"] == data.MAPS_SHAPE[1]


@pytest.mark.parametrize("tag", ["gray", "rgb", "maps"])
@pytest.mark.parametrize(("offset", "limit"), [(0, 256), (3, 2), (4, 100)])
def test_a_page_is_the_logged_values_bit_for_bit(client, logged, tag, offset, limit):
    step = data.STEPS[1]
    values = logged[1][tag][step]
    want = data.tiles(values.astype(np.float16), rgb=tag == "rgb")
    body = get(client, "filters", run="good", tag=tag, step=step, offset=offset, limit=limit)
    if offset >= want.shape[0]:
        pytest.skip("offset past this tag's tiles (the 400 is tested below)")
    page = want[offset : offset + limit]
    got = decode(body["values"])
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got.view(np.uint16), page.view(np.uint16))
    assert body["tiles"] == want.shape[0] and body["offset"] == offset
    assert body["count"] == page.shape[0]
    assert body["shape"] == list(values.shape)
    flat = page.astype(np.float64).reshape(page.shape[0], -1)
    assert body["tile_ranges"] == [[float(r.min()), float(r.max())] for r in flat]
    everything = want.astype(np.float64)
    assert body["shared_range"] == [float(everything.min()), float(everything.max())]
    assert body["error"] is None
    if tag == "maps":
        assert body["sample"] == 2 and body["source"] == "feature_maps"


def test_damaged_steps_are_their_own_error_and_the_rest_is_served(client):
    steps = get(client, "filters_steps", run="damaged", tag="gray")
    assert steps["steps"] == [0, 1, 2, 3] and steps["errors"] == []
    one = get(client, "filters", run="damaged", tag="gray", step=1)
    assert "stored of a layer said to have 1" in one["error"]
    assert one["source"] == "weights" and "values" not in one
    two = get(client, "filters", run="damaged", tag="gray", step=2)
    assert "no values" in two["error"]
    three = get(client, "filters", run="damaged", tag="gray", step=3)
    want = data.tiles(data.weight(data.WEIGHT_SHAPE, 3).astype(np.float16))
    np.testing.assert_array_equal(decode(three["values"]), want[:256])


def test_bad_requests_are_400_and_404_saying_what_to_ask(client):
    text = get(client, "filters", 400, run="good", tag="gray", offset=12)
    assert "past this step's 12 tiles" in text
    text = get(client, "filters", 400, run="good", tag="gray", limit=filters_routes.MAX_LIMIT + 1)
    assert "ask for fewer" in text
    assert "offset" in get(client, "filters", 400, run="good", tag="gray", offset=-1)
    assert "nearest" in get(client, "filters", 404, run="good", tag="gray", step=5).lower()
    assert "update" in get(client, "filters", 404, run="damaged", tag="nope")
    assert "not filters" in get(client, "filters", 400, run="damaged", tag="update")
    assert "tag" in get(client, "filters_steps", 400, run="good")


def test_decode_validates_each_field():
    def encoded(change):
        summary = _damaged("t", change)
        return summary.value[0].tensor.string_val[0]

    weights = pb.FiltersInfo(source=pb.FILTERS_SOURCE_WEIGHTS)
    maps = pb.FiltersInfo(source=pb.FILTERS_SOURCE_FEATURE_MAPS)
    ok = filters_routes.decode_filters_step(encoded(lambda s: None), weights)
    assert ok.count == 12 and ok.tiles.shape == (12, 3, 3)
    cases = [
        (lambda s: setattr(s, "rgb", True), weights, "RGB"),
        (lambda s: setattr(s, "sample", -2), weights, "negative"),
        (lambda s: setattr(s, "non_finite", 3), weights, "non-finite"),
        (lambda s: None, maps, r"\[K, H, W\]"),
        (
            lambda s: s.values.CopyFrom(arrays.encode_array(np.zeros((2, 2, 3, 3), np.int64))),
            weights,
            "not floats",
        ),
        (
            lambda s: s.values.CopyFrom(arrays.encode_array(np.zeros((2, 0, 3, 3), np.float16))),
            weights,
            "none empty",
        ),
    ]
    for change, info, match in cases:
        with pytest.raises(filters_routes.StepError, match=match):
            filters_routes.decode_filters_step(encoded(change), info)
    with pytest.raises(filters_routes.StepError, match="not a readable filters step"):
        filters_routes.decode_filters_step(b"\xff\xff\xff", weights)


def test_non_finite_values_are_left_out_of_the_ranges():
    values = np.array([[[np.nan, 1.0], [2.0, -3.0]], [[np.inf, np.nan], [np.nan, np.nan]]])
    decoded = filters_routes.DecodedFilters(
        "feature_maps", values.astype(np.float16), [2, 2, 2], 2, 2, False, 0, 4, 0.0
    )
    head, raw = filters_routes.filters_body(decoded, 0, 10)
    assert head["tile_ranges"] == [[-3.0, 2.0], None]
    assert head["shared_range"] == [-3.0, 2.0]
    assert len(raw) == values.size * 2
