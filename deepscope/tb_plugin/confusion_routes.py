"""Confusion matrices on the read side: decode a confusion series, serve `confusion` and
`confusion_series`.

A confusion series (`add_confusion_matrix`, watch()'s `ConfusionMatrices`) is
a tensor series: each event is a DT_STRING scalar holding one `ConfusionStep`,
the C × C counts (int32 or int64; rows true classes, columns predicted), the
samples counted and what they were measured on. Everything else is computed
here from the counts (deepscope/analysis/confusion.py, numpy only):

- `confusion`: one step (the newest by default): the counts, per class
  support, predictions, precision, recall and F1, the accuracy, the macro and
  weighted averages, and the `top` most-confused (true, predicted) pairs;
- `confusion_series`: over steps: accuracy, the macro and weighted F1 (and
  macro precision and recall), samples, and per class recall, precision and
  F1 as steps × classes tables (`name=` picks classes).

Undefined values (a class never predicted has no precision) are the string
"NaN" in the JSON (strict JSON has no NaN).

Damaged data (deepscope's one policy): an event that cannot be read or fails
validation (payload type, the message, the counts' dtype, shape against C,
negative counts, `samples` against the counts' sum, the wall time) drops only
its own row of `confusion_series`, named in its `warnings`; `confusion` at
that step answers 200 with the step's `error`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import werkzeug
from tensorboard import errors, plugin_util

from deepscope.analysis import confusion as cm
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import responses, tensor_kind
from deepscope.tb_plugin.tensor_kind import MalformedEvent, dtype_name

KIND = "confusion"
DEFAULT_TOP = 10
MAX_TOP = 1000


@dataclasses.dataclass(frozen=True)
class ConfusionStepData:
    """One decoded step: the counts (int64 [C, C]) and what they were measured on."""

    counts: np.ndarray
    samples: int
    on: str
    seconds: float

    @property
    def nbytes(self) -> int:
        return self.counts.nbytes + len(self.on) + 100


# A decoded confusion series: the good steps in order, and the damaged ones' errors.
ConfusionSeries = tensor_kind.DecodedSeries[ConfusionStepData]


def decode_step(payload, num_classes: int) -> ConfusionStepData:
    """One event's tensor value (a string scalar holding a `ConfusionStep`), checked
    against the series' C.

    Raises:
      MalformedEvent: what is wrong with it.
    """
    content = tensor_kind.string_payload(payload, "ConfusionStep")
    try:
        step = pb.ConfusionStep.FromString(content)
    except Exception as error:  # protobuf raises DecodeError or RuntimeError
        raise MalformedEvent(f"the payload does not parse as a ConfusionStep ({error})") from None
    if step.counts.dtype not in (pb.INT64, pb.INT32):
        raise MalformedEvent(f"counts of dtype {dtype_name(step.counts.dtype)}, not INT64 or INT32")
    try:
        counts = arrays.decode_array(step.counts)
    except ValueError as error:
        raise MalformedEvent(f"counts: {error}") from None
    if counts.shape != (num_classes, num_classes):
        raise MalformedEvent(
            f"counts of shape {list(counts.shape)}, needs [{num_classes}, {num_classes}] "
            f"for {tensor_kind.count(num_classes, 'class')}"
        )
    counts = counts.astype(np.int64)
    if np.any(counts < 0):
        raise MalformedEvent("a negative count")
    total = int(counts.sum())
    if step.samples != total:
        raise MalformedEvent(f"{step.samples} samples, but the counts sum to {total}")
    if not math.isfinite(step.seconds) or step.seconds < 0:
        raise MalformedEvent(f"seconds {step.seconds} is not a duration")
    return ConfusionStepData(counts=counts, samples=total, on=step.on, seconds=step.seconds)


def _no_classes(values) -> None:
    """Every step of a series whose metadata cannot say how to read it is damaged."""
    raise MalformedEvent("the series' metadata gives no number of classes")


def read_confusion(
    data_provider,
    ctx,
    experiment_id: str,
    run: str,
    tag: str,
    downsample: int | None,
    num_classes: int,
) -> ConfusionSeries:
    """Read and decode every kept step of a confusion series, in step order.

    Events that cannot be read are left out, each named in `warnings` and kept
    in `damaged` (step → what is wrong).
    """
    datums = tensor_kind.read_events(data_provider, ctx, experiment_id, run, tag, downsample)
    if num_classes < 1:
        return tensor_kind.decode_series(datums, _no_classes)
    return tensor_kind.decode_series(datums, lambda values: decode_step(values, num_classes))


def class_names(plugin_data: pb.PluginData) -> list[str]:
    """The series' class names, "0".."C-1" when it has none (or the wrong number)."""
    info = plugin_data.confusion
    names = list(info.class_names)
    if len(names) != info.num_classes or len(set(names)) != len(names):
        names = []
    return cm.class_labels(names, info.num_classes)


def _number(value: float):
    return responses.json_number(float(value))


