"""Jacobian spectra on the read side: decode a Jacobian series, serve `jacobian` and
`jacobian_spectrum`.

A Jacobian series (`add_jacobian_singular_values`, watch()'s `JacobianSpectra`)
is a tensor series: each event is a DT_STRING scalar holding one
`JacobianStep`: its maps (module names, "" for the whole network), their input
and output dims, the singular values per map and probe sample (float32
[M, S, K], descending, NaN-padded), the mean squared singular value and
log|det J| per map and sample, each map's error.

- `jacobian`: per map over steps, summaries over the probe samples: σ_max
  (mean and population std), the smallest value stored (σ_min where the
  spectrum is whole, else the k-th largest), the mean squared singular value
  (mean, std) and log|det J| (mean, std; square maps only); each map's errors.
- `jacobian_spectrum`: one step's values per map and sample (the whole
  network's spectrum among them), the newest step by default.

Damaged data (deepscope's one policy): an event that cannot be read or fails
validation (payload type, the message, dtypes, shapes against the maps and
each other, negative or unsorted singular values, dims, wall time) drops
only its own row of `jacobian`, named in its `warnings`; `jacobian_spectrum`
at that step answers 200 with the step's `error`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import werkzeug
from tensorboard import plugin_util

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import responses, tensor_kind
from deepscope.tb_plugin.tensor_kind import MalformedEvent, dtype_name

KIND = "jacobian"
_FLOAT_DTYPES = (pb.FLOAT32, pb.FLOAT16, pb.FLOAT64)
_INT_DTYPES = (pb.INT64, pb.INT32)
# The display name of the whole network's map ("" in the data).
NETWORK_LABEL = "network"


@dataclasses.dataclass(frozen=True)
class JacobianStepData:
    """One decoded step: M maps on S probe samples, K values each."""

    maps: tuple[str, ...]
    dims: np.ndarray  # int64 [M, 2]: input, output dim
    full: tuple[bool, ...]
    singular_values: np.ndarray  # float32 [M, S, K]
    mean_squared: np.ndarray  # float32 [M, S]
    log_abs_det: np.ndarray  # float32 [M, S]
    errors: tuple[str, ...]
    seconds: float

    @property
    def nbytes(self) -> int:
        arrays_bytes = sum(
            a.nbytes for a in (self.dims, self.singular_values, self.mean_squared, self.log_abs_det)
        )
        return arrays_bytes + sum(len(n) + len(e) + 100 for n, e in zip(self.maps, self.errors))


# A decoded Jacobian series: the good steps in order, and the damaged ones' errors.
JacobianSeries = tensor_kind.DecodedSeries[JacobianStepData]


def _array(message: pb.Array, what: str, dtypes, shape: tuple[int, ...]) -> np.ndarray:
    if message.dtype not in dtypes:
        raise MalformedEvent(
            f"{what} of dtype {dtype_name(message.dtype)}, not "
            + " or ".join(pb.DType.Name(d) for d in dtypes)
        )
    try:
        values = arrays.decode_array(message)
    except ValueError as error:
        raise MalformedEvent(f"{what}: {error}") from None
    if values.shape != shape:
        raise MalformedEvent(f"{what} of shape {list(values.shape)}, needs {list(shape)}")
    return values


def decode_step(payload) -> JacobianStepData:
    """One event's tensor value (a string scalar holding a `JacobianStep`), checked.

    Raises:
      MalformedEvent: what is wrong with it.
    """
    content = tensor_kind.string_payload(payload, "JacobianStep")
    try:
        step = pb.JacobianStep.FromString(content)
    except Exception as error:  # protobuf raises DecodeError or RuntimeError
        raise MalformedEvent(f"the payload does not parse as a JacobianStep ({error})") from None
    maps = tuple(step.maps)
    count = len(maps)
    if not count:
        raise MalformedEvent("the step names no maps")
    if len(set(maps)) != count:
        seen: set[str] = set()
        repeated = next(name for name in maps if name in seen or seen.add(name))
        raise MalformedEvent(f"map {responses.echo(repeated or NETWORK_LABEL)} appears twice")
    map_errors = tuple(step.errors) if len(step.errors) else ("",) * count
    if len(map_errors) != count:
        raise MalformedEvent(f"{len(map_errors)} errors for {tensor_kind.count(count, 'map')}")
    full = tuple(step.full) if len(step.full) else (False,) * count
    if len(full) != count:
        raise MalformedEvent(f"{len(full)} 'full' flags for {tensor_kind.count(count, 'map')}")
    stored = step.singular_values
    if stored.dtype not in _FLOAT_DTYPES:
        raise MalformedEvent(
            f"singular values of dtype {dtype_name(stored.dtype)}, not FLOAT32 (or FLOAT16, "
            "FLOAT64)"
        )
    if len(stored.shape) != 3 or int(stored.shape[0]) != count:
        raise MalformedEvent(
            f"singular values of shape {list(stored.shape)}, needs [{count}, samples, values] "
            f"for {tensor_kind.count(count, 'map')}"
        )
    shape = tuple(int(n) for n in stored.shape)
    values = _array(stored, "singular values", _FLOAT_DTYPES, shape).astype(np.float32)
    samples, width = shape[1], shape[2]
    dims = _array(step.dims, "dims", _INT_DTYPES, (count, 2)).astype(np.int64)
    mean_squared = _array(step.mean_squared, "mean squared", _FLOAT_DTYPES, (count, samples))
    log_abs_det = _array(step.log_abs_det, "log|det|", _FLOAT_DTYPES, (count, samples))
    seconds = float(step.seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise MalformedEvent(f"seconds {seconds} is not a duration")
    for i, name in enumerate(maps):
        label = responses.echo(name or NETWORK_LABEL)
        if map_errors[i]:
            continue
        n, m = int(dims[i, 0]), int(dims[i, 1])
        if n < 1 or m < 1:
            raise MalformedEvent(f"map {label}: dims {[n, m]} are not positive")
        row = values[i]
        if np.any(row < 0):
            raise MalformedEvent(f"map {label}: a negative singular value {float(np.nanmin(row))}")
        if width > min(n, m) and np.any(~np.isnan(row[:, min(n, m) :])):
            raise MalformedEvent(
                f"map {label}: more than {min(n, m)} singular values for a {m} × {n} Jacobian"
            )
        with np.errstate(invalid="ignore"):
            rising = np.diff(np.where(np.isnan(row), -np.inf, row), axis=1) > 0
        if np.any(rising):
            raise MalformedEvent(f"map {label}: singular values are not descending")
        if np.any(mean_squared[i] < 0):
            raise MalformedEvent(f"map {label}: a negative mean squared singular value")
    return JacobianStepData(
        maps=maps,
        dims=dims,
        full=full,
        singular_values=values,
        mean_squared=np.asarray(mean_squared, dtype=np.float32),
        log_abs_det=np.asarray(log_abs_det, dtype=np.float32),
        errors=map_errors,
        seconds=seconds,
    )


def read_jacobian(
    data_provider, ctx, experiment_id: str, run: str, tag: str, downsample: int | None
) -> JacobianSeries:
    """Read and decode every kept step of a Jacobian series, in step order.

    Events that cannot be read are left out, each named in `warnings` and kept
    in `damaged` (step → what is wrong).
    """
    datums = tensor_kind.read_events(data_provider, ctx, experiment_id, run, tag, downsample)
    return tensor_kind.decode_series(datums, decode_step)


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and population std over the samples that have a value (NaN when none)."""
    values = np.asarray(values, dtype=np.float64)
    kept = values[~np.isnan(values)]
    if not kept.size:
        return math.nan, math.nan
    with np.errstate(invalid="ignore", over="ignore"):
        return float(kept.mean()), float(kept.std())


