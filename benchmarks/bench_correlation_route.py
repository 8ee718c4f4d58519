"""The correlation matrix route on a 2048-channel layer: time and payload, both loaders.

1. Writes, with `deepscope.SummaryWriter.add_channel_correlation`, a within-layer
   series of a 2048-channel layer (--steps logged steps; synthetic activations
   with 32 latent groups, --samples samples per step) and a 2048 × 2048
   cross-network series (one step, with its matching). float16 matrices: 8 MiB a step.
2. In process (a `MultiplexerDataProvider` built as TensorBoard's Python loader
   builds it; the route's werkzeug app, no HTTP): the overview (size=256, block
   means) cold (a new plugin, so nothing cached: list + read blob + decode +
   reduce) and warm (decoded step cached), per order; a zoomed 256 × 256 window
   at full resolution.
3. Real `tensorboard` processes, `--load_fast=false` and `--load_fast=true`:
   `GET /data/plugin/deepscope/correlation_matrix?...&size=256` with a browser's
   Accept-Encoding. Cold: the first request for each logged step; warm: the
   median of --requests repeats of one step.

    .venv/bin/python benchmarks/bench_correlation_route.py           # ~3 min on 2 cores
    .venv/bin/python benchmarks/bench_correlation_route.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402

from deepscope import metadata  # noqa: E402
from tests.tensorboard_process import TensorBoard, decode_body, http_get  # noqa: E402

CHANNELS = 2048
WITHIN, CROSS = "correlation/layer4", "compare/layer4"
RUN = "run"
TARGET_MS = 200.0
TARGET_BYTES = 1_000_000


# --------------------------------------------------------------------------- writing


def write_series(logdir: Path, steps: int, samples: int) -> dict:
    import torch

    import deepscope

    torch.manual_seed(0)
    groups = torch.randint(0, 32, (CHANNELS,))
    writer = deepscope.SummaryWriter(str(logdir / RUN))
    t0 = time.perf_counter()
    for step in range(steps):
        latent = torch.randn(samples, 32)
        acts = latent[:, groups] + 0.7 * torch.randn(samples, CHANNELS)
        writer.add_channel_correlation(WITHIN, acts, global_step=step)
    within_s = (time.perf_counter() - t0) / steps
    latent = torch.randn(samples, 32)
    a = latent[:, groups] + 0.7 * torch.randn(samples, CHANNELS)
    b = latent[:, groups[torch.randperm(CHANNELS)]] + 0.7 * torch.randn(samples, CHANNELS)
    t0 = time.perf_counter()
    writer.add_channel_correlation(CROSS, a, other=b, global_step=0, row_name="a", col_name="b")
    cross_s = time.perf_counter() - t0
    writer.close()
    size = sum(f.stat().st_size for f in (logdir / RUN).glob("events.out.tfevents.*"))
    return {
        "channels": CHANNELS,
        "within_steps": steps,
        "samples_per_step": samples,
        "event_file_bytes": size,
        "add_channel_correlation_s (within, 2048 ch)": round(within_s, 2),
        "add_channel_correlation_s (cross, with matching)": round(cross_s, 2),
    }


# --------------------------------------------------------------------------- in process


def make_provider(logdir: Path):
    from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
    from tensorboard.backend.event_processing import data_provider as dp

    guidance = dict(data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE)
    guidance[metadata.PLUGIN_NAME] = 0
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE, tensor_size_guidance=guidance
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return dp.MultiplexerDataProvider(multiplexer, str(logdir))


def _plugin_app(provider):
    from tensorboard.backend import application
    from tensorboard.plugins import base_plugin

    from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin

    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    return application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)


def _call(app, query: dict) -> tuple[float, int, dict]:
    from werkzeug.test import Client

    client = Client(app)
    t0 = time.perf_counter()
    response = client.get(
        "/data/plugin/deepscope/correlation_matrix",
        query_string=query,
        headers={"Accept-Encoding": "gzip, deflate, br"},
    )
    body = response.get_data()
    seconds = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"{query} -> {response.status_code}: {body[:300]!r}")
    return seconds, len(body), json.loads(body)


def in_process(logdir: Path, steps: int, repeats: int) -> dict:
    provider = make_provider(logdir)
    cases = {
        "overview original": {"tag": WITHIN, "order": "original"},
        "overview clustered": {"tag": WITHIN, "order": "clustered"},
        "overview matched (cross)": {"tag": CROSS, "order": "matched"},
        "zoom 256x256 window, full resolution": {
            "tag": WITHIN,
            "order": "original",
            "row_start": 512,
            "row_end": 768,
            "col_start": 1024,
            "col_end": 1280,
        },
    }
    out = {}
    for name, case in cases.items():
        step_list = list(range(steps)) if case["tag"] == WITHIN else [0]
        cold, warm = [], []
        for step in step_list[: max(1, min(len(step_list), repeats))]:
            app = _plugin_app(provider)  # a new plugin: nothing cached
            query = {"run": RUN, "size": 256, "step": step, **case}
            seconds, size, body = _call(app, query)
            cold.append(seconds)
            for _ in range(repeats):
                warm.append(_call(app, query)[0])
        out[name] = {
            "cold_ms_median": round(median(cold) * 1e3, 1),
            "cold_ms_max": round(max(cold) * 1e3, 1),
            "warm_ms_median": round(median(warm) * 1e3, 1),
            "bytes": size,
            "cells": body["values"]["shape"],
            "block": body["block"],
        }
    return out


# --------------------------------------------------------------------------- real TensorBoard


def timed(port: int, path: str) -> float:
    """Seconds of one GET that must succeed."""
    status, body, _, seconds = http_get(port, path)
    if status != 200:
        raise RuntimeError(f"{path} -> {status}: {body[:300]!r}")
    return seconds


def with_tensorboard(logdir: Path, load_fast: bool, steps: int, requests: int, tmp: Path):
    base = "/data/plugin/deepscope/correlation"
    with TensorBoard(logdir, load_fast, None, tmp / f"tb-{load_fast}.log") as tb:
        port = tb.port

        def listed(tag: str) -> int:
            status, body, headers, _ = http_get(
                port, f"{base}_steps?{urlencode({'run': RUN, 'tag': tag})}"
            )
            return len(decode_body(body, headers)["steps"]) if status == 200 else 0

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if listed(WITHIN) == steps and listed(CROSS) == 1:
                    break
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.5)
        else:
            raise TimeoutError(
                f"tensorboard never served every step; its log ends:\n{tb.log_tail()}"
            )
        loaded_s = time.perf_counter() - tb.started

        def path(step: int, tag: str = WITHIN, order: str = "original") -> str:
            query = {"run": RUN, "tag": tag, "step": step, "size": 256, "order": order}
            return f"{base}_matrix?{urlencode(query)}"

        cold, wire = [], 0
        for step in range(steps):
            status, body, _, seconds = http_get(port, path(step))
            assert status == 200, body[:300]
            cold.append(seconds)
            wire = len(body)
        warm = [timed(port, path(steps - 1)) for _ in range(requests)]
        cross_cold = timed(port, path(0, CROSS, "matched"))
        cross_warm = [timed(port, path(0, CROSS, "matched")) for _ in range(requests)]
        clustered_cold = timed(port, path(0, WITHIN, "clustered"))
        return {
            "load_fast": load_fast,
            "loaded_s": round(loaded_s, 1),
            "overview original: cold ms (median over steps)": round(median(cold) * 1e3, 1),
            "overview original: cold ms (max)": round(max(cold) * 1e3, 1),
            "overview original: warm ms (median)": round(median(warm) * 1e3, 1),
            "overview clustered: cold ms (step read, order computed)": round(
                clustered_cold * 1e3, 1
            ),
            "cross overview matched: cold ms": round(cross_cold * 1e3, 1),
            "cross overview matched: warm ms (median)": round(median(cross_warm) * 1e3, 1),
            "wire_bytes": wire,
        }


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="logged steps of the within series")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-tensorboard", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="JSON path (default: under benchmarks/results/)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.requests, args.repeats = 2, 3, 2
    figures = {
        "benchmark": "correlation_route",
        "machine": machine(),
        "quick": args.quick,
        "targets": {"overview_ms": TARGET_MS, "overview_bytes": TARGET_BYTES},
    }
    with tempfile.TemporaryDirectory(prefix="deepscope-bench-corr-") as tmp_name:
        tmp = Path(tmp_name)
        logdir = tmp / "logs"
        print("writing the series ...", flush=True)
        figures["storage"] = write_series(logdir, args.steps, args.samples)
        print("in process ...", flush=True)
        figures["in_process"] = in_process(logdir, args.steps, args.repeats)
        if not args.no_tensorboard:
            figures["tensorboard"] = []
            for load_fast in (False, True):
                print(f"tensorboard --load_fast={load_fast} ...", flush=True)
                figures["tensorboard"].append(
                    with_tensorboard(logdir, load_fast, args.steps, args.requests, tmp)
                )
    report(figures)
    name = "correlation_route_quick.json" if args.quick else "correlation_route.json"
    print(f"\nwrote {write_json(name, figures, args.out)}")


def report(figures: dict) -> None:
    rows = [
        [name, f["cells"], f["cold_ms_median"], f["warm_ms_median"], f["bytes"]]
        for name, f in figures["in_process"].items()
    ]
    print()
    print(table(rows, ["in process (2048 channels)", "cells", "cold ms", "warm ms", "bytes"]))
    for entry in figures.get("tensorboard", []):
        print()
        print(table([[k, v] for k, v in entry.items()], ["tensorboard", "value"]))


if __name__ == "__main__":
    main()
