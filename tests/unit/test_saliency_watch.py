"""watch(saliency_probe=...): probe maps logged while training; the training itself unchanged."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

import deepscope
from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.watch_saliency import SaliencyWatcher
from tests.hf_models import tiny_vit


def started(measurer, model, writer):
    """`measurer` attached to `model` and `writer` as watch() attaches it (no optimizer needed)."""
    measurer.start(model, None, writer)
    return measurer


class Net(torch.nn.Module):
    """Conv net with batch norm and dropout: training would notice any state or RNG disturbed."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.relu = torch.nn.ReLU(inplace=True)
        self.drop = torch.nn.Dropout(0.3)
        self.head = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.head(self.drop(self.relu(self.norm(self.conv(x)))).flatten(1))


def _train(steps, monitor_options=None, logdir=None, on_step=None):
    """Train a fresh seeded Net; return it (and the monitor) after `steps` optimizer steps."""
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = torch.randn(8, 1, 6, 6)
    labels = torch.randint(0, 3, (8,))
    monitor = None
    writer = None
    if monitor_options is not None:
        writer = deepscope.SummaryWriter(str(logdir))
        monitor = deepscope.watch(model, optimizer, writer, spectra_every=None, **monitor_options)
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(model(data), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step, model)
    if monitor is not None:
        monitor.close()
        writer.close()
    return model, monitor


PROBE = (torch.linspace(-1, 1, 4 * 36).reshape(4, 1, 6, 6), torch.tensor([0, 1, 2, 1]))


def test_watch_logs_each_methods_maps_and_leaves_training_unchanged(tmp_path, read_values):
    reference = {}

    def reference_gradient(step, model):
        # Plain autograd on a copy in eval mode: the probe labels' input gradient.
        if step % 2 == 0:
            twin = copy.deepcopy(model).eval()
            x = PROBE[0].clone().requires_grad_(True)
            score = twin(x)[torch.arange(4), PROBE[1]].sum()
            reference[step] = torch.autograd.grad(score, x)[0].numpy()

    options = dict(
        saliency_probe=PROBE,
        saliency_every=2,
        saliency_methods=("gradient", "smoothgrad", "integrated_gradients"),
    )
    watched, monitor = _train(5, options, tmp_path, on_step=reference_gradient)
    plain, _ = _train(5)
    # Same parameters and batch-norm statistics: no .grad, mode, statistic or random
    # number of the training was touched. Any of those would move them by far more
    # than the few ulps two runs of the same computation may differ by.
    for (name, a), b in zip(watched.state_dict().items(), plain.state_dict().values()):
        if not a.is_floating_point():  # num_batches_tracked: an integer count
            assert torch.equal(a, b), name
            continue
        rounding = 8 * torch.finfo(a.dtype).eps * float(b.abs().max())
        torch.testing.assert_close(a, b, rtol=0, atol=rounding, msg=name)
    assert monitor.stats.error_count == 0
    assert monitor.stats.measurer_runs["saliency"] == 3
    assert monitor.measurers["saliency"].runs == 3

    for method in options["saliency_methods"]:
        written = read_values(tmp_path, f"saliency/{method}")
        assert [w.step for w in written] == [0, 2, 4]
        assert [w.has_metadata for w in written] == [True, False, False]
        info = metadata.parse_plugin_data(written[0].value.metadata.plugin_data.content)
        assert info.saliency.method == method and list(info.saliency.input_shape) == [1, 6, 6]
        for w in written:
            step = pb.SaliencyStep.FromString(w.value.tensor.string_val[0])
            np.testing.assert_allclose(arrays.decode_array(step.inputs), PROBE[0], atol=1e-3)
            assert arrays.decode_array(step.labels).tolist() == PROBE[1].tolist()
            assert arrays.decode_array(step.predictions).shape == (4,)
            assert step.HasField("completeness_error") == (method == "integrated_gradients")
            if method == "gradient":
                want = reference[w.step]
                got = arrays.decode_array(step.maps)
                np.testing.assert_allclose(got, want, rtol=2**-10, atol=1e-3 * np.abs(want).max())


def test_watcher_failures_are_recorded_and_training_goes_on(tmp_path):
    # A probe that passes the check at watch() time; the method's options fail at each step.
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        _, monitor = _train(
            3,
            dict(
                saliency_probe=PROBE,
                saliency_every=1,
                saliency_methods=["integrated_gradients"],
                saliency_options={"integrated_gradients": {"n_steps": 0}},
            ),
            tmp_path,
        )
    assert monitor.stats.steps_seen == 3
    assert monitor.stats.error_count == 3
    assert "n_steps must be at least 1" in monitor.stats.errors[0]


