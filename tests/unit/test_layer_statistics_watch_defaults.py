"""watch()'s layer-statistics defaults and keywords, and ParameterNorms' numbers against numpy."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import deepscope
from deepscope.writer.watch_layer_statistics import (
    DEFAULT_COVARIANCE_EVERY,
    DEFAULT_LAYER_STATISTICS_EVERY,
    LayerStats,
    ParameterNorms,
    default_covariance_every,
)
from deepscope.writer.watch_update_ratios import DEFAULT_EVERY
from tests.unit.test_layer_statistics_watch import (
    ACTIVATIONS,
    PARAMETERS,
    Writer,
    parameter_rows,
    steps_of,
)

REL = 16 * float(np.finfo(np.float32).eps)


class Net(torch.nn.Module):
    """fc1 → fc2, and `aux`, used only when asked (its parameters then have no gradient)."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 3)
        self.aux = torch.nn.Linear(8, 3)

    def forward(self, x, use_aux=False):
        h = torch.relu(self.fc1(x))
        return self.fc2(h) + (self.aux(h) if use_aux else 0)


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    writer = Writer(str(tmp_path))
    yield model, optimizer, writer
    writer.close()


def test_the_default_watch_measures_parameter_norms_and_activation_statistics(setup):
    model, optimizer, writer = setup
    with deepscope.watch(model, optimizer, writer) as monitor:
        norms = monitor.measurers["parameter_norms"]
        stats = monitor.measurers["layer_statistics"]
        assert isinstance(norms, ParameterNorms) and norms.every == DEFAULT_EVERY == 50
        assert norms.tag == PARAMETERS
        assert isinstance(stats, LayerStats) and stats.every == DEFAULT_LAYER_STATISTICS_EVERY
        assert stats.covariance_every == DEFAULT_COVARIANCE_EVERY
        assert stats.tag == ACTIVATIONS and stats.on == "train"


def test_parameter_norms_follow_the_update_ratios_cadence_unless_given(setup):
    model, optimizer, writer = setup
    with deepscope.watch(model, optimizer, writer, every=7) as monitor:
        assert monitor.measurers["parameter_norms"].every == 7
    with deepscope.watch(model, optimizer, writer, every=7, parameter_norms_every=3) as monitor:
        assert monitor.measurers["parameter_norms"].every == 3


@pytest.mark.parametrize("off", [None, 0])
def test_each_part_turns_off(setup, off):
    model, optimizer, writer = setup
    with deepscope.watch(
        model, optimizer, writer, parameter_norms_every=off, layer_statistics_every=off
    ) as monitor:
        assert "parameter_norms" not in monitor.measurers
        assert "layer_statistics" not in monitor.measurers
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_layer_statistics_options_reach_the_measurer(setup):
    model, optimizer, writer = setup
    probe = torch.ones(3, 4)
    with deepscope.watch(
        model,
        optimizer,
        writer,
        layer_statistics_every=10,
        layer_statistics_options={
            "layers": ["fc2"],
            "on": probe,
            "covariance_every": 20,
            "max_samples": 64,
            "variance_threshold": 0.9,
            "saturation_tolerance": 0.05,
        },
    ) as monitor:
        stats = monitor.measurers["layer_statistics"]
        assert (stats.every, stats.covariance_every, stats.max_samples) == (10, 20, 64)
        assert stats.on == "probe" and [layer.name for layer in stats._layers] == ["fc2"]
        assert (stats.variance_threshold, stats.saturation_tolerance) == (0.9, 0.05)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"layer_statistics_options": {"every": 3}}, "layer_statistics_every="),
        (
            {"layer_statistics_every": None, "layer_statistics_options": {"layers": ["fc1"]}},
            "measurement is off: set layer_statistics_every",
        ),
        ({"layer_statistics_every": -1}, "layer_statistics_every must be a positive"),
        ({"parameter_norms_every": 1.5}, "parameter_norms_every must be a positive"),
        ({"measure": [ParameterNorms()], "layer_statistics_every": 5}, "layer_statistics_every="),
    ],
)
def test_bad_keywords_say_what_to_do(setup, arguments, message):
    with pytest.raises(ValueError, match=message):
        deepscope.watch(*setup, **arguments)


def test_parameter_norms_equal_numpy_before_the_update(setup, read_values, tmp_path):
    model, optimizer, writer = setup
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    reference = {}
    with deepscope.watch(model, optimizer, writer, measure=[ParameterNorms(every=2)]) as monitor:
        for k in range(5):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x, use_aux=k == 2), y).backward()
            row = {}
            for name, p in model.named_parameters():
                w = p.detach().double().numpy()
                grad = None if p.grad is None else p.grad.double().numpy()
                row[name] = (None if grad is None else np.linalg.norm(grad), np.linalg.norm(w))
            reference[k] = row
            optimizer.step()
    writer.flush()
    steps = steps_of(read_values, tmp_path, PARAMETERS)
    assert sorted(steps) == [0, 2, 4]
    for k, step in steps.items():
        rows = parameter_rows(step)
        assert list(rows) == [n for n, _ in model.named_parameters()]
        for name, (grad, weight) in reference[k].items():
            got = rows[name]
            assert got["weight_norm"] == pytest.approx(weight, rel=REL)
            if grad is None:  # aux has no gradient except at step 2
                assert math.isnan(got["grad_norm"]) and math.isnan(got["grad_to_weight"])
                continue
            assert got["grad_norm"] == pytest.approx(grad, rel=REL)
            assert got["grad_to_weight"] == pytest.approx(grad / weight, rel=1e-6)
    assert not math.isnan(parameter_rows(steps[2])["aux.weight"]["grad_norm"])
    assert monitor.stats.errors == [] and monitor.measurers["parameter_norms"].non_finite == 0


