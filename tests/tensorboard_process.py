"""One real `tensorboard` process, for the tests and the benchmarks alike.

`TensorBoard(logdir, load_fast)` starts `tensorboard --logdir X --load_fast=false|true`
on a free port of 127.0.0.1 (in its own process group, so that stopping it also stops
the Rust data server it starts), `wait_ready()` waits until it answers, `get(path)`
reads a route, `stop()` ends it. The plumbing the callers share lives here too:
`free_port`, `get` (a URL → status, body), `http_get` (a port and path → status,
raw body, headers, seconds, with a browser's Accept-Encoding), `decode_body` (JSON of
a maybe gzipped body) and `wait_until` (poll a predicate).

Needs the standard library only: collecting tests imports it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

# The `tensorboard` next to this interpreter (the virtual environment's).
TENSORBOARD = str(Path(sys.executable).with_name("tensorboard"))
PLUGIN_ROUTES = "/data/plugin/deepscope"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    """GET a URL; returns (status, body), for error statuses too (urllib un-gzips nothing)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_with_headers(url: str, timeout: float = 30) -> tuple[int, bytes, dict[str, str]]:
    """GET a URL; returns (status, body, headers with lower-case names), errors too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, response.read(), headers
    except urllib.error.HTTPError as error:
        headers = {k.lower(): v for k, v in error.headers.items()}
        return error.code, error.read(), headers


def http_get(port: int, path: str, timeout: float = 120.0) -> tuple[int, bytes, dict, float]:
    """GET with a browser's Accept-Encoding; returns status, raw body, headers, seconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Accept-Encoding": "gzip, deflate, br"})
    resp = conn.getresponse()
    body = resp.read()
    seconds = time.perf_counter() - t0
    headers = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, body, headers, seconds


def decode_body(body: bytes, headers: dict) -> dict:
    """The JSON of a response body, un-gzipped when its Content-Encoding says so."""
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return json.loads(body)


def wait_until(predicate: Callable[[], object], timeout: float = 60, what: str = "condition"):
    """Poll `predicate` every 0.2 s until it returns something true; return that.

    OSError and ValueError (a server not up yet, a half-written body) count as
    "not yet"; TimeoutError names `what` and the last result after `timeout` s.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, ValueError) as error:
            last = error
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}; last: {last!r}")


class TensorBoard:
    """A `tensorboard` process serving `logdir` on a free port of 127.0.0.1.

    Args:
      logdir: the log dir to serve.
      load_fast: True for the Rust data server (`--load_fast=true`), False for
        the Python loader.
      samples: `--samples_per_plugin=deepscope=N` (0 keeps all); None leaves the
        flag out (the plugin's default).
      log: where its stdout and stderr go; None: a file next to nothing (discarded).
      preload: an LD_PRELOAD for the process and the data server it starts.
      reload_interval: `--reload_interval` in seconds; None: TensorBoard's default (5 s).
      extra_args: more command-line flags, e.g. ("--samples_per_plugin=deepscope=3",).

    Starts at once (`started` is the perf_counter time of the start); `wait_ready()`
    waits until it answers. A context manager: leaving it stops the process.
    """

    def __init__(
        self,
        logdir: Path | str,
        load_fast: bool,
        samples: int | None = None,
        log: Path | str | None = None,
        preload: str | None = None,
        *,
        reload_interval: float | None = None,
        extra_args: Sequence[str] = (),
    ):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
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
        if reload_interval is not None:
            cmd.append(f"--reload_interval={reload_interval:g}")
        if samples is not None:
            cmd.append(f"--samples_per_plugin=deepscope={samples}")
        cmd.extend(extra_args)
        self.cmd = cmd
        self.load_fast = load_fast
        self.log_path = Path(log) if log is not None else None
        self._log: IO[bytes] = open(log, "wb") if log is not None else open(os.devnull, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if preload:
            env["LD_PRELOAD"] = preload
        self.started = time.perf_counter()
        # Its own process group, so that stopping it also stops its data server.
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the process's output (empty when it goes nowhere)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, timeout: float = 90) -> TensorBoard:
        """Wait until TensorBoard lists its plugins; RuntimeError if the process exits."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited ({self.cmd}): {self.log_tail()}")
            status, _ = get(self.base + "/data/plugins_listing", timeout=5)
            return status == 200

        wait_until(ready, timeout=timeout, what=f"tensorboard on {self.base}")
        return self

    def url(self, path: str) -> str:
        """The URL of `path`; a path without a leading "/" is a deepscope route."""
        return self.base + (path if path.startswith("/") else f"{PLUGIN_ROUTES}/{path}")

    def get(self, path: str, timeout: float = 30) -> tuple[int, bytes]:
        """GET `path` ("/data/..." or a deepscope route such as "tags?x=1"): (status, body)."""
        return get(self.url(path), timeout=timeout)

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after 20 s) and close the log."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._log.close()

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
