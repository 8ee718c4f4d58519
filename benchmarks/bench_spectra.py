"""Singular value spectra on a ResNet-18-sized CNN (CPU): speed, training overhead, storage.

1. Spectra of all 21 weights of a CIFAR ResNet-18 (20 convolutions, 1 linear;
   the matrices out x in*kh*kw, from 64 x 27 to 512 x 4608):
     - direct: `torch.linalg.svdvals` called on each layer's matrix as the rule
       defines it (out x in*kh*kw), one call per layer — the target's baseline;
     - direct, tall: the same calls on each matrix's tall orientation (the
       transpose of a wide one; the same singular values), the fastest plain calls;
     - ours: `layer_spectra` (reshape, finiteness check, batching of equal
       shapes, svdvals, copy to the host);
     - ours + metrics + writing: what `watch()` does per measurement
       (`SpectraWatcher.measure`: the above, `spectrum_metrics` for each layer,
       and writing 21 events).
   Configurations take turns, repeat after repeat; medians. Target: ours within
   1.2x of direct.
2. Training overhead at the default `spectra_every`: a ResNet-18 trains (SGD,
   batch 32) under `watch()` with spectra every --measure-every steps (to get
   many measurements in a short run); the overhead at cadence k is one
   measurement's cost (the monitor's own `measurer_seconds`, and, as a check,
   a measuring step's time minus the median of the other steps) over k
   unmeasured steps. Target: <= 2% at the default.
3. Storage: the event file's growth per measurement of all layers, per
   singular value and the constant per layer-step; bytes per 1,000 steps at the
   default cadence. Target: <= 4 bytes a singular value plus a constant.

4. GPT-2-sized weights (--gpt2-blocks blocks of 768x2304, 768x768, 3072x768,
   768x3072, with the 50257x768 token embedding and the 1024x768 position
   embedding: 50 weights at 12 blocks): the longest single `SpectraWatcher.measure`
   call (what one optimizer step stalls for) and the total over the steps it takes
   to measure every layer, with no budget (everything in one call, torch's threads)
   and with the default budget and thread choice; each on a quiet machine and with
   a competing process (--competitors processes of 2-thread matmuls).

5. Big matrices (--only-big, results/spectra_big.json): a 50257 x 768 token
   embedding, a 3072 x 768 MLP and a 4096 x 4096 attention projection, random
   (a flat spectrum: the slowest case for the randomized paths), at 1 and 2
   threads: seconds of the full svdvals, of the top-k (randomized block Krylov)
   and of the norm-only path, their errors against the full SVD, and the
   coverage `layer_spectra(coverage="auto", time_budget=DEFAULT_TIME_BUDGET)` picks.
6. Batching per shape class (--only-big): ResNet-18's equal-shaped matrices in
   one batched svdvals call against one call per layer, at 1 and 2 threads,
   and section 1's ratios (layer_spectra over direct tall calls) at 1 and 2 threads.

    .venv/bin/python benchmarks/bench_spectra.py           # ~2-4 min on 2 cores
    .venv/bin/python benchmarks/bench_spectra.py --quick   # smoke run
    .venv/bin/python benchmarks/bench_spectra.py --only-big  # sections 5-6, ~5 min
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402
from resnet import resnet18  # noqa: E402

import deepscope  # noqa: E402
from deepscope.analysis import spectrum as sp  # noqa: E402
from deepscope.writer.watch_spectra import (  # noqa: E402
    DEFAULT_SPECTRA_EVERY,
    DEFAULT_TIME_BUDGET,
    SpectraWatcher,
)


def layer_matrices(model: torch.nn.Module) -> list[torch.Tensor]:
    """Each eligible layer's matrices [groups, rows, cols] as the rule defines them."""
    out = []
    for _, module in model.named_modules():
        layer = sp.module_weight(module)
        if layer is not None:
            matrices, _ = sp.weight_matrices(
                layer.weight, groups=layer.groups, layer_kind=layer.layer_kind
            )
            out.append(matrices)
    return out


