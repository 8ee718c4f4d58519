"""The measurer API: watch(measure=[...]), users' own measurers, one stats shape, one check."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from tests.update_ratio_logs import read_update_ratios

EPS32 = float(np.finfo(np.float32).eps)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def _data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=generator), torch.randint(0, 3, (16,), generator=generator)


def _train(model, optimizer, steps, on_gradients=None):
    x, y = _data()
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if on_gradients is not None:
            on_gradients(step)
        optimizer.step()


def _made(seed=0):
    torch.manual_seed(seed)
    model = Net()
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


@pytest.fixture
def writer(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    yield writer
    writer.close()


# -- measure=[...] means what the shortcuts mean ------------------------------------------


def _contents(read_values, logdir):
    """{tag: [(step, metadata bytes or b"", payload bytes)]}; update ratios as their rows."""
    by_tag: dict[str, list] = {}
    for value in read_values(logdir):
        if value.tag == "update_ratios":
            continue
        metadata = value.value.metadata.SerializeToString() if value.has_metadata else b""
        payload = list(value.value.tensor.string_val)
        if value.tag.startswith("spectra/"):  # all but the seconds the SVD took
            step = pb.SpectrumStep.FromString(payload[0])
            step.ClearField("seconds")
            payload = [step.SerializeToString(deterministic=True)]
        if value.tag.startswith("layer_statistics/"):  # all but the seconds it took
            step = pb.LayerStatisticsStep.FromString(payload[0])
            step.ClearField("seconds")
            payload = [step.SerializeToString(deterministic=True)]
        by_tag.setdefault(value.tag, []).append((value.step, metadata, payload))
    return by_tag


def test_measure_list_writes_what_the_shortcuts_write(tmp_path, read_values):
    x, y = _data(1)
    runs = {}
    for how in ("shortcuts", "measure"):
        logdir = tmp_path / how
        writer = deepscope.SummaryWriter(str(logdir))
        model, optimizer = _made()
        if how == "shortcuts":
            monitor = deepscope.watch(
                model,
                optimizer,
                writer,
                every=1,
                measurements_per_event=3,
                spectra_every=2,
                spectra_options={"time_budget": None},
                correlation_layers=["fc1"],
                probe=x,
                correlation_every=3,
                saliency_probe=(x[:4], y[:4]),
                saliency_every=4,
                parameter_norms_every=2,
                layer_statistics_every=4,
            )
        else:
            monitor = deepscope.watch(
                model,
                optimizer,
                writer,
                measure=[
                    deepscope.UpdateRatios(every=1, measurements_per_event=3),
                    deepscope.Spectra(every=2, time_budget=None),
                    deepscope.Correlations(layers=["fc1"], probe=x, every=3),
                    deepscope.Saliency(probe=(x[:4], y[:4]), every=4),
                    deepscope.ParameterNorms(every=2),
                    deepscope.LayerStats(every=4),
                ],
            )
        assert list(monitor.measurers) == [
            "update_ratios",
            "spectra",
            "correlation",
            "saliency",
            "parameter_norms",
            "layer_statistics",
        ]
        _train(model, optimizer, 6)
        monitor.close()
        writer.close()
        assert monitor.stats.error_count == 0, monitor.stats.errors
        runs[how] = (
            read_update_ratios(read_values, logdir, strict=True),
            _contents(read_values, logdir),
            monitor.stats.measurer_runs,
        )
    (ratios_a, blobs_a, runs_a), (ratios_b, blobs_b, runs_b) = runs["shortcuts"], runs["measure"]
    assert ratios_a.names == ratios_b.names and len(ratios_a.rows) == 6
    assert [s for s, _ in ratios_a.rows] == [s for s, _ in ratios_b.rows] == list(range(6))
    np.testing.assert_array_equal(ratios_a.raw, ratios_b.raw)  # the same computation, bit for bit
    assert set(blobs_a) == set(blobs_b)
    assert {tag.split("/")[0] for tag in blobs_a} == {
        "spectra",
        "correlation",
        "saliency",
        "layer_statistics",
    }
    for tag in blobs_a:
        assert blobs_a[tag] == blobs_b[tag], tag
    assert [step for step, _, _ in blobs_a["spectra/fc1"]] == [0, 2, 4]
    assert [step for step, _, _ in blobs_a["correlation/fc1"]] == [0, 3]
    assert [step for step, _, _ in blobs_a["layer_statistics/parameters"]] == [0, 2, 4]
    assert [step for step, _, _ in blobs_a["layer_statistics/activations"]] == [0, 4]
    assert (
        runs_a
        == runs_b
        == {
            "update_ratios": 6,
            "spectra": 3,
            "correlation": 2,
            "saliency": 2,
            "parameter_norms": 3,
            "layer_statistics": 2,
        }
    )


@pytest.mark.parametrize(
    "given",
    [
        {"every": 10},
        {"spectra_every": None},
        {"tag": "ratios"},
        {"correlation_layers": ["fc1"]},
        {"saliency_methods": ["gradient"]},
        {"max_event_delay": 2.0},
    ],
)
def test_measure_together_with_a_kind_keyword_is_refused(writer, given):
    model, optimizer = _made()
    name = next(iter(given))
    with pytest.raises(ValueError, match=f"measure=.*{name}=.*complete list"):
        deepscope.watch(model, optimizer, writer, measure=[deepscope.UpdateRatios()], **given)
    assert not optimizer._optimizer_step_pre_hooks  # nothing was left attached


def test_two_measurers_with_one_name_are_refused(writer):
    model, optimizer = _made()
    with pytest.raises(ValueError, match="two measurers are named 'update_ratios'.*name="):
        deepscope.watch(
            model, optimizer, writer, measure=[deepscope.UpdateRatios(), deepscope.UpdateRatios()]
        )
    # Told apart by name, both run.
    with deepscope.watch(
        model,
        optimizer,
        writer,
        measure=[
            deepscope.UpdateRatios(every=1),
            deepscope.UpdateRatios(every=2, tag="ratios_every_2", name="every_2"),
        ],
    ) as monitor:
        _train(model, optimizer, 4)
    assert monitor.stats.measurer_runs == {"update_ratios": 4, "every_2": 2}


@pytest.mark.parametrize("thing", [lambda step: None, "spectra", object()])
def test_a_non_measurer_is_refused_saying_what_a_measurer_needs(writer, thing):
    model, optimizer = _made()
    with pytest.raises(TypeError, match="not a deepscope.Measurer: a measurer subclasses"):
        deepscope.watch(model, optimizer, writer, measure=[deepscope.UpdateRatios(), thing])


def test_an_empty_measure_list_is_refused(writer):
    model, optimizer = _made()
    with pytest.raises(ValueError, match="measure is empty"):
        deepscope.watch(model, optimizer, writer, measure=[])


# -- a user's own measurer -------------------------------------------------------------------


class GradNorms(deepscope.Measurer):
    """The README's example: ‖∇W‖₂ per parameter, logged as layer values."""

    name = "grad_norms"

    def before_step(self, step, model, optimizer, writer):
        norms = {n: p.grad.norm() for n, p in model.named_parameters() if p.grad is not None}
        writer.add_layer_values("grad_norm", norms, global_step=step, quantity="‖∇W‖₂")


