"""deepscope through a real `tensorboard` process, with both loaders.

The log dir is written by deepscope.watch() during a real training loop; every
route is queried and its numbers compared with a brute-force reference taken
around each optimizer step in the loop.
"""

from __future__ import annotations

import base64
import json
import math
from urllib.parse import urlencode

import numpy as np
import pytest

from tests.conftest import TRAIN_STEPS
from tests.route_helpers import LOADERS
from tests.tensorboard_process import get, wait_until

ROUTE = "/data/plugin/deepscope"


def _json(url: str):
    status, body = get(url)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module", params=LOADERS)
def served(request, trained_logdir, tensorboard_server):
    base = tensorboard_server(trained_logdir, load_fast=request.param)

    def all_steps_read():
        status, body = get(f"{base}{ROUTE}/update_ratios?run=seed1&tag=update_ratios")
        return status == 200 and len(json.loads(body)["steps"]) == TRAIN_STEPS

    wait_until(all_steps_read, timeout=120, what="every step to be read")
    references = json.loads((trained_logdir / "reference.json").read_text())
    return base, references


def test_the_tab_is_listed(served):
    base, _ = served
    listing = _json(base + "/data/plugins_listing")
    entry = listing["deepscope"]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "deepscope"
    assert entry["loading_mechanism"]["module_path"] == "/data/plugin/deepscope/index.js"


def test_index_js_is_served_as_a_module(served):
    base, _ = served
    status, body = get(base + ROUTE + "/index.js")
    assert status == 200
    assert b"export" in body and b"render" in body


def test_tags_list_every_run_with_its_parameter_names(served):
    base, references = served
    tags = _json(base + ROUTE + "/tags")
    assert sorted(tags) == ["seed0", "seed1"]
    for run, reference in references.items():
        entry = tags[run]["update_ratios"]
        assert entry["kind"] == "update_ratios"
        assert entry["version"] == 1
        assert entry["names"] == reference["names"]
        assert "loss" not in tags[run]  # plain scalars are not ours


@pytest.mark.parametrize("run", ["seed0", "seed1"])
def test_update_ratios_match_a_brute_force_reference(served, run):
    base, references = served
    reference = references[run]
    body = _json(f"{base}{ROUTE}/update_ratios?run={run}&tag=update_ratios")
    assert body["steps"] == reference["steps"]  # every step kept: more than the default 100
    assert body["names"] == reference["names"]
    assert len(body["wall_times"]) == TRAIN_STEPS
    assert body["wall_times"] == sorted(body["wall_times"])
    no_update_seen = 0
    for got_row, want_row in zip(body["values"], reference["values"]):
        for got, want in zip(got_row, want_row):
            if want is None:
                assert got is None
                no_update_seen += 1
            else:
                assert got == pytest.approx(want, rel=1e-3, abs=1e-9)
    # aux.weight and aux.bias get no gradient on odd steps.
    assert no_update_seen == 2 * (TRAIN_STEPS // 2)
    assert body["non_finite"] == 0


def test_base64_format_carries_the_same_numbers(served):
    base, references = served
    reference = references["seed0"]
    body = _json(f"{base}{ROUTE}/update_ratios?run=seed0&tag=update_ratios&format=base64")
    shape = body["values"]["shape"]
    assert shape == [TRAIN_STEPS, len(reference["names"])]
    values = np.frombuffer(base64.b64decode(body["values"]["base64"]), "<f4").reshape(shape)
    no_update = {tuple(pair) for pair in body["no_update"]}
    for i, row in enumerate(reference["values"]):
        for j, want in enumerate(row):
            if want is None:
                assert (i, j) in no_update and math.isnan(values[i, j])
            else:
                assert (i, j) not in no_update
                assert values[i, j] == pytest.approx(want, rel=1e-3, abs=1e-9)


def test_name_filter_returns_only_those_parameters(served):
    base, references = served
    names = ["fc.weight", "conv1.bias"]
    query = urlencode([("run", "seed0"), ("tag", "update_ratios")] + [("name", n) for n in names])
    body = _json(f"{base}{ROUTE}/update_ratios?{query}")
    assert body["names"] == names
    columns = [references["seed0"]["names"].index(n) for n in names]
    want = [[row[j] for j in columns] for row in references["seed0"]["values"]]
    assert np.allclose(np.array(body["values"], dtype=float), np.array(want), rtol=1e-3)


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("tag=update_ratios", 400, "missing query parameter 'run'"),
        ("run=seed0", 400, "missing query parameter 'tag'"),
        ("run=seed0&tag=update_ratios&format=xml", 400, "format must be one of"),
        ("run=nope&tag=update_ratios", 404, "runs with deepscope data: 'seed0', 'seed1'"),
        ("run=seed0&tag=loss", 404, "its tags: 'update_ratios'"),
        ("run=seed0&tag=update_ratios&name=nope.weight", 404, "its parameters: conv1.weight"),
    ],
)
def test_bad_requests_get_a_message_a_person_can_act_on(served, query, status, says):
    base, _ = served
    got_status, body = get(f"{base}{ROUTE}/update_ratios?{query}")
    assert got_status == status
    assert says in body.decode()


