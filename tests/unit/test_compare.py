"""compare() of two networks and the CorrelationWatcher inside watch()."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import deepscope
from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.compare import compare
from deepscope.writer.watch_correlation import CorrelationWatcher


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 6, 3)
        self.fc = torch.nn.Linear(6, 4)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))


def _net(seed: int) -> Net:
    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():  # running statistics that are not the defaults
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
    return net


def _permuted_copy(net: Net, perm1: torch.Tensor, perm2: torch.Tensor) -> Net:
    """The same function with conv1's channels reordered by perm1 and conv2's by perm2."""
    copy = Net()
    with torch.no_grad():
        copy.conv1.weight.copy_(net.conv1.weight[perm1])
        copy.conv1.bias.copy_(net.conv1.bias[perm1])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(copy.bn1, name).copy_(getattr(net.bn1, name)[perm1])
        copy.conv2.weight.copy_(net.conv2.weight[perm2][:, perm1])
        copy.conv2.bias.copy_(net.conv2.bias[perm2])
        copy.fc.weight.copy_(net.fc.weight[:, perm2])
        copy.fc.bias.copy_(net.fc.bias)
    return copy


def _probe(seed: int = 0, n: int = 12) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_permuted_copy_is_recovered_with_correlation_one(tmp_path, read_values):
    net = _net(0)
    perm1, perm2 = torch.randperm(8), torch.randperm(6)
    copy = _permuted_copy(net, perm1, perm2)
    net.train()
    copy.eval()
    probe = _probe()
    torch.testing.assert_close(net.eval()(probe), copy(probe), rtol=1e-5, atol=1e-5)
    net.train()
    running_mean = net.bn1.running_mean.clone()

    writer = deepscope.SummaryWriter(str(tmp_path))
    results = compare(
        net, copy, probe, layers=["conv1", "bn1", "conv2"], writer=writer, global_step=4
    )
    writer.close()

    # copy's channel k is net's channel perm[k]
    for label, perm in (("conv1", perm1), ("bn1", perm1), ("conv2", perm2)):
        found = results[label]
        inverse = torch.argsort(perm).numpy()  # net channel i sits at copy channel inverse[i]
        np.testing.assert_array_equal(found.matching.semi_cols, inverse)
        np.testing.assert_array_equal(found.matching.bipartite_cols, inverse)
        np.testing.assert_allclose(found.matching.bipartite_corr, 1.0, atol=1e-5)
        assert found.matching.bipartite_mean == pytest.approx(1.0, abs=1e-5)
        assert found.correlation.samples == 12 * 64 - (label == "conv2") * 12 * 28
        assert found.tag == "compare/" + label

    # modes, hooks and batch-norm statistics as they were
    assert net.training and net.bn1.training and not copy.training
    torch.testing.assert_close(net.bn1.running_mean, running_mean, rtol=0, atol=0)
    for module in [*net.modules(), *copy.modules()]:
        assert not module._forward_hooks

    values = read_values(tmp_path, "compare/conv2")
    assert [(v.step, v.has_metadata) for v in values] == [(4, True)]
    info = metadata.parse_plugin_data(values[0].value.metadata.plugin_data.content).correlation
    assert (info.cross, info.row_name, info.col_name) == (True, "model_a/conv2", "model_b/conv2")
    step = pb.CorrelationStep.FromString(values[0].value.tensor.string_val[0])
    cols = arrays.decode_array(step.matching.bipartite_cols)
    np.testing.assert_array_equal(cols, torch.argsort(perm2).numpy())


def test_layer_pairs_and_batches_match_numpy():
    a, b = _net(1), _net(2)
    batches = [(_probe(k, 5), torch.zeros(5)) for k in range(3)]  # a DataLoader's (x, y)
    results = compare(a, b, batches, layers=[("conv1", "bn1"), "conv2"])
    assert list(results) == ["conv1-vs-bn1", "conv2"]
    x = torch.cat([batch for batch, _ in batches])
    a.eval()
    b.eval()
    with torch.no_grad():
        out_a = a.conv1(x)
        out_b = b.bn1(b.conv1(x))
    rows_a = out_a.movedim(1, -1).reshape(-1, 8).double().numpy()
    rows_b = out_b.movedim(1, -1).reshape(-1, 8).double().numpy()
    ref = np.corrcoef(rows_a.T, rows_b.T)
    found = results["conv1-vs-bn1"]
    assert (found.name_a, found.name_b, found.tag) == ("conv1", "bn1", None)
    np.testing.assert_allclose(found.correlation.matrix, ref[:8, 8:], atol=1e-5)
    np.testing.assert_allclose(found.correlation.within_rows, ref[:8, :8], atol=1e-5)
    np.testing.assert_allclose(found.correlation.within_cols, ref[8:, 8:], atol=1e-5)
    assert found.correlation.samples == 15 * 64


def test_layers_of_different_spatial_size_raise():
    a, b = _net(1), _net(2)
    with pytest.raises(ValueError, match="same samples"):
        compare(a, b, _probe(), layers=[("conv1", "conv2")])
    for module in [*a.modules(), *b.modules()]:
        assert not module._forward_hooks
    assert a.training and b.training


def test_compare_errors_name_the_modules():
    a, b = _net(0), _net(1)
    with pytest.raises(ValueError, match=r"no module named 'conv9'.*conv1, bn1, conv2, fc"):
        compare(a, b, _probe(), layers=["conv9"])
    with pytest.raises(TypeError, match="module names"):
        compare(a, b, _probe(), layers=[3])
    with pytest.raises(ValueError, match="no batches"):
        compare(a, b, [], layers=["conv1"])
    for module in a.modules():
        assert not module._forward_hooks


@pytest.mark.filterwarnings("ignore:deepscope. non-finite update ratio")  # bn1.bias starts at 0
def test_watch_logs_within_layer_correlations_on_its_cadence(tmp_path, read_values):
    net = _net(3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    probe = _probe(7, 6)
    writer = deepscope.SummaryWriter(str(tmp_path))
    monitor = deepscope.watch(
        net,
        optimizer,
        writer,
        correlation_layers=["conv1", "conv2"],
        probe=probe,
        correlation_every=2,
        spectra_every=None,
    )
    x = _probe(8, 6)
    for _ in range(5):
        optimizer.zero_grad()
        net(x).square().mean().backward()
        optimizer.step()
    monitor.close()
    writer.close()
    assert monitor.stats.error_count == 0, monitor.stats.errors
    assert monitor.stats.measurer_runs["correlation"] == 3

    values = read_values(tmp_path, "correlation/conv2")
    assert [(v.step, v.has_metadata) for v in values] == [(0, True), (2, False), (4, False)]
    info = metadata.parse_plugin_data(values[0].value.metadata.plugin_data.content).correlation
    assert (info.cross, info.channel_dim, info.row_name) == (False, 1, "conv2")
    # the last measurement ran after the last step: the model is still as it saw it
    net.eval()
    with torch.no_grad():
        out = net.conv2(torch.relu(net.bn1(net.conv1(probe))))
    rows = out.movedim(1, -1).reshape(-1, 6).double().numpy()
    step = pb.CorrelationStep.FromString(values[-1].value.tensor.string_val[0])
    np.testing.assert_allclose(arrays.decode_array(step.matrix), np.corrcoef(rows.T), atol=2e-3)
    assert step.samples == 6 * 36
    for module in net.modules():
        assert not module._forward_hooks


def test_watcher_restores_train_mode_and_leaves_batch_norm_alone(tmp_path):
    net = _net(4).train()
    before = {k: v.clone() for k, v in net.bn1.state_dict().items()}
    writer = deepscope.SummaryWriter(str(tmp_path))
    watcher = CorrelationWatcher(net, writer, layers=["bn1"], probe=(_probe(), None), every=3)
    net.conv1.train(False)  # a mixed mode is restored as it was
    watcher.measure(9)
    writer.close()
    assert net.training and net.bn1.training and not net.conv1.training
    for key, value in net.bn1.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert watcher.measurements == 1 and watcher.every == 3


def test_watcher_checks_layer_names_at_construction(tmp_path):
    net = _net(0)
    writer = deepscope.SummaryWriter(str(tmp_path))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"'conv3'.*conv1, bn1, conv2, fc"):
        deepscope.watch(net, optimizer, writer, correlation_layers=["conv3"], probe=_probe())
    with pytest.raises(ValueError, match="every must be a positive"):
        CorrelationWatcher(net, writer, layers=["conv1"], probe=_probe(), every=0)
    writer.close()


@pytest.mark.filterwarnings("ignore:deepscope. non-finite update ratio")  # bn1.bias starts at 0
def test_non_finite_activations_warn_once_and_training_goes_on(tmp_path):
    net = _net(5)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
    probe = _probe(9, 4)
    probe[1, :, 2, 3] = float("nan")  # one input position: NaN through conv1's 3x3 window
    writer = deepscope.SummaryWriter(str(tmp_path))
    monitor = deepscope.watch(
        net,
        optimizer,
        writer,
        correlation_layers=["conv1"],
        probe=probe,
        correlation_every=1,
        spectra_every=None,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            optimizer.zero_grad()
            net(_probe(1, 4)).sum().backward()
            optimizer.step()
    monitor.close()
    writer.close()
    trouble = [w for w in caught if "non-finite activations" in str(w.message)]
    assert len(trouble) == 1
    watcher = monitor.measurers["correlation"]
    assert watcher.non_finite == 3 * 9 * 8  # 9 positions x 8 channels, 3 measurements
    assert monitor.stats.error_count == 0


def test_compare_names_the_two_sides_as_asked(tmp_path, read_values):
    torch.manual_seed(0)
    net_a = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3))
    net_b = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3))
    writer = deepscope.SummaryWriter(str(tmp_path))
    deepscope.compare(
        net_a,
        net_b,
        torch.randn(4, 1, 6, 6),
        layers=["0"],
        writer=writer,
        global_step=1,
        names=("seed0", "seed1"),
    )
    writer.close()
    values = read_values(tmp_path, "compare/0")
    info = metadata.parse_plugin_data(values[0].value.metadata.plugin_data.content).correlation
    assert (info.row_name, info.col_name) == ("seed0/0", "seed1/0")
    with pytest.raises(ValueError, match="names must be two non-empty strings"):
        deepscope.compare(net_a, net_b, torch.randn(4, 1, 6, 6), layers=["0"], names=("a",))


class _SharedReLU(torch.nn.Module):
    """One ReLU module used after both convolutions: its output is not one layer's."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))))


