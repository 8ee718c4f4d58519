"""watch() on a resumed run: steps continue where the run stopped, never repeat silently.

A run is trained, its model and optimizer states saved, and a new process is
imitated: a new model, optimizer and writer on the same log dir, the states
loaded, and watch() called again without `start_step`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import deepscope
from deepscope.writer import resume
from tests.update_ratio_logs import read_update_ratios


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))


def _batches(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield torch.randn(8, 4, generator=generator), torch.randint(0, 3, (8,), generator=generator)


def _train(model, optimizer, batches, steps: int) -> list[dict[str, float]]:
    """`steps` optimizer steps; the float64 numpy ratio of each parameter at each step."""
    reference = []
    for _ in range(steps):
        x, y = next(batches)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        before = {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}
        optimizer.step()
        row = {}
        for name, param in model.named_parameters():
            after = param.detach().double().numpy()
            row[name] = np.linalg.norm(after - before[name]) / np.linalg.norm(before[name])
        reference.append(row)
    return reference


def _logged_rows(read_values, logdir: Path, tag: str = "update_ratios"):
    """[(step, {name: ratio as stored}, event file)] in the order written, block rows unrolled."""
    log = read_update_ratios(read_values, logdir, tag)
    return [
        (step, dict(zip(log.names, raw.tolist())), file)
        for (step, _), raw, file in zip(log.rows, log.raw, log.files)
    ]


def _run_and_save(logdir: Path, optimizer_factory, steps: int, batches, **watch_kwargs):
    torch.manual_seed(0)
    model = _model()
    optimizer = optimizer_factory(model.parameters())
    writer = deepscope.SummaryWriter(str(logdir))
    with deepscope.watch(model, optimizer, writer, **watch_kwargs):
        reference = _train(model, optimizer, batches, steps)
    writer.close()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}, reference


def _resume(logdir: Path, optimizer_factory, checkpoint):
    model = _model()
    model.load_state_dict(checkpoint["model"])
    optimizer = optimizer_factory(model.parameters())
    optimizer.load_state_dict(checkpoint["optimizer"])
    return model, optimizer, deepscope.SummaryWriter(str(logdir))


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-2)


def plain_sgd(params):
    return torch.optim.SGD(params, lr=0.1)


def test_resumed_adamw_run_continues_its_steps_without_duplicates(tmp_path, read_values):
    batches = _batches()
    checkpoint, first = _run_and_save(tmp_path, adamw, 7, batches, every=1, spectra_every=5)
    model, optimizer, writer = _resume(tmp_path, adamw, checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the optimizer knows its step: nothing to warn about
        monitor = deepscope.watch(model, optimizer, writer, every=1, spectra_every=5)
    assert monitor.step == 7
    second = _train(model, optimizer, batches, 5)
    monitor.close()
    writer.close()
    rows = _logged_rows(read_values, tmp_path)
    steps = [step for step, _, _ in rows]
    assert steps == list(range(12))  # each once, in order
    assert len({file for _, _, file in rows}) == 2  # two writers, one after the other
    for (_, got, _), want in zip(rows, first + second):
        assert list(got) == list(want)
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-4), name
    # The spectra of the resumed process are at the resumed steps, not at 0 again.
    second_file = rows[-1][2]
    spectra_steps = sorted({v.step for v in read_values(tmp_path) if v.tag.startswith("spectra/")})
    assert spectra_steps == [0, 5, 10]
    resumed_spectra = {
        v.step
        for v in read_values(tmp_path)
        if v.tag.startswith("spectra/") and v.file == second_file
    }
    assert resumed_spectra == {10}


def test_resumed_sgd_run_starts_after_the_last_logged_step_and_warns(tmp_path, read_values):
    batches = _batches()
    checkpoint, _ = _run_and_save(tmp_path, plain_sgd, 7, batches, every=5, spectra_every=None)
    model, optimizer, writer = _resume(tmp_path, plain_sgd, checkpoint)
    with pytest.warns(RuntimeWarning, match=r"keeps no step count.*at 6.*start_step=N") as caught:
        monitor = deepscope.watch(model, optimizer, writer, every=5, spectra_every=None)
    assert str(tmp_path) in str(caught[0].message)
    assert monitor.step == 6
    _train(model, optimizer, batches, 5)
    monitor.close()
    writer.close()
    assert [step for step, _, _ in _logged_rows(read_values, tmp_path)] == [0, 5, 10]


def test_explicit_start_step_that_repeats_logged_steps_warns(tmp_path, read_values):
    batches = _batches()
    checkpoint, _ = _run_and_save(tmp_path, adamw, 4, batches, every=1, spectra_every=None)
    model, optimizer, writer = _resume(tmp_path, adamw, checkpoint)
    with pytest.warns(RuntimeWarning, match=r"start_step=2.*up to step 3.*2\.\.3 will be logged"):
        monitor = deepscope.watch(model, optimizer, writer, start_step=2, spectra_every=None)
    assert monitor.step == 2
    monitor.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deepscope.watch(model, optimizer, writer, start_step=4, spectra_every=None).close()
    writer.close()


def test_a_fresh_optimizer_on_a_log_dir_that_holds_the_tag_warns_of_the_overlap(tmp_path):
    batches = _batches()
    _run_and_save(tmp_path, adamw, 3, batches, every=1, spectra_every=None)
    model = _model()
    optimizer = adamw(model.parameters())
    writer = deepscope.SummaryWriter(str(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"taken 0 steps.*up to step 2.*start_step=3"):
        monitor = deepscope.watch(model, optimizer, writer, spectra_every=None)
    assert monitor.step == 0
    monitor.close()
    writer.close()


def test_a_new_log_dir_starts_at_0_without_warning(tmp_path):
    model = _model()
    writer = deepscope.SummaryWriter(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for optimizer in (plain_sgd(model.parameters()), adamw(model.parameters())):
            monitor = deepscope.watch(model, optimizer, writer, spectra_every=None)
            assert monitor.step == 0
            monitor.close()
    writer.close()


def test_an_unreadable_log_dir_warns_and_starts_at_0(tmp_path, monkeypatch):
    def broken(log_dir, tag):
        raise OSError("permission denied")

    monkeypatch.setattr(resume, "last_logged_step", broken)
    model = _model()
    writer = deepscope.SummaryWriter(str(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"could not read the log dir.*permission denied"):
        monitor = deepscope.watch(model, plain_sgd(model.parameters()), writer, spectra_every=None)
    assert monitor.step == 0
    monitor.close()
    writer.close()


def test_last_logged_step_reads_only_its_tag(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_update_ratios("update_ratios", {"w": 0.1}, global_step=6)
    writer.add_update_ratios("update_ratios_other", {"w": 0.1}, global_step=40)
    writer.add_scalar("update_ratios/loss", 1.0, global_step=90)
    writer.add_scalar("loss", 1.0, global_step=100)
    writer.close()
    (tmp_path / "sub").mkdir()  # another run's directory is not this run's
    other = deepscope.SummaryWriter(str(tmp_path / "sub"))
    other.add_update_ratios("update_ratios", {"w": 0.1}, global_step=500)
    other.close()
    assert resume.last_logged_step(str(tmp_path), "update_ratios") == 6
    assert resume.last_logged_step(str(tmp_path), "update_ratios_other") == 40
    assert resume.last_logged_step(str(tmp_path), "absent") is None
    assert resume.last_logged_step(str(tmp_path / "missing"), "update_ratios") is None


@pytest.mark.parametrize(
    "factory, steps, want",
    [
        (adamw, 0, 0),
        (adamw, 3, 3),
        (lambda ps: torch.optim.RMSprop(ps, lr=1e-3), 2, 2),
        (lambda ps: torch.optim.Adagrad(ps, lr=1e-2), 0, 0),  # its state exists from the start
        (lambda ps: torch.optim.Adagrad(ps, lr=1e-2), 2, 2),
        (plain_sgd, 0, None),
        (plain_sgd, 2, None),
        (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), 2, None),
    ],
)
def test_optimizer_step_count(factory, steps, want):
    model = _model()
    optimizer = factory(model.parameters())
    _train(model, optimizer, _batches(), steps)
    assert resume.optimizer_step_count(optimizer) == want


@pytest.mark.parametrize("bad", [-1, 2.5, "3"])
def test_bad_start_step_raises(tmp_path, bad):
    model = _model()
    writer = deepscope.SummaryWriter(str(tmp_path))
    with pytest.raises(ValueError, match="start_step must be a global step"):
        deepscope.watch(model, plain_sgd(model.parameters()), writer, start_step=bad)
    writer.close()


def test_without_update_ratios_the_step_comes_from_the_optimizer_alone(tmp_path, monkeypatch):
    batches = _batches()
    checkpoint, _ = _run_and_save(tmp_path, adamw, 4, batches, every=1, spectra_every=None)
    model, optimizer, writer = _resume(tmp_path, adamw, checkpoint)
    measure = [deepscope.Spectra(every=2, time_budget=None)]
    with deepscope.watch(model, optimizer, writer, measure=measure) as monitor:
        assert monitor.step == 4  # AdamW's own count
    writer.close()
    # A counter-less optimizer: 0, and the log dir (which holds update ratios) is not read.
    read = []
    monkeypatch.setattr(resume, "last_logged_step", lambda *args: read.append(args))
    model = _model()
    writer = deepscope.SummaryWriter(str(tmp_path))
    measure = [deepscope.Spectra(every=2, time_budget=None)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with deepscope.watch(model, plain_sgd(model.parameters()), writer, measure=measure) as m:
            assert m.step == 0
    assert read == []
    writer.close()
