"""The update_ratios route's work in process, stage by stage, for bench_update_ratios_route.py.

`in_process`: over a `MultiplexerDataProvider` built as TensorBoard's Python
loader builds it: find_series (listing), read_tensors (TensorBoard), decoding
(ours), building the body, json.dumps, the plugin's response, the whole
handler through werkzeug (no HTTP). `in_process_rust`: the data-provider calls
a request makes against the Rust data server over gRPC, each timed alone.
`build_nodelay_shim` compiles the TCP_NODELAY LD_PRELOAD shim (a diagnostic).
"""

from __future__ import annotations

import base64
import cProfile
import io
import json
import os
import pstats
import subprocess
import time
from pathlib import Path

import numpy as np
from _common import median
from update_ratio_storage import TAG

from deepscope import metadata
from deepscope.tb_plugin import blob_steps, deepscope_plugin, responses, series
from deepscope.tb_plugin import update_ratio_routes as routes
from deepscope.writer.watch import DEFAULT_MEASUREMENTS_PER_EVENT


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
    limit = blob_steps.UNBOUNDED if not hint else hint

    def read():
        return routes.read_update_ratios(provider, ctx, "", run, TAG, plugin_data, hint)

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

    # The handler's body, step by step, as update_ratio_routes._body builds it.
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
        h["values"] = routes._json_matrix(values, no_update)
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
    limit = blob_steps.UNBOUNDED if not samples else samples
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
                    routes.read_update_ratios(provider, ctx, "", run, TAG, pd, samples)
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
