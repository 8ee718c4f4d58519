"""watch()'s spectra: every eligible weight, on its cadence, without disturbing training.

Logged singular values are compared with numpy's SVD of copies of the weights the test
takes itself right after each optimizer step.
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
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.watch_spectra import DEFAULT_SPECTRA_EVERY, SpectraWatcher


def started(measurer, model, writer):
    """`measurer` attached to `model` and `writer` as watch() attaches it (no optimizer needed)."""
    measurer.start(model, None, writer)
    return measurer


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.conv = torch.nn.Conv1d(4, 6, 3, padding=1)
        self.grouped = torch.nn.Conv1d(6, 6, 3, padding=1, groups=3)
        self.norm = torch.nn.BatchNorm1d(6)  # 1-D weight: not watched
        torch.nn.init.constant_(self.norm.bias, 0.1)  # a zero bias has an infinite update ratio
        self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(6, 3))

    def forward(self, tokens):
        h = self.embed(tokens).transpose(1, 2)  # (N, 4, L)
        h = self.norm(self.grouped(torch.relu(self.conv(h))))
        return self.head(h.mean(dim=2))


EXPECTED = {  # tag -> (kind, matrix shape, reshape of the weight for the reference)
    "spectra/embed": ("Embedding", (1, 10, 4)),
    "spectra/conv": ("Conv1d", (1, 6, 12)),
    "spectra/grouped": ("Conv1d", (3, 2, 6)),
    "spectra/head.1": ("Linear", (1, 3, 6)),
}


def reference_sv(weight: np.ndarray, matrix_shape) -> np.ndarray:
    matrices = weight.astype(np.float64).reshape(matrix_shape)
    return np.stack([np.linalg.svd(m, compute_uv=False) for m in matrices])


def spectra_by_tag(read_values, logdir):
    found = {}
    for value in read_values(logdir):
        if not value.tag.startswith("spectra/"):
            continue
        step = pb.SpectrumStep.FromString(value.value.tensor.string_val[0])
        found.setdefault(value.tag, []).append((value.step, value, step))
    return found


@pytest.fixture
def writer(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    yield writer
    writer.close()


def test_every_eligible_weight_is_logged_at_its_steps(writer, tmp_path, read_values):
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    tokens = torch.randint(0, 10, (8, 5))
    target = torch.randint(0, 3, (8,))
    names = {tag.split("/", 1)[1] for tag in EXPECTED}
    reference = {}
    with deepscope.watch(model, optimizer, writer, every=10, spectra_every=3) as monitor:
        for step in range(7):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(tokens), target).backward()
            optimizer.step()
            reference[step] = {
                n: m.weight.detach().numpy().copy() for n, m in model.named_modules() if n in names
            }
    assert monitor.stats.errors == []
    assert monitor.stats.measurer_runs["spectra"] == 3
    assert monitor.stats.measurer_seconds["spectra"] > 0
    watcher = monitor.measurers["spectra"]
    assert watcher.stats.measurements == 3 and watcher.stats.spectra == 12
    assert watcher.stats.non_finite == watcher.stats.failed == 0
    found = spectra_by_tag(read_values, tmp_path)
    assert sorted(found) == sorted(EXPECTED)
    for tag, (kind, matrix_shape) in EXPECTED.items():
        events = found[tag]
        assert [s for s, _, _ in events] == [0, 3, 6]
        info = metadata.parse_plugin_data(events[0][1].value.metadata.plugin_data.content)
        assert info.spectrum.layer_kind == kind
        assert tuple(info.spectrum.matrix_shape) == matrix_shape
        assert not any(v.has_metadata for _, v, _ in events[1:])
        for global_step, _, step in events:
            weight = reference[global_step][tag.split("/", 1)[1]]
            np.testing.assert_allclose(
                arrays.decode_array(step.singular_values),
                reference_sv(weight, matrix_shape),
                rtol=1e-5,
                atol=1e-6,
            )
            assert step.error == "" and step.metrics.spectral_norm > 0


def test_measuring_leaves_grads_modes_and_weights_alone(writer):
    torch.manual_seed(1)
    model = Net()
    model.train()
    model.head.eval()  # a mixed state must survive as it is
    model(torch.randint(0, 10, (4, 5))).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    grad_copies = {n: g.clone() for n, g in grads.items()}
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    started(deepscope.Spectra(every=1), model, writer).measure(0)
    for n, p in model.named_parameters():
        assert p.grad is grads[n] and torch.equal(p.grad, grad_copies[n])
        assert torch.equal(p.detach(), weights[n]) and p.requires_grad
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())


def test_non_finite_weights_are_recorded_warned_once_and_training_goes_on(
    writer, tmp_path, read_values
):
    torch.manual_seed(2)
    model = Net()
    with torch.no_grad():
        model.conv.weight[0, 0, 0] = math.nan
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with deepscope.watch(model, optimizer, writer, spectra_every=1) as monitor:
            for _ in range(3):
                optimizer.step()  # no gradients: nothing moves, the hooks still run
    messages = [
        str(w.message)
        for w in caught
        if issubclass(w.category, RuntimeWarning) and "spectrum of" in str(w.message)
    ]
    assert len(messages) == 1 and "spectra/conv at step 0 not measured" in messages[0]
    # Nothing raised from the spectra (other measurers may say the loop ran no forward pass).
    assert [e for e in monitor.stats.errors if "spectra" in e] == []
    assert monitor.stats.steps_seen == 3
    stats = monitor.measurers["spectra"].stats
    assert stats.non_finite == 3 and stats.failed == 0 and len(stats.errors) == 3
    found = spectra_by_tag(read_values, tmp_path)
    assert [s for s, _, _ in found["spectra/conv"]] == [0, 1, 2]
    assert all("non-finite weight" in step.error for _, _, step in found["spectra/conv"])
    for tag in ("spectra/embed", "spectra/grouped", "spectra/head.1"):  # the others measured
        assert all(step.error == "" for _, _, step in found[tag])


def test_a_failing_svd_is_recorded_and_counted(writer, tmp_path, read_values, monkeypatch):
    def fails(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "svdvals", fails)
    model = Net()
    watcher = started(deepscope.Spectra(every=1), model, writer)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        watcher.measure(4)
    assert watcher.stats.failed == 4 and watcher.stats.non_finite == 0
    writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    assert len(found) == 4
    assert all("did not converge" in step.error for events in found.values() for *_, step in events)


def test_default_cadence_and_turning_spectra_off(writer):
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with deepscope.watch(model, optimizer, writer) as monitor:
        assert monitor.measurers["spectra"].every == DEFAULT_SPECTRA_EVERY
    for off in (None, 0):
        with deepscope.watch(model, optimizer, writer, spectra_every=off) as monitor:
            assert "spectra" not in monitor.measurers


@pytest.mark.parametrize("every", [-1, 1.5, "3", True])
def test_bad_cadence_raises_naming_the_argument_given(writer, every):
    with pytest.raises(ValueError, match="^every must be a positive"):
        deepscope.Spectra(every=every)
    with pytest.raises(ValueError, match="^every must be a positive"):
        SpectraWatcher(Net(), writer, every=every)  # the older spelling
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="^spectra_every must be a positive"):
        deepscope.watch(model, optimizer, writer, spectra_every=every)


def test_plain_torch_writer_raises(tmp_path):
    plain = torch.utils.tensorboard.SummaryWriter(str(tmp_path))
    try:
        with pytest.raises(TypeError, match=r"deepscope\.SummaryWriter"):
            started(deepscope.Spectra(), Net(), plain)
    finally:
        plain.close()


def test_shared_weights_are_measured_once_and_the_root_module_is_named_model(
    writer, tmp_path, read_values
):
    embed = torch.nn.Embedding(7, 5)
    decoder = torch.nn.Linear(5, 7, bias=False)
    decoder.weight = embed.weight  # tied
    started(
        deepscope.Spectra(), torch.nn.ModuleDict({"embed": embed, "decoder": decoder}), writer
    ).measure(0)
    started(deepscope.Spectra(prefix="root"), torch.nn.Linear(3, 4), writer).measure(0)
    writer.flush()
    tags = sorted({v.tag for v in read_values(tmp_path)})
    assert tags == ["root/model", "spectra/embed"]


def test_lazy_modules_join_once_initialised(writer):
    model = torch.nn.Sequential(torch.nn.LazyLinear(4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    watcher = started(deepscope.Spectra(every=1), model, writer)
    assert [tag for tag, _ in watcher.layers()] == ["spectra/2"]
    model(torch.randn(3, 6))
    assert [tag for tag, _ in watcher.layers()] == ["spectra/0", "spectra/2"]


def test_a_compiled_model_logs_the_eager_tags_without_orig_mod(writer, tmp_path, read_values):
    torch.manual_seed(3)
    model = Net()
    head = model.head[1]
    compiled = torch.compile(model, backend="eager")
    compiled.head = torch.compile(model.head, backend="eager")  # a compiled submodule too
    assert any("_orig_mod" in name for name, _ in compiled.named_modules())
    watcher = started(deepscope.Spectra(every=1), compiled, writer)
    assert [tag for tag, _ in watcher.layers()] == list(EXPECTED)
    watcher.measure(0)
    writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    assert sorted(found) == sorted(EXPECTED)
    weight = head.weight.detach().numpy()
    ((_, _, step),) = found["spectra/head.1"]
    np.testing.assert_allclose(
        arrays.decode_array(step.singular_values),
        reference_sv(weight, EXPECTED["spectra/head.1"][1]),
        rtol=1e-5,
        atol=1e-6,
    )


class FrozenBackbone(torch.nn.Module):
    """A frozen two-layer backbone, a trained head, and a trainable layer no loss reaches."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12)
        )
        self.backbone.requires_grad_(False)
        self.head = torch.nn.Linear(12, 4)
        self.unused = torch.nn.Linear(5, 3)  # trainable, but never gets a gradient

    def forward(self, x):
        return self.head(self.backbone(x))


