"""Layer statistics on the read side: decode a layer-statistics series, serve its three routes.

A layer-statistics series (`add_layer_statistics`, `watch()`'s `LayerStats` and
parameter norms) is a tensor series: each event is a DT_STRING scalar holding
one `LayerStatisticsStep` with an activation part (rows = module outputs,
columns = statistics, plus counts, channels, dead channels and covariance
eigenvalues) and a parameter part (rows = parameters). Steps may name different
rows and columns: each part's rows are the union in order of first appearance
(the model's order), its columns the known statistics first, then any a newer
writer added.

What a NaN means: in the activation part, "not measured" (its
non_finite_fraction column says how much of an output was non-finite). In the
parameter part, a gradient statistic (grad_norm, grad_to_weight) of a parameter
the step lists in `without_gradient` is NaN and not measured; every other NaN
there is a measurement, a non-finite gradient or weight norm, and is served as
one ("NaN", counted in `non_finite`), except ‖g‖/‖W‖ of a weight norm exactly
zero (a fresh bias: Inf, or NaN with a zero gradient), which is undefined, not
numerical trouble: `layer_statistics` lists it in `zero_weight` (as update
ratios do), serves it null (NaN in base64) and does not count it.

`read_layer_statistics` reads every kept event once per series version and
decodes it into one array per part, steps × rows × statistics (float32, NaN
where a row is not in a step), and per step the row indices, counts and
eigenvalues (views of the payload's bytes). The three routes read that decoded
series, remembered by the series' version (`TensorKindRoutes`):

- `layer_statistics`: one statistic's layers × steps table, in the shape of
  `layer_values` (json or base64);
- `layer_statistics_step`: every statistic of every row at one step;
- `layer_statistics_spectrum`: one row's covariance eigenvalues over the steps
  that have them, with effective dimension, delve saturation and effective rank.

Damaged data (deepscope's one policy): an event that cannot be read or fails
validation (payload type, parse, names, dtypes, shapes and byte counts against
names and statistics, counts, dead channels, eigenvalue counts, value ranges of
fractions, norms and eigenvalues, the parameters without a gradient, wall time)
drops only its own step, named in the table's and the spectrum's `warnings`;
`layer_statistics_step` answers that step with its `error`. No route answers 500.
"""

from __future__ import annotations

import dataclasses
import difflib
import math

import numpy as np
import werkzeug
from tensorboard import errors, plugin_util

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import responses, tensor_kind
from deepscope.tb_plugin.tensor_kind import MalformedEvent, count, dtype_name

KIND = "layer_statistics"
PARTS = ("activations", "parameters")
# Known columns, in the order responses list them (as the writer's).
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
# The parameter statistics a parameter without a gradient has none of (NaN: not measured).
GRADIENT_STATISTICS = ("grad_norm", "grad_to_weight")
# The table's statistic when a request names none: the first part's that the series has.
DEFAULT_STATISTICS = {"activations": "std", "parameters": "grad_norm"}
# statistic → (label, unit, scale) for the tab.
DESCRIPTIONS: dict[str, tuple[str, str, str]] = {
    "mean": ("mean", "", "linear"),
    "std": ("standard deviation", "", "log"),
    "rms": ("root mean square", "", "log"),
    "max_abs": ("max |a|", "", "log"),
    "zero_fraction": ("fraction exactly zero", "fraction", "linear"),
    "saturated_fraction": ("fraction saturated", "fraction", "linear"),
    "non_finite_fraction": ("fraction non-finite", "fraction", "linear"),
    "dead_fraction": ("fraction of dead channels", "fraction", "linear"),
    "effective_dimension": ("effective dimension (participation ratio)", "channels", "linear"),
    "saturation": ("delve saturation", "fraction", "linear"),
    "effective_rank": ("effective rank (Roy & Vetterli)", "channels", "linear"),
    "grad_norm": ("gradient norm", "", "log"),
    "weight_norm": ("weight norm", "", "log"),
    "grad_to_weight": ("gradient-to-weight ratio", "", "log"),
}
# Columns whose finite values must lie in [0, 1], or be >= 0: a value beyond is damage.
_FRACTIONS = frozenset(
    {"zero_fraction", "saturated_fraction", "non_finite_fraction", "dead_fraction", "saturation"}
)
_NON_NEGATIVE = frozenset(
    {"std", "rms", "max_abs", "effective_dimension", "effective_rank", *PARAMETER_STATISTICS}
)
_COVARIANCE_METRICS = ("effective_dimension", "saturation", "effective_rank")
_FLOAT_DTYPES = (pb.FLOAT32, pb.FLOAT16, pb.FLOAT64)
_INT_DTYPES = (pb.INT64, pb.INT32)
_SERIES_BYTES = 64 * 1024 * 1024
_BODY_BYTES = 32 * 1024 * 1024
# Rows a 404 lists.
_LISTED = 20


# --------------------------------------------------------------------------- decoded series


