"""Layer-statistics logs for the unit and integration tests of the routes.

`LOGGED`: the steps of a small series as a user logs them (row name →
{statistic: value, ...}): rows that appear late or are missing at a step,
an activation's NaN (not measured) and ±inf (measured), a parameter without a
gradient (None: not measured) and one with a NaN gradient norm (a non-finite
measurement), eigenvalues at some steps only.
`write_series(writer, tag)` logs them with `add_layer_statistics`;
`reference_table(statistic)`, `reference_not_measured(statistic)` and
`reference_step(step)` are what the routes must serve, built here from `LOGGED`
alone. `DAMAGED`: name → (a function tag → the `Summary` of one damaged event,
what the route's warning says about it).
`GOOD`: the rows the damaged runs log around it.
"""

from __future__ import annotations

import math

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import tensor_summary

NAN, INF = math.nan, math.inf
ACTIVATION_STATISTICS = (
    "mean",
    "std",
    "rms",
    "max_abs",
    "zero_fraction",
    "saturated_fraction",
    "non_finite_fraction",
    "dead_fraction",
    "effective_dimension",
    "saturation",
    "effective_rank",
)
PARAMETER_STATISTICS = ("grad_norm", "weight_norm", "grad_to_weight")
GRADIENT_STATISTICS = ("grad_norm", "grad_to_weight")


def _eigen(values) -> dict:
    """A covariance spectrum's entry: eigenvalues and the metrics computed from them."""
    lam = np.asarray(values, dtype=np.float64)
    p = lam / lam.sum()
    nonzero = p[p > 0]
    needed = int(np.searchsorted(np.cumsum(p), 0.99 - 1e-12) + 1)
    return {
        "eigenvalues": list(values),
        "effective_dimension": float(lam.sum() ** 2 / (lam**2).sum()),
        "saturation": min(needed, lam.size) / lam.size,
        "effective_rank": float(np.exp(-(nonzero * np.log(nonzero)).sum())),
    }


# (step, wall time, activations, parameters). "tanh" is a bounded activation (it
# has a saturated fraction); "fc" appears at step 10; "relu" is missing at step 20.
# Parameters: "conv.bias" has a zero weight at step 0 (an infinite ratio: undefined,
# served zero_weight, not counted non-finite);
# at step 10 "conv.weight" has a NaN gradient (non-finite, measured) and "fc.weight"
# no gradient (None: not measured; its weight norm is).
LOGGED = [
    (
        0,
        1000.0,
        {
            "conv": {
                "type": "Conv2d",
                "mean": 0.1,
                "std": 1.0,
                "rms": 1.005,
                "count": 4096,
                "channels": 4,
                "samples": 256,
                **_eigen([2.0, 1.0, 0.5, 0.5]),
            },
            "relu": {
                "type": "ReLU",
                "mean": 0.4,
                "std": 0.6,
                "zero_fraction": 0.5,
                "dead_fraction": 0.25,
                "count": 4096,
                "channels": 4,
                "dead_channels": 1,
            },
            "tanh": {
                "type": "Tanh",
                "mean": 0.0,
                "std": 0.7,
                "saturated_fraction": 0.125,
                "count": 4096,
                "channels": 4,
            },
        },
        {
            "conv.weight": {"grad_norm": 0.02, "weight_norm": 2.0, "grad_to_weight": 0.01},
            "conv.bias": {"grad_norm": 0.001, "weight_norm": 0.0, "grad_to_weight": INF},
        },
    ),
    (
        10,
        1010.5,
        {
            "conv": {
                "type": "Conv2d",
                "mean": 0.2,
                "std": 1.5,
                "rms": NAN,
                "count": 4096,
                "channels": 4,
            },
            "relu": {
                "type": "ReLU",
                "mean": 0.5,
                "std": 0.75,
                "zero_fraction": 0.625,
                "dead_fraction": 0.5,
                "count": 4096,
                "channels": 4,
                "dead_channels": 2,
            },
            "tanh": {
                "type": "Tanh",
                "mean": -0.25,
                "std": 0.9,
                "saturated_fraction": 0.5,
                "non_finite_fraction": 0.0,
                "count": 4096,
                "channels": 4,
            },
            "fc": {
                "type": "Linear",
                "mean": 0.0,
                "std": INF,
                "count": 32,
                "channels": 2,
                "samples": 16,
                **_eigen([3.0, 1.0]),
            },
        },
        {
            "conv.weight": {"grad_norm": NAN, "weight_norm": 2.5, "grad_to_weight": NAN},
            "fc.weight": {"grad_norm": None, "weight_norm": 1.0, "grad_to_weight": None},
        },
    ),
    (
        20,
        1020.25,
        {
            "conv": {
                "type": "Conv2d",
                "mean": 0.3,
                "std": 2.0,
                "rms": 2.02,
                "count": 4096,
                "channels": 4,
                "samples": 512,
                **_eigen([4.0, 0.5, 0.25, 0.0]),
            },
            "tanh": {
                "type": "Tanh",
                "mean": 0.5,
                "std": 0.95,
                "saturated_fraction": 0.75,
                "count": 4096,
                "channels": 4,
            },
            "fc": {
                "type": "Linear",
                "mean": -1.0,
                "std": 0.5,
                "count": 32,
                "channels": 2,
                "samples": 16,
                **_eigen([1.0, 1.0]),
            },
        },
        {
            "conv.weight": {"grad_norm": 0.04, "weight_norm": 3.0, "grad_to_weight": 0.0133},
            "fc.weight": {"grad_norm": 0.5, "weight_norm": 1.25, "grad_to_weight": 0.4},
        },
    ),
]