def _train_and_measure(model, optimizer, watcher, steps):
    """Train `steps` steps, measuring after each; returns the weights after each step."""
    torch.manual_seed(5)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    weights = []
    for step in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        weights.append({n: m.weight.detach().clone() for n, m in module_weights(model)})
        if step % watcher.cadence == 0:
            watcher.measure(step)
    return weights


def module_weights(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("fused", [False, True])
def test_frozen_backbone_is_left_out_and_unchanged_weights_are_not_measured_again(
    writer, tmp_path, read_values, fused
):
    torch.manual_seed(4)
    model = FrozenBackbone()
    # fused AdamW does not bump param._version: "unchanged" must be found all the same.
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2, fused=fused
    )
    watcher = started(deepscope.Spectra(every=2), model, writer)
    weights = _train_and_measure(model, optimizer, watcher, 5)
    writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    assert sorted(found) == ["spectra/head", "spectra/unused"]  # the backbone is frozen
    assert watcher.stats.frozen == ["spectra/backbone.0", "spectra/backbone.2"]
    head = found["spectra/head"]
    assert [s for s, _, _ in head] == [0, 2, 4] and not any(step.unchanged for *_, step in head)
    for global_step, _, step in head:
        np.testing.assert_allclose(
            arrays.decode_array(step.singular_values),
            reference_sv(weights[global_step]["head"].numpy(), (1, 4, 12)),
            rtol=1e-5,
            atol=1e-6,
        )
    unused = found["spectra/unused"]
    assert [s for s, _, _ in unused] == [0, 2, 4]
    assert not unused[0][2].unchanged and unused[0][2].HasField("singular_values")
    for _, _, step in unused[1:]:
        assert step.unchanged and step.unchanged_since_step == 0
        assert not step.HasField("singular_values")  # a small step: nothing recomputed
    assert watcher.stats.spectra == 4 and watcher.stats.unchanged == 2