class GradNormScalars(deepscope.Measurer):
    """The same with torch's add_scalar, one tag per parameter."""

    name = "grad_norms"

    def before_step(self, step, model, optimizer, writer):
        for n, p in model.named_parameters():
            writer.add_scalar(f"grad_norm/{n}", p.grad.norm(), global_step=step)


def _layer_values(read_values, logdir, tag):
    rows = []
    for value in read_values(logdir, tag):
        step = pb.LayerValuesStep.FromString(value.value.tensor.string_val[0])
        rows.append((value.step, list(step.names), arrays.decode_array(step.values)))
    return rows


def _scalars(read_values, logdir, names):
    by_step: dict[int, dict[str, float]] = {}
    for value in read_values(logdir):
        if value.tag.startswith("grad_norm/"):
            by_step.setdefault(value.step, {})[value.tag[len("grad_norm/") :]] = (
                value.value.simple_value
            )
    return [(step, names, np.array([row[n] for n in names])) for step, row in by_step.items()]


@pytest.mark.parametrize("carrier", ["layer_values", "scalars"])
def test_a_user_measurer_logs_a_per_layer_quantity_equal_to_a_numpy_reference(
    writer, tmp_path, read_values, carrier
):
    if carrier == "layer_values" and not hasattr(writer, "add_layer_values"):
        pytest.skip("SummaryWriter.add_layer_values is not wired into the writer yet")
    model, optimizer = _made()
    names = [n for n, _ in model.named_parameters()]
    reference = {}

    def grad_norms(step):
        reference[step] = {
            n: np.linalg.norm(p.grad.double().numpy().reshape(-1))
            for n, p in model.named_parameters()
        }

    measurer = GradNorms(every=2) if carrier == "layer_values" else GradNormScalars(every=2)
    with deepscope.watch(
        model, optimizer, writer, measure=[measurer, deepscope.UpdateRatios(every=1)]
    ) as monitor:
        _train(model, optimizer, 5, on_gradients=grad_norms)
    writer.flush()
    assert monitor.stats.error_count == 0, monitor.stats.errors
    if carrier == "layer_values":
        rows = _layer_values(read_values, tmp_path, "grad_norm")
    else:
        rows = _scalars(read_values, tmp_path, names)
    assert [step for step, _, _ in rows] == [0, 2, 4]
    for step, logged_names, values in rows:
        assert logged_names == names
        want = np.array([reference[step][n] for n in names])
        np.testing.assert_allclose(values, want, rtol=8 * EPS32)
    stats = monitor.stats.measurers["grad_norms"]
    assert stats.runs == 3 and stats.error_count == 0 and stats.seconds > 0
    assert monitor.stats.measurers["update_ratios"].runs == 5
    assert len(read_update_ratios(read_values, tmp_path).rows) == 5


