"""Shared fixtures: log dirs written by real training loops, and real TensorBoard processes."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

# get and wait_until are imported from here by the integration and browser tests.
from tests.tensorboard_process import TensorBoard, get, wait_until  # noqa: F401

TRAIN_STEPS = 150  # more than the Rust data server's default of 100 samples per series


class SmallCNN:
    """Built lazily so that collecting tests does not import torch."""

    @staticmethod
    def build():
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
                self.conv2 = torch.nn.Conv2d(8, 16, 3)
                self.fc = torch.nn.Linear(16, 10)
                # Used on even steps only: on odd steps it gets no gradient, so no update.
                self.aux = torch.nn.Linear(16, 10)

            def forward(self, x, use_aux: bool = False):
                h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
                h = h.mean(dim=(2, 3))
                out = self.fc(h)
                return out + self.aux(h) if use_aux else out

        return Net()


def train_run(logdir: Path, seed: int, steps: int = TRAIN_STEPS) -> dict:
    """Train SmallCNN on synthetic 8×8 digits-like data under deepscope.watch(every=1).

    Returns a brute-force reference: ‖W_after − W_before‖/‖W_before‖ computed in
    float64 from copies taken around each optimizer step, None where a
    parameter had no gradient.
    """
    import torch

    import deepscope

    torch.manual_seed(seed)
    model = SmallCNN.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    writer = deepscope.SummaryWriter(str(logdir))
    names = [name for name, _ in model.named_parameters()]
    reference: dict = {"names": names, "steps": [], "values": []}
    x_all = torch.randn(512, 1, 8, 8)
    y_all = (x_all[:, 0, :4].sum(dim=(1, 2)) > 0).long() + 2 * (x_all[:, 0, 4:].mean((1, 2)) > 0)
    # Update ratios alone: the spectra and layer statistics have their own log dirs
    # (tests/spectrum_data.py, tests/layer_statistics_data.py).
    # Blocks of exactly 10 measurements however slow the machine (the samples test
    # counts events): no block is written early for its age.
    with deepscope.watch(
        model,
        optimizer,
        writer,
        every=1,
        spectra_every=None,
        parameter_norms_every=None,
        layer_statistics_every=None,
        max_event_delay=3600,
    ):
        for step in range(steps):
            idx = torch.randint(0, 512, (32,))
            loss = torch.nn.functional.cross_entropy(
                model(x_all[idx], use_aux=step % 2 == 0), y_all[idx]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            before = {n: p.detach().double().clone() for n, p in model.named_parameters()}
            had_grad = {n: p.grad is not None for n, p in model.named_parameters()}
            optimizer.step()
            row = []
            for n, p in model.named_parameters():
                if not had_grad[n]:
                    row.append(None)
                    continue
                delta = (p.detach().double() - before[n]).norm().item()
                row.append(delta / before[n].norm().item())
            reference["steps"].append(step)
            reference["values"].append(row)
            writer.add_scalar("loss", loss.item(), step)
    writer.close()
    return reference


@pytest.fixture(scope="session")
def trained_logdir(tmp_path_factory) -> Path:
    """Runs seed0 and seed1 trained under watch(every=1); reference.json holds the truth."""
    logdir = tmp_path_factory.mktemp("trained")
    references = {f"seed{s}": train_run(logdir / f"seed{s}", s) for s in (0, 1)}
    (logdir / "reference.json").write_text(json.dumps(references))
    return logdir


@pytest.fixture(scope="session")
def newer_schema_logdir(tmp_path_factory) -> Path:
    """A run whose tag was written with a newer schema version than this reader knows."""
    from tensorboard.compat.proto import summary_pb2
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    from deepscope import metadata
    from deepscope.proto import deepscope_pb2 as pb
    from deepscope.writer.update_ratios import update_ratios_pb

    logdir = tmp_path_factory.mktemp("newer")
    writer = TorchWriter(str(logdir / "future"))
    good = update_ratios_pb("current", {"w": 1e-3})
    writer.file_writer.add_summary(good, 0, time.time())
    newer = update_ratios_pb("from_the_future", {"w": 1e-3})
    plugin_data = pb.PluginData.FromString(newer.value[0].metadata.plugin_data.content)
    plugin_data.version = metadata.SCHEMA_VERSION + 1
    newer.value[0].metadata.plugin_data.content = plugin_data.SerializeToString()
    assert newer.value[0].metadata.data_class == summary_pb2.DATA_CLASS_TENSOR
    writer.file_writer.add_summary(newer, 0, time.time())
    writer.close()
    return logdir


@pytest.fixture(scope="session")
def tensorboard_server(tmp_path_factory):
    """Factory: start(logdir, load_fast, extra_args=()) → base URL of a real `tensorboard`.

    A `tests.tensorboard_process.TensorBoard` with `--reload_interval=1`; waits
    until it answers. The processes stop at the end of the session.
    """
    processes: list[TensorBoard] = []

    def start(logdir: Path, load_fast: bool, extra_args: tuple[str, ...] = ()) -> str:
        log = tmp_path_factory.mktemp("tb-log") / "tensorboard.log"
        process = TensorBoard(logdir, load_fast, log=log, reload_interval=1, extra_args=extra_args)
        processes.append(process)
        return process.wait_ready(timeout=90).base

    yield start
    for process in processes:
        process.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `make test`, which installs it")
    return path


# Each kind's log dirs, shared by its integration and browser tests.
from tests.correlation_data import correlation_logdir  # noqa: E402, F401
from tests.findings_data import planted_logdir  # noqa: E402, F401
from tests.saliency_data import saliency_logdir  # noqa: E402, F401
from tests.spectrum_data import spectrum_logdir  # noqa: E402, F401


@pytest.fixture(scope="session")
def log_201_parameters(tmp_path_factory):
    """tests/scale_logs.py's 201-parameter, 74-layer, 10,000-step log (a `ScaleLog`)."""
    from tests.scale_logs import write_201_parameter_log

    return write_201_parameter_log(tmp_path_factory.mktemp("log201"))


@pytest.fixture(scope="session")
def log_50_runs(tmp_path_factory):
    """tests/scale_logs.py's 50-run log (a `RunsLog`): 30 to 10,000 steps, odd names."""
    from tests.scale_logs import write_50_run_log

    return write_50_run_log(tmp_path_factory.mktemp("log50"))


@pytest.fixture(scope="session")
def demo_logdir(tmp_path_factory) -> Path:
    """`make demo`'s log dir: examples/train_digits.py as the demo runs it (8 epochs)."""
    import subprocess
    import sys

    logdir = tmp_path_factory.mktemp("demo") / "runs"
    script = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"
    done = subprocess.run(
        [sys.executable, str(script), "--logdir", str(logdir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return logdir