@pytest.mark.parametrize("load_fast", [False, True], ids=["load_fast=false", "load_fast=true"])
def test_newer_schema_is_reported_not_crashed(newer_schema_logdir, tensorboard_server, load_fast):
    base = tensorboard_server(newer_schema_logdir, load_fast=load_fast)
    tags = wait_until(
        lambda: (t := _json(base + ROUTE + "/tags")).get("future", {}).get("from_the_future") and t,
        timeout=60,
        what="tags",
    )
    future = tags["future"]["from_the_future"]
    assert future["kind"] == "update_ratios"
    assert future["version"] == 2
    assert "upgrade deepscope" in future["error"]
    assert "error" not in tags["future"]["current"]
    status, body = get(f"{base}{ROUTE}/update_ratios?run=future&tag=from_the_future")
    assert status == 400
    assert b"upgrade deepscope" in body


def test_samples_per_plugin_flag_still_wins(trained_logdir, tensorboard_server):
    # watch() wrote blocks of 10 measurements: 15 events; keep 4 of them.
    base = tensorboard_server(
        trained_logdir, load_fast=False, extra_args=("--samples_per_plugin=deepscope=4",)
    )

    def read():
        status, body = get(f"{base}{ROUTE}/update_ratios?run=seed0&tag=update_ratios")
        return status == 200 and json.loads(body)

    body = wait_until(read, timeout=60, what="update ratios")
    assert len(body["steps"]) == 4 * 10
    assert body["steps"][-1] == TRAIN_STEPS - 1  # the reservoir always keeps the latest
    assert body["steps"] == sorted(body["steps"])


@pytest.fixture(scope="module")
def zero_bias_logdir(tmp_path_factory):
    """A run trained under watch() whose biases start at zero (as in Hugging Face models)."""
    import torch

    import deepscope

    logdir = tmp_path_factory.mktemp("zero-bias")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    for layer in (model[0], model[2]):
        torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    writer = deepscope.SummaryWriter(str(logdir / "zero-bias"))
    x, y = torch.randn(32, 6), torch.randint(0, 2, (32,))
    with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None) as monitor:
        for _ in range(4):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    writer.close()
    assert monitor.stats.zero_weight == 2 and monitor.stats.non_finite == 0
    return logdir


@pytest.mark.parametrize("load_fast", [False, True], ids=["load_fast=false", "load_fast=true"])
def test_zero_initialised_biases_are_served_as_zero_weight(
    zero_bias_logdir, tensorboard_server, load_fast
):
    base = tensorboard_server(zero_bias_logdir, load_fast=load_fast)
    url = f"{base}{ROUTE}/update_ratios?run=zero-bias&tag=update_ratios"

    def read(fmt):
        status, body = get(f"{url}&format={fmt}")
        return status == 200 and len(json.loads(body)["steps"]) == 4 and json.loads(body)

    as_json = wait_until(lambda: read("json"), timeout=60, what="4 steps")
    as_base64 = read("base64")
    assert as_json["names"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for body in (as_json, as_base64):
        assert body["zero_weight"] == [[0, 1], [0, 3]]  # the biases at step 0 only
        assert body["non_finite"] == 0
    assert as_json["values"][0][1] is None and as_json["values"][0][3] is None
    assert all(isinstance(v, float) and v > 0 for row in as_json["values"][1:] for v in row)
    assert as_base64["no_update"] == []
