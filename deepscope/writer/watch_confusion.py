"""watch()'s confusion-matrix measurer: the model's predictions on evaluation data, per class.

Off by default (it needs labelled data): give it in
`watch(..., measure=[deepscope.ConfusionMatrices(data=val_loader, class_names=names)])`.
Every `every` optimizer steps, after the step, it runs the model over `data`
(eval mode: batch norm on running statistics, dropout off; no gradients;
every module's mode and the torch random state, CPU and the model's CUDA
device, restored after, so a shuffling DataLoader does not change training's
random stream), accumulates the batches' predictions (the argmax of the
output) against their labels, and logs one confusion matrix of the tag `tag`
(`add_confusion_counts`): C × C counts, int32, 4·C² bytes a step plus about 30
(10 classes: about 430 bytes).

Cost: one forward pass over `data` per measurement, about a third of a
training step per training-batch-sized evaluation batch, so the overhead is
about eval_samples / (3 · batch · every) of training time. The default
`every=500` keeps it ≤ 1% for up to 15 training batches' worth of
evaluation samples (benchmarks/bench_confusion.py measures it on ResNet-18:
benchmarks/results/confusion.json); cap a large loader with `max_batches`.

A failing measurement raises (recorded in the monitor's stats; training goes
on); nothing is logged for that step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from deepscope.module_names import eager_module
from deepscope.writer.confusion import _checked_names, counts_of
from deepscope.writer.measurer import Measurer
from deepscope.writer.probe import model_device, probing

DEFAULT_CONFUSION_EVERY = 500


def default_output(output) -> torch.Tensor:
    """The scores [N, C] (or class indices [N]) of a model's output, by a fixed rule:
    a tensor as is; an object or mapping with `logits` (a Hugging Face output):
    that; a tuple or list: its first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    logits = (
        output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    )
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(
        f"the model's output is a {type(output).__name__}: pass output= (a function of the "
        "output returning the scores [N, C]) to ConfusionMatrices"
    )