def test_non_finite_gradients_are_counted_warned_once_and_training_goes_on(setup):
    model, optimizer, writer = setup
    x = torch.randn(8, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with deepscope.watch(
            model, optimizer, writer, measure=[ParameterNorms(every=1)]
        ) as monitor:
            for _ in range(3):
                optimizer.zero_grad()
                (model(x).sum() * math.inf).backward()
                optimizer.step()
    assert monitor.stats.steps_seen == 3 and monitor.stats.errors == []
    assert monitor.measurers["parameter_norms"].non_finite > 0
    assert len([w for w in caught if "non-finite gradient or weight norm" in str(w.message)]) == 1


def test_the_default_watch_logs_both_series_at_step_zero(setup, read_values, tmp_path):
    model, optimizer, writer = setup
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with deepscope.watch(model, optimizer, writer, spectra_every=None) as monitor:
        for _ in range(3):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    writer.flush()
    assert monitor.stats.errors == []
    assert sorted(steps_of(read_values, tmp_path, PARAMETERS)) == [0]
    activations = steps_of(read_values, tmp_path, ACTIVATIONS)
    assert sorted(activations) == [0]
    assert list(activations[0].layers) == ["fc1", "fc2"]  # aux does not run
    assert activations[0].eigenvalue_counts.ByteSize() > 0  # step 0 is a covariance step


def test_a_zero_weight_has_an_undefined_ratio_not_a_non_finite_count(setup, read_values, tmp_path):
    model, optimizer, writer = setup
    with torch.no_grad():
        model.fc1.bias.zero_()  # a fresh bias
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with deepscope.watch(model, optimizer, writer, measure=[ParameterNorms(every=1)]) as monitor:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    writer.flush()
    row = parameter_rows(steps_of(read_values, tmp_path, PARAMETERS)[0])["fc1.bias"]
    assert row["weight_norm"] == 0 and row["grad_norm"] > 0 and math.isinf(row["grad_to_weight"])
    assert monitor.measurers["parameter_norms"].non_finite == 0


def _smallest_multiple_at_least(every: int, floor: int) -> int:
    """The reference: walk the multiples of `every` until one reaches `floor`."""
    multiple = every
    while multiple < floor:
        multiple += every
    return multiple


@pytest.mark.parametrize("every", [1, 3, 7, 100, 999, 1000, 1001, 1500])
def test_the_default_covariance_cadence_is_the_first_multiple_of_every_from_1000(every):
    stats = LayerStats(every=every)
    expected = _smallest_multiple_at_least(every, 1000)
    assert stats.covariance_every == expected
    assert stats.covariance_every % every == 0 and stats.covariance_every >= 1000
    assert default_covariance_every(every) == expected
    if every == 100:
        assert stats.covariance_every == DEFAULT_COVARIANCE_EVERY == 1000
    if every == 3:
        assert stats.covariance_every == 1002


def test_watch_with_an_odd_layer_statistics_cadence_measures_covariances_on_measured_steps(
    setup, read_values, tmp_path
):
    model, optimizer, writer = setup
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with deepscope.watch(
        model, optimizer, writer, spectra_every=None, layer_statistics_every=3
    ) as monitor:
        stats = monitor.measurers["layer_statistics"]
        assert stats.covariance_every == 1002
        for _ in range(4):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    writer.flush()
    assert monitor.stats.errors == []
    activations = steps_of(read_values, tmp_path, ACTIVATIONS)
    assert sorted(activations) == [0, 3]
    assert activations[0].eigenvalue_counts.ByteSize() > 0  # step 0 is a covariance step
    assert activations[3].eigenvalue_counts.ByteSize() == 0  # step 3 is not


@pytest.mark.parametrize("covariance_every", [4, 1000])
def test_an_explicit_covariance_cadence_off_the_measured_steps_still_raises(covariance_every):
    with pytest.raises(ValueError, match=r"must be a multiple of every \(3\)"):
        LayerStats(every=3, covariance_every=covariance_every)


def test_a_zero_weight_with_a_zero_gradient_is_undefined_and_an_infinite_gradient_is_counted(
    setup, read_values, tmp_path
):
    """fc1.bias is zero and its gradient too (the loss takes fc1's output times 0): its ratio
    0/0 is logged NaN and is undefined, not counted; fc2's infinite gradient is counted (its
    weight and bias grad_norm, and their ratios: 4 non-finite norms)."""
    model, optimizer, writer = setup
    with torch.no_grad():
        model.fc1.bias.zero_()
    x = torch.randn(8, 4)
    with deepscope.watch(model, optimizer, writer, measure=[ParameterNorms(every=1)]) as monitor:
        optimizer.zero_grad()
        h = torch.randn(8, 8)  # fc2's input, apart from fc1: its infinity stays in fc2
        (model.fc2(h).sum() * math.inf + model.fc1(x).sum() * 0.0).backward()
        optimizer.step()
    writer.flush()
    rows = parameter_rows(steps_of(read_values, tmp_path, PARAMETERS)[0])
    bias = rows["fc1.bias"]
    assert (
        bias["weight_norm"] == 0 and bias["grad_norm"] == 0 and math.isnan(bias["grad_to_weight"])
    )
    assert math.isinf(rows["fc2.weight"]["grad_norm"]) or math.isnan(
        rows["fc2.weight"]["grad_norm"]
    )
    bad = sum(
        not math.isfinite(rows[name][s])
        for name in ("fc2.weight", "fc2.bias")
        for s in ("grad_norm", "grad_to_weight")
    )
    assert bad == 4 and monitor.measurers["parameter_norms"].non_finite == bad
