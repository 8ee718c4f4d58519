"""Filters and feature maps: what one `Filters` and one `FeatureMaps` measurement cost
against a training step, and what they store a step.

A CIFAR-style ResNet-18 (3x32x32, 10 classes), in one run on the same threads:

- a training step: forward, backward and an SGD step on a batch of `--batch` (median of
  `--repeats`);
- one `Filters` measurement at its defaults (the first conv, `conv1`, 64 x 3 x 3 x 3, RGB
  tiles) and one of `conv1` plus `layer1.0.conv1` (64 x 64 x 3 x 3: 4,096 grayscale tiles);
- one `FeatureMaps` measurement of `layer1` and `layer2` (64 x 32 x 32 and 128 x 16 x 16)
  on one probe sample (eval mode, no gradients, hooks attached and removed);
- each logged through a real `deepscope.SummaryWriter` (host copy, float16, event write).

The figure is the ratio measurement / step: at a cadence of `every` steps a measurer adds
ratio / every to training time (`overhead_at_default_every`, target <= 1%). Storage: the
bytes of one logged step's summary per tag, without the metadata of a tag's first event.
Results: benchmarks/results/filters.json.

    .venv/bin/python benchmarks/bench_filters.py            # 1 thread
    .venv/bin/python benchmarks/bench_filters.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from _common import machine, median, write_json
from resnet import resnet18, training_step_seconds

import deepscope
from deepscope.writer.filters import feature_maps_pb, filters_pb
from deepscope.writer.watch_filters import (
    DEFAULT_FEATURE_MAPS_EVERY,
    DEFAULT_FILTERS_EVERY,
    FeatureMaps,
    Filters,
)


def measurement_seconds(measurer, model, logdir: str, repeats: int) -> float:
    writer = deepscope.SummaryWriter(logdir)
    measurer.start(model, None, writer)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        measurer.measure(i)
        times.append(time.perf_counter() - start)
    writer.close()
    return median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats
    torch.manual_seed(0)
    model = resnet18()
    step = training_step_seconds(model, args.batch, repeats)
    probe = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as logdir:
        filters = measurement_seconds(Filters(), model, f"{logdir}/a", repeats)
        filters_two = measurement_seconds(
            Filters(layers=["conv1", "layer1.0.conv1"]), model, f"{logdir}/b", repeats
        )
        maps_measurer = FeatureMaps(["layer1", "layer2"], probe)
        maps = measurement_seconds(maps_measurer, model, f"{logdir}/c", repeats)
    outputs = maps_measurer.last_outputs
    storage = {
        "filters/conv1": len(filters_pb("t", model.conv1).value[0].tensor.SerializeToString()),
        "filters/layer1.0.conv1": len(
            filters_pb("t", model.layer1[0].conv1).value[0].tensor.SerializeToString()
        ),
        **{
            f"feature_maps/{name}": len(
                feature_maps_pb("t", output).value[0].tensor.SerializeToString()
            )
            for name, output in outputs.items()
        },
    }
    figures = {
        "machine": {**machine(), "torch_threads": args.threads},
        "model": "resnet18 (CIFAR-style, 3x32x32, 10 classes)",
        "batch": args.batch,
        "step_seconds": step,
        "filters": {
            "layers": ["conv1"],
            "measurement_seconds": filters,
            "ratio_to_step": filters / step,
            "default_every": DEFAULT_FILTERS_EVERY,
            "overhead_at_default_every": filters / step / DEFAULT_FILTERS_EVERY,
        },
        "filters_conv1_and_layer1.0.conv1": {
            "measurement_seconds": filters_two,
            "ratio_to_step": filters_two / step,
            "overhead_at_default_every": filters_two / step / DEFAULT_FILTERS_EVERY,
        },
        "feature_maps": {
            "layers": ["layer1", "layer2"],
            "probe_samples_run": 1,
            "measurement_seconds": maps,
            "ratio_to_step": maps / step,
            "default_every": DEFAULT_FEATURE_MAPS_EVERY,
            "overhead_at_default_every": maps / step / DEFAULT_FEATURE_MAPS_EVERY,
        },
        "bytes_per_step_without_metadata": storage,
    }
    print(
        f"step {step * 1e3:.1f} ms; Filters {filters * 1e3:.2f} ms = {filters / step:.4f} steps "
        f"({100 * filters / step / DEFAULT_FILTERS_EVERY:.5f}% at every={DEFAULT_FILTERS_EVERY}); "
        f"two layers {filters_two * 1e3:.2f} ms; FeatureMaps {maps * 1e3:.2f} ms = "
        f"{maps / step:.4f} steps ({100 * maps / step / DEFAULT_FEATURE_MAPS_EVERY:.5f}% at "
        f"every={DEFAULT_FEATURE_MAPS_EVERY}); bytes a step {storage}"
    )
    print(write_json("filters.json", figures, args.out))


if __name__ == "__main__":
    main()