def test_a_module_that_runs_twice_per_forward_is_refused_not_mixed(tmp_path, read_values):
    torch.manual_seed(0)
    probe = torch.randn(4, 1, 6, 6)
    with pytest.raises(RuntimeError, match="'relu' runs more than once in one forward pass"):
        compare(_SharedReLU(), _SharedReLU(), probe, layers=["relu"])

    model = _SharedReLU()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(tmp_path))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        monitor = deepscope.watch(
            model,
            optimizer,
            writer,
            spectra_every=None,
            correlation_layers=["relu"],
            probe=probe,
            correlation_every=1,
        )
        model(probe).sum().backward()
        optimizer.step()  # the measurement fails; training goes on
        monitor.close()
    writer.close()
    assert monitor.stats.error_count == 1
    assert "runs more than once" in monitor.stats.errors[0]
    assert read_values(tmp_path, "correlation/relu") == []  # nothing mixed was written


def _direct_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA by its definition (Kornblith et al.): HSIC with the centring matrix."""
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)))


def test_compare_predicts_channels_and_takes_the_cka_of_each_pair():
    """Li et al.'s regression against numpy's lstsq on the recorded activations (every
    position a sample), the CKA against its definition, and a permuted copy: errors 0,
    CKA 1."""
    a, b = _net(3), _net(4)
    probe = _probe(5, 6)
    results = compare(a, b, probe, layers=["conv2"])
    a.eval()
    b.eval()
    with torch.no_grad():
        out_a = torch.relu(a.bn1(a.conv1(probe)))
        out_a = a.conv2(out_a)
        out_b = b.conv2(torch.relu(b.bn1(b.conv1(probe))))
    rows_a = out_a.movedim(1, -1).reshape(-1, 6).double().numpy()
    rows_b = out_b.movedim(1, -1).reshape(-1, 6).double().numpy()
    found = results["conv2"]
    x = np.column_stack([rows_b, np.ones(len(rows_b))])
    for i in range(6):
        y = rows_a[:, i]
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        want = np.sum((y - x @ coef) ** 2) / np.sum((y - y.mean()) ** 2)
        assert found.regression.least_squares_error[i] == pytest.approx(want, abs=1e-5)
    assert np.all(found.regression.l1_error >= found.regression.least_squares_error - 1e-9)
    assert np.all(found.regression.l1_channels <= 6)
    assert found.cka == pytest.approx(_direct_cka(rows_a, rows_b), rel=1e-5)

    perm1, perm2 = torch.randperm(8), torch.randperm(6)
    same = compare(a, _permuted_copy(a, perm1, perm2), probe, layers=["conv2"])["conv2"]
    np.testing.assert_allclose(same.regression.least_squares_error, 0.0, atol=1e-5)
    assert same.cka == pytest.approx(1.0, abs=1e-6)
    assert compare(a, b, probe, layers=["conv2"], regression=False)["conv2"].regression is None


def test_compare_matches_each_pair_once_and_logs_what_it_returns(
    tmp_path, read_values, monkeypatch
):
    from deepscope.analysis import matching as matching_math
    from deepscope.writer import compare as compare_module

    calls = []
    real = matching_math.match_channels

    def counted(matrix):
        calls.append(matrix.shape)
        return real(matrix)

    monkeypatch.setattr(matching_math, "match_channels", counted)
    monkeypatch.setattr(compare_module, "match_channels", counted)
    writer = deepscope.SummaryWriter(str(tmp_path))
    results = compare(_net(0), _net(1), _probe(), layers=["conv1", "conv2"], writer=writer)
    writer.close()
    assert sorted(calls) == [(6, 6), (8, 8)]  # one matching per layer pair
    for label in ("conv1", "conv2"):
        step = pb.CorrelationStep.FromString(
            read_values(tmp_path, "compare/" + label)[0].value.tensor.string_val[0]
        )
        returned = results[label].matching
        np.testing.assert_array_equal(
            arrays.decode_array(step.matching.bipartite_cols), returned.bipartite_cols
        )
        np.testing.assert_array_equal(
            arrays.decode_array(step.matching.semi_cols), returned.semi_cols
        )


def test_add_channel_correlation_logs_a_given_matching(tmp_path, read_values):
    """A matching passed in is the one logged (here another matrix's, to tell them apart)."""
    from deepscope.analysis.matching import match_channels

    rng = np.random.default_rng(0)
    a, b = (
        torch.from_numpy(rng.standard_normal((200, 5))),
        torch.from_numpy(rng.standard_normal((200, 5))),
    )
    other = match_channels(np.eye(5)[::-1].copy())  # channel i with 4 − i
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_channel_correlation("given", a, b, global_step=0, matching=other)
    writer.add_channel_correlation("computed", a, b, global_step=0)
    writer.close()

    def cols(tag):
        step = pb.CorrelationStep.FromString(
            read_values(tmp_path, tag)[0].value.tensor.string_val[0]
        )
        return arrays.decode_array(step.matching.bipartite_cols)

    np.testing.assert_array_equal(cols("given"), [4, 3, 2, 1, 0])
    within = deepscope.SummaryWriter(str(tmp_path / "within"))
    with pytest.raises(ValueError, match="cross-network"):  # a within-layer step has none
        within.add_channel_correlation("within", a, global_step=0, matching=other)
    within.close()
    np.testing.assert_array_equal(
        cols("computed"), match_channels(np.corrcoef(a.T, b.T)[:5, 5:]).bipartite_cols
    )
