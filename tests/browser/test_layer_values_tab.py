"""Layer values (users' own per-layer quantities) in the tab, in a real browser and TensorBoard.

The log is written with `deepscope.SummaryWriter.add_layer_values`: a log-scale gradient
norm over 40 steps and 4 layers (one not measured at some steps), and a linear-scale
fraction in [0, 1]. The tab must show a layer_values section (its title from the `kinds`
route), a heatmap per tag with every layer and step, tooltips with the logged values, a
line chart on the quantity's scale and labels (no 1e-3 rule of thumb), and colours from
the viridis ends at the linear series' 0 and 1.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/layer_values.png.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from tests.browser.tab_page import (
    TIMEOUT_MS,
    UNIT_BOX,
    VIEWPORT,
    canvas_rgb,
    css_rgb,
    hover_point,
    screenshot,
)
from tests.conftest import get

sync_api = pytest.importorskip("playwright.sync_api")

RUN = "probe"
LAYERS = ["conv1", "conv2", "fc1", "head"]
STEPS = list(range(0, 400, 10))
# Viridis at t = 0 and t = 1 (matplotlib's and d3's table ends).
VIRIDIS_LOW = (0x44, 0x01, 0x54)
VIRIDIS_HIGH = (0xFD, 0xE7, 0x25)


def grad_norm(layer: int, step: int) -> float | None:
    """The log-scale series: decades apart per layer, drifting; fc1 not measured every 4th step."""
    if LAYERS[layer] == "fc1" and (step // 10) % 4 == 3:
        return None
    return 10.0 ** (layer - 3) * (1.0 + 0.5 * math.sin(step / 50.0 + layer))


def dead_fraction(layer: int, step: int) -> float:
    """The linear series, in [0, 1]: layer 0 stays at 0, layer 3 reaches 1 at the last step."""
    return round(layer / 3 * step / STEPS[-1], 6)


@pytest.fixture(scope="session")
def layer_values_logdir(tmp_path_factory) -> Path:
    import deepscope

    logdir = tmp_path_factory.mktemp("layer-values-tab")
    writer = deepscope.SummaryWriter(str(logdir / RUN))
    for step in STEPS:
        writer.add_layer_values(
            "grad_norm",
            {name: grad_norm(j, step) for j, name in enumerate(LAYERS)},
            global_step=step,
            walltime=1000.0 + step,
            quantity="gradient norm",
            scale="log",
        )
        writer.add_layer_values(
            "dead_fraction",
            {name: dead_fraction(j, step) for j, name in enumerate(LAYERS)},
            global_step=step,
            walltime=1000.0 + step,
            quantity="dead units",
            unit="fraction",
            scale="linear",
        )
    writer.close()
    return logdir


@pytest.fixture(scope="session")
def layer_values_server(layer_values_logdir, tensorboard_server) -> str:
    return tensorboard_server(layer_values_logdir, load_fast=False)


def route(base_url: str, path: str, **params):
    status, body = get(f"{base_url}/data/plugin/deepscope/{path}?{urlencode(params)}")
    assert status == 200, body
    return json.loads(body)


def heatmap(frame, tag: str):
    canvas = frame.locator(f'[data-testid=heatmap][data-run="{RUN}"][data-tag="{tag}"]')
    canvas.and_(frame.locator("[data-drawn=true]")).wait_for(timeout=TIMEOUT_MS)
    return canvas


def card(frame, tag: str):
    return frame.locator(f'[data-testid=section-layer_values] .ds-card[data-tag="{tag}"]')


def cell_centre(box: dict, steps: list[int], rows: int, i: int, j: int) -> tuple[float, float]:
    """Where the heatmap draws (step index i, row j): equal rows; step i spans
    [steps[i], steps[i+1]) on a linear axis ending one median gap after the last step."""
    gap = max(1, statistics.median(b - a for a, b in zip(steps, steps[1:])))
    lo, hi = steps[0], steps[-1] + gap
    end = steps[i + 1] if i + 1 < len(steps) else hi
    x = box["x"] + ((steps[i] + end) / 2 - lo) / (hi - lo) * box["width"]
    y = box["y"] + (j + 0.5) * box["height"] / rows
    return x, y


def format_log(value) -> str:
    """The tab's text for a log-scale value: 1.23e-3, 1.33e+0 (d3's .2e: no exponent zeros)."""
    if value is None:
        return "no value"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent):+d}"


def format_linear(value: float) -> str:
    """The tab's text for a linear-scale value in [0.001, 1]: 4 significant digits, trimmed."""
    if value == 0:
        return "0"
    return f"{value:.4g}"


