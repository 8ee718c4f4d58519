"""The confusion-matrix builder, `add_confusion_matrix` and the `ConfusionMatrices` measurer:
counts against numpy's (`np.add.at`) and scikit-learn's, inputs as tensors, arrays and lists,
scores reduced by argmax, input errors, metadata on the first event only, modes and random
state restored, and the measurer logging per its cadence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix
from tensorboard.backend.event_processing import event_accumulator

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.confusion import confusion_matrix_pb, counts_of
from deepscope.writer.watch_confusion import ConfusionMatrices
from tests import confusion_data as data


def _step(summary) -> pb.ConfusionStep:
    return pb.ConfusionStep.FromString(summary.value[0].tensor.string_val[0])


def _reference(labels, predictions, size):
    counts = np.zeros((size, size), np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def test_builder_round_trip_with_class_names():
    generator = np.random.default_rng(0)
    labels = generator.integers(0, 3, 100)
    predictions = generator.integers(0, 3, 100)
    summary = confusion_matrix_pb("c", labels, predictions, ["a", "b", "c"], on="val")
    info = pb.PluginData.FromString(summary.value[0].metadata.plugin_data.content)
    assert info.kind == pb.CONFUSION and list(info.confusion.class_names) == ["a", "b", "c"]
    assert info.confusion.num_classes == 3
    step = _step(summary)
    assert step.counts.dtype == pb.INT32 and step.samples == 100 and step.on == "val"
    np.testing.assert_array_equal(
        arrays.decode_array(step.counts), confusion_matrix(labels, predictions, labels=[0, 1, 2])
    )


def test_scores_are_reduced_by_argmax_and_tensors_lists_arrays_agree():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 4, generator=generator)
    labels = torch.randint(0, 4, (50,), generator=generator)
    want = _reference(labels.numpy(), logits.numpy().argmax(1), 4)
    np.testing.assert_array_equal(counts_of(labels, logits), want)
    np.testing.assert_array_equal(counts_of(labels.numpy(), logits.numpy()), want)
    np.testing.assert_array_equal(counts_of(labels.tolist(), logits.argmax(1).tolist(), 4), want)
    probabilities = logits.softmax(1).double()
    np.testing.assert_array_equal(counts_of(labels, probabilities), want)


def test_classes_absent_from_a_batch_still_get_a_row():
    counts = counts_of([0, 1], [1, 1], num_classes=5)
    assert counts.shape == (5, 5) and counts.sum() == 2 and counts[0, 1] == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"labels": [0, 3], "predictions": [0, 1], "num_classes": 3}, ValueError, "out of range"),
        ({"labels": [0, 1, 1], "predictions": [0, 1]}, ValueError, "3 labels and 2 predictions"),
        (
            {"labels": [0, 1], "predictions": [0, 1], "class_names": ["a"]},
            ValueError,
            "out of range for 1 classes",
        ),
        (
            {"labels": [0, 1], "predictions": np.zeros((2, 3)), "class_names": ["a", "b"]},
            ValueError,
            "disagrees",
        ),
        ({"labels": [0, 1], "predictions": np.zeros((2, 2, 2))}, ValueError, r"\[N, C\]"),
        ({"labels": ["a", "b"], "predictions": [0, 1]}, TypeError, "integer class indices"),
        (
            {"labels": [0, 1], "predictions": [0, 1], "class_names": ["a", "a"]},
            ValueError,
            "unique",
        ),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, error, message):
    with pytest.raises(error, match=message):
        confusion_matrix_pb("c", **kwargs)


def _events(logdir):
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return accumulator


def test_writer_keeps_metadata_on_the_first_event_and_refuses_other_classes(tmp_path):
    with data.writer(tmp_path) as w:
        w.add_confusion_matrix("c", [0, 1], [0, 0], class_names=["x", "y"], global_step=0)
        w.add_confusion_matrix("c", [1, 1], [1, 0], class_names=["x", "y"], global_step=1)
        with pytest.raises(ValueError, match="has 2 classes from its first event"):
            w.add_confusion_matrix("c", [0, 2], [0, 1], global_step=2)
    events = _events(tmp_path).Tensors("c")
    assert [e.step for e in events] == [0, 1]


def test_measurer_logs_on_its_cadence_restoring_modes_and_random_state(tmp_path):
    (x, y), (vx, vy) = data.digits()
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 10)
    )
    model.train()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(vx, vy), batch_size=50, shuffle=True
    )
    measurer = ConfusionMatrices(loader, every=2, class_names=list(data.DIGITS), tag="c")
    with data.writer(tmp_path) as w:
        measurer.start(model, None, w)
        torch.manual_seed(5)
        before = torch.get_rng_state()
        measurer.measure(4)
        assert torch.equal(torch.get_rng_state(), before)  # the shuffle's draws are undone
        assert all(m.training for m in model.modules())
    with torch.no_grad():
        model.eval()
        want = _reference(vy.numpy(), model(vx).argmax(1).numpy(), 10)
    np.testing.assert_array_equal(measurer.last_counts, want)
    step = _step_of(_events(tmp_path).Tensors("c")[0])
    np.testing.assert_array_equal(arrays.decode_array(step.counts), want)
    assert measurer.due(4) and not measurer.due(5)


def _step_of(event) -> pb.ConfusionStep:
    return pb.ConfusionStep.FromString(event.tensor_proto.string_val[0])


def test_measurer_under_watch_logs_once_per_epoch(tmp_path):
    measurer, model, vx, vy = data.log_training(tmp_path, epochs=3)
    events = _events(tmp_path / "digits").Tensors(data.TAG)
    assert measurer.measurements == len(events) == 3
    last = arrays.decode_array(_step_of(events[-1]).counts)
    np.testing.assert_array_equal(last, measurer.last_counts)
    assert last.sum() == len(vy)
    assert np.trace(last) / last.sum() > 0.5  # it learned: more than chance (0.1) by far
    with torch.no_grad():  # evaluate() on the trained model is numpy's count of its argmax
        model.eval()
        want = _reference(vy.numpy(), model(vx).argmax(1).numpy(), 10)
    model.train()
    np.testing.assert_array_equal(measurer.evaluate(model), want)


def test_measurer_arguments_are_checked():
    with pytest.raises(TypeError, match="labelled evaluation batches"):
        ConfusionMatrices(None)
    with pytest.raises(ValueError, match="max_batches"):
        ConfusionMatrices(([], []), max_batches=0)
    with pytest.raises(ValueError, match="class_names has 2 names for 3"):
        ConfusionMatrices(([], []), class_names=["a", "b"], num_classes=3)
