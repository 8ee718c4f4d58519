"""Speed of `/findings` on a big run: 200 layers × 1,000 steps of every kind it reads.

Issue 14's target: ≤ 300 ms warm, ≤ 3 s cold. The run (one, written here with
deepscope's builders, no training) holds, every one of its --steps steps:

- update ratios of --layers parameters (one tensor series);
- layer statistics: --layers activation rows (every statistic) and --layers
  parameter rows (gradient and weight norms);
- one spectrum series per layer (a 64 × 64 weight's 64 singular values and
  metrics; a blob sequence each);
- one channel-correlation series per layer (16 channels; a blob sequence each).

Times, as the tab asks (`GET /data/plugin/deepscope/findings`, every run):
cold (the first request a fresh plugin answers after TensorBoard loaded the
log) and warm: right after the tab's `tags` (a refresh: the two share one
series listing), alone within 5 s of the last, and alone past 5 s (the series
are listed anew); then the remembered findings are served. Also the Python
loader's own cost of the reads a cold request makes (its floor: its
`read_blob_sequences` converts every kept event before downsampling). In
process (TensorBoard's Python loader behind the plugin's WSGI app) and through
a real `tensorboard` with `--load_fast=false` and `--load_fast=true` (the Rust
data server).

    .venv/bin/python benchmarks/bench_findings.py           # ~5-8 min on 2 cores
    .venv/bin/python benchmarks/bench_findings.py --quick   # smoke run
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

from deepscope import metadata  # noqa: E402
from deepscope.tb_plugin.blob_steps import LISTING_SECONDS  # noqa: E402
from deepscope.tb_plugin.loader import DEFAULT_SAMPLES  # noqa: E402
from tests.tensorboard_process import TensorBoard, decode_body, http_get  # noqa: E402

RUN = "big"
TARGET_WARM_MS = 300.0
TARGET_COLD_MS = 3000.0
WIDTH = 64
CHANNELS = 16
RELISTED_REQUESTS = 3
LAST_TAG = "correlation/layer0"  # a blob series: loaded last by the Python loader


def write_run(logdir: Path, layers: int, steps: int) -> float:
    """The run's event file; returns the seconds writing took."""
    import torch

    import deepscope
    from deepscope.analysis.spectrum import Spectrum
    from deepscope.writer.correlation import channel_correlation_pb
    from deepscope.writer.layer_statistics import ActivationRows, ParameterRows

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    writer = deepscope.SummaryWriter(str(logdir / RUN))
    parameters = [f"layer{i}.weight" for i in range(layers)]
    modules = [f"layer{i}" for i in range(layers)]
    base = np.linalg.svd(rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH), compute_uv=False)
    # One correlation step per layer, written at every step (its bytes: a real step's).
    correlations = [
        channel_correlation_pb(
            f"correlation/layer{i}", torch.from_numpy(rng.standard_normal((256, CHANNELS)))
        )
        for i in range(layers)
    ]
    for step in range(steps):
        ratios = dict(zip(parameters, rng.lognormal(np.log(1e-3), 0.3, layers).tolist()))
        writer.add_update_ratios("update_ratios", ratios, global_step=step)
        values = np.abs(rng.standard_normal((layers, 11))).astype(np.float32) * 0.1
        writer.add_layer_statistics(
            "layer_statistics/activations",
            ActivationRows(modules, values, types=["Linear"] * layers),
            global_step=step,
        )
        norms = np.abs(rng.standard_normal((layers, 3))).astype(np.float32) + 0.5
        writer.add_layer_statistics(
            "layer_statistics/parameters",
            parameters=ParameterRows(parameters, norms),
            global_step=step,
        )
        for i in range(layers):
            grow = 1 + 0.001 * step * (1 + i % 3)
            spectrum = Spectrum(
                singular_values=torch.from_numpy((base * grow).astype(np.float32)).reshape(1, -1),
                matrix_shape=(1, WIDTH, WIDTH),
                matrix_rule="out x in",
                layer_kind="Linear",
                weight_shape=(WIDTH, WIDTH),
            )
            writer.add_singular_values(f"spectra/layer{i}", spectrum, global_step=step)
            writer.file_writer.add_summary(correlations[i], step)
    writer.close()
    return time.perf_counter() - started


def timed(get, requests: int) -> dict:
    """/findings in ms: cold (the first request), warm (the median of `requests` more, each
    after the tab's `tags`, as a refresh asks them: they share one series listing), and
    warm alone (repeated within 5 s: the listing of the request before is reused)."""
    t0 = time.perf_counter()
    status, body = get("findings")
    cold = (time.perf_counter() - t0) * 1000
    assert status == 200, body[:500]
    warm, alone = [], []
    for _ in range(requests):
        assert get("tags")[0] == 200
        t0 = time.perf_counter()
        status, again = get("findings")
        warm.append((time.perf_counter() - t0) * 1000)
        assert status == 200
        t0 = time.perf_counter()
        assert get("findings")[0] == 200
        alone.append((time.perf_counter() - t0) * 1000)
    relisted = []
    for _ in range(RELISTED_REQUESTS):  # past LISTING_SECONDS: the series are listed anew
        time.sleep(LISTING_SECONDS + 0.5)
        t0 = time.perf_counter()
        assert get("findings")[0] == 200
        relisted.append((time.perf_counter() - t0) * 1000)
    return {
        "cold_ms": round(cold, 1),
        "warm_ms": round(median(warm), 1),
        "warm_alone_ms": round(median(alone), 1),
        "warm_relisted_ms": round(median(relisted), 1),
        "bytes": len(body),
    }