def test_include_frozen_measures_the_backbone_once_then_unchanged(writer, tmp_path, read_values):
    model = FrozenBackbone()
    optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)
    watcher = started(deepscope.Spectra(every=1, include_frozen=True), model, writer)
    _train_and_measure(model, optimizer, watcher, 3)
    writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    assert watcher.stats.frozen == []
    backbone = found["spectra/backbone.2"]
    assert [(s, step.unchanged, step.unchanged_since_step) for s, _, step in backbone] == [
        (0, False, 0),
        (1, True, 0),
        (2, True, 0),
    ]


def test_a_write_through_param_data_counts_as_a_change(writer, tmp_path, read_values):
    model = torch.nn.Linear(6, 4)
    watcher = started(deepscope.Spectra(every=1), model, writer)
    watcher.measure(0)
    version = model.weight._version
    model.weight.data[1, 2] += 0.5  # no _version bump: only the checksum sees it
    assert model.weight._version == version
    watcher.measure(1)
    watcher.measure(2)
    writer.flush()
    ((_, _, first), (_, _, second), (_, _, third)) = spectra_by_tag(read_values, tmp_path)[
        "spectra/model"
    ]
    assert not first.unchanged and not second.unchanged
    np.testing.assert_allclose(
        arrays.decode_array(second.singular_values),
        reference_sv(model.weight.detach().numpy(), (1, 4, 6)),
        rtol=1e-5,
        atol=1e-6,
    )
    assert third.unchanged and third.unchanged_since_step == 1