class ConfusionRoutes(tensor_kind.TensorKindRoutes):
    """The `confusion` and `confusion_series` routes (shared parts: `TensorKindRoutes`)."""

    KIND = KIND
    ROUTE = "confusion_series"
    NOUN = "class"

    def apps(self) -> dict:
        return {f"/{self.ROUTE}": self._serve, "/confusion": self._serve_step}

    def read(self, ctx, experiment: str, run: str, tag: str, plugin_data) -> ConfusionSeries:
        return read_confusion(
            self._context.data_provider,
            ctx,
            experiment,
            run,
            tag,
            self._context.downsample,
            int(plugin_data.confusion.num_classes),
        )

    def make_body(
        self, decoded: ConfusionSeries, plugin_data, run: str, tag: str, fmt: str, wanted: list[str]
    ) -> responses.PreparedJson:
        """The `confusion_series` response (docs/http_api.md) of a decoded series."""
        names = class_names(plugin_data)
        columns = self.select_columns(names, wanted, run, tag)
        pick = slice(None) if columns is None else columns
        found = [cm.metrics(d.counts) for d in decoded.data]
        size = len(names)

        def table(field: str) -> list:
            values = np.array([getattr(m, field) for m in found]).reshape(len(found), size)
            values = values[:, pick]
            return tensor_kind.json_matrix(values, np.zeros(values.shape, dtype=bool))

        body = {
            "run": run,
            "tag": tag,
            "num_classes": size,
            "class_names": names,
            "classes": names if columns is None else list(wanted),
            "steps": decoded.steps.tolist(),
            "wall_times": decoded.wall_times.tolist(),
            "samples": [d.samples for d in decoded.data],
            "on": [d.on for d in decoded.data],
            "seconds": [d.seconds for d in decoded.data],
            "warnings": list(decoded.warnings),
        }
        for field in (
            "accuracy",
            "macro_precision",
            "macro_recall",
            "macro_f1",
            "weighted_precision",
            "weighted_recall",
            "weighted_f1",
        ):
            body[field] = [_number(getattr(m, field)) for m in found]
        for field in ("precision", "recall", "f1", "support"):
            body[field] = table(field)
        return responses.prepare_json_text(responses.json_text(body))

    def step_body(
        self, ctx, experiment: str, run: str, tag: str, step: int | None, top: int = DEFAULT_TOP
    ) -> dict:
        """The `confusion` response: one step's counts and what follows from them."""
        plugin_data = self._context.catalog.find(ctx, experiment, run, tag, self.KIND)
        decoded = self.decoded(ctx, experiment, run, tag)
        names = class_names(plugin_data)
        chosen = tensor_kind.choose_step(decoded, run, tag, step)
        head = {
            "run": run,
            "tag": tag,
            "num_classes": len(names),
            "class_names": names,
            "steps": chosen.kept,
        }
        step = chosen.step
        if chosen.row is None:
            return {**head, "step": step, "error": chosen.error}
        row = chosen.row
        data = decoded.data[row]
        found = cm.metrics(data.counts)
        per_class = [
            {
                "name": names[c],
                "support": int(found.support[c]),
                "predicted": int(found.predicted[c]),
                "correct": int(found.correct[c]),
                "precision": _number(found.precision[c]),
                "recall": _number(found.recall[c]),
                "f1": _number(found.f1[c]),
            }
            for c in range(len(names))
        ]
        pairs = [
            {
                "true": p.true,
                "predicted": p.predicted,
                "true_name": names[p.true],
                "predicted_name": names[p.predicted],
                "count": p.count,
                "fraction": p.fraction,
            }
            for p in cm.most_confused(data.counts, top)
        ]
        return {
            **head,
            "step": step,
            "wall_time": float(decoded.wall_times[row]),
            "error": None,
            "on": data.on,
            "seconds": data.seconds,
            "samples": data.samples,
            "counts": data.counts.tolist(),
            "accuracy": _number(found.accuracy),
            "macro": {
                "precision": _number(found.macro_precision),
                "recall": _number(found.macro_recall),
                "f1": _number(found.macro_f1),
            },
            "weighted": {
                "precision": _number(found.weighted_precision),
                "recall": _number(found.weighted_recall),
                "f1": _number(found.weighted_f1),
            },
            "per_class": per_class,
            "most_confused": pairs,
        }

    @werkzeug.wrappers.Request.application
    def _serve_step(self, request):
        example = "confusion?run=RUN&tag=TAG[&step=STEP][&top=K]"
        run = responses.required_arg(request, "run", example)
        tag = responses.required_arg(request, "tag", example)
        step = responses.int_arg(request, "step")
        top = responses.int_arg(request, "top")
        if top is None:
            top = DEFAULT_TOP
        if not 0 <= top <= MAX_TOP:
            raise errors.InvalidArgumentError(f"top must be in 0..{MAX_TOP}, got {top}")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        return responses.respond_json(request, self.step_body(ctx, experiment, run, tag, step, top))
