"""Session fixture: a log dir with spectrum series written by real training.

Two runs (seed0, seed1) of a small CNN with a grouped convolution, trained
under `deepscope.watch(..., spectra_every=EVERY)`; around each measured step
the loop copies every weight, and `reference.json` holds their singular values
from `numpy.linalg.svd` in float64 (the independent truth the tests compare
with). seed1 also logs a tag "broken" with `add_singular_values` whose weight
is non-finite at one step (BROKEN_STEP), which must be recorded as such.

The convs' operator spectra (on the 8 x 8 input both convs see; seed0 logs
their norms, the default, seed1 their whole spectra with
`spectra_options={"operator": "full"}`) have their reference under "operators" in
`reference.json`: numpy's singular values of the explicit circular operator
matrix (`circular_operator_matrix`) of the same weight copies. seed1 also logs
OPERATOR_TAG, a conv weight's whole operator spectrum
(`add_singular_values(..., operator="full")`) at OPERATOR_STEPS.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

SPECTRA_STEPS = 36  # optimizer steps per run
EVERY = 5  # spectra_every: steps 0, 5, ..., 35
MEASURED_STEPS = list(range(0, SPECTRA_STEPS, EVERY))
BROKEN_TAG = "broken"
BROKEN_STEP = 10
RUNS = ("seed0", "seed1")
CONV_INPUT = (8, 8)  # the spatial size conv1 and conv2 see
OPERATOR_TAG = "operator_full"
OPERATOR_STEPS = (0, 15)
OPERATOR_SHAPE = (6, 3, 3, 3)
OPERATOR_INPUT = (6, 6)
OPERATOR_TOP_K = 12
# module name -> (groups, weight shape)
LAYERS = {
    "conv1": (1, (8, 1, 3, 3)),
    "conv2": (2, (16, 4, 3, 3)),
    "fc1": (1, (64, 16)),
    "fc2": (1, (10, 64)),
}


def circular_operator_matrix(
    weight: np.ndarray, input_size, *, stride=1, dilation=1, groups: int = 1
) -> np.ndarray:
    """The linear map of a circular convolution as an explicit matrix (float64).

    Built entry by entry from the definition, independently of any FFT:
    y[o, m] = sum over the group's input channels i and kernel taps k of
    W[o, i, k] * x[i, (stride*m + dilation*k) mod n], per spatial dimension (torch's
    cross-correlation; a padding only shifts the input circularly, an orthogonal map,
    which leaves the singular values as they are). Rows: (o, m) with m over the
    n/stride output positions; columns: (i, position) over c_in x n.
    """
    w = np.asarray(weight, dtype=np.float64)
    dims = w.ndim - 2
    size = (input_size,) * dims if isinstance(input_size, int) else tuple(input_size)
    strides = (stride,) * dims if isinstance(stride, int) else tuple(stride)
    dilations = (dilation,) * dims if isinstance(dilation, int) else tuple(dilation)
    out, fan_in = w.shape[:2]
    c_in = fan_in * groups
    out_size = tuple(n // s for n, s in zip(size, strides))
    per_group = out // groups
    matrix = np.zeros((out * math.prod(out_size), c_in * math.prod(size)))
    outputs = np.indices(out_size).reshape(dims, -1)  # every output position m, [dims, P]
    positions = np.arange(math.prod(out_size))
    for k in itertools.product(*(range(n) for n in w.shape[2:])):
        # The input position each output position reads through tap k, flattened.
        where = tuple(
            (s * outputs[j] + d * k[j]) % size[j]
            for j, (s, d) in enumerate(zip(strides, dilations))
        )
        read = np.ravel_multi_index(where, size)
        for o in range(out):
            g = o // per_group
            rows = o * positions.size + positions
            for i in range(fan_in):
                cols = (g * fan_in + i) * math.prod(size) + read
                np.add.at(matrix, (rows, cols), w[(o, i, *k)])
    return matrix


def operator_singular_values(weight, input_size, **kwargs) -> np.ndarray:
    """numpy's singular values of `circular_operator_matrix`, descending (float64)."""
    return np.linalg.svd(circular_operator_matrix(weight, input_size, **kwargs), compute_uv=False)


def spectrum_tag(module: str) -> str:
    return f"spectra/{module}"


