"""Each blob kind's decode validates what it decodes: hand-built damaged blobs are errors.

A damaged step must be that step's error (`StepError`, which the routes serve as
the step's `error`), never a wrong number nor an exception the route turns into
a 500. Each case is a payload a flipped byte, a truncated blob or another
writer could produce; a positive control shows the good payload decodes.
"""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin.blob_kind import StepError
from deepscope.tb_plugin.correlation_routes import decode_correlation_step
from deepscope.tb_plugin.saliency_routes import decode_saliency_step
from deepscope.tb_plugin.spectrum_routes import decode_spectrum_step

EPS16 = float(np.finfo(np.float16).eps)
EPS32 = float(np.finfo(np.float32).eps)

# --- saliency -----------------------------------------------------------------------------------

SALIENCY_INFO = pb.SaliencyInfo(method="gradient", input_shape=[1, 2, 2])


def _saliency(**parts) -> pb.SaliencyStep:
    shape = (3, 1, 2, 2)
    values = {
        "inputs": np.zeros(shape, np.float16),
        "maps": np.ones(shape, np.float16),
        "labels": np.array([0, 1, 2], np.int64),
        **parts,
    }
    message = pb.SaliencyStep()
    for name, array in values.items():
        if name == "token_texts":
            message.token_texts.extend(array)
        elif array is not None:
            getattr(message, name).CopyFrom(arrays.encode_array(np.asarray(array)))
    return message


def test_a_good_saliency_step_decodes():
    decoded = decode_saliency_step(_saliency().SerializeToString(), SALIENCY_INFO)
    assert decoded.num_samples == 3 and decoded.labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "parts, words",
    [
        ({"maps": np.float16(1.0)}, "both must be [samples, ...]"),  # 0-d maps (was a 500)
        ({"inputs": np.float16(1.0), "maps": np.float16(1.0)}, "both must be [samples, ...]"),
        ({"maps": np.ones((3, 1, 2, 3), np.float16)}, "do not match inputs"),
        (
            {"inputs": np.zeros((3, 1, 3, 3), np.float16), "maps": np.ones((3, 1, 3, 3))},
            "the series' samples are [1, 2, 2]",
        ),
        ({"labels": np.array([0, 1], np.int64)}, "labels holds 2 values for 3 samples"),
        ({"labels": np.array([0.5, 1, 2], np.float32)}, "not class indices"),
        ({"labels": np.array([-3, 0, 1], np.int64)}, "labels hold negative class indices (-3)"),
        ({"predictions": np.array([0, -1, 1], np.int64)}, "negative class indices (-1)"),
        ({"predictions": np.arange(4, dtype=np.int64)}, "predictions holds 4 values"),
        ({"completeness_error": np.zeros(2, np.float32)}, "completeness_error holds 2"),
        ({"baseline": np.zeros((2, 1, 2, 2), np.float16)}, "expected [1 or 3, ...]"),
        ({"baseline_maps": np.zeros((3, 2, 2), np.float16)}, "does not fit inputs"),
        ({"token_texts": ["a", "b"]}, "not token ids"),
    ],
)
def test_damaged_saliency_steps_say_what_is_wrong(parts, words):
    data = _saliency(**parts).SerializeToString()
    with pytest.raises(StepError) as caught:
        decode_saliency_step(data, SALIENCY_INFO)
    assert words in str(caught.value)


def test_token_steps_are_checked():
    info = pb.SaliencyInfo(method="ig", input_shape=[4], input_kind="tokens")
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)
    good = _saliency(inputs=ids, maps=np.ones((3, 4), np.float16), token_texts=list("abcdefghijkl"))
    decoded = decode_saliency_step(good.SerializeToString(), info)
    assert decoded.tokens and decoded.token_texts[4] == "e"
    short = _saliency(inputs=ids, maps=np.ones((3, 4), np.float16), token_texts=["a"] * 5)
    with pytest.raises(StepError, match="5 token texts for 3 × 4 token ids"):
        decode_saliency_step(short.SerializeToString(), info)
    cube = _saliency(inputs=ids.reshape(3, 2, 2), maps=np.ones((3, 2, 2), np.float16))
    with pytest.raises(StepError, match=r"token ids must be \[N, L\]"):
        decode_saliency_step(cube.SerializeToString(), pb.SaliencyInfo(method="ig"))


