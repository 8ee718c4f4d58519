"""Cross-network log dirs for the integration and browser tests of compare()'s regression
and CKA and of compare_cka's matrix.

`log_two_seeds(logdir, run)`: two small CNNs trained from seeds 0 and 1 on scikit-learn's
bundled 8×8 digits (no download), compared after `STEPS` training steps as a user does it:
`deepscope.compare(..., writer=w)` on `LAYERS` (tags compare/<layer>) and
`deepscope.compare_cka(..., writer=w, tag=CKA_TAG)` on `CKA_LAYERS`, on the same held-out
digits. Returns step → (compare()'s results, compare_cka's result): the references the
served numbers are checked against.
"""

from __future__ import annotations

import torch

import deepscope

LAYERS = ("relu1", "relu2")
CKA_LAYERS = ("conv1", "relu1", "conv2", "relu2", "fc")
CKA_TAG = "cka"
STEPS = (10, 40)
NAMES = ("seed0", "seed1")


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 12, 3, padding=1)
        self.relu2 = torch.nn.ReLU()
        self.fc = torch.nn.Linear(12 * 4 * 4, 10)

    def forward(self, x):
        h = torch.nn.functional.max_pool2d(self.relu2(self.conv2(self.relu1(self.conv1(x)))), 2)
        return self.fc(h.flatten(1))


def digits():
    from sklearn.datasets import load_digits

    found = load_digits()
    x = torch.tensor(found.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(found.target, dtype=torch.int64)
    return (x[:1400], y[:1400]), x[1400:1560]


def log_two_seeds(logdir, run: str = "compare") -> dict:
    (x, y), probe = digits()
    models, optimizers = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = SmallCNN()
        models.append(model)
        optimizers.append(torch.optim.Adam(model.parameters(), lr=3e-3))
    logged = {}
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    with deepscope.SummaryWriter(str(logdir / run)) as writer:
        for step in range(max(STEPS) + 1):
            batch = order[(32 * step) % 1376 :][:32]
            for model, optimizer in zip(models, optimizers):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
            if step in STEPS:
                results = deepscope.compare(
                    *models, probe, LAYERS, writer=writer, global_step=step, names=NAMES
                )
                cka = deepscope.compare_cka(
                    *models,
                    probe,
                    CKA_LAYERS,
                    writer=writer,
                    tag=CKA_TAG,
                    global_step=step,
                    names=NAMES,
                )
                logged[step] = (results, cka)
    return logged
