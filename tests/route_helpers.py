"""Helpers the kinds' unit, integration and browser tests share to read the plugin's routes.

`route` (JSON from a served TensorBoard), `decode` (an array slot of a response, decoded
with numpy alone), `number` (a JSON number, NaN/Infinity spelled out), `LOADERS` (both
loaders of a real `tensorboard`), `CountingProvider` (a data provider that counts reads),
`multiplexer_provider` (TensorBoard's multiplexer data provider over a log dir, in-process).
"""

from __future__ import annotations

import base64
import json
import math
from urllib.parse import urlencode

import numpy as np
import pytest

from tests.conftest import get

# Both loaders of a real `tensorboard`: the Python one and the Rust data server.
LOADERS = [pytest.param(False, id="load_fast=false"), pytest.param(True, id="load_fast=true")]


def route(base_url: str, path: str, **params) -> dict:
    """GET /data/plugin/deepscope/<path> of a served TensorBoard as JSON; asserts a 200.

    A list value becomes a repeated query parameter.
    """
    status, body = get(f"{base_url}/data/plugin/deepscope/{path}?{urlencode(params, doseq=True)}")
    assert status == 200, body
    return json.loads(body)


def decode(slot: dict) -> np.ndarray:
    """An array slot of a response ({"dtype", "shape", "base64"}), decoded with numpy alone."""
    dtype = {"float16": "<f2", "float32": "<f4"}[slot["dtype"]]
    return np.frombuffer(base64.b64decode(slot["base64"]), dtype=dtype).reshape(slot["shape"])


def number(value) -> float:
    """A number of a route's JSON, "NaN", "Infinity" and "-Infinity" read as floats."""
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, value)


def multiplexer_provider(logdir, tensor_size_guidance=None):
    """(multiplexer, MultiplexerDataProvider) over `logdir`, loaded once; default size guidance."""
    from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
    from tensorboard.backend.event_processing import data_provider as tb_data_provider

    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=tensor_size_guidance or data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return multiplexer, tb_data_provider.MultiplexerDataProvider(multiplexer, str(logdir))


class CountingProvider:
    """A data provider that counts step listings, series listings and blob reads, and can
    fail one blob read."""

    def __init__(self, inner):
        self._inner = inner
        self.listings = 0  # read_blob_sequences calls (step listings)
        self.series_listings = 0  # list_blob_sequences calls
        self.blob_reads = 0
        self.fail_next_read = False

    def read_blob_sequences(self, *args, **kwargs):
        self.listings += 1
        return self._inner.read_blob_sequences(*args, **kwargs)

    def list_blob_sequences(self, *args, **kwargs):
        self.series_listings += 1
        return self._inner.list_blob_sequences(*args, **kwargs)

    def read_blob(self, *args, **kwargs):
        if self.fail_next_read:
            self.fail_next_read = False
            raise RuntimeError("blob gone")
        self.blob_reads += 1
        return self._inner.read_blob(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)