_EXTRAS = ("type", "count", "channels", "dead_channels", "samples", "eigenvalues")


def write_series(writer, tag: str, parts: str = "both") -> None:
    """Log `LOGGED` under `tag`: "both" parts in one step, or "activations"/"parameters" only."""
    for step, wall_time, activations, parameters in LOGGED:
        writer.add_layer_statistics(
            tag,
            activations if parts in ("both", "activations") else None,
            parameters if parts in ("both", "parameters") else None,
            global_step=step,
            walltime=wall_time,
            seconds=0.001 * (step + 1),
        )


def _part(statistic: str) -> int:
    return 3 if statistic in PARAMETER_STATISTICS else 2


def reference_table(statistic: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(names, types, float32 values [S, R] NaN where absent or not given, present [S, R])."""
    part = _part(statistic)
    names: list[str] = []
    types: list[str] = []
    for entry in LOGGED:
        for name, row in entry[part].items():
            if name not in names:
                names.append(name)
                types.append(row.get("type", ""))
    values = np.full((len(LOGGED), len(names)), np.nan, dtype=np.float32)
    present = np.zeros(values.shape, dtype=bool)
    for i, entry in enumerate(LOGGED):
        for name, row in entry[part].items():
            present[i, names.index(name)] = True
            values[i, names.index(name)] = _value(row, statistic)
    return names, types, values, present


def _value(row: dict, statistic: str) -> np.float32:
    """The logged value as float32; NaN where not given (absent or None)."""
    value = row.get(statistic)
    return np.float32(NAN if value is None else value)


def without_gradient(row: dict) -> bool:
    """A logged parameter row without a gradient: its gradient statistics all None."""
    return all(row.get(s) is None for s in GRADIENT_STATISTICS)


def reference_not_measured(statistic: str) -> np.ndarray:
    """bool [S, R]: where the table serves `statistic` as not measured (the schema's
    rule, from `LOGGED` alone): a row absent at a step; an activation statistic not
    given or NaN; a gradient statistic of a parameter without a gradient. A parameter's
    other NaN (a NaN gradient norm) is measured."""
    names, _, values, present = reference_table(statistic)
    if statistic not in PARAMETER_STATISTICS:
        return ~present | np.isnan(values)
    found = ~present
    if statistic in GRADIENT_STATISTICS:
        for i, entry in enumerate(LOGGED):
            for name, row in entry[3].items():
                found[i, names.index(name)] = without_gradient(row)
    return found


def reference_zero_weight(statistic: str) -> np.ndarray:
    """bool [S, R]: where the table marks `statistic` zero_weight: the ratio
    grad_to_weight of a parameter whose logged weight norm is exactly 0 (undefined,
    not a fault), unless not measured (no gradient). All False for other statistics."""
    names, _, _, _ = reference_table(statistic)
    found = np.zeros((len(LOGGED), len(names)), dtype=bool)
    if statistic != "grad_to_weight":
        return found
    not_measured = reference_not_measured(statistic)
    for i, entry in enumerate(LOGGED):
        for name, row in entry[3].items():
            found[i, names.index(name)] = row.get("weight_norm") == 0.0
    return found & ~not_measured


def statistics_given(part: int, entries=LOGGED) -> list[str]:
    """The columns `entries` give (the series' by default), in the canonical order: the
    builder's rule for a mapping."""
    known = ACTIVATION_STATISTICS if part == 2 else PARAMETER_STATISTICS
    given = {key for entry in entries for row in entry[part].values() for key in row}
    return [s for s in known if s in given]


def reference_step(index: int) -> dict:
    """What `layer_statistics_step` serves for `LOGGED[index]` (floats as float32)."""
    step, wall_time, activations, parameters = LOGGED[index]
    act_columns = statistics_given(2, [LOGGED[index]])
    param_columns = statistics_given(3, [LOGGED[index]])

    def matrix(rows, columns):
        return np.array(
            [[_value(row, c) for c in columns] for row in rows.values()], dtype=np.float32
        )

    return {
        "step": step,
        "wall_time": wall_time,
        "layers": list(activations),
        "types": [row["type"] for row in activations.values()],
        "activation_statistics": act_columns,
        "activations": matrix(activations, act_columns),
        "counts": [row.get("count", 0) for row in activations.values()],
        "channels": [row.get("channels", 0) for row in activations.values()],
        "dead_channels": [row.get("dead_channels", 0) for row in activations.values()],
        "eigenvalue_counts": [len(row.get("eigenvalues", ())) for row in activations.values()],
        "covariance_samples": [row.get("samples", 0) for row in activations.values()],
        "parameters": list(parameters),
        "parameter_statistics": param_columns,
        "parameter_values": matrix(parameters, param_columns),
        "without_gradient": [name for name, row in parameters.items() if without_gradient(row)],
    }


def reference_spectrum(layer: str) -> dict:
    """What `layer_statistics_spectrum` serves for `layer` (steps with eigenvalues only)."""
    found: dict = {
        "steps": [],
        "eigenvalues": [],
        "samples": [],
        "effective_dimension": [],
        "saturation": [],
        "effective_rank": [],
    }
    for step, _, activations, _ in LOGGED:
        row = activations.get(layer)
        if row is None or "eigenvalues" not in row:
            continue
        found["steps"].append(step)
        found["eigenvalues"].append(np.float32(row["eigenvalues"]))
        found["samples"].append(row.get("samples", 0))
        for key in ("effective_dimension", "saturation", "effective_rank"):
            found[key].append(np.float32(row[key]))
    return found


# --------------------------------------------------------------------------- damaged events

GOOD = {"conv": {"mean": 0.5, "std": 1.0}, "relu": {"mean": 0.25, "zero_fraction": 0.5}}


def _good_step() -> pb.LayerStatisticsStep:
    step = pb.LayerStatisticsStep(
        layers=["conv", "relu"],
        layer_types=["Conv2d", "ReLU"],
        activation_statistics=["mean", "zero_fraction"],
    )
    step.activations.CopyFrom(arrays.encode_array(np.float32([[0.5, 0.0], [0.25, 0.5]])))
    for field in ("counts", "channels", "dead_channels", "eigenvalue_counts", "covariance_samples"):
        getattr(step, field).CopyFrom(arrays.encode_array(np.array([4, 4], np.int64)))
    step.dead_channels.CopyFrom(arrays.encode_array(np.array([0, 1], np.int64)))
    step.eigenvalues.CopyFrom(arrays.encode_array(np.float32([3, 2, 1, 0, 4, 3, 2, 1])))
    return step


def _changed(change) -> bytes:
    step = _good_step()
    change(step)
    return step.SerializeToString()


def _payload(tag: str, payload: bytes) -> summary_pb2.Summary:
    return tensor_summary(tag, payload, None)


def _tensor(tag: str, tensor: tensor_pb2.TensorProto) -> summary_pb2.Summary:
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, tensor=tensor)])


