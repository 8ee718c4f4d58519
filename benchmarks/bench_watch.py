"""Training-step overhead of `deepscope.watch()` on a ResNet-18-sized CNN (CPU).

Trains a CIFAR-style ResNet-18 (11.2M parameters in 62 tensors, 3x32x32
inputs, 10 classes, batch 32) and times forward + backward + optimizer step
with no monitor, with `watch(every=1)` and with `watch()` at its default
cadence (`DEFAULT_EVERY`).

Noise control (the machine is shared; step times swing by a factor of
several under others' load): one model and one optimizer for all
configurations, which take turns step by step (windows of --window steps, the
order rotating each round) after a warm-up, so that each monitored step is
compared with an unmonitored step taken moments before or after it. The timed
overhead is the median over rounds of (monitored window / unmonitored window
- 1). A configuration's monitor lives for one window and is rebuilt for the
next with `start_step` carried over, so the cadence runs on across windows as
in one long run; building and closing it (which flushes the writer) is not
timed.

At cadence k only one step in k measures, too rare to time directly in a
short run: its timed overhead is that of the steps that do not measure
(paired as above) plus 1/k of the every=1 overhead.

`monitor.stats.hook_seconds` (host seconds spent inside the hooks) gives a
second, far less noisy figure, on which the verdict rests: per monitored step,
hook seconds over the rest of the same step (median); at cadence k, 1/k of
that plus the cheap hooks of the steps that do not measure. Finally the parts
of one measurement are timed alone.

On a CPU shared with other processes, every multi-threaded op waits for
descheduled OpenMP threads: the optimizer step and the measurement (both
hundreds of small per-tensor ops) then slow down far more than the
convolutions, and the hook time grows from ~17 ms to ~300 ms.

    .venv/bin/python benchmarks/bench_watch.py            # ~3-8 min on 2 cores
    .venv/bin/python benchmarks/bench_watch.py --quick    # smoke run, ~1 min
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402
from resnet import resnet18  # noqa: E402

import deepscope  # noqa: E402
from deepscope.analysis import update_ratios as ratios_math  # noqa: E402
from deepscope.writer.watch_update_ratios import DEFAULT_EVERY  # noqa: E402

QUIET = 1.3  # a "quiet" window ran within 1.3x its configuration's fastest window


def make_optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    raise ValueError(name)


def bootstrap_ci90(ratios: list[float], shift: float = 0.0) -> list[float]:
    """90% bootstrap interval of the median of per-round ratios (plus a constant shift)."""
    if len(ratios) < 2:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(0)
    samples = rng.choice(np.asarray(ratios), size=(2000, len(ratios)), replace=True)
    lo, hi = np.percentile(np.median(samples, axis=1), [5, 95])
    return [round(float(lo + shift), 4), round(float(hi + shift), 4)]


def window_means_at(records, r: int) -> float:
    return float(np.mean([s for rr, s, _, _ in records if rr == r]))


def train_step(model, optimizer, x, y) -> float:
    """One training step; returns the seconds `optimizer.step()` took (hooks included)."""
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    t0 = time.perf_counter()
    optimizer.step()
    return time.perf_counter() - t0


def run_optimizer(opt_name: str, args, tmp: Path) -> dict:
    torch.manual_seed(0)
    model = resnet18()
    model.train()
    optimizer = make_optimizer(opt_name, model)
    batches = [
        (torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))) for _ in range(4)
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    configs = [("off", None), ("every=1", 1), (f"every={DEFAULT_EVERY}", DEFAULT_EVERY)]
    writers = {
        name: deepscope.SummaryWriter(str(tmp / f"{opt_name}-{name}"))
        for name, every in configs
        if every
    }
    done = {name: 0 for name, _ in configs}  # steps run under each configuration
    it = 0

    def next_batch():
        nonlocal it
        it += 1
        return batches[it % len(batches)]

    # Warm-up: unmonitored steps, then a few monitored ones through a throwaway
    # writer (first-call paths: allocator, protobuf, the event file).
    for _ in range(args.warmup):
        train_step(model, optimizer, *next_batch())
    with deepscope.SummaryWriter(str(tmp / f"{opt_name}-warmup")) as warm_writer:
        with deepscope.watch(model, optimizer, warm_writer, every=1, spectra_every=None):
            for _ in range(max(2, args.warmup // 2)):
                train_step(model, optimizer, *next_batch())

    rounds = max(1, args.steps // args.window)
    # records[name]: (round, seconds, measured, hook seconds) per timed step
    records: dict[str, list[tuple[int, float, bool, float]]] = {name: [] for name, _ in configs}
    opt_step_seconds: dict[str, list[float]] = {name: [] for name, _ in configs}
    t_start = time.perf_counter()
    for r in range(rounds):
        order = configs[r % len(configs) :] + configs[: r % len(configs)]
        for name, every in order:
            monitor = None
            if every:
                # Update ratios alone: bench_spectra.py measures the spectra's cost.
                monitor = deepscope.watch(
                    model,
                    optimizer,
                    writers[name],
                    measure=[deepscope.UpdateRatios(every=every)],
                    start_step=done[name],
                )
            for _ in range(args.window):
                x, y = next_batch()
                h0 = monitor.stats.hook_seconds if monitor else 0.0
                m0 = monitor.stats.measurements if monitor else 0
                t0 = time.perf_counter()
                opt_step_seconds[name].append(train_step(model, optimizer, x, y))
                dt = time.perf_counter() - t0
                measured = bool(monitor and monitor.stats.measurements > m0)
                hook = (monitor.stats.hook_seconds - h0) if monitor else 0.0
                records[name].append((r, dt, measured, hook))
                done[name] += 1
            if monitor:
                monitor.close()
                if monitor.stats.errors:
                    raise RuntimeError(monitor.stats.errors[0])
        if (r + 1) % max(1, rounds // 6) == 0 or r + 1 == rounds:
            print(
                f"  [{opt_name}] round {r + 1}/{rounds}: "
                + ", ".join(
                    f"{name} {window_means_at(records[name], r) * 1e3:.0f} ms"
                    for name, _ in configs
                ),
                flush=True,
            )
    timed_seconds = time.perf_counter() - t_start
    for w in writers.values():
        w.close()

    # --- figures ---------------------------------------------------------------
    def window_means(name, measured=None):
        out = {}
        for r in range(rounds):
            xs = [
                s
                for rr, s, m, _ in records[name]
                if rr == r and (measured is None or m == measured)
            ]
            if xs:
                out[r] = float(np.mean(xs))
        return out

    off = window_means("off")
    t_off = median(off.values())
    result = {
        "optimizer": opt_name,
        "parameters": n_params,
        "parameter_tensors": len(params),
        "batch": args.batch,
        "rounds": rounds,
        "window_steps": args.window,
        "timed_steps_per_config": rounds * args.window,
        "timed_seconds": round(timed_seconds, 1),
        "step_ms": {"off": round(t_off * 1e3, 2)},
        # median seconds of optimizer.step() alone, the hooks included: where the
        # monitor's cost lands, and far less noisy than the whole step
        "optimizer_step_ms": {
            name: round(median(v) * 1e3, 2) for name, v in opt_step_seconds.items()
        },
        # spread of the unmonitored windows: the resolution of the direct figures
        "off_window_spread_iqr_over_median": round(
            float(np.subtract(*np.percentile(list(off.values()), [75, 25])) / t_off), 4
        ),
        "configs": {},
    }

    def paired(name, measured=None, quiet_only=False):
        """Per round: this configuration's window mean over the unmonitored one, minus 1.

        quiet_only keeps the rounds in which both windows ran within QUIET x their
        configuration's fastest window (others' load makes step times bimodal).
        """
        own = window_means(name, measured)
        rounds_ = [r for r in off if r in own]
        if quiet_only and rounds_:
            fast_off, fast_own = min(off.values()), min(own.values())
            rounds_ = [
                r for r in rounds_ if off[r] <= QUIET * fast_off and own[r] <= QUIET * fast_own
            ]
        return [own[r] / off[r] - 1 for r in rounds_]

    def hook_shares(name, measured):
        """Per step: hook seconds over the rest of the same step (paired within the step)."""
        return [h / (s - h) for _, s, m, h in records[name] if m == measured]

    every1 = paired("every=1")
    every1_quiet = paired("every=1", quiet_only=True)
    share1 = hook_shares("every=1", True)
    hooks1 = [h for _, _, m, h in records["every=1"] if m]
    for name, every in configs[1:]:
        measured_steps = [s for _, s, m, _ in records[name] if m]
        hooks_unmeasured = [h for _, _, m, h in records[name] if not m]
        if every == 1:
            overhead, overhead_quiet = median(every1), median(every1_quiet)
            n_quiet = len(every1_quiet)
            hook_overhead = median(share1)
            t_est = median(window_means(name).values())
        else:
            # The steps that did not measure, paired with unmonitored ones, plus
            # 1/k of what a measuring step costs (taken from every=1: many samples;
            # at cadence k a short run holds too few measuring steps to time).
            quiet = paired(name, measured=False, quiet_only=True)
            overhead = median(paired(name, measured=False)) + median(every1) / every
            overhead_quiet = median(quiet) + median(every1_quiet) / every
            n_quiet = len(quiet)
            hook_overhead = median(share1) / every + median(hook_shares(name, False))
            t_est = t_off * (1 + overhead)
        ci90 = bootstrap_ci90(
            every1 if every == 1 else paired(name, measured=False),
            shift=0.0 if every == 1 else median(every1) / every,
        )
        result["step_ms"][name] = round(t_est * 1e3, 2)
        result["configs"][name] = {
            "every": every,
            "measurements_in_timed_steps": len(measured_steps),
            "step_ms_estimate": round(t_est * 1e3, 2),
            "overhead_timed": round(overhead, 4),
            # 90% bootstrap interval of the median: the resolution of the timed figure
            "overhead_timed_ci90": ci90,
            "overhead_timed_per_round_iqr": [
                round(float(q), 4) for q in np.percentile(paired(name), [25, 75])
            ],
            "overhead_timed_quiet_rounds": round(overhead_quiet, 4),
            "quiet_rounds": n_quiet,
            "hook_overhead": round(hook_overhead, 5),
            "hook_ms_per_other_step": round(float(np.mean(hooks_unmeasured)) * 1e3, 4)
            if hooks_unmeasured
            else None,
        }
    result["hook_ms_per_measurement"] = {
        "median": round(median(hooks1) * 1e3, 2),
        "p25": round(float(np.percentile(hooks1, 25)) * 1e3, 2),
        "p75": round(float(np.percentile(hooks1, 75)) * 1e3, 2),
        "mean": round(float(np.mean(hooks1)) * 1e3, 2),
        "hook_seconds/measurements, every=1": round(sum(hooks1) / max(1, len(hooks1)) * 1e3, 2),
    }

    # --- where one measurement's time goes (each part alone, median of repeats) ---
    parts: dict[str, list[float]] = {
        "snapshot (copy weights)": [],
        "frobenius_norms(before)": [],
        "measure_update (sub + norms + sum|dW| + divide)": [],
        "writer._add_update_ratio_values": [],
        "optimizer.step() itself": [],
    }
    names = [f"p{i}" for i in range(len(params))]
    values = np.full(len(params), 1e-3, dtype=np.float32)
    with deepscope.SummaryWriter(str(tmp / f"{opt_name}-parts")) as w:
        for k in range(args.part_repeats):
            t0 = time.perf_counter()
            before = ratios_math.snapshot(params)
            t1 = time.perf_counter()
            norms = ratios_math.frobenius_norms(before)
            t2 = time.perf_counter()
            ratios_math.measure_update(before, params, norms)
            t3 = time.perf_counter()
            w._add_update_ratio_values("update_ratios", names, values, (), global_step=k)
            t4 = time.perf_counter()
            optimizer.step()  # the gradients of the last timed step are still there
            t5 = time.perf_counter()
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                parts[key].append(dt)
            del before
    result["measurement_parts_ms"] = {k: round(median(v) * 1e3, 3) for k, v in parts.items()}
    result["weights_mb"] = round(n_params * 4 / 1e6, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per configuration")
    parser.add_argument("--window", type=int, default=1, help="steps per interleaved window")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--optimizer", choices=["sgd", "adamw", "both"], default="sgd")
    parser.add_argument("--part-repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/watch.json)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.window, args.warmup, args.part_repeats = 4, 1, 2, 3
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")

    optimizers = ["sgd", "adamw"] if args.optimizer == "both" else [args.optimizer]
    figures = {
        "benchmark": "watch",
        "machine": machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "default_every": DEFAULT_EVERY,
        "quick": args.quick,
        "targets": {"every=1": 0.10, f"every={DEFAULT_EVERY}": 0.01},
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="deepscope-bench-watch-") as tmp:
        for name in optimizers:
            figures["results"].append(run_optimizer(name, args, Path(tmp)))

    rows = []
    for res in figures["results"]:
        rows.append([f"{res['optimizer']} off", f"{res['step_ms']['off']:.0f}", "", "", "", ""])
        for name, c in res["configs"].items():
            target = figures["targets"][name]
            # the verdict rests on the hook figure: the timed ones carry the machine's noise
            worst = c["hook_overhead"]
            rows.append(
                [
                    f"{res['optimizer']} {name}",
                    f"{c['step_ms_estimate']:.0f}",
                    f"{c['overhead_timed'] * 100:+.2f}% "
                    f"[{c['overhead_timed_ci90'][0] * 100:+.1f}, "
                    f"{c['overhead_timed_ci90'][1] * 100:+.1f}]",
                    f"{c['hook_overhead'] * 100:.3f}%",
                    f"{'met' if worst <= target else 'MISSED'} (<= {target:.0%})",
                ]
            )
    print()
    print(
        table(
            rows,
            [
                "configuration",
                "step ms",
                "overhead (timed) [90% CI]",
                "overhead (hook)",
                "target",
            ],
        )
    )
    for res in figures["results"]:
        print(
            f"\n[{res['optimizer']}] spread of unmonitored windows (IQR/median): "
            f"{res['off_window_spread_iqr_over_median']:.1%}; one measurement, part by part "
            f"({res['weights_mb']} MB of weights):"
        )
        h = res["hook_ms_per_measurement"]
        print(
            f"  hook ms per measurement (every=1): median {h['median']}, "
            f"IQR {h['p25']}-{h['p75']}, mean {h['mean']}"
        )
        print(
            "  optimizer.step() alone, median ms (hooks included): "
            + ", ".join(f"{k} {v:.1f}" for k, v in res["optimizer_step_ms"].items())
        )
        for k, v in res["measurement_parts_ms"].items():
            print(f"  {k:40s} {v:8.2f} ms")
    path = write_json(
        "watch_quick.json" if args.quick and not args.out else "watch.json", figures, args.out
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
