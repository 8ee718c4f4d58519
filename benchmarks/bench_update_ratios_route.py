"""Storage and read speed of update-ratio series, up to a real TensorBoard.

1. Storage: writes a synthetic 10,000-logged-step x 60-parameter series with
   `deepscope.SummaryWriter.add_update_ratio_block` (blocks of 10 as watch()
   writes; no training) and a 1,000-step one (a 10,000-step run logged
   every 10); reports the event file size and bytes per logged step. Then the default `watch()` on a
   ResNet-18-sized model (62 parameter tensors): bytes written per 1,000
   optimizer steps (gradients are fixed, no forward/backward: only the
   optimizer steps and the monitor run).
2. In process: `update_ratio_routes.read_update_ratios` over a `MultiplexerDataProvider`
   (built as TensorBoard's Python loader builds it) and the route's handler,
   stage by stage: find_series (listing), read_tensors (TensorBoard),
   decoding (ours), building the body, json.dumps, gzip level 1 + Respond (the plugin's).
3. Real `tensorboard` processes, `--load_fast=false` (Python loader) and
   `--load_fast=true` (Rust data server), each with the plugin's default
   samples and with `--samples_per_plugin=deepscope=0` (all): waits until the
   route returns every kept step, then times
   `GET /data/plugin/deepscope/update_ratios?run=R&tag=T&format=base64|json`
   with `Accept-Encoding: gzip` (median of --requests after warm-up).

    .venv/bin/python benchmarks/bench_update_ratios_route.py           # ~3-5 min on 2 cores
    .venv/bin/python benchmarks/bench_update_ratios_route.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The parts: update_ratio_storage.py (writing the series, watch()'s bytes),
# update_ratio_in_process.py (the route's stages without HTTP),
# update_ratio_served.py (real tensorboard processes, tests/tensorboard_process.py).
from _common import machine, table, write_json  # noqa: E402
from update_ratio_in_process import build_nodelay_shim, in_process, in_process_rust  # noqa: E402
from update_ratio_served import with_tensorboard  # noqa: E402
from update_ratio_storage import TARGET_FILE_BYTES, storage_figures, watch_storage  # noqa: E402

from deepscope.tb_plugin.loader import DEFAULT_SAMPLES  # noqa: E402

TARGET_ROUTE_MS = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000, help="logged steps of the big run")
    parser.add_argument("--params", type=int, default=60)
    parser.add_argument("--small-every", type=int, default=10, help="small run: every Nth step")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="in-process repeats per stage")
    parser.add_argument("--watch-steps", type=int, default=1000)
    parser.add_argument("--load-timeout", type=float, default=300)
    parser.add_argument("--no-tensorboard", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the handler in process")
    parser.add_argument(
        "--nodelay-shim",
        action="store_true",
        help="also run the Rust data server with TCP_NODELAY forced (LD_PRELOAD, needs gcc)",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", help="JSON path (default: under benchmarks/results/)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.requests, args.warmup, args.repeats, args.watch_steps = 1000, 3, 1, 3, 100
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        pass

    figures = {
        "benchmark": "update_ratios_route",
        "machine": machine(),
        "quick": args.quick,
        "targets": {"event_file_bytes": TARGET_FILE_BYTES, "route_ms": TARGET_ROUTE_MS},
    }
    with tempfile.TemporaryDirectory(prefix="deepscope-bench-route-") as tmp_name:
        tmp = Path(tmp_name)
        print("writing the series ...", flush=True)
        figures["storage"] = storage_figures(tmp, args)
        print("default watch() storage ...", flush=True)
        figures["watch_storage"] = watch_storage(tmp, args.watch_steps)
        logdir = tmp / "logs"
        expected = {
            "big": (args.steps, args.steps - 1),
            "small": (
                len(range(0, args.steps, args.small_every)),
                range(0, args.steps, args.small_every)[-1],
            ),
        }
        print("in process (Python loader's provider) ...", flush=True)
        figures["in_process"] = [
            in_process(logdir, samples, list(expected), args.repeats, args.profile)
            for samples in (0, DEFAULT_SAMPLES)
        ]
        print("in process (Rust data server over gRPC) ...", flush=True)
        shim = build_nodelay_shim(tmp) if args.nodelay_shim else None
        figures["in_process_rust"] = [
            in_process_rust(logdir, samples, expected, args.repeats)
            for samples in (0, DEFAULT_SAMPLES)
        ]
        if shim:
            figures["in_process_rust"].append(
                in_process_rust(logdir, 0, expected, args.repeats, preload=shim)
            )
        if not args.no_tensorboard:
            figures["tensorboard"] = with_tensorboard(logdir, args, expected, tmp, shim)

    report(figures)
    name = "update_ratios_route_quick.json" if args.quick else "update_ratios_route.json"
    path = write_json(name, figures, args.out)
    print(f"\nwrote {path}")


def report(figures: dict) -> None:
    storage = figures["storage"]
    rows = []
    for run, s in storage["runs"].items():
        ok = s["event_file_bytes"] < TARGET_FILE_BYTES
        rows.append(
            [
                f"{run}: {s['logged_steps']} steps x {s['params']} params",
                f"{s['event_file_bytes'] / 1e6:.2f} MB",
                f"{s['bytes_per_logged_step']:.0f}",
                f"{s['write_us_per_step']:.0f}",
                f"{'met' if ok else 'MISSED'} (< {TARGET_FILE_BYTES / 1e6:.0f} MB)",
            ]
        )
    print()
    print(table(rows, ["series", "event file", "bytes/step", "write us/step", "target"]))
    w = figures["watch_storage"]
    print(
        f"\ndefault watch() (every={w['every']}, {w['parameter_tensors']} tensors): "
        f"{w['bytes_per_1000_steps']:,} bytes per 1,000 steps "
        f"({w['measurements']} measurements in {w['optimizer_steps']} steps; first event "
        f"{w['first_event_bytes']} B with the metadata, then "
        f"{w['bytes_per_measurement_after_first']} B each)"
    )
    for ip in figures["in_process"]:
        print(
            f"\nin process, samples={ip['samples'] or 'all'} (Python loader reload "
            f"{ip['python_loader_reload_s']} s):"
        )
        rows = []
        for run, r in ip["runs"].items():
            for k, v in r["stages_ms"].items():
                rows.append([f"{run} ({r['steps_returned']} steps)", k, f"{v:.1f}"])
            for fmt, f in r["formats"].items():
                for k, v in f["stages_ms"].items():
                    rows.append([f"{run} {fmt}", k, f"{v:.1f}"])
                rows.append(
                    [
                        f"{run} {fmt}",
                        "response bytes json / sent",
                        f"{f['json_bytes']:,} / {f['sent_bytes']:,}",
                    ]
                )
        print(table(rows, ["series", "stage", "ms"]))
    for ip in figures.get("in_process_rust", []):
        shim_note = " (TCP_NODELAY shim)" if ip["tcp_nodelay_shim"] else ""
        print(
            f"\nin process, Rust data server over gRPC, samples={ip['samples'] or 'all'}"
            f"{shim_note}:"
        )
        rows = []
        for run, r in ip["runs"].items():
            for k, v in r["stages_ms"].items():
                rows.append([f"{run} ({r['steps_returned']} steps)", k, f"{v:.1f}"])
        print(table(rows, ["series", "stage", "ms"]))
    if "tensorboard" in figures:
        rows = []
        for tb in figures["tensorboard"]:
            for key, r in tb["routes"].items():
                rows.append(
                    [
                        f"load_fast={str(tb['load_fast']).lower()}"
                        + (" +nodelay" if tb["tcp_nodelay_shim"] else ""),
                        tb["samples_per_plugin"],
                        key,
                        r["steps"],
                        f"{r['median_ms']:.0f}",
                        f"{r['wire_bytes'] / 1e3:,.0f} kB",
                        f"{'met' if r['median_ms'] <= TARGET_ROUTE_MS else 'MISSED'}",
                    ]
                )
        print("\nreal tensorboard, GET update_ratios (Accept-Encoding: gzip), median:")
        print(
            table(
                rows,
                [
                    "loader",
                    "samples",
                    "run/format",
                    "steps",
                    "ms",
                    "sent body",
                    f"<= {TARGET_ROUTE_MS:.0f} ms",
                ],
            )
        )
        for tb in figures["tensorboard"]:
            print(
                f"  load_fast={str(tb['load_fast']).lower()} samples={tb['samples_per_plugin']}"
                + (" +nodelay" if tb["tcp_nodelay_shim"] else "")
                + f": tags listed after {tb['listed_s']} s, all steps after {tb['loaded_s']} s"
            )


if __name__ == "__main__":
    main()