def bench_speed(args, tmp: Path) -> dict:
    torch.manual_seed(0)
    model = resnet18()
    matrices = layer_matrices(model)
    layers = [sp.module_weight(m) for _, m in model.named_modules()]
    layers = [layer for layer in layers if layer is not None]
    tall = [m if m.shape[1] >= m.shape[2] else m.transpose(1, 2) for m in matrices]

    def direct():
        with torch.no_grad():
            for m in matrices:
                torch.linalg.svdvals(m)

    def direct_tall():
        with torch.no_grad():
            for m in tall:
                torch.linalg.svdvals(m)

    def ours():
        sp.layer_spectra(layers)

    writer = deepscope.SummaryWriter(str(tmp / "speed"))
    watcher = SpectraWatcher(
        model, writer, every=1, threads=torch.get_num_threads(), time_budget=None
    )
    step = [0]

    def ours_full():
        watcher.measure(step[0])
        step[0] += 1

    configs = {
        "direct svdvals (as defined, out x in*k)": direct,
        "direct svdvals (tall orientation)": direct_tall,
        "layer_spectra (ours)": ours,
        "ours + metrics + writing (watch)": ours_full,
    }
    for fn in configs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in configs}
    names = list(configs)
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            configs[name]()
            times[name].append(time.perf_counter() - t0)
    writer.close()
    ms = {name: round(median(v) * 1e3, 1) for name, v in times.items()}
    base, base_tall = median(times[names[0]]), median(times[names[1]])
    # metrics alone, for the breakdown
    spectra = sp.layer_spectra(layers)
    metric_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for s in spectra:
            sp.spectrum_metrics(s.singular_values, s.matrix_shape)
        metric_times.append(time.perf_counter() - t0)
    return {
        "layers": len(matrices),
        "matrix_shapes": [list(m.shape) for m in matrices],
        "singular_values_per_measurement": int(sum(s.singular_values.numel() for s in spectra)),
        "repeats": args.repeats,
        "median_ms": ms,
        "metrics_alone_ms": round(median(metric_times) * 1e3, 1),
        "ratio_ours_over_direct": round(median(times[names[2]]) / base, 3),
        "ratio_ours_over_direct_tall": round(median(times[names[2]]) / base_tall, 3),
        "ratio_full_over_direct": round(median(times[names[3]]) / base, 3),
        "ratio_full_over_direct_tall": round(median(times[names[3]]) / base_tall, 3),
        "target_ratio": 1.2,
    }