def build_model():
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(8, 16, 3, groups=2)
            self.fc1 = torch.nn.Linear(16, 64)
            self.fc2 = torch.nn.Linear(64, 10)

        def forward(self, x):
            h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            return self.fc2(torch.relu(self.fc1(h.mean(dim=(2, 3)))))

    return Net()


def reference_singular_values(weight: np.ndarray, groups: int) -> list[list[float]]:
    """numpy's singular values of each group's (out/groups, in/groups · k…) matrix, descending."""
    w = np.asarray(weight, dtype=np.float64)
    out = w.shape[0]
    matrices = w.reshape(groups, out // groups, -1)
    return [np.linalg.svd(m, compute_uv=False).tolist() for m in matrices]


def train_spectra_run(logdir: Path, seed: int) -> dict:
    """Train under watch(spectra_every=EVERY); returns {tag: {step: [[σ...] per group]}}
    and, under "operators", {tag: {step: [the operator's σ, descending]}}."""
    import torch

    import deepscope

    torch.manual_seed(seed)
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    writer = deepscope.SummaryWriter(str(logdir))
    x_all = torch.randn(256, 1, 8, 8)
    y_all = (x_all[:, 0, :4].sum(dim=(1, 2)) > 0).long() + 2 * (x_all[:, 0, 4:].mean((1, 2)) > 0)
    reference: dict = {spectrum_tag(name): {} for name in LAYERS}
    operators: dict = {}
    # seed0: the convs' operator norms (the default); seed1: their whole operator spectra.
    # No time budget: the steps logged must not depend on how busy the machine is (the first
    # SVD call of a process took 1.7 s under load, and the budget then defers the rest).
    options: dict = {"time_budget": None}
    if seed == 1:
        options.update(operator="full", operator_top_k=OPERATOR_TOP_K)
    with deepscope.watch(
        model, optimizer, writer, every=EVERY, spectra_every=EVERY, spectra_options=options
    ):
        for step in range(SPECTRA_STEPS):
            idx = torch.randint(0, 256, (32,))
            loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()  # the monitor measures in the optimizer's post-step hook
            if step % EVERY == 0:
                for name, (groups, _) in LAYERS.items():
                    weight = getattr(model, name).weight.detach().numpy()
                    reference[spectrum_tag(name)][str(step)] = reference_singular_values(
                        weight, groups
                    )
                    if name.startswith("conv"):
                        operators.setdefault(spectrum_tag(name), {})[str(step)] = (
                            operator_singular_values(weight, CONV_INPUT, groups=groups).tolist()
                        )
    if seed == 1:
        rng = np.random.default_rng(seed)
        reference[BROKEN_TAG] = {}
        for step in (0, BROKEN_STEP, 20):
            weight = rng.standard_normal((12, 20)).astype(np.float32)
            if step == BROKEN_STEP:
                weight[3, 4] = np.nan
                reference[BROKEN_TAG][str(step)] = None
            else:
                reference[BROKEN_TAG][str(step)] = reference_singular_values(weight, 1)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                writer.add_singular_values(BROKEN_TAG, torch.from_numpy(weight), global_step=step)
            # The non-finite weight is recorded with a warning, not raised.
            assert bool(caught) == (step == BROKEN_STEP), [str(w.message) for w in caught]
        operators[OPERATOR_TAG] = {}
        for step in OPERATOR_STEPS:
            weight = rng.standard_normal(OPERATOR_SHAPE).astype(np.float32)
            writer.add_singular_values(
                OPERATOR_TAG,
                torch.from_numpy(weight),
                global_step=step,
                input_size=OPERATOR_INPUT,
                operator="full",
                operator_top_k=OPERATOR_TOP_K,
            )
            operators[OPERATOR_TAG][str(step)] = operator_singular_values(
                weight, OPERATOR_INPUT
            ).tolist()
    writer.close()
    reference["operators"] = operators
    return reference


@pytest.fixture(scope="session")
def spectrum_logdir(tmp_path_factory) -> Path:
    """Runs seed0 and seed1; reference.json: run → tag → step → singular values per group."""
    logdir = tmp_path_factory.mktemp("spectra")
    references = {run: train_spectra_run(logdir / run, seed) for seed, run in enumerate(RUNS)}
    (logdir / "reference.json").write_text(json.dumps(references))
    return logdir
