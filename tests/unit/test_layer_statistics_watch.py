"""watch()'s layer-statistics measurers: LayerStats (activations) and ParameterNorms.

Every logged number is checked against numpy on values the test records itself
(its own forward hooks on the same modules, its own copies of gradients and
weights), never against the measurer's output.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.layer_statistics import LayerStatisticsSummaries
from deepscope.writer.watch_layer_statistics import LayerStats, ParameterNorms

if hasattr(deepscope.SummaryWriter, "add_layer_statistics"):
    Writer = deepscope.SummaryWriter
else:

    class Writer(LayerStatisticsSummaries, deepscope.SummaryWriter):
        """Until the mixin is among SummaryWriter's bases."""


F32 = np.finfo(np.float32).eps
ACTIVATIONS = "layer_statistics/activations"
PARAMETERS = "layer_statistics/parameters"


# --------------------------------------------------------------------------- reading back


def steps_of(read_values, logdir, tag: str) -> dict[int, pb.LayerStatisticsStep]:
    return {
        v.step: pb.LayerStatisticsStep.FromString(v.value.tensor.string_val[0])
        for v in read_values(logdir, tag)
    }


def rows_of(step: pb.LayerStatisticsStep) -> dict[str, dict[str, float]]:
    """Row name → {statistic: value, "count", "channels", "dead_channels", "eigenvalues"}."""
    values = arrays.decode_array(step.activations)
    rows = len(step.layers)

    def ints(field: str) -> np.ndarray:  # an array the writer may leave out when all 0
        if not step.HasField(field) or not getattr(step, field).dtype:
            return np.zeros(rows, dtype=np.int64)
        return arrays.decode_array(getattr(step, field))

    counts, channels, dead = ints("counts"), ints("channels"), ints("dead_channels")
    eig_counts, samples = ints("eigenvalue_counts"), ints("covariance_samples")
    eig = (
        arrays.decode_array(step.eigenvalues) if eig_counts.any() else np.zeros(0, dtype=np.float32)
    )
    out, offset = {}, 0
    for i, name in enumerate(step.layers):
        row = dict(zip(step.activation_statistics, values[i].tolist()))
        row.update(
            count=int(counts[i]),
            channels=int(channels[i]),
            dead_channels=int(dead[i]),
            type=step.layer_types[i],
            samples=int(samples[i]),
        )
        n = int(eig_counts[i])
        row["eigenvalues"] = eig[offset : offset + n] if n else None
        offset += n
        out[name] = row
    return out


def parameter_rows(step: pb.LayerStatisticsStep) -> dict[str, dict[str, float]]:
    values = arrays.decode_array(step.parameter_values)
    return {
        name: dict(zip(step.parameter_statistics, values[i].tolist()))
        for i, name in enumerate(step.parameters)
    }


# --------------------------------------------------------------------------- references


def reference(x: np.ndarray, channel_dim: int | None, bounds=None, tolerance=0.01) -> dict:
    """The statistics of one activation by their definitions, in float64 numpy."""
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    values = x[finite]
    n = values.size
    out = {
        "mean": values.mean(),
        "std": values.std(),
        "rms": math.sqrt((values**2).mean()),
        "max_abs": np.abs(values).max(),
        "zero_fraction": np.count_nonzero(values == 0) / n,
        "non_finite_fraction": 1 - n / x.size,
        "count": x.size,
    }
    if bounds is None:
        out["saturated_fraction"] = math.nan
    else:
        lo, hi = bounds
        width = tolerance * (hi - lo)
        out["saturated_fraction"] = (
            np.count_nonzero((values <= lo + width) | (values >= hi - width)) / n
        )
    moved = np.moveaxis(np.where(finite, x, 0.0), channel_dim, -1) if channel_dim is not None else x
    per_channel = (
        moved.reshape(-1, moved.shape[-1]) if channel_dim is not None else moved.reshape(-1, 1)
    )
    dead = int(np.count_nonzero(~np.any(per_channel != 0, axis=0)))
    out["channels"] = per_channel.shape[1]
    out["dead_channels"] = dead
    out["dead_fraction"] = dead / per_channel.shape[1]
    return out