def bench_overhead(args, tmp: Path, operator: str | None = "norm") -> dict:
    """Training overhead of the spectra measurer (`operator`: its conv operator
    norms, "norm" by default, None for the im2col spectra alone)."""
    torch.manual_seed(0)
    model = resnet18()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    batches = [
        (torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))) for _ in range(4)
    ]
    writer = deepscope.SummaryWriter(str(tmp / f"overhead-{operator}"))
    k = args.measure_every
    # Update ratios measured once (step 0) only, no layer statistics: this isolates
    # the spectra's cost. No time budget: each due step measures every layer (with a
    # budget the same work is spread over the next steps, which this count would miss).
    monitor = deepscope.watch(
        model,
        optimizer,
        writer,
        every=10**9,
        spectra_every=k,
        spectra_options={"operator": operator, "time_budget": None},
        parameter_norms_every=None,
        layer_statistics_every=None,
    )
    step_seconds, measured, measure_seconds = [], [], []
    for i in range(args.warmup + args.train_steps):
        x, y = batches[i % len(batches)]
        before = monitor.stats.measurer_seconds["spectra"]
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        dt = time.perf_counter() - t0
        if i < args.warmup:
            continue
        cost = monitor.stats.measurer_seconds["spectra"] - before
        step_seconds.append(dt)
        # The cadence's steps (optimizer step i of the monitor); the others cost a few
        # microseconds of bookkeeping, which the median step time absorbs.
        due = i % k == 0
        measured.append(due)
        if due:
            measure_seconds.append(cost)
        if (i + 1) % 10 == 0:
            print(f"  step {i + 1}: {dt * 1e3:.0f} ms", flush=True)
    monitor.close()
    writer.close()
    errors = monitor.stats.errors + monitor.measurers["spectra"].stats.errors
    if errors:
        raise RuntimeError(errors[0])
    plain = [s for s, m in zip(step_seconds, measured) if not m]
    with_measure = [s for s, m in zip(step_seconds, measured) if m]
    t_step = median(plain)
    t_measure = median(measure_seconds)
    t_measure_timed = median(with_measure) - t_step
    result = {
        "batch": args.batch,
        "timed_steps": len(step_seconds),
        "measurements": len(measure_seconds),
        "step_ms_unmeasured": round(t_step * 1e3, 1),
        "measurement_ms_monitor": round(t_measure * 1e3, 1),
        "measurement_ms_timed_step_difference": round(t_measure_timed * 1e3, 1),
        "measurement_in_training_steps": round(t_measure / t_step, 3),
        "operator": operator,
        "overhead_by_every": {},
        "target": 0.02,
    }
    for every in sorted({50, 100, DEFAULT_SPECTRA_EVERY, 500, 1000}):
        result["overhead_by_every"][str(every)] = {
            "monitor": round(t_measure / (every * t_step), 5),
            "timed": round(t_measure_timed / (every * t_step), 5),
        }
    result["overhead_at_default"] = result["overhead_by_every"][str(DEFAULT_SPECTRA_EVERY)]
    return result


def bench_storage(args, tmp: Path) -> dict:
    torch.manual_seed(0)
    model = resnet18()
    logdir = tmp / "storage"
    writer = deepscope.SummaryWriter(str(logdir))
    watcher = SpectraWatcher(model, writer, every=1)

    def size() -> int:
        writer.flush()
        return sum(p.stat().st_size for p in logdir.glob("events.out.tfevents.*"))

    watcher.measure(0)  # the first measurement carries every tag's metadata
    first = size()
    n = args.storage_measurements
    for s in range(1, n + 1):
        watcher.measure(s * DEFAULT_SPECTRA_EVERY)
    per_measurement = (size() - first) / n
    writer.close()
    layers = len(watcher.layers())
    values = sum(
        s.singular_values.numel() for s in sp.layer_spectra([lw for _, lw in watcher.layers()])
    )
    constant = (per_measurement - 4 * values) / layers
    return {
        "layers": layers,
        "singular_values_per_measurement": values,
        "bytes_first_measurement_with_metadata": first,
        "bytes_per_measurement": round(per_measurement, 1),
        "bytes_per_singular_value_all_included": round(per_measurement / values, 3),
        "bytes_per_singular_value_stored": 4,
        "constant_bytes_per_layer_step": round(constant, 1),
        "default_every": DEFAULT_SPECTRA_EVERY,
        "bytes_per_1000_steps_at_default": round(per_measurement * 1000 / DEFAULT_SPECTRA_EVERY),
    }


class Gpt2Weights(torch.nn.Module):
    """GPT-2 small's 2-D weights at full width (as Linear/Embedding; no forward needed)."""

    def __init__(self, blocks: int, vocab: int = 50257, width: int = 768):
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, width)
        self.wpe = torch.nn.Embedding(1024, width)
        self.h = torch.nn.ModuleList(
            torch.nn.ModuleDict(
                {
                    "c_attn": torch.nn.Linear(width, 3 * width),
                    "attn_proj": torch.nn.Linear(width, width),
                    "c_fc": torch.nn.Linear(width, 4 * width),
                    "mlp_proj": torch.nn.Linear(4 * width, width),
                }
            )
            for _ in range(blocks)
        )


