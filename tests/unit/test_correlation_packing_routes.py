"""Compact correlation steps (upper triangle, uint8), the channel facts and max-|rho| overviews.

Steps are written by deepscope's own writer (packed and whole) and by hand
(damaged ones); what the routes serve is checked against numpy: corrcoef of
the activations, the upper triangle's symmetric completion, and a brute-force
max-|rho| reduction.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.correlation import encode_matrix, step_bytes, upper_triangle
from tests.route_helpers import decode
from tests.unit import test_plugin_routes as plugin_routes

CHANNELS = 40
SEQ_SHAPE = (6, 20, CHANNELS)  # (N, L, C): 120 samples
UINT8_HALF_STEP = 0.5 / 127  # the uint8 codec rounds rho to steps of 1/127


def _sequence_activations(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(*SEQ_SHAPE[:2], 5, generator=g)
    mix = torch.randn(5, CHANNELS, generator=g)
    return latent @ mix + 0.5 * torch.randn(*SEQ_SHAPE, generator=g)


def _reference(x: torch.Tensor) -> np.ndarray:
    return np.corrcoef(x.reshape(-1, x.shape[-1]).double().numpy(), rowvar=False)


def _hand_step(tag, writer, step, message: pb.CorrelationStep, info: pb.CorrelationInfo) -> None:
    from deepscope.writer import summary

    plugin_data = pb.PluginData(kind=pb.CORRELATION, correlation=info) if step == 0 else None
    writer.file_writer.add_summary(
        summary.blob_sequence_summary(tag, [message.SerializeToString()], plugin_data), step
    )


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict:
    import deepscope

    logdir = tmp_path_factory.mktemp("correlation-packing")
    x = _sequence_activations(0)
    few = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))  # 4 samples, 64 ch.
    with deepscope.SummaryWriter(str(logdir / "run")) as writer:
        writer.add_channel_correlation("full", x, global_step=0)
        for dtype in ("float16", "uint8"):
            writer.add_channel_correlation(
                f"packed_{dtype}", x, global_step=0, matrix_dtype=dtype, packing="upper_triangle"
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            writer.add_channel_correlation("few", few, global_step=0)
            writer.add_channel_correlation("few", few, global_step=1)  # warned once per tag
        assert [str(w.message) for w in caught if "4 samples for 64 channels" in str(w.message)]
        assert len(caught) == 1 and "rank at most 3" in str(caught[0].message)
        # damaged steps between good ones: each is its own step's error
        info = pb.CorrelationInfo(cross=False, channel_dim=2, row_name="seq")
        good, _ = encode_matrix(_reference(x), "float16", "upper_triangle")
        triangle = upper_triangle(_reference(x)).astype(np.float16)
        wrong = pb.Array(shape=[triangle.size - 1], dtype=pb.FLOAT16)
        wrong.data = triangle[:-1].tobytes()
        shapes = list(SEQ_SHAPE)
        steps = [
            pb.CorrelationStep(matrix=good, packing=pb.UPPER_TRIANGLE, activation_shape=shapes),
            pb.CorrelationStep(matrix=wrong, packing=pb.UPPER_TRIANGLE, activation_shape=shapes),
            pb.CorrelationStep(matrix=good, packing=7, activation_shape=shapes),
            pb.CorrelationStep(matrix=good, packing=pb.UPPER_TRIANGLE, activation_shape=[6, 41]),
            pb.CorrelationStep(matrix=good, packing=pb.UPPER_TRIANGLE, activation_shape=shapes),
        ]
        for step, message in enumerate(steps):
            message.samples = 120
            _hand_step("damaged", writer, step, message, info)
        cross_info = pb.CorrelationInfo(cross=True, channel_dim=2, row_name="a", col_name="b")
        _hand_step(
            "packed_cross",
            writer,
            0,
            pb.CorrelationStep(matrix=good, packing=pb.UPPER_TRIANGLE, samples=120),
            cross_info,
        )
    provider = plugin_routes._provider(logdir)
    return {"x": x, "few": few, "client": plugin_routes._client(provider, {"deepscope": 0})}


def _matrix(logged, tag: str, **query) -> tuple[dict, np.ndarray]:
    body = plugin_routes.get_json(
        logged["client"], "correlation_matrix", run="run", tag=tag, **query
    )
    return body, decode(body["values"])


def test_storage_cost_per_step():
    assert step_bytes(3072) == 3072 * 3072 * 2  # 18.9 MB: the README's figure
    assert step_bytes(3072) / 1e6 == pytest.approx(18.87, abs=0.01)
    compact = step_bytes(3072, "uint8", "upper_triangle")
    assert compact == 3072 * 3073 // 2 and step_bytes(3072) / compact == pytest.approx(4, rel=1e-3)


@pytest.mark.parametrize("dtype, atol", [("float16", 2e-3), ("uint8", UINT8_HALF_STEP + 1e-6)])
def test_packed_steps_round_trip_to_the_full_symmetric_matrix(logged, dtype, atol):
    body, values = _matrix(logged, f"packed_{dtype}", size=CHANNELS)
    _, full = _matrix(logged, "full", size=CHANNELS)
    assert values.shape == (CHANNELS, CHANNELS) and body["reduction"] == "none"
    np.testing.assert_array_equal(values, values.T)  # unpacked, not computed: exactly symmetric
    np.testing.assert_allclose(values, _reference(logged["x"]), rtol=0, atol=atol)
    if dtype == "float16":  # the same float16 cells as the whole matrix
        np.testing.assert_array_equal(values, full)


def test_packed_sizes_are_half_and_a_quarter(tmp_path):
    from deepscope.writer.correlation import channel_correlation_pb

    x = torch.randn(600, 256, generator=torch.Generator().manual_seed(2))

    def matrix_bytes(**options) -> int:
        summary = channel_correlation_pb("t", x, **options)
        step = pb.CorrelationStep.FromString(summary.value[0].tensor.string_val[0])
        return len(step.matrix.data)

    full = matrix_bytes()
    assert full == 256 * 256 * 2
    assert matrix_bytes(packing="upper_triangle") == 256 * 257
    assert matrix_bytes(packing="upper_triangle", matrix_dtype="uint8") == 256 * 257 // 2
    with pytest.raises(ValueError, match="within-layer"):
        channel_correlation_pb("t", x, other=x, packing="upper_triangle")
    with pytest.raises(ValueError, match="packing must be one of"):
        channel_correlation_pb("t", x, packing="lower")


def test_every_step_says_how_its_channels_were_read(logged):
    body, _ = _matrix(logged, "full")
    assert body["channel_dim"] == 2 and body["activation_shape"] == list(SEQ_SHAPE)
    assert body["samples"] == 120 and body["rank_deficient"] is False
    channels = plugin_routes.get_json(
        logged["client"], "correlation_channels", run="run", tag="full"
    )
    assert channels["activation_shape"] == list(SEQ_SHAPE) and channels["channel_dim"] == 2


def test_fewer_samples_than_channels_is_flagged(logged):
    body, values = _matrix(logged, "few", step=0)
    assert body["samples"] == 4 and body["shape"] == [64, 64]
    assert body["rank_deficient"] is True and body["activation_shape"] == [4, 64]
    # the matrix really is rank-deficient: rank <= samples - 1
    assert np.linalg.matrix_rank(values.astype(np.float64), tol=0.05) <= 3


@pytest.mark.parametrize(
    "step, words",
    [
        (1, "is no C(C+1)/2"),
        (2, "unknown matrix packing 7"),
        (3, "has no 40 channels at dim 2"),
    ],
)
def test_damaged_packed_steps_are_their_steps_error(logged, step, words):
    body = plugin_routes.get_json(
        logged["client"], "correlation_matrix", run="run", tag="damaged", step=step
    )
    assert words in body["error"] and body["step"] == step and "values" not in body
    for good in (0, 4):  # the rest of the series is served
        _, values = _matrix(logged, "damaged", step=good)
        np.testing.assert_allclose(values, _reference(logged["x"]), rtol=0, atol=2e-3)


def test_a_packed_cross_step_is_an_error_not_a_500(logged):
    body = plugin_routes.get_json(
        logged["client"], "correlation_matrix", run="run", tag="packed_cross"
    )
    assert "cross-network" in body["error"] and body["cross"] is True


def test_max_abs_overview_is_the_brute_force_reduction_of_the_stored_matrix(logged):
    _, full = _matrix(logged, "full", size=CHANNELS)
    body, values = _matrix(logged, "full", size=6, reduce="max_abs", order="clustered")
    assert body["reduce"] == "max_abs" and body["reduction"] == "max_abs"
    order = np.array(body["row_order"])
    ordered = full[np.ix_(order, order)]
    block = body["block"][0]
    assert block == 7 and values.shape == (6, 6)
    for i, j in itertools.product(range(6), range(6)):
        cell = ordered[i * block : (i + 1) * block, j * block : (j + 1) * block].ravel()
        largest = np.abs(cell).max()
        assert values[i, j] == cell[np.abs(cell) == largest].max()
    mean_body, means = _matrix(logged, "full", size=6, order="clustered")
    assert mean_body["reduce"] == "mean" and mean_body["reduction"] == "mean"
    assert (np.abs(values) >= np.abs(means) - 1e-6).all()
    status, text, _ = plugin_routes.get(
        logged["client"], "correlation_matrix", run="run", tag="full", reduce="median"
    )
    assert status == 400 and "max_abs" in text