def covariance_reference(x: np.ndarray, channel_dim: int, threshold: float = 0.99) -> dict:
    """Eigenvalues of the population covariance of the positions, and the three metrics."""
    rows = np.moveaxis(np.asarray(x, dtype=np.float64), channel_dim, -1).reshape(
        -1, x.shape[channel_dim]
    )
    cov = np.cov(rows, rowvar=False, bias=True)
    lam = np.clip(np.linalg.eigvalsh(cov)[::-1], 0, None)
    p = lam / lam.sum()
    share = np.cumsum(lam) / lam.sum()
    k = int(np.argmax(share >= threshold - 1e-12)) + 1
    nz = p[p > 0]
    return {
        "eigenvalues": lam,
        "effective_dimension": lam.sum() ** 2 / (lam**2).sum(),
        "saturation": k / lam.size,
        "effective_rank": math.exp(-(nz * np.log(nz)).sum()),
        "samples": rows.shape[0],
    }


def assert_row(row: dict, want: dict, rtol: float) -> None:
    for key in ("count", "channels", "dead_channels"):
        assert row[key] == want[key], (key, row[key], want[key])
    for key in (
        "mean",
        "std",
        "rms",
        "max_abs",
        "zero_fraction",
        "saturated_fraction",
        "non_finite_fraction",
        "dead_fraction",
    ):
        got, expected = row[key], want[key]
        if math.isnan(expected):
            assert math.isnan(got), (key, got)
            continue
        scale = max(abs(want["max_abs"]), abs(expected)) if key == "mean" else abs(expected)
        assert abs(got - expected) <= rtol * scale + 1e-30, (key, got, expected)


class Recorder:
    """The test's own forward hooks: copies of each named module's output, per forward call."""

    def __init__(self, model: torch.nn.Module, names):
        self.outputs: dict[str, list] = {name: [] for name in names}
        modules = dict(model.named_modules())
        self.handles = [modules[name].register_forward_hook(self._hook(name)) for name in names]

    def _hook(self, name):
        def hook(module, inputs, output):
            self.outputs[name].append(
                output.detach().clone() if isinstance(output, torch.Tensor) else output
            )

        return hook

    def clear(self):
        for v in self.outputs.values():
            v.clear()

    def remove(self):
        for h in self.handles:
            h.remove()


# --------------------------------------------------------------------------- models


class Planted(torch.nn.Module):
    """fc1 → tanh (saturated on purpose) → fc2 → relu (dead channels on purpose) → head.

    `poison`: `side` gets a copy of fc2's output with a NaN and an inf in it.
    """

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 8)
        self.tanh = torch.nn.Tanh()
        self.fc2 = torch.nn.Linear(8, 7)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(7, 3)
        self.side = torch.nn.Identity()  # sees a poisoned copy of fc2's output; not in the loss
        self.poison = False
        with torch.no_grad():
            self.fc1.weight.mul_(8.0)  # many tanh values beyond ±0.98
            self.fc2.bias[:3] = -100.0  # channels 0..2 of the relu: zero for every sample

    def forward(self, x):
        h = self.fc2(self.tanh(self.fc1(x)))
        if self.poison:
            bad = h.detach().clone()
            bad[0, 3] = float("nan")
            bad[1, 4] = float("inf")
            self.side(bad)
        return self.head(self.relu(h))