def _float_scalar(tag: str) -> summary_pb2.Summary:
    return _tensor(
        tag,
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(),
            float_val=[1],
        ),
    )


def _set(field: str, values, dtype=None):
    def change(step):
        getattr(step, field).CopyFrom(arrays.encode_array(np.asarray(values, dtype=dtype)))

    return change


def _bytes_short(step):
    step.activations.data = step.activations.data[:-4]


def _no_statistics(step):
    del step.activation_statistics[:]


def _parameters_without_names(step):
    step.parameter_values.CopyFrom(arrays.encode_array(np.ones((1, 3), np.float32)))


def _with_parameters(without: list[int]):
    """Parameters "w" (no gradient: NaN grad_norm) and "b" (grad_norm 0.5), and the
    given `without_gradient` indices."""

    def change(step):
        step.parameters[:] = ["w", "b"]
        step.parameter_statistics[:] = ["grad_norm", "weight_norm"]
        values = np.float32([[NAN, 1.0], [0.5, 2.0]])
        step.parameter_values.CopyFrom(arrays.encode_array(values))
        step.without_gradient[:] = without

    return change


def _without_gradient_no_parameters(step):
    step.without_gradient[:] = [0]


# name → (the Summary of a damaged event of a tag, what the warning says about it).
DAMAGED = {
    "garbage": (lambda t: _payload(t, b"\xff\xff\xff\xff"), "does not parse"),
    "float tensor": (_float_scalar, "float32 tensor of shape []"),
    "no rows": (lambda t: _payload(t, b""), "the step has no rows"),
    "duplicate layers": (
        lambda t: _payload(t, _changed(lambda s: s.layers.__setitem__(1, "conv"))),
        "layer name 'conv' appears twice",
    ),
    "no statistics": (lambda t: _payload(t, _changed(_no_statistics)), "names no activation"),
    "activations short": (
        lambda t: _payload(t, _changed(_bytes_short)),
        "12 bytes for [2, 2] float32 values (needs 16)",
    ),
    "activations shape": (
        lambda t: _payload(t, _changed(_set("activations", np.ones((2, 3), np.float32)))),
        "activations of shape [2, 3] for 2 rows × 2 statistics",
    ),
    "int activations": (
        lambda t: _payload(t, _changed(_set("activations", [[1, 2], [3, 4]], np.int32))),
        "activations of dtype INT32",
    ),
    "fraction above 1": (
        lambda t: _payload(t, _changed(_set("activations", [[0.5, 0.0], [0.25, 1.5]], np.float32))),
        "zero_fraction 1.5 is not in [0, 1]",
    ),
    "dead over channels": (
        lambda t: _payload(t, _changed(_set("dead_channels", [0, 5], np.int64))),
        "layer 'relu' has 5 dead channels of 4",
    ),
    "counts length": (
        lambda t: _payload(t, _changed(_set("counts", [1, 2, 3], np.int64))),
        "counts of shape [3] for 2 layers",
    ),
    "negative samples": (
        lambda t: _payload(t, _changed(_set("covariance_samples", [1, -1], np.int64))),
        "covariance_samples: -1 is negative",
    ),
    "eigenvalue counts": (
        lambda t: _payload(t, _changed(_set("eigenvalue_counts", [4, 5], np.int64))),
        "eigenvalue counts add up to 9",
    ),
    "negative eigenvalue": (
        lambda t: _payload(t, _changed(_set("eigenvalues", [3, 2, 1, -1, 4, 3, 2, 1], np.float32))),
        "eigenvalue -1 is negative",
    ),
    "parameters without names": (
        lambda t: _payload(t, _changed(_parameters_without_names)),
        "parameter statistics but names no parameters",
    ),
    "without gradient out of range": (
        lambda t: _payload(t, _changed(_with_parameters([0, 2]))),
        "without_gradient index 2 is not a parameter (the step has 2 parameters)",
    ),
    "without gradient twice": (
        lambda t: _payload(t, _changed(_with_parameters([0, 0]))),
        "without_gradient lists parameter 'w' twice",
    ),
    "without gradient but measured": (
        lambda t: _payload(t, _changed(_with_parameters([0, 1]))),
        "parameter 'b' is listed without a gradient but has grad_norm 0.5",
    ),
    "without gradient, no parameters": (
        lambda t: _payload(t, _changed(_without_gradient_no_parameters)),
        "lists parameters without a gradient but names no parameters",
    ),
}
