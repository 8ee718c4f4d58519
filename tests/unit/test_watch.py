"""deepscope.watch(): update ratios measured through the optimizer's step hooks.

Every logged number is compared with a brute-force reference: float64 numpy copies of each
parameter taken by the test itself just before and just after `optimizer.step()`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.utils.tensorboard

import deepscope
from deepscope import metadata
from deepscope.analysis import update_ratios as ratios_math
from deepscope.proto import arrays
from deepscope.writer.update_ratios import ZERO_WEIGHT
from tests.update_ratio_logs import read_update_ratios


class Net(torch.nn.Module):
    """fc1 → fc2, plus `aux`, which the forward pass uses only when asked to."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 3)
        self.aux = torch.nn.Linear(8, 3)

    def forward(self, x, use_aux: bool = True):
        h = torch.tanh(self.fc1(x))
        out = self.fc2(h)
        return out + self.aux(h) if use_aux else out


OPTIMIZERS = {
    "sgd-momentum-wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-2),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
}


def _make(optimizer="adam", seed=0, model=None):
    torch.manual_seed(seed)
    model = model or Net()
    return model, OPTIMIZERS[optimizer](model.parameters())


def train(model, optimizer, steps, use_aux=lambda k: True, seed=0):
    """Run `steps` optimizer steps; return per step {name: reference ratio or None}."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, generator=generator)
    y = torch.randint(0, 3, (16,), generator=generator)
    reference = []
    for k in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x, use_aux=use_aux(k)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = dict(model.named_parameters())
        before = {n: p.detach().numpy().astype(np.float64) for n, p in params.items()}
        had_grad = {n: p.grad is not None for n, p in params.items()}
        optimizer.step()
        row = {}
        for name, param in params.items():
            if not had_grad[name]:
                row[name] = None
                continue
            delta = param.detach().numpy().astype(np.float64) - before[name]
            row[name] = np.linalg.norm(delta.reshape(-1)) / np.linalg.norm(before[name].reshape(-1))
        reference.append(row)
    return reference


def logged(read_values, decode_ratios, logdir, tag="update_ratios"):
    """[(global_step, {name: ratio, None or ZERO_WEIGHT})] as written, one per measured step.

    watch() writes blocks of measurements as one event; each block row carries its step.
    Names come from the series' metadata; how watch() writes them is asserted (strict).
    """
    return read_update_ratios(read_values, logdir, tag, strict=True).rows


def assert_rows_match(got: dict, want: dict):
    assert list(got) == list(want)
    for name in want:
        if want[name] is None:
            assert got[name] is None, f"{name} got no update but was logged as {got[name]}"
        elif want[name] is ZERO_WEIGHT:
            assert got[name] is ZERO_WEIGHT, f"{name} was zero but was logged as {got[name]}"
        else:
            assert got[name] is not None, f"{name} was updated but logged as no update"
            assert got[name] == pytest.approx(want[name], rel=1e-4), name


@pytest.fixture
def writer(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    yield writer
    writer.close()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_logged_ratios_equal_brute_force_reference(
    name, writer, tmp_path, read_values, decode_ratios
):
    model, optimizer = _make(name)
    steps = 6
    with deepscope.watch(model, optimizer, writer, every=1) as monitor:
        # aux takes part on even steps only: on odd steps it has no gradient, so no update.
        reference = train(model, optimizer, steps, use_aux=lambda k: k % 2 == 0)
    assert monitor.stats.steps_seen == steps
    assert monitor.stats.measurements == steps
    writer.flush()
    rows = logged(read_values, decode_ratios, tmp_path)
    assert [step for step, _ in rows] == list(range(steps))
    for (_, got), want in zip(rows, reference):
        assert_rows_match(got, want)
    # The reference itself has both kinds of rows, so both paths were checked.
    assert any(r["aux.weight"] is None for r in reference)
    assert any(r["aux.weight"] is not None for r in reference)


@pytest.mark.parametrize("every, start_step", [(1, 0), (3, 0), (3, 2), (3, 3), (4, 7), (2, 100)])
def test_cadence_counts_steps_from_start_step(
    every, start_step, writer, tmp_path, read_values, decode_ratios
):
    model, optimizer = _make("sgd-momentum-wd")
    steps = 9
    with deepscope.watch(model, optimizer, writer, every=every, start_step=start_step):
        reference = train(model, optimizer, steps)
    writer.flush()
    rows = logged(read_values, decode_ratios, tmp_path)
    expected_steps = [s for s in range(start_step, start_step + steps) if s % every == 0]
    assert [step for step, _ in rows] == expected_steps
    if start_step % every == 0:
        assert rows[0][0] == start_step  # the first optimizer step is logged at start_step
    for step, got in rows:
        assert_rows_match(got, reference[step - start_step])


def test_default_cadence_is_every_50_steps(writer, tmp_path, read_values, decode_ratios):
    model, optimizer = _make("adam")
    with deepscope.watch(model, optimizer, writer):
        reference = train(model, optimizer, 51)
    writer.flush()
    rows = logged(read_values, decode_ratios, tmp_path)
    assert [step for step, _ in rows] == [0, 50]
    assert_rows_match(rows[1][1], reference[50])


def test_layer_unused_in_forward_is_no_update_not_zero(writer, tmp_path, read_values):
    model, optimizer = _make("adamw")
    with deepscope.watch(model, optimizer, writer, every=1) as monitor:
        train(model, optimizer, 3, use_aux=lambda k: False)
    writer.flush()
    rows = logged(read_values, None, tmp_path)
    assert [step for step, _ in rows] == [0, 1, 2]
    for _, row in rows:
        assert row["aux.weight"] is None and row["aux.bias"] is None  # not 0
        others = [v for n, v in row.items() if not n.startswith("aux.")]
        assert all(v is not None and np.isfinite(v) and v > 0 for v in others)
    # The stored value under a no-update mark is NaN, never a 0 a reader could mistake.
    (value,) = read_values(tmp_path, "update_ratios")
    ratios = arrays.decode_array(value.update_ratios_step().ratios)
    aux = [monitor.names.index("aux.weight"), monitor.names.index("aux.bias")]
    assert np.all(np.isnan(ratios[:, aux]))


def test_step_without_any_gradient_is_all_no_update(writer, tmp_path, read_values):
    model, optimizer = _make("adam")
    with deepscope.watch(model, optimizer, writer, every=1) as monitor:
        optimizer.step()  # no backward pass yet: every .grad is None
    assert monitor.stats.errors == []
    (value,) = read_values(tmp_path, "update_ratios")
    step = value.update_ratios_step()
    assert list(step.no_update) == list(range(len(monitor.names)))
    assert np.all(np.isnan(arrays.decode_array(step.ratios)))


def test_names_come_from_named_parameters(writer, tmp_path, read_values):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(5, 2))
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = deepscope.watch(model, optimizer, writer, every=1, tag="ratios")
    expected = [name for name, _ in model.named_parameters()]
    assert expected == ["0.weight", "0.bias", "2.0.weight", "2.0.bias"]
    assert monitor.names == expected
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    monitor.close()
    (value,) = read_values(tmp_path, "ratios")
    content = value.value.metadata.plugin_data.content
    assert list(metadata.parse_plugin_data(content).update_ratios.names) == expected


def test_frozen_parameters_are_not_watched(writer, tmp_path, read_values, decode_ratios):
    model, _ = _make()
    model.fc1.weight.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # holds the frozen one too
    with deepscope.watch(model, optimizer, writer, every=1) as monitor:
        reference = train(model, optimizer, 2)
    writer.flush()
    expected_names = ["fc1.bias", "fc2.weight", "fc2.bias", "aux.weight", "aux.bias"]
    assert monitor.names == expected_names
    rows = logged(read_values, decode_ratios, tmp_path)
    assert len(rows) == 2
    for (_, got), want in zip(rows, reference):
        assert list(got) == expected_names
        assert_rows_match(got, {n: want[n] for n in expected_names})


def test_parameter_outside_the_model_gets_a_param_group_name(writer):
    model, _ = _make()
    stray = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([{"params": model.parameters()}, {"params": [stray]}], lr=0.1)
    with deepscope.watch(model, optimizer, writer) as monitor:
        assert monitor.names[-1] == "param_groups[1][0]"
        assert monitor.names[:-1] == [n for n, _ in model.named_parameters()]


def _hook_counts(optimizer):
    return len(optimizer._optimizer_step_pre_hooks), len(optimizer._optimizer_step_post_hooks)


def test_close_removes_every_hook_and_stops_logging(writer, tmp_path, read_values):
    model, optimizer = _make("sgd-momentum-wd")
    user_hook_calls = []
    optimizer.register_step_post_hook(lambda *args: user_hook_calls.append(1))
    assert _hook_counts(optimizer) == (0, 1)
    monitor = deepscope.watch(model, optimizer, writer, every=1)
    assert _hook_counts(optimizer) == (1, 2)
    train(model, optimizer, 2)
    monitor.close()
    assert _hook_counts(optimizer) == (0, 1)  # the user's own hook stays
    train(model, optimizer, 3)
    writer.flush()
    assert [step for step, _ in logged(read_values, None, tmp_path)] == [0, 1]
    assert monitor.stats.steps_seen == 2
    assert len(user_hook_calls) == 5
    monitor.close()  # closing twice is harmless


def test_context_manager_removes_hooks(writer, tmp_path, read_values):
    model, optimizer = _make("adam")
    with deepscope.watch(model, optimizer, writer, every=1) as monitor:
        assert isinstance(monitor, deepscope.Monitor)
        assert _hook_counts(optimizer) == (1, 1)
        train(model, optimizer, 1)
    assert _hook_counts(optimizer) == (0, 0)
    train(model, optimizer, 2)
    writer.flush()
    assert [step for step, _ in logged(read_values, None, tmp_path)] == [0]


def test_context_manager_removes_hooks_when_training_raises(writer):
    model, optimizer = _make("adam")
    with pytest.raises(KeyError), deepscope.watch(model, optimizer, writer):
        raise KeyError("training failed")
    assert _hook_counts(optimizer) == (0, 0)


@pytest.mark.parametrize("every", [0, -1, 2.5, "5", None])
def test_bad_every_raises(writer, every):
    model, optimizer = _make()
    with pytest.raises(ValueError, match="every must be a positive"):
        deepscope.watch(model, optimizer, writer, every=every)
    assert _hook_counts(optimizer) == (0, 0)


def test_non_module_raises(writer):
    model, optimizer = _make()
    with pytest.raises(TypeError, match=r"torch\.nn\.Module, got list"):
        deepscope.watch(list(model.parameters()), optimizer, writer)


def test_non_optimizer_raises(writer):
    model, _ = _make()
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer, got str"):
        deepscope.watch(model, "adam", writer)


def test_plain_torch_summary_writer_raises_saying_what_to_use(tmp_path):
    model, optimizer = _make()
    plain = torch.utils.tensorboard.SummaryWriter(str(tmp_path))
    try:
        with pytest.raises(TypeError, match=r"deepscope\.SummaryWriter"):
            deepscope.watch(model, optimizer, plain)
    finally:
        plain.close()
    assert _hook_counts(optimizer) == (0, 0)


def test_optimizer_without_trainable_parameters_raises(writer):
    model, _ = _make()
    for param in model.parameters():
        param.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no trainable parameters"):
        deepscope.watch(model, optimizer, writer)


def test_failure_while_measuring_warns_once_and_training_goes_on(
    writer, tmp_path, read_values, decode_ratios, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("measurement exploded")

    monkeypatch.setattr(ratios_math, "measure_update", broken)
    model, optimizer = _make("sgd-momentum-wd")
    start = [p.detach().clone() for p in model.parameters()]
    monitor = deepscope.watch(model, optimizer, writer, every=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, optimizer, 3)
    runtime_warnings = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime_warnings) == 1
    assert "measurement exploded" in str(runtime_warnings[0].message)
    assert len(monitor.stats.errors) == 3
    assert all("measurement exploded" in e for e in monitor.stats.errors)
    assert monitor.stats.steps_seen == 3
    # Training went on: every parameter moved.
    assert all(not torch.equal(s, p) for s, p in zip(start, model.parameters()))

    # Once the fault is gone, measuring resumes at the right step with the right numbers.
    monkeypatch.undo()
    reference = train(model, optimizer, 1, seed=1)
    monitor.close()
    rows = logged(read_values, decode_ratios, tmp_path)
    assert [step for step, _ in rows] == [3]
    assert_rows_match(rows[0][1], reference[0])


def test_failure_before_the_step_is_recorded_and_training_goes_on(writer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("snapshot exploded")

    monkeypatch.setattr(ratios_math, "snapshot", broken)
    model, optimizer = _make("adam")
    start = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(RuntimeWarning, match="snapshot exploded"):
        with deepscope.watch(model, optimizer, writer, every=1) as monitor:
            train(model, optimizer, 2)
    assert len(monitor.stats.errors) == 2
    assert "before the optimizer step" in monitor.stats.errors[0]
    assert monitor.stats.measurements == 0
    assert all(not torch.equal(s, p) for s, p in zip(start, model.parameters()))


def test_non_finite_weights_give_non_finite_ratios_that_are_kept(
    writer, tmp_path, read_values, decode_ratios
):
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 2), "b": torch.nn.Linear(3, 2)})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.rand(5, 3) + 0.5  # positive inputs: a's outputs are +inf, not NaN
    with torch.no_grad():
        model["a"].weight[0, 0] = math.inf  # ‖W‖ = inf, and inf − inf = NaN after the step
        model["b"].bias.zero_()  # ‖W‖ = 0 with a non-zero update: undefined, not a fault
    with pytest.warns(RuntimeWarning, match="non-finite update ratio for a.weight at step 0"):
        with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None) as monitor:
            # The gradients of a sum are finite whatever the outputs are.
            loss = model["a"](x).sum() + model["b"](x).sum()
            optimizer.zero_grad()
            loss.backward()
            before = {n: p.detach().double().numpy() for n, p in model.named_parameters()}
            optimizer.step()
    assert monitor.stats.errors == []
    assert monitor.stats.non_finite == 1  # a.weight (NaN); b.bias is a zero weight
    assert monitor.stats.zero_weight == 1
    rows = logged(read_values, decode_ratios, tmp_path)
    assert len(rows) == 1
    got = rows[0][1]
    assert list(got) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert got["a.weight"] is not None and math.isnan(got["a.weight"])  # kept, not no_update
    assert got["b.bias"] is ZERO_WEIGHT
    for name in ("a.bias", "b.weight"):
        after = dict(model.named_parameters())[name].detach().double().numpy()
        want = np.linalg.norm(after - before[name]) / np.linalg.norm(before[name])
        assert got[name] == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("per_event, steps, sizes", [(4, 10, [4, 4, 2]), (1, 3, [1, 1, 1])])
def test_measurements_are_written_in_blocks(
    per_event, steps, sizes, writer, tmp_path, read_values, decode_ratios
):
    model, optimizer = _make("adam")
    with deepscope.watch(model, optimizer, writer, every=1, measurements_per_event=per_event):
        reference = train(model, optimizer, steps)
    writer.flush()
    events = read_values(tmp_path, "update_ratios")
    assert [len(v.update_ratios_step().steps) or 1 for v in events] == sizes
    rows = logged(read_values, decode_ratios, tmp_path)
    assert [step for step, _ in rows] == list(range(steps))
    for (_, got), want in zip(rows, reference):
        assert_rows_match(got, want)


def test_a_block_is_written_once_its_oldest_measurement_is_old_enough(
    writer, tmp_path, read_values
):
    model, optimizer = _make("adam")
    monitor = deepscope.watch(model, optimizer, writer, every=1, max_event_delay=0.0)
    train(model, optimizer, 3)
    writer.flush()
    # Nothing waits for a full block of 10: each measurement is written at the next hook.
    assert len(read_values(tmp_path, "update_ratios")) >= 2
    monitor.close()
    assert [step for step, _ in logged(read_values, None, tmp_path)] == [0, 1, 2]


def _flush_event_files_only(writer):
    """Put what the writer has on disk without running its flush hooks (the monitor's)."""
    for file_writer in writer.all_writers.values():
        file_writer.flush()


@pytest.mark.parametrize("flush", ["monitor", "writer"])
def test_flush_writes_a_partial_block(flush, writer, tmp_path, read_values):
    model, optimizer = _make("adam")
    monitor = deepscope.watch(model, optimizer, writer, every=1, max_event_delay=60.0)
    train(model, optimizer, 3)
    _flush_event_files_only(writer)
    assert read_values(tmp_path, "update_ratios") == []  # held for a block of 10
    (monitor if flush == "monitor" else writer).flush()
    assert [step for step, _ in logged(read_values, None, tmp_path)] == [0, 1, 2]
    monitor.close()


def test_closing_the_writer_writes_the_held_block(tmp_path, read_values):
    model, optimizer = _make("adam")
    writer = deepscope.SummaryWriter(str(tmp_path))
    monitor = deepscope.watch(model, optimizer, writer, every=1, max_event_delay=60.0)
    train(model, optimizer, 4)
    writer.close()
    assert [step for step, _ in logged(read_values, None, tmp_path)] == [0, 1, 2, 3]
    monitor.close()  # nothing left to write, and nothing raises


def test_a_block_written_for_its_age_is_on_disk_at_once(writer, tmp_path, read_values):
    """What bounds a kill -9's loss: an old block is written and its event file flushed."""
    model, optimizer = _make("adam")
    monitor = deepscope.watch(model, optimizer, writer, every=1, max_event_delay=0.0)
    train(model, optimizer, 2)  # step 1's hook writes step 0 (old enough), then step 1
    # No flush of any kind here: what was written is read from disk as it is.
    assert [step for step, _ in logged(read_values, None, tmp_path)] == [0, 1]
    monitor.close()


def test_default_max_event_delay_is_a_few_seconds():
    import inspect

    from deepscope.writer import watch_update_ratios

    assert watch_update_ratios.DEFAULT_MAX_EVENT_DELAY == 2.0
    default = inspect.signature(deepscope.watch).parameters["max_event_delay"].default
    assert repr(default) == "2.0"
    assert deepscope.UpdateRatios().max_event_delay == 2.0


def test_warnings_turned_into_errors_do_not_stop_training(writer):
    """A NaN weight under `filterwarnings=error`: the trouble is counted, training goes on."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitor = deepscope.watch(model, optimizer, writer, every=1, spectra_every=1)
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.ones(2, 4)).sum().backward()
            optimizer.step()  # would raise here if a warning escaped the hooks
        monitor.close()
    assert monitor.stats.steps_seen == 3
    assert monitor.stats.non_finite > 0  # NaN update ratios, counted
    # Both layers, at each of the 3 measurements: the NaN reaches the second through its gradient.
    assert monitor.measurers["spectra"].stats.non_finite == 6


def _float64_copies(model) -> dict[str, np.ndarray]:
    return {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}


def _reference_row(before: dict, after: dict) -> dict:
    """{name: ratio, None (bit for bit unchanged) or ZERO_WEIGHT}, in float64 numpy."""
    row = {}
    for name, old in before.items():
        delta = np.linalg.norm((after[name] - old).reshape(-1))
        norm = np.linalg.norm(old.reshape(-1))
        if np.array_equal(after[name], old):
            row[name] = None
        elif norm == 0:
            row[name] = ZERO_WEIGHT
        else:
            row[name] = delta / norm
    return row


def test_lbfgs_closure_updates_are_measured_not_logged_as_no_update(
    writer, tmp_path, read_values, decode_ratios
):
    """LBFGS computes its gradients inside step(): before it, every .grad is None at step 0."""
    model, _ = _make("adam")
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(16, 4, generator=generator)
    y = torch.randint(0, 3, (16,), generator=generator)

    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x, use_aux=False), y)
        loss.backward()
        return loss

    reference = []
    assert all(p.grad is None for p in model.parameters())  # until the first closure runs
    with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None) as monitor:
        for _ in range(3):
            before = _float64_copies(model)
            optimizer.step(closure)
            reference.append(_reference_row(before, _float64_copies(model)))
    assert monitor.stats.errors == [] and monitor.stats.non_finite == 0
    rows = logged(read_values, decode_ratios, tmp_path)
    assert [step for step, _ in rows] == [0, 1, 2]
    for (_, got), want in zip(rows, reference):
        assert_rows_match(got, want)
    # Step 0 moved fc1 and fc2 (by far more than a rule-of-thumb 1e-3); aux, unused in the
    # closure, got an exactly zero LBFGS update and is no update, as it should be.
    first = rows[0][1]
    assert all(first[n] is not None and first[n] > 1e-3 for n in ("fc1.weight", "fc2.weight"))
    assert first["aux.weight"] is None and first["aux.bias"] is None


def test_zero_initialised_biases_are_zero_weight_then_ordinary_and_never_warned(
    writer, tmp_path, read_values, decode_ratios
):
    model, optimizer = _make("adamw")
    with torch.no_grad():
        model.fc1.bias.zero_()
        model.fc2.bias.zero_()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=generator)
    y = torch.randint(0, 3, (16,), generator=generator)
    reference = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all
        with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None) as monitor:
            for _ in range(3):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                before = _float64_copies(model)
                optimizer.step()
                reference.append(_reference_row(before, _float64_copies(model)))
    assert monitor.stats.non_finite == 0 and monitor.stats.zero_weight == 2
    assert monitor.stats.errors == []
    rows = logged(read_values, decode_ratios, tmp_path)
    assert rows[0][1]["fc1.bias"] is ZERO_WEIGHT and rows[0][1]["fc2.bias"] is ZERO_WEIGHT
    assert isinstance(rows[1][1]["fc1.bias"], float)  # a weight now: an ordinary ratio
    for (_, got), want in zip(rows, reference):
        assert_rows_match(got, want)


def test_a_zero_weight_that_does_not_move_is_no_update(writer, tmp_path, read_values):
    model, optimizer = _make("sgd-momentum-wd")
    with torch.no_grad():
        model.aux.bias.zero_()
    with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None) as monitor:
        train(model, optimizer, 1, use_aux=lambda k: False)
    assert monitor.stats.zero_weight == 0
    (row,) = [r for _, r in logged(read_values, None, tmp_path)]
    assert row["aux.bias"] is None


def test_watching_an_optimizer_twice_is_refused_until_the_first_monitor_is_closed(
    writer, tmp_path, read_values
):
    model, optimizer = _make("adam")
    first = deepscope.watch(model, optimizer, writer, every=1, spectra_every=None)
    with pytest.raises(ValueError, match=r"already watched.*close\(\) on the first monitor"):
        deepscope.watch(model, optimizer, writer, every=1, spectra_every=None)
    with pytest.raises(ValueError, match="already watched"):
        deepscope.Monitor(model, optimizer, writer, [deepscope.UpdateRatios(every=1)])
    assert _hook_counts(optimizer) == (1, 1)  # the refused ones left nothing behind
    train(model, optimizer, 2)
    first.close()
    with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None, start_step=2):
        train(model, optimizer, 1)
    # Another optimizer of the same model is its own business.
    other = torch.optim.SGD(model.parameters(), lr=0.1)
    deepscope.watch(model, other, writer, tag="sgd", spectra_every=None).close()
    writer.flush()
    assert [step for step, _ in logged(read_values, None, tmp_path)] == [0, 1, 2]  # once each


def test_hooks_read_no_tensor_value_on_the_host(writer, monkeypatch):
    """No .item(), bool(), float(), ... in the hooks: on a GPU each would wait for the device."""
    host_reads = []
    guarded = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")

    def guard():
        for name in guarded:
            original = getattr(torch.Tensor, name)

            def read(self, *args, _original=original, _name=name, **kwargs):
                host_reads.append(_name)
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, read)

    model, _ = _make()
    with torch.no_grad():
        model.fc1.bias.zero_()  # a zero weight
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # reads nothing
    monitor = deepscope.watch(
        model, optimizer, writer, every=1, spectra_every=None, measurements_per_event=2
    )
    generator = torch.Generator().manual_seed(0)
    for k in range(5):
        optimizer.zero_grad(set_to_none=True)
        model(torch.randn(3, 4, generator=generator), use_aux=k % 2 == 0).sum().backward()
        guard()
        optimizer.step()  # the hooks measure, mark and write blocks of 2
        monkeypatch.undo()
    monitor.close()
    assert monitor.stats.measurements == 5 and monitor.stats.errors == []
    assert monitor.stats.zero_weight == 1
    assert host_reads == []
    guard()
    torch.ones(()).item()  # the guard itself sees a read
    monkeypatch.undo()
    assert host_reads == ["item"]