@dataclasses.dataclass
class Part:
    """One part (activations or parameters) of a series: values[i, j, k] is row names[j]'s
    statistic statistics[k] at the series' i-th good step; NaN where absent."""

    names: list[str]
    types: list[str]  # per name (the first step's that names it); "" when not logged
    statistics: list[str]
    values: np.ndarray  # float32 [S, R, C]
    present: np.ndarray  # bool [S, R]: the row is in that step
    # bool [S, R]: a parameter the step lists without a gradient (all False for activations)
    without_gradient: np.ndarray

    @property
    def nbytes(self) -> int:
        arrays_bytes = self.values.nbytes + self.present.nbytes + self.without_gradient.nbytes
        return arrays_bytes + sum(len(n) + 60 for n in self.names)

    def not_measured(self, statistic: str, values: np.ndarray, columns=None) -> np.ndarray:
        """bool [S, R]: where `values` (this part's `statistic`, rows `columns` or all) is
        not measured. Activations (and columns a newer writer added): every NaN. A
        gradient statistic: NaN of a row absent at the step or without a gradient
        there. The weight norm: a row absent at the step. Any other NaN is measured."""
        if statistic not in PARAMETER_STATISTICS:
            return np.isnan(values)
        present = self.present if columns is None else self.present[:, columns]
        if statistic not in GRADIENT_STATISTICS:
            return ~present
        without = self.without_gradient if columns is None else self.without_gradient[:, columns]
        return np.isnan(values) & (without | ~present)


@dataclasses.dataclass
class StepRows:
    """One good step's own rows and columns, as indices into its series' parts, and its
    per-row facts (int64 [L]) and eigenvalues."""

    layers: np.ndarray  # intp [L]: indices into activations.names
    activation_columns: np.ndarray  # intp [A]: indices into activations.statistics
    parameters: np.ndarray  # intp [P]
    parameter_columns: np.ndarray  # intp [B]
    without_gradient: np.ndarray  # intp: positions in `parameters` without a gradient
    counts: np.ndarray
    channels: np.ndarray
    dead_channels: np.ndarray
    eigenvalue_counts: np.ndarray
    covariance_samples: np.ndarray
    eigenvalues: np.ndarray  # float32, flat: row i's are eigenvalue_counts[i] values
    seconds: float

    @property
    def nbytes(self) -> int:
        parts = (self.layers, self.parameters, self.without_gradient, self.counts, self.channels)
        parts += (self.dead_channels,)
        rest = (self.eigenvalue_counts, self.covariance_samples, self.eigenvalues)
        return sum(a.nbytes for a in (*parts, *rest)) + 300


@dataclasses.dataclass
class LayerStatistics:
    """A decoded layer-statistics series: its good steps' parts and rows, its damaged steps."""

    steps: np.ndarray  # int64 [S], the good steps, ascending
    wall_times: np.ndarray  # float64 [S]
    activations: Part
    parameters: Part
    rows: list[StepRows]  # per good step
    damaged: dict[int, tuple[float | None, str]]  # damaged step → (wall time, what is wrong)
    all_steps: list[int]  # every kept step, good and damaged, ascending
    warnings: list[str]

    def part(self, name: str) -> Part:
        return self.activations if name == "activations" else self.parameters

    @property
    def nbytes(self) -> int:
        return (
            self.steps.nbytes
            + self.wall_times.nbytes
            + self.activations.nbytes
            + self.parameters.nbytes
            + sum(r.nbytes for r in self.rows)
            + sum(len(m) + 80 for _, m in self.damaged.values())
            + 8 * len(self.all_steps)
            + 200
        )


@dataclasses.dataclass
class DecodedStep:
    """One event's checked contents (names as tuples, arrays as numpy)."""

    layers: tuple[str, ...]
    layer_types: tuple[str, ...]
    activation_statistics: tuple[str, ...]
    activations: np.ndarray  # float32 [L, A]
    counts: np.ndarray
    channels: np.ndarray
    dead_channels: np.ndarray
    eigenvalues: np.ndarray
    eigenvalue_counts: np.ndarray
    covariance_samples: np.ndarray
    parameters: tuple[str, ...]
    parameter_statistics: tuple[str, ...]
    parameter_values: np.ndarray  # float32 [P, B]
    without_gradient: np.ndarray  # intp: positions in `parameters`, ascending
    seconds: float


def decode_payload(payload) -> DecodedStep:
    """One event's tensor value (a string scalar holding a serialized `LayerStatisticsStep`),
    decoded and checked.

    Raises:
      MalformedEvent: what is wrong with it.
    """
    return StepDecoder().decode(payload)


# The step's repeated string fields, in field-number order.
_NAME_FIELDS = (
    "layers",
    "layer_types",
    "activation_statistics",
    "parameters",
    "parameter_statistics",
)


class StepDecoder:
    """Decodes the events of one series, reusing the names the previous good event carried.

    Most steps of a series name the same rows, and making their strings is
    about half of decoding a step (200 layer names and types: about 0.1 ms).
    A protobuf message is the merge of its parts, and the writer serializes
    fields in number order, so the name fields that come first (layers, their
    types and the statistics; or, in a step without layers, the parameters and
    theirs) are a prefix of the bytes: when an event starts with the previous
    one's, those parse to the same names, already checked, and only the rest is
    parsed.
    """

    def __init__(self) -> None:
        self._prefix = b""
        self._prefix_fields: tuple[str, ...] = ()
        self._names: dict[str, tuple[str, ...]] = {}

    def decode(self, payload) -> DecodedStep:
        """As `decode_payload`."""
        content = tensor_kind.string_payload(payload, "LayerStatisticsStep")
        names = None
        try:
            if self._prefix and content.startswith(self._prefix):
                step = pb.LayerStatisticsStep.FromString(content[len(self._prefix) :])
                if not any(len(getattr(step, field)) for field in self._prefix_fields):
                    names = {
                        field: self._names[field]
                        if field in self._prefix_fields
                        else tuple(getattr(step, field))
                        for field in _NAME_FIELDS
                    }
            if names is None:
                step = pb.LayerStatisticsStep.FromString(content)
                names = {field: tuple(getattr(step, field)) for field in _NAME_FIELDS}
        except Exception as error:  # protobuf raises DecodeError or RuntimeError
            raise MalformedEvent(
                f"the payload does not parse as a LayerStatisticsStep ({error})"
            ) from None
        for field in _NAME_FIELDS:  # the same names as the previous good event's: its tuples
            known = self._names.get(field)
            if known is not None and names[field] is not known and names[field] == known:
                names[field] = known
        checked = tuple(field for field in _NAME_FIELDS if names[field] is self._names.get(field))
        decoded = _decode(step, names, checked)
        if any(names[field] is not self._names.get(field) for field in _NAME_FIELDS):
            self._remember(content, names)
        return decoded

    def _remember(self, content: bytes, names: dict[str, tuple[str, ...]]) -> None:
        fields = _NAME_FIELDS[:3] if names["layers"] else _NAME_FIELDS[3:]
        prefix = pb.LayerStatisticsStep(**{f: names[f] for f in fields}).SerializeToString()
        self._prefix = prefix if content.startswith(prefix) else b""
        self._prefix_fields = fields
        self._names = names