def test_a_bad_probe_is_refused_once_when_watching(tmp_path):
    torch.manual_seed(0)
    model = Net().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(tmp_path))
    bad_labels = (PROBE[0], torch.tensor([0, 1, 2, 7]))  # class 7 of 3
    with pytest.raises(ValueError, match="saliency probe .*out of range for a model with 3"):
        deepscope.watch(model, optimizer, writer, saliency_probe=bad_labels)
    with pytest.raises(ValueError, match=r"saliency probe of shape \[4, 2, 6, 6\]"):
        started(
            deepscope.Saliency(probe=torch.zeros(4, 2, 6, 6)), model, writer
        )  # 2 channels, not 1
    assert model.training and all(m.training for m in model.modules())  # mode restored
    for key, value in model.state_dict().items():  # batch-norm statistics untouched
        assert torch.equal(value, state[key]), key

    class Talks(torch.nn.Module):
        def forward(self, x):
            return {"text": "no scores here"}

    with pytest.raises(ValueError, match="saliency probe .*keys \\['text'\\]"):
        started(deepscope.Saliency(probe=PROBE[0]), Talks(), writer)

    class OneRow(torch.nn.Module):
        def forward(self, x):
            return x.sum(dim=0, keepdim=True).flatten(1)

    with pytest.raises(ValueError, match="1 rows for 4 probe inputs"):
        started(deepscope.Saliency(probe=PROBE[0]), OneRow(), writer)
    writer.close()


def test_watch_measures_a_hugging_face_vit(tmp_path, read_values):
    model = tiny_vit(image=16, channels=1, layers=1, intermediate=32)
    writer = deepscope.SummaryWriter(str(tmp_path))
    probe = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    watcher = started(
        deepscope.Saliency(probe=probe, methods=["gradient", "occlusion"]), model, writer
    )
    watcher.measure(0)
    writer.close()
    step = pb.SaliencyStep.FromString(
        read_values(tmp_path, "saliency/gradient")[0].value.tensor.string_val[0]
    )
    point = probe.clone().requires_grad_(True)
    model.eval()
    logits = model(point).logits
    target = logits.argmax(dim=1)
    (want,) = torch.autograd.grad(logits[torch.arange(2), target].sum(), point)
    got = arrays.decode_array(step.maps)
    np.testing.assert_allclose(got, want.numpy(), rtol=2**-10, atol=2**-10 * want.abs().max())
    assert arrays.decode_array(step.predictions).tolist() == target.tolist()


def test_non_finite_maps_warned_once_and_counted(tmp_path, read_values):
    class Sqrt(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(torch.sqrt(x))

    model = Sqrt()
    writer = deepscope.SummaryWriter(str(tmp_path))
    watcher = started(deepscope.Saliency(probe=torch.tensor([[0.0, 1.0]]), every=1), model, writer)
    with pytest.warns(RuntimeWarning, match="NaN or infinite.*warned once"):
        watcher.measure(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        watcher.measure(1)
    writer.close()
    assert watcher.non_finite == 2
    steps = [
        pb.SaliencyStep.FromString(w.value.tensor.string_val[0])
        for w in read_values(tmp_path, "saliency/gradient")
    ]
    assert [s.non_finite for s in steps] == [1, 1]


def test_watcher_arguments_are_checked_up_front(tmp_path):
    model = Net()
    with pytest.raises(ValueError, match="unknown saliency method 'gradcam'"):
        started(deepscope.Saliency(probe=PROBE, methods=["gradcam"]), model, None)
    with pytest.raises(ValueError, match="4 inputs but labels of shape"):
        started(deepscope.Saliency(probe=(PROBE[0], torch.tensor([0, 1]))), model, None)
    with pytest.raises(TypeError, match="floating-point inputs"):
        started(deepscope.Saliency(probe=torch.zeros(2, 1, 6, 6, dtype=torch.long)), model, None)
    with pytest.raises(ValueError, match="every must be a positive number of optimizer steps"):
        started(deepscope.Saliency(probe=PROBE, every=0), model, None)
    with pytest.raises(ValueError, match="not measured"):
        started(
            deepscope.Saliency(probe=PROBE, method_options={"occlusion": {"window": 2}}),
            model,
            None,
        )


def test_method_options_reach_the_method(tmp_path, read_values):
    model = Net()
    writer = deepscope.SummaryWriter(str(tmp_path))
    watcher = started(
        deepscope.Saliency(
            probe=PROBE[0],
            methods=["occlusion"],
            method_options={"occlusion": {"window": 6, "baseline_value": 0.0}},
        ),
        model,
        writer,
    )
    watcher.measure(0)
    writer.close()
    (written,) = read_values(tmp_path, "saliency/occlusion")
    maps = arrays.decode_array(pb.SaliencyStep.FromString(written.value.tensor.string_val[0]).maps)
    # One window hides the whole image: each sample's map is one constant, the drop f(x) − f(0).
    model.eval()
    with torch.no_grad():
        scores = model(PROBE[0])
        targets = scores.argmax(dim=1)
        drop = scores[torch.arange(4), targets] - model(torch.zeros(4, 1, 6, 6))[0, targets]
    np.testing.assert_allclose(maps, drop[:, None, None, None].expand(4, 1, 6, 6), rtol=2**-10)


def test_the_older_spelling_is_a_started_saliency(tmp_path, read_values):
    torch.manual_seed(0)
    model = Net()
    writer = deepscope.SummaryWriter(str(tmp_path))
    watcher = SaliencyWatcher(model, writer, probe=PROBE, every=3, methods=["gradient"])
    assert isinstance(watcher, deepscope.Saliency) and watcher.every == 3
    watcher.measure(0)
    writer.close()
    new = started(deepscope.Saliency(probe=PROBE, every=3), model, None)
    assert new.model is watcher.model and new.methods == watcher.methods
    assert [v.step for v in read_values(tmp_path, "saliency/gradient")] == [0]
