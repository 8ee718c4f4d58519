"""Which dim holds the channels: one rule (default_channel_dim), used by every entry point."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepscope
from deepscope import metadata
from deepscope.analysis.correlation import (
    CorrelationAccumulator,
    default_channel_dim,
    is_channels_first_module,
)
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.compare import compare
from deepscope.writer.watch_correlation import CorrelationWatcher

ATOL = 2e-3  # float16 matrices: half a unit in the last place near |rho| = 1 is 4.9e-4


def _channels_last_reference(x: torch.Tensor) -> np.ndarray:
    """numpy corrcoef of the last dim's channels, every other position a sample."""
    return np.corrcoef(x.reshape(-1, x.shape[-1]).double().numpy(), rowvar=False)


def _step(written) -> pb.CorrelationStep:
    return pb.CorrelationStep.FromString(written.value.tensor.string_val[0])


def _info(written) -> pb.CorrelationInfo:
    return metadata.parse_plugin_data(written.value.metadata.plugin_data.content).correlation


@pytest.mark.parametrize(
    "ndim, channels_first, expected",
    [(2, False, 1), (3, False, 2), (3, True, 1), (4, False, 1), (5, False, 1), (2, True, 1)],
)
def test_the_rule(ndim, channels_first, expected):
    assert default_channel_dim(ndim, channels_first) == expected


@pytest.mark.parametrize("ndim", [0, 1, 2.0, True])
def test_the_rule_refuses_what_has_no_sample_dim(ndim):
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        default_channel_dim(ndim)


def test_channels_first_modules_are_the_1d_conv_norm_and_pool_layers():
    firsts = [
        torch.nn.Conv1d(3, 4, 3),
        torch.nn.ConvTranspose1d(3, 4, 3),
        torch.nn.BatchNorm1d(4),
        torch.nn.InstanceNorm1d(4),
        torch.nn.GroupNorm(2, 4),
        torch.nn.MaxPool1d(2),
        torch.nn.AvgPool1d(2),
        torch.nn.AdaptiveAvgPool1d(3),
    ]
    lasts = [torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.GELU(), torch.nn.Sequential()]
    assert all(is_channels_first_module(m) for m in firsts)
    assert not any(is_channels_first_module(m) for m in lasts)


def test_accumulator_default_reads_sequences_channels_last():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 30, 5, generator=g)  # (N, L, C)
    x[..., 1] += 0.7 * x[..., 0]
    acc = CorrelationAccumulator()
    acc.update(x)
    result = acc.compute()
    assert result.matrix.shape == (5, 5) and result.samples == 4 * 30
    assert result.channel_dim == 2 and result.activation_shape == (4, 30, 5)
    np.testing.assert_allclose(result.matrix, _channels_last_reference(x), rtol=0, atol=1e-6)
    conv = CorrelationAccumulator()
    conv.update(torch.randn(3, 6, 4, 4, generator=g))
    assert conv.compute().matrix.shape == (6, 6) and conv.channel_dim == 1


def test_add_channel_correlation_default_is_the_rule(tmp_path, read_values):
    x = torch.randn(4, 50, 6, generator=torch.Generator().manual_seed(1))
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        writer.add_channel_correlation("seq", x, global_step=0)
        with pytest.warns(RuntimeWarning, match="24 samples for 50 channels"):
            writer.add_channel_correlation("positions", x, global_step=0, channel_dim=1)
    (seq,) = read_values(tmp_path, "seq")
    step = _step(seq)
    assert _info(seq).channel_dim == 2 and list(step.activation_shape) == [4, 50, 6]
    assert step.samples == 200
    np.testing.assert_allclose(
        arrays.decode_array(step.matrix), _channels_last_reference(x), rtol=0, atol=ATOL
    )
    (positions,) = read_values(tmp_path, "positions")  # the explicit override still works
    assert arrays.decode_array(_step(positions).matrix).shape == (50, 50)
    assert _info(positions).channel_dim == 1