def _smallest(row: np.ndarray) -> np.ndarray:
    """Each sample's smallest stored value (the last non-NaN of a descending row)."""
    if row.shape[1] == 0:
        return np.full(row.shape[0], np.nan)
    counts = (~np.isnan(row)).sum(axis=1)
    found = np.full(row.shape[0], np.nan)
    has = counts > 0
    found[has] = row[has, counts[has] - 1]
    return found


_SUMMARIES = ("sigma_max", "sigma_min", "mean_squared", "log_abs_det")


def series_summaries(series: JacobianSeries) -> dict:
    """Per map (the union, in order of first appearance) over steps: the summaries
    over samples, as float64 [T, M] matrices (NaN where the map was not measured),
    the measured mask, `full`, the dims and errors."""
    columns: dict[str, int] = {}
    for data in series.data:
        for name in data.maps:
            columns.setdefault(name, len(columns))
    rows, width = len(series.data), len(columns)
    out = {f"{s}_{w}": np.full((rows, width), np.nan) for s in _SUMMARIES for w in ("mean", "std")}
    measured = np.zeros((rows, width), dtype=bool)
    full = np.zeros((rows, width), dtype=bool)
    dims: dict[str, list[int]] = {}
    map_errors: list[list] = []
    for r, data in enumerate(series.data):
        for i, name in enumerate(data.maps):
            c = columns[name]
            if data.errors[i]:
                map_errors.append([int(series.steps[r]), name, data.errors[i]])
                continue
            measured[r, c] = True
            full[r, c] = data.full[i]
            dims[name] = [int(data.dims[i, 0]), int(data.dims[i, 1])]
            sv = data.singular_values[i].astype(np.float64)
            per_sample = {
                "sigma_max": sv[:, 0] if sv.shape[1] else np.full(sv.shape[0], np.nan),
                "sigma_min": _smallest(sv),
                "mean_squared": data.mean_squared[i],
                "log_abs_det": data.log_abs_det[i],
            }
            for summary, values in per_sample.items():
                out[f"{summary}_mean"][r, c], out[f"{summary}_std"][r, c] = _mean_std(values)
    return {
        "maps": list(columns),
        "measured": measured,
        "full": full,
        "dims": dims,
        "errors": map_errors,
        **out,
    }


