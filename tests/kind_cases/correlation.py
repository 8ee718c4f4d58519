"""Channel correlations' test cases (see tests/kind_cases/__init__.py): a blob kind."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from tests.damaged_logs import Good, mutated, rng

MAIN_ARRAY = "matrix"


def good(tag: str, step: int, cross: bool = False) -> Good:
    import torch

    from deepscope.writer.correlation import channel_correlation_pb

    generator = rng(tag, step)
    a = generator.standard_normal((64, 5))
    a[:, 1] += 0.8 * a[:, 0]  # one strongly correlated pair
    if cross:
        b = np.concatenate(
            [
                a[:, :3] + 0.3 * generator.standard_normal((64, 3)),
                generator.standard_normal((64, 1)),
            ],
            1,
        )
        from deepscope.analysis.channel_regression import channel_regression
        from deepscope.analysis.correlation import CorrelationAccumulator
        from deepscope.writer.correlation import cross_network_fit_pb

        accumulator = CorrelationAccumulator(1, 1)
        accumulator.update(
            torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32))
        )
        result = accumulator.compute()
        fit = cross_network_fit_pb(
            channel_regression(result.matrix, result.within_cols), cka=0.5, predictors=4
        )
        summary = channel_correlation_pb(tag, result, cross_network=fit)
        reference = np.corrcoef(a.T, b.T)[:5, 5:]
    else:
        packing = "upper_triangle" if "packed" in tag else "full"
        summary = channel_correlation_pb(
            tag, torch.from_numpy(a.astype(np.float32)), packing=packing
        )
        reference = np.corrcoef(a.T)
    return Good(summary, reference)


def damages() -> dict[str, Callable]:
    def rho_beyond_one(step):
        matrix = np.array(arrays.decode_array(step.matrix), dtype=np.float16)
        matrix[0, 1] = 1.5
        step.matrix.CopyFrom(arrays.encode_array(matrix))

    def matching_rho(step):
        corr = np.array(arrays.decode_array(step.matching.semi_corr), dtype=np.float32)
        corr[0] = 1.7
        step.matching.semi_corr.CopyFrom(arrays.encode_array(corr))

    def matching_index(step):
        for name in ("semi_cols", "bipartite_cols"):
            cols = np.array(arrays.decode_array(getattr(step.matching, name)), dtype=np.int32)
            cols[0] = 4 + 3  # the other side has 4 channels
            getattr(step.matching, name).CopyFrom(arrays.encode_array(cols))

    def stats_size(step):
        mean = np.array(arrays.decode_array(step.row_stats.mean), dtype=np.float32)
        step.row_stats.mean.CopyFrom(arrays.encode_array(mean[:-1]))

    def dead_beyond(step):
        step.row_stats.dead[:] = [5 + 5]  # the rows have 5 channels

    def packed_length(step):
        packed = np.array(arrays.decode_array(step.matrix))
        step.matrix.CopyFrom(arrays.encode_array(packed[:-1]))

    def fit_error_beyond_one(step):
        errors = np.array(arrays.decode_array(step.cross_network.l1_error), dtype=np.float32)
        errors[1] = 1.25
        step.cross_network.l1_error.CopyFrom(arrays.encode_array(errors))

    def fit_channels_beyond(step):
        counts = np.array(arrays.decode_array(step.cross_network.l1_channels), dtype=np.int32)
        counts[0] = 4 + 2  # the other side has 4 channels
        step.cross_network.l1_channels.CopyFrom(arrays.encode_array(counts))

    def fit_size(step):
        errors = np.array(arrays.decode_array(step.cross_network.least_squares_error))
        step.cross_network.least_squares_error.CopyFrom(arrays.encode_array(errors[:-1]))

    def fit_cka(step):
        step.cross_network.cka = 3.5

    return {
        "fit_error_out_of_range": mutated("correlation", fit_error_beyond_one),
        "fit_channels_out_of_range": mutated("correlation", fit_channels_beyond),
        "fit_size_mismatch": mutated("correlation", fit_size),
        "fit_cka_out_of_range": mutated("correlation", fit_cka),
        "rho_out_of_range": mutated("correlation", rho_beyond_one),
        "matching_rho_out_of_range": mutated("correlation", matching_rho),
        "dead_out_of_range": mutated("correlation", dead_beyond),
        "matching_index_out_of_range": mutated("correlation", matching_index),
        "stats_size_mismatch": mutated("correlation", stats_size),
        "packed_wrong_length": mutated("correlation", packed_length),
    }


STEP_ROUTES: dict[str, dict[str, dict]] = {
    "correlation_matrix": {
        "": {"size": 256},
        "clustered": {"order": "clustered"},
        "matched": {"order": "matched"},
        "max_abs": {"reduce": "max_abs", "size": 2},
        "window": {"row_start": 1, "row_end": 3, "col_start": 0, "col_end": 2},
    },
    "correlation_matching": {"": {}},
    "correlation_channels": {"": {}},
    "correlation_regression": {"": {}},
}
SERIES_ROUTES: dict[str, dict[str, Callable]] = {
    "correlation_steps": {"": lambda s: {"tag": s.tag}},
}


def possible_numbers(route: str, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    problems = []
    tol = 4 * fuzz.FLOAT16_EPS
    if route == "correlation_matrix" and "values" in body:
        values = fuzz.slot(body["values"]).astype(np.float64)
        if np.any(np.abs(values[np.isfinite(values)]) > 1 + tol):
            problems.append(f"|ρ| up to {np.nanmax(np.abs(values)):.4g} served without an error")
        rows, cols = body.get("shape", [0, 0])
        bad = [i for i in body.get("row_dead", []) if not 0 <= i < rows]
        bad += [i for i in body.get("col_dead", []) if not 0 <= i < cols]
        if bad:
            problems.append(f"dead channels {bad} outside the matrix {rows} x {cols}")
    if route == "correlation_matching" and "semi" in body:
        rows, cols = body.get("shape", [0, 0])
        for side in ("semi", "bipartite"):
            corr = np.array([fuzz.number(v) for v in body[side]["corr"]], dtype=np.float64)
            if np.any(np.abs(corr[np.isfinite(corr)]) > 1 + tol):
                problems.append(f"{side} matching |ρ| up to {np.nanmax(np.abs(corr)):.4g}")
            if any(not 0 <= c < cols for c in body[side]["cols"]):
                problems.append(f"{side} matching columns {body[side]['cols']} beyond {cols}")
            if any(not 0 <= r < rows for r in body[side]["rows"]):
                problems.append(f"{side} matching rows {body[side]['rows']} beyond {rows}")
    if route == "correlation_regression" and body.get("regression"):
        rows, cols = body.get("shape", [0, 0])
        for name in ("least_squares_error", "l1_error"):
            values = np.array([fuzz.number(v) for v in body[name]], dtype=np.float64)
            if len(values) != rows:
                problems.append(f"{name} of {len(values)} values for {rows} rows")
            if np.any(
                (values[np.isfinite(values)] < -tol) | (values[np.isfinite(values)] > 1 + tol)
            ):
                problems.append(f"{name} outside [0, 1] served without an error")
        if any(not 0 <= n <= cols for n in body["l1_channels"]):
            problems.append(f"l1_channels {body['l1_channels']} beyond {cols} channels")
        cka = fuzz.number(body["cka"])
        if np.isfinite(cka) and not -tol <= cka <= 1 + tol:
            problems.append(f"cka {cka} outside [0, 1]")
    if route == "correlation_channels" and "rows" in body:
        for side in ("rows", "cols"):
            stats = body.get(side)
            if not stats:
                continue
            channels = stats["channels"]
            if any(not 0 <= i < channels for i in stats["dead"]):
                problems.append(f"{side} dead channels {stats['dead']} beyond {channels}")
            for name in ("mean", "std", "positive_fraction"):
                if stats[name] and len(stats[name]) != channels:
                    problems.append(f"{side} {name} of {len(stats[name])} values for {channels}")
    return problems


def good_values(series, route: str, step: int, body: dict) -> list[str]:
    from tests import damaged_fuzz as fuzz

    want = series.good[step]
    found = None
    if route == "correlation_matrix":
        found = fuzz.close(fuzz.slot(body["values"]), want, 2 * fuzz.FLOAT16_EPS)
    elif route == "correlation_matching":
        semi = [fuzz.number(v) for v in body["semi"]["corr"]]
        found = fuzz.close(semi, want.max(axis=1), 2 * fuzz.FLOAT16_EPS)
    elif route == "correlation_regression":
        if not series.cross:
            if body["available"] is not False:
                found = "a within-layer step served a regression"
        elif len(body["least_squares_error"]) != want.shape[0]:
            found = f"{len(body['least_squares_error'])} errors, written {want.shape[0]} rows"
        elif abs(fuzz.number(body["cka"]) - 0.5) > fuzz.FLOAT16_EPS:
            found = f"cka {body['cka']}, written 0.5"
    elif route == "correlation_channels":
        if body["rows"]["channels"] != want.shape[0]:
            found = f"{body['rows']['channels']} row channels, written {want.shape[0]}"
    return [] if found is None else [found]


def example() -> tuple[pb.CorrelationInfo, pb.CorrelationStep]:
    """A good step for tests/unit/test_blob_steps.py."""
    rho = np.array([[1.0, 0.5, -0.25], [0.5, 1.0, 0.0], [-0.25, 0.0, 1.0]], np.float16)
    info = pb.CorrelationInfo(cross=False, channel_dim=1, row_name="layer")
    return info, pb.CorrelationStep(matrix=arrays.encode_array(rho), samples=100)
