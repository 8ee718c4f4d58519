"""The spectrum routes: singular value spectra of layers' weights, step by step.

Each step of a spectrum series is a blob sequence whose first blob is a
serialized `SpectrumStep` (singular values FLOAT32 [groups, k], each row
descending; metrics; an error string when the step could not be measured).
Routes (documented in docs/http_api.md):

- `spectrum_steps?run&tag`: the kept steps of one series;
- `spectrum?run&tag[&step]`: one step's singular values (base64 float32),
  metrics and error;
- `spectrum_metrics?run[&tag...][&max_steps]`: every metric over steps for all
  spectrum layers of a run, in one request (the tab's table and sparklines);
- `spectrum_evolution?run&tag[&max_steps][&max_values]`: the spectra of all
  kept steps of one series (the tab's heatmap), downsampled on the server.

A step may hold only the top k singular values of a big matrix
(`SpectrumStep.coverage`: "top_k", or "norm_only" for the norm alone), served
with its coverage so that the tab says so; its metrics that need the whole
spectrum are NaN. A conv layer's step may also carry its operator spectrum
(`SpectrumStep.operator`: the singular values of the map the layer applies,
for circular padding, on the input size it saw): served as `operator` in
`spectrum` (norm, top values, quantiles) and as `operator` series in
`spectrum_metrics`, beside the im2col matrix's. A damaged operator (sizes,
unsorted or negative values, quantiles that do not fit their levels, a norm
that is not its largest value) makes the whole step damaged.

A step written "unchanged" (`SpectrumStep.unchanged`: the weight was bit for
bit the one measured at `unchanged_since_step`) is served as that step's
spectrum and metrics, with `unchanged_since_step` set; when TensorBoard did not
keep that step, the unchanged step is served as an error saying so.

Arguments, the steps listing, decoding, caching (by blob key) and the
damaged-step policy come from `blob_kind.BlobKindRoutes`; blobs not yet cached
are fetched in parallel: the Rust data server answers each read RPC in
milliseconds to tens of milliseconds. A step that cannot be decoded or fails
validation (sizes, shapes against the series' `matrix_shape`, negative or
unsorted singular values, integer metrics beyond the values' count) is served
as a step with an error, as a step that could not be measured is.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from google.protobuf import json_format
from tensorboard import errors
from tensorboard.data import provider

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import blob_kind, blob_steps, responses, series
from deepscope.tb_plugin.blob_kind import Base64Json, Query, Series, Step, StepError

KIND = "spectrum"
# SpectrumMetrics' fields, in schema order: the names the routes use.
METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in pb.SpectrumMetrics.DESCRIPTOR.fields)
_INTEGER_METRICS = frozenset(
    f.name for f in pb.SpectrumMetrics.DESCRIPTOR.fields if f.cpp_type in (f.CPPTYPE_UINT64,)
)
# Flags (condition_number_is_bound): served as JSON booleans, false for a failed step.
_BOOLEAN_METRICS = frozenset(
    f.name for f in pb.SpectrumMetrics.DESCRIPTOR.fields if f.cpp_type == f.CPPTYPE_BOOL
)
# SpectrumCoverage values by the names the routes use.
COVERAGE_NAMES = {
    pb.SPECTRUM_COVERAGE_FULL: "full",
    pb.SPECTRUM_COVERAGE_TOP_K: "top_k",
    pb.SPECTRUM_COVERAGE_NORM_ONLY: "norm_only",
}
# The operator's numbers served over steps by spectrum_metrics.
OPERATOR_METRICS = ("operator_norm", "frobenius_norm", "stable_rank")
# How far a stored operator norm may be from its float32 largest value (float32 rounding).
_NORM_RTOL = 1e-5
DEFAULT_EVOLUTION_STEPS = 200
DEFAULT_EVOLUTION_VALUES = 256
CACHE_BYTES = 64 * 1024 * 1024
_LAYERS_KEPT = 4096  # layers' spectrum_metrics JSON remembered (a few kB each)
_BODY_BYTES = 16 * 1024 * 1024  # gzipped spectrum_metrics responses remembered


@dataclasses.dataclass(frozen=True)
class DecodedOperator:
    """A step's validated `OperatorSpectrum` (a conv layer's operator spectrum).

    `top_values` float32 [k] descending (empty when `norm_only`), `quantiles`
    float32 [Q] at `quantile_levels` (ascending, each in [0, 1]); `error` is ""
    when it was measured.
    """

    input_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding_rule: str
    operator_norm: float
    norm_only: bool
    top_values: np.ndarray
    quantiles: np.ndarray
    quantile_levels: tuple[float, ...]
    count: int
    frobenius_norm: float
    stable_rank: float
    grid_size: tuple[int, ...]
    seconds: float
    error: str

    def json(self) -> dict:
        """As the `spectrum` route serves it (non-finite numbers spelled out)."""
        return {
            "input_size": list(self.input_size),
            "stride": list(self.stride),
            "padding_rule": self.padding_rule,
            "operator_norm": responses.json_number(self.operator_norm),
            "norm_only": self.norm_only,
            "count": self.count,
            "frobenius_norm": responses.json_number(self.frobenius_norm),
            "stable_rank": responses.json_number(self.stable_rank),
            "grid_size": list(self.grid_size),
            "seconds": self.seconds,
            "error": self.error or None,
            "top_values": responses.json_numbers(self.top_values),
            "quantiles": responses.json_numbers(self.quantiles),
            "quantile_levels": list(self.quantile_levels),
        }

    def facts(self) -> dict:
        """What spectrum_metrics says once per layer (of the layer's last operator)."""
        return {
            "input_size": list(self.input_size),
            "stride": list(self.stride),
            "padding_rule": self.padding_rule,
            "grid_size": list(self.grid_size),
            "count": self.count,
        }


def _sizes(values, what: str, dims: int | None) -> tuple[int, ...]:
    sizes = tuple(int(n) for n in values)
    if not 1 <= len(sizes) <= 3 or any(n < 1 for n in sizes):
        raise StepError(f"operator {what} {list(sizes)}: expected 1 to 3 positive sizes")
    if dims is not None and len(sizes) != dims:
        raise StepError(f"operator {what} {list(sizes)} of another dimension than its input")
    return sizes


def _vector(message, has: bool, what: str) -> np.ndarray:
    if not has:
        return np.zeros(0, np.float32)
    try:
        values = arrays.decode_array(message)
    except ValueError as error:
        raise StepError(f"malformed operator {what} ({error})") from None
    if values.ndim != 1:
        raise StepError(f"operator {what} of shape {list(values.shape)}, expected [k]")
    return np.asarray(values, dtype=np.float32)


def decode_operator(op: pb.OperatorSpectrum) -> DecodedOperator:
    """Validate a step's `OperatorSpectrum`.

    Raises:
      StepError: sizes that are not 1 to 3 positive integers of one dimension;
        top values that are negative, non-finite or not descending, or more than
        `count`; quantiles not one per level, levels outside [0, 1] or not
        ascending, quantiles decreasing or negative; an operator norm that is
        negative, not finite, or not its largest value; a norm-only operator with
        values. A measured operator's error is no damage: it is served.
    """
    size = _sizes(op.input_size, "input_size", None)
    stride = _sizes(op.stride, "stride", len(size)) if len(op.stride) else (1,) * len(size)
    grid = _sizes(op.grid_size, "grid_size", len(size)) if len(op.grid_size) else ()
    top = _vector(op.top_values, op.HasField("top_values"), "top values")
    quantiles = _vector(op.quantiles, op.HasField("quantiles"), "quantiles")
    levels = tuple(float(q) for q in op.quantile_levels)
    decoded = DecodedOperator(
        size,
        stride,
        op.padding_rule,
        float(op.operator_norm),
        bool(op.norm_only),
        top,
        quantiles,
        levels,
        int(op.count),
        float(op.frobenius_norm),
        float(op.stable_rank),
        grid,
        float(op.seconds),
        op.error,
    )
    if op.error:
        return decoded
    norm = decoded.operator_norm
    if not math.isfinite(norm) or norm < 0:
        raise StepError(f"an operator norm of {norm} without an error (a damaged log?)")
    if op.norm_only and (top.size or quantiles.size):
        raise StepError("a norm-only operator spectrum that holds values (a damaged log?)")
    if top.size:
        if not np.all(np.isfinite(top)) or np.any(top < 0):
            raise StepError("operator singular values that are not finite and non-negative")
        if np.any(np.diff(top) > 0):
            raise StepError("operator singular values that do not descend (a damaged log?)")
        if decoded.count and top.size > decoded.count:
            raise StepError(f"{top.size} top operator singular values of {decoded.count}")
        if abs(float(top[0]) - norm) > _NORM_RTOL * max(norm, float(top[0])):
            raise StepError(
                f"an operator norm {norm:.6g} that is not its largest singular value "
                f"{float(top[0]):.6g} (a damaged log?)"
            )
    if quantiles.size != len(levels):
        raise StepError(f"{quantiles.size} operator quantiles for {len(levels)} levels")
    if levels:
        if any(not 0.0 <= q <= 1.0 for q in levels) or any(
            b <= a for a, b in zip(levels, levels[1:])
        ):
            raise StepError("operator quantile levels that are not ascending in [0, 1]")
        if not np.all(np.isfinite(quantiles)) or np.any(quantiles < 0):
            raise StepError("operator quantiles that are not finite and non-negative")
        if np.any(np.diff(quantiles) < 0):
            raise StepError("operator quantiles that decrease (a damaged log?)")
        if levels[-1] == 1.0 and abs(float(quantiles[-1]) - norm) > _NORM_RTOL * max(
            norm, float(quantiles[-1])
        ):
            raise StepError("an operator norm that is not its spectrum's largest quantile")
    return decoded


@dataclasses.dataclass(frozen=True)
class DecodedSpectrum:
    """One decoded `SpectrumStep`.

    `singular_values` is float32 [groups, k] (each row descending), empty [0, 0]
    when the step holds none; `metrics` maps each `SpectrumMetrics` field to a
    float (NaN/inf kept); `error` is "" for a good step. `unchanged_since` is the
    step whose spectrum this step repeats (the weight did not change), else None;
    once resolved (`resolved`), values and metrics are that step's.
    """

    singular_values: np.ndarray
    metrics: dict[str, float]
    error: str
    seconds: float
    unchanged_since: int | None = None
    resolved: bool = False
    coverage: str = "full"
    operator: DecodedOperator | None = None
    # The series' first good step, its metrics and coverage (`SpectrumStep.start`), when
    # the writer stored it: (step, {"effective_rank", "stable_rank", "num_above_mp_edge",
    # "spectral_norm"}, coverage); None otherwise, or when it holds no usable numbers.
    start: tuple[int, dict[str, float], str] | None = None

    @property
    def non_finite(self) -> int:
        """How many singular values are NaN or infinite."""
        return int((~np.isfinite(self.singular_values)).sum())

    @property
    def nbytes(self) -> int:
        return self.singular_values.nbytes + 64 * len(self.metrics) + len(self.error) + 200


def damaged_spectrum(error: str) -> DecodedSpectrum:
    """A step that holds no usable spectrum, carrying `error` (its metrics NaN)."""
    return DecodedSpectrum(
        np.zeros((0, 0), np.float32), {name: math.nan for name in METRIC_NAMES}, error, 0.0
    )


def decode_spectrum_step(data: bytes, info: pb.SpectrumInfo | None = None) -> DecodedSpectrum:
    """Decode and validate a `SpectrumStep` blob.

    Raises:
      StepError: the blob is no SpectrumStep, its singular values are malformed
        (bytes, dtype, shape), not [groups, min(rows, cols)] of the series'
        `matrix_shape`, negative or not descending, or an integer metric counts
        more singular values than the step holds.
    """
    try:
        step = pb.SpectrumStep.FromString(data)
    except Exception as error:  # protobuf's DecodeError
        raise StepError(f"not a readable SpectrumStep ({responses.cap(str(error))})") from None
    try:
        values = (
            arrays.decode_array(step.singular_values)
            if step.HasField("singular_values")
            else np.zeros((0, 0), np.float32)
        )
    except ValueError as error:
        raise StepError(f"malformed singular values ({error})") from None
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values.reshape(1, -1)
    elif values.ndim != 2:
        raise StepError(f"singular values of shape {list(values.shape)}, expected [groups, k]")
    coverage = COVERAGE_NAMES.get(step.coverage)
    if coverage is None:
        raise StepError(f"an unknown coverage {step.coverage} (written by a newer deepscope?)")
    _check_values(values, info, partial=coverage != "full")
    operator = decode_operator(step.operator) if step.HasField("operator") else None
    if not values.size and not step.error and not step.unchanged:
        raise StepError("the step holds no singular values and no error (an empty payload?)")
    start = _start(step)
    if step.unchanged:
        return DecodedSpectrum(
            values,
            {name: math.nan for name in METRIC_NAMES},
            step.error,
            float(step.seconds),
            unchanged_since=int(step.unchanged_since_step),
            coverage=coverage,
            operator=operator,
            start=start,
        )
    if step.HasField("metrics") and not step.error:
        metrics = {name: float(getattr(step.metrics, name)) for name in METRIC_NAMES}
        # A count of singular values cannot exceed how many there are: those the step holds,
        # or, for the top k of a big matrix, those of the series' matrices.
        limit = values.size if coverage == "full" else _singular_value_count(info)
        for name in _INTEGER_METRICS:
            if limit and metrics[name] > limit:
                raise StepError(
                    f"{name} = {metrics[name]:.0f} of a step holding {limit} singular values"
                )
    else:  # a failed step's metrics mean nothing
        metrics = {name: math.nan for name in METRIC_NAMES}
    return DecodedSpectrum(
        values,
        metrics,
        step.error,
        float(step.seconds),
        coverage=coverage,
        operator=operator,
        start=start,
    )


START_METRICS = ("effective_rank", "stable_rank", "num_above_mp_edge", "spectral_norm")


def _start(step: pb.SpectrumStep) -> tuple[int, dict[str, float], str] | None:
    """The step's `start` summary, or None when absent, of an unknown coverage, or not
    finite and non-negative (an unusable summary is not used: a reader then lists the
    steps, as for old series)."""
    if not step.HasField("start"):
        return None
    numbers = {name: float(getattr(step.start, name)) for name in START_METRICS}
    coverage = COVERAGE_NAMES.get(step.start.coverage)
    if coverage is None or step.start.step < 0:
        return None
    if not all(math.isfinite(v) and v >= 0 for v in numbers.values()):
        return None
    return int(step.start.step), numbers, coverage


def _singular_value_count(info: pb.SpectrumInfo | None) -> int:
    """groups * min(rows, cols) of the series' matrices (0 when unknown)."""
    shape = [int(n) for n in info.matrix_shape] if info is not None else []
    return shape[0] * min(shape[1], shape[2]) if len(shape) == 3 else 0


def _check_values(values: np.ndarray, info: pb.SpectrumInfo | None, partial: bool = False) -> None:
    """Singular values [groups, k] must fit the series' matrix shape, be >= 0 and descend
    (a `partial` step, top k only, holds at most k per group)."""
    if not values.size:
        return
    shape = [int(n) for n in info.matrix_shape] if info is not None else []
    if len(shape) == 3 and shape[0] * min(shape[1], shape[2]) > 0:
        want = [shape[0], min(shape[1], shape[2])]
        fits = values.shape[0] == want[0] and values.shape[1] <= want[1]
        if partial and not fits:
            raise StepError(
                f"top singular values of shape {list(values.shape)}; the series' matrices "
                f"{shape} have at most {want}"
            )
        if not partial and list(values.shape) != want:
            raise StepError(
                f"singular values of shape {list(values.shape)}; the series' matrices "
                f"{shape} have {want}"
            )
    if np.any(values < 0):
        raise StepError("negative singular values (a damaged log?)")
    with np.errstate(invalid="ignore"):
        rising = np.diff(values, axis=1) > 0  # NaN (last, as written) compares false
    if np.any(rising) or np.any(np.isnan(values[:, :-1]) & ~np.isnan(values[:, 1:])):
        raise StepError("singular values that do not descend (a damaged log?)")


def repeated_step(item: DecodedSpectrum, since: DecodedSpectrum | None) -> DecodedSpectrum:
    """An unchanged step served as the step it repeats (`since`; None when not kept)."""
    step = item.unchanged_since
    if since is None:
        return dataclasses.replace(
            item,
            error=(
                f"unchanged since step {step}, which TensorBoard did not keep (raise "
                "--samples_per_plugin=deepscope=N, 0 keeps all)"
            ),
            resolved=True,
        )
    if since.unchanged_since is not None and not since.resolved:
        since = dataclasses.replace(since, error=f"step {step} is itself unchanged", resolved=True)
    return DecodedSpectrum(
        since.singular_values,
        since.metrics,
        since.error,
        item.seconds,
        unchanged_since=step,
        resolved=True,
        coverage=since.coverage,
        operator=since.operator,
        start=item.start,
    )


def merged_spectrum(values: np.ndarray) -> np.ndarray:
    """The spectrum of the whole layer: all groups' singular values, descending, float32 [n].

    A grouped convolution is block diagonal over its groups, so its singular
    values are the union of the groups'. NaN sort last.
    """
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    order = np.argsort(-np.nan_to_num(flat, nan=-np.inf, posinf=np.inf), kind="stable")
    return flat[order]


def even_indices(count: int, limit: int) -> np.ndarray:
    """At most `limit` indices spread evenly over range(count), first and last included."""
    if count <= limit:
        return np.arange(count)
    if limit == 1:
        return np.array([count - 1])
    return np.unique(np.round(np.linspace(0, count - 1, limit)).astype(np.int64))


def metric_json(name: str, value: float) -> float | int | str | bool:
    """A metric for JSON: counts as integers, flags as booleans, non-finite values spelled out."""
    if name in _BOOLEAN_METRICS:
        return bool(value == 1.0)  # NaN (a failed step) is false
    if name in _INTEGER_METRICS and math.isfinite(value):
        return int(value)
    return responses.json_number(value)


def info_json(plugin_data: pb.PluginData) -> dict:
    """A series' SpectrumInfo as JSON, int64 shapes as numbers."""
    info = json_format.MessageToDict(
        plugin_data.spectrum,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    for key in ("weight_shape", "matrix_shape"):
        info[key] = [int(n) for n in info.get(key, [])]
    return info


def operator_series(steps: list[blob_steps.BlobStep], items: list[DecodedSpectrum]) -> dict | None:
    """A conv layer's operator numbers over its steps (spectrum_metrics), None without any.

    `metrics[name][i]` is the operator's `name` at `steps[i]` ("NaN" where that step has no
    operator, or a failed one); `norm_only[i]` whether it is the norm alone (null where
    none); `errors` the `[step, message]` of failed ones; `facts` the last operator's
    input size, stride, padding rule, grid and count.
    """
    operators = [None if item.error else item.operator for item in items]
    if all(op is None for op in operators):
        return None
    last = next(op for op in reversed(operators) if op is not None)
    measured = [op if op is not None and not op.error else None for op in operators]
    return {
        "facts": last.facts(),
        "metrics": {
            name: [
                responses.json_number(math.nan if op is None else getattr(op, name))
                for op in measured
            ]
            for name in OPERATOR_METRICS
        },
        "norm_only": [None if op is None else op.norm_only for op in measured],
        "errors": [[s.step, op.error] for s, op in zip(steps, operators) if op and op.error],
    }


class SpectrumRoutes(blob_kind.BlobKindRoutes):
    """Routes serving spectrum series (see the module docstring)."""

    KIND = KIND
    CACHE_CAPACITY = CACHE_BYTES

    def __init__(self, context):
        super().__init__(context)
        # spectrum_metrics' JSON of a layer, by its kept steps' blob keys (see metrics).
        self._layer_json = blob_steps.LRUCache(_LAYERS_KEPT)
        # Whole spectrum_metrics responses, by their layers' keys (a warm repeat: no work).
        self._metrics_bodies = blob_steps.LRUCache(_BODY_BYTES, weigh=lambda body: body.nbytes)

    # ------------------------------------------------------------------ the kind's parts

    def decode(self, data: bytes, info: pb.SpectrumInfo) -> DecodedSpectrum:
        return decode_spectrum_step(data, info)

    def weigh(self, decoded: DecodedSpectrum) -> int:
        return decoded.nbytes

    def as_damaged(self, error: str) -> DecodedSpectrum:
        return damaged_spectrum(error)

    def series_facts(self, series: Series) -> dict:
        return {"info": info_json(series.plugin_data)}

    def example(self, route: str) -> str:
        return "spectrum_metrics?run=RUN" if route == "spectrum_metrics" else super().example(route)

    def step_routes(self) -> dict:
        return {"spectrum": self.spectrum}

    def series_routes(self) -> dict:
        return {"spectrum_metrics": self.metrics, "spectrum_evolution": self.evolution}

    # ------------------------------------------------------------------ reading

    def _resolved(
        self,
        wanted: dict[str, tuple[Series, list[blob_steps.BlobStep]]],
        kept: dict[str, list[blob_steps.BlobStep]],
    ) -> dict[str, list[DecodedSpectrum]]:
        """The decoded `wanted` steps of each tag, unchanged steps served as the step they
        repeat (looked up in the tag's `kept` steps, fetched with the rest)."""
        flat = [(series, s) for series, tag_steps in wanted.values() for s in tag_steps]
        decoded = iter(self.read_many(flat))
        items = {tag: [next(decoded) for _ in wanted[tag][1]] for tag in wanted}
        if not any(item.unchanged_since is not None for tag in items for item in items[tag]):
            return items
        references: list[tuple[Series, blob_steps.BlobStep]] = []
        for tag, tag_items in items.items():
            by_step = {s.step: s for s in kept[tag]}
            for item in tag_items:
                if item.unchanged_since is not None and item.unchanged_since in by_step:
                    references.append((wanted[tag][0], by_step[item.unchanged_since]))
        found = dict(zip([id(s) for _, s in references], self.read_many(references)))
        for tag, tag_items in items.items():
            by_step = {s.step: s for s in kept[tag]}
            for i, item in enumerate(tag_items):
                if item.unchanged_since is None:
                    continue
                reference = by_step.get(item.unchanged_since)
                since = found.get(id(reference)) if reference is not None else None
                tag_items[i] = repeated_step(item, since)
        return items

    # ------------------------------------------------------------------ routes

    def spectrum(self, series: Series, step: Step, query: Query) -> Base64Json:
        """One step's singular values, metrics and error (`spectrum?run&tag[&step]`)."""
        item: DecodedSpectrum = step.decoded
        if item.unchanged_since is not None:  # served as the step it repeats, when kept
            kept = {s.step: s for s in self.list_steps(series)}
            reference = kept.get(item.unchanged_since)
            since = self.read_many([(series, reference)])[0] if reference is not None else None
            item = repeated_step(item, since)
        values = item.singular_values
        body = {
            "info": info_json(series.plugin_data),
            "metrics": {n: metric_json(n, v) for n, v in item.metrics.items()},
            "error": item.error or None,
            "non_finite": item.non_finite,
            "seconds": item.seconds,
            "unchanged_since_step": item.unchanged_since,
            "coverage": item.coverage,
            "operator": None if item.operator is None else item.operator.json(),
            "singular_values": {"dtype": "float32", "shape": list(values.shape), "base64": ""},
        }
        return Base64Json(body, values.astype("<f4").tobytes(), slot_key="singular_values")

    def metrics(self, query: Query) -> responses.PreparedJson:
        """Every metric over steps for all (or the named) spectrum layers of a run."""
        run = responses.required_arg(query, "run", "spectrum_metrics?run=RUN")
        max_steps = responses.int_arg(query, "max_steps", default=0, minimum=0)
        ctx, experiment = query.ctx, query.experiment
        tags = query.args.getlist("tag")
        if tags:
            found = {tag: self.find(query, run, tag) for tag in tags}
        else:
            found = {
                tag: Series(run, tag, experiment, ctx, plugin_data, plugin_data.spectrum)
                for tag, plugin_data in self._spectrum_tags(ctx, experiment, run).items()
            }
        listing = self._listings.list_tags(ctx, experiment, run, list(found))
        per_tag: dict[str, tuple[Series, list[blob_steps.BlobStep]]] = {}
        # A layer's JSON depends only on its steps' blobs (whose bytes never change) and on
        # which steps are kept (an unchanged step's reference may be dropped): remembered
        # by those, a warm request of a 75-layer x 50-step run reuses every layer's JSON
        # text (json.dumps of its 50,000 numbers was most of a warm request's time).
        keys: dict[str, tuple] = {}
        layers: dict[str, bytes] = {}
        for tag in found:
            kept = listing[tag]
            keys[tag] = (experiment, run, tag, max_steps, tuple(s.blob_keys for s in kept))
            cached = self._layer_json.get(keys[tag])
            if cached is not None:
                layers[tag] = cached
                continue
            if max_steps:
                kept = [kept[i] for i in even_indices(len(kept), max_steps)]
            per_tag[tag] = (found[tag], kept)
        # One parallel fetch over every layer's uncached steps.
        decoded_by_tag = self._resolved(per_tag, listing) if per_tag else {}
        for tag in per_tag:
            kept, items = per_tag[tag][1], decoded_by_tag[tag]
            layer = {
                "info": info_json(found[tag].plugin_data),
                "steps": [s.step for s in kept],
                "wall_times": [s.wall_time for s in kept],
                "metrics": {
                    name: [metric_json(name, item.metrics[name]) for item in items]
                    for name in METRIC_NAMES
                },
                "errors": [[s.step, item.error] for s, item in zip(kept, items) if item.error],
                "non_finite": [
                    [s.step, item.non_finite] for s, item in zip(kept, items) if item.non_finite
                ],
                "unchanged": [
                    [s.step, item.unchanged_since]
                    for s, item in zip(kept, items)
                    if item.unchanged_since is not None
                ],
                "coverage": [item.coverage for item in items],
                "operator": operator_series(kept, items),
            }
            layers[tag] = responses.json_text(layer)
            self._layer_json.put(keys[tag], layers[tag])
        whole_key = (run, tuple(keys[tag] for tag in sorted(keys)))
        cached_body = self._metrics_bodies.get(whole_key)
        if cached_body is not None and not per_tag:
            return cached_body
        # The body is spliced from the layers' JSON texts: {"run", "metric_names", "layers"}.
        entries = b",".join(responses.json_text(tag) + b":" + layers[tag] for tag in sorted(layers))
        text = b"".join(
            [
                b'{"run":',
                responses.json_text(run),
                b',"metric_names":',
                responses.json_text(list(METRIC_NAMES)),
                b',"layers":{',
                entries,
                b"}}",
            ]
        )
        body = responses.prepare_json_text(text)
        self._metrics_bodies.put(whole_key, body)
        return body

    def evolution(self, query: Query) -> Base64Json:
        """The spectra of all kept steps of one layer, sampled (`spectrum_evolution`)."""
        series = self.series(query, "spectrum_evolution?run=RUN&tag=TAG")
        max_steps = responses.int_arg(query, "max_steps", DEFAULT_EVOLUTION_STEPS, minimum=1)
        max_values = responses.int_arg(query, "max_values", DEFAULT_EVOLUTION_VALUES, minimum=1)
        all_steps = self.list_steps(series)
        kept = [all_steps[i] for i in even_indices(len(all_steps), max_steps)]
        (items,) = self._resolved({series.tag: (series, kept)}, {series.tag: all_steps}).values()
        shape = [int(n) for n in series.info.matrix_shape]
        if len(shape) == 3 and shape[0] * min(shape[1], shape[2]) > 0:
            total = shape[0] * min(shape[1], shape[2])
        else:  # no shape in the metadata: the widest step's
            total = max((item.singular_values.size for item in items), default=0)
        index = even_indices(total, max_values)
        matrix = np.full((len(kept), len(index)), np.nan, dtype=np.float32)
        errors_out = []
        for row, (step, item) in enumerate(zip(kept, items)):
            error = item.error
            if not error and item.coverage != "full":
                # The top k of each group: the merged spectrum's first k ranks are exact.
                k = item.singular_values.shape[1] if item.singular_values.ndim == 2 else 0
                merged = merged_spectrum(item.singular_values)[:k]
                matrix[row] = np.where(index < k, merged[np.minimum(index, max(k - 1, 0))], np.nan)
                if not k:
                    matrix[row] = np.nan
                continue
            if not error and item.singular_values.size != total:
                error = (
                    f"holds {item.singular_values.size} singular values, the series "
                    f"{total}; left out"
                )
            if error:
                errors_out.append([step.step, error])
                if item.singular_values.size != total:
                    continue
            matrix[row] = merged_spectrum(item.singular_values)[index]
        body = {
            "run": series.run,
            "tag": series.tag,
            "info": info_json(series.plugin_data),
            "total_steps": len(all_steps),
            "total_values": int(total),
            "steps": [s.step for s in kept],
            "wall_times": [s.wall_time for s in kept],
            "index": index.tolist(),
            "errors": errors_out,
            "unchanged": [
                [s.step, item.unchanged_since]
                for s, item in zip(kept, items)
                if item.unchanged_since is not None
            ],
            "partial": [
                [s.step, item.coverage] for s, item in zip(kept, items) if item.coverage != "full"
            ],
            "values": {"dtype": "float32", "shape": list(matrix.shape), "base64": ""},
        }
        return Base64Json(body, matrix.astype("<f4").tobytes())

    def _spectrum_tags(self, ctx, experiment: str, run: str) -> dict[str, pb.PluginData]:
        """Every readable spectrum tag of `run` (one listing RPC); a 404 for an unknown run."""
        listing = series.list_series(
            self._context.data_provider, ctx, experiment, provider.RunTagFilter(runs=[run])
        )
        if run not in listing:
            known = self._context.catalog.list(ctx, experiment)
            names = ", ".join(repr(r) for r in sorted(known)) or "none"
            raise errors.NotFoundError(
                f"no run named {responses.echo(run)} has deepscope data; runs with deepscope "
                f"data: {names}"
            )
        return {
            tag: info.plugin_data
            for tag, info in listing[run].items()
            if info.kind == KIND and info.plugin_data is not None
        }
