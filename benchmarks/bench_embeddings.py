"""Projector embeddings: what one `Embeddings` measurement costs against a training step.

A CIFAR-style ResNet-18 (3x32x32, 10 classes), in one run on the same threads:

- a training step: forward, backward and an SGD step on a batch of `--batch` (median of
  `--repeats`);
- one measurement of the `Embeddings` measurer: `--probe` probe images through the model
  (eval mode, no gradients), two layers caught (`layer4`, pooled over its 4x4 positions to
  512 values a sample, and the logits, 10), written with TensorBoard's `add_embedding`
  (tensors.tsv, metadata.tsv with labels and class names, and a sprite of the probe
  images), median of `--repeats`.

The figure is the ratio measurement / step: at a cadence of `every` steps the measurer adds
ratio / every to training time (`overhead_at_default_every`, target <= 1% at the default
every=1000). Storage: the bytes one measurement writes (`Embeddings.last_bytes`).
Results: benchmarks/results/embeddings.json.

    .venv/bin/python benchmarks/bench_embeddings.py            # 1 thread
    .venv/bin/python benchmarks/bench_embeddings.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from _common import machine, median, write_json
from resnet import resnet18

import deepscope
from deepscope.writer.watch_embeddings import DEFAULT_EMBEDDINGS_EVERY, Embeddings

LAYERS = ("layer4", "linear")


def step_seconds(model, batch: int, repeats: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--probe", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats
    torch.manual_seed(0)
    model = resnet18()
    step = step_seconds(model, args.batch, repeats)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(args.probe, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (args.probe,), generator=generator)
    measurer = Embeddings(
        probe=(images, labels), layers=list(LAYERS), class_names=[f"class {i}" for i in range(10)]
    )
    with tempfile.TemporaryDirectory() as logdir:
        writer = deepscope.SummaryWriter(logdir)
        measurer.start(model, None, writer)
        times = []
        for i in range(repeats + 1):
            start = time.perf_counter()
            measurer.measure(i)
            times.append(time.perf_counter() - start)
        writer.close()
    measurement = median(times[1:])
    ratio = measurement / step
    figures = {
        "machine": {**machine(), "torch_threads": args.threads},
        "model": "resnet18 (CIFAR-style, 3x32x32, 10 classes)",
        "batch": args.batch,
        "probe_samples": args.probe,
        "layers": list(LAYERS),
        "step_seconds": step,
        "measurement_seconds": measurement,
        "ratio_to_step": ratio,
        "default_every": DEFAULT_EMBEDDINGS_EVERY,
        "overhead_at_default_every": ratio / DEFAULT_EMBEDDINGS_EVERY,
        "bytes_per_measurement": measurer.last_bytes,
    }
    print(
        f"step {step * 1e3:.1f} ms, measurement of {args.probe} samples, 2 layers "
        f"{measurement * 1e3:.1f} ms = {ratio:.2f} steps; at every={DEFAULT_EMBEDDINGS_EVERY}: "
        f"{100 * ratio / DEFAULT_EMBEDDINGS_EVERY:.3f}% of training; "
        f"{measurer.last_bytes} bytes a measurement"
    )
    print(write_json("embeddings.json", figures, args.out))


if __name__ == "__main__":
    main()
