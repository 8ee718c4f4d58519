"""Speed of the spectrum routes, in process and through a real TensorBoard.

Writes one run with --layers layers of --width x --width weights (512 x 512 by
default: 512 singular values a step) and --steps logged steps each, through
`deepscope.SummaryWriter.add_singular_values` (from `Spectrum`s made of one
real SVD, scaled per step, so that writing takes seconds, not an SVD a step).
Then times, as the tab calls them:

- `spectrum?run&tag&step` (one step of one layer; target <= 100 ms): cold (a step
  not yet decoded: the blob is read through the data provider) and warm (from
  the decoded-step cache);
- `spectrum_metrics?run&tag...` (every layer over every step, the table): cold
  (first request, every blob read in parallel) and warm (target <= 300 ms on a
  75-layer x 50-step run: `--layers 75 --steps 50 --width 128`, results in
  benchmarks/results/spectrum_route_75_layers.json);
- `spectrum_evolution?run&tag&max_steps=400&max_values=256` (the heatmap): cold and warm;
- `spectrum_steps?run&tag`.

Warm requests of a route within 5 s reuse its step listing (LISTING_SECONDS);
later ones list again (one read RPC).

In process: the plugin's WSGI app over TensorBoard's Python loader (no HTTP).
Real `tensorboard` with `--load_fast=false` and `--load_fast=true` (Rust data
server): medians over --requests GETs.

    .venv/bin/python benchmarks/bench_spectrum_route.py           # ~2-4 min on 2 cores
    .venv/bin/python benchmarks/bench_spectrum_route.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402

from deepscope import metadata  # noqa: E402
from deepscope.tb_plugin.loader import DEFAULT_SAMPLES  # noqa: E402
from tests.tensorboard_process import TensorBoard, decode_body, http_get  # noqa: E402

RUN = "bench"
TARGET_ROUTE_MS = 100.0
TARGET_METRICS_WARM_MS = 300.0
EVOLUTION = {"max_steps": 400, "max_values": 256}


def tag_of(i: int) -> str:
    return f"spectra/layer{i}"


def write_run(logdir: Path, layers: int, steps: int, width: int) -> dict:
    import torch

    import deepscope
    from deepscope.analysis.spectrum import Spectrum

    rng = np.random.default_rng(0)
    base = np.linalg.svd(rng.standard_normal((width, width)) / np.sqrt(width), compute_uv=False)
    writer = deepscope.SummaryWriter(str(logdir / RUN))
    t0 = time.perf_counter()
    for step in range(steps):
        for i in range(layers):
            grow = 1 + 0.02 * step * (1 + i % 3)
            values = np.sort(base * grow * rng.lognormal(0, 0.01, width))[::-1].copy()
            spectrum = Spectrum(
                singular_values=torch.from_numpy(values.astype(np.float32)).reshape(1, -1),
                matrix_shape=(1, width, width),
                matrix_rule="out x in",
                layer_kind="Linear",
                weight_shape=(width, width),
            )
            writer.add_singular_values(tag_of(i), spectrum, global_step=step * 500)
    writer.close()
    seconds = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in (logdir / RUN).glob("events.out.tfevents.*"))
    return {
        "layers": layers,
        "logged_steps": steps,
        "singular_values_per_step": width,
        "event_file_bytes": size,
        "bytes_per_layer_step": round(size / (layers * steps), 1),
        "write_ms_per_layer_step": round(seconds / (layers * steps) * 1e3, 2),
    }


def queries(layers: int, steps: int) -> dict:
    """The route paths timed: name -> (cold paths, warm path)."""
    tag = tag_of(0)
    every_tag = [("tag", tag_of(i)) for i in range(layers)]
    one = [f"spectrum?{urlencode({'run': RUN, 'tag': tag, 'step': s * 500})}" for s in range(steps)]
    return {
        "spectrum (one step, 512 values)": (one, one[-1]),
        "spectrum_steps": (
            [f"spectrum_steps?{urlencode({'run': RUN, 'tag': tag})}"],
            f"spectrum_steps?{urlencode({'run': RUN, 'tag': tag})}",
        ),
        "spectrum_metrics (all layers x steps)": (
            [f"spectrum_metrics?{urlencode([('run', RUN), *every_tag])}"],
            f"spectrum_metrics?{urlencode([('run', RUN), *every_tag])}",
        ),
        "spectrum_evolution (1 layer, all steps)": (
            [f"spectrum_evolution?{urlencode({'run': RUN, 'tag': tag_of(1), **EVOLUTION})}"],
            f"spectrum_evolution?{urlencode({'run': RUN, 'tag': tag_of(1), **EVOLUTION})}",
        ),
    }


def timed(get, cold_paths: list[str], warm_path: str, requests: int) -> dict:
    """Cold: each path's first request (median over the paths); warm: repeats of one."""
    cold = []
    for path in cold_paths:
        t0 = time.perf_counter()
        status, body = get(path)
        cold.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"{path} -> {status}: {body[:300]!r}")
    warm = []
    for _ in range(requests):
        t0 = time.perf_counter()
        status, body = get(warm_path)
        warm.append(time.perf_counter() - t0)
    return {
        "cold_median_ms": round(median(cold) * 1e3, 1),
        "cold_max_ms": round(max(cold) * 1e3, 1),
        "cold_requests": len(cold),
        "warm_median_ms": round(median(warm) * 1e3, 1),
        "warm_max_ms": round(max(warm) * 1e3, 1),
        "response_bytes": len(body),
    }