def test_truncated_and_garbage_saliency_blobs_are_step_errors():
    data = _saliency().SerializeToString()
    with pytest.raises(StepError):
        decode_saliency_step(data[: len(data) // 2], SALIENCY_INFO)
    with pytest.raises(StepError, match="not a readable saliency step"):
        decode_saliency_step(b"\xff\xff\xff garbage", SALIENCY_INFO)
    message = _saliency()
    message.maps.data = message.maps.data[:-2]  # a byte count that no longer fits the shape
    with pytest.raises(StepError, match="maps is malformed"):
        decode_saliency_step(message.SerializeToString(), SALIENCY_INFO)


# --- correlation --------------------------------------------------------------------------------

WITHIN = pb.CorrelationInfo(cross=False, channel_dim=1)
CROSS = pb.CorrelationInfo(cross=True, channel_dim=1)
RHO = np.array([[1.0, 0.5, -0.25], [0.5, 1.0, 0.0], [-0.25, 0.0, 1.0]])


def _stats(channels: int, dead=(), **override) -> pb.ChannelStats:
    columns = {
        "mean": np.zeros(channels, np.float32),
        "std": np.ones(channels, np.float32),
        "positive_fraction": np.full(channels, 0.5, np.float32),
        **override,
    }
    stats = pb.ChannelStats(dead=list(dead))
    for name in ("mean", "std", "positive_fraction"):
        getattr(stats, name).CopyFrom(arrays.encode_array(columns[name]))
    return stats


def _within(matrix=RHO, **fields) -> bytes:
    array = matrix if isinstance(matrix, pb.Array) else arrays.encode_array(matrix)
    message = pb.CorrelationStep(matrix=array, samples=50, row_stats=_stats(3))
    for name, value in fields.items():
        getattr(message, name).CopyFrom(value)
    return message.SerializeToString()


def _matching(**override) -> pb.Matching:
    parts = {
        "semi_cols": np.array([1, 0, 1], np.int32),
        "semi_corr": np.array([0.9, 0.8, 0.7], np.float32),
        "bipartite_rows": np.array([0, 1], np.int32),
        "bipartite_cols": np.array([1, 0], np.int32),
        "bipartite_corr": np.array([0.9, 0.8], np.float32),
        **override,
    }
    matching = pb.Matching(semi_mean=0.8, bipartite_mean=0.85)
    for name, values in parts.items():
        getattr(matching, name).CopyFrom(arrays.encode_array(values))
    return matching


def _cross(matching: pb.Matching | None = None, col_stats: pb.ChannelStats | None = None) -> bytes:
    rho = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], np.float16)  # 3 x 2
    message = pb.CorrelationStep(
        matrix=arrays.encode_array(rho),
        samples=50,
        row_stats=_stats(3),
        col_stats=col_stats or _stats(2),
        matching=matching or _matching(),
    )
    return message.SerializeToString()


def test_good_correlation_steps_decode():
    within = decode_correlation_step(_within(RHO.astype(np.float16)), WITHIN)
    np.testing.assert_array_equal(within.matrix, RHO.astype(np.float16).astype(np.float32))
    cross = decode_correlation_step(_cross(), CROSS)
    assert cross.matching.bipartite_cols.tolist() == [1, 0] and cross.col_stats.std.size == 2


def test_a_flipped_byte_that_makes_rho_107_is_the_steps_error():
    """Under --load_fast=true (no record checksums) a flipped byte served ρ = 107.3."""
    stored = arrays.encode_array(RHO.astype(np.float16))
    data = bytearray(stored.data)
    data[3] ^= 0x40  # one bit of the exponent of ρ[0, 1] = 0.5 (float16 0x3800 → 0x7800)
    assert np.frombuffer(bytes(data), np.float16)[1] == 32768
    stored.data = bytes(data)
    with pytest.raises(StepError, match=r"\|ρ\| = 32768.*beyond 1"):
        decode_correlation_step(_within(stored), WITHIN)