class Sizes(torch.nn.Module):
    """Four layers of different SVD costs (groups * rows * cols * min(rows, cols))."""

    def __init__(self):
        super().__init__()
        self.big = torch.nn.Linear(64, 64)  # 262,144
        self.mid = torch.nn.Linear(32, 32)  # 32,768
        self.embed = torch.nn.Embedding(100, 8)  # 6,400
        self.small = torch.nn.Linear(16, 16)  # 4,096

    def forward(self, tokens):
        h = self.embed(tokens).mean(dim=1)  # (N, 8)
        h = torch.nn.functional.pad(h, (0, 56))
        h = self.big(h)[:, :32]
        return self.small(self.mid(h)[:, :16])


UNIT_SECONDS = 1e-5  # the fake clock: each SVD costs its units times this


class FakeCost:
    """A clock that advances only by the cost of the SVDs measured (deterministic budgets)."""

    def __init__(self, monkeypatch):
        from deepscope.analysis import spectrum as spectrum_math

        self.now = 0.0
        self.calls: list[list[tuple]] = []
        self.threads: list[int] = []
        real = spectrum_math.layer_spectra

        def layer_spectra(layers, **kwargs):
            shapes = [spectrum_math.matrix_layout(w.weight.shape).matrix_shape for w in layers]
            self.calls.append(shapes)
            self.threads.append(torch.get_num_threads())
            self.now += sum(g * r * c * min(r, c) for g, r, c in shapes) * UNIT_SECONDS
            return real(layers, **kwargs)

        monkeypatch.setattr(spectrum_math, "layer_spectra", layer_spectra)

    def __call__(self) -> float:
        return self.now


def _monitor_run(model, watcher, steps):
    """Train under a Monitor that runs only `watcher`; returns its spectra tags by step."""
    from deepscope.writer.watch import Monitor

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    tokens = torch.randint(0, 100, (8, 3))
    with Monitor(model, optimizer, watcher.writer, [watcher]) as monitor:
        for _ in range(steps):
            optimizer.zero_grad()
            model(tokens).square().mean().backward()
            optimizer.step()
    return monitor


def test_a_time_budget_measures_largest_first_and_carries_the_rest_over(
    writer, tmp_path, read_values, monkeypatch
):
    torch.manual_seed(6)
    model = Sizes()
    watcher = started(deepscope.Spectra(every=10, time_budget=1.0), model, writer)
    cost = FakeCost(monkeypatch)
    watcher._clock = cost
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitor = _monitor_run(model, watcher, 12)
    # step 0: big (2.6 s: alone over the budget); step 1: mid (0.33 s) + embed + small fit.
    found = spectra_by_tag(read_values, tmp_path)
    logged = {tag: [s for s, _, _ in events] for tag, events in found.items()}
    assert logged == {
        "spectra/big": [0, 10],
        "spectra/mid": [1, 11],
        "spectra/embed": [1, 11],
        "spectra/small": [1, 11],
    }
    assert cost.calls[0] == [(1, 64, 64)]  # largest first
    assert watcher.stats.deferred == 6  # 3 layers carried over, at steps 0 and 10
    assert watcher.stats.over_budget == 2 and watcher.stats.late_periods == 0
    assert watcher.stats.pending == [] and watcher.every == 10
    assert monitor.stats.measurer_runs["spectra"] == 4  # steps 0, 1, 10, 11
    deferred = [str(w.message) for w in caught if "time budget" in str(w.message)]
    assert len(deferred) == 1 and "3 layer(s)" in deferred[0] and "spectra/mid" in deferred[0]