def in_process(logdir: Path, layers: int, steps: int, requests: int) -> dict:
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
    from tensorboard.backend.event_processing import data_provider as dp
    from tensorboard.plugins import base_plugin
    from werkzeug import test as werkzeug_test

    from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin

    guidance = dict(data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE)
    guidance[metadata.PLUGIN_NAME] = DEFAULT_SAMPLES
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE, tensor_size_guidance=guidance
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = dp.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = DeepscopePlugin(
        base_plugin.TBContext(
            data_provider=provider, sampling_hints={metadata.PLUGIN_NAME: DEFAULT_SAMPLES}
        )
    )
    client = werkzeug_test.Client(application.TensorBoardWSGI([plugin], data_provider=provider))

    def get(path: str):
        response = client.get(f"/data/plugin/deepscope/{path}")
        return response.status_code, response.get_data()

    get("tags")
    return {name: timed(get, *paths, requests) for name, paths in queries(layers, steps).items()}


def with_tensorboard(logdir: Path, layers: int, steps: int, requests: int, tmp: Path) -> list:
    results = []
    for load_fast in (False, True):
        print(f"  tensorboard load_fast={load_fast} ...", flush=True)
        tb = TensorBoard(logdir, load_fast, None, tmp / f"tb-{load_fast}.log")
        try:
            steps_path = f"spectrum_steps?{urlencode({'run': RUN, 'tag': tag_of(layers - 1)})}"
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # until the last layer's last step is served
                try:
                    status, body, headers, _ = http_get(
                        tb.port, f"/data/plugin/deepscope/{steps_path}"
                    )
                    if status == 200 and len(decode_body(body, headers)["steps"]) == steps:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            else:
                raise TimeoutError("tensorboard never served every step")
            loaded_s = time.perf_counter() - tb.started

            def get(path: str, port: int = tb.port):
                status, body, _, _ = http_get(port, f"/data/plugin/deepscope/{path}")
                return status, body

            get("tags")  # as the tab does first: the series' metadata is then remembered
            entry = {"load_fast": load_fast, "loaded_s": round(loaded_s, 1), "routes": {}}
            for name, paths in queries(layers, steps).items():
                entry["routes"][name] = timed(get, *paths, requests)
        finally:
            tb.stop()
        results.append(entry)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100, help="logged steps per layer")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--no-tensorboard", action="store_true")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", help="JSON path (default: under benchmarks/results/)")
    args = parser.parse_args()
    if args.quick:
        args.layers, args.steps, args.requests = 4, 10, 3
    figures = {
        "benchmark": "spectrum_route",
        "machine": machine(),
        "quick": args.quick,
        "target_route_ms": TARGET_ROUTE_MS,
    }
    with tempfile.TemporaryDirectory(prefix="deepscope-bench-spectrum-") as tmp_name:
        tmp = Path(tmp_name)
        logdir = tmp / "logs"
        print("writing the run ...", flush=True)
        figures["storage"] = write_run(logdir, args.layers, args.steps, args.width)
        print("in process (Python loader's provider) ...", flush=True)
        figures["in_process"] = in_process(logdir, args.layers, args.steps, args.requests)
        if not args.no_tensorboard:
            figures["tensorboard"] = with_tensorboard(
                logdir, args.layers, args.steps, args.requests, tmp
            )
    report(figures)
    name = "spectrum_route_quick.json" if args.quick else "spectrum_route.json"
    print(f"\nwrote {write_json(name, figures, args.out)}")


def report(figures: dict) -> None:
    s = figures["storage"]
    print(
        f"\n{s['layers']} layers x {s['logged_steps']} steps x {s['singular_values_per_step']} "
        f"singular values: {s['event_file_bytes'] / 1e6:.2f} MB, {s['bytes_per_layer_step']} B "
        f"per layer-step, written in {s['write_ms_per_layer_step']} ms per layer-step"
    )
    setups = [("in process (Python loader)", figures["in_process"])]
    for tb in figures.get("tensorboard", []):
        setups.append((f"tensorboard load_fast={str(tb['load_fast']).lower()}", tb["routes"]))
    rows = []
    for label, routes in setups:
        for name, r in routes.items():
            one_step = name.startswith("spectrum (")
            worst = max(r["cold_median_ms"], r["warm_median_ms"])
            if name.startswith("spectrum_metrics"):
                met = r["warm_median_ms"] <= TARGET_METRICS_WARM_MS
                verdict = f"warm {'met' if met else 'MISSED'} (<= {TARGET_METRICS_WARM_MS:.0f})"
            else:
                verdict = ("met" if worst <= TARGET_ROUTE_MS else "MISSED") if one_step else ""
            rows.append(
                [
                    label,
                    name,
                    f"{r['cold_median_ms']:.1f}",
                    f"{r['warm_median_ms']:.1f}",
                    f"{r['response_bytes'] / 1e3:,.1f} kB",
                    verdict,
                ]
            )
    print()
    print(
        table(
            rows,
            ["setup", "route", "cold ms", "warm ms", "body", f"<= {TARGET_ROUTE_MS:.0f} ms"],
        )
    )


if __name__ == "__main__":
    main()
