"""Confusion-matrix log dirs for the routes, integration and browser tests.

- `log_synthetic(logdir, run)`: steps of seeded labels and predictions
  (tests/kind_cases/confusion.py), written with `add_confusion_matrix`; returns
  step → the counts, counted with numpy (the reference).
- `log_training(logdir, run)`: a small MLP trained on scikit-learn's bundled 8×8
  digits (no download) under `deepscope.watch(..., measure=[ConfusionMatrices(...)])`
  on held-out digits, as a user writes it; returns the measurer and the model.
- `DAMAGED`: name → (function tag → the `Summary` of one damaged event, a phrase of
  the route's warning about it).
"""

from __future__ import annotations

import numpy as np
from tensorboard.compat.proto import summary_pb2

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.confusion import ConfusionSummaries, confusion_step
from deepscope.writer.summary import tensor_summary
from tests.kind_cases.confusion import CLASS_NAMES, labels_and_predictions, reference_counts

TAG = "val/confusion"
SYNTHETIC_STEPS = (0, 10, 20)
DIGITS = tuple(str(d) for d in range(10))


def writer(logdir) -> deepscope.SummaryWriter:
    """A deepscope.SummaryWriter with `add_confusion_matrix` (a subclass with the mixin
    when SummaryWriter lacks it)."""
    if hasattr(deepscope.SummaryWriter, "add_confusion_matrix"):
        return deepscope.SummaryWriter(str(logdir))

    class _Writer(ConfusionSummaries, deepscope.SummaryWriter):
        pass

    return _Writer(str(logdir))


def log_synthetic(logdir, run: str = "synthetic", steps=SYNTHETIC_STEPS) -> dict[int, np.ndarray]:
    """Steps of seeded labels and predictions under `TAG`; step → int64 counts [C, C]."""
    logged = {}
    with writer(logdir / run) as w:
        for step in steps:
            labels, predictions = labels_and_predictions(f"{run}/{TAG}", step)
            w.add_confusion_matrix(
                TAG,
                labels,
                predictions,
                class_names=list(CLASS_NAMES),
                global_step=step,
                walltime=1000.0 + step,
                on="validation",
            )
            logged[step] = reference_counts(labels, predictions, len(CLASS_NAMES))
    return logged


def digits(validation: int = 360):
    """scikit-learn's 1,797 8×8 digits as float tensors [N, 64] in [0, 1] and int64 labels,
    split (seeded) into training and `validation` held-out samples."""
    import torch
    from sklearn.datasets import load_digits

    found = load_digits()
    x = torch.tensor(found.data / 16.0, dtype=torch.float32)
    y = torch.tensor(found.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return (x[validation:], y[validation:]), (x[:validation], y[:validation])


def log_training(logdir, run: str = "digits", epochs: int = 4, batch: int = 64):
    """An MLP trained on the digits, a confusion matrix of the held-out digits logged by
    `ConfusionMatrices` once per epoch (its `every` is the steps of an epoch); returns
    (measurer, model, validation inputs, validation labels)."""
    import torch

    from deepscope.writer.watch_confusion import ConfusionMatrices

    (x, y), (vx, vy) = digits()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(32, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    steps_per_epoch = (len(y) + batch - 1) // batch
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(vx, vy), batch_size=100)
    measurer = ConfusionMatrices(
        loader, every=steps_per_epoch, class_names=list(DIGITS), tag=TAG, on="held-out digits"
    )
    generator = torch.Generator().manual_seed(1)
    with writer(logdir / run) as w:
        monitor = deepscope.watch(model, optimizer, w, measure=[measurer])
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), batch):
                pick = order[start : start + batch]
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x[pick]), y[pick]).backward()
                optimizer.step()
        monitor.close()
    return measurer, model, vx, vy


def _good_step() -> pb.ConfusionStep:
    labels, predictions = labels_and_predictions("damaged", 0)
    return confusion_step(reference_counts(labels, predictions, len(CLASS_NAMES)))


def _summary(tag: str, step: pb.ConfusionStep) -> summary_pb2.Summary:
    return tensor_summary(tag, step.SerializeToString(), None)


def _negative(tag):
    step = _good_step()
    counts = arrays.decode_array(step.counts).copy()
    counts[0, 1] = -1
    step.counts.CopyFrom(arrays.encode_array(counts))
    step.samples = int(counts.sum())
    return _summary(tag, step)


def _wrong_shape(tag):
    step = _good_step()
    step.counts.CopyFrom(arrays.encode_array(np.ones((3, 3), np.int32)))
    step.samples = 9
    return _summary(tag, step)


def _samples(tag):
    step = _good_step()
    step.samples += 5
    return _summary(tag, step)


def _float_dtype(tag):
    step = _good_step()
    step.counts.CopyFrom(arrays.encode_array(np.ones((4, 4), np.float32)))
    step.samples = 16
    return _summary(tag, step)


def _garbage(tag):
    return tensor_summary(tag, b"\xff\xff\xff not a step", None)


DAMAGED = {
    "negative count": (_negative, "a negative count"),
    "wrong shape": (_wrong_shape, "counts of shape [3, 3], needs [4, 4]"),
    "samples not the sum": (_samples, "samples, but the counts sum to"),
    "float counts": (_float_dtype, "counts of dtype FLOAT32"),
    "garbage": (_garbage, "does not parse as a ConfusionStep"),
}