@pytest.mark.parametrize(
    "values, good",
    [
        (np.array([[1.0, -1.0], [-1.0, 1.0]], np.float16), True),
        (np.array([[1 + 4 * EPS32, 0.0], [0.0, 1.0]], np.float32), True),  # rounding
        (np.array([[1.0, 1 + 2 * EPS16], [1 + 2 * EPS16, 1.0]], np.float16), True),
        (np.array([[1.0, 1.001], [1.001, 1.0]], np.float32), False),
        (np.array([[1.0, np.inf], [np.inf, 1.0]], np.float16), False),
        (np.array([[1.0, np.nan], [np.nan, 1.0]], np.float16), True),  # undefined, not wrong
    ],
    ids=["f16-exact", "f32-rounding", "f16-rounding", "f32-beyond", "inf", "nan"],
)
def test_rho_may_exceed_one_by_rounding_of_its_dtype_only(values, good):
    message = pb.CorrelationStep(matrix=arrays.encode_array(values), samples=50)
    if good:
        decode_correlation_step(message.SerializeToString(), WITHIN)
    else:
        with pytest.raises(StepError, match="beyond 1"):
            decode_correlation_step(message.SerializeToString(), WITHIN)


def test_uint8_codes_beyond_254_are_beyond_one():
    def step(top: int) -> bytes:
        q = np.array([[254, 127], [127, top]], np.uint8)
        array = pb.Array(shape=[2, 2], dtype=pb.UINT8_LINEAR, data=q.tobytes())
        array.scale, array.offset = 1 / 127, -1.0
        return pb.CorrelationStep(matrix=array, samples=9).SerializeToString()

    assert decode_correlation_step(step(254), WITHIN).matrix[1, 1] == pytest.approx(1.0)
    with pytest.raises(StepError, match="beyond 1"):
        decode_correlation_step(step(255), WITHIN)


def _wrong_bytes(values: np.ndarray) -> pb.Array:
    array = arrays.encode_array(values)
    array.data = array.data[:-1]
    return array


@pytest.mark.parametrize(
    "stats, words",
    [
        (pb.ChannelStats(mean=_wrong_bytes(np.zeros(3, np.float32))), "unreadable row_stats.mean"),
        (_stats(3, std=np.ones(2, np.float32)), "row_stats.std holds 2 values for the matrix's 3"),
        (_stats(3, std=-np.ones(3, np.float32)), "negative standard deviations"),
        (_stats(3, positive_fraction=np.full(3, 1.5, np.float32)), "outside [0, 1]"),
        (_stats(3, dead=[1, 3]), "row_stats.dead names channel 3 of 3"),
    ],
    ids=["wrong-bytes", "wrong-size", "negative-std", "fraction", "dead-out-of-range"],
)
def test_damaged_channel_stats_are_the_steps_error(stats, words):
    """correlation_routes.py:70 answered 500 for wrong byte counts in channel stats."""
    message = pb.CorrelationStep(matrix=arrays.encode_array(RHO), samples=50, row_stats=stats)
    with pytest.raises(StepError) as caught:
        decode_correlation_step(message.SerializeToString(), WITHIN)
    assert words in str(caught.value)


def test_damaged_cross_col_stats_are_the_steps_error():
    with pytest.raises(StepError, match="col_stats.mean holds 3 values for the matrix's 2"):
        decode_correlation_step(_cross(col_stats=_stats(3)), CROSS)