def _compete(stop, threads: int) -> None:
    """A competing process: matmuls on `threads` threads until `stop` is set."""
    torch.set_num_threads(threads)
    a = torch.randn(1024, 1024)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def _one_round(model, writer, budget, threads, steps_limit: int = 1000) -> dict:
    """Measure every layer once through SpectraWatcher; per-call seconds."""
    watcher = SpectraWatcher(model, writer, every=steps_limit, time_budget=budget, threads=threads)
    calls = []
    step = 0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-6)  # a changed weight: nothing is skipped as unchanged
    while True:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            watcher.measure(step)
        calls.append(time.perf_counter() - t0)
        step += 1
        if not watcher.stats.pending_count or step >= steps_limit:
            break
    return {
        "calls": len(calls),
        "longest_call_s": round(max(calls), 3),
        "total_s": round(sum(calls), 3),
        "threads": watcher.stats.threads,
        "spectra": watcher.stats.spectra,
    }


def bench_budget(args, tmp: Path) -> dict:
    import multiprocessing

    torch.manual_seed(0)
    model = Gpt2Weights(args.gpt2_blocks)
    writer = deepscope.SummaryWriter(str(tmp / "budget"))
    result = {
        "gpt2_blocks": args.gpt2_blocks,
        "weights": 2 + 4 * args.gpt2_blocks,
        "budget_s": DEFAULT_TIME_BUDGET,
        "competitors": args.competitors,
    }
    for load in ("quiet", "competing"):
        stop = multiprocessing.Event()
        procs = []
        if load == "competing":
            procs = [
                multiprocessing.Process(target=_compete, args=(stop, 2), daemon=True)
                for _ in range(args.competitors)
            ]
            for proc in procs:
                proc.start()
            time.sleep(args.load_warmup)  # let the load average see them
        try:
            for case, budget, threads in (
                ("no budget", None, torch.get_num_threads()),
                ("budget, threads chosen", DEFAULT_TIME_BUDGET, None),
            ):
                figures = _one_round(model, writer, budget, threads)
                result[f"{load}: {case}"] = figures
                print(f"  {load}, {case}: {figures}", flush=True)
        finally:
            stop.set()
            for proc in procs:
                proc.join(timeout=10)
    writer.close()
    for load in ("quiet", "competing"):
        whole = result[f"{load}: no budget"]["longest_call_s"]
        spread = result[f"{load}: budget, threads chosen"]["longest_call_s"]
        result[f"{load}: longest stall, no budget / budget"] = round(whole / spread, 2)
    return result


BIG_SHAPES = {
    "token embedding 50257x768": (50257, 768),
    "MLP 3072x768": (3072, 768),
    "attention projection 4096x4096": (4096, 4096),
}


def bench_big(args) -> dict:
    """Section 5: the three big shapes, each path, 1 and 2 threads (one timing each)."""
    result: dict = {"shapes": {}, "budget_s": DEFAULT_TIME_BUDGET}
    shapes = BIG_SHAPES if not args.quick else {"MLP 3072x768": (3072, 768)}
    for name, shape in shapes.items():
        torch.manual_seed(0)
        weight = torch.randn(*shape) / shape[1] ** 0.5
        entry: dict = {
            "units_full": sp.svd_cost_units(shape, "full"),
            "auto_coverage_with_default_budget": sp.choose_coverage(
                shape, time_budget=DEFAULT_TIME_BUDGET, costs=sp.SpectrumCosts()
            ),
        }
        reference = None
        for threads in args.big_threads:
            torch.set_num_threads(threads)
            figures: dict = {}
            t0 = time.perf_counter()
            full = torch.linalg.svdvals(weight if shape[0] >= shape[1] else weight.T)
            figures["full_s"] = round(time.perf_counter() - t0, 3)
            reference = full.double() if reference is None else reference
            for coverage in ("top_k", "norm_only"):
                t0 = time.perf_counter()
                spectrum = sp.layer_spectrum(weight, coverage=coverage)
                seconds = time.perf_counter() - t0
                values = spectrum.singular_values[0].double()
                error = (values - reference[: values.numel()]) / reference[: values.numel()]
                figures[f"{coverage}_s"] = round(seconds, 3)
                figures[f"{coverage}_iterations"] = spectrum.iterations
                figures[f"{coverage}_sigma_max_rel_error"] = float(f"{float(error[0]):.2e}")
                figures[f"{coverage}_worst_rel_error"] = float(f"{float(error.abs().max()):.2e}")
                figures[f"full_over_{coverage}"] = round(figures["full_s"] / seconds, 2)
            entry[f"threads={threads}"] = figures
            print(f"  {name}, {threads} thread(s): {figures}", flush=True)
        result["shapes"][name] = entry
    torch.set_num_threads(args.threads)
    return result


