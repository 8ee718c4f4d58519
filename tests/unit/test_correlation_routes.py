"""The correlation routes, served in-process from a data provider built as TensorBoard builds it.

The log dir is written by hand (CorrelationStep protos through a file writer), so
every number the routes return is checked against arrays this file made and
computed itself with numpy/scipy: decoding, block means, orders, matching.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from werkzeug import test as werkzeug_test

from deepscope.proto import deepscope_pb2 as pb
from tests.route_helpers import CountingProvider, decode
from tests.unit import test_plugin_routes as plugin_routes

WITHIN_STEPS = (0, 5, 10)
WITHIN_C = 300
DEAD = (5, 7)
CROSS_SHAPE = (12, 9)
WIDE_SHAPE = (1024, 2048)


def _f16(values: np.ndarray) -> pb.Array:
    values = np.asarray(values, dtype=np.float16)
    return pb.Array(shape=values.shape, dtype=pb.FLOAT16, data=values.astype("<f2").tobytes())


def _f32(values) -> pb.Array:
    values = np.asarray(values, dtype=np.float32)
    return pb.Array(shape=values.shape, dtype=pb.FLOAT32, data=values.astype("<f4").tobytes())


def _i32(values) -> pb.Array:
    values = np.asarray(values, dtype=np.int32)
    return pb.Array(shape=values.shape, dtype=pb.INT32, data=values.astype("<i4").tobytes())


def _uint8_linear(values: np.ndarray) -> tuple[pb.Array, np.ndarray]:
    q = np.rint((np.clip(values, -1, 1) + 1) * 127).astype(np.uint8)
    array = pb.Array(
        shape=values.shape, dtype=pb.UINT8_LINEAR, data=q.tobytes(), scale=1 / 127, offset=-1.0
    )
    return array, (np.float32(-1.0) + np.float32(1 / 127) * q).astype(np.float32)


def _stats(acts: np.ndarray, dead=()) -> pb.ChannelStats:
    return pb.ChannelStats(
        mean=_f32(acts.mean(0)),
        std=_f32(acts.std(0)),
        positive_fraction=_f32((acts > 0).mean(0)),
        dead=list(dead),
        non_finite=3,
    )


def _within(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Activations of 300 channels (two dead) in 4 latent groups, and their Pearson matrix."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(800, 4))
    acts = latent[:, rng.integers(0, 4, WITHIN_C)] + 0.5 * rng.normal(size=(800, WITHIN_C))
    acts[:, list(DEAD)] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.nan_to_num(np.corrcoef(acts, rowvar=False), nan=0.0)
    return acts, rho


def _cross() -> dict:
    """Net B's channels are net A's first 9, permuted, plus noise; A has 12 channels."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(600, CROSS_SHAPE[0]))
    perm = rng.permutation(CROSS_SHAPE[1])
    b = a[:, perm] + 0.2 * rng.normal(size=(600, CROSS_SHAPE[1]))
    rho = np.corrcoef(np.concatenate([a, b], 1), rowvar=False)[: CROSS_SHAPE[0], CROSS_SHAPE[0] :]
    stored, decoded = _uint8_linear(rho)
    rows, cols = linear_sum_assignment(decoded, maximize=True)
    semi_cols = decoded.argmax(axis=1)
    return {
        "a": a,
        "b": b,
        "perm": perm,
        "stored": stored,
        "decoded": decoded,
        "rows": rows,
        "cols": cols,
        "semi_cols": semi_cols,
        "semi_corr": decoded[np.arange(CROSS_SHAPE[0]), semi_cols],
        "bip_corr": decoded[rows, cols],
    }


