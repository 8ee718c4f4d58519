"""watch()'s spectra measurer and conv operators: every conv's operator norm by default,
the whole operator spectrum on request within the time budget, the input size from a
one-shot forward pre-hook.

Numbers are checked against numpy's SVD of the explicit circular operator matrix
(`tests.spectrum_data.circular_operator_matrix`) of weight copies the test takes itself
right after each optimizer step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.watch_spectra import Spectra
from tests.spectrum_data import operator_singular_values

EPS32 = float(np.finfo(np.float32).eps)


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 4, 3, padding=1)  # sees 6 x 6
        self.conv2 = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)  # sees 6 x 6
        self.conv3 = torch.nn.Conv1d(6, 3, 2, dilation=2)  # sees 9 (the rows flattened)
        self.up = torch.nn.ConvTranspose2d(3, 2, 2)  # no operator spectrum
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))  # (N, 6, 3, 3)
        h = torch.relu(self.conv3(h.flatten(2)))  # (N, 3, 7)
        u = self.up(h[:, :, :4].reshape(-1, 3, 2, 2))
        return self.head(h.mean(2)) + u.mean()


SIZES = {"conv1": (6, 6), "conv2": (6, 6), "conv3": (9,)}
OURS = "record_input_size"


def our_hooks(module: torch.nn.Module) -> int:
    return sum(h.__name__ == OURS for h in module._forward_pre_hooks.values())


def spectra_by_tag(read_values, logdir) -> dict[str, list[tuple[int, pb.SpectrumStep]]]:
    found: dict[str, list] = {}
    for value in read_values(logdir):
        if value.tag.startswith("spectra/"):
            step = pb.SpectrumStep.FromString(value.value.tensor.string_val[0])
            found.setdefault(value.tag, []).append((value.step, step))
    return found


def reference(module: torch.nn.Module, weight: np.ndarray) -> np.ndarray:
    return operator_singular_values(
        weight,
        SIZES[module_name(module)],
        stride=module.stride,
        dilation=module.dilation,
        groups=module.groups,
    )


_NAMES: dict[int, str] = {}


def module_name(module) -> str:
    return _NAMES[id(module)]


def train(model, writer, steps: int, every: int, **options):
    """Train under a Monitor (what watch() builds) running the spectra measurer alone."""
    from deepscope.writer.watch import Monitor

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(4, 2, 6, 6)
    copies: dict[int, dict[str, np.ndarray]] = {}
    watcher = Spectra(every=every, **options)
    with Monitor(model, optimizer, writer, [watcher]) as monitor:
        for step in range(steps):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
            copies[step] = {n: getattr(model, n).weight.detach().numpy().copy() for n in SIZES}
    return monitor, copies


@pytest.fixture
def writer(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    yield writer
    writer.close()


def test_every_conv_gets_its_operator_norm_by_default_and_the_hooks_go(
    writer, tmp_path, read_values
):
    torch.manual_seed(0)
    model = CNN()
    _NAMES.update({id(getattr(model, n)): n for n in SIZES})
    monitor, copies = train(model, writer, steps=5, every=2)
    watcher = monitor.measurers["spectra"]
    assert monitor.stats.errors == []
    # The pre-hooks fired at the first forward pass and removed themselves.
    assert all(our_hooks(m) == 0 for m in model.modules())
    assert watcher._hooks == {}
    found = spectra_by_tag(read_values, tmp_path)
    assert sorted(found) == [
        "spectra/conv1",
        "spectra/conv2",
        "spectra/conv3",
        "spectra/head",
        "spectra/up",
    ]
    for tag in ("spectra/head", "spectra/up"):  # a Linear, a transposed conv: no operator
        assert all(not s.HasField("operator") for _, s in found[tag])
    for name in SIZES:
        steps = found[f"spectra/{name}"]
        assert [g for g, _ in steps] == [0, 2, 4]
        for global_step, step in steps:
            op = step.operator
            want = reference(getattr(model, name), copies[global_step][name])
            assert op.error == "" and op.norm_only and op.padding_rule == "circular"
            assert tuple(op.input_size) == SIZES[name]
            assert list(op.stride) == list(getattr(model, name).stride)
            assert op.operator_norm == pytest.approx(float(want[0]), rel=64 * EPS32)
            assert op.count == want.size
            assert op.frobenius_norm == pytest.approx(float(np.linalg.norm(want)), rel=64 * EPS32)
    assert watcher.stats.operators == 9 and watcher.stats.operator_full == 0


def test_full_operator_spectra_on_request(writer, tmp_path, read_values):
    torch.manual_seed(1)
    model = CNN()
    _NAMES.update({id(getattr(model, n)): n for n in SIZES})
    monitor, copies = train(model, writer, steps=2, every=1, operator="full", operator_top_k=5)
    watcher = monitor.measurers["spectra"]
    assert watcher.stats.operator_full == 6 and watcher.stats.operator_norm_only == 0
    found = spectra_by_tag(read_values, tmp_path)
    for name in SIZES:
        for global_step, step in found[f"spectra/{name}"]:
            op = step.operator
            want = reference(getattr(model, name), copies[global_step][name])
            assert not op.norm_only and op.count == want.size
            top = arrays.decode_array(op.top_values)
            np.testing.assert_allclose(top, want[:5], rtol=0, atol=64 * EPS32 * want[0])
            quantiles = arrays.decode_array(op.quantiles)
            np.testing.assert_allclose(
                quantiles,
                np.quantile(want, list(op.quantile_levels)),
                rtol=0,
                atol=64 * EPS32 * want[0],
            )


def test_full_spectra_that_do_not_fit_the_budget_fall_back_to_the_norm(
    writer, tmp_path, read_values
):
    torch.manual_seed(2)
    model = CNN()
    x = torch.randn(4, 2, 6, 6)
    watcher = Spectra(every=1, operator="full", time_budget=1.0)
    watcher.start(model, None, writer)
    model(x)
    now = [0.0]
    watcher._clock = lambda: now[0]
    watcher._operator_seconds_per_unit = 1.0  # every whole spectrum costs far over 1 s
    watcher.measure(0)
    assert watcher.stats.operator_full == 0 and watcher.stats.operator_norm_only == 3
    writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    for name in SIZES:
        ((_, step),) = found[f"spectra/{name}"]
        assert step.operator.norm_only and step.operator.operator_norm > 0
    watcher._operator_seconds_per_unit = 1e-12  # cheap now: they fit
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # changed weights (unchanged ones are not measured again)
    watcher.measure(1)
    assert watcher.stats.operator_full == 3


def test_a_conv_measured_before_any_forward_pass_has_no_operator_yet(writer, tmp_path, read_values):
    model = CNN()
    watcher = Spectra(every=1)
    watcher.start(model, None, writer)
    watcher.measure(0)
    assert watcher.stats.operator_waiting == 3 and watcher.stats.operators == 0
    model(torch.randn(1, 2, 6, 6))
    watcher.measure(1)
    assert watcher.stats.operators == 3
    writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    assert [s.HasField("operator") for _, s in found["spectra/conv1"]] == [False, True]


def test_close_removes_hooks_that_never_fired():
    model = CNN()
    watcher = Spectra(every=1)
    watcher.start(model, None, deepscope.SummaryWriter.__new__(deepscope.SummaryWriter))
    assert [our_hooks(getattr(model, n)) for n in SIZES] == [1, 1, 1]
    assert our_hooks(model.up) == 0 and our_hooks(model.head) == 0
    watcher.close()
    assert all(our_hooks(m) == 0 for m in model.modules())


def test_operator_none_hooks_nothing_and_logs_no_operator(writer, tmp_path, read_values):
    torch.manual_seed(3)
    model = CNN()
    watcher = Spectra(every=1, operator=None)
    watcher.start(model, None, writer)
    assert all(our_hooks(m) == 0 for m in model.modules())
    model(torch.randn(1, 2, 6, 6))
    watcher.measure(0)
    writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    assert all(not s.HasField("operator") for steps in found.values() for _, s in steps)


def test_a_conv_added_later_is_hooked_at_the_next_cadence_step(writer):
    model = CNN()
    watcher = Spectra(every=1)
    watcher.start(model, None, writer)
    model.extra = torch.nn.Conv2d(2, 2, 3)
    watcher.measure(0)
    assert our_hooks(model.extra) == 1
    model.extra(torch.randn(1, 2, 5, 7))
    assert watcher.input_sizes[id(model.extra)] == (5, 7) and our_hooks(model.extra) == 0


def test_a_non_finite_conv_is_recorded_and_training_goes_on(writer, tmp_path, read_values):
    model = CNN()
    watcher = Spectra(every=1)
    watcher.start(model, None, writer)
    model(torch.randn(1, 2, 6, 6))
    with torch.no_grad():
        model.conv1.weight[0, 0, 0, 0] = math.nan
    with pytest.warns(RuntimeWarning):
        watcher.measure(0)
    writer.flush()
    found = spectra_by_tag(read_values, tmp_path)
    ((_, step),) = found["spectra/conv1"]
    assert step.error.startswith("non-finite weight")
    assert step.operator.error.startswith("non-finite weight")
    ((_, good),) = found["spectra/conv2"]
    assert good.operator.error == "" and good.operator.operator_norm > 0
    assert watcher.stats.operator_failed == 1
    assert any("operator spectrum of spectra/conv1" in e for e in watcher.stats.errors)


def test_a_hook_never_raises_into_the_forward_pass(writer):
    conv = torch.nn.Conv2d(2, 2, 3, padding=1)
    watcher = Spectra(every=1)
    watcher.start(conv, None, writer)
    hook = next(iter(conv._forward_pre_hooks.values()))
    hook(conv, (torch.zeros(3),))  # a shape no Conv2d input has: not recorded, no error
    assert id(conv) not in watcher.input_sizes and our_hooks(conv) == 1
    conv(torch.randn(1, 2, 4, 4))
    assert watcher.input_sizes[id(conv)] == (4, 4) and our_hooks(conv) == 0


@pytest.mark.parametrize(
    "kwargs,words",
    [({"operator": "all"}, "operator must be 'norm'"), ({"operator_top_k": 0}, "operator_top_k")],
)
def test_bad_operator_options_raise(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Spectra(**kwargs)


class WideCNN(torch.nn.Module):
    """A conv wide enough for the Lanczos path of the operator norm (not dense)."""

    def __init__(self):
        super().__init__()
        self.wide = torch.nn.Conv2d(80, 96, 3, padding=1)
        self.head = torch.nn.Linear(96, 2)

    def forward(self, x):
        return self.head(torch.relu(self.wide(x)).mean((2, 3)))


def numpy_operator_norm(weight: np.ndarray, n: int) -> float:
    """σ_max of the stride-1 circular operator on n x n: the largest singular value of the
    kernel's 2-D DFT matrices (numpy FFT and SVD, float64)."""
    spectrum = np.fft.fft2(weight.astype(np.float64), s=(n, n), axes=(2, 3))
    matrices = np.moveaxis(spectrum, (2, 3), (0, 1))  # [n, n, out, in]
    return float(np.linalg.svd(matrices, compute_uv=False).max())


