"""Storage and read speed of update-ratio series, up to a real TensorBoard.

1. Storage: writes a synthetic 10,000-logged-step x 60-parameter series with
   `deepscope.SummaryWriter.add_update_ratio_block` (blocks of 10 as watch()
   writes; no training) and a 1,000-step one (a 10,000-step run logged
   every 10); reports the event file size and bytes per logged step. Then the default `watch()` on a
   ResNet-18-sized model (62 parameter tensors): bytes written per 1,000
   optimizer steps (gradients are fixed, no forward/backward: only the
   optimizer steps and the monitor run).
2. In process: `series.read_update_ratios` over a `MultiplexerDataProvider`
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
import base64
import cProfile
import gzip
import http.client
import io
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import free_port, http_get, machine, median, table, write_json  # noqa: E402

import deepscope  # noqa: E402
from deepscope import metadata  # noqa: E402
from deepscope.tb_plugin import deepscope_plugin, responses, series  # noqa: E402
from deepscope.tb_plugin.loader import DEFAULT_SAMPLES  # noqa: E402
from deepscope.writer.watch import DEFAULT_MEASUREMENTS_PER_EVENT  # noqa: E402

TAG = "update_ratios"
TENSORBOARD = str(Path(sys.executable).with_name("tensorboard"))
TARGET_FILE_BYTES = 5_000_000
TARGET_ROUTE_MS = 100.0


# --------------------------------------------------------------------------- storage


def event_bytes(logdir: Path) -> int:
    return sum(f.stat().st_size for f in logdir.glob("events.out.tfevents.*"))


def empty_writer_bytes(tmp: Path) -> int:
    """What a writer that logs nothing leaves (the file_version header event)."""
    d = tmp / "empty"
    w = deepscope.SummaryWriter(str(d))
    w.flush()
    w.close()
    size = event_bytes(d)
    shutil.rmtree(d)
    return size


def write_series(logdir: Path, steps: list[int], n_params: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    names = [f"layer{i // 4 + 1}.{i % 4}.conv.weight" for i in range(n_params)]
    base = rng.lognormal(np.log(1e-3), 0.7, size=n_params).astype(np.float32)
    writer = deepscope.SummaryWriter(str(logdir))
    t0 = time.perf_counter()
    wall = 1.7e9
    # As watch() writes them: blocks of DEFAULT_MEASUREMENTS_PER_EVENT measurements per event.
    per_event = DEFAULT_MEASUREMENTS_PER_EVENT
    for start in range(0, len(steps), per_event):
        block = steps[start : start + per_event]
        values = base * rng.lognormal(0.0, 0.1, size=(len(block), n_params)).astype(np.float32)
        walls = [wall + 0.25 * k for k in range(len(block))]
        writer.add_update_ratio_block(TAG, names, values, steps=block, wall_times=walls)
        wall += 0.25 * len(block)
    writer.flush()
    seconds = time.perf_counter() - t0
    writer.close()
    return {"names": names, "write_us_per_step": seconds / len(steps) * 1e6}


def storage_figures(root: Path, args) -> dict:
    header = empty_writer_bytes(root)
    runs = {
        "big": list(range(args.steps)),
        "small": list(range(0, args.steps, args.small_every)),
    }
    out = {"empty_writer_bytes": header, "runs": {}}
    for run, steps in runs.items():
        info = write_series(root / "logs" / run, steps, args.params, seed=len(steps))
        size = event_bytes(root / "logs" / run)
        out["runs"][run] = {
            "logged_steps": len(steps),
            "params": args.params,
            "event_file_bytes": size,
            "bytes_per_logged_step": round((size - header) / len(steps), 1),
            "write_us_per_step": round(info["write_us_per_step"], 1),
        }
    out["target_file_bytes"] = TARGET_FILE_BYTES
    return out


def watch_storage(root: Path, optimizer_steps: int) -> dict:
    """Bytes the default watch()'s update ratios write for a ResNet-18 over N optimizer steps.

    Spectra (on by default too) are left out here; bench_spectra.py measures their bytes.
    """
    import torch
    from resnet import resnet18

    from deepscope.writer.watch import DEFAULT_EVERY

    torch.manual_seed(0)
    model = resnet18()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    logdir = root / "watch-storage"
    writer = deepscope.SummaryWriter(str(logdir))
    header = empty_writer_bytes(root)
    monitor = deepscope.watch(model, optimizer, writer, spectra_every=None)
    for _ in range(optimizer_steps):
        optimizer.step()
    monitor.close()
    writer.close()
    size = event_bytes(logdir)
    measurements = monitor.stats.measurements
    per_1000 = (size - header) * 1000 / optimizer_steps
    return {
        "model": "ResNet-18 (CIFAR), 62 parameter tensors",
        "every": DEFAULT_EVERY,
        "optimizer_steps": optimizer_steps,
        "measurements": measurements,
        "parameter_tensors": len(monitor.names),
        "event_file_bytes": size,
        "bytes_per_1000_steps": round(per_1000),
        "bytes_per_measurement_after_first": None
        if measurements < 2
        else round((size - header - _first_event_bytes(logdir)) / (measurements - 1), 1),
        "first_event_bytes": _first_event_bytes(logdir),
    }


def _first_event_bytes(logdir: Path) -> int:
    """Size on disk of the first deepscope event (the one carrying the metadata)."""
    (path,) = logdir.glob("events.out.tfevents.*")
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        (length,) = np.frombuffer(data[pos : pos + 8], dtype="<u8")
        record = 8 + 4 + int(length) + 4
        if b"deepscope" in data[pos : pos + record]:
            return record
        pos += record
    return 0


# --------------------------------------------------------------------------- in process


def make_provider(logdir: Path, samples: int):
    from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
    from tensorboard.backend.event_processing import data_provider as dp

    tensor_size_guidance = dict(data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE)
    tensor_size_guidance[metadata.PLUGIN_NAME] = samples
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=tensor_size_guidance,
        purge_orphaned_data=True,
        max_reload_threads=1,
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    t0 = time.perf_counter()
    multiplexer.Reload()
    load_seconds = time.perf_counter() - t0
    return dp.MultiplexerDataProvider(multiplexer, str(logdir)), load_seconds


def _timeit(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def in_process(logdir: Path, samples: int, runs: list[str], repeats: int, profile: bool) -> dict:
    """Stage-by-stage timing of the route's work, without HTTP."""
    from tensorboard import context as tb_context
    from tensorboard.plugins import base_plugin

    provider, load_seconds = make_provider(logdir, samples)
    plugin = deepscope_plugin.DeepscopePlugin(
        base_plugin.TBContext(
            data_provider=provider,
            logdir=str(logdir),
            sampling_hints={metadata.PLUGIN_NAME: samples},  # what TensorBoard passes
        )
    )
    out = {"samples": samples, "python_loader_reload_s": round(load_seconds, 2), "runs": {}}
    for run in runs:
        out["runs"][run] = _in_process_run(
            provider, tb_context.RequestContext(), plugin, run, samples, repeats, profile
        )
    return out


