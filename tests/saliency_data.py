"""Session fixtures: log dirs with saliency series written by real training.

Two runs (seed0, seed1) train tests.conftest's SmallCNN on synthetic 1×8×8
digits under `deepscope.watch(..., saliency_probe=(x, y), saliency_every=...)`
with three methods. seed0 also logs, through `SummaryWriter.add_saliency`, the
maps of a small RGB network (3×6×6 inputs) and maps "from elsewhere" holding NaN
and Inf. `reference.pt` holds what the tests need to recompute maps on their own:
the probe and the model's parameters after every optimizer step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TRAIN_STEPS = 40
SALIENCY_EVERY = 10
PROBE = 10  # more than the tab's page of 8 samples
METHODS = ("gradient", "baseline_delta", "integrated_gradients")
RGB_TAG = "rgb/gradient"
BROKEN_TAG = "elsewhere/broken"


def _train(logdir: Path, seed: int) -> dict:
    import torch

    import deepscope
    from tests.conftest import SmallCNN

    torch.manual_seed(seed)
    model = SmallCNN.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    writer = deepscope.SummaryWriter(str(logdir / f"seed{seed}"))
    x_all = torch.randn(256, 1, 8, 8)
    y_all = (x_all[:, 0, :4].sum(dim=(1, 2)) > 0).long() + 2 * (x_all[:, 0, 4:].mean((1, 2)) > 0)
    probe_x, probe_y = x_all[:PROBE].clone(), y_all[:PROBE].clone()
    states = []
    with deepscope.watch(
        model,
        optimizer,
        writer,
        every=10,
        spectra_every=None,
        saliency_probe=(probe_x, probe_y),
        saliency_every=SALIENCY_EVERY,
        saliency_methods=METHODS,
    ):
        for _ in range(TRAIN_STEPS):
            idx = torch.randint(0, 256, (32,))
            loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # The parameters the post-step hook measured with (it runs inside step()).
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    reference = {"probe_x": probe_x, "probe_y": probe_y, "states": states}
    if seed == 0:
        reference["rgb"] = _log_rgb_and_broken(writer)
    writer.close()
    return reference


def _log_rgb_and_broken(writer) -> dict:
    """Maps of an RGB network by add_saliency, and maps with NaN/Inf as another library's."""
    import numpy as np
    import torch

    from deepscope import saliency

    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 5),
    )
    x = torch.rand(3, 3, 6, 6)
    y = torch.tensor([0, 1, 2])
    for step in (0, 5):
        maps = saliency(net, x, target=y, method="gradient")
        predictions = net(x).argmax(dim=1)
        writer.add_saliency(
            RGB_TAG, x, maps, global_step=step, labels=y, predictions=predictions, method="gradient"
        )
        with torch.no_grad():
            net[0].weight.mul_(1.5)
    rng = np.random.default_rng(0)
    broken = rng.standard_normal((4, 1, 5, 5)).astype(np.float32)
    broken[1, 0, 2, 3] = np.nan
    broken[2, 0, 0, :2] = np.inf
    writer.add_saliency(
        BROKEN_TAG,
        rng.uniform(0, 1, (4, 1, 5, 5)).astype(np.float32),
        broken,
        global_step=0,
        method="captum-saliency",
    )
    return {"x": x, "y": y}


@pytest.fixture(scope="session")
def saliency_logdir(tmp_path_factory) -> Path:
    """Runs seed0 and seed1 (see the module docstring); reference.pt holds the truth."""
    import torch

    logdir = tmp_path_factory.mktemp("saliency")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only contend with the other tests' processes
    try:
        references = {f"seed{s}": _train(logdir, s) for s in (0, 1)}
    finally:
        torch.set_num_threads(threads)
    torch.save(references, logdir / "reference.pt")
    return logdir
