"""docs/http_api.md documents every route the plugin serves, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from tensorboard.plugins import base_plugin

from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin

DOC = Path(__file__).resolve().parents[2] / "docs" / "http_api.md"


def test_every_route_has_a_documented_heading_and_an_example():
    plugin = DeepscopePlugin(base_plugin.TBContext(data_provider=None, sampling_hints={}))
    routes = set(plugin.get_plugin_apps())
    text = DOC.read_text(encoding="utf-8")
    headings = set(re.findall(r"^#+ `GET /data/plugin/deepscope(/[\w.]+)`", text, re.MULTILINE))
    assert headings == routes
    for route in routes - {"/index.js"}:
        # An example request of the route, as a client would send it.
        assert re.search(
            rf"^GET /data/plugin/deepscope{re.escape(route)}[?\n]", text, re.MULTILINE
        ), route
