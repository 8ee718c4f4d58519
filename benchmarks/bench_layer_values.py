"""Layer values: what `add_layer_values` costs a step, bytes per step, and the route's time.

Writes S steps of P layers with `deepscope.SummaryWriter.add_layer_values`
(Python floats; and 0-d CPU tensors, which are stacked and copied once), then
serves `layer_values` in process over a `MultiplexerDataProvider` built as
TensorBoard's Python loader builds it (every step kept): the whole handler
through werkzeug (no HTTP), cold (the first request of a new series version:
read_tensors, decoding, the body) and warm (the remembered body), json and base64.
Medians of `--repeats` runs; cold runs use a fresh plugin each time.

    .venv/bin/python benchmarks/bench_layer_values.py            # 1,000 steps x 50 and 200 layers
    .venv/bin/python benchmarks/bench_layer_values.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine, median, table, write_json


def _names(layers: int) -> list[str]:
    return [f"layer{i // 3}.block.conv{i % 3}.weight" for i in range(layers)]


def write_log(logdir: Path, steps: int, layers: int) -> dict:
    """The log of one run, tag "grad_norm"; seconds per step for floats and tensors, bytes."""
    import torch

    import deepscope

    names = _names(layers)
    rng = np.random.default_rng(0)
    rows = rng.lognormal(size=(steps, layers)).tolist()
    writer = deepscope.SummaryWriter(str(logdir / "run"))
    start = time.perf_counter()
    for step, row in enumerate(rows):
        writer.add_layer_values("grad_norm", dict(zip(names, row)), step, quantity="norm")
    float_seconds = (time.perf_counter() - start) / steps
    tensors = [{n: torch.tensor(v) for n, v in zip(names, row)} for row in rows[:100]]
    start = time.perf_counter()
    for step, values in enumerate(tensors):
        writer.add_layer_values("tensor_norm", values, step, quantity="norm")
    tensor_seconds = (time.perf_counter() - start) / len(tensors)
    writer.close()
    size = sum(p.stat().st_size for p in (logdir / "run").iterdir())
    return {
        "write_ms_per_step_floats": 1000 * float_seconds,
        "write_ms_per_step_tensors": 1000 * tensor_seconds,
        # Both tags' events: S + 100 of them.
        "bytes_per_step": size / (steps + len(tensors)),
    }


def serve(logdir: Path, repeats: int) -> dict:
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
    from tensorboard.backend.event_processing import data_provider as dp
    from tensorboard.plugins import base_plugin
    from werkzeug import test as werkzeug_test

    from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin

    guidance = dict(data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE, deepscope=0)
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE, tensor_size_guidance=guidance
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = dp.MultiplexerDataProvider(multiplexer, str(logdir))

    def client():
        context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
        app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
        return werkzeug_test.Client(app)

    figures = {}
    for fmt in ("base64", "json"):
        url = f"/data/plugin/deepscope/layer_values?run=run&tag=grad_norm&format={fmt}"
        cold, warm, size = [], [], 0
        for _ in range(repeats):
            one = client()
            start = time.perf_counter()
            response = one.get(url)
            cold.append(time.perf_counter() - start)
            assert response.status_code == 200, response.get_data(as_text=True)
            size = len(response.get_data())
            start = time.perf_counter()
            one.get(url)
            warm.append(time.perf_counter() - start)
        figures[fmt] = {
            "cold_ms": 1000 * median(cold),
            "warm_ms": 1000 * median(warm),
            "bytes": size,
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="results file (default results/layer_values.json)")
    args = parser.parse_args()
    steps = 100 if args.quick else 1000
    sizes = [20] if args.quick else [50, 200]
    repeats = 2 if args.quick else args.repeats
    results: dict = {"machine": machine(), "steps": steps, "by_layers": {}}
    rows = []
    for layers in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            logdir = Path(tmp)
            written = write_log(logdir, steps, layers)
            served = serve(logdir, repeats)
        results["by_layers"][str(layers)] = {**written, "route": served}
        rows.append(
            [
                f"{steps} x {layers}",
                f"{written['write_ms_per_step_floats']:.2f}",
                f"{written['write_ms_per_step_tensors']:.2f}",
                f"{written['bytes_per_step']:.0f}",
                f"{served['base64']['cold_ms']:.0f} / {served['base64']['warm_ms']:.1f}",
                f"{served['json']['cold_ms']:.0f} / {served['json']['warm_ms']:.1f}",
            ]
        )
    header = [
        "steps x layers",
        "write ms (floats)",
        "write ms (tensors)",
        "bytes/step",
        "base64 cold/warm ms",
        "json cold/warm ms",
    ]
    print(table(rows, header))
    name = "layer_values_quick.json" if args.quick else "layer_values.json"
    print("wrote", write_json(name, results, args.out))


if __name__ == "__main__":
    main()