def bench_batching(args) -> dict:
    """Section 6: per ResNet-18 shape class, batched against per-layer svdvals, and the
    layer_spectra / direct ratios, at 1 and 2 threads."""
    torch.manual_seed(0)
    model = resnet18()
    classes: dict[tuple, list[torch.Tensor]] = {}
    for m in layer_matrices(model):
        tall = m if m.shape[1] >= m.shape[2] else m.mT
        classes.setdefault(tuple(tall.shape[1:]), []).append(tall)
    result: dict = {"classes": {}, "speed": {}}
    for threads in args.big_threads:
        torch.set_num_threads(threads)
        for shape, items in classes.items():
            if len(items) < 2:
                continue
            batched, single = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                torch.linalg.svdvals(torch.cat([m.mT for m in items]).mT)
                batched.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for m in items:
                    torch.linalg.svdvals(m)
                single.append(time.perf_counter() - t0)
            key = f"{shape[0]}x{shape[1]} ({len(items)} layers)"
            entry = result["classes"].setdefault(key, {})
            entry[f"threads={threads}"] = {
                "batched_ms": round(median(batched) * 1e3, 2),
                "per_layer_ms": round(median(single) * 1e3, 2),
                "batched_over_per_layer": round(median(batched) / median(single), 3),
                "layer_spectra_batches_it": sp.batches_equal_shapes("cpu", *shape),
            }
        with tempfile.TemporaryDirectory(prefix="deepscope-bench-spectra-") as tmp:
            speed = bench_speed(args, Path(tmp))
        result["speed"][f"threads={threads}"] = {
            k: speed[k]
            for k in (
                "median_ms",
                "ratio_ours_over_direct",
                "ratio_ours_over_direct_tall",
                "ratio_full_over_direct_tall",
            )
        }
        print(f"  {threads} thread(s): {result['speed'][f'threads={threads}']}", flush=True)
    torch.set_num_threads(args.threads)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--measure-every", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--storage-measurements", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--gpt2-blocks", type=int, default=12)
    parser.add_argument("--competitors", type=int, default=1)
    parser.add_argument("--load-warmup", type=float, default=20.0, help="seconds")
    parser.add_argument(
        "--only-budget", action="store_true", help="run section 4 (GPT-2 budget) alone"
    )
    parser.add_argument(
        "--only-big", action="store_true", help="run sections 5-6 (big matrices, batching) alone"
    )
    parser.add_argument(
        "--only-overhead",
        action="store_true",
        help="run section 2 (training overhead) alone, with and without conv operator norms",
    )
    parser.add_argument("--big-threads", default="1,2", help="thread counts of sections 5-6")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/spectra.json)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.train_steps, args.warmup, args.storage_measurements = 2, 6, 1, 2
        args.measure_every = 3
        args.gpt2_blocks, args.load_warmup = 1, 2.0
    args.big_threads = [int(t) for t in args.big_threads.split(",")]
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    figures = {
        "benchmark": "spectra",
        "machine": machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "default_spectra_every": DEFAULT_SPECTRA_EVERY,
        "quick": args.quick,
    }
    if args.only_big:
        print("5. big matrices ...", flush=True)
        figures["big"] = bench_big(args)
        print("6. batching per shape class ...", flush=True)
        figures["batching"] = bench_batching(args)
        name = "spectra_big_quick.json" if args.quick else "spectra_big.json"
        print(f"\nwrote {write_json(name, figures, args.out)}")
        return
    if args.only_overhead:
        with tempfile.TemporaryDirectory(prefix="deepscope-bench-spectra-") as tmp:
            for operator in ("norm", None):
                print(f"2. training overhead, operator={operator} ...", flush=True)
                figures[f"overhead_operator_{operator}"] = o = bench_overhead(
                    args, Path(tmp), operator
                )
                print(
                    f"   step {o['step_ms_unmeasured']} ms, measurement "
                    f"{o['measurement_ms_monitor']} ms: "
                    f"{o['overhead_at_default']['monitor'] * 100:.2f}% at every="
                    f"{DEFAULT_SPECTRA_EVERY}"
                )
        name = "spectra_overhead_quick.json" if args.quick else "spectra_overhead.json"
        print(f"\nwrote {write_json(name, figures, args.out)}")
        return
    if args.only_budget:
        with tempfile.TemporaryDirectory(prefix="deepscope-bench-spectra-") as tmp:
            print("4. GPT-2-sized weights under a time budget ...", flush=True)
            figures["budget"] = bench_budget(args, Path(tmp))
        name = "spectra_budget_quick.json" if args.quick else "spectra_budget.json"
        print(f"\nwrote {write_json(name, figures, args.out)}")
        return
    with tempfile.TemporaryDirectory(prefix="deepscope-bench-spectra-") as tmp:
        print("1. spectra of all layers ...", flush=True)
        figures["speed"] = speed = bench_speed(args, Path(tmp))
        print("2. training overhead ...", flush=True)
        figures["overhead"] = overhead = bench_overhead(args, Path(tmp))
        print("3. storage ...", flush=True)
        figures["storage"] = storage = bench_storage(args, Path(tmp))
        print("4. GPT-2-sized weights under a time budget ...", flush=True)
        figures["budget"] = bench_budget(args, Path(tmp))

    print()
    rows = [[name, f"{v:.1f}"] for name, v in speed["median_ms"].items()]
    print(table(rows, ["all 21 layers of a ResNet-18", "median ms"]))
    print(
        f"ours / direct: {speed['ratio_ours_over_direct']:.2f}x "
        f"(tall: {speed['ratio_ours_over_direct_tall']:.2f}x); with metrics and writing: "
        f"{speed['ratio_full_over_direct']:.2f}x "
        f"(tall: {speed['ratio_full_over_direct_tall']:.2f}x); target <= 1.2x; "
        f"metrics alone {speed['metrics_alone_ms']} ms"
    )
    print(
        f"\ntraining step {overhead['step_ms_unmeasured']} ms; one measurement "
        f"{overhead['measurement_ms_monitor']} ms (monitor), "
        f"{overhead['measurement_ms_timed_step_difference']} ms (step difference)"
    )
    rows = [
        [every, f"{o['monitor'] * 100:.2f}%", f"{o['timed'] * 100:.2f}%"]
        for every, o in overhead["overhead_by_every"].items()
    ]
    print(table(rows, ["spectra_every", "overhead (monitor)", "overhead (timed)"]))
    print(
        f"\nstorage: {storage['bytes_per_measurement']:.0f} bytes per measurement of "
        f"{storage['singular_values_per_measurement']} singular values: 4 bytes each + "
        f"{storage['constant_bytes_per_layer_step']:.0f} bytes per layer-step; "
        f"{storage['bytes_per_1000_steps_at_default'] / 1e3:.0f} kB per 1,000 steps at "
        f"spectra_every={DEFAULT_SPECTRA_EVERY}"
    )
    path = write_json(
        "spectra_quick.json" if args.quick and not args.out else "spectra.json", figures, args.out
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
