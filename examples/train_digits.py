"""Train a small CNN on scikit-learn's bundled 8×8 digits, watched by deepscope.

    python examples/train_digits.py --logdir runs/demo
    tensorboard --logdir runs/demo        # then open the deepscope tab

Two runs with different optimizers show how the update-to-weight ratio tells
whether each layer's learning rate suits it (rule of thumb: near 1e-3).
No download: the digits ship inside scikit-learn.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from tqdm import tqdm

import deepscope


class DigitsCNN(torch.nn.Module):
    """Two conv layers and a linear classifier for 1×8×8 inputs."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = torch.nn.Linear(32 * 4 * 4, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = torch.nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


def load_data(seed: int = 0):
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:])


def train(logdir: Path, run: str, make_optimizer, epochs: int, every: int, seed: int) -> None:
    torch.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_data()
    model = DigitsCNN()
    optimizer = make_optimizer(model.parameters())
    writer = deepscope.SummaryWriter(str(logdir / run))
    batches = (len(x_train) + 31) // 32
    step = 0
    with deepscope.watch(model, optimizer, writer, every=every):
        for _epoch in tqdm(range(epochs), desc=run, unit="epoch"):
            order = torch.randperm(len(x_train))
            for b in range(batches):
                idx = order[b * 32 : (b + 1) * 32]
                loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if step % 10 == 0:
                    writer.add_scalar("loss/train", loss.item(), step)
                step += 1
            with torch.no_grad():
                accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
            writer.add_scalar("accuracy/test", accuracy, step)
    writer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--every", type=int, default=5, help="measure every N optimizer steps")
    args = parser.parse_args(argv)
    shutil.rmtree(args.logdir, ignore_errors=True)  # a fresh demo every time
    torch.set_num_threads(max(1, torch.get_num_threads()))
    runs = {
        "adamw-lr1e-3": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=1e-2),
        "sgd-lr0.01": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    }
    for run, make_optimizer in runs.items():
        train(args.logdir, run, make_optimizer, args.epochs, args.every, seed=0)
    print(f"wrote {args.logdir}")


if __name__ == "__main__":
    main()
