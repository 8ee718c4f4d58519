"""Jacobian singular values in the tab, in a real browser and TensorBoard.

The log is written as a user writes it: a small CNN with batch norm trained under
`deepscope.watch` with the `JacobianSpectra` measurer (the network's map and three
layers'). The tab must show a jacobian section (its title from the `kinds` route), a card
per (run, tag) with σ_max and the spectrum's band per map over training against the
isometry line, the network's spectrum at the newest step (one line per probe sample),
a step slider and a map picker that redraw it, and a table whose numbers are the route's.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/jacobian.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from tests import jacobian_data as data
from tests.browser.tab_page import TIMEOUT_MS, VIEWPORT, css_rgb, screenshot
from tests.conftest import get
from tests.route_helpers import number

sync_api = pytest.importorskip("playwright.sync_api")

RUN = "cnn"
STEPS = 21
EVERY = 4
SAMPLES = 4  # tests/jacobian_data.py's probe


@pytest.fixture(scope="session")
def jacobian_server(tmp_path_factory, tensorboard_server) -> str:
    logdir = tmp_path_factory.mktemp("jacobian-tab")
    data.log_training(logdir, run=RUN, steps=STEPS, every=EVERY)
    return tensorboard_server(Path(logdir), load_fast=False)


def route(base_url: str, path: str, **params):
    status, body = get(f"{base_url}/data/plugin/deepscope/{path}?{urlencode(params)}")
    assert status == 200, body
    return json.loads(body)


def card(frame):
    found = frame.locator(f'[data-testid=jacobian-card][data-run="{RUN}"][data-tag="{data.TAG}"]')
    found.wait_for(timeout=TIMEOUT_MS)
    return found


def sigma(value: float) -> str:
    """The tab's text for a singular value: 3 significant digits (exponent beyond 1e4)."""
    a = abs(value)
    if a != 0 and (a < 1e-3 or a >= 1e4):
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa}e{int(exponent):+d}"
    return (
        f"{value:.3g}"
        if a >= 1
        else np.format_float_positional(value, precision=3, fractional=False, trim="-")
    )


def test_section_charts_and_table_show_the_logged_maps(tab, jacobian_server):
    kinds = {k["name"]: k for k in route(jacobian_server, "kinds")}
    series = route(jacobian_server, "jacobian", run=RUN, tag=data.TAG)
    steps = list(range(0, STEPS, EVERY))
    assert series["steps"] == steps
    frame = tab.open(jacobian_server)
    section = frame.locator("[data-testid=section-jacobian]")
    section.wait_for(timeout=TIMEOUT_MS)
    assert section.locator(".ds-kind-title").inner_text() == kinds["jacobian"]["title"]
    found = card(frame)
    training = found.locator("[data-testid=jacobian-training-chart][data-drawn=true]")
    training.wait_for(timeout=TIMEOUT_MS)
    maps = ["", *data.TRAINING_LAYERS]
    assert training.get_attribute("data-maps") == str(len(maps))
    for name in maps:
        assert training.locator(f'path.ds-jac-max[data-map="{name}"]').count() == 1
        assert training.locator(f'path.ds-jac-band[data-map="{name}"]').count() == 1
    assert training.locator("rect.ds-jac-isometry").count() == 1
    legend = training.locator(".ds-chart-legend").inner_text()
    assert "network (64 → 10)" in legend and "0.0 (64 → 256)" in legend

    spectrum = found.locator("[data-testid=jacobian-spectrum-chart][data-drawn=true]")
    spectrum.wait_for(timeout=TIMEOUT_MS)
    assert spectrum.get_attribute("data-step") == str(steps[-1])
    assert spectrum.get_attribute("data-map") == ""
    assert spectrum.locator("path.ds-jac-sample").count() == SAMPLES
    assert "network at step 20" in spectrum.inner_text()

    # The table at the newest step: σ_max mean over samples as the route computes it.
    rows = found.locator(".ds-jac-table tbody tr")
    assert [rows.nth(i).get_attribute("data-map") for i in range(rows.count())] == maps
    newest = route(jacobian_server, "jacobian_spectrum", run=RUN, tag=data.TAG)
    for i, entry in enumerate(newest["maps"]):
        top = np.array([number(row[0]) for row in entry["singular_values"]])
        cell = rows.nth(i).locator("td[data-field=sigma_max]").inner_text()
        assert cell.split(" ± ")[0] == sigma(float(top.mean())), (entry["name"], cell)
        assert rows.nth(i).locator("td[data-field=values]").inner_text().startswith("all ")


def test_the_slider_and_the_map_picker_redraw_the_spectrum(tab, jacobian_server):
    frame = tab.open(jacobian_server)
    found = card(frame)
    spectrum = found.locator("[data-testid=jacobian-spectrum-chart]")
    found.locator("[data-testid=jacobian-spectrum-chart][data-drawn=true]").wait_for(
        timeout=TIMEOUT_MS
    )
    slider = found.locator("[data-testid=step-slider] input")
    slider.fill("0")
    slider.dispatch_event("change")
    found.locator('[data-testid=jacobian-spectrum-chart][data-step="0"]').wait_for(
        timeout=TIMEOUT_MS
    )
    found.locator("[data-testid=jacobian-map]").select_option("0.3")
    found.locator('[data-testid=jacobian-spectrum-chart][data-map="0.3"]').wait_for(
        timeout=TIMEOUT_MS
    )
    first = route(jacobian_server, "jacobian_spectrum", run=RUN, tag=data.TAG, step=0)
    layer = next(m for m in first["maps"] if m["name"] == "0.3")
    assert spectrum.get_attribute("data-samples") == str(len(layer["singular_values"]))
    assert found.locator(".ds-jac-table tr.ds-jac-picked").get_attribute("data-map") == "0.3"


def test_screenshot_shows_each_maps_line(tab, jacobian_server, tmp_path):
    frame = tab.open(jacobian_server)
    found = card(frame)
    found.locator("[data-testid=jacobian-spectrum-chart][data-drawn=true]").wait_for(
        timeout=TIMEOUT_MS
    )
    height = frame.evaluate("document.documentElement.scrollHeight")
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": height + 80})
    tab.page.wait_for_timeout(500)
    section = frame.locator("[data-testid=section-jacobian]")
    picture = screenshot(section, tmp_path, "jacobian.png", min_bytes=10_000)
    for name in ["", *data.TRAINING_LAYERS]:
        line = found.locator(f'path.ds-jac-max[data-map="{name}"]')
        rgb = css_rgb(line.get_attribute("stroke"))
        assert picture.count(rgb, tolerance=8) > 20, f"map {name!r}'s line is not in the picture"
