"""Jacobian singular values: what one `JacobianSpectra` measurement costs, against a step.

For a small CNN (1x28x28 digits-sized inputs) and a CIFAR-style ResNet-18 (3x32x32),
measured in one run on the same threads:

- a training step: forward, backward and an SGD step on a batch of `--batch` (median of
  `--repeats`);
- one measurement of watch()'s `JacobianSpectra` on a probe of `--samples` samples: the
  whole network's map (input → logits) and each named layer's (its input → its output),
  the whole spectrum where min(m, n) <= full_max (256), else the top k = 8 by block
  Lanczos plus the Hutchinson mean squared singular value and, for square maps, the
  stochastic Lanczos quadrature log|det| (16 probes); each map timed alone too, with its
  Jacobian products per sample, and the square top-k maps again with log_det=False.

The figure is the ratio measurement / step (at a cadence of `every` steps, the
measurer adds ratio / every to training time). Results: benchmarks/results/jacobian.json.

    .venv/bin/python benchmarks/bench_jacobian.py            # 1 thread, 4 probe samples
    .venv/bin/python benchmarks/bench_jacobian.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine, median, table, write_json
from resnet import resnet18

from deepscope.analysis.jacobian import capture_inputs, eval_mode, jacobian_singular_values


def small_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 7 * 7, 10),
    )


MODELS = {
    "small_cnn": (small_cnn, (1, 28, 28), ["0", "4", "9"]),
    "resnet18": (resnet18, (3, 32, 32), ["conv1", "layer2.0.conv1", "layer4.1.conv2", "linear"]),
}


def step_seconds(model, shape, batch: int, repeats: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return median(times[1:])


def measure(name: str, batch: int, samples: int, repeats: int, quick: bool) -> dict:
    make, shape, layers = MODELS[name]
    model = make()
    step = step_seconds(model, shape, batch, repeats)
    probe = torch.randn(samples, *shape, generator=torch.Generator().manual_seed(1))
    modules = dict(model.named_modules())
    options = {"k": 8} if not quick else {"k": 4, "max_iterations": 4, "quadrature_steps": 4}
    maps = {}
    total_start = time.perf_counter()
    with eval_mode(model):
        start = time.perf_counter()
        result = jacobian_singular_values(model, probe, **options)
        maps["(network)"] = (time.perf_counter() - start, result)
        with torch.no_grad():
            caught = capture_inputs(model, [modules[n] for n in layers], probe)
        for layer, (args, _) in zip(layers, caught):
            start = time.perf_counter()
            result = jacobian_singular_values(modules[layer], args[0], **options)
            maps[layer] = (time.perf_counter() - start, result)
    total = time.perf_counter() - total_start
    # Square maps whose spectrum is not whole again without the log|det| quadrature.
    without = {}
    with eval_mode(model):
        for layer, (args, _) in zip(layers, caught):
            seconds, result = maps[layer]
            if result.square and not result.full:
                start = time.perf_counter()
                jacobian_singular_values(modules[layer], args[0], log_det=False, **options)
                without[layer] = time.perf_counter() - start
    per_map = {
        layer: {
            "seconds": seconds,
            "dims": [r.input_dim, r.output_dim],
            "full": r.full,
            "products_per_sample": r.products,
            "sigma_max_mean": float(r.sigma_max.mean()),
            "ratio_to_step": seconds / step,
            **({"seconds_without_log_det": without[layer]} if layer in without else {}),
        }
        for layer, (seconds, r) in maps.items()
    }
    saved = sum(maps[layer][0] - seconds for layer, seconds in without.items())
    return {
        "step_seconds": step,
        "batch": batch,
        "probe_samples": samples,
        "measurement_seconds": total,
        "ratio_to_step": total / step,
        "measurement_seconds_without_log_det": total - saved,
        "ratio_to_step_without_log_det": (total - saved) / step,
        "maps": per_map,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures = {
        "machine": {**machine(), "torch_threads": args.threads},
        "options": {"k": 8, "full_max": 256, "probes": 16, "quadrature_steps": 24, "tol": 1e-4},
        "models": {},
    }
    rows = []
    for name in MODELS:
        found = measure(
            name, args.batch, args.samples, 2 if args.quick else args.repeats, args.quick
        )
        figures["models"][name] = found
        for layer, m in found["maps"].items():
            rows.append(
                [
                    name,
                    layer,
                    f"{m['dims'][0]}→{m['dims'][1]}",
                    "full" if m["full"] else "top-k",
                    m["products_per_sample"],
                    f"{m['seconds']:.3f}",
                    f"{m['ratio_to_step']:.1f}",
                ]
            )
        rows.append(
            [
                name,
                "ALL",
                "",
                "",
                "",
                f"{found['measurement_seconds']:.3f}",
                f"{found['ratio_to_step']:.1f} (step {found['step_seconds'] * 1000:.0f} ms)",
            ]
        )
        rows.append(
            [
                name,
                "ALL, log_det=False",
                "",
                "",
                "",
                f"{found['measurement_seconds_without_log_det']:.3f}",
                f"{found['ratio_to_step_without_log_det']:.1f}",
            ]
        )
    print(table(rows, ["model", "map", "n→m", "spectrum", "products", "seconds", "× step"]))
    if not args.quick:
        print("wrote", write_json("jacobian.json", figures, args.out))


if __name__ == "__main__":
    main()