class ConfusionMatrices(Measurer):
    """Logs a confusion matrix of the model on labelled evaluation data every `every` steps.

    A `deepscope.Measurer` (name "confusion"), off by default. `measurements`
    counts the matrices logged, `last_seconds` the latest one's cost,
    `last_counts` its int64 [C, C] counts.

    Args:
      data: labelled evaluation data: an (inputs, labels) pair of tensors, a
        list of such pairs, or a DataLoader yielding them (iterated afresh at
        each measurement). A batch may also be a mapping of keyword inputs
        holding the labels under `labels_key` (a tokenizer's output with
        "labels"): the model is called with the rest.
      every: optimizer steps between measurements.
      class_names: C class names in class-index order (the tab's axes).
      num_classes: C when class_names does not say it (default: the scores'
        width).
      tag: the series' tag.
      on: what the data is, e.g. "validation" (shown by the tab).
      output: a function of the model's output returning the scores [N, C]
        (or class indices [N]); default `default_output`'s rule.
      max_batches: measure on at most this many batches of `data`.
      labels_key: the key of the labels in a mapping batch.
      name: the measurer's name (default "confusion").
    """

    name = "confusion"

    def __init__(
        self,
        data,
        every: int = DEFAULT_CONFUSION_EVERY,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        tag: str = "confusion",
        on: str = "validation",
        output: Callable | None = None,
        max_batches: int | None = None,
        labels_key: str = "labels",
        *,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        if data is None or isinstance(data, (str, bytes)):
            raise TypeError(
                "data must be labelled evaluation batches: an (inputs, labels) pair, a list "
                "of pairs or a DataLoader"
            )
        if class_names is not None:
            size = num_classes if num_classes is not None else len(list(class_names))
            class_names = _checked_names(class_names, size)
            num_classes = size
        elif num_classes is not None:
            _checked_names(None, num_classes)
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty string, got {tag!r}")
        if not isinstance(on, str):
            raise TypeError(f"on must be a string, e.g. 'validation', got {on!r}")
        if output is not None and not callable(output):
            raise TypeError(f"output must be a function of the model's output, got {output!r}")
        if max_batches is not None and (
            isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
        ):
            raise ValueError(f"max_batches must be a positive int or None, got {max_batches!r}")
        self.data = data
        self.class_names = class_names
        self.num_classes = num_classes
        self.tag = tag
        self.on = on
        self.output = output or default_output
        self.max_batches = max_batches
        self.labels_key = labels_key
        self.model: torch.nn.Module | None = None
        self.writer = None
        self.measurements = 0
        self.last_seconds = 0.0
        self.last_counts = None

    def start(self, model: torch.nn.Module, optimizer, writer) -> None:
        """Remember the model and the writer (TypeError for others)."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not hasattr(writer, "add_confusion_counts"):
            raise TypeError(
                "writer must be a deepscope.SummaryWriter "
                "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
            )
        self.model = model
        self.writer = writer

    def _batches(self):
        if (
            isinstance(self.data, tuple)
            and len(self.data) == 2
            and all(isinstance(x, torch.Tensor) for x in self.data)
        ):
            yield self.data
            return
        if isinstance(self.data, Mapping):
            yield self.data
            return
        try:
            iterator = iter(self.data)
        except TypeError:
            raise TypeError(
                f"data must be an (inputs, labels) pair or an iterable of them, got "
                f"{type(self.data).__name__}"
            ) from None
        for i, batch in enumerate(iterator):
            if self.max_batches is not None and i >= self.max_batches:
                return
            yield batch

    def _split(self, batch, device):
        """(call the model on the batch, labels) of one batch, moved to `device`."""
        if isinstance(batch, Mapping):
            if self.labels_key not in batch:
                raise ValueError(
                    f"a mapping batch has no {self.labels_key!r} (its keys: {sorted(batch)}): "
                    "pass labels_key= naming the labels"
                )
            inputs = {k: _to(v, device) for k, v in batch.items() if k != self.labels_key}
            return (lambda model: model(**inputs)), batch[self.labels_key]
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError(
                "each evaluation batch must be an (inputs, labels) pair (or a mapping with "
                f"{self.labels_key!r}), got {type(batch).__name__}"
            )
        inputs, labels = batch[0], batch[1]
        inputs = _to(inputs, device)
        return (lambda model: model(inputs)), labels

    def evaluate(self, model: torch.nn.Module | None = None):
        """The int64 [C, C] counts of `model` (default: the watched one) on `data` now."""
        model = model if model is not None else self.model
        if model is None:
            raise RuntimeError("ConfusionMatrices.evaluate before start(model, optimizer, writer)")
        eager = eager_module(model)
        device = model_device(eager)
        labels: list[torch.Tensor] = []
        predicted: list[torch.Tensor] = []
        width = None
        devices = [device] if device is not None and device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), probing(eager):
            for batch in self._batches():
                call, y = self._split(batch, device)
                scores = self.output(call(eager))
                if not isinstance(scores, torch.Tensor):
                    raise TypeError(f"output gave a {type(scores).__name__}, not a tensor")
                if scores.ndim == 2:
                    if width is not None and scores.shape[1] != width:
                        raise ValueError(
                            f"the scores' width changed between batches ({width}, "
                            f"{scores.shape[1]})"
                        )
                    width = scores.shape[1]
                    scores = scores.argmax(1)
                elif scores.ndim != 1:
                    raise ValueError(
                        "the model's scores must be [N, C] (or class indices [N]), got shape "
                        f"{list(scores.shape)}: pass output= to pick them"
                    )
                y = torch.as_tensor(y)
                if y.ndim != 1 or y.shape[0] != scores.shape[0]:
                    raise ValueError(
                        f"a batch has labels of shape {list(y.shape)} for {scores.shape[0]} "
                        "predictions: labels must be one class index per sample"
                    )
                labels.append(y.to(scores.device))
                predicted.append(scores)
        if not labels:
            raise ValueError("data yielded no batches: nothing to measure")
        size = self.num_classes if self.num_classes is not None else width
        # One concatenation and one host copy per input, however many batches.
        return counts_of(
            torch.cat(labels), torch.cat(predicted), num_classes=size, class_names=self.class_names
        )

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        """Evaluate on `data` and log the confusion matrix as step `step`."""
        if self.model is None:
            raise RuntimeError("ConfusionMatrices.measure before start(model, optimizer, writer)")
        begin = time.perf_counter()
        if self.ranks.distributed:
            counts = self._counts_of_every_rank()
            if counts is None:
                return
        else:
            counts = self.evaluate()
        seconds = time.perf_counter() - begin
        self.writer.add_confusion_counts(
            self.tag, counts, self.class_names, global_step=step, on=self.on, seconds=seconds
        )
        self.measurements += 1
        self.last_seconds = seconds
        self.last_counts = counts

    def on_every_rank(self, ranks) -> bool:
        """Always: each rank evaluates its share of the data, and the counts are summed."""
        return True

    def _counts_of_every_rank(self) -> np.ndarray | None:
        """The counts summed over the ranks' data (on rank 0; None elsewhere).

        Every rank joins the gather, one whose own evaluation failed too (the
        step is then dropped on every rank, the failure raised where it was).
        """
        counts, failure = None, None
        try:
            counts = np.asarray(self.evaluate(), dtype=np.int64)
        except Exception as error:
            failure = error
        vector = None
        if counts is not None:
            vector = torch.from_numpy(
                np.concatenate([[counts.shape[0]], counts.reshape(-1)]).astype(np.float64)
            )
        parts = self.ranks.all_gather(vector, "confusion counts")
        if failure is not None:
            raise failure
        if not self.ranks.writes:
            return None
        # Classes found from the largest index seen may differ between ranks: a
        # class a rank never saw has zero counts there.
        size = max(int(part[0]) for part in parts)
        total = np.zeros((size, size), dtype=np.int64)
        for part in parts:
            n = int(part[0])
            total[:n, :n] += part[1:].numpy().astype(np.int64).reshape(n, n)
        return total

    def flush(self) -> None:
        """Nothing is held: each matrix is written when measured."""

    def close(self) -> None:
        """Nothing to release: nothing is attached to the model."""


def _to(value, device):
    if device is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, Mapping):
        return {k: _to(v, device) for k, v in value.items()}
    return value