def _dumps(body: dict) -> str:
    return json.dumps(body, allow_nan=False, separators=(",", ":"))


def _in_process_run(provider, ctx, plugin, run: str, hint: int, repeats: int, profile: bool):
    from tensorboard.data import provider as tb_provider
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    app = plugin.get_plugin_apps()["/update_ratios"]
    plugin_data = series.SeriesCatalog(provider).find(ctx, "", run, TAG, "update_ratios")
    limit = series._UNBOUNDED if not hint else hint

    def read():
        return series.read_update_ratios(provider, ctx, "", run, TAG, plugin_data, hint)

    ratios = read()
    stages = {
        "find_series (list_tensors + list_blob_sequences)": lambda: series.SeriesCatalog(
            provider
        ).find(ctx, "", run, TAG, "update_ratios"),
        "read_tensors (TensorBoard)": lambda: provider.read_tensors(
            ctx,
            experiment_id="",
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=tb_provider.RunTagFilter(runs=[run], tags=[TAG]),
            downsample=limit,
        ),
        "read_update_ratios (read_tensors + decode)": read,
        # what a route that asked for at most 1,000 points would pay
        "read_tensors (downsample=1000)": lambda: provider.read_tensors(
            ctx,
            experiment_id="",
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=tb_provider.RunTagFilter(runs=[run], tags=[TAG]),
            downsample=1000,
        ),
    }
    ms = {k: _timeit(f, repeats) * 1e3 for k, f in stages.items()}
    ms["decode (ours) = read_update_ratios - read_tensors"] = (
        ms["read_update_ratios (read_tensors + decode)"] - ms["read_tensors (TensorBoard)"]
    )
    values, no_update = ratios.values, ratios.no_update

    # The handler's body, step by step, as deepscope_plugin._serve_update_ratios builds it.
    def head():
        return {
            "run": run,
            "tag": TAG,
            "steps": ratios.steps.tolist(),
            "wall_times": ratios.wall_times.tolist(),
            "names": ratios.names,
            "non_finite": int((~np.isfinite(values) & ~no_update).sum()),
            "warnings": ratios.warnings,
        }

    def body_b64():
        h = head()
        h["values"] = {
            "dtype": "float32",
            "shape": list(values.shape),
            "base64": base64.b64encode(values.astype("<f4").tobytes()).decode("ascii"),
        }
        h["no_update"] = np.argwhere(no_update).tolist()
        return h

    def body_json():
        h = head()
        h["values"] = deepscope_plugin._json_matrix(values, no_update)
        return h

    def full(fmt):
        env = EnvironBuilder(
            path="/update_ratios",
            query_string={"run": run, "tag": TAG, "format": fmt},
            headers={"Accept-Encoding": "gzip"},
        ).get_environ()
        return b"".join(app(env, lambda status, headers, exc_info=None: None))

    request = Request(EnvironBuilder(headers={"Accept-Encoding": "gzip"}).get_environ())
    formats = {}
    for fmt, build in (("base64", body_b64), ("json", body_json)):
        body = build()
        text = _dumps(body)
        if fmt == "base64":
            raw = base64.b64decode(body["values"]["base64"])
            slot = {**body, "values": {**body["values"], "base64": ""}}

            def respond(slot=slot, raw=raw):
                return responses.respond_base64_json(request, slot, raw)
        else:

            def respond(body=body):
                return responses.respond_json(request, body)

        t_head = _timeit(head, repeats)
        f = {
            "body: steps/wall_times/names tolist": t_head * 1e3,
            "body: values": (_timeit(build, repeats) - t_head) * 1e3,
            "json.dumps": _timeit(lambda b=body: _dumps(b), repeats) * 1e3,
            "the plugin's response (JSON text, gzip level 1 for json, Respond)": _timeit(
                lambda r=respond: r(), repeats
            )
            * 1e3,
            "whole handler (werkzeug, no HTTP)": _timeit(lambda f=fmt: full(f), repeats) * 1e3,
        }
        formats[fmt] = {
            "stages_ms": {k: round(v, 2) for k, v in f.items()},
            "json_bytes": len(text),
            "sent_bytes": len(respond().get_data()),
        }
        if profile:  # printed only: too long for the results file
            print(f"\ncProfile, {run} {fmt} (3 calls, by own time):")
            print("\n".join(_profile(lambda f=fmt: full(f))))
    return {
        "steps_returned": int(ratios.steps.shape[0]),
        "stages_ms": {k: round(v, 2) for k, v in ms.items()},
        "formats": formats,
    }