def _data(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _train(model, optimizer, steps, x, y, between=None):
    for k in range(steps):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if between is not None:
            between(k)


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --------------------------------------------------------------------------- hooks


def test_hooks_are_attached_only_around_measured_steps_and_removed_by_close(tmp_path):
    torch.manual_seed(0)
    model = Planted()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    post_hooks = len(optimizer._optimizer_step_post_hooks)
    x, y = _data()
    seen_in_forward = []

    # The hooks present while each step's forward runs (seen from a pre-hook of the test's own,
    # registered first and counted out).
    def look(module, args):
        seen_in_forward.append(_hook_count(model) - 1)

    own = model.register_forward_pre_hook(look)
    after_step = []
    with Writer(str(tmp_path)) as writer:
        monitor = deepscope.watch(
            model, optimizer, writer, measure=[LayerStats(every=3, covariance_every=None)]
        )
        _train(
            model, optimizer, 7, x, y, between=lambda k: after_step.append(_hook_count(model) - 1)
        )
        monitor.close()
    own.remove()
    # Steps 0, 3, 6 are measured: 6 leaf hooks + the model's forward counter during their forward.
    assert seen_in_forward == [7, 0, 0, 7, 0, 0, 7]
    # Attached after the optimizer step before a measured one, removed after the measured one.
    assert after_step == [0, 0, 7, 0, 0, 7, 0]
    assert _hook_count(model) == 0
    assert len(optimizer._optimizer_step_post_hooks) == post_hooks
    assert monitor.stats.measurers["layer_statistics"].runs == 3
    assert monitor.stats.errors == []


def test_close_between_two_steps_removes_the_armed_hooks(tmp_path):
    model = Planted()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _data()
    with Writer(str(tmp_path)) as writer:
        monitor = deepscope.watch(model, optimizer, writer, measure=[LayerStats(every=1)])
        _train(model, optimizer, 2, x, y)
        assert _hook_count(model) == 7  # armed for step 2
        monitor.close()
    assert _hook_count(model) == 0


def test_training_is_bit_for_bit_as_unwatched(tmp_path):
    """Default watch() with every layer-statistics part at every step, on a model with dropout."""

    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(6, 16),
            torch.nn.Tanh(),
            torch.nn.Dropout(0.3),
            torch.nn.Linear(16, 3),
        )
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    x, y = _data(32)
    plain, plain_opt = make()
    torch.manual_seed(1)
    _train(plain, plain_opt, 6, x, y)
    watched, watched_opt = make()
    with Writer(str(tmp_path)) as writer:
        measure = [
            deepscope.UpdateRatios(every=1),
            ParameterNorms(every=1),
            LayerStats(every=1, covariance_every=2),
            LayerStats(every=2, on=x[:8], name="probe_statistics", tag="probe/activations"),
        ]
        torch.manual_seed(1)
        with deepscope.watch(watched, watched_opt, writer, measure=measure) as monitor:
            _train(watched, watched_opt, 6, x, y)
    assert monitor.stats.errors == []
    for (name, a), b in zip(plain.named_parameters(), watched.parameters()):
        assert torch.equal(a, b), name


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("poison", [False, True], ids=["finite", "nan-and-inf"])
def test_logged_statistics_equal_numpy_on_the_recorded_activations(tmp_path, read_values, poison):
    torch.manual_seed(0)
    model = Planted()
    model.poison = poison
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _data(32)
    names = (
        ["fc1", "tanh", "fc2", "side", "relu", "head"]
        if poison
        else ["fc1", "tanh", "fc2", "relu", "head"]
    )
    recorder = Recorder(model, names)
    recorded = {}

    def keep(k):
        if k in (0, 2):
            recorded[k] = {n: v[0].numpy().copy() for n, v in recorder.outputs.items()}
        recorder.clear()

    caught = []
    with Writer(str(tmp_path)) as writer:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with deepscope.watch(
                model, optimizer, writer, measure=[LayerStats(every=2, covariance_every=2)]
            ) as monitor:
                _train(model, optimizer, 3, x, y, between=keep)
    recorder.remove()
    steps = steps_of(read_values, tmp_path, ACTIVATIONS)
    assert sorted(steps) == [0, 2]
    bounds = {"tanh": (-1.0, 1.0)}
    for k, step in steps.items():
        rows = rows_of(step)
        assert list(rows) == names  # forward order
        assert [rows[n]["type"] for n in names if n != "side"] == [
            "Linear",
            "Tanh",
            "Linear",
            "ReLU",
            "Linear",
        ]
        for name in names:
            want = reference(recorded[k][name], 1, bounds.get(name))
            assert_row(rows[name], want, rtol=64 * F32)
        # planted: saturation, dead channels
        assert rows["tanh"]["saturated_fraction"] > 0.3
        assert rows["relu"]["dead_channels"] >= 3
        # covariances (rows with non-finite values are left out of them)
        for name in names:
            act = recorded[k][name]
            keep_rows = np.isfinite(act).all(axis=1)
            want = covariance_reference(act[keep_rows], 1)
            got = rows[name]
            assert got["samples"] == want["samples"]
            lam = want["eigenvalues"]
            np.testing.assert_allclose(got["eigenvalues"], lam, rtol=1e-4, atol=1e-5 * lam[0])
            for key in ("effective_dimension", "effective_rank"):
                assert got[key] == pytest.approx(want[key], rel=1e-4), (name, key)
            assert got["saturation"] == pytest.approx(want["saturation"], abs=1 / lam.size)
    stats = monitor.measurers["layer_statistics"]
    if poison:
        assert rows_of(steps[0])["side"]["non_finite_fraction"] == pytest.approx(2 / (32 * 7))
        assert stats.non_finite == 4  # 2 in `side` at each of the two measured steps
        non_finite_warnings = [w for w in caught if "non-finite activation" in str(w.message)]
        assert len(non_finite_warnings) == 1
    else:
        assert stats.non_finite == 0
    assert monitor.stats.errors == []


