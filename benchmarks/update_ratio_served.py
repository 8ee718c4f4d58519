"""The update_ratios route through real `tensorboard` processes, for bench_update_ratios_route.py.

`with_tensorboard` starts `tensorboard` (the one harness,
`tests.tensorboard_process.TensorBoard`) with `--load_fast=false` and
`--load_fast=true`, each with the plugin's default samples and with
`--samples_per_plugin=deepscope=0` (all), waits until the route returns every
kept step (`wait_loaded`), then times
`GET /data/plugin/deepscope/update_ratios?run=R&tag=T&format=base64|json` with
a browser's Accept-Encoding (`time_route`: median of --requests after warm-up).
"""

from __future__ import annotations

import gzip
import http.client
import json
import time
from pathlib import Path

from _common import median
from update_ratio_storage import TAG

from deepscope.tb_plugin.loader import DEFAULT_SAMPLES
from tests.tensorboard_process import TensorBoard, decode_body, http_get


def route(run: str, fmt: str) -> str:
    return f"/data/plugin/deepscope/update_ratios?run={run}&tag={TAG}&format={fmt}"


def wait_loaded(tb: TensorBoard, expected: dict[str, tuple[int, int]], timeout: float) -> dict:
    """Poll until each run's route returns `count` steps ending at `last`.

    A loader that keeps fewer samples than expected is accepted once its
    last step is the last one logged and its count has held for 3 polls.
    """
    deadline = time.monotonic() + timeout
    listed_at = None
    while time.monotonic() < deadline:
        if tb.proc.poll() is not None:
            raise RuntimeError(f"tensorboard exited: {tb.cmd}")
        try:
            status, body, headers, _ = http_get(tb.port, "/data/plugin/deepscope/tags")
            if status == 200 and set(expected) <= set(decode_body(body, headers)):
                listed_at = time.perf_counter() - tb.started
                break
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.25)
    else:
        raise TimeoutError("the tags route never listed every run")
    kept, history = {}, {run: [] for run in expected}
    while time.monotonic() < deadline:
        for run, (count, last) in expected.items():
            if run in kept:
                continue
            status, body, headers, _ = http_get(tb.port, route(run, "base64"))
            if status != 200:
                continue
            steps = decode_body(body, headers)["steps"]
            history[run].append(len(steps))
            done = steps and steps[-1] == last
            stable = len(history[run]) >= 3 and len(set(history[run][-3:])) == 1
            if done and (len(steps) == count or stable):
                kept[run] = len(steps)
        if len(kept) == len(expected):
            return {
                "listed_s": round(listed_at, 2),
                "loaded_s": round(time.perf_counter() - tb.started, 2),
                "steps_returned": kept,
            }
        time.sleep(0.5)
    raise TimeoutError(f"the route never returned every step: {history}")


def time_route(port: int, run: str, fmt: str, warmup: int, requests: int) -> dict:
    for _ in range(warmup):
        http_get(port, route(run, fmt))
    times, sizes = [], set()
    for _ in range(requests):
        status, body, headers, seconds = http_get(port, route(run, fmt))
        if status != 200:
            raise RuntimeError(f"{route(run, fmt)} -> {status}: {body[:300]!r}")
        times.append(seconds)
        sizes.add(len(body))
    raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
    return {
        "median_ms": round(median(times) * 1e3, 1),
        "min_ms": round(min(times) * 1e3, 1),
        "max_ms": round(max(times) * 1e3, 1),
        "content_encoding": headers.get("content-encoding", "identity"),
        "wire_bytes": max(sizes),
        "json_bytes": len(raw),
        "steps": len(json.loads(raw)["steps"]),
    }


def with_tensorboard(
    logdir: Path, args, expected_all: dict, tmp: Path, shim: str | None
) -> list[dict]:
    results = []
    # samples None: the plugin's own default (DEFAULT_SAMPLES via TBLoader.fix_flags); 0: all.
    setups = [(load_fast, samples, None) for load_fast in (False, True) for samples in (None, 0)]
    if shim:  # what --load_fast=true would give without the data server's Nagle stall
        setups.append((True, 0, shim))
    for load_fast, samples, preload in setups:
        kept = DEFAULT_SAMPLES if samples is None else 0
        expected = {
            run: (count if not kept else min(count, kept), last)
            for run, (count, last) in expected_all.items()
        }
        label = (
            f"load_fast={'true' if load_fast else 'false'}, samples="
            f"{'default' if samples is None else 'all'}" + (", TCP_NODELAY shim" if preload else "")
        )
        print(f"  tensorboard {label} ...", flush=True)
        log = tmp / f"tb-{load_fast}-{samples}-{bool(preload)}.log"
        tb = TensorBoard(logdir, load_fast, samples, log, preload)
        try:
            entry = {
                "load_fast": load_fast,
                "samples_per_plugin": "default" if samples is None else "all (0)",
                "tcp_nodelay_shim": bool(preload),
                **wait_loaded(tb, expected, args.load_timeout),
                "routes": {},
            }
            for run in expected_all:
                for fmt in ("base64", "json"):
                    entry["routes"][f"{run}/{fmt}"] = time_route(
                        tb.port, run, fmt, args.warmup, args.requests
                    )
        finally:
            tb.stop()
        results.append(entry)
    return results