def _decode(
    step: pb.LayerStatisticsStep, names: dict[str, tuple[str, ...]], checked: tuple[str, ...]
) -> DecodedStep:
    """The step with its name fields `names` (those in `checked` known good), checked."""
    layers, parameters = names["layers"], names["parameters"]
    if not layers and not parameters:
        raise MalformedEvent("the step has no rows (no layers and no parameters)")
    seconds = float(step.seconds)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise MalformedEvent(f"seconds {seconds} is not a duration")
    rows = len(layers)
    if layers:
        if "layers" not in checked:
            _check_names(layers, "layer")
        layer_types = names["layer_types"]
        if layer_types and len(layer_types) != rows:
            raise MalformedEvent(
                f"{count(len(layer_types), 'layer type')} for {count(rows, 'layer')}"
            )
        layer_types = layer_types or ("",) * rows
        statistics = names["activation_statistics"]
        if "activation_statistics" not in checked:
            _check_names(statistics, "activation statistic")
        activations = _matrix(step.activations, rows, statistics, "activations")
        counts, channels, dead, eigen_counts, samples = _all_counts(step, rows)
        over = dead > channels
        if over.any():
            i = int(np.argmax(over))
            raise MalformedEvent(
                f"layer {responses.echo(layers[i])} has {int(dead[i])} dead channels of "
                f"{int(channels[i])}"
            )
        eigenvalues = _eigenvalues(step.eigenvalues, int(eigen_counts.sum()))
    else:
        if names["activation_statistics"] or step.activations.data or step.counts.data:
            raise MalformedEvent("the step holds activation statistics but names no layers")
        layer_types, statistics = (), ()
        activations = np.zeros((0, 0), np.float32)
        counts = channels = dead = eigen_counts = samples = np.zeros(0, np.int64)
        eigenvalues = np.zeros(0, np.float32)
    if parameters:
        if "parameters" not in checked:
            _check_names(parameters, "parameter")
        parameter_statistics = names["parameter_statistics"]
        if "parameter_statistics" not in checked:
            _check_names(parameter_statistics, "parameter statistic")
        parameter_values = _matrix(
            step.parameter_values, len(parameters), parameter_statistics, "parameter_values"
        )
        without_gradient = _without_gradient(
            step.without_gradient, parameters, parameter_statistics, parameter_values
        )
    else:
        if names["parameter_statistics"] or step.parameter_values.data:
            raise MalformedEvent("the step holds parameter statistics but names no parameters")
        if step.without_gradient:
            raise MalformedEvent(
                "the step lists parameters without a gradient but names no parameters"
            )
        parameter_statistics = ()
        parameter_values = np.zeros((0, 0), np.float32)
        without_gradient = _NO_ROWS
    return DecodedStep(
        layers,
        layer_types,
        statistics,
        activations,
        counts,
        channels,
        dead,
        eigenvalues,
        eigen_counts,
        samples,
        parameters,
        parameter_statistics,
        parameter_values,
        without_gradient,
        seconds,
    )


_NO_ROWS = np.zeros(0, np.intp)


def _without_gradient(
    stored, parameters: tuple[str, ...], statistics: tuple[str, ...], values: np.ndarray
) -> np.ndarray:
    """The step's `without_gradient` (positions in `parameters`), checked: each a
    parameter, listed once, with NaN gradient statistics (its "not measured")."""
    if not stored:
        return _NO_ROWS
    without = np.fromiter(stored, dtype=np.intp, count=len(stored))
    if int(without.max()) >= len(parameters):
        raise MalformedEvent(
            f"without_gradient index {int(without.max())} is not a parameter (the step has "
            f"{count(len(parameters), 'parameter')})"
        )
    ordered = np.sort(without)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        raise MalformedEvent(
            f"without_gradient lists parameter {responses.echo(parameters[int(repeated[0])])} twice"
        )
    gradient = [k for k, name in enumerate(statistics) if name in GRADIENT_STATISTICS]
    if gradient:
        given = values[np.ix_(ordered, gradient)]
        measured = ~np.isnan(given)
        if measured.any():
            r, c = (int(k) for k in np.argwhere(measured)[0])
            raise MalformedEvent(
                f"parameter {responses.echo(parameters[int(ordered[r])])} is listed without a "
                f"gradient but has {statistics[gradient[c]]} {float(given[r, c]):.6g}"
            )
    return ordered


def _check_names(names: tuple[str, ...], what: str) -> None:
    if not names:
        raise MalformedEvent(f"the step names no {what}s")
    unique = set(names)
    if "" in unique:
        raise MalformedEvent(f"a {what} name is empty")
    if len(unique) != len(names):
        seen: set[str] = set()
        repeated = next(name for name in names if name in seen or seen.add(name))
        raise MalformedEvent(f"{what} name {responses.echo(repeated)} appears twice")


