"""Layer statistics: what they cost a training step, the covariance spectrum, and storage.

1. ResNet-18 (CIFAR-style, benchmarks/resnet.py; CPU, batch 32, SGD): a step
   with no monitor, with `ParameterNorms(every=1)` (gradient and weight norms
   of all 62 parameters at every step), with `LayerStats(every=1)` without
   covariances (every step a measured step: the hooks on all leaf modules in
   the forward pass, the statistics, one host copy, the event) and with
   `LayerStats(every=1, covariance_every=1)` (a covariance step: co-moments
   and eigenvalues too). The configurations take turns step by step, the
   order rotating each round (so each is compared with an unmonitored step
   taken moments before or after it; the machine is shared); a
   configuration's monitor lives for one step and is rebuilt with its
   `start_step` carried over (building and closing it is not timed). Figures
   are medians over rounds of (configuration's step / unmonitored step − 1).
   A second, far less noisy figure comes from the measurers' own clocks:
   `ParameterNorms`' hook seconds, and `LayerStats.last_seconds` (its hooks
   inside the forward pass, statistics, eigenvalues, host copy), each over the
   unmonitored step of the same round.
   Amortised at the default cadence (DEFAULT_LAYER_STATISTICS_EVERY, covariance
   at DEFAULT_COVARIANCE_EVERY): a measured step's overhead / every + a
   covariance step's extra / covariance_every (the steps between carry no hook).
2. Covariance spectrum: `covariance_eigenvalues_many` on the channel
   co-moments of every ResNet-18 layer output against `torch.linalg.eigvalsh`
   on the same covariance matrices (each matrix alone, float64), median of repeats.
3. Storage: bytes of an activation step per row and of a parameter step per
   row, on a 200-layer GPT-style stack built here (18 blocks of 11 leaf
   modules + 5); and a default `watch()` on it for 1,000 steps (every
   cadence measures at least once: update ratios and parameter norms every
   50, spectra every 200, activation statistics every 100, covariances every
   1000), event-file bytes per series scaled to 10,000 steps.

    .venv/bin/python benchmarks/bench_layer_statistics.py           # ~5-10 min on 2 cores
    .venv/bin/python benchmarks/bench_layer_statistics.py --quick   # smoke run
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
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402
from resnet import resnet18  # noqa: E402

import deepscope  # noqa: E402
from deepscope.analysis import layer_statistics as ls  # noqa: E402
from deepscope.writer.layer_statistics import LayerStatisticsSummaries  # noqa: E402
from deepscope.writer.watch_layer_statistics import (  # noqa: E402
    DEFAULT_COVARIANCE_EVERY,
    DEFAULT_LAYER_STATISTICS_EVERY,
    DEFAULT_PARAMETER_NORMS_EVERY,
    LayerStats,
    ParameterNorms,
)

TARGETS = {
    "parameter_norms_every_step": 0.02,
    "activation_statistics_measured_step": 0.10,
    "activation_statistics_amortised": 0.01,
    "eigen_vs_eigvalsh": 1.2,
    "default_watch_mb_per_10000_steps": 50.0,
}


def _writer_class():
    if hasattr(deepscope.SummaryWriter, "add_layer_statistics"):
        return deepscope.SummaryWriter

    class Writer(LayerStatisticsSummaries, deepscope.SummaryWriter):
        pass

    return Writer


Writer = _writer_class()


def train_step(model, optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


# --------------------------------------------------------------------------- 1. step cost


def step_costs(args, tmp: Path) -> dict:
    torch.manual_seed(0)
    model = resnet18()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    batches = [
        (torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))) for _ in range(4)
    ]
    configs = {
        "off": None,
        "parameter_norms": lambda: [ParameterNorms(every=1)],
        "activations": lambda: [LayerStats(every=1, covariance_every=None)],
        "activations+covariance": lambda: [LayerStats(every=1, covariance_every=1)],
    }
    writers = {name: Writer(str(tmp / name)) for name, make in configs.items() if make}
    done = dict.fromkeys(configs, 0)
    it = 0

    def next_batch():
        nonlocal it
        it += 1
        return batches[it % len(batches)]

    for _ in range(args.warmup):
        train_step(model, optimizer, *next_batch())
    # seconds[name][round], own[name][round]: the step, and the measurer's own clock
    seconds: dict[str, dict[int, float]] = {name: {} for name in configs}
    own: dict[str, dict[int, float]] = {name: {} for name in configs}
    names = list(configs)
    rows = None
    for r in range(args.rounds + 1):  # round 0: warm-up of every configuration, not kept
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            make = configs[name]
            monitor = None
            if make:
                monitor = deepscope.watch(
                    model, optimizer, writers[name], measure=make(), start_step=done[name]
                )
            x, y = next_batch()
            h0 = monitor.stats.hook_seconds if monitor else 0.0
            t0 = time.perf_counter()
            train_step(model, optimizer, x, y)
            dt = time.perf_counter() - t0
            if monitor is not None:
                measurer = next(iter(monitor.measurers.values()))
                if isinstance(measurer, LayerStats):
                    clock = measurer.last_seconds
                    rows = len(measurer.names)
                else:
                    clock = monitor.stats.hook_seconds - h0
                monitor.close()
                if monitor.stats.errors:
                    raise RuntimeError(monitor.stats.errors[0])
                own[name][r] = clock
            done[name] += 1
            if r:
                seconds[name][r] = dt
        if r and (r % max(1, args.rounds // 5) == 0 or r == args.rounds):
            print(
                f"  round {r}/{args.rounds}: "
                + ", ".join(f"{n} {seconds[n][r] * 1e3:.0f} ms" for n in names),
                flush=True,
            )
    for w in writers.values():
        w.close()
    off = seconds["off"]
    result = {
        "model": "ResNet-18 (CIFAR, 11.2M parameters in 62 tensors)",
        "batch": args.batch,
        "rounds": args.rounds,
        "rows_per_measurement": rows,
        "step_ms_off": round(median(off.values()) * 1e3, 1),
        "configs": {},
    }
    for name in names[1:]:
        timed = [seconds[name][r] / off[r] - 1 for r in off]
        clocked = [own[name][r] / off[r] for r in off if r in own[name]]
        result["configs"][name] = {
            "step_ms": round(median(seconds[name].values()) * 1e3, 1),
            "overhead_timed": round(median(timed), 4),
            "overhead_timed_iqr": [round(float(q), 4) for q in np.percentile(timed, [25, 75])],
            "overhead_own_clock": round(median(clocked), 4),
            "own_clock_ms": round(median(own[name].values()) * 1e3, 2),
        }
    c = result["configs"]
    measured = c["activations"]["overhead_own_clock"]
    covariance_extra = max(0.0, c["activations+covariance"]["overhead_own_clock"] - measured)
    result["amortised_default"] = {
        "every": DEFAULT_LAYER_STATISTICS_EVERY,
        "covariance_every": DEFAULT_COVARIANCE_EVERY,
        "overhead_own_clock": round(
            measured / DEFAULT_LAYER_STATISTICS_EVERY + covariance_extra / DEFAULT_COVARIANCE_EVERY,
            5,
        ),
        "overhead_timed": round(
            c["activations"]["overhead_timed"] / DEFAULT_LAYER_STATISTICS_EVERY
            + max(
                0.0,
                c["activations+covariance"]["overhead_timed"] - c["activations"]["overhead_timed"],
            )
            / DEFAULT_COVARIANCE_EVERY,
            5,
        ),
    }
    result["parameter_norms_default"] = {
        "every": DEFAULT_PARAMETER_NORMS_EVERY,
        "overhead_own_clock": round(
            c["parameter_norms"]["overhead_own_clock"] / DEFAULT_PARAMETER_NORMS_EVERY, 6
        ),
    }
    return result


# --------------------------------------------------------------------------- 2. eigenvalues


def eigen_costs(args) -> dict:
    torch.manual_seed(0)
    model = resnet18().eval()
    x = torch.randn(args.batch, 3, 32, 32)
    found: list[ls.CovarianceSums] = []

    def hook(module, inputs, output):
        found.append(ls.covariance_sums(output, ls.channel_dim_of(output, module)))

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if next(m.children(), None) is None
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    matrices = []
    for s in found:
        m = s.comoment / s.count.to(torch.float64)
        matrices.append((m + m.T) / 2)
    ours, theirs = [], []
    for _ in range(args.eigen_repeats):
        t0 = time.perf_counter()
        ls.covariance_eigenvalues_many(found)
        t1 = time.perf_counter()
        for m in matrices:
            torch.linalg.eigvalsh(m)
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        theirs.append(t2 - t1)
    sizes = sorted({s.channels for s in found})
    return {
        "matrices": len(found),
        "channel_sizes": sizes,
        "ours_ms": round(median(ours) * 1e3, 2),
        "eigvalsh_ms": round(median(theirs) * 1e3, 2),
        "ratio": round(median(ours) / median(theirs), 3),
        "ratio_per_repeat_iqr": [
            round(float(q), 3) for q in np.percentile(np.array(ours) / np.array(theirs), [25, 75])
        ],
    }


# --------------------------------------------------------------------------- 3. storage


class Block(nn.Module):
    """A GPT-2 block: 11 leaf modules."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(hidden)
        self.c_attn = nn.Linear(hidden, 3 * hidden)
        self.attn_proj = nn.Linear(hidden, hidden)
        self.attn_dropout = nn.Dropout(0.1)
        self.resid_dropout = nn.Dropout(0.1)
        self.ln_2 = nn.LayerNorm(hidden)
        self.c_fc = nn.Linear(hidden, 4 * hidden)
        self.act = nn.GELU()
        self.mlp_proj = nn.Linear(4 * hidden, hidden)
        self.mlp_dropout = nn.Dropout(0.1)
        self.out = nn.Identity()

    def forward(self, x):
        n, length, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (
            t.view(n, length, self.heads, c // self.heads).transpose(1, 2) for t in (q, k, v)
        )
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = self.attn_dropout(a.transpose(1, 2).reshape(n, length, c))
        x = x + self.resid_dropout(self.attn_proj(a))
        x = x + self.mlp_dropout(self.mlp_proj(self.act(self.c_fc(self.ln_2(x)))))
        return self.out(x)


class GPT(nn.Module):
    def __init__(self, blocks: int = 18, hidden: int = 128, heads: int = 4, vocab: int = 512):
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(64, hidden)
        self.drop = nn.Dropout(0.1)
        self.h = nn.ModuleList(Block(hidden, heads) for _ in range(blocks))
        self.ln_f = nn.LayerNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, ids):
        x = self.drop(self.wte(ids) + self.wpe(torch.arange(ids.shape[1])))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _bytes_by_tag(logdir: Path) -> dict[str, tuple[int, int]]:
    """tag → (events, bytes of their records on disk: the serialized event + 16 framing)."""
    from tensorboard.backend.event_processing import event_file_loader

    found: dict[str, list[int]] = {}
    for path in sorted(logdir.rglob("events.out.tfevents.*")):
        for event in event_file_loader.LegacyEventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            tag = event.summary.value[0].tag if event.summary.value else ""
            entry = found.setdefault(tag, [0, 0])
            entry[0] += 1
            entry[1] += event.ByteSize() + 16
    return {tag: (n, b) for tag, (n, b) in found.items()}