class Recorder(deepscope.Measurer):
    """Records what it sees before and after each due step."""

    name = "recorder"

    def __init__(self, every):
        super().__init__(every)
        self.seen = []

    def start(self, model, optimizer, writer):
        self.started = (model, optimizer, writer)

    def before_step(self, step, model, optimizer, writer):
        weight = model.fc1.weight
        self.seen.append(("before", step, weight.grad.clone(), weight.detach().clone()))

    def measure(self, step, model, optimizer, writer):
        self.seen.append(("after", step, None, model.fc1.weight.detach().clone()))


def test_before_step_sees_the_gradients_and_measure_the_updated_weights(writer):
    model, optimizer = _made()
    recorder = Recorder(every=2)
    truth = []

    def record(step):
        truth.append((model.fc1.weight.grad.clone(), model.fc1.weight.detach().clone()))

    with deepscope.watch(model, optimizer, writer, measure=[recorder], start_step=0) as monitor:
        assert recorder.started == (model, optimizer, writer)
        for _ in range(4):
            _train(model, optimizer, 1, on_gradients=record)
            truth[-1] += (model.fc1.weight.detach().clone(),)
    assert [(phase, step) for phase, step, _, _ in recorder.seen] == [
        ("before", 0),
        ("after", 0),
        ("before", 2),
        ("after", 2),
    ]
    for k, step in enumerate((0, 2)):
        grad, weight_before, weight_after = truth[step]
        _, _, seen_grad, seen_before = recorder.seen[2 * k]
        assert torch.equal(seen_grad, grad) and torch.equal(seen_before, weight_before)
        assert torch.equal(recorder.seen[2 * k + 1][3], weight_after)
        assert not torch.equal(weight_before, weight_after)
    assert monitor.tag is None and monitor.names == []  # no update ratios measured
    assert monitor.stats.steps_seen == 4 and monitor.stats.measurements == 0


class Fails(deepscope.Measurer):
    name = "fails"

    def __init__(self, every, where):
        super().__init__(every)
        self.where = where
        self.closed = False

    def _maybe_fail(self, where, step):
        if where == self.where:
            raise RuntimeError(f"{where} exploded at {step}")

    def due(self, step):
        self._maybe_fail("due", step)
        return super().due(step)

    def before_step(self, step, model, optimizer, writer):
        self._maybe_fail("before_step", step)

    def measure(self, step, model, optimizer, writer):
        self._maybe_fail("measure", step)

    def flush(self):
        self._maybe_fail("flush", None)

    def close(self):
        self.closed = True
        self._maybe_fail("close", None)