def test_section_heatmap_and_tooltips_show_every_layer_and_value(tab, layer_values_server):
    kinds = {k["name"]: k for k in route(layer_values_server, "kinds")}
    expected = route(layer_values_server, "layer_values", run=RUN, tag="grad_norm")
    assert expected["names"] == LAYERS and expected["steps"] == STEPS
    frame = tab.open(layer_values_server)
    section = frame.locator("[data-testid=section-layer_values]")
    section.wait_for(timeout=TIMEOUT_MS)
    assert section.locator(".ds-kind-title").inner_text() == kinds["layer_values"]["title"]

    canvas = heatmap(frame, "grad_norm")
    assert canvas.get_attribute("data-steps") == str(len(STEPS))
    assert canvas.get_attribute("data-params") == str(len(LAYERS))
    labels = card(frame, "grad_norm").locator(".ds-ur-row[data-name]")
    assert [labels.nth(k).get_attribute("data-name") for k in range(labels.count())] == LAYERS
    count = card(frame, "grad_norm").locator("[data-testid=param-count]").inner_text()
    assert count == f"{len(LAYERS)} layers"

    not_measured = next(i for i, s in enumerate(STEPS) if grad_norm(2, s) is None)
    for i, j in [(0, 0), (len(STEPS) // 2, 3), (len(STEPS) - 1, 1), (not_measured, 2)]:
        point = cell_centre(UNIT_BOX, STEPS, len(LAYERS), i, j)
        fields = hover_point(tab, canvas, *point, {"name": LAYERS[j], "step": str(STEPS[i])})
        assert fields["name"] == LAYERS[j]
        assert fields["step"] == str(STEPS[i])
        assert fields["value"] == format_log(grad_norm(j, STEPS[i])), (i, j)
    tab.page.mouse.move(1, 1)


def test_line_chart_uses_the_quantity_and_its_scale_without_a_rule_of_thumb(
    tab, layer_values_server
):
    frame = tab.open(layer_values_server)
    heatmap(frame, "grad_norm")
    chart = card(frame, "grad_norm").locator("[data-testid=linechart]")
    chart.locator("path.ds-line").first.wait_for(timeout=TIMEOUT_MS)
    text = chart.locator("svg.ds-chart-svg").text_content()
    assert "gradient norm (log scale)" in text and "step" in text
    assert "rule of thumb" not in chart.inner_text()
    assert card(frame, "grad_norm").locator(".ds-band").count() == 0
    # It opens on the layer whose median over its last 100 logged steps is largest.
    medians = {
        name: np.median([np.log10(v) for s in STEPS[-100:] if (v := grad_norm(j, s)) is not None])
        for j, name in enumerate(LAYERS)
    }
    assert json.loads(chart.get_attribute("data-params")) == [max(medians, key=medians.get)]

    linear = card(frame, "dead_fraction").locator("[data-testid=linechart]")
    linear.scroll_into_view_if_needed()
    linear.locator("path.ds-line").first.wait_for(timeout=TIMEOUT_MS)
    text = linear.locator("svg.ds-chart-svg").text_content()
    assert "dead units (fraction)" in text and "log scale" not in text
    legend = card(frame, "dead_fraction").locator("[data-testid=legend]").inner_text()
    assert "dead units (fraction)" in legend and "log10" not in legend


def test_linear_heatmap_colours_and_screenshot(tab, layer_values_server, tmp_path):
    """The linear series' 0 and 1 are viridis' two ends (its colour scale is [0, 1]), in the
    canvas and in the picture; mid values lie between; tooltips give the linear values."""
    frame = tab.open(layer_values_server)
    heatmap(frame, "grad_norm")
    target = card(frame, "dead_fraction")
    target.scroll_into_view_if_needed()
    canvas = heatmap(frame, "dead_fraction")
    last = len(STEPS) - 1
    box = canvas.bounding_box()
    zero = cell_centre(box, STEPS, len(LAYERS), last, 0)  # layer 0: always 0
    one = cell_centre(box, STEPS, len(LAYERS), last, 3)  # layer 3 at the last step: 1
    assert max(abs(a - b) for a, b in zip(canvas_rgb(canvas, *zero), VIRIDIS_LOW)) <= 2
    assert max(abs(a - b) for a, b in zip(canvas_rgb(canvas, *one), VIRIDIS_HIGH)) <= 2
    point = cell_centre(UNIT_BOX, STEPS, len(LAYERS), last, 2)
    fields = hover_point(tab, canvas, *point, {"name": LAYERS[2], "step": str(STEPS[last])})
    assert fields["value"] == format_linear(dead_fraction(2, STEPS[last]))
    tab.page.mouse.move(1, 1)

    # Tall enough for the whole section (an iframe clips what it does not show).
    height = frame.evaluate("document.documentElement.scrollHeight")
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": height + 80})
    tab.page.wait_for_timeout(500)  # let the redraw after the resize settle
    section = frame.locator("[data-testid=section-layer_values]")
    picture = screenshot(section, tmp_path, "layer_values.png")
    box = canvas.bounding_box()
    zero = cell_centre(box, STEPS, len(LAYERS), last, 0)
    one = cell_centre(box, STEPS, len(LAYERS), last, 3)
    assert max(abs(a - b) for a, b in zip(picture.rgb(*zero), VIRIDIS_LOW)) <= 2
    assert max(abs(a - b) for a, b in zip(picture.rgb(*one), VIRIDIS_HIGH)) <= 2
    for tag in ("grad_norm", "dead_fraction"):
        line = card(frame, tag).locator("path.ds-line").first
        rgb = css_rgb(line.get_attribute("stroke"))
        assert picture.count(rgb, tolerance=8) > 30, f"{tag}'s line is not in the picture"