def test_half_precision_outputs_equal_numpy(tmp_path, read_values):
    class Half(torch.nn.Module):
        def __init__(self, dtype):
            super().__init__()
            self.fc = torch.nn.Linear(6, 5)
            self.dtype = dtype

        def forward(self, x):
            return self.fc(x).to(self.dtype)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.f16 = Half(torch.float16)
            self.bf16 = Half(torch.bfloat16)

        def forward(self, x):
            return self.f16(x).float() + self.bf16(x).float()

    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, _ = _data(32)
    recorder = Recorder(model, ["f16", "bf16"])
    with Writer(str(tmp_path)) as writer:
        with deepscope.watch(
            model, optimizer, writer, measure=[LayerStats(every=1, layers=["f16", "bf16"])]
        ) as monitor:
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    recorder.remove()
    rows = rows_of(steps_of(read_values, tmp_path, ACTIVATIONS)[0])
    for name, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        recorded = recorder.outputs[name][0]
        assert recorded.dtype == dtype
        want = reference(recorded.float().numpy(), 1)  # widening is exact
        assert_row(rows[name], want, rtol=64 * F32)
    assert monitor.stats.errors == []


def test_evaluation_passes_between_steps_are_left_out(tmp_path, read_values):
    torch.manual_seed(0)
    model = Planted()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _data(16)
    recorder = Recorder(model, ["fc1"])

    def evaluate(k):
        with torch.no_grad():
            model(torch.randn(50, 6))  # another batch size: would show in the counts

    with Writer(str(tmp_path)) as writer:
        with deepscope.watch(
            model, optimizer, writer, measure=[LayerStats(every=2, layers=["fc1"])]
        ):
            _train(model, optimizer, 5, x, y, between=evaluate)
    recorder.remove()
    steps = steps_of(read_values, tmp_path, ACTIVATIONS)
    assert sorted(steps) == [0, 2, 4]
    for step in steps.values():
        assert rows_of(step)["fc1"]["count"] == 16 * 8


