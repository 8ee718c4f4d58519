"""Train a small CNN on scikit-learn's bundled 8×8 digits, watched by deepscope.

    python examples/train_digits.py --logdir runs/demo
    tensorboard --logdir runs/demo        # then open the deepscope tab

Three runs: AdamW and SGD from the same seed show how the update-to-weight
ratio tells whether each layer's learning rate suits it (rule of thumb: near
1e-3); watch() also logs every layer's activation statistics and gradient and
weight norms, every weight's singular value spectrum (the convs' operator
spectra too), the channel correlations of the conv layers on fixed probe
digits, saliency maps of eight probe digits by every method, and the Jacobian
singular values of two layers and of the whole network, and the 64-d hidden layer's embeddings
of 256 probe digits (with their labels and images) at the first and last step, for
TensorBoard's Projector tab. A second AdamW run from another seed is
compared with the first, layer by layer, at the end of each epoch (Li et al.,
Convergent Learning: channel matching, and each channel of one predicted from
the other's by least squares and with L1), with the layer × layer CKA matrix of
the two networks on the held-out digits: run "compare-seed0-vs-seed1".
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
    """Two conv layers and a linear classifier for 1×8×8 inputs.

    ReLUs are modules, so guided backprop reaches them and their outputs (the
    activations whose channel correlations are logged) have names.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(2)
        self.fc1 = torch.nn.Linear(32 * 4 * 4, 64)
        self.relu3 = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.relu3(self.fc1(h.flatten(1))))


def load_data(seed: int = 0):
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return (x[:split], y[:split]), (x[split:], y[split:])


SALIENCY_METHODS = (
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "baseline_delta",
    "smoothgrad",
    "integrated_gradients",
    "occlusion",
)
# Post-activation outputs: dead channels (never positive) show as such.
CORRELATION_LAYERS = ("relu1", "relu2", "relu3")
# Maps whose Jacobian singular values are logged (besides the whole network's).
JACOBIAN_LAYERS = ("conv1", "fc1")
# Layers of the two seeds' networks whose layer x layer CKA is logged each epoch.
CKA_LAYERS = ("conv1", "relu1", "conv2", "relu2", "fc1", "relu3", "fc2")
# The hidden layer whose outputs on the probe digits go to TensorBoard's Projector.
EMBEDDING_LAYER = "relu3"


def train(
    logdir: Path, run: str, make_optimizer, epochs: int, every: int, seed: int
) -> list[tuple[int, dict]]:
    """Train one run under deepscope.watch; returns (step, state_dict) at each epoch's end."""
    torch.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_data()
    model = DigitsCNN()
    optimizer = make_optimizer(model.parameters())
    writer = deepscope.SummaryWriter(str(logdir / run))
    batches = (len(x_train) + 31) // 32
    step = 0
    checkpoints = []
    measure = [
        deepscope.UpdateRatios(every=every),
        deepscope.ParameterNorms(every=every),
        # Activation statistics of every layer on the measured training batch, the
        # covariance spectra (effective dimension, delve saturation) on every other one.
        deepscope.LayerStats(every=4 * every, covariance_every=8 * every),
        # Spectra of every weight; for the convs also the operator norm (and, asked
        # for here, their whole operator spectrum on the 8×8 input).
        deepscope.Spectra(every=5 * every, operator="full"),
        deepscope.Correlations(layers=CORRELATION_LAYERS, probe=x_test[:256], every=10 * every),
        deepscope.Saliency(
            probe=(x_test[:8], y_test[:8]), methods=SALIENCY_METHODS, every=10 * every
        ),
        # Jacobian singular values of two layers and of the whole network on four probe digits.
        deepscope.JacobianSpectra(probe=x_test[:4], layers=JACOBIAN_LAYERS, every=20 * every),
        # The hidden layer's 64-d outputs on 256 probe digits, labelled and drawn as the
        # digits, at the first step and the last (untrained, trained): the Projector tab.
        deepscope.Embeddings(
            probe=(x_test[:256], y_test[:256]),
            layers=[EMBEDDING_LAYER],
            class_names=[str(d) for d in range(10)],
            every=max(1, epochs * batches - 1),
        ),
        # conv1's 16 filters and conv2's 32 × 16, as images; relu1's and relu2's
        # channels on one held-out digit; ten times an epoch.
        deepscope.Filters(every=batches // 10 or 1, layers=["conv1", "conv2"]),
        deepscope.FeatureMaps(["relu1", "relu2"], probe=x_test[:1], every=batches // 10 or 1),
        # The confusion matrix of the held-out digits, once an epoch.
        deepscope.ConfusionMatrices(
            data=(x_test, y_test),
            class_names=[str(d) for d in range(10)],
            tag="confusion/test",
            on="held-out digits",
            every=batches,
        ),
    ]
    with deepscope.watch(model, optimizer, writer, measure=measure):
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
            checkpoints.append((step, {k: v.clone() for k, v in model.state_dict().items()}))
    writer.close()
    return checkpoints


def compare_runs(
    logdir: Path, run: str, names: tuple[str, str], checkpoints_a, checkpoints_b
) -> None:
    """Log the cross-network channel correlations (with Li et al.'s regression and each
    pair's CKA) and the layer x layer CKA matrix of two runs at each epoch's end."""
    (_, _), (x_test, _) = load_data()
    model_a, model_b = DigitsCNN(), DigitsCNN()
    writer = deepscope.SummaryWriter(str(logdir / run))
    for (step, state_a), (_, state_b) in zip(checkpoints_a, checkpoints_b):
        model_a.load_state_dict(state_a)
        model_b.load_state_dict(state_b)
        deepscope.compare(
            model_a,
            model_b,
            x_test,
            layers=CORRELATION_LAYERS,
            writer=writer,
            global_step=step,
            names=names,
        )
        deepscope.compare_cka(
            model_a,
            model_b,
            x_test,
            CKA_LAYERS,
            writer=writer,
            tag="cka",
            global_step=step,
            names=names,
        )
    writer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--every", type=int, default=5, help="measure every N optimizer steps")
    args = parser.parse_args(argv)
    shutil.rmtree(args.logdir, ignore_errors=True)  # a fresh demo every time
    torch.set_num_threads(max(1, torch.get_num_threads()))
    adamw = lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=1e-2)  # noqa: E731
    sgd = lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)  # noqa: E731
    seed0 = train(args.logdir, "adamw-lr1e-3", adamw, args.epochs, args.every, seed=0)
    train(args.logdir, "sgd-lr0.01", sgd, args.epochs, args.every, seed=0)
    seed1 = train(args.logdir, "adamw-lr1e-3-seed1", adamw, args.epochs, args.every, seed=1)
    names = ("adamw-lr1e-3", "adamw-lr1e-3-seed1")
    compare_runs(args.logdir, "compare-seed0-vs-seed1", names, seed0, seed1)
    print(f"wrote {args.logdir}")


if __name__ == "__main__":
    main()