def _matrix(stored: pb.Array, rows: int, statistics: tuple[str, ...], what: str) -> np.ndarray:
    """A part's float32 [rows, len(statistics)] values, checked (shape, bytes, ranges)."""
    columns = len(statistics)
    if stored.dtype not in _FLOAT_DTYPES:
        raise MalformedEvent(
            f"{what} of dtype {dtype_name(stored.dtype)}, not FLOAT32 (or FLOAT16, FLOAT64)"
        )
    shape = list(stored.shape)
    if shape != [rows, columns]:
        raise MalformedEvent(
            f"{what} of shape {responses.cap(str(shape))} for {count(rows, 'row')} × "
            f"{count(columns, 'statistic')} (needs [{rows}, {columns}])"
        )
    if stored.dtype == pb.FLOAT32:
        if len(stored.data) != 4 * rows * columns:
            raise MalformedEvent(
                f"{what}: {len(stored.data)} bytes for [{rows}, {columns}] float32 values "
                f"(needs {4 * rows * columns})"
            )
        values = np.frombuffer(stored.data, dtype="<f4").reshape(rows, columns)
    else:
        try:
            values = np.asarray(arrays.decode_array(stored), dtype=np.float32)
        except ValueError as error:
            raise MalformedEvent(f"{what}: {error}") from None
    low, high = _bounds(statistics)
    # One pass: NaN compares False (not measured); ±inf beyond a bound is damage too.
    if low is not None and ((values < low) | (values > high)).any():
        for k, name in enumerate(statistics):
            column = values[:, k]
            bad = column[(column < low[k]) | (column > high[k])]
            if bad.size:
                bound = "in [0, 1]" if name in _FRACTIONS else ">= 0"
                raise MalformedEvent(f"{what}: {name} {float(bad[0]):.6g} is not {bound}")
    return values


_BOUNDS: dict[tuple[str, ...], tuple[np.ndarray | None, np.ndarray | None]] = {}


def _bounds(statistics: tuple[str, ...]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per column, the least and greatest possible value (float32 [A]; fractions in [0, 1],
    norms and spreads >= 0, the others unbounded); (None, None) when none is bounded.
    Remembered per tuple of statistics."""
    found = _BOUNDS.get(statistics)
    if found is None:
        bounded = [name in _FRACTIONS or name in _NON_NEGATIVE for name in statistics]
        low = np.array([0.0 if b else -np.inf for b in bounded], np.float32)
        high = np.array([1.0 if n in _FRACTIONS else np.inf for n in statistics], np.float32)
        found = (low, high) if any(bounded) else (None, None)
        if len(_BOUNDS) < 64:
            _BOUNDS[statistics] = found
    return found


_COUNT_FIELDS = ("counts", "channels", "dead_channels", "eigenvalue_counts", "covariance_samples")


_I8 = np.dtype("<i8")


def _all_counts(step: pb.LayerStatisticsStep, rows: int) -> list[np.ndarray]:
    """The step's five int64 [rows] count arrays (`_COUNT_FIELDS`), each >= 0 (absent:
    zeros), and dead channels <= channels."""
    stored = [getattr(step, field) for field in _COUNT_FIELDS]
    if all(a.dtype == pb.INT64 and list(a.shape) == [rows] for a in stored):
        datas = [a.data for a in stored]
        if all(len(d) == 8 * rows for d in datas):  # what the writer writes: one array
            joined = np.frombuffer(b"".join(datas), dtype=_I8).reshape(len(stored), rows)
            found = list(joined)
        else:
            found = [_counts(a, rows, f) for a, f in zip(stored, _COUNT_FIELDS)]
            joined = np.stack(found) if rows else None
    else:
        found = [_counts(a, rows, f) for a, f in zip(stored, _COUNT_FIELDS)]
        joined = np.stack(found) if rows else None
    if rows and joined.min() < 0:  # one test for the five
        for field, values in zip(_COUNT_FIELDS, found):
            if values.min() < 0:
                raise MalformedEvent(f"{field}: {int(values.min())} is negative")
    return found


def _counts(stored: pb.Array, rows: int, what: str) -> np.ndarray:
    """An int64 [rows] (an absent array: zeros); the sign is `_all_counts`' to check."""
    dtype, data = stored.dtype, stored.data
    if dtype == pb.INT64 and len(data) == 8 * rows and len(stored.shape) == 1:
        if stored.shape[0] == rows:  # what the writer writes
            return np.frombuffer(data, dtype="<i8")
    if not data and not stored.shape and dtype == pb.DTYPE_UNSPECIFIED:
        return np.zeros(rows, np.int64)
    if dtype not in _INT_DTYPES:
        raise MalformedEvent(f"{what} of dtype {dtype_name(dtype)}, not INT64")
    if list(stored.shape) != [rows]:
        raise MalformedEvent(
            f"{what} of shape {responses.cap(str(list(stored.shape)))} for {count(rows, 'layer')}"
        )
    try:
        return arrays.decode_array(stored).astype(np.int64)
    except ValueError as error:
        raise MalformedEvent(f"{what}: {error}") from None