@pytest.mark.parametrize("where", ["due", "before_step", "measure"])
def test_a_failing_measurer_is_recorded_in_its_own_stats_and_training_goes_on(
    writer, tmp_path, read_values, where
):
    model, optimizer = _made()
    start = [p.detach().clone() for p in model.parameters()]
    failing = Fails(every=1, where=where)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with deepscope.watch(
            model, optimizer, writer, measure=[failing, deepscope.UpdateRatios(every=1)]
        ) as monitor:
            _train(model, optimizer, 3)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and f"{where} exploded at 0" in messages[0]
    assert "monitor.stats.measurers['fails']" in messages[0]
    stats = monitor.stats.measurers["fails"]
    assert stats.error_count == 3 and len(stats.errors) == 3
    assert all("measuring fails" in e and f"{where} exploded" in e for e in stats.errors)
    assert monitor.stats.measurers["update_ratios"].error_count == 0
    assert monitor.stats.error_count == 3 and monitor.stats.errors == stats.errors
    assert failing.closed
    # Training went on, and so did the other measurer.
    assert all(not torch.equal(s, p) for s, p in zip(start, model.parameters()))
    assert [s for s, _ in read_update_ratios(read_values, tmp_path).rows] == [0, 1, 2]


@pytest.mark.parametrize("where", ["flush", "close"])
def test_failures_while_flushing_or_closing_are_recorded(writer, where):
    model, optimizer = _made()
    with pytest.warns(
        RuntimeWarning, match=f"fails while {where.rstrip('e')}ing.*{where} exploded"
    ):
        monitor = deepscope.watch(model, optimizer, writer, measure=[Fails(1, where)])
        _train(model, optimizer, 1)
        monitor.close()
    assert monitor.stats.measurers["fails"].error_count >= 1


def test_a_failing_before_step_skips_that_steps_measure(writer):
    calls = []

    class Half(deepscope.Measurer):
        name = "half"

        def before_step(self, step, model, optimizer, writer):
            calls.append(("before", step))
            if step == 1:
                raise ValueError("no")

        def measure(self, step, model, optimizer, writer):
            calls.append(("measure", step))

    model, optimizer = _made()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with deepscope.watch(model, optimizer, writer, measure=[Half(1)]) as monitor:
            _train(model, optimizer, 3)
    assert calls == [("before", 0), ("measure", 0), ("before", 1), ("before", 2), ("measure", 2)]
    assert monitor.stats.measurers["half"].runs == 3


