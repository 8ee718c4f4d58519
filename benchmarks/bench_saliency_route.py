"""Storage and read speed of saliency series, through a real TensorBoard.

1. Storage: `SummaryWriter.add_saliency` writes synthetic series (no training):
   "mnist", 16 probe digits of 1×28×28, and "cifar", 32 probe images of 3×32×32,
   each over --steps logged steps; reports bytes per logged step.
2. Real `tensorboard` processes, `--load_fast=false` (Python loader) and
   `--load_fast=true` (Rust data server): waits until every step is listed,
   then times (median over --requests requests)
   - `saliency_steps?run&tag` (one listing and one cached blob read),
   - `saliency?...&step=S&samples=0-7` on steps not read before (cold: listing and
     one blob read) and again on one step (warm: the decoded step is cached),
   - `saliency?...&step=S` with the default 16 samples (cold),
   and the response sizes.

    .venv/bin/python benchmarks/bench_saliency_route.py            # ~1-2 min on 2 cores
    .venv/bin/python benchmarks/bench_saliency_route.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402

import deepscope  # noqa: E402
from tests.tensorboard_process import TensorBoard  # noqa: E402

TAG = "saliency/gradient"
RUNS = {"mnist": (16, (1, 28, 28)), "cifar": (32, (3, 32, 32))}


def write_logdir(root: Path, steps: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for run, (n, shape) in RUNS.items():
        writer = deepscope.SummaryWriter(str(root / run))
        inputs = rng.uniform(0, 1, (n, *shape)).astype(np.float32)
        labels = rng.integers(0, 10, n)
        for step in range(steps):
            maps = rng.standard_normal((n, *shape)).astype(np.float32) * 1e-2
            writer.add_saliency(
                TAG, inputs, maps, global_step=step * 100, labels=labels, predictions=labels
            )
        writer.close()
        size = sum(f.stat().st_size for f in (root / run).glob("events.out.tfevents.*"))
        out[run] = {
            "probe": [n, *shape],
            "logged_steps": steps,
            "event_file_bytes": size,
            "bytes_per_logged_step": round(size / steps),
            "raw_float16_bytes_per_step": 2 * 2 * n * int(np.prod(shape)),
        }
    return out


def _get(tb: TensorBoard, path: str) -> bytes:
    """The body of a deepscope route that must answer 200 (no Accept-Encoding: not gzipped)."""
    status, body = tb.get(path, timeout=60)
    if status != 200:
        raise RuntimeError(f"{path} -> {status}: {body[:300]!r}")
    return body


def _time(tb: TensorBoard, path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    body = _get(tb, path)
    return (time.perf_counter() - t0) * 1e3, len(body)


def serve(logdir: Path, load_fast: bool, steps: int, requests: int) -> dict:
    with TensorBoard(logdir, load_fast) as tb:
        deadline = time.monotonic() + 180
        for run in RUNS:
            while True:
                try:
                    status, body = tb.get(f"saliency_steps?run={run}&tag={TAG}", timeout=60)
                    if status == 200 and len(json.loads(body)["steps"]) == steps:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"tensorboard never listed {steps} steps of {run}")
                time.sleep(0.5)
        out = {}
        for run in RUNS:
            q = f"run={run}&tag={TAG}"
            listing = [_time(tb, f"saliency_steps?{q}") for _ in range(requests)]
            cold_steps = [100 * s for s in range(min(steps, requests))]
            cold = [_time(tb, f"saliency?{q}&step={s}&samples=0-7") for s in cold_steps]
            warm = [_time(tb, f"saliency?{q}&step=0&samples=0-7") for _ in range(requests)]
            # Other steps than the ones read above: cold again.
            full_steps = [100 * (steps - 1 - s) for s in range(min(steps // 2, requests))]
            full = [_time(tb, f"saliency?{q}&step={s}") for s in full_steps]
            out[run] = {
                "steps_ms": round(median(t for t, _ in listing), 1),
                "maps_8_samples_cold_ms": round(median(t for t, _ in cold), 1),
                "maps_8_samples_warm_ms": round(median(t for t, _ in warm), 1),
                "maps_16_samples_cold_ms": round(median(t for t, _ in full), 1),
                "maps_8_samples_bytes": cold[0][1],
                "maps_16_samples_bytes": full[0][1],
            }
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.requests = 20, 5
    figures = {"machine": machine(), "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        figures["storage"] = write_logdir(root, args.steps)
        figures["routes"] = {}
        for load_fast in (False, True):
            name = f"load_fast={'true' if load_fast else 'false'}"
            figures["routes"][name] = serve(root, load_fast, args.steps, args.requests)
    rows = []
    for loader, runs in figures["routes"].items():
        for run, f in runs.items():
            rows.append(
                [
                    loader,
                    run,
                    f["steps_ms"],
                    f["maps_8_samples_cold_ms"],
                    f["maps_8_samples_warm_ms"],
                    f["maps_16_samples_cold_ms"],
                    f["maps_16_samples_bytes"],
                ]
            )
    print(
        table(
            rows,
            ["loader", "run", "steps ms", "8 cold ms", "8 warm ms", "16 cold ms", "16 bytes"],
        )
    )
    for run, s in figures["storage"].items():
        print(f"{run}: {s['bytes_per_logged_step']} bytes per logged step ({s['probe']})")
    name = "saliency_route_quick.json" if args.quick else "saliency_route.json"
    print("wrote", write_json(name, figures, args.out))


if __name__ == "__main__":
    main()