def test_later_operator_norms_start_warm_and_stay_right(writer, tmp_path, read_values, monkeypatch):
    """Each measurement after the first starts from the last one's Lanczos vectors: fewer
    steps, the same norms (against numpy on the weights right after each step)."""
    from deepscope.analysis import conv_operator

    steps_per_call: list[int] = []
    apply = conv_operator._TapOperator.apply
    lanczos = conv_operator._lanczos_top

    def counted_lanczos(op, rtol, seed=0, start=None):
        calls = [0]

        def counted(q):
            calls[0] += 1
            return apply(op, q)

        op.apply = counted
        result = lanczos(op, rtol, seed, start)
        steps_per_call.append(calls[0])
        return result

    monkeypatch.setattr(conv_operator, "_lanczos_top", counted_lanczos)
    torch.manual_seed(0)
    model = WideCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(4, 80, 8, 8)
    copies = {}
    from deepscope.writer.watch import Monitor

    with Monitor(model, optimizer, writer, [Spectra(every=2)]) as monitor:
        for step in range(5):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
            copies[step] = model.wide.weight.detach().numpy().copy()
    assert monitor.stats.errors == []
    found = spectra_by_tag(read_values, tmp_path)["spectra/wide"]
    assert [g for g, _ in found] == [0, 2, 4]
    for global_step, step in found:
        want = numpy_operator_norm(copies[global_step], 8)
        rtol = conv_operator.NORM_RTOL / 2 + 64 * EPS32
        assert want * (1 - rtol) <= step.operator.operator_norm <= want * (1 + 64 * EPS32)
    assert len(steps_per_call) == 3
    assert all(later < steps_per_call[0] for later in steps_per_call[1:]), steps_per_call