def test_every_measurer_has_the_same_stats_shape(writer):
    x, y = _data()
    model, optimizer = _made()
    with torch.no_grad():
        model.fc2.weight[0, 0] = float("nan")  # non-finite everywhere: counted per measurer
    measurers = [
        deepscope.UpdateRatios(every=1),
        deepscope.Spectra(every=1, time_budget=None),
        deepscope.Correlations(layers=["fc2"], probe=x, every=1),
        deepscope.Saliency(probe=(x[:2], y[:2]), every=1),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with deepscope.watch(model, optimizer, writer, measure=measurers) as monitor:
            _train(model, optimizer, 2)
    for name, stats in monitor.stats.measurers.items():
        assert isinstance(stats, deepscope.MeasurerStats)
        assert stats.runs == 2 and stats.seconds > 0, name
        assert stats.non_finite == monitor.measurers[name].non_finite > 0, name
    assert monitor.stats.non_finite == monitor.stats.measurers["update_ratios"].non_finite
    assert monitor.stats.measurer_runs == {m.name: 2 for m in measurers}
    assert isinstance(monitor.stats, deepscope.MonitorStats)


# -- one argument check ------------------------------------------------------------------------


BAD_EVERY = [True, 0, -3, 1.5, "5", None]


@pytest.mark.parametrize("bad", BAD_EVERY)
def test_every_cadence_argument_is_checked_the_same_way_naming_it(writer, bad):
    x, y = _data()
    model, optimizer = _made()
    says = "must be a positive number of optimizer steps"
    made = [
        ("every", lambda: deepscope.Measurer(every=bad)),
        ("every", lambda: GradNorms(every=bad)),
        ("every", lambda: deepscope.UpdateRatios(every=bad)),
        ("every", lambda: deepscope.Spectra(every=bad)),
        ("every", lambda: deepscope.Correlations(layers=["fc1"], probe=x, every=bad)),
        ("every", lambda: deepscope.Saliency(probe=x, every=bad)),
        ("measurements_per_event", lambda: deepscope.UpdateRatios(measurements_per_event=bad)),
        ("every", lambda: deepscope.watch(model, optimizer, writer, every=bad)),
        (
            "correlation_every",
            lambda: deepscope.watch(
                model, optimizer, writer, correlation_layers=["fc1"], probe=x, correlation_every=bad
            ),
        ),
        (
            "saliency_every",
            lambda: deepscope.watch(model, optimizer, writer, saliency_probe=x, saliency_every=bad),
        ),
    ]
    for name, make in made:
        with pytest.raises(ValueError, match=f"^{name} {says}") as raised:
            make()
        assert repr(bad) in str(raised.value)
    assert not optimizer._optimizer_step_pre_hooks


def test_a_measurer_whose_every_is_broken_later_is_refused_by_watch(writer):
    model, optimizer = _made()
    measurer = GradNorms(every=3)
    measurer.every = 0
    with pytest.raises(ValueError, match=r"^grad_norms\.every must be a positive"):
        deepscope.watch(model, optimizer, writer, measure=[measurer])


def test_check_every_returns_the_int():
    from deepscope.writer.measurer import check_every

    assert check_every(np.int64(7), "x") == 7 and type(check_every(np.int64(7), "x")) is int


# -- lifecycle ---------------------------------------------------------------------------------


def test_close_unregisters_the_writer_hook_and_the_exit_flush(writer):
    from deepscope.writer import watch as watch_module

    model, optimizer = _made()
    monitor = deepscope.watch(model, optimizer, writer, measure=[deepscope.UpdateRatios(every=1)])
    assert monitor in watch_module._OPEN and len(writer._flush_hooks) == 1
    monitor.close()
    assert monitor not in watch_module._OPEN and len(writer._flush_hooks) == 0
    monitor.close()  # a second close does nothing


def test_a_measurer_that_fails_to_start_leaves_nothing_attached(writer):
    model, optimizer = _made()
    first = Fails(1, where="nowhere")
    with pytest.raises(ValueError, match="no module named 'nope'"):
        deepscope.watch(
            model,
            optimizer,
            writer,
            measure=[first, deepscope.Correlations(layers=["nope"], probe=torch.ones(2, 4))],
        )
    assert first.closed  # started, then closed again
    assert not optimizer._optimizer_step_pre_hooks and not writer._flush_hooks
    deepscope.watch(model, optimizer, writer, measure=[deepscope.UpdateRatios()]).close()


def test_a_cadence_in_the_old_fourth_position_says_to_name_it(writer):
    model, optimizer = _made()
    with pytest.raises(TypeError, match="fourth argument is measure=.*pass every=10"):
        deepscope.watch(model, optimizer, writer, 10)


def test_the_kind_registry_names_the_built_in_measurers():
    from deepscope import kinds

    measurers = {kind.name: kind.load_measurer() for kind in kinds.KINDS if kind.measurer}
    assert measurers["update_ratios"] is deepscope.UpdateRatios
    assert measurers["spectrum"] is deepscope.Spectra
    assert measurers["correlation"] is deepscope.Correlations
    assert measurers["saliency"] is deepscope.Saliency
    assert all(issubclass(cls, deepscope.Measurer) for cls in measurers.values())


def test_a_measurers_warning_points_at_the_users_optimizer_step(writer):
    import inspect

    model, optimizer = _made()
    monitor = deepscope.watch(model, optimizer, writer, measure=[Fails(1, where="measure")])
    x, y = _data()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with pytest.warns(RuntimeWarning, match="measure exploded") as caught:
        line = inspect.currentframe().f_lineno + 1
        optimizer.step()
    monitor.close()
    assert caught[0].filename == __file__ and caught[0].lineno == line