class SequenceNet(torch.nn.Module):
    """Embeddings (N, L, 8) → Linear (N, L, 6) → Conv1d over (N, 6, L) → (N, 5, L)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, 8)
        self.proj = torch.nn.Linear(8, 6)
        self.conv = torch.nn.Conv1d(6, 5, 3, padding=1)

    def forward(self, tokens):
        h = self.proj(self.embed(tokens))
        return self.conv(h.transpose(1, 2)).mean(dim=2)


def _tokens(seed: int = 2) -> torch.Tensor:
    return torch.randint(0, 20, (6, 16), generator=torch.Generator().manual_seed(seed))


def _outputs(net: SequenceNet, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        proj = net.proj(net.embed(tokens))
        return proj, net.conv(proj.transpose(1, 2))


def test_watcher_reads_linear_channels_last_and_conv1d_channels_first(tmp_path, read_values):
    torch.manual_seed(3)
    net = SequenceNet()
    tokens = _tokens()
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        watcher = CorrelationWatcher(net, writer, layers=["proj", "conv"], probe=tokens, every=1)
        watcher.measure(0)
    proj, conv = _outputs(net, tokens)
    (p,) = read_values(tmp_path, "correlation/proj")
    (c,) = read_values(tmp_path, "correlation/conv")
    assert (_info(p).channel_dim, _info(c).channel_dim) == (2, 1)
    assert list(_step(p).activation_shape) == [6, 16, 6]
    assert list(_step(c).activation_shape) == [6, 5, 16]
    assert _step(p).samples == _step(c).samples == 6 * 16
    np.testing.assert_allclose(
        arrays.decode_array(_step(p).matrix), _channels_last_reference(proj), rtol=0, atol=ATOL
    )
    conv_ref = _channels_last_reference(conv.transpose(1, 2))
    np.testing.assert_allclose(arrays.decode_array(_step(c).matrix), conv_ref, rtol=0, atol=ATOL)


def test_watcher_per_layer_override_and_all_layers_channel_dim(tmp_path, read_values):
    torch.manual_seed(4)
    net = SequenceNet()
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        CorrelationWatcher(
            net, writer, layers=["proj", "conv"], probe=_tokens(), channel_dims={"proj": 1}
        ).measure(0)
        CorrelationWatcher(
            net, writer, layers=["proj"], probe=_tokens(), channel_dim=-2, tag_prefix="all/"
        ).measure(0)
    (p,) = read_values(tmp_path, "correlation/proj")
    assert arrays.decode_array(_step(p).matrix).shape == (16, 16)  # positions, as asked
    (c,) = read_values(tmp_path, "correlation/conv")
    assert _info(c).channel_dim == 1  # the rule for the layer not overridden
    (a,) = read_values(tmp_path, "all/proj")
    assert _info(a).channel_dim == 1 and arrays.decode_array(_step(a).matrix).shape == (16, 16)


def test_watcher_refuses_bad_channel_dims(tmp_path):
    net = SequenceNet()
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        with pytest.raises(ValueError, match="not one of the layers measured"):
            CorrelationWatcher(net, writer, ["proj"], _tokens(), channel_dims={"conv": 1})
        with pytest.raises(TypeError, match="map layer names to ints"):
            CorrelationWatcher(net, writer, ["proj"], _tokens(), channel_dims={"proj": "1"})
        with pytest.raises(TypeError, match="channel_dim must be an int"):
            CorrelationWatcher(net, writer, ["proj"], _tokens(), channel_dim=1.0)
        with pytest.raises(ValueError, match="packing"):
            CorrelationWatcher(net, writer, ["proj"], _tokens(), packing="lower")


def test_compare_default_rule_and_per_layer_override(tmp_path, read_values):
    torch.manual_seed(5)
    a, b = SequenceNet(), SequenceNet()
    tokens = _tokens(6)
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        found = compare(a, b, tokens, layers=["proj", "conv"], writer=writer, global_step=0)
        overridden = compare(a, b, tokens, layers=["proj"], channel_dims={"proj": 1})
    proj_a, conv_a = _outputs(a, tokens)
    proj_b, conv_b = _outputs(b, tokens)
    joint = _channels_last_reference(torch.cat([proj_a, proj_b], dim=-1))
    np.testing.assert_allclose(found["proj"].correlation.matrix, joint[:6, 6:], rtol=0, atol=1e-5)
    conv_joint = _channels_last_reference(torch.cat([conv_a, conv_b], dim=1).transpose(1, 2))
    np.testing.assert_allclose(
        found["conv"].correlation.matrix, conv_joint[:5, 5:], rtol=0, atol=1e-5
    )
    assert found["proj"].correlation.samples == 6 * 16
    assert overridden["proj"].correlation.matrix.shape == (16, 16)
    (logged,) = read_values(tmp_path, "compare/proj")
    assert _info(logged).channel_dim == 2 and list(_step(logged).activation_shape) == [6, 16, 6]
    with pytest.raises(ValueError, match="not one of the layers measured"):
        compare(a, b, tokens, layers=["proj"], channel_dims={"embed": 1})


def test_watch_forwards_nothing_it_does_not_know_about(tmp_path):
    """watch(correlation_layers=...) keeps working with the rule as its default."""
    torch.manual_seed(7)
    net = SequenceNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        monitor = deepscope.watch(
            net,
            optimizer,
            writer,
            correlation_layers=["proj"],
            probe=_tokens(),
            correlation_every=1,
            spectra_every=None,
        )
        optimizer.zero_grad()
        net(_tokens(8)).square().mean().backward()
        optimizer.step()
        monitor.close()
    assert monitor.stats.error_count == 0, monitor.stats.errors
    watcher = monitor.measurers["correlation"]
    assert watcher.measurements == 1 and watcher.channel_dim is None
