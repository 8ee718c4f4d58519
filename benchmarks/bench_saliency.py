"""Cost of each saliency method against the passes it cannot avoid (CPU).

Model: the classic PyTorch MNIST CNN (conv 32, conv 64, max-pool, fc 128,
fc 10; 1.2M parameters, nn.ReLU modules), 1x28x28 inputs, a probe batch of 32,
eval mode, float32, one torch thread by default (--threads). Targets: the
predicted classes.

Each method is timed against its reference, what any implementation must do:
  gradient family (gradient, gradient_x_input, guided_backprop,
    baseline_delta[_x_input] with the default zero baseline): one forward +
    backward of the same batch. Two references: "input only" (parameters
    frozen, autograd.grad w.r.t. the input, the least any gradient method
    does; the target ratio 1.5 is checked against it) and "with parameters"
    (a training backward: parameter gradients too).
  smoothgrad, integrated_gradients (n = 50): the same n x 32 rows through
    forward + input-only backward in the same batches (the target 1.2 is
    checked against it); also n separate forward + backward passes of the batch.
  occlusion (default 4x4 windows, stride 4: 49 positions): its 49 x 32 rows
    through forward passes in the same batches (target 1.2); also 49
    separate forward passes of the batch.

Noise control (the machine is shared): the configurations of a group take turns
call by call, the order rotating each round, after a warm-up; each figure is
the median over rounds of (method time / reference time measured in the same
round), with the medians of the times themselves.

    .venv/bin/python benchmarks/bench_saliency.py            # ~2-4 min on 2 cores
    .venv/bin/python benchmarks/bench_saliency.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402

from deepscope.analysis import saliency as sal  # noqa: E402
from deepscope.analysis.saliency.occlusion import window_shape, window_starts  # noqa: E402
from deepscope.analysis.saliency.target_scores import rows_per_pass  # noqa: E402

TARGETS = {"gradient_family": 1.5, "batched_n_passes": 1.2, "occlusion": 1.2}
GRADIENT_FAMILY = [
    "gradient",
    "gradient_x_input",
    "guided_backprop",
    "baseline_delta",
    "baseline_delta_x_input",
]


def mnist_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(9216, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def input_gradient(model, rows, targets):
    """Reference: forward + backward to the input only (parameters frozen by the caller)."""
    leaf = rows.detach().requires_grad_(True)
    score = model(leaf).gather(1, targets[:, None]).sum()
    return torch.autograd.grad(score, leaf)[0]


def rounds_of(calls: dict, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each named callable, interleaved, the order rotating each round."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def ratio(times, name, reference) -> float:
    return round(median(a / b for a, b in zip(times[name], times[reference])), 3)


def ms(values) -> float:
    return round(1000 * median(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--n", type=int, default=50, help="smoothgrad samples, IG steps")
    parser.add_argument("--rounds", type=int, default=21, help="rounds, gradient family")
    parser.add_argument("--heavy-rounds", type=int, default=7, help="rounds, the n-pass methods")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 keeps timings stable on a shared machine (OpenMP threads "
        "wait on descheduled siblings)",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/saliency.json)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.heavy_rounds, args.n = 5, 2, 10
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = mnist_cnn().eval()
    x = torch.rand(args.batch, 1, 28, 28)
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
    params = list(model.parameters())
    count = args.batch

    def frozen(fn):
        def call():
            for p in params:
                p.requires_grad_(False)
            try:
                return fn()
            finally:
                for p in params:
                    p.requires_grad_(True)

        return call

    def with_parameters():
        leaf = x.detach().requires_grad_(True)
        score = model(leaf).gather(1, targets[:, None]).sum()
        return torch.autograd.grad(score, [leaf, *params])

    results: dict = {}

    # Gradient family vs one forward + backward of the batch.
    calls = {
        "reference: input only": frozen(lambda: input_gradient(model, x, targets)),
        "reference: with parameters": with_parameters,
    }
    for method in GRADIENT_FAMILY:
        calls[method] = lambda method=method: sal.saliency(model, x, method=method)
    times = rounds_of(calls, args.rounds, warmup=2)
    results["gradient_family"] = {
        "reference_ms": {
            "input_only": ms(times["reference: input only"]),
            "with_parameters": ms(times["reference: with parameters"]),
        },
        "methods": {
            method: {
                "ms": ms(times[method]),
                "ratio_vs_input_only": ratio(times, method, "reference: input only"),
                "ratio_vs_with_parameters": ratio(times, method, "reference: with parameters"),
            }
            for method in GRADIENT_FAMILY
        },
    }

    # smoothgrad and integrated gradients vs n batched forward + backward passes.
    n = args.n
    per_pass = rows_per_pass(None, x.shape[1:], x.device)
    rows = x.repeat(n, 1, 1, 1)
    row_targets = targets.repeat(n)

    def batched_passes():
        for start in range(0, len(rows), per_pass):
            input_gradient(
                model, rows[start : start + per_pass], row_targets[start : start + per_pass]
            )

    def separate_passes():
        for _ in range(n):
            input_gradient(model, x, targets)

    calls = {
        "reference: batched": frozen(batched_passes),
        "reference: separate": frozen(separate_passes),
        "smoothgrad": lambda: sal.saliency(model, x, method="smoothgrad", n_samples=n),
        "integrated_gradients": lambda: sal.saliency(
            model, x, method="integrated_gradients", n_steps=n
        ),
    }
    times = rounds_of(calls, args.heavy_rounds, warmup=1)
    results["batched_n_passes"] = {
        "n": n,
        "rows_per_pass": min(per_pass, n * count),
        "reference_ms": {
            "batched": ms(times["reference: batched"]),
            "separate": ms(times["reference: separate"]),
        },
        "methods": {
            method: {
                "ms": ms(times[method]),
                "ratio_vs_batched": ratio(times, method, "reference: batched"),
                "ratio_vs_separate": ratio(times, method, "reference: separate"),
            }
            for method in ("smoothgrad", "integrated_gradients")
        },
    }

    # Occlusion vs its number of forward passes.
    window = window_shape(None, x.shape[1:])
    positions = 1
    for size, w in zip(x.shape[2:], window):
        positions *= len(window_starts(size, w, w))
    occluded_rows = x.repeat(positions, 1, 1, 1)
    positions_per_chunk = max(1, per_pass // count)

    @torch.no_grad()
    def forward_batched():
        step = positions_per_chunk * count
        for start in range(0, len(occluded_rows), step):
            model(occluded_rows[start : start + step])

    @torch.no_grad()
    def forward_separate():
        for _ in range(positions):
            model(x)

    calls = {
        "reference: batched": frozen(forward_batched),
        "reference: separate": frozen(forward_separate),
        "occlusion": lambda: sal.saliency(model, x, method="occlusion"),
    }
    times = rounds_of(calls, args.heavy_rounds, warmup=1)
    results["occlusion"] = {
        "window": list(window),
        "positions": positions,
        "reference_ms": {
            "batched": ms(times["reference: batched"]),
            "separate": ms(times["reference: separate"]),
        },
        "ms": ms(times["occlusion"]),
        "ratio_vs_batched": ratio(times, "occlusion", "reference: batched"),
        "ratio_vs_separate": ratio(times, "occlusion", "reference: separate"),
    }

    rows_out = []
    for method, fig in results["gradient_family"]["methods"].items():
        rows_out.append(
            [method, fig["ms"], fig["ratio_vs_input_only"], fig["ratio_vs_with_parameters"], 1.5]
        )
    for method, fig in results["batched_n_passes"]["methods"].items():
        rows_out.append([method, fig["ms"], fig["ratio_vs_batched"], fig["ratio_vs_separate"], 1.2])
    occ = results["occlusion"]
    rows_out.append(
        ["occlusion", occ["ms"], occ["ratio_vs_batched"], occ["ratio_vs_separate"], 1.2]
    )
    print(
        table(
            rows_out,
            ["method", "ms", "ratio (strict ref)", "ratio (other ref)", "target"],
        )
    )
    print(
        "strict reference: input-only forward+backward (gradient family), the same rows in "
        "the same batches (smoothgrad, IG, occlusion)"
    )
    verdicts = {
        method: fig["ratio_vs_input_only"] <= TARGETS["gradient_family"]
        for method, fig in results["gradient_family"]["methods"].items()
    }
    verdicts.update(
        {
            method: fig["ratio_vs_batched"] <= TARGETS["batched_n_passes"]
            for method, fig in results["batched_n_passes"]["methods"].items()
        }
    )
    verdicts["occlusion"] = occ["ratio_vs_batched"] <= TARGETS["occlusion"]
    path = write_json(
        "saliency_quick.json" if args.quick and not args.out else "saliency.json",
        {
            "benchmark": "saliency",
            "machine": machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "model": "MNIST CNN (1.2M parameters), 1x28x28, float32, eval mode",
            "batch": count,
            "quick": args.quick,
            "targets": TARGETS,
            "results": results,
            "within_target": verdicts,
        },
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
