"""Layer × layer CKA on the read side: decode a cka series, serve `cka` and `cka_series`.

A cka series (`deepscope.compare_cka`, `add_cka_matrix`) is a tensor series:
its metadata (`CkaInfo`) names the two networks and their layers (rows:
layers_a, columns: layers_b); each event is a DT_STRING scalar holding one
`CkaStep`, the float32 [L_a, L_b] matrix of linear CKA values (Kornblith et
al. 2019), the probe's sample count and the seconds it took.

- `cka`: one step (the newest by default): the matrix, each row's best
  match (the column of largest CKA) and the diagonal when both sides name the
  same layers;
- `cka_series`: every kept step's matrix, for the tab's step slider (a
  matrix of a few dozen layers is small); `name=` keeps some rows (layers_a).

Damaged data (deepscope's one policy): an event that cannot be read or fails
validation (payload type, the message, the matrix's dtype (FLOAT32), shape
against the layers, a value outside [0, 1] or infinite, a negative
`seconds`, the wall time) drops only its own step of `cka_series`, named in
its `warnings`; `cka` at that step answers 200 with the step's `error`.
NaN (a layer without variance over the probe) is "NaN" in the JSON.
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

KIND = "cka"
# CKA lies in [0, 1]; float32 rounding may pass either end by a few epsilons.
_SLACK = 4 * float(np.finfo(np.float32).eps)


@dataclasses.dataclass(frozen=True)
class CkaStepData:
    """One decoded step: the matrix (float64 [L_a, L_b], NaN allowed) and its facts."""

    matrix: np.ndarray
    samples: int
    seconds: float

    @property
    def nbytes(self) -> int:
        return self.matrix.nbytes + 100


CkaSeries = tensor_kind.DecodedSeries[CkaStepData]


def layers(plugin_data: pb.PluginData) -> tuple[list[str], list[str]]:
    """The series' (layers_a, layers_b)."""
    info = plugin_data.cka
    return list(info.layers_a), list(info.layers_b)


def decode_step(payload, shape: tuple[int, int]) -> CkaStepData:
    """One event's tensor value (a string scalar holding a `CkaStep`), checked against
    the series' layers.

    Raises:
      MalformedEvent: what is wrong with it.
    """
    content = tensor_kind.string_payload(payload, "CkaStep")
    try:
        step = pb.CkaStep.FromString(content)
    except Exception as error:  # protobuf raises DecodeError or RuntimeError
        raise MalformedEvent(f"the payload does not parse as a CkaStep ({error})") from None
    if step.matrix.dtype != pb.FLOAT32:
        raise MalformedEvent(f"a matrix of dtype {dtype_name(step.matrix.dtype)}, not FLOAT32")
    try:
        matrix = arrays.decode_array(step.matrix)
    except ValueError as error:
        raise MalformedEvent(f"matrix: {error}") from None
    if matrix.shape != shape:
        raise MalformedEvent(
            f"a matrix of shape {list(matrix.shape)}, needs {list(shape)} for the series' "
            f"{tensor_kind.count(shape[0], 'layer')} of A and {shape[1]} of B"
        )
    matrix = matrix.astype(np.float64)
    with np.errstate(invalid="ignore"):
        if np.any(np.isinf(matrix)) or np.any((matrix < -_SLACK) | (matrix > 1 + _SLACK)):
            raise MalformedEvent("a CKA value outside [0, 1]")
    if not math.isfinite(step.seconds) or step.seconds < 0:
        raise MalformedEvent(f"seconds {step.seconds} is not a duration")
    matrix.setflags(write=False)
    return CkaStepData(matrix=matrix, samples=int(step.samples), seconds=float(step.seconds))


def _no_layers(values) -> None:
    """Every step of a series whose metadata cannot say how to read it is damaged."""
    raise MalformedEvent("the series' metadata names no layers")


def read_cka(
    data_provider, ctx, experiment_id: str, run: str, tag: str, downsample, shape
) -> CkaSeries:
    """Read and decode every kept step of a cka series, in step order; damaged events are
    left out, each named in `warnings` and kept in `damaged` (step → what is wrong)."""
    datums = tensor_kind.read_events(data_provider, ctx, experiment_id, run, tag, downsample)
    if min(shape) < 1:
        return tensor_kind.decode_series(datums, _no_layers)
    return tensor_kind.decode_series(datums, lambda values: decode_step(values, shape))


