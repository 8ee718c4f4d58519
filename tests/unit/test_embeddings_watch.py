"""The Embeddings measurer under watch(): its cadence, the files of each step, its stats,
its errors recorded while training goes on, and bad arguments refused at once."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

import deepscope
from deepscope.writer.watch_embeddings import DEFAULT_EMBEDDINGS_EVERY, Embeddings

EPS32 = float(np.finfo(np.float32).eps)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


def train(model, writer, measurer, steps: int):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(16, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with deepscope.watch(
            model,
            optimizer,
            writer,
            measure=[measurer],
        ) as monitor:
            for _ in range(steps):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
    return monitor, caught


def read_config(logdir: Path) -> ProjectorConfig:
    return text_format.Parse((logdir / "projector_config.pbtxt").read_text(), ProjectorConfig())


def test_logs_each_layer_at_its_cadence_with_labels_and_sprites(tmp_path):
    torch.manual_seed(1)
    model = Net()
    probe = torch.rand(6, 1, 5, 5, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    measurer = Embeddings(
        probe=(probe, labels), layers=["relu", model.fc], every=3, class_names=["a", "b", "c"]
    )
    writer = deepscope.SummaryWriter(str(tmp_path))
    monitor, _ = train(model, writer, measurer, steps=7)
    writer.close()
    names = [e.tensor_name for e in read_config(tmp_path).embeddings]
    assert names == [
        f"embeddings/{layer}:{step:05d}" for step in (0, 3, 6) for layer in ("relu", "fc")
    ]
    stats = monitor.stats.measurers["embeddings"]
    assert stats.runs == 3 and stats.error_count == 0 and stats.seconds > 0
    assert measurer.measurements == 3 and measurer.last_seconds > 0
    last = measurer.logged
    assert set(last) == {"relu", "fc"} and all(e.step == 6 for e in last.values())
    sizes = sum(f.stat().st_size for e in last.values() for f in e.directory.iterdir())
    assert measurer.last_bytes == sizes
    assert measurer.bytes_written >= 3 * min(e.bytes for e in last.values())
    # the last step's vectors are the trained model's, as numpy pools them
    model.eval()
    with torch.no_grad():
        relu = model.relu(model.conv(probe)).numpy().astype(np.float64)
        fc = model(probe).numpy()
    np.testing.assert_allclose(
        last["relu"].vectors, relu.mean(axis=(2, 3)), rtol=0, atol=32 * EPS32 * relu.max()
    )
    assert np.array_equal(last["fc"].vectors, fc)
    meta = (last["fc"].directory / "metadata.tsv").read_text().splitlines()
    assert meta == ["label\tclass\tindex"] + [f"{i % 3}\t{'abc'[i % 3]}\t{i}" for i in range(6)]
    assert (last["fc"].directory / "sprite.png").exists()


def test_a_failing_layer_is_recorded_and_training_goes_on(tmp_path):
    class Blows(torch.nn.Module):
        def forward(self, x):
            return x * float("nan") if not self.training else x

    torch.manual_seed(3)
    model = torch.nn.Sequential(Net(), Blows())
    measurer = Embeddings(probe=torch.rand(4, 1, 5, 5), layers=["0.fc", "1"], every=2)
    writer = deepscope.SummaryWriter(str(tmp_path))
    monitor, caught = train(model, writer, measurer, steps=4)
    writer.close()
    stats = monitor.stats.measurers["embeddings"]
    assert stats.runs == 2 and stats.error_count == 2
    assert "1: ValueError" in stats.errors[0] and "non-finite" in stats.errors[0]
    assert measurer.non_finite == 2
    names = [e.tensor_name for e in read_config(tmp_path).embeddings]
    assert names == ["embeddings/0.fc:00000", "embeddings/0.fc:00002"]  # the good layer
    assert any("embeddings" in str(w.message) for w in caught)  # the first one warned


def test_default_cadence_and_off_unless_given(tmp_path):
    measurer = Embeddings(probe=torch.rand(2, 1, 5, 5), layers="fc")
    assert measurer.every == DEFAULT_EMBEDDINGS_EVERY and measurer.name == "embeddings"
    writer = deepscope.SummaryWriter(str(tmp_path))
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with deepscope.watch(model, optimizer, writer) as monitor:
        assert "embeddings" not in monitor.measurers
    writer.close()


def test_bad_arguments_are_refused_at_once():
    probe = torch.rand(2, 1, 5, 5)
    with pytest.raises(ValueError, match="needs layers"):
        Embeddings(probe=probe)
    with pytest.raises(TypeError, match="module names"):
        Embeddings(probe=probe, layers=[3])
    with pytest.raises(ValueError, match="every must be a positive"):
        Embeddings(probe=probe, layers="fc", every=0)
    with pytest.raises(ValueError, match="pooling must be one of"):
        Embeddings(probe=probe, layers="fc", pooling="sum")
    with pytest.raises(ValueError, match="3 labels for 2 probe samples"):
        Embeddings(probe=probe, layers="fc", labels=[0, 1, 2])
    with pytest.raises(TypeError, match="channel_dims must map"):
        Embeddings(probe=probe, layers="fc", channel_dims={"fc": "1"})


def test_unknown_layers_are_refused_when_watch_starts(tmp_path):
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(tmp_path))
    probe = torch.rand(2, 1, 5, 5)
    with pytest.raises(ValueError, match=r"'fcc' \(did you mean 'fc'\?\)"):
        deepscope.watch(model, optimizer, writer, measure=[Embeddings(probe, layers=["fcc"])])
    with pytest.raises(ValueError, match="twice"):
        deepscope.watch(
            model, optimizer, writer, measure=[Embeddings(probe, layers=["fc", model.fc])]
        )
    with pytest.raises(ValueError, match="channel_dims names 'conv'"):
        deepscope.watch(
            model,
            optimizer,
            writer,
            measure=[Embeddings(probe, layers=["fc"], channel_dims={"conv": 1})],
        )
    writer.close()


def test_training_state_is_untouched_by_a_measurement(tmp_path):
    torch.manual_seed(4)
    model = Net()
    measurer = Embeddings(probe=torch.rand(3, 1, 5, 5), layers=["conv"], every=1)
    writer = deepscope.SummaryWriter(str(tmp_path))
    measurer.start(model, None, writer)
    model.train()
    model.fc.eval()
    loss = model(torch.rand(2, 1, 5, 5)).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.manual_seed(9)
    expected = torch.rand(4)
    torch.manual_seed(9)
    measurer.measure(0)
    assert torch.equal(torch.rand(4), expected)
    assert model.training and model.conv.training and not model.fc.training
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n]), n
    writer.close()
