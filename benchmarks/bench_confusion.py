"""Confusion matrices: what one `ConfusionMatrices` measurement costs against a training step.

A CIFAR-style ResNet-18 (3x32x32, 10 classes), in one run on the same threads:

- a training step: forward, backward and an SGD step on a batch of `--batch` (median of
  `--repeats`);
- one measurement of watch()'s `ConfusionMatrices` on `--eval-samples` held-out samples in
  batches of `--batch` (eval mode, no gradients, the argmax of the logits accumulated, one
  host copy, the 10 x 10 counts logged with `add_confusion_counts`), median of `--repeats`;
- the builder alone (`confusion_matrix_pb` of 10,000 labels and [10,000, 10] logits).

The figure is the ratio measurement / step: at a cadence of `every` steps the measurer
adds ratio / every to training time (`overhead_at_default_every`: at the default every=500,
the target is <= 1%). Storage: the bytes of one logged event's summary. Results:
benchmarks/results/confusion.json.

    .venv/bin/python benchmarks/bench_confusion.py            # 1 thread
    .venv/bin/python benchmarks/bench_confusion.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from _common import machine, median, write_json
from resnet import resnet18, training_step_seconds

import deepscope
from deepscope.writer.confusion import confusion_matrix_pb
from deepscope.writer.watch_confusion import DEFAULT_CONFUSION_EVERY, ConfusionMatrices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--eval-samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats
    torch.manual_seed(0)
    model = resnet18()
    step = training_step_seconds(model, args.batch, repeats)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(args.eval_samples, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (args.eval_samples,), generator=generator)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=args.batch
    )
    measurer = ConfusionMatrices(loader, class_names=[f"class {i}" for i in range(10)])
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
    labels = torch.randint(0, 10, (10_000,), generator=generator)
    logits = torch.randn(10_000, 10, generator=generator)
    builder = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        summary = confusion_matrix_pb("c", labels, logits)
        builder.append(time.perf_counter() - start)
    first = confusion_matrix_pb("c", labels, logits, [f"class {i}" for i in range(10)])
    ratio = measurement / step
    figures = {
        "machine": {**machine(), "torch_threads": args.threads},
        "model": "resnet18 (CIFAR-style, 3x32x32, 10 classes)",
        "batch": args.batch,
        "eval_samples": args.eval_samples,
        "step_seconds": step,
        "measurement_seconds": measurement,
        "ratio_to_step": ratio,
        "default_every": DEFAULT_CONFUSION_EVERY,
        "overhead_at_default_every": ratio / DEFAULT_CONFUSION_EVERY,
        "builder_seconds_10000_samples": median(builder[1:]),
        "bytes_per_step_without_metadata": len(summary.value[0].tensor.SerializeToString()),
        "bytes_first_step_with_metadata": first.ByteSize(),
    }
    print(
        f"step {step * 1e3:.1f} ms, measurement on {args.eval_samples} samples "
        f"{measurement * 1e3:.1f} ms = {ratio:.2f} steps; at every={DEFAULT_CONFUSION_EVERY}: "
        f"{100 * ratio / DEFAULT_CONFUSION_EVERY:.3f}% of training; "
        f"{figures['bytes_per_step_without_metadata']} bytes a step"
    )
    print(write_json("confusion.json", figures, args.out))


if __name__ == "__main__":
    main()