def storage(args, tmp: Path) -> dict:
    torch.manual_seed(0)
    model = GPT(blocks=args.blocks, hidden=args.hidden)
    leaves = sum(1 for m in model.modules() if next(m.children(), None) is None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 512, (4, 16))
    logdir = tmp / "gpt"
    writer = Writer(str(logdir))
    t0 = time.perf_counter()
    with deepscope.watch(model, optimizer, writer) as monitor:
        measurers = {name: m.every for name, m in monitor.measurers.items()}
        for step in range(args.storage_steps):
            optimizer.zero_grad(set_to_none=True)
            logits = model(ids[:, :-1])
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).backward()
            optimizer.step()
            if (step + 1) % max(1, args.storage_steps // 5) == 0:
                print(f"  storage: step {step + 1}/{args.storage_steps}", flush=True)
    writer.close()
    seconds = time.perf_counter() - t0
    if monitor.stats.errors:
        raise RuntimeError(monitor.stats.errors[0])
    by_tag = _bytes_by_tag(logdir)
    scale = 10_000 / args.storage_steps
    series: dict[str, dict] = {}
    for tag, (events, size) in sorted(by_tag.items()):
        group = tag.split("/")[0] if tag.startswith(("spectra/", "spectrum/")) else tag
        entry = series.setdefault(group, {"events": 0, "bytes": 0})
        entry["events"] += events
        entry["bytes"] += size
    total = sum(entry["bytes"] for entry in series.values())
    activations = by_tag.get("layer_statistics/activations", (0, 0))
    parameters = by_tag.get("layer_statistics/parameters", (0, 0))
    # Bytes per row of one step: the activation steps without and with eigenvalues.
    rows = len(monitor.measurers["layer_statistics"].names)
    params = len(monitor.measurers["parameter_norms"].names)
    one = _one_step_bytes(monitor, rows)
    return {
        "model": f"GPT-style stack: {args.blocks} blocks, hidden {args.hidden}, "
        f"{leaves} leaf modules, {params} parameter tensors, batch 4 x 15 tokens",
        "leaf_modules": leaves,
        "activation_rows": rows,
        "parameter_rows": params,
        "steps": args.storage_steps,
        "seconds": round(seconds, 1),
        "measurers": measurers,
        "series": {
            name: {
                "events": entry["events"],
                "bytes": entry["bytes"],
                "mb_per_10000_steps": round(entry["bytes"] * scale / 1e6, 3),
            }
            for name, entry in series.items()
        },
        "bytes_per_activation_row_step": round(one["activation_row"], 1),
        "bytes_per_activation_row_step_with_eigenvalues": round(one["activation_row_eigen"], 1),
        "bytes_per_parameter_row_step": round(parameters[1] / max(1, parameters[0]) / params, 1),
        "activation_events_bytes_mean": round(activations[1] / max(1, activations[0])),
        "default_watch_mb_per_10000_steps": round(total * scale / 1e6, 2),
    }


def _one_step_bytes(monitor, rows: int) -> dict:
    """Bytes per row of an activation step without and with eigenvalues (the serialized step)."""
    from deepscope.writer.layer_statistics import ActivationRows, layer_statistics_step

    measurer = monitor.measurers["layer_statistics"]
    names = measurer.names
    values = np.random.default_rng(0).random((rows, len(ls.STATISTICS)))
    plain = layer_statistics_step(ActivationRows(names, values, types=["Linear"] * rows))
    eig = [np.sort(np.random.default_rng(i).random(128))[::-1] for i in range(rows)]
    with_eig = layer_statistics_step(
        ActivationRows(names, values, types=["Linear"] * rows, eigenvalues=eig)
    )
    return {
        "activation_row": plain.ByteSize() / rows,
        "activation_row_eigen": with_eig.ByteSize() / rows,
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eigen-repeats", type=int, default=7)
    parser.add_argument("--blocks", type=int, default=18)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--storage-steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument(
        "--out", help="JSON path (default benchmarks/results/layer_statistics.json)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.warmup, args.eigen_repeats, args.storage_steps = 3, 1, 2, 101
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    figures = {
        "benchmark": "layer_statistics",
        "machine": machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="deepscope-bench-layer-statistics-") as tmp:
        print("1. step costs (ResNet-18)")
        figures["step"] = step_costs(args, Path(tmp))
        print("2. covariance eigenvalues")
        figures["eigen"] = eigen_costs(args)
        print("3. storage (200-layer transformer, default watch())")
        figures["storage"] = storage(args, Path(tmp))

    s, e, st = figures["step"], figures["eigen"], figures["storage"]
    c = s["configs"]

    def verdict(value, target, lower=True):
        return "met" if (value <= target if lower else value >= target) else "MISSED"

    rows = [
        [
            "gradient + weight norms, every step",
            f"{c['parameter_norms']['overhead_own_clock']:.2%}",
            f"{c['parameter_norms']['overhead_timed']:+.2%}",
            f"<= {TARGETS['parameter_norms_every_step']:.0%}",
            verdict(
                c["parameter_norms"]["overhead_own_clock"], TARGETS["parameter_norms_every_step"]
            ),
        ],
        [
            "activation statistics, measured step",
            f"{c['activations']['overhead_own_clock']:.2%}",
            f"{c['activations']['overhead_timed']:+.2%}",
            f"<= {TARGETS['activation_statistics_measured_step']:.0%}",
            verdict(
                c["activations"]["overhead_own_clock"],
                TARGETS["activation_statistics_measured_step"],
            ),
        ],
        [
            "... covariance step (eigenvalues too)",
            f"{c['activations+covariance']['overhead_own_clock']:.2%}",
            f"{c['activations+covariance']['overhead_timed']:+.2%}",
            "",
            "",
        ],
        [
            f"activation statistics, amortised (every {DEFAULT_LAYER_STATISTICS_EVERY}, "
            f"covariance every {DEFAULT_COVARIANCE_EVERY})",
            f"{s['amortised_default']['overhead_own_clock']:.3%}",
            f"{s['amortised_default']['overhead_timed']:+.3%}",
            f"<= {TARGETS['activation_statistics_amortised']:.0%}",
            verdict(
                s["amortised_default"]["overhead_own_clock"],
                TARGETS["activation_statistics_amortised"],
            ),
        ],
        [
            "covariance eigenvalues / torch.linalg.eigvalsh",
            f"{e['ratio']:.2f}x",
            "",
            f"<= {TARGETS['eigen_vs_eigvalsh']}x",
            verdict(e["ratio"], TARGETS["eigen_vs_eigvalsh"]),
        ],
        [
            "default watch() on the 200-layer transformer",
            f"{st['default_watch_mb_per_10000_steps']:.1f} MB / 10k steps",
            "",
            f"<= {TARGETS['default_watch_mb_per_10000_steps']:.0f} MB",
            verdict(
                st["default_watch_mb_per_10000_steps"], TARGETS["default_watch_mb_per_10000_steps"]
            ),
        ],
    ]
    print()
    print(table(rows, ["what", "cost (own clock)", "cost (timed step)", "target", ""]))
    print(
        f"\nResNet-18 step (off): {s['step_ms_off']} ms; rows per measurement: "
        f"{s['rows_per_measurement']}; eigen: ours {e['ours_ms']} ms, eigvalsh "
        f"{e['eigvalsh_ms']} ms on {e['matrices']} matrices"
    )
    print(
        f"storage: {st['bytes_per_activation_row_step']} B per activation row-step "
        f"({st['bytes_per_activation_row_step_with_eigenvalues']} B with 128 eigenvalues), "
        f"{st['bytes_per_parameter_row_step']} B per parameter row-step"
    )
    for name, entry in st["series"].items():
        print(
            f"  {name:40s} {entry['events']:5d} events  {entry['mb_per_10000_steps']:8.3f} MB/10k"
        )
    path = write_json(
        "layer_statistics_quick.json" if args.quick and not args.out else "layer_statistics.json",
        figures,
        args.out,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