def _eigenvalues(stored: pb.Array, total: int) -> np.ndarray:
    if total == 0 and not stored.data:
        return np.zeros(0, np.float32)
    if stored.dtype not in _FLOAT_DTYPES:
        raise MalformedEvent(f"eigenvalues of dtype {dtype_name(stored.dtype)}, not FLOAT32")
    if list(stored.shape) != [total]:
        raise MalformedEvent(
            f"eigenvalues of shape {responses.cap(str(list(stored.shape)))}, but the "
            f"eigenvalue counts add up to {total}"
        )
    try:
        values = np.asarray(arrays.decode_array(stored), dtype=np.float32)
    except ValueError as error:
        raise MalformedEvent(f"eigenvalues: {error}") from None
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() < 0:
        raise MalformedEvent(
            f"eigenvalue {float(finite.min()):.6g} is negative (a covariance's are >= 0)"
        )
    return values


class _PartBuilder:
    """Collects one part's rows over steps; `build` places them in one array."""

    def __init__(self, known: tuple[str, ...]):
        self.names: dict[str, int] = {}
        self.types: list[str] = []
        self.columns: dict[str, int] = {}
        self._known = known
        # (step index, row indices, column indices, values [L, A], rows without a gradient)
        self._blocks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._row_keys: dict[tuple[str, ...], np.ndarray] = {}
        self._column_keys: dict[tuple[str, ...], np.ndarray] = {}

    def add(
        self, index: int, names, types, statistics, values, without_gradient=_NO_ROWS
    ) -> tuple[np.ndarray, np.ndarray]:
        """Place one step's rows; `without_gradient`: positions in `names`."""
        rows = self._row_keys.get(names)
        if rows is None:
            for name, kind in zip(names, types or ("",) * len(names)):
                if name not in self.names:
                    self.names[name] = len(self.names)
                    self.types.append(kind)
            rows = np.fromiter((self.names[n] for n in names), dtype=np.intp, count=len(names))
            self._row_keys[names] = rows
        columns = self._column_keys.get(statistics)
        if columns is None:
            for name in statistics:
                self.columns.setdefault(name, len(self.columns))
            columns = np.fromiter(
                (self.columns[s] for s in statistics), dtype=np.intp, count=len(statistics)
            )
            self._column_keys[statistics] = columns
        if len(names):
            self._blocks.append((index, rows, columns, values, without_gradient))
        return rows, columns

    def build(self, steps: int) -> tuple[Part, np.ndarray]:
        """The part, and the map from the builder's column indices to the part's."""
        # Known statistics first, in their order; then the others in order of appearance.
        order = [s for s in self._known if s in self.columns]
        order += [s for s in self.columns if s not in self._known]
        remap = np.empty(len(self.columns), dtype=np.intp)
        for new, name in enumerate(order):
            remap[self.columns[name]] = new
        values = np.full((steps, len(self.names), len(order)), np.nan, dtype=np.float32)
        present = np.zeros((steps, len(self.names)), dtype=bool)
        without = np.zeros((steps, len(self.names)), dtype=bool)
        for index, rows, columns, block, no_gradient in self._blocks:
            values[index, rows[:, None], remap[columns][None, :]] = block
            present[index, rows] = True
            if no_gradient.size:
                without[index, rows[no_gradient]] = True
        part = Part(list(self.names), self.types, order, values, present, without)
        return part, remap


def read_layer_statistics(
    data_provider, ctx, experiment_id: str, run: str, tag: str, downsample: int | None
) -> LayerStatistics:
    """Read and decode every kept step of a layer-statistics series, in step order.

    Events that cannot be read are left out, each named in `warnings` and
    kept with its error in `damaged`.
    """
    datums = tensor_kind.read_events(data_provider, ctx, experiment_id, run, tag, downsample)
    activations = _PartBuilder(ACTIVATION_STATISTICS)
    parameters = _PartBuilder(PARAMETER_STATISTICS)
    steps: list[int] = []
    wall_times: list[float] = []
    rows: list[StepRows] = []
    malformed: list[tuple[int, str]] = []
    damaged: dict[int, tuple[float, str]] = {}
    all_steps: list[int] = []
    decoder = StepDecoder()
    for datum in datums:
        step_number = int(datum.step)
        all_steps.append(step_number)
        try:
            wall_time = float(datum.wall_time)
            if not math.isfinite(wall_time):
                raise MalformedEvent(f"wall time {wall_time} is not a number of seconds")
            decoded = decoder.decode(datum.numpy)
        except MalformedEvent as error:
            malformed.append((step_number, str(error)))
            wall = float(datum.wall_time)
            damaged[step_number] = (wall if math.isfinite(wall) else None, str(error))
            continue
        damaged.pop(step_number, None)  # a later good event of the same step
        index = len(steps)
        layer_rows, layer_columns = activations.add(
            index,
            decoded.layers,
            decoded.layer_types,
            decoded.activation_statistics,
            decoded.activations,
        )
        parameter_rows, parameter_columns = parameters.add(
            index,
            decoded.parameters,
            (),
            decoded.parameter_statistics,
            decoded.parameter_values,
            decoded.without_gradient,
        )
        rows.append(
            StepRows(
                layer_rows,
                layer_columns,
                parameter_rows,
                parameter_columns,
                decoded.without_gradient,
                decoded.counts,
                decoded.channels,
                decoded.dead_channels,
                decoded.eigenvalue_counts,
                decoded.covariance_samples,
                decoded.eigenvalues,
                decoded.seconds,
            )
        )
        steps.append(step_number)
        wall_times.append(wall_time)
    activation_part, activation_remap = activations.build(len(steps))
    parameter_part, parameter_remap = parameters.build(len(steps))
    for step_rows in rows:  # the builders' column indices → the parts' (known ones first)
        step_rows.activation_columns = activation_remap[step_rows.activation_columns]
        step_rows.parameter_columns = parameter_remap[step_rows.parameter_columns]
    return LayerStatistics(
        steps=np.asarray(steps, dtype=np.int64),
        wall_times=np.asarray(wall_times, dtype=np.float64),
        activations=activation_part,
        parameters=parameter_part,
        rows=rows,
        damaged=damaged,
        all_steps=sorted(set(all_steps)),
        warnings=tensor_kind.malformed_warnings(malformed),
    )


