"""watch() under torch.distributed: what the defaults cost DDP, and what FSDP2 moves.

1. Overhead of `watch()`'s defaults (update ratios and gradient/weight norms
   every 50 steps, activation statistics every 100, spectra every 200) on
   ResNet-18 (benchmarks/resnet.py, 3x32x32, batch 8 per process, SGD, one
   intra-op thread per process), in one process and under DDP on 2 gloo
   processes (this machine's 2 cores), each against the same training
   without a monitor. Each configuration runs `--steps` optimizer steps;
   rank 0 times every step and its monitor's hook seconds. A step no
   measurer is due at costs its hooks' few microseconds, so the overhead is
   taken where it is paid: the measured steps' extra seconds over the same
   run's median unmeasured step (far less noisy than a difference of two
   totals on a shared machine; see `_overhead`), over the run's time. The
   unmonitored runs give the plain step time for reference.
   Target: the DDP overhead within 1.5x the single-process one.
2. FSDP2 update ratios (fully_shard on every ResNet-18 block and the root, 2
   gloo processes): bytes this rank hands to the update ratios' collectives
   per measurement, per parameter tensor, with `UpdateRatios(every=1)` alone
   and beside `ParameterNorms(every=1)` (as watch()'s defaults run them: the
   ratios reuse the norms' ‖W‖²), against the bytes a gathered copy of the
   weights would move.

    .venv/bin/python benchmarks/bench_distributed.py            # ~6 min on 2 cores
    .venv/bin/python benchmarks/bench_distributed.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common

from tests.distributed.ranks import run_ranks

BATCH = 8
MEASURED_EVERY = 50  # every default cadence is a multiple of this


def _train(rank: int, world: int, out: str, steps: int, monitored: bool) -> None:
    """One rank's run: time every optimizer step; rank 0 saves the times (and the monitor's)."""
    import torch

    import deepscope
    from benchmarks.resnet import resnet18

    torch.manual_seed(0)
    model = resnet18()
    trained = model if world == 1 else torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.01, momentum=0.9)
    writer = monitor = None
    if monitored:
        log_dir = Path(out).parent / f"logs_{world}"
        writer = deepscope.SummaryWriter(str(log_dir)) if rank == 0 else None
        monitor = deepscope.watch(trained, optimizer, writer)
    generator = torch.Generator().manual_seed(rank)
    x = torch.randn(BATCH, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (BATCH,), generator=generator)
    times, hooks = [], []
    for _ in range(steps + 1):  # one warm-up step, not counted
        began = time.perf_counter()
        hooked = monitor.stats.hook_seconds if monitor else 0.0
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(trained(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - began)
        hooks.append((monitor.stats.hook_seconds if monitor else 0.0) - hooked)
    errors = []
    if monitor is not None:
        monitor.close()
        errors = monitor.stats.errors
        writer and writer.close()
    if rank == 0:
        Path(out).write_text(json.dumps({"times": times[1:], "hooks": hooks[1:], "errors": errors}))


def _overhead(run: dict, plain: list[float]) -> dict:
    """The monitor's share of training time (see the module doc), from rank 0's step times.

    Measured steps: the cadence's (every default cadence is a multiple of
    MEASURED_EVERY) and those whose optimizer hooks took over a millisecond
    (spectra carried over within their time budget). Their cost is their time
    over the median unmeasured step of the same run (the same load on a shared
    machine); an unmeasured step's cost is its hooks' own seconds.
    """
    times, hooks = run["times"], run["hooks"]
    # The warm-up was the monitor's step 0: times[i] is global step i + 1.
    measured = {i for i in range(len(times)) if (i + 1) % MEASURED_EVERY == 0 or hooks[i] > 1e-3}
    unmeasured = [i for i in range(len(times)) if i not in measured]
    base = statistics.median(times[i] for i in unmeasured)
    extra = sum(times[i] - base for i in measured) + sum(hooks[i] for i in unmeasured)
    return {
        "overhead": extra / (base * len(times)),
        "median_unmeasured_step_seconds": base,
        "median_unmonitored_step_seconds": statistics.median(plain),
        "measured_steps": len(measured),
        "measured_steps_extra_seconds": sum(times[i] - base for i in measured),
    }


def _fsdp_bytes(rank: int, world: int, out: str) -> None:
    import torch
    from torch.distributed.fsdp import fully_shard

    import deepscope
    from benchmarks.resnet import resnet18

    torch.manual_seed(0)
    model = resnet18()
    for block in [
        m for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for m in layer
    ]:
        fully_shard(block)
    fully_shard(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, 10, (BATCH,))
    found, errors = {}, []
    # Update ratios alone, and with the parameter norms of the same steps (watch()'s
    # defaults), whose ‖W‖² they reuse.
    for name, measure in (
        ("alone", [deepscope.UpdateRatios(every=1)]),
        (
            "with_parameter_norms",
            [deepscope.UpdateRatios(every=1), deepscope.ParameterNorms(every=1)],
        ),
    ):
        log_dir = Path(out).parent / f"fsdp_{name}"
        writer = deepscope.SummaryWriter(str(log_dir)) if rank == 0 else None
        monitor = deepscope.watch(model, optimizer, writer, measure=measure)
        sent = []
        for _ in range(3):
            before = monitor.ranks.bytes_by_what.get("update ratios", 0)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            sent.append(monitor.ranks.bytes_by_what["update ratios"] - before)
        monitor.close()
        if writer is not None:
            writer.close()
        found[name] = sent
        errors += monitor.stats.errors
    params = list(model.parameters())
    if rank == 0:
        Path(out).write_text(
            json.dumps(
                {
                    "update_ratio_bytes_per_measurement": found,
                    "parameter_tensors": len(params),
                    "gathered_weight_bytes": sum(p.numel() * p.element_size() for p in params),
                    "errors": errors,
                }
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 steps")
    args = parser.parse_args()
    steps = 100 if args.quick else args.steps
    results: dict = {"machine": _common.machine(), "steps": steps, "batch_per_process": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for world in (1, 2):
            for monitored in (False, True):
                out = Path(tmp) / f"w{world}_{int(monitored)}.json"
                began = time.perf_counter()
                run_ranks(_train, world, str(out), steps, monitored, timeout=3600)
                runs[(world, monitored)] = json.loads(out.read_text())
                print(
                    f"world {world} monitored={monitored}: {time.perf_counter() - began:.0f} s",
                    file=sys.stderr,
                )
        for run in runs.values():
            assert not run["errors"], run["errors"]
        single = _overhead(runs[(1, True)], runs[(1, False)]["times"])
        ddp = _overhead(runs[(2, True)], runs[(2, False)]["times"])
        results["single_process"] = single
        results["ddp_2_processes"] = ddp
        results["ddp_over_single_overhead"] = ddp["overhead"] / single["overhead"]
        out = Path(tmp) / "fsdp.json"
        run_ranks(_fsdp_bytes, 2, str(out), timeout=600)
        fsdp = json.loads(out.read_text())
        assert not fsdp["errors"], fsdp["errors"]
        for name, sent in fsdp["update_ratio_bytes_per_measurement"].items():
            per_measurement = statistics.median(sent)
            fsdp[f"bytes_per_parameter_tensor_{name}"] = per_measurement / fsdp["parameter_tensors"]
            fsdp[f"gathered_over_sent_{name}"] = fsdp["gathered_weight_bytes"] / per_measurement
        results["fsdp2_update_ratios"] = fsdp
    _common.write_json("distributed.json", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