def _write(writer, tag: str, step: int, message: pb.CorrelationStep, info: pb.CorrelationInfo):
    from deepscope.writer import summary

    plugin_data = pb.PluginData(kind=pb.CORRELATION, correlation=info) if step == 0 else None
    writer.file_writer.add_summary(
        summary.blob_sequence_summary(tag, [message.SerializeToString()], plugin_data),
        step,
        1000.0 + step,
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    from torch.utils.tensorboard import SummaryWriter as TorchSummaryWriter

    import deepscope

    logdir = tmp_path_factory.mktemp("correlation-routes")
    truth: dict = {"within": {}}
    writer = TorchSummaryWriter(str(logdir / "alpha"))
    within_info = pb.CorrelationInfo(cross=False, channel_dim=1, row_name="conv2")
    for step in WITHIN_STEPS:
        acts, rho = _within(step)
        message = pb.CorrelationStep(
            matrix=_f16(rho),
            samples=800,
            row_stats=_stats(acts, DEAD),
            redundant_fraction=0.25,
        )
        _write(writer, "within", step, message, within_info)
        truth["within"][step] = {
            "acts": acts,
            "matrix": np.asarray(rho, dtype=np.float16).astype(np.float32),
        }
    cross = _cross()
    message = pb.CorrelationStep(
        matrix=cross["stored"],
        samples=600,
        row_stats=_stats(cross["a"]),
        col_stats=_stats(cross["b"], dead=[2]),
        matching=pb.Matching(
            semi_cols=_i32(cross["semi_cols"]),
            semi_corr=_f32(cross["semi_corr"]),
            bipartite_rows=_i32(cross["rows"]),
            bipartite_cols=_i32(cross["cols"]),
            bipartite_corr=_f32(cross["bip_corr"]),
            semi_mean=float(cross["semi_corr"].mean()),
            bipartite_mean=float(cross["bip_corr"].mean()),
        ),
        redundant_fraction=float("nan"),
    )
    cross_info = pb.CorrelationInfo(cross=True, channel_dim=1, row_name="a", col_name="b")
    _write(writer, "cross", 0, message, cross_info)
    truth["cross"] = cross
    wide = np.random.default_rng(9).uniform(-1, 1, WIDE_SHAPE)
    wide_stored, truth["wide"] = _uint8_linear(wide)
    _write(writer, "wide", 0, pb.CorrelationStep(matrix=wide_stored, samples=1), cross_info)
    writer.close()
    ratios = deepscope.SummaryWriter(str(logdir / "alpha"))
    ratios.add_update_ratios("ratios", {"w": 1e-3}, global_step=0)
    ratios.close()
    truth["logdir"] = logdir
    return truth


@pytest.fixture(scope="module")
def provider(written) -> CountingProvider:
    return CountingProvider(plugin_routes._provider(written["logdir"]))


@pytest.fixture(scope="module")
def client(provider) -> werkzeug_test.Client:
    return plugin_routes._client(provider, {"deepscope": 0})


def get(client, route: str, **query):
    return plugin_routes.get(client, f"correlation_{route}", **query)[:2]


def get_json(client, route: str, **query) -> dict:
    return plugin_routes.get_json(client, f"correlation_{route}", **query)


def values_of(body: dict) -> np.ndarray:
    assert body["values"]["dtype"] == "float32"
    return decode(body["values"])


# --- steps -------------------------------------------------------------------------------------


def test_steps_lists_every_kept_step_with_the_series_facts(client):
    body = get_json(client, "steps", run="alpha", tag="within")
    assert body["steps"] == list(WITHIN_STEPS)
    assert body["wall_times"] == [1000.0 + s for s in WITHIN_STEPS]
    assert body["cross"] is False and body["row_name"] == "conv2"
    cross = get_json(client, "steps", run="alpha", tag="cross")
    assert cross["cross"] is True and (cross["row_name"], cross["col_name"]) == ("a", "b")


# --- matrix ------------------------------------------------------------------------------------


def test_matrix_at_full_resolution_is_the_stored_float16_matrix(client, written):
    body = get_json(client, "matrix", run="alpha", tag="within", step=5, size=WITHIN_C)
    assert body["step"] == 5 and body["shape"] == [WITHIN_C, WITHIN_C]
    assert body["reduction"] == "none" and body["block"] == [1, 1]
    np.testing.assert_array_equal(values_of(body), written["within"][5]["matrix"])
    assert body["row_order"] == list(range(WITHIN_C))


def test_matrix_defaults_to_the_latest_step(client, written):
    body = get_json(client, "matrix", run="alpha", tag="within", size=WITHIN_C)
    assert body["step"] == WITHIN_STEPS[-1]
    np.testing.assert_array_equal(values_of(body), written["within"][10]["matrix"])


@pytest.mark.parametrize("size", [64, 7])
def test_overview_is_block_means_of_the_stored_matrix(client, written, size):
    body = get_json(client, "matrix", run="alpha", tag="within", step=0, size=size)
    matrix = written["within"][0]["matrix"].astype(np.float64)
    block = -(-WITHIN_C // size)
    values = values_of(body)
    assert body["reduction"] == "mean" and body["block"] == [block, block]
    assert values.shape == (-(-WITHIN_C // block),) * 2
    for i, j in itertools.product(range(values.shape[0]), range(values.shape[1])):
        cell = matrix[i * block : (i + 1) * block, j * block : (j + 1) * block]
        assert values[i, j] == pytest.approx(cell.mean(), abs=1e-6)
    edges = body["row_edges"]
    assert edges[0] == 0 and edges[-1] == WITHIN_C and np.all(np.diff(edges)[:-1] == block)


def test_a_zoomed_window_is_full_resolution_in_the_requested_order(client, written):
    body = get_json(
        client,
        "matrix",
        run="alpha",
        tag="within",
        step=10,
        order="clustered",
        row_start=40,
        row_end=90,
        col_start=100,
        col_end=160,
    )
    order = np.array(body["row_order"])
    assert body["reduction"] == "none" and values_of(body).shape == (50, 60)
    expected = written["within"][10]["matrix"][np.ix_(order[40:90], order[100:160])]
    np.testing.assert_array_equal(values_of(body), expected)


def test_clustered_order_groups_channels_that_correlate(client, written):
    body = get_json(client, "matrix", run="alpha", tag="within", step=0, order="clustered")
    rows, cols = body["row_order"], body["col_order"]
    assert rows == cols and sorted(rows) == list(range(WITHIN_C))
    assert rows != list(range(WITHIN_C))
    # Neighbours in the clustered order correlate more than neighbours in the original one.
    m = np.abs(written["within"][0]["matrix"].astype(np.float64))
    along = np.mean([m[a, b] for a, b in zip(rows, rows[1:])])
    original = np.mean([m[a, a + 1] for a in range(WITHIN_C - 1)])
    assert along > original + 0.2


def test_matched_order_puts_a_recovered_permutation_on_the_diagonal(client, written):
    cross = written["cross"]
    body = get_json(client, "matrix", run="alpha", tag="cross", order="matched")
    rows, cols = np.array(body["row_order"]), np.array(body["col_order"])
    values = values_of(body)
    assert values.shape == CROSS_SHAPE and body["cross"] is True
    # B's channel k is A's channel perm[k]: the matching finds it, diagonal ρ ≈ 1.
    for p in range(CROSS_SHAPE[1]):
        assert cross["perm"][cols[p]] == rows[p]
        assert values[p, p] == cross["decoded"][rows[p], cols[p]]
        assert values[p, p] > 0.9
    np.testing.assert_array_equal(values, cross["decoded"][np.ix_(rows, cols)])
    assert body["col_dead"] == [2]


def test_matched_order_of_a_within_layer_series_is_400_saying_what_to_use(client):
    status, body = get(client, "matrix", run="alpha", tag="within", order="matched")
    assert status == 400 and "order=clustered" in body


def test_a_2048_channel_overview_stays_under_a_megabyte(client, written):
    response = client.get(
        "/data/plugin/deepscope/correlation_matrix",
        query_string={"run": "alpha", "tag": "wide"},
        headers={"Accept-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert len(response.get_data()) < 1_000_000
    body = json.loads(response.get_data(as_text=True))
    values = values_of(body)
    assert values.shape == (256, 256) and body["block"] == [4, 8]
    assert values[3, 5] == pytest.approx(written["wide"][12:16, 40:48].mean(), abs=1e-6)


def test_the_decoded_step_is_read_once_and_then_cached(client, provider):
    get_json(client, "matrix", run="alpha", tag="within", step=5)
    before = provider.blob_reads
    get_json(client, "matrix", run="alpha", tag="within", step=5, order="clustered")
    get_json(client, "channels", run="alpha", tag="within", step=5)
    assert provider.blob_reads == before


# --- matching and channels --------------------------------------------------------------------


def test_matching_gives_both_methods_and_their_sorted_curves(client, written):
    cross = written["cross"]
    body = get_json(client, "matching", run="alpha", tag="cross")
    assert body["semi"]["cols"] == cross["semi_cols"].tolist()
    np.testing.assert_allclose(body["semi"]["corr"], cross["semi_corr"], atol=1e-6)
    np.testing.assert_allclose(body["semi"]["sorted"], np.sort(cross["semi_corr"])[::-1], atol=1e-6)
    assert body["bipartite"]["rows"] == cross["rows"].tolist()
    assert body["bipartite"]["cols"] == cross["cols"].tolist()
    np.testing.assert_allclose(
        body["bipartite"]["sorted"], np.sort(cross["bip_corr"])[::-1], atol=1e-6
    )
    assert body["bipartite"]["mean"] == pytest.approx(cross["bip_corr"].mean(), abs=1e-6)
    # Semi-matching takes each row's best column, so it is at least the one-to-one pick.
    semi = np.array(body["semi"]["corr"])
    assert np.all(semi[body["bipartite"]["rows"]] >= np.array(body["bipartite"]["corr"]))


def test_matching_of_a_within_layer_series_is_400(client):
    status, body = get(client, "matching", run="alpha", tag="within")
    assert status == 400 and "cross-network" in body


def test_channels_give_the_logged_statistics_and_dead_channels(client, written):
    body = get_json(client, "channels", run="alpha", tag="within", step=10)
    acts = written["within"][10]["acts"]
    np.testing.assert_allclose(body["rows"]["mean"], acts.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(body["rows"]["std"], acts.std(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(body["rows"]["positive_fraction"], (acts > 0).mean(0), atol=1e-6)
    assert body["rows"]["dead"] == list(DEAD) and body["rows"]["non_finite"] == 3
    assert body["cols"] is None and body["samples"] == 800
    assert body["redundant_fraction"] == 0.25


def test_non_finite_numbers_are_null_in_strict_json(client):
    status, text = get(client, "channels", run="alpha", tag="cross")
    assert status == 200
    body = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert body["redundant_fraction"] is None
    assert body["cols"]["dead"] == [2] and len(body["cols"]["mean"]) == CROSS_SHAPE[1]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route, query, status, words",
    [
        ("matrix", {"run": "alpha", "tag": "within", "order": "x"}, 400, "clustered"),
        ("matrix", {"run": "alpha", "tag": "within", "size": 5000}, 400, "at most 1024"),
        ("matrix", {"run": "alpha", "tag": "within", "size": "big"}, 400, "integer"),
        ("matrix", {"run": "alpha", "tag": "within", "row_end": 301}, 400, "row_end <= 300"),
        ("matrix", {"run": "alpha", "tag": "within", "col_start": 9, "col_end": 9}, 400, "col"),
    ],
)
def test_bad_requests_say_what_to_do(client, route, query, status, words):
    code, body = get(client, route, **query)
    assert code == status, body
    assert words in body