def test_gradient_accumulation_merges_the_micro_batches(tmp_path, read_values):
    torch.manual_seed(0)
    model = Planted()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _data(24)
    recorder = Recorder(model, ["tanh"])
    with Writer(str(tmp_path)) as writer:
        with deepscope.watch(model, optimizer, writer, measure=[LayerStats(every=1)]):
            optimizer.zero_grad()
            for part in range(3):
                xs, ys = x[part * 8 : (part + 1) * 8], y[part * 8 : (part + 1) * 8]
                torch.nn.functional.cross_entropy(model(xs), ys).backward()
            optimizer.step()
    recorder.remove()
    whole = np.concatenate([t.numpy() for t in recorder.outputs["tanh"]])
    rows = rows_of(steps_of(read_values, tmp_path, ACTIVATIONS)[0])
    assert_row(rows["tanh"], reference(whole, 1, (-1.0, 1.0)), rtol=64 * F32)


# --------------------------------------------------------------------------- probe


def test_on_a_probe_restores_modes_rng_and_grads_and_measures_eval_outputs(tmp_path, read_values):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 10),
        torch.nn.BatchNorm1d(10),
        torch.nn.Dropout(0.5),
        torch.nn.Sigmoid(),
        torch.nn.Linear(10, 3),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _data(16)
    probe = torch.randn(12, 6, generator=torch.Generator().manual_seed(5))
    measurer = LayerStats(every=1, on=(probe, torch.zeros(12)), covariance_every=None)
    with Writer(str(tmp_path)) as writer:
        measurer.start(model, None, writer)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        model[2].eval()  # a mixed mode, to be kept as it is
        grads = [p.grad.clone() for p in model.parameters()]
        running = model[1].running_mean.clone(), model[1].running_var.clone()
        rng = torch.get_rng_state()
        measurer.due(0)
        measurer.measure(0)
        assert torch.equal(torch.get_rng_state(), rng)
        assert [m.training for m in model] == [True, True, False, True, True]
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
        assert torch.equal(model[1].running_mean, running[0])
        assert torch.equal(model[1].running_var, running[1])
        assert _hook_count(model) == 0
        measurer.close()
    # The reference: the eval-mode outputs of the probe, by the test's own forward.
    model.eval()
    with torch.no_grad():
        outputs, h = {}, probe
        for i, module in enumerate(model):
            h = module(h)
            outputs[str(i)] = h.numpy()
    values = steps_of(read_values, tmp_path, ACTIVATIONS)
    step = values[0]
    rows = rows_of(step)
    assert list(rows) == ["0", "1", "2", "3", "4"]
    for name, out in outputs.items():
        assert_row(rows[name], reference(out, 1, (0.0, 1.0) if name == "3" else None), 64 * F32)
    info = read_values(tmp_path, ACTIVATIONS)[0].value.metadata.plugin_data.content
    assert pb.PluginData.FromString(info).layer_statistics.on == "probe"


# --------------------------------------------------------------------------- bad input


def test_a_layer_name_that_does_not_exist_lists_close_matches(tmp_path):
    model = Planted()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with Writer(str(tmp_path)) as writer:
        with pytest.raises(
            ValueError, match=r"no module named 'fc' \(did you mean 'fc[12]' or 'fc[12]'"
        ):
            deepscope.watch(model, optimizer, writer, measure=[LayerStats(layers=["fc"])])
        with pytest.raises(ValueError, match=r"'tahn' \(did you mean 'tanh'\?\)"):
            deepscope.watch(model, optimizer, writer, measure=[LayerStats(layers=["fc1", "tahn"])])
    assert _hook_count(model) == 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"on": "eval"}, "on must be 'train'"),
        ({"every": 10, "covariance_every": 15}, "must be a multiple of every"),
        ({"variance_threshold": 1.5}, "variance_threshold must be in"),
        ({"saturation_tolerance": -0.1}, "saturation_tolerance must be"),
        ({"layers": []}, "layers must be None"),
        ({"layers": ["fc1", "_orig_mod.fc1"]}, "names a module twice"),
        ({"max_samples": 1}, "max_samples"),
    ],
)
def test_bad_arguments_say_what_to_do(arguments, message):
    with pytest.raises(ValueError, match=message):
        LayerStats(**arguments)