@pytest.mark.parametrize(
    "override, words",
    [
        ({"semi_cols": np.array([1, 0], np.int32)}, "semi-matching holds 2 columns"),
        ({"semi_cols": np.array([1, 0, 2], np.int32)}, "semi_cols holds indices outside 0 to 1"),
        ({"bipartite_rows": np.array([0, 3], np.int32)}, "outside 0 to 2"),
        ({"bipartite_rows": np.array([0], np.int32)}, "the bipartite matching holds 1 rows"),
        ({"bipartite_cols": np.array([1, 1], np.int32)}, "uses a row or column twice"),
        ({"semi_corr": np.array([0.9, 107.3, 0.7], np.float32)}, "beyond 1"),
        ({"bipartite_rows": np.array([0.0, 1.0], np.float32)}, "not indices"),
    ],
)
def test_damaged_matchings_are_the_steps_error(override, words):
    with pytest.raises(StepError) as caught:
        decode_correlation_step(_cross(_matching(**override)), CROSS)
    assert words in str(caught.value)


def test_a_matching_with_wrong_byte_counts_is_the_steps_error():
    """correlation_routes.py:255 answered 500 for wrong byte counts in the matching."""
    matching = _matching()
    matching.semi_cols.data = matching.semi_cols.data[:-3]
    with pytest.raises(StepError, match="unreadable matching.semi_cols"):
        decode_correlation_step(_cross(matching), CROSS)


def test_other_damaged_correlation_steps():
    with pytest.raises(StepError, match="no matrix"):
        decode_correlation_step(pb.CorrelationStep(samples=3).SerializeToString(), WITHIN)
    with pytest.raises(StepError, match="must be square"):
        decode_correlation_step(_within(np.zeros((2, 3), np.float16)), WITHIN)
    with pytest.raises(StepError, match="not a readable CorrelationStep"):
        decode_correlation_step(b"\xff\xff\xff\xff", WITHIN)


# --- spectrum -----------------------------------------------------------------------------------

SPECTRUM_INFO = pb.SpectrumInfo(matrix_shape=[1, 3, 4])


def _spectrum(values, **metrics) -> bytes:
    step = pb.SpectrumStep(
        singular_values=arrays.encode_array(np.asarray(values, np.float32)),
        metrics=pb.SpectrumMetrics(spectral_norm=3.0, numerical_rank=3, **metrics),
    )
    return step.SerializeToString()


def test_good_spectrum_steps_decode():
    decoded = decode_spectrum_step(_spectrum([[3.0, 2.0, 0.5]]), SPECTRUM_INFO)
    assert decoded.error == "" and decoded.metrics["numerical_rank"] == 3
    failed = pb.SpectrumStep(
        singular_values=arrays.encode_array(np.full((1, 3), np.nan, np.float32)),
        error="non-finite weight",
    )
    assert decode_spectrum_step(failed.SerializeToString(), SPECTRUM_INFO).non_finite == 3
    unchanged = pb.SpectrumStep(unchanged=True, unchanged_since_step=4).SerializeToString()
    assert decode_spectrum_step(unchanged, SPECTRUM_INFO).unchanged_since == 4


@pytest.mark.parametrize(
    "data, words",
    [
        (_spectrum([[3.0, 2.0]]), "the series' matrices [1, 3, 4] have [1, 3]"),
        (_spectrum([[3.0, -2.0, 0.5]]), "negative singular values"),
        (_spectrum([[3.0, 0.5, 2.0]]), "do not descend"),
        (_spectrum([[3.0, np.nan, 2.0]]), "do not descend"),
        (_spectrum(np.ones((1, 1, 3))), "expected [groups, k]"),
        (_spectrum([[3.0, 2.0, 0.5]], num_above_mp_edge=2**40), "num_above_mp_edge"),
        (b"\x0a\xff\xff", "not a readable SpectrumStep"),
        (b"", "no singular values and no error"),
    ],
    ids=["shape", "negative", "unsorted", "nan-inside", "3d", "count", "garbage", "empty"],
)
def test_damaged_spectrum_steps_say_what_is_wrong(data, words):
    with pytest.raises(StepError) as caught:
        decode_spectrum_step(data, SPECTRUM_INFO)
    assert words in str(caught.value)
