"""Session fixture: a log dir with correlation series written during real training.

Two SmallCNNs (seeds 0 and 1) train side by side for a few seconds on synthetic
8×8 images under `deepscope.watch(..., correlation_layers=["conv2"], probe=...)`,
which logs the within-layer correlations of conv2's 16 channels on a fixed
probe batch every `LOG_EVERY` steps under "correlation/conv2"; at the same
steps `deepscope.compare` logs each run's conv2 against the other seed's under
"compare/conv2" (rows: this run's channels), and the same conv2 outputs in the
compact storage (uint8, upper triangle) under "packed/conv2". Channel 3 of
seed0's conv2 is dead from the start (zero weights, bias −1: a constant
output), so the dead-channel marks have something to show. The probe
activations of every logged step are saved next to the runs
(`activations.npz`), so tests compute their numpy reference from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

RUNS = ("seed0", "seed1")
WITHIN_TAG = "correlation/conv2"
CROSS_TAG = "compare/conv2"
PACKED_TAG = "packed/conv2"  # uint8, upper triangle: the compact option
TRAIN_STEPS = 31
LOG_EVERY = 10  # logged steps: 0, 10, 20, 30
DEAD_CHANNEL = 3  # of seed0's conv2
PROBE = 24  # probe images; conv2 output 6×6, so 864 samples per channel


def activations_path(logdir: Path) -> Path:
    return logdir / "activations.npz"


def load_activations(logdir: Path, run: str, step: int) -> np.ndarray:
    """conv2 outputs of `run` at `step` on the probe: (samples, channels), float32 as saved."""
    with np.load(activations_path(logdir)) as saved:
        acts = saved[f"{run}/{step}"]
    channels = acts.shape[1]
    return np.ascontiguousarray(np.moveaxis(acts, 1, -1).reshape(-1, channels))


def dead_channels(a: np.ndarray) -> np.ndarray:
    """Bool [C]: channels of (samples, C) activations that are constant at their dtype's resolution.

    Peak to peak ≤ eps(dtype)·max|x|, in float64: one unit in the last place
    at most. (numpy's std of a constant channel is rounding noise of its mean,
    e.g. 3e-17 for 0.17 in float64 or 9e-7 for 0.1 summed in float32: a test
    for std == 0 misjudges it.)
    """
    eps = np.finfo(a.dtype).eps
    wide = np.asarray(a, dtype=np.float64)
    return np.ptp(wide, axis=0) <= eps * np.abs(wide).max(axis=0)


def numpy_correlation(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Reference Pearson matrix of (samples, C) activations with numpy.corrcoef, in float64.

    Within one layer when b is None, else rows of a × columns of b; a dead
    channel's (`dead_channels`) correlations are 0, its diagonal entry too.
    """
    other = a if b is None else b
    wide = [np.asarray(x, dtype=np.float64) for x in (a, other)]
    with np.errstate(invalid="ignore", divide="ignore"):  # dead channels: 0/0
        joint = np.corrcoef(np.concatenate(wide, axis=1), rowvar=False)
    block = joint[: a.shape[1], a.shape[1] :]
    dead_a = dead_channels(a)
    dead_b = dead_channels(other)
    block = np.where(dead_a[:, None] | dead_b[None, :], 0.0, block)
    return np.nan_to_num(block, nan=0.0)


def _build_models(seed: int):
    import torch

    from tests.conftest import SmallCNN

    torch.manual_seed(seed)
    model = SmallCNN.build()
    if seed == 0:
        with torch.no_grad():
            model.conv2.weight[DEAD_CHANNEL].zero_()
            model.conv2.bias[DEAD_CHANNEL] = -1.0
    return model


def _conv2_outputs(model, probe):
    import torch

    captured = {}

    def catch(module, inputs, output) -> None:  # None: the model's output stays as it is
        captured.setdefault("out", output)

    handle = model.conv2.register_forward_hook(catch)
    try:
        with torch.no_grad():
            model(probe)
    finally:
        handle.remove()
    return captured["out"].detach().clone()


def write_correlation_runs(logdir: Path) -> None:
    """Train both seeds side by side under deepscope.watch(), comparing them with compare()."""
    import torch

    import deepscope

    torch.manual_seed(123)
    x_all = torch.randn(256, 1, 8, 8)
    y_all = (x_all[:, 0, :4].sum(dim=(1, 2)) > 0).long() + 2 * (x_all[:, 0, 4:].mean((1, 2)) > 0)
    probe = x_all[:PROBE]
    models = {run: _build_models(seed) for seed, run in enumerate(RUNS)}
    optimizers = {
        run: torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
        for run, model in models.items()
    }
    writers = {run: deepscope.SummaryWriter(str(logdir / run)) for run in RUNS}
    # Within-layer correlations through watch(): "correlation/conv2" every LOG_EVERY steps,
    # measured right after the optimizer step.
    monitors = [
        deepscope.watch(
            models[run],
            optimizers[run],
            writers[run],
            every=LOG_EVERY,
            spectra_every=None,
            correlation_layers=["conv2"],
            probe=probe,
            correlation_every=LOG_EVERY,
        )
        for run in RUNS
    ]
    saved: dict[str, np.ndarray] = {}
    for step in range(TRAIN_STEPS):
        idx = torch.randint(0, 256, (32,))
        for run, model in models.items():
            loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
            optimizers[run].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[run].step()
            writers[run].add_scalar("loss", loss.item(), step)
        if step % LOG_EVERY == 0:
            # The state watch() measured; compare() each run's model with the other's.
            for run, other in zip(RUNS, RUNS[::-1]):
                outputs = _conv2_outputs(models[run], probe)
                saved[f"{run}/{step}"] = outputs.numpy()
                writers[run].add_channel_correlation(
                    PACKED_TAG,
                    outputs,
                    global_step=step,
                    matrix_dtype="uint8",
                    packing="upper_triangle",
                )
                deepscope.compare(
                    models[run],
                    models[other],
                    probe,
                    layers=["conv2"],
                    writer=writers[run],
                    global_step=step,
                )
    for monitor in monitors:
        monitor.close()
    for writer in writers.values():
        writer.close()
    np.savez(activations_path(logdir), **saved)


@pytest.fixture(scope="session")
def correlation_logdir(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("correlation")
    write_correlation_runs(logdir)
    return logdir
