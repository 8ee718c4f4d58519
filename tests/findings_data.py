"""Planted faults for the findings tests: small real training runs, each with one fault.

`write_planted(logdir)` trains one run per fault on scikit-learn's bundled
digits under `deepscope.watch` and returns each run's `Planted` truth: the
rule that must be its top finding, the layer, and the steps the fault is in.
The runs (an MLP of a few 64-wide layers, a few hundred steps; the frozen
layer's 1,100) take about 20 s together on one core.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits

import deepscope

NAN_STEP = 60  # the step whose weight the NaN run poisons


@dataclasses.dataclass(frozen=True)
class Planted:
    rule: str
    layer: str
    first_step: int  # the fault is there from this step (inclusive)...
    last_step: int  # ...to this one (inclusive)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    return x, torch.tensor(digits.target)


class MLP(torch.nn.Module):
    """64 → width → ... → 10, a ReLU module after each hidden Linear (named fc1, relu1, ...)."""

    def __init__(self, hidden: int = 2, width: int = 64):
        super().__init__()
        sizes = [64] + [width] * hidden
        for i in range(hidden):
            self.add_module(f"fc{i + 1}", torch.nn.Linear(sizes[i], sizes[i + 1]))
            self.add_module(f"relu{i + 1}", torch.nn.ReLU())
        self.add_module(f"fc{hidden + 1}", torch.nn.Linear(width, 10))
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.hidden):
            x = getattr(self, f"relu{i + 1}")(getattr(self, f"fc{i + 1}")(x))
        return getattr(self, f"fc{self.hidden + 1}")(x)


def _train(
    logdir: Path,
    run: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    spectra_every: int = 50,
    correlation_layers: list[str] | None = None,
    poison=None,
    seed: int = 0,
) -> None:
    torch.manual_seed(seed)
    x, y = _digits()
    measure = [
        deepscope.UpdateRatios(every=5),
        deepscope.ParameterNorms(every=5),
        deepscope.LayerStats(every=10, covariance_every=50),
        deepscope.Spectra(every=spectra_every),
    ]
    if correlation_layers:
        measure.append(deepscope.Correlations(layers=correlation_layers, probe=x[:256], every=20))
    writer = deepscope.SummaryWriter(str(logdir / run))
    with deepscope.watch(model, optimizer, writer, measure=measure):
        for step in range(steps):
            if poison is not None and step == NAN_STEP:
                poison(model)
            idx = torch.randint(0, len(x), (64,))
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            writer.add_scalar("loss", loss.item(), step)
    writer.close()


def lr_too_high(logdir: Path) -> Planted:
    """fc2's learning rate 100× the others' (plain SGD: 1.0 against 0.01).

    Measured apart: fc2's ||dW||/||W|| stays at 1.6–2.2e-2 over the 100 steps,
    the other layers' at 2.5e-4–1.4e-3. (With Adam, a 100× rate blows the
    weight's norm up until its ratio is back near 3e-3: no longer 10× off.)
    """
    torch.manual_seed(1)
    model = MLP()
    others = [p for n, p in model.named_parameters() if not n.startswith("fc2.")]
    optimizer = torch.optim.SGD(
        [{"params": others, "lr": 0.01}, {"params": model.fc2.parameters(), "lr": 1.0}]
    )
    _train(logdir, "lr-too-high", model, optimizer, 100)
    return Planted("learning_rate_parameter", "fc2.weight", 0, 99)


def dead_relu(logdir: Path) -> Planted:
    """fc1's bias at -10: relu1 is zero on every input from the start."""
    torch.manual_seed(2)
    model = MLP()
    with torch.no_grad():
        model.fc1.bias.fill_(-10.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.5e-4)
    _train(logdir, "dead-relu", model, optimizer, 300)
    return Planted("dead_units", "relu1", 0, 299)


def nan_at_step(logdir: Path) -> Planted:
    """A NaN written into fc2's weight before step NAN_STEP."""

    def poison(model):
        with torch.no_grad():
            model.fc2.weight[0, 0] = float("nan")

    torch.manual_seed(3)
    model = MLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1.5e-4)
    with warnings.catch_warnings():  # deepscope warns of each non-finite kind: expected here
        warnings.simplefilter("ignore", RuntimeWarning)
        _train(logdir, "nan-at-step", model, optimizer, 200, poison=poison)
    return Planted("non_finite", "fc2", NAN_STEP, 199)  # a NaN weight stays NaN


def frozen_layer(logdir: Path) -> Planted:
    """fc2 left out of the optimizer (the classic bug), so it stays at its random
    initialisation for 1,100 steps while the rest trains. (A weight with
    requires_grad=False is not measured by default: `Spectra(include_frozen=True)`.)"""
    torch.manual_seed(4)
    model = MLP()
    trained = [p for n, p in model.named_parameters() if not n.startswith("fc2.")]
    optimizer = torch.optim.Adam(trained, lr=1.5e-4)
    _train(logdir, "frozen-layer", model, optimizer, 1100, spectra_every=100)
    return Planted("random_spectrum", "fc2", 0, 1099)


def exploding_init(logdir: Path) -> Planted:
    """Six Linear layers initialised at std 5/sqrt(fan_in), 3.5× Kaiming's sqrt(2/fan_in): each
    multiplies the activations' std by about 3.4 (467× end to end), all the run long."""
    torch.manual_seed(5)
    model = MLP(hidden=5)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight"):
                parameter.normal_(0.0, 5.0 / parameter.shape[1] ** 0.5)
    # A small rate (Adam: ||dW||/||W|| ≈ lr / std(W), about 4e-4): the explosion lasts the run.
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    _train(logdir, "exploding-init", model, optimizer, 100)
    return Planted("activation_depth", "", 0, 99)


def duplicated_channels(logdir: Path) -> Planted:
    """fc1's 64 units are 8 distinct ones, each repeated 8 times (relu1's channels too)."""
    torch.manual_seed(6)
    model = MLP()
    with torch.no_grad():
        distinct_w, distinct_b = model.fc1.weight[:8].clone(), model.fc1.bias[:8].clone()
        model.fc1.weight.copy_(distinct_w.repeat(8, 1))
        model.fc1.bias.copy_(distinct_b.repeat(8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1.5e-4)
    _train(logdir, "duplicated-channels", model, optimizer, 100, correlation_layers=["relu1"])
    return Planted("redundant_channels", "relu1", 0, 99)


PLANTERS = (lr_too_high, dead_relu, nan_at_step, frozen_layer, exploding_init, duplicated_channels)


def write_planted(logdir: Path) -> dict[str, Planted]:
    """Every planted run under `logdir`: run name → its truth."""
    truths = {}
    for plant in PLANTERS:
        truth = plant(logdir)
        truths[plant.__name__.replace("_", "-")] = truth
    return truths


@pytest.fixture(scope="session")
def planted_logdir(tmp_path_factory) -> tuple[Path, dict[str, Planted]]:
    """(log dir, run → Planted) of every planted fault, written once per session."""
    logdir = tmp_path_factory.mktemp("planted")
    return logdir, write_planted(logdir)
