"""Filters and feature maps through a real `tensorboard` process, on both loaders (the
Python multiplexer and the Rust data server).

The log dir is written as a user writes it: a small CNN trained on scikit-learn's digits
under `deepscope.watch` with `Filters` (conv1, conv2) and `FeatureMaps` (conv1, conv2 on a
held-out digit), plus a run with a damaged step between good ones. The served tiles are
the model's weights and the measurer's outputs, float16 of them bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepscope
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.filters import filters_pb
from tests import filters_data as data
from tests.conftest import get, wait_until
from tests.route_helpers import LOADERS, decode

ROUTE = "/data/plugin/deepscope"
TAGS = ("filters/conv1", "filters/conv2", "feature_maps/conv1", "feature_maps/conv2")


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("filters-tb")
    _, _, measured, newest = data.log_training(logdir)
    with deepscope.SummaryWriter(str(logdir / "damaged")) as w:
        w.add_filters("gray", data.weight(data.WEIGHT_SHAPE, 1), global_step=0)
        bad = filters_pb("gray", data.weight(data.WEIGHT_SHAPE, 2))
        step = pb.FiltersStep.FromString(bad.value[0].tensor.string_val[0])
        step.rgb = True  # 2 input channels: cannot be RGB
        bad.value[0].tensor.string_val[0] = step.SerializeToString()
        w.file_writer.add_summary(bad, 1)
        w.add_filters("gray", data.weight(data.WEIGHT_SHAPE, 3), global_step=2)
    np.savez(logdir / "reference.npz", measured=np.array(measured), **newest)
    return logdir


@pytest.fixture(scope="module", params=LOADERS)
def served(request, logdir, tensorboard_server):
    base = tensorboard_server(logdir, load_fast=request.param)
    reference = dict(np.load(logdir / "reference.npz"))
    count = len(reference["measured"])

    def all_read():
        for tag in TAGS:
            status, body = get(f"{base}{ROUTE}/filters_steps?run=digits&tag={tag}")
            if status != 200 or len(json.loads(body)["steps"]) != count:
                return False
        status, body = get(f"{base}{ROUTE}/filters_steps?run=damaged&tag=gray")
        return status == 200 and len(json.loads(body)["steps"]) == 3

    wait_until(all_read, timeout=120, what="every filters step to be read")
    return base, reference


def page(base: str, run: str, tag: str, **query) -> dict:
    args = "&".join(f"{k}={v}" for k, v in query.items())
    status, text = get(f"{base}{ROUTE}/filters?run={run}&tag={tag}&{args}")
    assert status == 200, text
    return json.loads(text)


@pytest.mark.parametrize("tag", TAGS)
def test_the_newest_step_is_the_model_bit_for_bit(served, tag):
    base, reference = served
    steps = json.loads(get(f"{base}{ROUTE}/filters_steps?run=digits&tag={tag}")[1])
    assert steps["steps"] == reference["measured"].tolist()
    want = data.tiles(reference[tag].astype(np.float16))
    body = page(base, "digits", tag, offset=0, limit=4096)
    got = decode(body["values"])
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    assert body["source"] == ("weights" if tag.startswith("filters") else "feature_maps")
    assert body["layer"] == tag.split("/")[1]
    assert body["shared_range"] == [float(want.min()), float(want.max())]
    # A later page: the same tiles, from the offset on.
    later = page(base, "digits", tag, offset=3, limit=5)
    np.testing.assert_array_equal(decode(later["values"]), want[3:8])


def test_a_damaged_step_is_its_own_error(served):
    base, _ = served
    assert "RGB" in page(base, "damaged", "gray", step=1)["error"]
    good = page(base, "damaged", "gray", step=2)
    want = data.tiles(data.weight(data.WEIGHT_SHAPE, 3).astype(np.float16))
    np.testing.assert_array_equal(decode(good["values"]), want)