def _matrix_json(matrix: np.ndarray) -> list[list]:
    return tensor_kind.json_matrix(matrix, np.zeros(matrix.shape, dtype=bool))


class CkaRoutes(tensor_kind.TensorKindRoutes):
    """The `cka` and `cka_series` routes (shared parts: `TensorKindRoutes`)."""

    KIND = KIND
    ROUTE = "cka_series"
    NOUN = "layer"

    def apps(self) -> dict:
        return {f"/{self.ROUTE}": self._serve, "/cka": self._serve_step}

    def read(self, ctx, experiment: str, run: str, tag: str, plugin_data) -> CkaSeries:
        names_a, names_b = layers(plugin_data)
        return read_cka(
            self._context.data_provider,
            ctx,
            experiment,
            run,
            tag,
            self._context.downsample,
            (len(names_a), len(names_b)),
        )

    def _head(self, plugin_data, run: str, tag: str) -> dict:
        names_a, names_b = layers(plugin_data)
        return {
            "run": run,
            "tag": tag,
            "row_name": plugin_data.cka.row_name,
            "col_name": plugin_data.cka.col_name,
            "layers_a": names_a,
            "layers_b": names_b,
        }

    def make_body(
        self, decoded: CkaSeries, plugin_data, run: str, tag: str, fmt: str, wanted: list[str]
    ) -> responses.PreparedJson:
        """The `cka_series` response (docs/http_api.md) of a decoded series."""
        head = self._head(plugin_data, run, tag)
        rows = self.select_columns(head["layers_a"], wanted, run, tag)
        pick = slice(None) if rows is None else rows
        body = {
            **head,
            "rows": head["layers_a"] if rows is None else list(wanted),
            "steps": decoded.steps.tolist(),
            "wall_times": decoded.wall_times.tolist(),
            "samples": [d.samples for d in decoded.data],
            "seconds": [d.seconds for d in decoded.data],
            "warnings": list(decoded.warnings),
            "matrices": [_matrix_json(d.matrix[pick]) for d in decoded.data],
        }
        return responses.prepare_json_text(responses.json_text(body))

    def step_body(self, ctx, experiment: str, run: str, tag: str, step: int | None) -> dict:
        """The `cka` response: one step's matrix, best matches and diagonal."""
        plugin_data = self._context.catalog.find(ctx, experiment, run, tag, self.KIND)
        decoded = self.decoded(ctx, experiment, run, tag)
        chosen = tensor_kind.choose_step(decoded, run, tag, step)
        head = {**self._head(plugin_data, run, tag), "steps": chosen.kept}
        step = chosen.step
        if chosen.row is None:
            return {**head, "step": step, "error": chosen.error}
        row = chosen.row
        data = decoded.data[row]
        matrix = data.matrix
        best = []
        for i, values in enumerate(matrix):
            finite = np.isfinite(values)
            if finite.any():
                j = int(np.argmax(np.where(finite, values, -np.inf)))
                best.append({"row": i, "col": j, "cka": float(values[j])})
            else:
                best.append({"row": i, "col": None, "cka": None})
        diagonal = None
        if head["layers_a"] == head["layers_b"]:
            diagonal = responses.json_numbers(np.diagonal(matrix), null=True)
        return {
            **head,
            "step": step,
            "wall_time": float(decoded.wall_times[row]),
            "error": None,
            "samples": data.samples,
            "seconds": data.seconds,
            "matrix": _matrix_json(matrix),
            "best": best,
            "diagonal": diagonal,
        }

    @werkzeug.wrappers.Request.application
    def _serve_step(self, request):
        example = "cka?run=RUN&tag=TAG[&step=STEP]"
        run = responses.required_arg(request, "run", example)
        tag = responses.required_arg(request, "tag", example)
        step = responses.int_arg(request, "step")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        return responses.respond_json(request, self.step_body(ctx, experiment, run, tag, step))