def test_with_a_tiny_budget_every_layer_is_still_measured_in_turn(
    writer, tmp_path, read_values, monkeypatch
):
    torch.manual_seed(7)
    model = Sizes()
    watcher = started(deepscope.Spectra(every=2, time_budget=1e-3), model, writer)
    watcher._clock = FakeCost(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _monitor_run(model, watcher, 12)
    found = spectra_by_tag(read_values, tmp_path)
    by_step = {s: tag for tag, events in found.items() for s, _, _ in events}
    assert sorted(by_step) == list(range(12))  # one layer per step, every step
    order = [by_step[s] for s in range(12)]
    # Largest first, then the layers left over from the last period before the others.
    cycle = ["spectra/big", "spectra/mid", "spectra/embed", "spectra/small"]
    assert order == cycle * 3
    assert watcher.stats.late_periods == 5  # steps 2, 4, ..., 10 found layers pending


def test_no_budget_measures_everything_at_once(writer, tmp_path, read_values, monkeypatch):
    model = Sizes()
    watcher = started(deepscope.Spectra(every=1, time_budget=None), model, writer)
    cost = FakeCost(monkeypatch)
    watcher._clock = cost
    watcher.measure(0)
    assert sorted(s for call in cost.calls for s in call) == sorted(
        [(1, 64, 64), (1, 32, 32), (1, 100, 8), (1, 16, 16)]
    )
    assert watcher.stats.pending == [] and watcher.stats.deferred == 0


@pytest.mark.parametrize(
    "cores, load, configured, want",
    # torch runs 2 threads: a load of 3.2 is 1.2 runnable tasks of other processes.
    [(2, 0.0, None, 2), (2, 3.2, None, 1), (4, 3.2, None, 2), (2, 50.0, None, 1), (2, 50, 2, 2)],
)
def test_threads_follow_the_load_and_are_restored(
    writer, monkeypatch, cores, load, configured, want
):
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        watcher = started(
            deepscope.Spectra(every=1, threads=configured), torch.nn.Linear(8, 8), writer
        )
        cost = FakeCost(monkeypatch)
        watcher.measure(0)
        assert cost.threads == [want] and watcher.stats.threads == want
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"time_budget": 0}, "time_budget"),
        ({"time_budget": "1"}, "time_budget"),
        ({"threads": 0}, "threads"),
        ({"threads": 1.5}, "threads"),
    ],
)
def test_bad_budget_or_threads_raise(writer, kwargs, words):
    with pytest.raises(ValueError, match=words):
        started(deepscope.Spectra(**kwargs), Net(), writer)


def test_a_failing_measurement_does_not_retry_its_layers_at_every_step(writer, monkeypatch):
    model = Sizes()
    watcher = started(deepscope.Spectra(every=10, time_budget=1.0), model, writer)
    watcher._clock = FakeCost(monkeypatch)
    calls = []

    def fails(tag, spectrum, global_step=None):
        calls.append(tag)
        raise OSError("disk full")

    monkeypatch.setattr(writer, "_add_spectrum", fails)
    with pytest.raises(OSError):
        watcher.measure(0)
    assert watcher.every == 10 and watcher.stats.pending == []  # back to the cadence
    assert calls == ["spectra/big"]


def test_watch_forwards_spectra_options(writer, tmp_path, read_values):
    model = FrozenBackbone()
    optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)
    options = {"include_frozen": True, "time_budget": None, "threads": 1}
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    with deepscope.watch(
        model, optimizer, writer, spectra_every=2, spectra_options=options
    ) as monitor:
        for _ in range(3):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    watcher = monitor.measurers["spectra"]
    assert watcher.include_frozen and watcher.time_budget is None and watcher.stats.threads == 1
    found = spectra_by_tag(read_values, tmp_path)
    assert [(s, step.unchanged) for s, _, step in found["spectra/backbone.0"]] == [
        (0, False),
        (2, True),
    ]
    assert [(s, step.unchanged) for s, _, step in found["spectra/head"]] == [(0, False), (2, False)]


def test_the_older_spelling_is_a_started_spectra(writer, tmp_path, read_values):
    model = Net()
    watcher = SpectraWatcher(model, writer, every=3, time_budget=None)
    assert isinstance(watcher, deepscope.Spectra) and watcher.model is model
    assert watcher.every == 3 and watcher.writer is writer
    watcher.measure(0)
    writer.flush()
    tags = {v.tag for v in read_values(tmp_path) if v.tag.startswith("spectra/")}
    assert tags == {tag for tag, _ in watcher.layers()} and tags