# --------------------------------------------------------------------------- responses


def _json_rows(values: np.ndarray) -> list[list]:
    """A float matrix as nested lists, non-finite values spelled "NaN", "Infinity", "-Infinity"."""
    rows = values.tolist()
    for i, j in np.argwhere(~np.isfinite(values)).tolist():
        value = values[i, j]
        rows[i][j] = "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return rows


def _info_facts(plugin_data: pb.PluginData) -> dict:
    info = plugin_data.layer_statistics
    return {
        "on": info.on,
        "variance_threshold": responses.json_number(info.variance_threshold),
        "saturation_tolerance": responses.json_number(info.saturation_tolerance),
    }


def _close_matches(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3)
    return f" (did you mean {' or '.join(responses.echo(c) for c in close)}?)" if close else ""


def _listing(names: list[str]) -> str:
    shown = responses.cap(", ".join(names[:_LISTED]))
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


class LayerStatisticsRoutes(tensor_kind.TensorKindRoutes):
    """The three layer-statistics routes (the shared parts: `tensor_kind.TensorKindRoutes`)."""

    KIND = KIND
    ROUTE = "layer_statistics"
    NOUN = "row"
    SERIES_BYTES = _SERIES_BYTES
    BODY_BYTES = _BODY_BYTES

    def apps(self) -> dict:
        return {
            "/layer_statistics": self._serve_table,
            "/layer_statistics_step": self._serve_step,
            "/layer_statistics_spectrum": self._serve_spectrum,
        }

    def read(self, ctx, experiment: str, run: str, tag: str, plugin_data) -> LayerStatistics:
        return read_layer_statistics(
            self._context.data_provider, ctx, experiment, run, tag, self._context.downsample
        )

    def layer_statistics(self, ctx, experiment: str, run: str, tag: str) -> LayerStatistics:
        """The decoded series (run, tag), remembered; 404/400 as `SeriesCatalog.find`."""
        return self.decoded(ctx, experiment, run, tag)

    # ------------------------------------------------------------- remembered bodies

    def _remembered(self, ctx, experiment: str, run: str, tag: str, key: tuple, make):
        """The body `make(decoded, plugin_data)` of (run, tag), remembered under `key` by
        the series' version."""
        plugin_data = self._context.catalog.find(ctx, experiment, run, tag, self.KIND)
        version = self._version(ctx, experiment, run, tag)
        body_key = ((experiment, run, tag, version), *key)
        if version is not None:
            body = self._bodies.get(body_key)
            if body is not None:
                return body
        decoded = self._decoded(ctx, experiment, run, tag, plugin_data, version)
        body = make(decoded, plugin_data)
        if version is not None and decoded.all_steps:
            self._bodies.put(body_key, body)
        return body

    # ------------------------------------------------------------- layer_statistics

    def body(
        self,
        ctx,
        experiment: str,
        run: str,
        tag: str,
        fmt: str = "json",
        wanted=(),
        statistic: str | None = None,
    ) -> responses.PreparedJson:
        """The `layer_statistics` response (docs/http_api.md): one statistic's table."""
        wanted = list(wanted)
        return self._remembered(
            ctx,
            experiment,
            run,
            tag,
            ("table", statistic, fmt, tuple(wanted)),
            lambda decoded, plugin_data: self.make_body(
                decoded, plugin_data, run, tag, fmt, wanted, statistic
            ),
        )

    def make_body(
        self,
        decoded: LayerStatistics,
        plugin_data,
        run: str,
        tag: str,
        fmt: str,
        wanted: list[str],
        statistic: str | None = None,
    ) -> responses.PreparedJson:
        part_name, statistic = self._statistic(decoded, run, tag, statistic)
        part = decoded.part(part_name)
        if statistic in part.statistics:
            k = part.statistics.index(statistic)
            values = part.values[:, :, k]
        else:  # a series without good steps: nothing to serve
            values = np.zeros((len(decoded.steps), len(part.names)), np.float32)
        present, names, types = part.present, part.names, part.types
        columns = self.select_columns(names, wanted, run, tag)
        if columns is not None:
            values, present = values[:, columns], present[:, columns]
            names, types = list(wanted), [types[j] for j in columns]
        label, unit, scale = DESCRIPTIONS.get(statistic, (statistic, "", "linear"))
        values = np.where(present, values, np.float32(np.nan))
        # A row the step does not have is not measured; so is an activation statistic's
        # NaN and a gradient statistic's NaN of a parameter without a gradient (the
        # schema). Any other NaN, and ±inf, is a measurement, served and counted.
        not_measured = part.not_measured(statistic, values, columns)
        # ‖g‖/‖W‖ of a weight exactly zero (a fresh bias) is undefined, not a fault: marked
        # zero_weight (as update ratios do), served as null / NaN, not counted non-finite.
        zero_weight = np.zeros(values.shape, dtype=bool)
        if statistic == "grad_to_weight" and "weight_norm" in part.statistics:
            weights = part.values[:, :, part.statistics.index("weight_norm")]
            if columns is not None:
                weights = weights[:, columns]
            zero_weight = (weights == 0) & present & ~not_measured
            values = np.where(zero_weight, np.float32(np.nan), values)
        head = {
            "run": run,
            "tag": tag,
            "part": part_name,
            "statistic": statistic,
            "quantity": statistic,
            "label": label,
            "unit": unit,
            "scale": scale,
            "statistics": decoded.activations.statistics + decoded.parameters.statistics,
            "parts": {
                "activations": decoded.activations.statistics,
                "parameters": decoded.parameters.statistics,
            },
            **_info_facts(plugin_data),
            "steps": decoded.steps.tolist(),
            "wall_times": decoded.wall_times.tolist(),
            "names": names,
            "types": types,
            "non_finite": int((~np.isfinite(values) & ~not_measured & ~zero_weight).sum()),
            "zero_weight": np.argwhere(zero_weight).tolist(),
            "warnings": list(decoded.warnings),
        }
        if fmt == "base64":
            head["not_measured"] = np.argwhere(not_measured).tolist()
            head["values"] = {"dtype": "float32", "shape": list(values.shape), "base64": ""}
            return responses.prepare_base64_json(head, values.astype("<f4").tobytes())
        head["values"] = tensor_kind.json_matrix(values, not_measured | zero_weight)
        return responses.prepare_json_text(responses.json_text(head))

    def _statistic(
        self, decoded: LayerStatistics, run: str, tag: str, statistic: str | None
    ) -> tuple[str, str]:
        """(part, statistic) asked for, or the series' default; a 400 for one it lacks."""
        available = decoded.activations.statistics + decoded.parameters.statistics
        if statistic is None:  # std, else the gradient norm, else the first column
            for part in PARTS:
                for preferred in (DEFAULT_STATISTICS[part], *decoded.part(part).statistics[:1]):
                    if preferred in decoded.part(part).statistics:
                        return part, preferred
            return "activations", DEFAULT_STATISTICS["activations"]
        if statistic in decoded.activations.statistics:
            return "activations", statistic
        if statistic in decoded.parameters.statistics:
            return "parameters", statistic
        if not available and statistic in DESCRIPTIONS:  # no good step yet: an empty table
            return ("parameters" if statistic in PARAMETER_STATISTICS else "activations"), statistic
        known = available or list(DESCRIPTIONS)
        raise errors.InvalidArgumentError(
            f"tag {responses.echo(tag)} of run {responses.echo(run)} has no statistic "
            f"{responses.echo(statistic)}{_close_matches(statistic, known)}; its statistics: "
            + (", ".join(available) if available else "none (no step could be read)")
        )

    @werkzeug.wrappers.Request.application
    def _serve_table(self, request):
        example = "layer_statistics?run=RUN&tag=TAG&statistic=std"
        run = responses.required_arg(request, "run", example)
        tag = responses.required_arg(request, "tag", example)
        fmt = responses.choice_arg(request, "format", tensor_kind.FORMATS, "json")
        statistic = request.args.get("statistic") or None
        wanted = request.args.getlist("name")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        return responses.respond_json_text(
            request, self.body(ctx, experiment, run, tag, fmt, wanted, statistic)
        )

    # ------------------------------------------------------------- layer_statistics_step

    def step_body(
        self, ctx, experiment: str, run: str, tag: str, step: int | None
    ) -> responses.PreparedJson:
        """The `layer_statistics_step` response (docs/http_api.md): every statistic at one step."""
        return self._remembered(
            ctx,
            experiment,
            run,
            tag,
            ("step", step),
            lambda decoded, plugin_data: self._make_step(decoded, plugin_data, run, tag, step),
        )

    def _make_step(
        self, decoded: LayerStatistics, plugin_data, run: str, tag: str, step: int | None
    ) -> responses.PreparedJson:
        found = _find_step(decoded.all_steps, step, run, tag)
        body = {
            "run": run,
            "tag": tag,
            "step": found,
            "wall_time": None,
            "error": None,
            "steps": decoded.all_steps,
            "warnings": list(decoded.warnings),
            **_info_facts(plugin_data),
            "seconds": None,
            "layers": [],
            "types": [],
            "activation_statistics": [],
            "activations": [],
            "counts": [],
            "channels": [],
            "dead_channels": [],
            "eigenvalue_counts": [],
            "covariance_samples": [],
            "parameters": [],
            "parameter_statistics": [],
            "parameter_values": [],
            "without_gradient": [],
        }
        index = np.searchsorted(decoded.steps, found)
        good = index < len(decoded.steps) and decoded.steps[index] == found
        if not good:
            wall_time, error = decoded.damaged[found]
            body["wall_time"] = wall_time
            body["error"] = error
            return responses.prepare_json_text(responses.json_text(body))
        rows = decoded.rows[index]
        acts, params = decoded.activations, decoded.parameters
        activation_values = acts.values[index][rows.layers][:, rows.activation_columns]
        parameter_values = params.values[index][rows.parameters][:, rows.parameter_columns]
        body.update(
            wall_time=float(decoded.wall_times[index]),
            seconds=rows.seconds,
            layers=[acts.names[j] for j in rows.layers.tolist()],
            types=[acts.types[j] for j in rows.layers.tolist()],
            activation_statistics=[acts.statistics[k] for k in rows.activation_columns.tolist()],
            activations=_json_rows(activation_values),
            counts=rows.counts.tolist(),
            channels=rows.channels.tolist(),
            dead_channels=rows.dead_channels.tolist(),
            eigenvalue_counts=rows.eigenvalue_counts.tolist(),
            covariance_samples=rows.covariance_samples.tolist(),
            parameters=[params.names[j] for j in rows.parameters.tolist()],
            parameter_statistics=[params.statistics[k] for k in rows.parameter_columns.tolist()],
            parameter_values=_json_rows(parameter_values),
            without_gradient=[
                params.names[j] for j in rows.parameters[rows.without_gradient].tolist()
            ],
        )
        return responses.prepare_json_text(responses.json_text(body))

    @werkzeug.wrappers.Request.application
    def _serve_step(self, request):
        example = "layer_statistics_step?run=RUN&tag=TAG&step=STEP"
        run = responses.required_arg(request, "run", example)
        tag = responses.required_arg(request, "tag", example)
        step = responses.int_arg(request, "step")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        return responses.respond_json_text(request, self.step_body(ctx, experiment, run, tag, step))

    # ------------------------------------------------------------- layer_statistics_spectrum

    def spectrum_body(
        self, ctx, experiment: str, run: str, tag: str, layer: str, fmt: str = "json"
    ) -> responses.PreparedJson:
        """The `layer_statistics_spectrum` response (docs/http_api.md): one row's
        covariance eigenvalues over the steps that have them."""
        return self._remembered(
            ctx,
            experiment,
            run,
            tag,
            ("spectrum", layer, fmt),
            lambda decoded, plugin_data: self._make_spectrum(
                decoded, plugin_data, run, tag, layer, fmt
            ),
        )

    def _make_spectrum(
        self, decoded: LayerStatistics, plugin_data, run: str, tag: str, layer: str, fmt: str
    ) -> responses.PreparedJson:
        acts = decoded.activations
        try:
            j = acts.names.index(layer)
        except ValueError:
            with_spectra = sorted(
                {
                    acts.names[r]
                    for rows in decoded.rows
                    for r in rows.layers[rows.eigenvalue_counts > 0]
                },
                key=acts.names.index,
            )
            raise errors.NotFoundError(
                f"tag {responses.echo(tag)} of run {responses.echo(run)} has no layer "
                f"{responses.echo(layer)}{_close_matches(layer, acts.names)}; its layers with "
                f"spectra: {_listing(with_spectra) if with_spectra else 'none'}"
            ) from None
        metric_columns = [
            acts.statistics.index(m) if m in acts.statistics else None for m in _COVARIANCE_METRICS
        ]
        steps, wall_times, spectra, samples = [], [], [], []
        metrics: list[list[float]] = [[], [], []]
        for i, rows in enumerate(decoded.rows):
            where = np.flatnonzero(rows.layers == j)
            if not where.size:
                continue
            position = int(where[0])
            n = int(rows.eigenvalue_counts[position])
            if n == 0:
                continue
            start = int(rows.eigenvalue_counts[:position].sum())
            spectra.append(rows.eigenvalues[start : start + n])
            steps.append(int(decoded.steps[i]))
            wall_times.append(float(decoded.wall_times[i]))
            samples.append(int(rows.covariance_samples[position]))
            for m, column in enumerate(metric_columns):
                metrics[m].append(math.nan if column is None else float(acts.values[i, j, column]))
        warnings = list(decoded.warnings)
        if not steps:
            warnings.append(
                f"layer {responses.echo(layer)} has no covariance eigenvalues at any kept step"
            )
        body = {
            "run": run,
            "tag": tag,
            "layer": layer,
            "type": acts.types[j],
            "variance_threshold": responses.json_number(
                plugin_data.layer_statistics.variance_threshold
            ),
            "steps": steps,
            "wall_times": wall_times,
            "channels": [int(s.size) for s in spectra],
            "samples": samples,
            **{
                name: responses.json_numbers(values)
                for name, values in zip(_COVARIANCE_METRICS, metrics)
            },
            "warnings": warnings,
        }
        if fmt == "base64":
            width = max((s.size for s in spectra), default=0)
            padded = np.full((len(spectra), width), np.nan, dtype="<f4")
            for i, values in enumerate(spectra):
                padded[i, : values.size] = values
            body["eigenvalues"] = {"dtype": "float32", "shape": list(padded.shape), "base64": ""}
            return responses.prepare_base64_json(body, padded.tobytes(), "eigenvalues")
        body["eigenvalues"] = [responses.json_numbers(s) for s in spectra]
        return responses.prepare_json_text(responses.json_text(body))

    @werkzeug.wrappers.Request.application
    def _serve_spectrum(self, request):
        example = "layer_statistics_spectrum?run=RUN&tag=TAG&layer=LAYER"
        run = responses.required_arg(request, "run", example)
        tag = responses.required_arg(request, "tag", example)
        layer = responses.required_arg(request, "layer", example)
        fmt = responses.choice_arg(request, "format", tensor_kind.FORMATS, "json")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        return responses.respond_json_text(
            request, self.spectrum_body(ctx, experiment, run, tag, layer, fmt)
        )


def _find_step(steps: list[int], step: int | None, run: str, tag: str) -> int:
    """The kept step `step` (the newest when None); a 404 naming the nearest kept steps."""
    shown_tag, shown_run = responses.echo(tag), responses.echo(run)
    if not steps:
        raise errors.NotFoundError(f"tag {shown_tag} of run {shown_run} has no steps yet")
    if step is None:
        return steps[-1]
    index = int(np.searchsorted(steps, step))
    if index < len(steps) and steps[index] == step:
        return step
    nearest = ", ".join(str(s) for s in steps[max(index - 1, 0) : index + 1])
    raise errors.NotFoundError(
        f"tag {shown_tag} of run {shown_run} has no step {responses.cap(str(step))}; nearest "
        f"kept steps: {nearest} ({len(steps)} kept, from {steps[0]} to {steps[-1]})"
    )