class Mixed(torch.nn.Module):
    """Leaves with outputs that are not (all) floating-point tensors."""

    class Ids(torch.nn.Module):
        def forward(self, x):
            return x.argmax(dim=1)  # int64

    class Words(torch.nn.Module):
        def forward(self, x):
            return "words"

    class Pair(torch.nn.Module):
        def forward(self, x):
            return x * 2, x.argmax(dim=1), None

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 4)
        self.ids = self.Ids()
        self.words = self.Words()
        self.pair = self.Pair()

    def forward(self, x):
        h = self.fc(x)
        self.ids(h)
        self.words(h)
        a, _, _ = self.pair(h)
        return a


def test_outputs_that_are_not_tensors_are_skipped_and_listed_once(tmp_path, read_values):
    torch.manual_seed(0)
    model = Mixed()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, _ = _data(8)
    with Writer(str(tmp_path)) as writer:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with deepscope.watch(model, optimizer, writer, measure=[LayerStats(every=1)]) as m:
                for _ in range(3):
                    optimizer.zero_grad()
                    model(x).square().mean().backward()
                    optimizer.step()
    skipped = [w for w in caught if "not floating-point tensors" in str(w.message)]
    assert len(skipped) == 1
    stats = m.measurers["layer_statistics"]
    assert stats.skipped == {
        "ids": "int64 tensor (not floating point)",
        "words": "str",
        "pair:1": "int64 tensor (not floating point)",
    }
    for name in stats.skipped:
        assert repr(name) in str(skipped[0].message)
    steps = steps_of(read_values, tmp_path, ACTIVATIONS)
    assert sorted(steps) == [0, 1, 2]
    for step in steps.values():
        assert list(step.layers) == ["fc", "pair:0"]
    assert m.stats.errors == []


@dataclasses.dataclass
class _Out:
    hidden: torch.Tensor
    ids: torch.Tensor
    extra: dict


class DataclassOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 4)

    def forward(self, x):
        h = self.fc(x)
        return _Out(hidden=torch.tanh(h), ids=h.argmax(1), extra={"scale": h * 3})


def test_a_dataclass_output_gives_a_row_per_floating_field(tmp_path, read_values):
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("block", DataclassOut())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, _ = _data(8)
    recorded = []
    model.block.register_forward_hook(lambda m, i, o: recorded.append(o) and None)
    with Writer(str(tmp_path)) as writer:
        with deepscope.watch(
            model, optimizer, writer, measure=[LayerStats(every=1, layers=["block"])]
        ) as monitor:
            optimizer.zero_grad()
            model(x).hidden.sum().backward()
            optimizer.step()
    rows = rows_of(steps_of(read_values, tmp_path, ACTIVATIONS)[0])
    assert list(rows) == ["block:hidden", "block:extra.scale"]
    out = recorded[0]
    assert_row(rows["block:hidden"], reference(out.hidden.detach().numpy(), 1), 64 * F32)
    assert_row(
        rows["block:extra.scale"], reference(out.extra["scale"].detach().numpy(), 1), 64 * F32
    )
    assert monitor.measurers["layer_statistics"].skipped == {
        "block:ids": "int64 tensor (not floating point)"
    }


def test_a_failure_inside_a_hook_never_stops_the_forward_pass(tmp_path, monkeypatch):
    from deepscope.analysis import layer_statistics as ls

    def broken(*args, **kwargs):
        raise ArithmeticError("planted")

    monkeypatch.setattr(ls, "activation_sums", broken)
    torch.manual_seed(0)
    model = Planted()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _data()
    with Writer(str(tmp_path)) as writer:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with deepscope.watch(model, optimizer, writer, measure=[LayerStats(every=1)]) as m:
                _train(model, optimizer, 3, x, y)
    stats = m.stats.measurers["layer_statistics"]
    assert m.stats.steps_seen == 3 and stats.error_count == 3
    assert "ArithmeticError('planted')" in stats.errors[0]
    assert len([w for w in caught if "planted" in str(w.message)]) == 1
    assert _hook_count(model) == 0
