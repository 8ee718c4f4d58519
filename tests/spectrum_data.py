"""Session fixture: a log dir with spectrum series written by real training.

Two runs (seed0, seed1) of a small CNN with a grouped convolution, trained
under `deepscope.watch(..., spectra_every=EVERY)`; around each measured step
the loop copies every weight, and `reference.json` holds their singular values
from `numpy.linalg.svd` in float64 (the independent truth the tests compare
with). seed1 also logs a tag "broken" with `add_singular_values` whose weight
is non-finite at one step (BROKEN_STEP), which must be recorded as such.
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
    for o in range(out):
        g = o // per_group
        for m in itertools.product(*(range(n) for n in out_size)):
            row = o * math.prod(out_size) + int(np.ravel_multi_index(m, out_size))
            for i in range(fan_in):
                channel = g * fan_in + i
                for k in itertools.product(*(range(n) for n in w.shape[2:])):
                    position = tuple(
                        (s * mj + d * kj) % n
                        for s, mj, d, kj, n in zip(strides, m, dilations, k, size)
                    )
                    col = channel * math.prod(size) + int(np.ravel_multi_index(position, size))
                    matrix[row, col] += w[(o, i, *k)]
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
    """Train under watch(spectra_every=EVERY); returns {tag: {step: [[σ...] per group]}}."""
    import torch

    import deepscope

    torch.manual_seed(seed)
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    writer = deepscope.SummaryWriter(str(logdir))
    x_all = torch.randn(256, 1, 8, 8)
    y_all = (x_all[:, 0, :4].sum(dim=(1, 2)) > 0).long() + 2 * (x_all[:, 0, 4:].mean((1, 2)) > 0)
    reference: dict = {spectrum_tag(name): {} for name in LAYERS}
    with deepscope.watch(model, optimizer, writer, every=EVERY, spectra_every=EVERY):
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
    writer.close()
    return reference


@pytest.fixture(scope="session")
def spectrum_logdir(tmp_path_factory) -> Path:
    """Runs seed0 and seed1; reference.json: run → tag → step → singular values per group."""
    logdir = tmp_path_factory.mktemp("spectra")
    references = {run: train_spectra_run(logdir / run, seed) for seed, run in enumerate(RUNS)}
    (logdir / "reference.json").write_text(json.dumps(references))
    return logdir