def _flags(full: np.ndarray, measured: np.ndarray) -> list[list[bool | None]]:
    """full [T, M] as nested lists of booleans, null where the map was not measured."""
    rows = full.tolist()
    for i, j in np.argwhere(~measured).tolist():
        rows[i][j] = None
    return rows


class JacobianRoutes(tensor_kind.TensorKindRoutes):
    """The `jacobian` and `jacobian_spectrum` routes (shared parts: `TensorKindRoutes`)."""

    KIND = KIND
    ROUTE = "jacobian"
    NOUN = "map"

    def apps(self) -> dict:
        return {f"/{self.ROUTE}": self._serve, "/jacobian_spectrum": self._serve_spectrum}

    def read(self, ctx, experiment: str, run: str, tag: str, plugin_data) -> JacobianSeries:
        return read_jacobian(
            self._context.data_provider, ctx, experiment, run, tag, self._context.downsample
        )

    def make_body(
        self, decoded: JacobianSeries, plugin_data, run: str, tag: str, fmt: str, wanted: list[str]
    ) -> responses.PreparedJson:
        """The `jacobian` response (docs/http_api.md) of a decoded series."""
        found = series_summaries(decoded)
        names = found["maps"]
        columns = self.select_columns(names, wanted, run, tag)
        pick = slice(None) if columns is None else columns
        measured = found["measured"][:, pick]
        body = {
            "run": run,
            "tag": tag,
            "output": plugin_data.jacobian.output,
            "steps": decoded.steps.tolist(),
            "wall_times": decoded.wall_times.tolist(),
            "seconds": [d.seconds for d in decoded.data],
            "maps": names if columns is None else list(wanted),
            "dims": {name: found["dims"].get(name) for name in (wanted or names)},
            "full": _flags(found["full"][:, pick], measured),
            "errors": [e for e in found["errors"] if not wanted or e[1] in wanted],
            "warnings": list(decoded.warnings),
        }
        for summary in _SUMMARIES:
            body[summary] = {
                which: tensor_kind.json_matrix(found[f"{summary}_{which}"][:, pick], ~measured)
                for which in ("mean", "std")
            }
        return responses.prepare_json_text(responses.json_text(body))

    def spectrum_body(self, ctx, experiment: str, run: str, tag: str, step: int | None) -> dict:
        """The `jacobian_spectrum` response: one step's values per map and sample."""
        plugin_data = self._context.catalog.find(ctx, experiment, run, tag, self.KIND)
        decoded = self.decoded(ctx, experiment, run, tag)
        chosen = tensor_kind.choose_step(decoded, run, tag, step)
        head = {
            "run": run,
            "tag": tag,
            "output": plugin_data.jacobian.output,
            "steps": chosen.kept,
        }
        step = chosen.step
        if chosen.row is None:
            return {**head, "step": step, "error": chosen.error, "maps": []}
        row = chosen.row
        data = decoded.data[row]
        maps = []
        for i, name in enumerate(data.maps):
            entry = {"name": name, "error": data.errors[i] or None}
            if not data.errors[i]:
                entry.update(
                    input_dim=int(data.dims[i, 0]),
                    output_dim=int(data.dims[i, 1]),
                    full=bool(data.full[i]),
                    singular_values=[
                        responses.json_numbers(sample) for sample in data.singular_values[i]
                    ],
                    mean_squared=responses.json_numbers(data.mean_squared[i]),
                    log_abs_det=responses.json_numbers(data.log_abs_det[i]),
                )
            maps.append(entry)
        return {
            **head,
            "step": step,
            "wall_time": float(decoded.wall_times[row]),
            "seconds": data.seconds,
            "error": None,
            "maps": maps,
        }

    @werkzeug.wrappers.Request.application
    def _serve_spectrum(self, request):
        example = "jacobian_spectrum?run=RUN&tag=TAG[&step=STEP]"
        run = responses.required_arg(request, "run", example)
        tag = responses.required_arg(request, "tag", example)
        step = responses.int_arg(request, "step")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        return responses.respond_json(request, self.spectrum_body(ctx, experiment, run, tag, step))
