"""The tab on the 201-parameter log: first heatmap, longest task, idle reload, route times.

Writes tests/scale_logs.py's 201-parameter, 74-layer, 10,000-step log (update
ratios at every step, spectra of every layer at 50 steps), serves it with a real
`tensorboard` (`--load_fast=false` and `--load_fast=true`), and measures:

- in headless Chromium (Debian's), as a user opens the tab: the time from the
  tab's frame starting (TensorBoard's own page takes seconds before it; that time
  is reported apart) to the first drawn update-ratio heatmap; the longest task
  (PerformanceObserver 'longtask') while loading and then while scrolling the
  whole page down and up; the page's height and DOM nodes; the bytes of the
  plugin's responses on the wire (`encodedDataLength`) for an idle reload (the
  tab's refresh, what its 30 s timer and TensorBoard's reload do);
- over HTTP: the `update_ratios` route as the tab asks it (`format=base64`) and
  `spectrum_metrics` of every layer of the run, cold (the first request) and warm
  (median of --requests).

Targets (issue 9): first heatmap <= 1.5 s, no task > 200 ms, idle reload <= 50 kB,
routes <= 300 ms warm.

    .venv/bin/python benchmarks/bench_tab.py            # ~2-3 min on 2 cores
    .venv/bin/python benchmarks/bench_tab.py --quick    # smaller log, one loader
    .venv/bin/python benchmarks/bench_tab.py --profile /tmp/prof --logdir /tmp/log201
        # also: a CPU profile (Chrome DevTools' Profiler) of loading, scrolling and idle reloads,
        # with an unminified bundle, saved as .cpuprofile and summarised per function
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _common import http_get, machine, median, table, write_json  # noqa: E402

from tests.browser.tab_page import (  # noqa: E402
    CHROMIUM_ARGS,
    VIEWPORT,
    NetworkMeter,
    Tab,
    long_tasks_ms,
    record_long_tasks,
)
from tests.scale_logs import (  # noqa: E402
    SPECTRA_PREFIX,
    UPDATE_RATIOS_TAG,
    ScaleLog,
    write_201_parameter_log,
)
from tests.tensorboard_process import TensorBoard  # noqa: E402

ROUTES = ("update_ratios", "spectrum_metrics")
TARGETS = {
    "first_heatmap_s": 1.5,
    "longest_task_ms": 200.0,
    "idle_reload_kB": 50.0,
    "route_warm_ms": 300.0,
}
HEATMAP_DRAWN = (
    "() => [...document.querySelectorAll('canvas[data-testid=heatmap]')]"
    ".some(c => c.dataset.drawn === 'true' && c.width > 0)"
)


def route_paths(log) -> dict[str, str]:
    base = "/data/plugin/deepscope/"
    tags = [f"{SPECTRA_PREFIX}/{m}" for m in log.layer_modules]
    return {
        "update_ratios": base
        + "update_ratios?"
        + urlencode({"run": log.run, "tag": UPDATE_RATIOS_TAG, "format": "base64"}),
        "spectrum_metrics": base
        + "spectrum_metrics?"
        + urlencode([("run", log.run), *(("tag", t) for t in tags)]),
    }


def time_routes(port: int, paths: dict[str, str], requests: int) -> dict:
    """Cold (first) and warm (median) milliseconds, and bytes, of each route."""
    out = {}
    for name, path in paths.items():
        status, body, headers, cold = http_get(port, path)
        assert status == 200, body[:300]
        warm = []
        for _ in range(requests):
            status, body, headers, seconds = http_get(port, path)
            warm.append(seconds)
        out[name] = {
            "cold_ms": round(cold * 1000, 1),
            "warm_ms": round(median(warm) * 1000, 1),
            "bytes": len(body),
            "etag": bool(headers.get("etag")),
        }
    return out


def wait_loaded(port: int, log, timeout: float = 300.0) -> float:
    """Seconds until the server has read the whole log.

    The log's last events are the last layer's spectra: once its `spectrum_steps`
    lists every spectrum step, everything before it is loaded. Only that tag's
    step listing is read, so the routes timed next start cold.
    """
    import json

    path = "/data/plugin/deepscope/spectrum_steps?" + urlencode(
        {"run": log.run, "tag": f"{SPECTRA_PREFIX}/{log.layer_modules[-1]}"}
    )
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            status, body, headers, _ = http_get(port, path)
            if status == 200:
                if headers.get("content-encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                if len(json.loads(body)["steps"]) >= len(log.spectrum_steps):
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(1.0)
    raise TimeoutError("tensorboard never served the whole log")


def scroll_through(frame, page, step_px: int = 500, pause_ms: int = 60) -> None:
    """Wheel down the tab's page to its end and back up, as a reader would."""
    height = frame.evaluate("() => document.documentElement.scrollHeight")
    page.mouse.move(VIEWPORT["width"] // 2, VIEWPORT["height"] // 2)
    for direction in (1, -1):
        for _ in range(int(height / step_px) + 2):
            page.mouse.wheel(0, direction * step_px)
            page.wait_for_timeout(pause_ms)
        page.wait_for_timeout(500)


class CpuProfiler:
    """Chrome DevTools' sampling profiler on a page (its same-origin frames included).

    With `bundle` (an unminified build of the tab) the tab's index.js is served from it,
    so that the profile names the tab's functions and, by esbuild's `// src/...` module
    comments, their source files.
    """

    def __init__(self, page, out_dir: Path, bundle: Path | None = None):
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.sources: list[tuple[int, str]] = []  # (first line, source file) of each module
        if bundle is not None:
            text = bundle.read_text()
            for number, line in enumerate(text.split("\n")):
                found = re.match(r"^// ((?:src|node_modules)/\S+)", line)
                if found:
                    self.sources.append((number, found.group(1)))
            page.route(
                "**/plugin/deepscope/index.js",
                lambda route: route.fulfill(status=200, content_type="text/javascript", body=text),
            )
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Profiler.enable")
        self.cdp.send("Profiler.setSamplingInterval", {"interval": 250})

    def start(self) -> None:
        self.cdp.send("Profiler.start")

    def stop(self, name: str, top: int = 25) -> dict:
        """Stop; save `name`.cpuprofile; the functions with the most self and total time (ms)."""
        profile = self.cdp.send("Profiler.stop")["profile"]
        (self.out_dir / f"{name}.cpuprofile").write_text(json.dumps(profile))
        nodes = {n["id"]: n for n in profile["nodes"]}
        parent = {c: n["id"] for n in profile["nodes"] for c in n.get("children", [])}
        self_ms: dict[str, float] = {}
        total_ms: dict[str, float] = {}
        for node_id, delta in zip(profile["samples"], profile["timeDeltas"]):
            ms = delta / 1000
            key = self.where(nodes[node_id]["callFrame"])
            self_ms[key] = self_ms.get(key, 0.0) + ms
            seen = set()
            at = node_id
            while at is not None:
                k = self.where(nodes[at]["callFrame"])
                if k not in seen:
                    seen.add(k)
                    total_ms[k] = total_ms.get(k, 0.0) + ms
                at = parent.get(at)

        def best(d):
            return [[k, round(v, 1)] for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

        return {"self_ms": best(self_ms), "total_ms": best(total_ms)}

    def where(self, frame: dict) -> str:
        name = frame["functionName"] or "(anonymous)"
        url = frame.get("url", "")
        line = frame.get("lineNumber", -1)
        if url.endswith("/index.js") and self.sources:
            source = "index.js"
            for first, file in self.sources:
                if first > line:
                    break
                source = file
            return f"{name} {source}"
        if not url:
            return name
        return f"{name} {url.rsplit('/', 1)[-1]}:{line + 1}"


def unminified_bundle(out: Path) -> Path:
    """The tab built without minifying (esbuild, as build.mjs does otherwise)."""
    frontend = ROOT / "frontend"
    subprocess.run(
        [
            str(frontend / "node_modules" / ".bin" / "esbuild"),
            "src/index.ts",
            "--bundle",
            "--format=esm",
            "--target=es2020",
            f"--outfile={out}",
        ],
        cwd=frontend,
        check=True,
    )
    return out


def measure_tab(
    browser, base_url: str, reloads: int = 2, profile: tuple[Path, Path] | None = None
) -> dict:
    """Open the tab, scroll it through, reload it idle; what it cost (see the module doc).

    `profile`: (folder, unminified bundle) to record CPU profiles of loading and scrolling.
    """
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    record_long_tasks(context)
    page = context.new_page()
    meter = NetworkMeter(page)
    profiler = CpuProfiler(page, *profile) if profile else None
    tab = Tab(page)
    started = time.time()
    if profiler:
        profiler.start()
    frame = tab.open(base_url)
    frame.wait_for_function(HEATMAP_DRAWN, timeout=120_000, polling="raf")
    drawn = frame.evaluate("() => Date.now()") / 1000
    frame_start = frame.evaluate("() => performance.timeOrigin") / 1000
    meter.wait_quiet(quiet_ms=2000, timeout_ms=120_000)
    profiles = {}
    if profiler:
        profiles["loading"] = profiler.stop("loading")
        profiler.start()
    loading_tasks = long_tasks_ms(frame)
    load_bytes = sum(r["bytes"] for r in meter.since(0))
    scroll_through(frame, page)
    meter.wait_quiet(quiet_ms=2000, timeout_ms=120_000)
    if profiler:
        profiles["scrolling"] = profiler.stop("scrolling")
    tasks = long_tasks_ms(frame)
    own_tasks = long_tasks_ms(frame, own=True)
    shape = frame.evaluate(
        "() => ({height: document.documentElement.scrollHeight,"
        " nodes: document.getElementsByTagName('*').length,"
        " width: document.documentElement.scrollWidth, viewport: innerWidth})"
    )
    idle = []
    if profiler:
        profiler.start()
    for _ in range(reloads):
        mark = meter.mark()
        before = len(long_tasks_ms(frame))
        frame.locator("[data-testid=refresh]").click()
        page.wait_for_timeout(300)
        meter.wait_quiet(quiet_ms=2500, timeout_ms=120_000)
        responses = meter.since(mark)
        reload_tasks = long_tasks_ms(frame)
        idle.append(
            {
                "bytes": sum(r["bytes"] for r in responses),
                "responses": len(responses),
                "not_modified": sum(r["status"] == 304 for r in responses),
                "long_tasks": len(reload_tasks) - before,
            }
        )
    if profiler:
        profiles["idle_reloads"] = profiler.stop("idle_reloads")
    all_tasks = long_tasks_ms(frame)
    context.close()
    extra = {"cpu_profile": profiles} if profiles else {}
    return {
        "first_heatmap_s": round(drawn - frame_start, 3),
        "first_heatmap_from_navigation_s": round(drawn - started, 3),
        "tensorboard_page_until_tab_frame_s": round(frame_start - started, 3),
        "longest_task_loading_ms": round(loading_tasks[0], 1) if loading_tasks else 0.0,
        "longest_task_ms": round(tasks[0], 1) if tasks else 0.0,
        "longest_own_task_ms": round(own_tasks[0], 1) if own_tasks else 0.0,
        "longest_task_with_reloads_ms": round(all_tasks[0], 1) if all_tasks else 0.0,
        "long_tasks": len(tasks),
        "load_bytes": load_bytes,
        "page_height_px": shape["height"],
        "page_width_px": shape["width"],
        "viewport_width_px": shape["viewport"],
        "dom_nodes": shape["nodes"],
        "idle_reloads": idle,
        "errors": tab.errors,
        **extra,
    }


def scale_log(logdir: Path, steps: int, reuse: bool) -> tuple[ScaleLog, float]:
    """The 201-parameter log in `logdir` (written, or with `reuse` read back if there); seconds."""
    described = logdir / "scale_log.json"
    if reuse and described.exists():
        fields = json.loads(described.read_text())
        if fields["steps"] == steps:
            fields["logdir"] = Path(fields["logdir"])
            return ScaleLog(**fields), 0.0
        raise SystemExit(f"{logdir} holds a {fields['steps']}-step log, not {steps}")
    t = time.perf_counter()
    log = write_201_parameter_log(logdir, steps=steps)
    written_s = time.perf_counter() - t
    if reuse:
        fields = dataclasses.asdict(log)
        fields["logdir"] = str(log.logdir)
        described.write_text(json.dumps(fields))
    return log, written_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 steps, load_fast=false only")
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--out", default=None)
    parser.add_argument("--logdir", default=None, help="reuse (or write once) this log dir")
    parser.add_argument(
        "--profile", default=None, help="folder for CPU profiles of the tab (loading, scrolling)"
    )
    parser.add_argument(
        "--loaders", default="false,true", help="load_fast values to run, e.g. 'true'"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-tab-"))
    steps = 1000 if args.quick else 10_000
    logdir = Path(args.logdir) if args.logdir else tmp / "log"
    log, written_s = scale_log(logdir, steps, reuse=bool(args.logdir))
    profile = None
    if args.profile:
        profile = (Path(args.profile), unminified_bundle(tmp / "index.unminified.js"))
    loaders = [value.strip() == "true" for value in args.loaders.split(",")]
    paths = route_paths(log)
    figures = {
        "machine": machine(),
        "log": {
            "parameters": len(log.parameter_names),
            "layers": len(log.layer_modules),
            "steps": log.steps,
            "spectrum_steps": len(log.spectrum_steps),
            "written_s": round(written_s, 1),
        },
        "targets": TARGETS,
        "tensorboard": [],
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS
        )
        for load_fast in (False,) if args.quick else loaders:
            print(f"tensorboard load_fast={load_fast}: routes ...", flush=True)
            tb = TensorBoard(logdir, load_fast, None, tmp / f"tb-{load_fast}-routes.log")
            try:
                loaded_s = wait_loaded(tb.port, log)
                routes = time_routes(tb.port, paths, args.requests)
            finally:
                tb.stop()
            print(f"tensorboard load_fast={load_fast}: tab ...", flush=True)
            tb = TensorBoard(logdir, load_fast, None, tmp / f"tb-{load_fast}-tab.log")
            try:
                wait_loaded(tb.port, log)
                where = (
                    (profile[0] / f"load_fast_{str(load_fast).lower()}", profile[1])
                    if profile
                    else None
                )
                tab = measure_tab(browser, f"http://127.0.0.1:{tb.port}", profile=where)
            finally:
                tb.stop()
            figures["tensorboard"].append(
                {
                    "load_fast": load_fast,
                    "loaded_s": round(loaded_s, 1),
                    "tab": tab,
                    "routes": routes,
                }
            )
        browser.close()
    path = write_json("tab.json", figures, args.out)
    report(figures)
    print(f"wrote {path}")
    shutil.rmtree(tmp, ignore_errors=True)


def report(figures: dict) -> None:
    rows = []
    for tb in figures["tensorboard"]:
        tab, routes = tb["tab"], tb["routes"]
        idle = tab["idle_reloads"][-1]
        rows.append(
            [
                f"load_fast={str(tb['load_fast']).lower()}",
                tab["first_heatmap_s"],
                tab["longest_task_ms"],
                f"{idle['bytes'] / 1000:.1f} ({idle['not_modified']}/{idle['responses']} 304)",
                *(f"{routes[r]['cold_ms']} / {routes[r]['warm_ms']}" for r in ROUTES),
                tab["page_height_px"],
                tab["dom_nodes"],
            ]
        )
    print(
        table(
            rows,
            [
                "server",
                "first heatmap s",
                "longest task ms",
                "idle reload kB",
                "update_ratios ms cold/warm",
                "spectrum_metrics ms cold/warm",
                "page px",
                "DOM nodes",
            ],
        )
    )


if __name__ == "__main__":
    main()
