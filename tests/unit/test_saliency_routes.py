"""The saliency routes, served in-process from a data provider built as TensorBoard builds it.

Event files written by hand with known float16 arrays (as `add_saliency` stores
them, or as another library's maps arrive), read by TensorBoard's Python loader
with the production size guidance behind `MultiplexerDataProvider`, the plugin
mounted in TensorBoard's own WSGI app. Every number a route returns is checked
against the arrays written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from werkzeug import test as werkzeug_test

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import blob_steps, saliency_routes
from deepscope.writer import summary, update_ratios
from tests.route_helpers import CountingProvider, decode
from tests.unit import test_plugin_routes as plugin_routes
from tests.unit.test_plugin_routes import get, get_json

N, SHAPE = 5, (1, 4, 6)  # probe of five 1×4×6 images
STEPS = list(range(0, 150, 10))  # 15 steps: more than the 10 a blob sequence keeps by default


def _arrays(step: int, n: int = N, shape=SHAPE, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed * 1000 + step)
    return {
        "inputs": rng.uniform(0, 1, (n, *shape)).astype(np.float16),
        "maps": (rng.standard_normal((n, *shape)) * (step + 1) * 1e-3).astype(np.float16),
        "labels": np.arange(n, dtype=np.int64) % 3,
        "predictions": (np.arange(n, dtype=np.int64) + step // 70) % 3,
    }


def _event(tag: str, step: int, parts: dict, method: str, first: bool, non_finite: int = 0):
    message = pb.SaliencyStep(non_finite=non_finite)
    for name, array in parts.items():
        getattr(message, name).CopyFrom(arrays.encode_array(array))
    info = None
    if first:
        shape = parts["maps"].shape[1:]
        info = pb.PluginData(
            kind=pb.SALIENCY, saliency=pb.SaliencyInfo(method=method, input_shape=shape)
        )
    return summary.blob_sequence_summary(tag, [message.SerializeToString()], info)


def _write(logdir: Path) -> dict:
    """Run "probe": a gradient series over 15 steps, baseline_delta, IG, non-finite maps."""
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    truth: dict = {"gradient": {}, "baseline_delta": {}, "integrated_gradients": {}}
    writer = TorchWriter(str(logdir / "probe"))
    for k, step in enumerate(STEPS):
        parts = _arrays(step)
        truth["gradient"][step] = parts
        event = _event("saliency/gradient", step, parts, "gradient", first=k == 0)
        writer.file_writer.add_summary(event, step, 1000.0 + step)
    # baseline_delta: one baseline shared by all samples, a map of the baseline per sample.
    parts = _arrays(7)
    parts["baseline"] = np.full((1, *SHAPE), 0.5, dtype=np.float16)
    parts["baseline_maps"] = (np.arange(N * 24).reshape(N, *SHAPE) / 100).astype(np.float16)
    truth["baseline_delta"][7] = parts
    event = _event("saliency/baseline_delta", 7, parts, "baseline_delta", first=True)
    writer.file_writer.add_summary(event, 7, 1007.0)
    # integrated gradients with a completeness error per sample, one of them non-finite.
    parts = _arrays(9)
    parts["completeness_error"] = np.array([0.01, -0.02, 0.0, np.inf, 1e-4], dtype=np.float32)
    truth["integrated_gradients"][9] = parts
    event = _event("saliency/integrated_gradients", 9, parts, "integrated_gradients", True)
    writer.file_writer.add_summary(event, 9, 1009.0)
    # Maps from elsewhere with NaN and Inf in samples 1 and 3; no labels, no predictions.
    rng = np.random.default_rng(5)
    bad = {
        "inputs": rng.uniform(0, 1, (4, 3, 2, 2)).astype(np.float16),
        "maps": rng.standard_normal((4, 3, 2, 2)).astype(np.float16),
    }
    bad["maps"][1, 0, 0, 0] = np.nan
    bad["maps"][3, 2, 1, :] = np.inf
    truth["captum"] = {3: bad}
    writer.file_writer.add_summary(_event("captum", 3, bad, "captum-ig", True, 3), 3, 1003.0)
    # A token series (a text model's per-token maps) with the token texts, and one
    # whose texts do not match its ids.
    token_ids = np.array([[3, 14, 15, 9], [2, 6, 5, 3], [5, 8, 9, 7]], dtype=np.int64)
    token_maps = (np.arange(12).reshape(3, 4) / 8 - 0.7).astype(np.float16)
    texts = [f"t{k}" for k in range(12)]
    truth["tokens"] = {"ids": token_ids, "maps": token_maps, "texts": texts}
    for tag, stored_texts in (("text/ig", texts), ("text/bad", texts[:5])):
        message = pb.SaliencyStep(
            inputs=arrays.encode_array(token_ids),
            maps=arrays.encode_array(token_maps),
            labels=arrays.encode_array(np.array([1, 0, 1], dtype=np.int64)),
            token_texts=stored_texts,
        )
        info = pb.PluginData(
            kind=pb.SALIENCY,
            saliency=pb.SaliencyInfo(
                method="integrated_gradients",
                input_shape=[4],
                input_kind="tokens",
                token_reduction="sum over the embedding dim",
            ),
        )
        event = summary.blob_sequence_summary(tag, [message.SerializeToString()], info)
        writer.file_writer.add_summary(event, 2, 1002.0)
    writer.file_writer.add_summary(update_ratios.update_ratios_pb("ratios", {"w": 1e-3}), 0, 1.0)
    writer.close()
    return truth


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("saliency-routes")
    return logdir, _write(logdir)


@pytest.fixture(scope="module")
def truth(written) -> dict:
    return written[1]


def _client(logdir: Path, sampling_hints: dict) -> werkzeug_test.Client:
    """The plugin over the production size guidance (TensorBoard's, with the loader's own)."""
    return plugin_routes._client(_provider(logdir), sampling_hints)


def _provider(logdir: Path) -> CountingProvider:
    guidance = plugin_routes._production_tensor_size_guidance()
    return CountingProvider(plugin_routes._provider(logdir, guidance))


@pytest.fixture(scope="module")
def client(written) -> werkzeug_test.Client:
    return _client(written[0], {"deepscope": 0})


# ---------------------------------------------------------------- steps


def test_steps_list_every_kept_step_with_method_shape_and_samples(client, truth):
    body = get_json(client, "saliency_steps", run="probe", tag="saliency/gradient")
    assert body["steps"] == STEPS
    assert body["wall_times"] == [1000.0 + s for s in STEPS]
    assert body["method"] == "gradient"
    assert body["input_shape"] == list(SHAPE)
    assert body["num_samples"] == N
    assert body["labels"] == truth["gradient"][STEPS[-1]]["labels"].tolist()


def test_steps_of_maps_without_labels_say_none(client):
    body = get_json(client, "saliency_steps", run="probe", tag="captum")
    assert body["steps"] == [3] and body["num_samples"] == 4
    assert body["labels"] is None
    assert body["method"] == "captum-ig" and body["input_shape"] == [3, 2, 2]


def test_a_sampling_hint_keeps_the_newest_step(written):
    client = _client(written[0], {"deepscope": 4})
    steps = get_json(client, "saliency_steps", run="probe", tag="saliency/gradient")["steps"]
    assert len(steps) == 4 and steps[-1] == STEPS[-1]


# ---------------------------------------------------------------- maps


def test_maps_of_a_step_equal_what_was_written(client, truth):
    step = STEPS[4]
    body = get_json(client, "saliency", run="probe", tag="saliency/gradient", step=step)
    want = truth["gradient"][step]
    assert body["step"] == step and body["wall_time"] == 1000.0 + step
    assert body["samples"] == list(range(N)) and body["num_samples"] == N
    np.testing.assert_array_equal(decode(body["maps"]), want["maps"])
    np.testing.assert_array_equal(decode(body["inputs"]), want["inputs"])
    assert body["labels"] == want["labels"].tolist()
    assert body["predictions"] == want["predictions"].tolist()
    assert body["baseline"] is None and body["baseline_maps"] is None
    assert body["completeness_error"] is None
    assert body["non_finite"] == 0 and body["non_finite_per_sample"] == [0] * N


def test_without_step_the_newest_is_sent(client, truth):
    body = get_json(client, "saliency", run="probe", tag="saliency/gradient")
    assert body["step"] == STEPS[-1]
    np.testing.assert_array_equal(decode(body["maps"]), truth["gradient"][STEPS[-1]]["maps"])


def test_samples_selects_and_orders(client, truth):
    body = get_json(
        client, "saliency", run="probe", tag="saliency/gradient", step=20, samples="3,0-1"
    )
    want = truth["gradient"][20]
    assert body["samples"] == [3, 0, 1]
    np.testing.assert_array_equal(decode(body["maps"]), want["maps"][[3, 0, 1]])
    np.testing.assert_array_equal(decode(body["inputs"]), want["inputs"][[3, 0, 1]])
    assert body["labels"] == want["labels"][[3, 0, 1]].tolist()


def test_baseline_delta_sends_the_shared_baseline_once_and_each_samples_baseline_map(client, truth):
    body = get_json(client, "saliency", run="probe", tag="saliency/baseline_delta", samples="1-2")
    want = truth["baseline_delta"][7]
    assert body["method"] == "baseline_delta"
    np.testing.assert_array_equal(decode(body["baseline"]), want["baseline"])
    assert body["baseline"]["shape"] == [1, *SHAPE]
    np.testing.assert_array_equal(decode(body["baseline_maps"]), want["baseline_maps"][1:3])
    np.testing.assert_array_equal(decode(body["maps"]), want["maps"][1:3])


def test_integrated_gradients_send_each_samples_completeness_error(client, truth):
    body = get_json(
        client, "saliency", run="probe", tag="saliency/integrated_gradients", samples="4,3,0"
    )
    error = truth["integrated_gradients"][9]["completeness_error"]
    assert body["completeness_error"][0] == pytest.approx(float(error[4]))
    assert body["completeness_error"][1] == "Infinity"  # strict JSON: spelled out
    assert body["completeness_error"][2] == pytest.approx(float(error[0]))


def test_non_finite_maps_are_counted_per_sample(client, truth):
    body = get_json(client, "saliency", run="probe", tag="captum")
    maps = truth["captum"][3]["maps"]
    expected = (~np.isfinite(maps.reshape(4, -1))).sum(axis=1).tolist()
    assert body["non_finite_per_sample"] == expected == [0, 1, 0, 2]
    assert body["non_finite"] == 3
    sent = decode(body["maps"])  # sent as stored, not cleaned
    assert np.isnan(sent[1, 0, 0, 0]) and np.isposinf(sent[3, 2, 1]).all()
    assert body["labels"] is None and body["predictions"] is None


def test_response_is_strict_json_and_compact(client):
    status, text, _ = get(client, "saliency", run="probe", tag="saliency/gradient")
    assert status == 200
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    # float16 in base64: about 2 × 4/3 bytes per value of inputs and maps, plus a small head.
    values = 2 * N * int(np.prod(SHAPE))
    assert len(text) < values * 2 * 4 / 3 + 1000


def test_a_listed_step_is_read_without_listing_again_and_a_failed_read_lists_anew(
    monkeypatch, written, truth
):
    monkeypatch.setattr(blob_steps, "LISTING_SECONDS", 3600.0)  # no listing ages in this test
    provider = _provider(written[0])
    client = plugin_routes._client(provider, {"deepscope": 0})
    get_json(client, "saliency_steps", run="probe", tag="saliency/gradient")
    listed = provider.listings
    body = get_json(client, "saliency", run="probe", tag="saliency/gradient", step=30)
    assert provider.listings == listed  # no second listing for a step already listed
    np.testing.assert_array_equal(decode(body["maps"]), truth["gradient"][30]["maps"])
    provider.fail_next_read = True
    body = get_json(client, "saliency", run="probe", tag="saliency/gradient", step=40)
    assert provider.listings == listed + 1  # the read failed: listed anew, then read
    np.testing.assert_array_equal(decode(body["maps"]), truth["gradient"][40]["maps"])
    status, _, _ = get(client, "saliency", run="probe", tag="saliency/gradient", step=15)
    assert status == 404 and provider.listings == listed + 2  # step 15 not listed: listed again
    get_json(client, "saliency", run="probe", tag="saliency/gradient")  # newest: remembered
    assert provider.listings == listed + 2


def test_a_listing_older_than_listing_seconds_is_listed_again(monkeypatch, written):
    monkeypatch.setattr(blob_steps, "LISTING_SECONDS", 0.0)
    provider = _provider(written[0])
    client = plugin_routes._client(provider, {"deepscope": 0})
    get_json(client, "saliency_steps", run="probe", tag="saliency/gradient")
    listed = provider.listings
    get_json(client, "saliency", run="probe", tag="saliency/gradient", step=30)
    assert provider.listings == listed + 1


def test_token_series_send_ids_texts_and_per_token_maps(client, truth):
    steps = get_json(client, "saliency_steps", run="probe", tag="text/ig")
    assert steps["input_kind"] == "tokens" and steps["input_shape"] == [4]
    assert steps["token_reduction"] == "sum over the embedding dim"
    assert steps["num_samples"] == 3 and steps["steps"] == [2]
    body = get_json(client, "saliency", run="probe", tag="text/ig", samples="2,0")
    want = truth["tokens"]
    assert body["input_kind"] == "tokens" and body["inputs"] is None
    assert body["token_ids"] == want["ids"][[2, 0]].tolist()
    assert body["token_texts"] == [want["texts"][8:12], want["texts"][0:4]]
    np.testing.assert_array_equal(decode(body["maps"]), want["maps"][[2, 0]])
    assert body["labels"] == [1, 1]
    image = get_json(client, "saliency", run="probe", tag="saliency/gradient")
    assert image["input_kind"] == "" and image["token_ids"] is None
    assert image["token_texts"] is None


def test_token_texts_that_do_not_match_the_ids_are_that_steps_error(client):
    body = get_json(client, "saliency", run="probe", tag="text/bad")
    assert "5 token texts for 3 × 4 token ids" in body["error"] and body["step"] == 2
    assert "maps" not in body and body["input_kind"] == "tokens"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("route", "query", "status", "words"),
    [
        ("saliency", {"run": "probe", "tag": "captum", "samples": "4"}, 400, "has 4 samples"),
        ("saliency", {"run": "probe", "tag": "captum", "samples": "a"}, 400, "like 0,3,5-9"),
        ("saliency", {"run": "probe", "tag": "captum", "samples": "3-1"}, 400, "like 0,3,5-9"),
        ("saliency", {"run": "probe", "tag": "captum", "samples": "0-99"}, 400, "more than 64"),
    ],
)
def test_bad_requests_say_what_to_do(client, route, query, status, words):
    got, body, _ = get(client, route, **query)
    assert got == status, body
    assert words in body


def test_more_bytes_than_a_response_sends_is_400(monkeypatch, client):
    monkeypatch.setattr(saliency_routes, "MAX_ARRAY_BYTES", 100)
    status, body, _ = get(client, "saliency", run="probe", tag="saliency/gradient", samples="0-1")
    assert status == 400 and "ask for fewer samples" in body


def test_parse_samples_bounds():
    assert saliency_routes.parse_samples(None, 40) == list(range(16))
    assert saliency_routes.parse_samples("", 3) == [0, 1, 2]
    assert saliency_routes.parse_samples("2, 0-1,2", 3) == [2, 0, 1]


# ---------------------------------------------------------------- real training


def test_series_written_by_training_are_served(saliency_logdir):
    client = _client(saliency_logdir, {"deepscope": 0})
    tags = get_json(client, "tags")
    series = {
        (run, tag): info
        for run, by_tag in tags.items()
        for tag, info in by_tag.items()
        if info["kind"] == "saliency"
    }
    assert {run for run, _ in series} == {"seed0", "seed1"}
    for (run, tag), info in series.items():
        steps = get_json(client, "saliency_steps", run=run, tag=tag)
        assert steps["method"] == info["method"] and steps["steps"]
        body = get_json(client, "saliency", run=run, tag=tag, step=steps["steps"][0])
        maps, inputs = decode(body["maps"]), decode(body["inputs"])
        assert maps.shape == inputs.shape == (len(body["samples"]), *steps["input_shape"])
        bad = (~np.isfinite(maps.reshape(len(maps), -1))).sum(axis=1)
        assert body["non_finite_per_sample"] == bad.tolist()
