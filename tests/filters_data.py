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