def in_process_rust(
    logdir: Path,
    samples: int,
    expected: dict[str, tuple[int, int]],
    repeats: int,
    preload: str | None = None,
) -> dict:
    """The data-provider calls a request makes, against the Rust data server over gRPC.

    Starts the data server as `tensorboard --load_fast=true` does (via
    `SubprocessServerDataIngester`) and times each call alone, so that the
    per-RPC cost shows apart from our decoding.
    """
    from tensorboard import context as tb_context
    from tensorboard.data import provider as tb_provider
    from tensorboard.data import server_ingester
    from tensorboard.util import grpc_util

    ingester = server_ingester.SubprocessServerDataIngester(
        server_ingester.get_server_binary(),
        str(logdir),
        reload_interval=0,  # load once
        channel_creds_type=grpc_util.ChannelCredsType.LOCAL,
        samples_per_plugin={metadata.PLUGIN_NAME: samples},
    )
    saved = os.environ.get("LD_PRELOAD")
    if preload:
        os.environ["LD_PRELOAD"] = preload  # inherited by the data server only
    try:
        ingester.start()
    finally:
        if preload:
            if saved is None:
                os.environ.pop("LD_PRELOAD")
            else:
                os.environ["LD_PRELOAD"] = saved
    provider, ctx = ingester.data_provider, tb_context.RequestContext()
    limit = series._UNBOUNDED if not samples else samples
    out = {"samples": samples, "tcp_nodelay_shim": bool(preload), "runs": {}}
    try:
        for run, (count, last) in expected.items():
            events = -(-count // DEFAULT_MEASUREMENTS_PER_EVENT)  # blocks, as watch() writes
            want = events if not samples else min(events, samples)
            rtf = tb_provider.RunTagFilter(runs=[run], tags=[TAG])

            def read(rtf=rtf):
                return provider.read_tensors(
                    ctx,
                    experiment_id="",
                    plugin_name=metadata.PLUGIN_NAME,
                    run_tag_filter=rtf,
                    downsample=limit,
                )

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                data = read().get(run, {}).get(TAG, [])
                if len(data) == want and data[-1].step == last:
                    break
                time.sleep(0.25)
            else:
                raise TimeoutError(f"the data server never served {want} events of {run}")
            plugin_data = series.SeriesCatalog(provider).find(ctx, "", run, TAG, "update_ratios")
            stages = {
                "list_tensors (all runs)": lambda: provider.list_tensors(
                    ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME
                ),
                "list_tensors (this run/tag)": lambda rtf=rtf: provider.list_tensors(
                    ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME, run_tag_filter=rtf
                ),
                "list_blob_sequences": lambda: provider.list_blob_sequences(
                    ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME
                ),
                "find_series": lambda run=run: series.SeriesCatalog(provider).find(
                    ctx, "", run, TAG, "update_ratios"
                ),
                "read_tensors (gRPC + make_ndarray)": read,
                "read_tensors (downsample=1000)": lambda rtf=rtf: provider.read_tensors(
                    ctx,
                    experiment_id="",
                    plugin_name=metadata.PLUGIN_NAME,
                    run_tag_filter=rtf,
                    downsample=1000,
                ),
                "read_update_ratios (read_tensors + decode)": lambda run=run, pd=plugin_data: (
                    series.read_update_ratios(provider, ctx, "", run, TAG, pd, samples)
                ),
            }
            ms = {k: _timeit(f, repeats) * 1e3 for k, f in stages.items()}
            ms["decode (ours) = read_update_ratios - read_tensors"] = (
                ms["read_update_ratios (read_tensors + decode)"]
                - ms["read_tensors (gRPC + make_ndarray)"]
            )
            out["runs"][run] = {
                "events_read": want,
                "steps_returned": min(count, want * DEFAULT_MEASUREMENTS_PER_EVENT),
                "stages_ms": {k: round(v, 2) for k, v in ms.items()},
            }
    finally:
        # The server dies when its stdin closes (--die-after-stdin).
        ingester._stdin_handle.close()
    return out


def _profile(fn, top: int = 12) -> list[str]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        fn()
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
    stats.print_stats(top)
    lines = [
        line.rstrip()
        for line in stream.getvalue().splitlines()
        if line.strip() and not line.startswith(("   Ordered", "         ", "List reduced"))
    ]
    return lines[-(top + 1) :]


# --------------------------------------------------------------------------- real TensorBoard


def build_nodelay_shim(tmp: Path) -> str | None:
    """Compile nodelay_shim.c (needs gcc); None where it cannot be built."""
    source = Path(__file__).resolve().parent / "nodelay_shim.c"
    target = tmp / "nodelay_shim.so"
    try:
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", str(target), str(source), "-ldl"],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"  (no TCP_NODELAY shim: {error})")
        return None
    return str(target)


def decode_body(body: bytes, headers: dict) -> dict:
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


def route(run: str, fmt: str) -> str:
    return f"/data/plugin/deepscope/update_ratios?run={run}&tag={TAG}&format={fmt}"


class TensorBoard:
    def __init__(
        self,
        logdir: Path,
        load_fast: bool,
        samples: int | None,
        log: Path,
        preload: str | None = None,
    ):
        self.port = free_port()
        cmd = [
            TENSORBOARD,
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            f"--load_fast={'true' if load_fast else 'false'}",
        ]
        if samples is not None:
            cmd.append(f"--samples_per_plugin={metadata.PLUGIN_NAME}={samples}")
        self.cmd = cmd
        self.log = open(log, "wb")
        self.started = time.perf_counter()
        # Own process group, so that stopping it also stops its data server.
        env = dict(os.environ)
        if preload:
            env["LD_PRELOAD"] = preload
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def wait_loaded(self, expected: dict[str, tuple[int, int]], timeout: float) -> dict:
        """Poll until each run's route returns `count` steps ending at `last`.

        A loader that keeps fewer samples than expected is accepted once its
        last step is the last one logged and its count has held for 3 polls.
        """
        deadline = time.monotonic() + timeout
        listed_at = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited: {self.cmd}")
            try:
                status, body, headers, _ = http_get(self.port, "/data/plugin/deepscope/tags")
                if status == 200 and set(expected) <= set(decode_body(body, headers)):
                    listed_at = time.perf_counter() - self.started
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
                status, body, headers, _ = http_get(self.port, route(run, "base64"))
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
                    "loaded_s": round(time.perf_counter() - self.started, 2),
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
                **tb.wait_loaded(expected, args.load_timeout),
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


# --------------------------------------------------------------------------- main


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