def provider_floor(provider) -> dict:
    """What the data provider itself costs for the reads a cold /findings makes: the series
    listing, and the newest step of every blob series (ms)."""
    from tensorboard import context

    ctx = context.RequestContext()
    kwargs = dict(experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    t0 = time.perf_counter()
    provider.list_blob_sequences(ctx, **kwargs)
    listed = time.perf_counter()
    provider.read_blob_sequences(ctx, downsample=1, **kwargs)
    newest = time.perf_counter()
    return {
        "list_blob_sequences_ms": round((listed - t0) * 1000, 1),
        "newest_steps_ms": round((newest - listed) * 1000, 1),
    }


def in_process(logdir: Path, requests: int) -> dict:
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
    t0 = time.perf_counter()
    multiplexer.Reload()
    loaded = time.perf_counter() - t0
    provider = dp.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = DeepscopePlugin(
        base_plugin.TBContext(
            data_provider=provider, sampling_hints={metadata.PLUGIN_NAME: DEFAULT_SAMPLES}
        )
    )
    client = werkzeug_test.Client(application.TensorBoardWSGI([plugin], data_provider=provider))

    def get(route: str):
        response = client.get(f"/data/plugin/deepscope/{route}")
        return response.status_code, response.get_data()

    figures = timed(get, requests)
    body = json.loads(get("findings")[1])
    floor = provider_floor(provider)
    return {
        **figures,
        "loaded_s": round(loaded, 1),
        "findings": len(body["findings"]),
        "provider": floor,
    }


def with_tensorboard(logdir: Path, steps: int, requests: int, tmp: Path) -> list:
    results = []
    for load_fast in (False, True):
        print(f"  tensorboard load_fast={load_fast} ...", flush=True)
        tb = TensorBoard(logdir, load_fast, None, tmp / f"tb-{load_fast}.log")
        try:
            deadline = time.monotonic() + 900
            path = f"/data/plugin/deepscope/update_ratios?run={RUN}&tag=update_ratios"
            while time.monotonic() < deadline:  # until the whole run is loaded
                try:
                    status, body, headers, _ = http_get(tb.port, path)
                    if status == 200 and len(decode_body(body, headers)["steps"]) == steps:
                        # The last series written is loaded too (events are in step order).
                        last = f"/data/plugin/deepscope/correlation_steps?run={RUN}&tag={LAST_TAG}"
                        s2, b2, h2, _ = http_get(tb.port, last)
                        if s2 == 200 and len(decode_body(b2, h2)["steps"]) == steps:
                            break
                except OSError:
                    pass
                time.sleep(1.0)
            else:
                raise TimeoutError("tensorboard never loaded the whole run")
            loaded_s = time.perf_counter() - tb.started
            # A listing made while loading (a 404 lists every series) is reused for
            # LISTING_SECONDS: let it age, so that the cold request sees the whole run.
            time.sleep(LISTING_SECONDS + 0.5)

            def get(route: str, port: int = tb.port):
                status, body, _, _ = http_get(port, f"/data/plugin/deepscope/{route}")
                return status, body

            results.append(
                {"load_fast": load_fast, "loaded_s": round(loaded_s, 1), **timed(get, requests)}
            )
        finally:
            tb.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--no-tensorboard", action="store_true")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", default=None, help="results file (default: results/findings.json)")
    parser.add_argument("--logdir", default=None, help="a log dir this script wrote before")
    args = parser.parse_args()
    if args.quick:
        args.layers, args.steps, args.requests = 10, 50, 3
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        logdir = Path(args.logdir) if args.logdir else tmp / "logs"
        written_s = None
        if not args.logdir:
            print(f"writing {args.layers} layers x {args.steps} steps ...", flush=True)
            written_s = round(write_run(logdir, args.layers, args.steps), 1)
        size = sum(f.stat().st_size for f in logdir.rglob("*") if f.is_file())
        print(f"  {written_s} s, {size / 1e6:.0f} MB", flush=True)
        print("in process ...", flush=True)
        process = in_process(logdir, args.requests)
        served = (
            [] if args.no_tensorboard else with_tensorboard(logdir, args.steps, args.requests, tmp)
        )
    rows = [["in process (Python loader)", process]]
    rows += [[f"tensorboard --load_fast={str(e['load_fast']).lower()}", e] for e in served]
    print(
        table(
            [
                [name, e["cold_ms"], e["warm_ms"], e["warm_alone_ms"], e["warm_relisted_ms"]]
                for name, e in rows
            ],
            ["/findings", "cold ms", "warm: after tags", "alone", "listed anew"],
        )
    )
    print(f"the Python loader's own reads: {process['provider']}")
    print(f"targets: cold <= {TARGET_COLD_MS:.0f} ms, warm <= {TARGET_WARM_MS:.0f} ms")
    write_json(
        "findings.json",
        {
            "machine": machine(),
            "layers": args.layers,
            "steps": args.steps,
            "log_mb": round(size / 1e6, 1),
            "written_s": written_s,
            "targets_ms": {"cold": TARGET_COLD_MS, "warm": TARGET_WARM_MS},
            "in_process": process,
            "tensorboard": served,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
