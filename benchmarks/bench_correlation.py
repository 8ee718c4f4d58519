"""Cost of `CorrelationAccumulator.update` against one Gram matrix X.T @ X, and bytes per step.

1. Accumulation: for channels C and samples S, the time of one
   `accumulator.update(batch)` (steady state: the accumulator already holds a
   batch) over the time of one `X.T @ X` of the same (S, C) float32 matrix X.
   Target: at most 2x. Layouts: (S, C) rows (a Linear layer's (N, C) output) and
   (N, C, 8, 8) (a convolution's output, N = S/64, channels not innermost in
   memory). Also the cross update (two streams of C channels) over one X.T @ X,
   for information: it takes three Gram products (X.T X, Y.T Y, X.T Y).
   Noise control: the machine is shared, and under others' load wall-clock
   times swing by several times, so the figures are CPU seconds of this
   process (`time.process_time`) with one intra-op thread by default
   (`--threads`): the work done, not the waiting. The Gram product and the
   update take turns, repeat after repeat; the figure is the ratio of their
   medians, with the median of the per-repeat ratios beside it.
2. Storage: bytes of one logged step (the serialized `Summary`, and the growth
   of the event file per step written through `deepscope.SummaryWriter`) for
   512 channels: within a layer (float16 and uint8) and across two networks.
3. For information: `compute()` and the matching for 512 channels.

    .venv/bin/python benchmarks/bench_correlation.py           # ~3 min
    .venv/bin/python benchmarks/bench_correlation.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402

import deepscope  # noqa: E402
from deepscope.analysis.correlation import CorrelationAccumulator  # noqa: E402
from deepscope.analysis.matching import match_channels  # noqa: E402
from deepscope.writer.correlation import channel_correlation_pb  # noqa: E402

TARGET_RATIO = 2.0
BUDGET_BYTES_512 = 600_000


def _timed(fn) -> float:
    """CPU seconds of the process running fn (see the module docstring)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def _batch(samples: int, channels: int, layout: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if layout == "rows":
        return torch.randn(samples, channels, generator=g).relu_()
    return torch.randn(samples // 64, channels, 8, 8, generator=g).relu_()


def bench_update(channels: int, samples: int, layout: str, cross: bool, repeats: int) -> dict:
    x = _batch(samples, channels, layout, 0)
    y = _batch(samples, channels, layout, 1) if cross else None
    gram_input = torch.randn(samples, channels, generator=torch.Generator().manual_seed(2))
    accumulator = CorrelationAccumulator()
    accumulator.update(x, y)  # warm-up, and the state every timed update merges into
    _ = gram_input.T @ gram_input
    grams, updates = [], []
    for _ in range(repeats):
        grams.append(_timed(lambda: gram_input.T @ gram_input))
        updates.append(_timed(lambda: accumulator.update(x, y)))
    return {
        "channels": channels,
        "samples": samples,
        "layout": layout,
        "cross": cross,
        "repeats": repeats,
        "gram_ms": round(median(grams) * 1e3, 3),
        "update_ms": round(median(updates) * 1e3, 3),
        "ratio": round(median(updates) / median(grams), 3),
        "ratio_per_repeat_median": round(median(u / g for u, g in zip(updates, grams)), 3),
    }


def bench_storage(channels: int, steps: int) -> dict:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4096, channels, generator=g)
    b = torch.randn(4096, channels, generator=g)
    figures = {"channels": channels, "budget_bytes": BUDGET_BYTES_512}
    cases = {
        "within_float16": dict(activations=a),
        "within_uint8": dict(activations=a, matrix_dtype="uint8"),
        "within_uint8_upper_triangle": dict(
            activations=a, matrix_dtype="uint8", packing="upper_triangle"
        ),
        "cross_float16": dict(activations=a, other=b),
    }
    for name, kwargs in cases.items():
        summary = channel_correlation_pb("layer", **kwargs)
        with tempfile.TemporaryDirectory() as logdir:
            writer = deepscope.SummaryWriter(logdir)
            writer.add_channel_correlation("layer", global_step=0, **kwargs)  # metadata event
            writer.flush()
            (path,) = Path(logdir).glob("events.out.tfevents.*")
            first = path.stat().st_size
            for step in range(1, steps + 1):
                writer.add_channel_correlation("layer", global_step=step, **kwargs)
            writer.close()
            grown = path.stat().st_size - first
        figures[name] = {
            "summary_bytes": len(summary.SerializeToString()),
            "event_file_bytes_per_step": round(grown / steps),
        }
    return figures


def bench_compute(channels: int, repeats: int) -> dict:
    g = torch.Generator().manual_seed(4)
    accumulator = CorrelationAccumulator()
    accumulator.update(torch.randn(4096, channels, generator=g), torch.randn(4096, channels))
    computes = [_timed(accumulator.compute) for _ in range(repeats)]
    matrix = accumulator.compute().matrix
    matchings = [_timed(lambda: match_channels(matrix)) for _ in range(repeats)]
    return {
        "channels": channels,
        "cross_compute_ms": round(median(computes) * 1e3, 2),
        "matching_ms": round(median(matchings) * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--samples", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--storage-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", help="JSON path (default: under benchmarks/results/)")
    args = parser.parse_args()
    if args.quick:
        args.channels, args.samples, args.repeats, args.storage_steps = [64, 512], [4096], 3, 3
    torch.set_num_threads(args.threads)

    results = []
    for channels in args.channels:
        for samples in args.samples:
            results.append(bench_update(channels, samples, "rows", False, args.repeats))
            results.append(bench_update(channels, samples, "nchw", False, args.repeats))
    for channels in (min(args.channels), max(args.channels)):
        results.append(bench_update(channels, max(args.samples), "nchw", True, args.repeats))
    print(
        table(
            [
                [
                    r["channels"],
                    r["samples"],
                    r["layout"] + (" cross" if r["cross"] else ""),
                    r["gram_ms"],
                    r["update_ms"],
                    r["ratio"],
                    r["ratio_per_repeat_median"],
                ]
                for r in results
            ],
            ["C", "samples", "layout", "X.T@X cpu ms", "update cpu ms", "ratio", "ratio/repeat"],
        )
    )
    within = [r for r in results if not r["cross"]]
    worst = max(within, key=lambda r: r["ratio"])
    print(
        f"\nworst within-layer ratio {worst['ratio']} (C={worst['channels']}, "
        f"S={worst['samples']}, {worst['layout']}); target <= {TARGET_RATIO}"
    )

    storage = bench_storage(512, args.storage_steps)
    for name in ("within_float16", "within_uint8", "cross_float16"):
        print(
            f"512 channels, {name}: {storage[name]['summary_bytes']:,} bytes a summary, "
            f"{storage[name]['event_file_bytes_per_step']:,} bytes of event file a step "
            f"(budget {BUDGET_BYTES_512:,})"
        )
    compute = bench_compute(512, args.repeats)
    print(
        f"512x512 cross: compute() {compute['cross_compute_ms']} ms, "
        f"matching {compute['matching_ms']} ms"
    )

    figures = {
        "benchmark": "correlation",
        "machine": machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "dtype": "float32",
        "clock": "process CPU time",
        "targets": {"update_over_gram": TARGET_RATIO, "bytes_per_step_512": BUDGET_BYTES_512},
        "worst_within_ratio": worst["ratio"],
        "accumulate": results,
        "storage": storage,
        "compute": compute,
    }
    name = "correlation_quick.json" if args.quick else "correlation.json"
    print("wrote", write_json(name, figures, args.out))


if __name__ == "__main__":
    main()
