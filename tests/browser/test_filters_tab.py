"""Filters and feature maps in the tab, in a real browser and TensorBoard.

The log is written as a user writes it: a small CNN trained on scikit-learn's 8×8 digits
under `deepscope.watch` with `Filters` (conv1, conv2) and `FeatureMaps` (conv1, conv2 on a
held-out digit). The tab must show a filters section (its title from the `kinds` route),
a card per tag with a grid of tiles whose colours are the route's values on the card's
scale (the largest |value| of a signed tile at the diverging map's end), hover naming the
tile's indices and its value, the per-tile / shared toggle, paging past the page size,
and a second grid at another step side by side.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's pictures, docs/images/filters.png and
docs/images/feature_maps.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from tests import filters_data as data
from tests.browser.tab_page import TIMEOUT_MS, VIEWPORT, canvas_rgb, screenshot, tooltip_fields
from tests.conftest import get
from tests.route_helpers import decode

sync_api = pytest.importorskip("playwright.sync_api")

RUN = "digits"
RED, BLUE, WHITE, BLACK = (0x67, 0x00, 0x1F), (0x05, 0x30, 0x61), (255, 255, 255), (0, 0, 0)


@pytest.fixture(scope="session")
def filters_server(tmp_path_factory, tensorboard_server) -> str:
    logdir = tmp_path_factory.mktemp("filters-tab")
    data.log_training(logdir, run=RUN)
    return tensorboard_server(Path(logdir), load_fast=False)


def route(base_url: str, path: str, **params):
    status, body = get(f"{base_url}/data/plugin/deepscope/{path}?{urlencode(params)}")
    assert status == 200, body
    return json.loads(body)


def card(frame, tag: str):
    found = frame.locator(f'[data-testid=filters-card][data-run="{RUN}"][data-tag="{tag}"]')
    found.wait_for(timeout=TIMEOUT_MS)
    return found


def end_colour(values: np.ndarray) -> tuple[tuple[int, int], tuple[int, int, int]]:
    """The pixel (y, x) of the largest |value| of a tile and the colour the scale gives it."""
    y, x = np.unravel_index(int(np.argmax(np.abs(values))), values.shape)
    value = values[y, x]
    signed = values.min() < 0 < values.max()
    if signed:
        return (int(y), int(x)), RED if value > 0 else BLUE
    return (int(y), int(x)), WHITE if value == values.max() else BLACK


def tile_point(k: int, y: int, x: int, cell: int, h: int, columns: int) -> tuple[float, float]:
    """The canvas point of pixel (y, x) of grid tile k (cells of `cell` px, 2 px gaps)."""
    zoom = cell / h
    return (k % columns) * (cell + 2) + (x + 0.5) * zoom, (k // columns) * (cell + 2) + (
        y + 0.5
    ) * zoom


def colour_at(canvas, point: tuple[float, float]) -> tuple[int, int, int]:
    box = canvas.bounding_box()
    return canvas_rgb(canvas, box["x"] + point[0], box["y"] + point[1])


def hover(canvas, point: tuple[float, float]) -> None:
    canvas.hover(position={"x": point[0], "y": point[1]})


def close(got, want, tolerance: int = 2) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(got, want))


def test_grid_colours_and_hover_are_the_route(tab, filters_server):
    kinds = {k["name"]: k for k in route(filters_server, "kinds")}
    tag = "filters/conv2"
    body = route(filters_server, "filters", run=RUN, tag=tag, limit=256)
    tiles = decode(body["values"]).astype(np.float64)
    frame = tab.open(filters_server)
    section = frame.locator("[data-testid=section-filters]")
    section.wait_for(timeout=TIMEOUT_MS)
    assert section.locator(".ds-kind-title").inner_text() == kinds["filters"]["title"]
    found = card(frame, tag)
    canvas = found.locator(
        f'[data-testid=filters-grid][data-step="{body["step"]}"] [data-testid=filters-canvas]'
    )
    canvas.wait_for(timeout=TIMEOUT_MS)
    assert canvas.get_attribute("data-tiles") == str(body["count"]) == "128"
    columns = int(canvas.evaluate("c => Math.round((c.width + 2) / 41)"))
    assert columns % 8 == 0  # one out-channel's 8 in-channel tiles per row at least
    for k in (0, 9, 127):
        (y, x), colour = end_colour(tiles[k])
        assert close(colour_at(canvas, tile_point(k, y, x, 39, 3, columns)), colour), (k, colour)
    # Hover tile 9 = (out 1, in 1): its indices and the value under the pointer.
    (y, x), _ = end_colour(tiles[9])
    hover(canvas, tile_point(9, y, x, 39, 3, columns))
    fields = tooltip_fields(frame)
    assert fields["tile"] == "out 1, in 1"
    assert float(fields["value"].split()[-1]) == pytest.approx(tiles[9][y, x], rel=1e-3)
    assert fields["pixel"].endswith(f"{y}, {x}")


def test_shared_scale_paging_and_two_steps(tab, filters_server):
    tag = "feature_maps/conv1"
    steps = route(filters_server, "filters_steps", run=RUN, tag=tag)["steps"]
    body = route(filters_server, "filters", run=RUN, tag=tag)
    tiles = decode(body["values"]).astype(np.float64)
    frame = tab.open(filters_server)
    found = card(frame, tag)
    canvas = found.locator("[data-testid=filters-grid] [data-testid=filters-canvas]")
    found.locator(f'[data-testid=filters-grid][data-step="{steps[-1]}"]').wait_for(
        timeout=TIMEOUT_MS
    )
    found.locator("[data-testid=filters-scale]").select_option("shared")
    found.locator("xpath=self::*[@data-scale='shared']").wait_for(timeout=TIMEOUT_MS)
    # The step's largest |value| is at the shared scale's end; 8 × 8 maps drawn 96 px.
    k, y, x = np.unravel_index(int(np.argmax(np.abs(tiles))), tiles.shape)
    signed = tiles.min() < 0 < tiles.max()
    want = (RED if tiles[k, y, x] > 0 else BLUE) if signed else WHITE
    columns = int(canvas.evaluate("c => Math.round((c.width + 2) / 98)"))
    point = tile_point(int(k), int(y), int(x), 96, 8, columns)
    assert close(colour_at(canvas, point), want)
    hover(canvas, point)
    assert tooltip_fields(frame)["tile"] == f"channel {k}"
    # Paging: conv2's 128 tiles in pages of 64.
    other = card(frame, "filters/conv2")
    other.locator("[data-testid=filters-page-size]").select_option("64")
    grid = other.locator("[data-testid=filters-grid] [data-testid=filters-canvas]")
    other.locator('[data-testid=filters-canvas][data-tiles="64"][data-offset="0"]').wait_for(
        timeout=TIMEOUT_MS
    )
    other.locator("[data-testid=filters-next]").click()
    other.locator('[data-testid=filters-grid] [data-offset="64"]').wait_for(timeout=TIMEOUT_MS)
    assert other.locator("[data-testid=filters-page]").inner_text() == "tiles 64–127 of 128"
    assert grid.get_attribute("data-tiles") == "64"
    # Two steps side by side: the second grid starts at the first step.
    other.locator("[data-testid=filters-compare]").check()
    other.locator(f'[data-testid=filters-grid-compare][data-step="{steps[0]}"]').wait_for(
        timeout=TIMEOUT_MS
    )
    assert other.locator("[data-testid=filters-grid-compare]").is_visible()


def test_screenshots(tab, filters_server, tmp_path):
    steps = route(filters_server, "filters_steps", run=RUN, tag="filters/conv2")["steps"]
    frame = tab.open(filters_server)
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": 2400})
    filters = card(frame, "filters/conv2")
    filters.locator("[data-testid=filters-compare]").check()
    filters.locator(f'[data-testid=filters-grid-compare][data-step="{steps[0]}"]').wait_for(
        timeout=TIMEOUT_MS
    )
    tab.page.wait_for_timeout(500)
    screenshot(filters, tmp_path, "filters.png", min_bytes=10_000)
    maps = card(frame, "feature_maps/conv2")
    maps.locator("[data-testid=filters-grid] [data-testid=filters-canvas]").wait_for(
        timeout=TIMEOUT_MS
    )
    tab.page.wait_for_timeout(300)
    screenshot(maps, tmp_path, "feature_maps.png", min_bytes=10_000)
