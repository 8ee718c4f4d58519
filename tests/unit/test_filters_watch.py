"""The `Filters` and `FeatureMaps` measurers, through `deepscope.watch()` on a small CNN.

What they log is checked against the model itself: the weights after the step
(float16 of them, bit for bit) and a direct eval-mode forward pass of the probe sample;
modes, the random state, gradients and hooks are as before a measurement.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.watch_filters import FeatureMaps, Filters, first_conv
from tests import filters_data as data


def stored(written) -> np.ndarray:
    step = pb.FiltersStep.FromString(written.value.tensor.string_val[0])
    return arrays.decode_array(step.values)


def train(model, measurers, tmp_path, steps=4):
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(tmp_path))
    monitor = deepscope.watch(model, optimizer, writer, measure=measurers)
    x = torch.randn(8, 3, 6, 6)
    y = torch.randint(0, 3, (8,))
    weights = {}
    for step in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        weights[step] = {
            n: m.weight.detach().clone()
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Conv2d)
        }
    monitor.close()
    writer.close()
    return monitor, weights


def test_filters_logs_the_first_conv_after_each_due_step(tmp_path, read_values):
    torch.manual_seed(1)
    model = data.SmallCNN()
    monitor, weights = train(model, [Filters(every=2)], tmp_path)
    written = read_values(tmp_path, "filters/conv1")
    assert [w.step for w in written] == [0, 2]
    for value in written:
        want = weights[value.step]["conv1"].numpy().astype(np.float16)
        np.testing.assert_array_equal(stored(value).view(np.uint16), want.view(np.uint16))
        assert pb.FiltersStep.FromString(value.value.tensor.string_val[0]).rgb
    assert monitor.stats.measurers["filters"].error_count == 0
    assert read_values(tmp_path, "filters/conv2") == []


def test_filters_of_named_layers_and_bad_names(tmp_path, read_values):
    model = data.SmallCNN()
    train(model, [Filters(every=3, layers=["conv2"], max_tiles=10)], tmp_path)
    written = read_values(tmp_path, "filters/conv2")
    assert [w.step for w in written] == [0, 3]
    # 4 input channels, at most 10 tiles: the first 2 out-channels.
    assert [stored(w).shape for w in written] == [(2, 4, 3, 3)] * 2
    writer = deepscope.SummaryWriter(str(tmp_path / "bad"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no module named 'conv9'"):
        deepscope.watch(model, optimizer, writer, measure=[Filters(layers=["conv9"])])
    with pytest.raises(ValueError, match="no conv weight"):
        deepscope.watch(model, optimizer, writer, measure=[Filters(layers=["bn"])])
    with pytest.raises(ValueError, match="no nn.Conv1d"):
        first_conv(torch.nn.Linear(3, 3))
    writer.close()


def test_feature_maps_match_a_direct_eval_forward_and_leave_the_model_as_it_was(
    tmp_path, read_values
):
    torch.manual_seed(2)
    model = data.SmallCNN()
    probe = torch.randn(5, 3, 6, 6)
    measurer = FeatureMaps(["conv1", "conv2"], probe, every=1, sample=3)
    writer = deepscope.SummaryWriter(str(tmp_path))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    deepscope.watch(model, optimizer, writer, measure=[measurer])
    model.train()
    hooks_before = [len(m._forward_hooks) for m in model.modules()]
    x = torch.randn(8, 3, 6, 6)
    torch.nn.functional.cross_entropy(model(x), torch.randint(0, 3, (8,))).backward()
    rng_before = torch.random.get_rng_state()
    optimizer.step()  # measures at step 0
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert model.training and model.drop.training and model.bn.training
    assert [len(m._forward_hooks) for m in model.modules()] == hooks_before
    # The reference: the whole probe batch in eval mode, sample 3 of it.
    model.eval()
    with torch.no_grad():
        conv1 = model.conv1(probe)
        conv2 = model.conv2(torch.relu(model.bn(conv1)))
    model.train()
    writer.close()
    for tag, want in (("feature_maps/conv1", conv1[3]), ("feature_maps/conv2", conv2[3])):
        (value,) = read_values(tmp_path, tag)
        got = stored(value).astype(np.float64)
        ref = want.numpy().astype(np.float64)
        # float32 forward of one sample vs the batch (summation order), then float16 rounding.
        eps16 = float(np.finfo(np.float16).eps)
        np.testing.assert_allclose(got, ref, rtol=eps16, atol=1e-5 * float(np.abs(ref).max()))
        step = pb.FiltersStep.FromString(value.value.tensor.string_val[0])
        assert step.sample == 3 and step.total == want.shape[0]


def test_feature_maps_errors(tmp_path):
    with pytest.raises(ValueError, match="needs layers"):
        FeatureMaps(None, torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="out of range"):
        FeatureMaps(["conv1"], torch.zeros(2, 3, 4, 4), sample=2)
    with pytest.raises(ValueError, match="sample must be"):
        FeatureMaps(["conv1"], torch.zeros(2, 3, 4, 4), sample=-1)
    model = data.SmallCNN()
    measurer = FeatureMaps(["fc"], torch.zeros(2, 3, 6, 6))
    writer = deepscope.SummaryWriter(str(tmp_path))
    measurer.start(model, None, writer)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        measurer.measure(0)
    writer.close()