def test_a_big_matrix_over_the_budget_is_logged_as_its_norm_marked_so(
    writer, tmp_path, read_values
):
    torch.manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Linear(300, 200), torch.nn.Linear(200, 8))
    watcher = started(deepscope.Spectra(every=10, time_budget=1e-9), model, writer)
    with pytest.warns(RuntimeWarning, match="carried over"):
        watcher.measure(0)  # one layer per call: the other waits for the next step
    watcher.measure(1)
    writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    big = model[0].weight.detach().double().numpy()
    sigma = np.linalg.svd(big, compute_uv=False)
    ((_, _, step),) = found["spectra/0"]
    # 200 x 300: far over a 1 ns budget, so the norm alone (power iteration) and the exact
    # Frobenius norm; the 8 x 200 layer is small enough to be always full.
    assert step.coverage == pb.SPECTRUM_COVERAGE_NORM_ONLY
    values = arrays.decode_array(step.singular_values)
    assert values.shape == (1, 1)
    assert values[0, 0] == pytest.approx(sigma[0], rel=2e-4)  # the iteration's tolerance, 1e-4
    assert step.metrics.frobenius_norm == pytest.approx(np.linalg.norm(big), rel=1e-6)
    assert step.metrics.stable_rank == pytest.approx(np.sum(sigma**2) / sigma[0] ** 2, rel=5e-4)
    assert math.isnan(step.metrics.effective_rank) and math.isnan(step.metrics.alpha)
    ((_, _, small),) = found["spectra/1"]
    assert small.coverage == pb.SPECTRUM_COVERAGE_FULL
    assert watcher.stats.partial == 1


class Twins(torch.nn.Module):
    """Three equal-shaped layers (one batched SVD chunk) and a smaller one."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(32, 32)  # 32,768 units each: 0.33 s on the fake clock
        self.b = torch.nn.Linear(32, 32)
        self.c = torch.nn.Linear(32, 32)
        self.small = torch.nn.Linear(16, 16)  # 4,096 units

    def forward(self, tokens):
        return self.small(self.c(self.b(self.a(tokens)))[:, :16])


def test_the_first_layer_taken_for_the_estimate_does_not_defer_its_twins(
    writer, tmp_path, read_values, monkeypatch
):
    """With no estimate yet one layer is measured alone to get it; its equal-shaped
    companions are then weighed against the budget like any layer, not put off."""
    torch.manual_seed(8)
    model = Twins()
    watcher = started(deepscope.Spectra(every=10, time_budget=2.0), model, writer)
    cost = FakeCost(monkeypatch)
    watcher._clock = cost
    watcher.measure(0)  # 3 x 0.33 s + 0.04 s: fits 2 s
    watcher.writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    assert {tag: [s for s, _, _ in events] for tag, events in found.items()} == {
        f"spectra/{name}": [0] for name in ("a", "b", "c", "small")
    }
    assert watcher.stats.deferred == 0 and watcher.stats.pending == []
    assert cost.calls[0] == [(1, 32, 32)]  # the estimate's layer alone, then the rest


def test_the_writers_first_write_does_not_inflate_the_estimate(
    writer, tmp_path, read_values, monkeypatch
):
    """The first event a writer writes costs it far more than the next (its file, its
    imports: 0.3 s here); that is not a cost of the layer's size."""
    torch.manual_seed(9)
    model = Twins()
    watcher = started(deepscope.Spectra(every=10, time_budget=2.0), model, writer)
    cost = FakeCost(monkeypatch)
    watcher._clock = cost
    write = watcher.writer._add_spectrum
    calls = []

    def slow_first_write(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            cost.now += 1.0  # a one-time cost, within the budget
        return write(*args, **kwargs)

    monkeypatch.setattr(watcher.writer, "_add_spectrum", slow_first_write)
    # a alone (0.328 s + the 1.0 s write) gives the estimate; b and c (0.656 s) still
    # fit: 1.984 s; small (0.041 s) would not (2.025 s > 2.0): it waits.
    watcher.measure(0)
    watcher.writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    # Charged to a's size, the 1.0 s would have made b and c cost 1.33 s each: neither
    # would have fitted.
    assert sorted(found) == ["spectra/a", "spectra/b", "spectra/c"]
    assert watcher.stats.deferred == 1 and watcher.stats.pending == ["spectra/small"]
    assert watcher._seconds_per_unit == pytest.approx(UNIT_SECONDS, rel=1e-6)
