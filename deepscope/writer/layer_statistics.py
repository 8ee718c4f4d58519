"""Layer-statistics summaries: activations, gradients and weights of every layer at one step.

One step of a layer-statistics series holds two optional parts (a step may
carry either or both):

- **activations**, one row per module output tensor ("<module>" or
  "<module>:<key>"), in forward order: its statistics by column name
  (`ACTIVATION_STATISTICS`: mean, std, rms, max |a|, the fractions zero,
  saturated, non-finite and dead, and the covariance metrics effective
  dimension, delve saturation and effective rank), the elements counted, its
  channels and dead channels, and optionally its channel-covariance
  eigenvalues (descending) with the samples the covariance used;
- **parameters**, one row per parameter, in `named_parameters()` order:
  `PARAMETER_STATISTICS` (gradient norm, weight norm, their ratio), and which
  parameters had no gradient at this step (`without_gradient`): their gradient
  statistics are NaN and mean "not measured", while a NaN gradient norm or
  ratio of any other parameter is a non-finite gradient (numerical trouble),
  except the ratio of a weight norm exactly 0 (a fresh bias: inf, or NaN with
  a zero gradient), which is undefined, not trouble: the reader tells it from
  the weight norm (the `layer_statistics` route marks it `zero_weight`).

A series is a tensor series (a `LayerStatisticsStep` per event, read whole):
its metadata (`LayerStatisticsInfo`: what the model saw, "train" or "probe";
delve saturation's variance threshold; the saturation tolerance) is on the
tag's first event. NaN in an activation statistic means "not measured for this row at this
step" (a module that is not a bounded activation has no saturated fraction, a
row without a covariance no effective dimension); non-finite elements of an
activation are counted in `non_finite_fraction`, its other statistics are of
the finite values. Storage: 4 bytes per statistic and 8 per row for each of counts,
channels, dead channels, eigenvalue counts and covariance samples (each left
out at a step where it is zero for every row), plus the names and types (each
its length and 2 bytes) and 4 bytes per eigenvalue: 200 rows × 11 statistics
with names of ~20 characters, counts and channels is about 18 kB a step without
eigenvalues; 200 parameters with their 3 norms about 8 kB.

Two ways in:

- `ActivationRows` and `ParameterRows`, what a measurer fills: arrays (numpy
  or torch tensors, on any device) of all rows at once. Tensors are copied to
  the host together, one copy per device, never one `.item()` per value;
- plain mappings for users: `{"fc1": {"mean": 0.1, "std": 1.0, "count": 4096}}`
  and `{"fc1.weight": {"grad_norm": 0.02, "weight_norm": 3.1}}`, where a
  parameter without a gradient gives its gradient statistics as None
  (`{"fc2.bias": {"grad_norm": None, "weight_norm": 0.4}}`) and a NaN is a
  NaN measurement (`activation_rows_from_mapping`, `parameter_rows_from_mapping`).

torch is imported only when a value is a tensor (torch is then imported already).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import sys
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from tensorboard.compat.proto import summary_pb2

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import tensor_summary

# Column names of the activation part, in the order the builder stores them.
ACTIVATION_STATISTICS: tuple[str, ...] = (
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
# Column names of the parameter part.
PARAMETER_STATISTICS: tuple[str, ...] = ("grad_norm", "weight_norm", "grad_to_weight")
# The parameter statistics a parameter without a gradient has none of (stored NaN).
GRADIENT_STATISTICS: tuple[str, ...] = ("grad_norm", "grad_to_weight")
# What the model saw: the measured training step's own batch, or a fixed probe batch.
ON = ("train", "probe")
# delve saturation: the fraction of eigendirections explaining this much of the variance.
DEFAULT_VARIANCE_THRESHOLD = 0.99
# A bounded activation's output within this fraction of its range of a bound is
# saturated (deepscope.analysis.layer_statistics' rule: 0.01 is |tanh| >= 0.98).
DEFAULT_SATURATION_TOLERANCE = 0.01
# Keys of a layer's mapping that are not statistics (`activation_rows_from_mapping`).
_ACTIVATION_EXTRAS = ("type", "count", "channels", "dead_channels", "eigenvalues", "samples")


@dataclasses.dataclass
class ActivationRows:
    """The activation part of one step: L rows (module outputs), A statistics.

    Attributes:
      names: L unique, non-empty row names, in forward order ("<module>" or
        "<module>:<key>").
      values: [L, A] statistics (numpy array or tensor, any float dtype; stored
        as float32). NaN: not measured for that row at this step.
      statistics: the A column names, each one of `ACTIVATION_STATISTICS`;
        all of them, in that order, by default.
      types: L module class names ("ReLU", "Conv2d"); empty strings by default.
      counts: [L] elements counted per row (integers ≥ 0); 0 by default.
      channels: [L] channels per row; 0 (unknown) by default.
      dead_channels: [L] channels zero on every sample of the batch, ≤ channels.
      eigenvalues: None, or L entries, each None (no covariance for that row at
        this step) or a 1-D array of the row's channel-covariance eigenvalues
        (descending, ≥ 0; stored as float32).
      covariance_samples: [L] samples (positions) each covariance used; 0 by default.
    """

    names: Sequence[str]
    values: object
    statistics: Sequence[str] = ACTIVATION_STATISTICS
    types: Sequence[str] | None = None
    counts: object = None
    channels: object = None
    dead_channels: object = None
    eigenvalues: Sequence[object | None] | None = None
    covariance_samples: object = None


@dataclasses.dataclass
class ParameterRows:
    """The parameter part of one step: P rows (parameters), B statistics.

    Attributes:
      names: P unique, non-empty parameter names, in `named_parameters()` order.
      values: [P, B] statistics (numpy array or tensor; stored as float32), as
        measured: a NaN or ±inf of a parameter with a gradient is a non-finite
        measurement (a NaN gradient is numerical trouble, shown as such).
      statistics: the B column names, each one of `PARAMETER_STATISTICS`; all
        three by default.
      without_gradient: the parameters that had no gradient at this step
        (`.grad` None: frozen, or not used by this step's loss), as indices
        into `names` or as names, each once; none by default. Their gradient
        statistics (`GRADIENT_STATISTICS`) must be NaN in `values` (not
        measured); their weight norm is measured as any other's.
    """

    names: Sequence[str]
    values: object
    statistics: Sequence[str] = PARAMETER_STATISTICS
    without_gradient: Sequence[int | str] = ()


def layer_statistics_info(
    on: str = "train",
    variance_threshold: float = DEFAULT_VARIANCE_THRESHOLD,
    saturation_tolerance: float = DEFAULT_SATURATION_TOLERANCE,
) -> pb.PluginData:
    """The series' `PluginData`: what the model saw and the two thresholds.

    Raises:
      ValueError: `on` is not "train" or "probe"; the threshold is not in
        (0, 1]; the tolerance is negative or not finite.
    """
    if on not in ON:
        raise ValueError(
            f"on must be 'train' (the measured training step's batch) or 'probe' (a fixed "
            f"batch in eval mode), got {on!r}"
        )
    threshold = _real(variance_threshold, "variance_threshold")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(
            f"variance_threshold must be in (0, 1] (a fraction of the variance, e.g. 0.99), "
            f"got {variance_threshold!r}"
        )
    tolerance = _real(saturation_tolerance, "saturation_tolerance")
    if not (math.isfinite(tolerance) and tolerance >= 0.0):
        raise ValueError(
            f"saturation_tolerance must be a finite number >= 0 (e.g. 0.01), "
            f"got {saturation_tolerance!r}"
        )
    return pb.PluginData(
        kind=pb.LAYER_STATISTICS,
        layer_statistics=pb.LayerStatisticsInfo(
            on=on, variance_threshold=threshold, saturation_tolerance=tolerance
        ),
    )


def _real(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- host copies


def _to_host(values: list[object]) -> list[object]:
    """`values` with every torch tensor replaced by a numpy array: one host copy per device.

    The tensors of one device are flattened to float64 (exact for float32,
    float16, bfloat16 and integers below 2**53), concatenated and copied
    together, then split back into their shapes. Other values are unchanged.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return values
    by_device: dict[object, list[int]] = {}
    for i, value in enumerate(values):
        if isinstance(value, torch.Tensor):
            by_device.setdefault(value.device, []).append(i)
    if not by_device:
        return values
    result = list(values)
    with torch.no_grad():
        for indices in by_device.values():
            tensors = [values[i] for i in indices]
            for tensor in tensors:
                if tensor.is_complex():
                    raise TypeError(
                        f"statistics must be real numbers, got a tensor of dtype {tensor.dtype}"
                    )
            flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
            host = flat.cpu().numpy()
            offset = 0
            for i, tensor in zip(indices, tensors):
                n = tensor.numel()
                result[i] = host[offset : offset + n].reshape(tuple(tensor.shape))
                offset += n
    return result


# --------------------------------------------------------------------------- checks


def _check_names(names: Sequence[str], what: str) -> list[str]:
    if isinstance(names, str):
        raise TypeError(f"{what} names must be a sequence of strings, got the string {names!r}")
    names = list(names)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what} names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        repeated = next(name for name in names if name in seen or seen.add(name))
        raise ValueError(f"{what} name {repeated!r} appears twice; each row needs its own name")
    return names


