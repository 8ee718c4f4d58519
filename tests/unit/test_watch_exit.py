"""What a monitor holds survives the end of the process: interpreter exit, and SIGTERM when asked.

Each test runs a tiny training script under watch() in its own Python process,
ends it the way a real run ends (falling off the end without close(), or a
SIGTERM from a scheduler), then reads the event file it left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.update_ratio_logs import read_update_ratios

ROOT = Path(__file__).resolve().parents[2]
STEPS = 5

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    import torch
    import deepscope

    logdir, mode = sys.argv[1], sys.argv[2]
    if mode == "own-handler":
        def own(signum, frame):
            open(os.path.join(logdir, "own-handler-ran"), "w").close()
            sys.exit(3)
        signal.signal(signal.SIGTERM, own)
    writer = deepscope.SummaryWriter(logdir)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # Held: nothing is written before a block of 1000 or an hour's wait.
    monitor = deepscope.watch(
        model, optimizer, writer, every=1, spectra_every=None,
        measurements_per_event=1000, max_event_delay=3600.0,
        flush_on_sigterm=mode in ("sigterm", "own-handler"),
    )
    x = torch.randn(8, 3)
    for _ in range({steps}):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    assert monitor.stats.measurements == {steps}
    if mode == "exit":
        sys.exit(0)  # no close(), no flush
    print("trained", flush=True)
    time.sleep(120)
    """
).replace("{steps}", str(STEPS))


def _run(tmp_path: Path, mode: str, terminate: bool) -> tuple[int, Path]:
    logdir = tmp_path / mode
    logdir.mkdir()
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(script), str(logdir), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        if terminate:
            line = process.stdout.readline()
            assert line.strip() == "trained", process.stderr.read()
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, logdir


def _logged_steps(read_values, logdir: Path) -> list[int]:
    return [step for step, _ in read_update_ratios(read_values, logdir).rows]


def test_a_script_that_ends_without_close_loses_nothing(tmp_path, read_values):
    code, logdir = _run(tmp_path, "exit", terminate=False)
    assert code == 0
    assert _logged_steps(read_values, logdir) == list(range(STEPS))


def test_sigterm_writes_what_is_held_then_ends_the_process_as_sigterm_does(tmp_path, read_values):
    code, logdir = _run(tmp_path, "sigterm", terminate=True)
    assert code == -signal.SIGTERM  # the default action still ran
    assert _logged_steps(read_values, logdir) == list(range(STEPS))


def test_sigterm_chains_to_the_users_own_handler(tmp_path, read_values):
    code, logdir = _run(tmp_path, "own-handler", terminate=True)
    assert code == 3 and (logdir / "own-handler-ran").exists()
    assert _logged_steps(read_values, logdir) == list(range(STEPS))


def test_without_flush_on_sigterm_a_sigterm_loses_the_held_block(tmp_path, read_values):
    """The control: what the opt-in saves is really lost without it."""
    code, logdir = _run(tmp_path, "plain", terminate=True)
    assert code == -signal.SIGTERM
    assert _logged_steps(read_values, logdir) == []


def test_flush_on_sigterm_restores_the_previous_handler_on_close(tmp_path):
    import torch

    import deepscope

    def own(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, own)
    try:
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        writer = deepscope.SummaryWriter(str(tmp_path))
        monitor = deepscope.watch(model, optimizer, writer, flush_on_sigterm=True)
        assert signal.getsignal(signal.SIGTERM) is not own
        monitor.close()
        assert signal.getsignal(signal.SIGTERM) is own
        writer.close()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_flush_on_sigterm_from_another_thread_is_refused(tmp_path):
    import threading

    import torch

    import deepscope

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(tmp_path))
    raised = []

    def watch():
        try:
            deepscope.watch(model, optimizer, writer, flush_on_sigterm=True)
        except ValueError as error:
            raised.append(str(error))

    thread = threading.Thread(target=watch)
    thread.start()
    thread.join()
    writer.close()
    assert raised and "main thread" in raised[0]


def test_the_exit_flush_and_the_writer_hook_do_not_keep_a_monitor_alive(tmp_path):
    """A monitor never closed, whose optimizer is gone, is freed: exit and writer hold it weakly."""
    import gc
    import weakref

    import torch

    import deepscope
    from deepscope.writer import watch as watch_module

    writer = deepscope.SummaryWriter(str(tmp_path))
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = deepscope.watch(model, optimizer, writer)
    gone = weakref.ref(monitor)
    assert monitor in watch_module._OPEN
    del monitor, optimizer, model
    gc.collect()
    assert gone() is None and gone not in [weakref.ref(m) for m in watch_module._OPEN]
    writer.flush()  # the hook of a freed monitor does nothing, and nothing raises
    writer.close()
