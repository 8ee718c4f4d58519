"""Jacobian-spectrum log dirs for the routes, integration and browser tests.

- `log_synthetic(logdir, run)`: steps of numpy-made spectra (tests/kind_cases/jacobian.py's
  `spectra`: numpy's SVD of seeded matrices), written with `add_jacobian_singular_values`;
  returns step → the spectra logged, the reference.
- `log_training(logdir, run)`: a small CNN with batch norm trained on random data under
  `deepscope.watch(..., measure=[JacobianSpectra(...)])`, as a user writes it.
- `DAMAGED`: name → (function tag → the `Summary` of one damaged event, what the route's
  warning says about it).
"""

from __future__ import annotations

import numpy as np
from tensorboard.compat.proto import summary_pb2

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.jacobian import JacobianSummaries, jacobian_pb
from deepscope.writer.summary import tensor_summary
from tests.kind_cases.jacobian import spectra

TAG = "jacobian"
SYNTHETIC_STEPS = (0, 10, 20)
# The first conv, the second conv and the head, as model.named_modules() names them.
TRAINING_LAYERS = ("0.0", "0.3", "1.0")


def writer(logdir) -> deepscope.SummaryWriter:
    """A deepscope.SummaryWriter with `add_jacobian_singular_values` (the lead adds the
    mixin to SummaryWriter's bases; until then, a subclass with it)."""
    if hasattr(deepscope.SummaryWriter, "add_jacobian_singular_values"):
        return deepscope.SummaryWriter(str(logdir))

    class _Writer(JacobianSummaries, deepscope.SummaryWriter):
        pass

    return _Writer(str(logdir))


def log_synthetic(logdir, run: str = "synthetic", steps=SYNTHETIC_STEPS) -> dict[int, dict]:
    """Steps of numpy-made spectra under `TAG`; step → map → the spectrum logged."""
    logged = {}
    with writer(logdir / run) as w:
        for step in steps:
            found = spectra(f"{run}/{TAG}", step)
            w.add_jacobian_singular_values(
                TAG, found, global_step=step, walltime=1000.0 + step, output="logits"
            )
            logged[step] = found
    return logged


def small_cnn():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.BatchNorm2d(4),
            torch.nn.ReLU(),
            torch.nn.Conv2d(4, 8, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
        ),
        torch.nn.Sequential(torch.nn.Linear(8 * 4 * 4, 10)),
    )


def log_training(logdir, run: str = "cnn", steps: int = 9, every: int = 4):
    """A small CNN trained `steps` steps, measured every `every` by `JacobianSpectra`
    (the network and TRAINING_LAYERS' maps); returns the measurer."""
    import torch

    from deepscope.writer.watch_jacobian import JacobianSpectra

    model = small_cnn()
    generator = torch.Generator().manual_seed(1)
    probe = torch.randn(4, 1, 8, 8, generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    measurer = JacobianSpectra(probe, every=every, layers=list(TRAINING_LAYERS), k=6)
    with writer(logdir / run) as w:
        monitor = deepscope.watch(model, optimizer, w, measure=[measurer])
        for _ in range(steps):
            x = torch.randn(16, 1, 8, 8, generator=generator)
            y = torch.randint(0, 10, (16,), generator=generator)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        monitor.close()
    return measurer


def _good_step() -> pb.JacobianStep:
    return pb.JacobianStep.FromString(
        jacobian_pb("t", spectra("damaged", 0)).value[0].tensor.string_val[0]
    )


def _payload(tag: str, payload: bytes) -> summary_pb2.Summary:
    return tensor_summary(tag, payload, None)


def _mutated(change):
    def build(tag: str) -> summary_pb2.Summary:
        step = _good_step()
        change(step)
        return _payload(tag, step.SerializeToString())

    return build


def _negative(step):
    values = arrays.decode_array(step.singular_values).copy()
    values[0, 1, 0] = -2.0
    step.singular_values.CopyFrom(arrays.encode_array(values))


def _int_values(step):
    values = np.ones((2, 3, 4), np.int32)
    step.singular_values.CopyFrom(arrays.encode_array(values))


def _short_log_det(step):
    step.log_abs_det.CopyFrom(arrays.encode_array(np.zeros((2, 2), np.float32)))


# name → (the Summary of a damaged event of a tag, what the warning says about it).
DAMAGED = {
    "garbage": (lambda t: _payload(t, b"\xff" * 12), "does not parse"),
    "no maps": (lambda t: _payload(t, b""), "names no maps"),
    "negative": (_mutated(_negative), "negative singular value -2"),
    "int values": (_mutated(_int_values), "dtype INT32, not FLOAT32"),
    "log det shape": (_mutated(_short_log_det), "log|det| of shape [2, 2], needs [2, 3]"),
    "repeated map": (
        _mutated(lambda s: s.maps.__setitem__(slice(None), ["fc1", "fc1"])),
        "map 'fc1' appears twice",
    ),
}