def _check_statistics(statistics: Sequence[str], known: tuple[str, ...], part: str) -> list[str]:
    if isinstance(statistics, str):
        statistics = [statistics]
    statistics = list(statistics)
    if not statistics:
        raise ValueError(f"{part} statistics must name at least one column of {list(known)}")
    for name in statistics:
        if name not in known:
            raise ValueError(
                f"unknown {part} statistic {name!r}{_did_you_mean(name, known)}; the known "
                f"ones: {', '.join(known)}"
            )
    if len(set(statistics)) != len(statistics):
        raise ValueError(f"{part} statistics name a column twice: {statistics}")
    return statistics


def _did_you_mean(name: object, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), known, n=3)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _float_matrix(values, rows: int, columns: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be real numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # beyond float32 is stored as ±inf, as measured
        array = array.astype(np.float32)
    if array.shape != (rows, columns):
        raise ValueError(
            f"{what} must have shape [{rows}, {columns}] (rows × statistics), "
            f"got {list(array.shape)}"
        )
    return array


def _count_vector(values, rows: int, what: str) -> np.ndarray:
    if values is None:
        return np.zeros(rows, dtype=np.int64)
    array = np.asarray(values)
    if array.shape != (rows,):
        raise ValueError(f"{what} must have shape [{rows}] (one per row), got {list(array.shape)}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{what} must be whole numbers, got {array.tolist()[:8]}")
    elif array.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers, got dtype {array.dtype}")
    if np.any(array < 0):
        raise ValueError(f"{what} must be >= 0, got {array.tolist()[:8]}")
    return array.astype(np.int64)


def _eigenvalue_arrays(eigenvalues, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat float32 eigenvalues, int64 counts [rows]) of L entries (None or 1-D)."""
    if eigenvalues is None:
        return np.zeros(0, dtype=np.float32), np.zeros(rows, dtype=np.int64)
    entries = list(eigenvalues)
    if len(entries) != rows:
        raise ValueError(
            f"eigenvalues must have one entry per row ({rows}; None for a row without a "
            f"covariance), got {len(entries)}"
        )
    parts = []
    counts = np.zeros(rows, dtype=np.int64)
    for i, entry in enumerate(entries):
        if entry is None:
            continue
        array = np.asarray(entry)
        if array.ndim != 1 or array.dtype.kind not in "fiu":
            raise ValueError(
                f"eigenvalues of row {i} must be a 1-D array of real numbers, "
                f"got shape {list(array.shape)} and dtype {array.dtype}"
            )
        array = array.astype(np.float32)
        finite = array[np.isfinite(array)]
        if np.any(finite < 0):
            raise ValueError(
                f"eigenvalues of row {i} must be >= 0 (a covariance's; clip rounding "
                f"below 0 first), got {float(finite.min())}"
            )
        parts.append(array)
        counts[i] = array.size
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return flat, counts


# --------------------------------------------------------------------------- mappings


def _number(value, where: str) -> float:
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if value is None:
        return math.nan
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "fiu":
        return float(value.reshape(()))
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    shown = repr(value)
    raise TypeError(
        f"{where} must be a number, a one-element tensor or None (not measured), got "
        + (shown if len(shown) <= 80 else shown[:77] + "...")
    )


def _host_mapping(rows: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, object]]:
    """`rows` with every tensor value copied to the host (numpy), one copy per device."""
    torch = sys.modules.get("torch")
    copied = {name: dict(stats) for name, stats in rows.items()}
    if torch is None:
        return copied
    where = [
        (name, key)
        for name, stats in copied.items()
        for key, value in stats.items()
        if isinstance(value, torch.Tensor)
    ]
    if where:
        host = _to_host([copied[name][key] for name, key in where])
        for (name, key), value in zip(where, host):
            copied[name][key] = value
    return copied


def _rows_from_mapping(
    rows: Mapping[str, Mapping[str, object]],
    known: tuple[str, ...],
    extras: tuple[str, ...],
    part: str,
) -> tuple[list[str], list[str], np.ndarray, dict[str, list[object]]]:
    """(names, statistics, float32 values [R, S], extras by key → per-row values)."""
    if not isinstance(rows, Mapping) or not rows:
        example = (
            '{"fc1": {"mean": 0.1, "std": 1.0}}'
            if part == "activation"
            else '{"fc1.weight": {"grad_norm": 0.02, "weight_norm": 3.1}}'
        )
        raise ValueError(
            f"{part}s must be a non-empty mapping of row name to its statistics, e.g. {example}"
        )
    names = _check_names(list(rows), part)
    given: set[str] = set()
    for name, stats in rows.items():
        if not isinstance(stats, Mapping):
            raise TypeError(
                f"{part} {name!r}: its statistics must be a mapping of statistic name to "
                f"number, got {type(stats).__name__}"
            )
        for key in stats:
            if key in known:
                given.add(key)
            elif key not in extras:
                also = f" (and {', '.join(extras)})" if extras else ""
                raise ValueError(
                    f"{part} {name!r}: unknown statistic {key!r}{_did_you_mean(key, known)}; "
                    f"the known ones: {', '.join(known)}{also}"
                )
    statistics = [s for s in known if s in given]
    if not statistics:
        raise ValueError(f"the {part}s give no statistic; the known ones: {', '.join(known)}")
    column = {s: j for j, s in enumerate(statistics)}
    rows = _host_mapping(rows)
    values = np.full((len(names), len(statistics)), np.nan, dtype=np.float64)
    found_extras: dict[str, list[object]] = {key: [None] * len(names) for key in extras}
    for i, (name, stats) in enumerate(rows.items()):
        for key, value in stats.items():
            if key in found_extras:
                found_extras[key][i] = value
            else:
                values[i, column[key]] = _number(value, f"{part} {name!r}, {key}")
    with np.errstate(over="ignore"):
        return names, statistics, values.astype(np.float32), found_extras


def activation_rows_from_mapping(activations: Mapping[str, Mapping[str, object]]) -> ActivationRows:
    """`ActivationRows` of a user's mapping: row name → {statistic: value, ...}.

    A row's mapping holds statistics (`ACTIVATION_STATISTICS`; those no row
    gives are left out, those a row leaves out are NaN) and optionally
    "type" (module class name), "count", "channels", "dead_channels",
    "eigenvalues" (1-D, descending) and "samples" (the covariance's).

    Raises:
      ValueError: an empty mapping, an unknown key (the message lists the
        known ones), an empty name.
      TypeError: a value that is not a number (the message names its row).
    """
    names, statistics, values, extras = _rows_from_mapping(
        activations, ACTIVATION_STATISTICS, _ACTIVATION_EXTRAS, "activation"
    )
    types = []
    for name, kind in zip(names, extras["type"]):
        if kind is not None and not isinstance(kind, str):
            raise TypeError(f"activation {name!r}: type must be a module class name, got {kind!r}")
        types.append(kind or "")

    def integers(key: str) -> np.ndarray | None:
        given = extras[key]
        if all(v is None for v in given):
            return None
        found = np.zeros(len(names), dtype=np.float64)
        for i, value in enumerate(given):
            if value is not None:
                found[i] = _number(value, f"activation {names[i]!r}, {key}")
        return found

    eigenvalues = extras["eigenvalues"]
    return ActivationRows(
        names=names,
        values=values,
        statistics=statistics,
        types=types,
        counts=integers("count"),
        channels=integers("channels"),
        dead_channels=integers("dead_channels"),
        eigenvalues=None if all(e is None for e in eigenvalues) else eigenvalues,
        covariance_samples=integers("samples"),
    )


def parameter_rows_from_mapping(parameters: Mapping[str, Mapping[str, object]]) -> ParameterRows:
    """`ParameterRows` of a user's mapping: parameter name → {statistic: value, ...}
    (`PARAMETER_STATISTICS`; those no row gives are left out).

    A parameter without a gradient at this step gives its gradient statistics
    (grad_norm, grad_to_weight) as None, or leaves them out: it is listed in
    `without_gradient` and they are stored NaN, "not measured". A float NaN is
    a measurement (a non-finite gradient). Every row gives every column the
    part has otherwise: a parameter with a gradient all its gradient
    statistics, and each its weight norm (a NaN there is a NaN weight).

    Raises:
      ValueError, TypeError: as `activation_rows_from_mapping`; a row that gives
        some gradient statistics but not the others, or no weight norm.
    """
    names, statistics, values, _ = _rows_from_mapping(
        parameters, PARAMETER_STATISTICS, (), "parameter"
    )
    gradient = [s for s in statistics if s in GRADIENT_STATISTICS]
    without = []
    for i, (name, stats) in enumerate(parameters.items()):
        missing = [s for s in statistics if stats.get(s) is None]
        if "weight_norm" in missing:
            raise ValueError(
                f"parameter {name!r} gives no weight_norm, which other parameters give: a "
                "weight norm is measured for every parameter (NaN if the weight is NaN)"
            )
        if gradient and all(s in missing for s in gradient):
            without.append(i)
        elif missing:
            given = [s for s in gradient if s not in missing]
            raise ValueError(
                f"parameter {name!r} gives {', '.join(given)} but not {', '.join(missing)}: "
                "a parameter with a gradient needs every gradient statistic the step logs, "
                "and one without a gradient gives them all as None"
            )
    return ParameterRows(
        names=names, values=values, statistics=statistics, without_gradient=without
    )


# --------------------------------------------------------------------------- the step


def layer_statistics_step(
    activations: ActivationRows | Mapping | None = None,
    parameters: ParameterRows | Mapping | None = None,
    seconds: float = 0.0,
) -> pb.LayerStatisticsStep:
    """One step's `LayerStatisticsStep` of either part or both.

    Raises:
      ValueError: neither part; names empty or repeated; an unknown statistic
        (the message lists the known ones); arrays of the wrong shape;
        negative counts, more dead channels than channels, negative eigenvalues.
      TypeError: values that are not real numbers.
    """
    if activations is None and parameters is None:
        raise ValueError(
            "a layer-statistics step needs activations, parameters or both, e.g. "
            'activations={"fc1": {"mean": 0.1, "std": 1.0}}'
        )
    seconds = _real(seconds, "seconds")
    if not (math.isfinite(seconds) and seconds >= 0.0):
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    step = pb.LayerStatisticsStep(seconds=seconds)
    if activations is not None:
        if isinstance(activations, Mapping):
            activations = activation_rows_from_mapping(activations)
        elif not isinstance(activations, ActivationRows):
            raise TypeError(
                "activations must be ActivationRows or a mapping of row name to statistics, "
                f"got {type(activations).__name__}"
            )
        _fill_activations(step, activations)
    if parameters is not None:
        if isinstance(parameters, Mapping):
            parameters = parameter_rows_from_mapping(parameters)
        elif not isinstance(parameters, ParameterRows):
            raise TypeError(
                "parameters must be ParameterRows or a mapping of parameter name to statistics, "
                f"got {type(parameters).__name__}"
            )
        _fill_parameters(step, parameters)
    return step


def _fill_activations(step: pb.LayerStatisticsStep, rows: ActivationRows) -> None:
    names = _check_names(rows.names, "activation")
    if not names:
        raise ValueError("activations need at least one row")
    statistics = _check_statistics(rows.statistics, ACTIVATION_STATISTICS, "activation")
    count = len(names)
    types = [""] * count if rows.types is None else list(rows.types)
    if len(types) != count or not all(isinstance(t, str) for t in types):
        raise ValueError(f"types must be {count} strings (module class names, one per row)")
    eigen_entries = None if rows.eigenvalues is None else list(rows.eigenvalues)
    # One host copy per device for every tensor of the part.
    fields = [rows.values, rows.counts, rows.channels, rows.dead_channels, rows.covariance_samples]
    host = _to_host(fields + (eigen_entries or []))
    values, counts, channels, dead, samples = host[:5]
    if eigen_entries is not None:
        eigen_entries = host[5:]
    values = _float_matrix(values, count, len(statistics), "activation values")
    counts = _count_vector(counts, count, "counts")
    channels = _count_vector(channels, count, "channels")
    dead = _count_vector(dead, count, "dead_channels")
    if np.any(dead > channels):
        i = int(np.argmax(dead > channels))
        raise ValueError(
            f"row {names[i]!r} has {int(dead[i])} dead channels of {int(channels[i])}: "
            "dead_channels must be <= channels"
        )
    samples = _count_vector(samples, count, "covariance_samples")
    eigenvalues, eigen_counts = _eigenvalue_arrays(eigen_entries, count)
    step.layers[:] = names
    step.layer_types[:] = types
    step.activation_statistics[:] = statistics
    step.activations.CopyFrom(arrays.encode_array(values))
    # Counts that are all zero (no covariance at this step, no dead channel) are left
    # out: 8 bytes a row each; a reader reads an absent array as zeros.
    for field, array in (
        ("counts", counts),
        ("channels", channels),
        ("dead_channels", dead),
        ("eigenvalue_counts", eigen_counts),
        ("covariance_samples", samples),
    ):
        if array.any():
            getattr(step, field).CopyFrom(arrays.encode_array(array))
    if eigenvalues.size:
        step.eigenvalues.CopyFrom(arrays.encode_array(eigenvalues))


def _fill_parameters(step: pb.LayerStatisticsStep, rows: ParameterRows) -> None:
    names = _check_names(rows.names, "parameter")
    if not names:
        raise ValueError("parameters need at least one row")
    statistics = _check_statistics(rows.statistics, PARAMETER_STATISTICS, "parameter")
    without = _without_gradient(rows.without_gradient, names)
    (values,) = _to_host([rows.values])
    values = _float_matrix(values, len(names), len(statistics), "parameter values")
    gradient = [j for j, s in enumerate(statistics) if s in GRADIENT_STATISTICS]
    if without.size and gradient:
        given = values[np.ix_(without, gradient)]
        if not np.isnan(given).all():
            r, c = (int(k) for k in np.argwhere(~np.isnan(given))[0])
            raise ValueError(
                f"parameter {names[int(without[r])]!r} is listed in without_gradient but has "
                f"{statistics[gradient[c]]} {float(given[r, c])!r}: a parameter without a "
                "gradient has NaN gradient statistics (not measured)"
            )
    step.parameters[:] = names
    step.parameter_statistics[:] = statistics
    step.parameter_values.CopyFrom(arrays.encode_array(values))
    step.without_gradient[:] = without.tolist()


def _without_gradient(entries: Sequence[int | str] | None, names: list[str]) -> np.ndarray:
    """`ParameterRows.without_gradient` as ascending unique indices into `names` (int64)."""
    if entries is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(entries, str | bytes):
        raise TypeError(
            "without_gradient must be a sequence of parameter names or indices, got the "
            f"string {entries!r} (write [{entries!r}])"
        )
    index = {name: i for i, name in enumerate(names)}
    found: list[int] = []
    for entry in entries:
        if isinstance(entry, str):
            if entry not in index:
                raise ValueError(
                    f"without_gradient names {entry!r}, which is not a parameter of this step"
                    f"{_did_you_mean(entry, names)}"
                )
            found.append(index[entry])
        elif isinstance(entry, numbers.Integral) and not isinstance(entry, bool | np.bool_):
            if not 0 <= int(entry) < len(names):
                raise ValueError(
                    f"without_gradient index {int(entry)} is not a parameter: the step has "
                    f"{len(names)} (indices 0 to {len(names) - 1})"
                )
            found.append(int(entry))
        else:
            raise TypeError(
                "without_gradient entries must be parameter names or integer indices, got "
                f"{entry!r}"
            )
    if len(set(found)) != len(found):
        seen: set[int] = set()
        repeated = next(i for i in found if i in seen or seen.add(i))
        raise ValueError(f"without_gradient lists parameter {names[repeated]!r} twice")
    return np.asarray(sorted(found), dtype=np.int64)


def layer_statistics_pb(
    tag: str,
    activations: ActivationRows | Mapping | None = None,
    parameters: ParameterRows | Mapping | None = None,
    *,
    on: str = "train",
    variance_threshold: float = DEFAULT_VARIANCE_THRESHOLD,
    saturation_tolerance: float = DEFAULT_SATURATION_TOLERANCE,
    description: str = "",
    seconds: float = 0.0,
) -> summary_pb2.Summary:
    """A `Summary` with one step of layer statistics, its metadata included.

    For people who write events with another writer:
    `file_writer.add_summary(layer_statistics_pb("layer_statistics/activations",
    {"fc1": {"mean": 0.1, "std": 1.0}}), step)`.

    Args:
      tag: the series, e.g. "layer_statistics/activations".
      activations: `ActivationRows`, or row name → {statistic: value, "type",
        "count", "channels", "dead_channels", "eigenvalues", "samples"}.
      parameters: `ParameterRows`, or parameter name → {statistic: value} (None
        for the gradient statistics of a parameter without a gradient).
      on: "train" or "probe", what the model saw (metadata).
      variance_threshold: delve saturation's threshold, in (0, 1] (metadata).
      saturation_tolerance: the tolerance saturated fractions used, a fraction of the
        activation's range (metadata).
      description: shown by TensorBoard next to the tag.
      seconds: what the measurement took, for the monitor's cost report.

    Raises:
      ValueError, TypeError: as `layer_statistics_step` and `layer_statistics_info` say.
    """
    plugin_data = layer_statistics_info(on, variance_threshold, saturation_tolerance)
    step = layer_statistics_step(activations, parameters, seconds)
    return tensor_summary(tag, step.SerializeToString(), plugin_data, description)


class LayerStatisticsSummaries:
    """Mixin of `deepscope.SummaryWriter`: `add_layer_statistics`."""

    def add_layer_statistics(
        self,
        tag: str,
        activations: ActivationRows | Mapping | None = None,
        parameters: ParameterRows | Mapping | None = None,
        *,
        global_step: int | None = None,
        walltime: float | None = None,
        on: str = "train",
        variance_threshold: float = DEFAULT_VARIANCE_THRESHOLD,
        saturation_tolerance: float = DEFAULT_SATURATION_TOLERANCE,
        description: str = "",
        seconds: float = 0.0,
    ) -> None:
        """Log one step of layer statistics: activations per module output, norms per parameter.

        Args:
          tag: the series, e.g. "layer_statistics/activations".
          activations, parameters: either or both, as `layer_statistics_pb` takes them.
          global_step: the training step.
          walltime: seconds since the epoch; now by default.
          on, variance_threshold, saturation_tolerance, description: the series'
            metadata, kept from the tag's first event only (TensorBoard's rule).
          seconds: what the measurement took.

        Raises:
          ValueError, TypeError: bad rows or options (the message says which).
        """
        summary_pb = layer_statistics_pb(
            tag,
            activations,
            parameters,
            on=on,
            variance_threshold=variance_threshold,
            saturation_tolerance=saturation_tolerance,
            description=description,
            seconds=seconds,
        )
        self._warn_if_statistics_metadata_differs(tag, summary_pb)
        self._write(summary_pb, global_step, walltime)

    def _warn_if_statistics_metadata_differs(
        self, tag: str, summary_pb: summary_pb2.Summary
    ) -> None:
        """Warn once per tag when this step's metadata differs from the series' first."""
        written = self._series_plugin_data(tag)
        if written is None or written.WhichOneof("details") != "layer_statistics":
            return
        content = summary_pb.value[0].metadata.plugin_data.content
        given = pb.PluginData.FromString(content).layer_statistics
        # A call that gives none (all defaults) relies on the first event's: no warning.
        if given != written.layer_statistics and given != _DEFAULT_INFO:
            warned = self.__dict__.setdefault("_layer_statistics_warned", set())
            if tag not in warned:
                warned.add(tag)
                first = written.layer_statistics
                warnings.warn(
                    f"layer statistics {tag!r}: on, variance_threshold and "
                    f"saturation_tolerance are kept from the tag's first event "
                    f"({first.on!r}, {first.variance_threshold:g}, "
                    f"{first.saturation_tolerance:g}); this step's ({given.on!r}, "
                    f"{given.variance_threshold:g}, {given.saturation_tolerance:g}) are "
                    "ignored. Log other ones under a new tag.",
                    RuntimeWarning,
                    stacklevel=3,
                )


_DEFAULT_INFO = layer_statistics_info().layer_statistics
