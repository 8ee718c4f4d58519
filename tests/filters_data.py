"""Test data of the filters kind: seeded conv weights and activations, a small CNN, log dirs.

References are numpy's: a stored step must equal `numpy.float16(values)` bit for bit (the
writer's one rounding), tile order is numpy's reshape of [K, I, kH, kW] to [K·I, kH, kW].
"""

from __future__ import annotations

import numpy as np
import torch

import deepscope

WEIGHT_SHAPE = (6, 2, 3, 3)  # a 2 → 6 conv: 12 grayscale tiles
RGB_SHAPE = (5, 3, 5, 5)  # a first conv of an RGB input: 5 RGB tiles
MAPS_SHAPE = (4, 7, 6, 5)  # a batch of 4 samples, 7 channels of 6 × 5
STEPS = (0, 10, 20)


def weight(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.3


def tiles(values: np.ndarray, rgb: bool = False) -> np.ndarray:
    """The tiles a reader serves for a stored weight or map, in tile order (numpy reshape)."""
    values = np.asarray(values)
    if values.ndim == 4 and not rgb:
        return values.reshape(values.shape[0] * values.shape[1], *values.shape[2:])
    return values


class SmallCNN(torch.nn.Module):
    """An RGB-input CNN with batch norm and dropout (their modes must be restored)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.conv2 = torch.nn.Conv2d(4, 6, 3, padding=1)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(self.drop(x.mean(dim=(2, 3))))


def log_series(logdir) -> dict:
    """A run with a filters series, an RGB one and a feature-maps series at STEPS;
    (tag → step → the values logged, float32)."""
    logged: dict[str, dict[int, np.ndarray]] = {"gray": {}, "rgb": {}, "maps": {}}
    with deepscope.SummaryWriter(str(logdir)) as w:
        for i, step in enumerate(STEPS):
            gray = weight(WEIGHT_SHAPE, 10 + i)
            rgb = weight(RGB_SHAPE, 20 + i)
            maps = np.random.default_rng(30 + i).lognormal(size=MAPS_SHAPE).astype(np.float32)
            w.add_filters("gray", gray, global_step=step, layer="conv2")
            w.add_filters("rgb", rgb, global_step=step, layer="conv1", scale="shared")
            w.add_feature_maps("maps", maps, global_step=step, sample=2, layer="layer1")
            logged["gray"][step] = gray
            logged["rgb"][step] = rgb
            logged["maps"][step] = maps[2]
    return logged


class DigitsCNN(torch.nn.Module):
    """A small CNN for scikit-learn's 8 × 8 digits: conv1 1 → 8, conv2 8 → 16 (3 × 3)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.drop = torch.nn.Dropout(0.1)
        self.fc = torch.nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x.reshape(-1, 1, 8, 8)))
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(self.drop(x.flatten(1)))


def log_training(logdir, run: str = "digits", epochs: int = 3, batch: int = 64, every: int = 10):
    """The CNN trained on the digits under `deepscope.watch` with `Filters` (conv1 and
    conv2) and `FeatureMaps` (conv1, conv2 on held-out digit 0) every `every` steps.

    Returns (model, the probe digits [N, 1, 8, 8], the steps measured, {tag: the newest
    values logged, float32}): conv weights after the last measured step, the measurer's
    last outputs.
    """
    from deepscope.writer.watch_filters import FeatureMaps, Filters
    from tests.confusion_data import digits

    (x, y), (vx, _) = digits()
    probe = vx[:4].reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    filters = Filters(every=every, layers=["conv1", "conv2"])
    maps = FeatureMaps(["conv1", "conv2"], probe, every=every, sample=0)
    generator = torch.Generator().manual_seed(1)
    measured: list[int] = []
    newest: dict[str, np.ndarray] = {}
    step = 0
    with deepscope.SummaryWriter(str(logdir / run)) as w:
        monitor = deepscope.watch(model, optimizer, w, measure=[filters, maps])
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), batch):
                pick = order[start : start + batch]
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x[pick]), y[pick]).backward()
                optimizer.step()
                if step % every == 0:
                    measured.append(step)
                    for name in ("conv1", "conv2"):
                        weight = getattr(model, name).weight.detach().numpy().copy()
                        newest[f"filters/{name}"] = weight
                step += 1
        monitor.close()
    for name, output in maps.last_outputs.items():
        newest[f"feature_maps/{name}"] = output.numpy().copy()
    return model, probe, measured, newest
