"""Embeddings: what one `Embeddings` measurement costs against a training step, and its storage.

For a CIFAR-style ResNet-18 (3x32x32), measured in one run on the same threads:

- a training step: forward, backward and an SGD step on a batch of `--batch` (median of
  `--repeats`);
- one measurement of watch()'s `Embeddings` measurer on a probe of `--samples` images with
  labels, class names and sprites, for the layers layer3 (256 channels, mean over 8x8
  positions), layer4 (512, over 4x4) and linear (the 10 logits): the probe pass (eval, no
  gradients) and the writing with TensorBoard's add_embedding (text tensors.tsv, metadata,
  sprite.png), median of `--repeats`; the bytes it wrote (storage per logged step).

The figure is the ratio measurement / step: at a cadence of `every` steps the measurer adds
ratio / every to training time (DEFAULT_EMBEDDINGS_EVERY: the default cadence, checked
against the 1% target here). Results: benchmarks/results/embeddings.json.

    .venv/bin/python benchmarks/bench_embeddings.py            # 1 thread, 256 probe images
    .venv/bin/python benchmarks/bench_embeddings.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from _common import machine, median, table, write_json
from resnet import resnet18, training_step_seconds

import deepscope
from deepscope.writer.watch_embeddings import DEFAULT_EMBEDDINGS_EVERY, Embeddings

LAYERS = ["layer3", "layer4", "linear"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = resnet18()
    repeats = 1 if args.quick else args.repeats
    samples = 16 if args.quick else args.samples
    step = training_step_seconds(model, args.batch, repeats)
    generator = torch.Generator().manual_seed(1)
    probe = torch.rand(samples, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (samples,), generator=generator)
    measurer = Embeddings(
        probe=(probe, labels), layers=LAYERS, every=1, class_names=[f"c{k}" for k in range(10)]
    )
    totals, writes = [], []
    with tempfile.TemporaryDirectory() as logdir:
        writer = deepscope.SummaryWriter(logdir)
        measurer.start(model, None, writer)
        for k in range(repeats):
            measurer.measure(k)
            totals.append(measurer.last_seconds)
            writes.append(sum(e.seconds for e in measurer.logged.values()))
        per_layer = {
            layer: {
                "dims": list(e.vectors.shape),
                "bytes": e.bytes,
                "write_seconds": e.seconds,
            }
            for layer, e in measurer.logged.items()
        }
        writer.close()
    measurement = median(totals)
    ratio = measurement / step
    figures = {
        "machine": {**machine(), "torch_threads": args.threads},
        "model": "resnet18 (CIFAR, 3x32x32)",
        "batch": args.batch,
        "probe_samples": samples,
        "layers": LAYERS,
        "step_seconds": step,
        "measurement_seconds": measurement,
        "write_seconds": median(writes),
        "probe_pass_seconds": measurement - median(writes),
        "ratio_to_step": ratio,
        "default_every": DEFAULT_EMBEDDINGS_EVERY,
        "overhead_at_default_every": ratio / DEFAULT_EMBEDDINGS_EVERY,
        "every_for_1_percent": ratio / 0.01,
        "bytes_per_logged_step": measurer.last_bytes,
        "per_layer": per_layer,
    }
    rows = [
        [layer, f"{v['dims'][0]}x{v['dims'][1]}", v["bytes"], f"{v['write_seconds']:.3f}"]
        for layer, v in per_layer.items()
    ]
    print(table(rows, ["layer", "vectors", "bytes", "write s"]))
    print(
        f"step {step * 1000:.0f} ms, measurement {measurement:.3f} s "
        f"(probe pass {figures['probe_pass_seconds']:.3f} s) = {ratio:.2f} steps; "
        f"at every={DEFAULT_EMBEDDINGS_EVERY}: {100 * figures['overhead_at_default_every']:.3f}% "
        f"of training; {measurer.last_bytes / 1e6:.2f} MB per logged step"
    )
    if not args.quick:
        print("wrote", write_json("embeddings.json", figures, args.out))


if __name__ == "__main__":
    main()
