"""Confusion-matrix summaries: how a classifier's predictions fall against the true classes.

`writer.add_confusion_matrix("val/confusion", labels, predictions,
class_names=["cat", "dog", "bird"], global_step=epoch)` counts, for each
(true class i, predicted class j), the samples of class i predicted as j, and
logs the C × C matrix; the tab shows it as a heatmap (counts, or normalised by
row = recall, by column = precision) with per-class precision, recall, F1 and
support and the most-confused pairs, all computed by the plugin from the
counts (deepscope/analysis/confusion.py).

A series is a tensor series (a C × C matrix is small): its metadata
(`ConfusionInfo`: class names, C, on the tag's first event) and, per step, a
DT_STRING scalar tensor holding a `ConfusionStep` (the counts as int32 when
every count fits, else int64; the number of samples; what it was measured
on). Storage per step: 4·C² bytes of counts (int32) plus about 30 bytes (10
classes: about 430 bytes; 100 classes: about 40 kB; int64 doubles it).

Labels and predictions are tensors, numpy arrays or lists. Predictions are N
class indices, or N × C scores (logits or probabilities), reduced by argmax
(the first maximum on ties, as `torch.argmax`/`numpy.argmax`). Scores are
reduced on their device (the argmax) and only the N class indices are copied
to the host (8 bytes a sample), once per input. torch is imported only when an input is a tensor
(torch is then imported already), so the builder works with numpy alone.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from tensorboard.compat.proto import summary_pb2

from deepscope.analysis import confusion as cm
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import tensor_summary

_INT32_MAX = np.iinfo(np.int32).max


def confusion_info(class_names: Sequence[str] | None, num_classes: int) -> pb.PluginData:
    """The series' `PluginData`: the class names (or none) and C.

    Raises:
      ValueError: C < 1, or class names that are not C unique non-empty strings.
    """
    names = _checked_names(class_names, num_classes)
    return pb.PluginData(
        kind=pb.CONFUSION,
        confusion=pb.ConfusionInfo(class_names=names, num_classes=num_classes),
    )


def _checked_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if class_names is None:
        return []
    if isinstance(class_names, str):
        raise TypeError("class_names must be a list of strings, one per class, not one string")
    names = list(class_names)
    if len(names) != num_classes:
        raise ValueError(
            f"class_names has {len(names)} names for {num_classes} classes: give one name per "
            "class, in class-index order"
        )
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"class names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError("class names must be unique")
    return names


def confusion_step(counts: np.ndarray, on: str = "", seconds: float = 0.0) -> pb.ConfusionStep:
    """One step's `ConfusionStep` of a C × C counts matrix (int32 when every count fits).

    Raises:
      ValueError: not a square matrix of non-negative integer counts.
      TypeError: `on` is not a string.
    """
    counts = cm.check_counts(counts)
    if not isinstance(on, str):
        raise TypeError(f"on must be a string, e.g. 'validation', got {on!r}")
    stored = counts.astype(np.int32) if counts.max(initial=0) <= _INT32_MAX else counts
    return pb.ConfusionStep(
        counts=arrays.encode_array(stored),
        samples=int(counts.sum()),
        on=on,
        seconds=float(seconds),
    )


def _torch():
    return sys.modules.get("torch")


def _is_tensor(value) -> bool:
    torch = _torch()
    return torch is not None and isinstance(value, torch.Tensor)


def _as_array(value, what: str):
    """A tensor as is (detached), anything else as a numpy array."""
    if _is_tensor(value):
        return value.detach()
    try:
        return np.asarray(value)
    except Exception as error:
        raise TypeError(
            f"{what} must be a tensor, a numpy array or a list of numbers, got "
            f"{type(value).__name__} ({error})"
        ) from None


def _shape(value) -> list[int]:
    return list(value.shape)


def _is_float(value) -> bool:
    if _is_tensor(value):
        return value.is_floating_point()
    return np.issubdtype(value.dtype, np.floating)


def _class_indices(values, what: str):
    """1-d class indices (a tensor stays on its device as int64); TypeError/ValueError else."""
    if _is_tensor(values):
        if values.is_complex() or values.dtype == _torch().bool:
            raise TypeError(f"{what} must be integer class indices, got a {values.dtype} tensor")
        if values.is_floating_point():
            if not bool(_torch().isfinite(values).all()) or bool((values != values.round()).any()):
                raise ValueError(f"{what} must be integer class indices, got non-integer values")
        return values.reshape(-1).long() if values.ndim <= 1 else values
    if values.dtype.kind not in "iuf":
        raise TypeError(f"{what} must be integer class indices, got dtype {values.dtype}")
    return values


def counts_of(
    labels,
    predictions,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """The int64 C × C counts of labels against predictions, C found as the module doc says.

    Args:
      labels: N true class indices (tensor, array or list).
      predictions: N predicted class indices, or N × C scores (argmax taken).
      num_classes: C; default len(class_names), else the scores' width, else
        1 + the largest index seen.
      class_names: C names (only their number is used here).

    Raises:
      ValueError: lengths differ, an index out of [0, C), scores of another
        width than C, C and class_names disagree, shapes that are not 1-d / 2-d.
      TypeError: inputs that are not numbers.
    """
    labels = _class_indices(_as_array(labels, "labels"), "labels")
    predictions = _as_array(predictions, "predictions")
    if len(_shape(labels)) != 1:
        raise ValueError(
            f"labels must be one class index per sample (shape [N]), got shape {_shape(labels)}"
        )
    scores_width = None
    if len(_shape(predictions)) == 2:
        scores_width = _shape(predictions)[1]
        if scores_width < 1:
            raise ValueError(f"predictions of shape {_shape(predictions)} have no classes")
        if not _is_tensor(predictions) and predictions.dtype.kind not in "iuf":
            raise TypeError(f"predictions must be numbers, got dtype {predictions.dtype}")
        predictions = predictions.argmax(1)
    elif len(_shape(predictions)) == 1:
        predictions = _class_indices(predictions, "predictions")
    else:
        raise ValueError(
            "predictions must be class indices [N] or scores (logits or probabilities) "
            f"[N, C], got shape {_shape(predictions)}"
        )
    if _shape(labels)[0] != _shape(predictions)[0]:
        raise ValueError(
            f"labels and predictions must have one entry per sample each: got "
            f"{_shape(labels)[0]} labels and {_shape(predictions)[0]} predictions"
        )
    given = {}
    if num_classes is not None:
        given["num_classes"] = num_classes
    if class_names is not None and not isinstance(class_names, str):
        given["class_names"] = len(list(class_names))
    if scores_width is not None:
        given["the predictions' width"] = scores_width
    if len(set(given.values())) > 1:
        raise ValueError(
            "the number of classes disagrees: "
            + ", ".join(f"{what} {n}" for what, n in given.items())
        )
    labels_host = _host(labels)
    predictions_host = _host(predictions)
    if given:
        size = next(iter(given.values()))
    else:
        seen = [int(v.max()) for v in (labels_host, predictions_host) if v.size]
        size = max(seen) + 1 if seen else 1
        size = max(size, 1)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {size!r}")
    return cm.confusion_counts(labels_host, predictions_host, int(size))


def _host(values) -> np.ndarray:
    """A 1-d index tensor or array as a host int64 array (one device copy for a tensor)."""
    if _is_tensor(values):
        return values.to(dtype=_torch().int64).cpu().numpy()
    array = np.asarray(values)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError("class indices must be integers, got non-integer values")
    return array.astype(np.int64)


def confusion_matrix_pb(
    tag: str,
    labels,
    predictions,
    class_names: Sequence[str] | None = None,
    *,
    num_classes: int | None = None,
    on: str = "",
    seconds: float = 0.0,
    description: str = "",
) -> summary_pb2.Summary:
    """A `Summary` with one step's confusion matrix, its metadata included.

    For people who write events with another writer:
    `file_writer.add_summary(confusion_matrix_pb("val/confusion", y, logits), step)`.

    Args:
      tag: the series, e.g. "val/confusion".
      labels: N true class indices (tensor, numpy array or list).
      predictions: N predicted class indices, or N × C scores (logits or
        probabilities; the argmax is the prediction).
      class_names: C names, in class-index order (the tab's axis labels).
      num_classes: C, when neither class_names nor scores give it (classes
        absent from this batch still get a row and a column).
      on: what it was measured on, e.g. "validation".
      seconds: what the measurement cost, for the cost report.
      description: shown by TensorBoard next to the tag.

    Raises:
      ValueError, TypeError: as `counts_of` and `confusion_info` say.
    """
    counts = counts_of(labels, predictions, num_classes=num_classes, class_names=class_names)
    return confusion_counts_pb(
        tag, counts, class_names, on=on, seconds=seconds, description=description
    )


def confusion_counts_pb(
    tag: str,
    counts,
    class_names: Sequence[str] | None = None,
    *,
    on: str = "",
    seconds: float = 0.0,
    description: str = "",
) -> summary_pb2.Summary:
    """A `Summary` of an already counted C × C matrix (rows true, columns predicted)."""
    counts = cm.check_counts(counts)
    plugin_data = confusion_info(class_names, counts.shape[0])
    step = confusion_step(counts, on=on, seconds=seconds)
    return tensor_summary(tag, step.SerializeToString(), plugin_data, description)


class ConfusionSummaries:
    """Mixin of `deepscope.SummaryWriter`: `add_confusion_matrix`."""

    def add_confusion_matrix(
        self,
        tag: str,
        labels,
        predictions,
        class_names: Sequence[str] | None = None,
        global_step: int | None = None,
        walltime: float | None = None,
        num_classes: int | None = None,
        description: str = "",
        on: str = "",
        seconds: float = 0.0,
    ) -> None:
        """Log one step's confusion matrix of `labels` against `predictions`.

        Args:
          tag: the series, e.g. "val/confusion".
          labels: N true class indices (tensor, numpy array or list).
          predictions: N predicted class indices, or N × C logits or
            probabilities (argmax taken, on the tensor's device).
          class_names: C names in class-index order; the tab's axis labels.
          global_step: the training step (or epoch).
          walltime: seconds since the epoch; now by default.
          num_classes: C when neither class_names nor scores say it.
          description: shown next to the tag.
          on: what it was measured on, e.g. "validation".
          seconds: the measurement's cost, when timed.

        The class names and C are the series' metadata, kept from a tag's first
        event only: every step of a tag must have the same C (a ValueError
        otherwise, naming both).

        Raises:
          ValueError, TypeError: mismatched lengths, out-of-range labels, a
            class_names of another length than C (the message says which).
        """
        summary_pb = confusion_matrix_pb(
            tag,
            labels,
            predictions,
            class_names,
            num_classes=num_classes,
            on=on,
            seconds=seconds,
            description=description,
        )
        self._check_same_classes(tag, summary_pb)
        self._write(summary_pb, global_step, walltime)

    def add_confusion_counts(
        self,
        tag: str,
        counts,
        class_names: Sequence[str] | None = None,
        global_step: int | None = None,
        walltime: float | None = None,
        description: str = "",
        on: str = "",
        seconds: float = 0.0,
    ) -> None:
        """Log a C × C counts matrix counted elsewhere (rows true, columns predicted classes)."""
        summary_pb = confusion_counts_pb(
            tag, counts, class_names, on=on, seconds=seconds, description=description
        )
        self._check_same_classes(tag, summary_pb)
        self._write(summary_pb, global_step, walltime)

    def _check_same_classes(self, tag: str, summary_pb: summary_pb2.Summary) -> None:
        written = self._series_plugin_data(tag)
        if written is None or written.WhichOneof("details") != "confusion":
            return
        given = pb.PluginData.FromString(summary_pb.value[0].metadata.plugin_data.content)
        if given.confusion.num_classes != written.confusion.num_classes:
            raise ValueError(
                f"confusion matrix {tag!r} has {written.confusion.num_classes} classes from its "
                f"first event; this step has {given.confusion.num_classes}: log every step "
                "with the same classes (pass num_classes=) or use a new tag"
            )
        if given.confusion.class_names and list(given.confusion.class_names) != list(
            written.confusion.class_names
        ):
            raise ValueError(
                f"confusion matrix {tag!r}: class_names differ from the tag's first event's "
                f"({list(written.confusion.class_names)[:5]}...), which TensorBoard keeps; "
                "use a new tag for other classes"
            )
