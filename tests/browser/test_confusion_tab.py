"""Confusion matrices in the tab, in a real browser and TensorBoard.

The log is written as a user writes it: an MLP trained on scikit-learn's 8×8 digits under
`deepscope.watch` with `ConfusionMatrices` on held-out digits, once per epoch. The tab must
show a confusion section (its title from the `kinds` route), a card with the matrix whose
cells are the route's counts, the toggle to row / column fractions, hover with counts and
fractions, a per-class table sortable by a column, and the most-confused pairs.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/confusion.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests import confusion_data as data
from tests.browser.tab_page import TIMEOUT_MS, VIEWPORT, screenshot
from tests.conftest import get
from tests.route_helpers import number

sync_api = pytest.importorskip("playwright.sync_api")

RUN = "digits"


@pytest.fixture(scope="session")
def confusion_server(tmp_path_factory, tensorboard_server) -> str:
    logdir = tmp_path_factory.mktemp("confusion-tab")
    data.log_training(logdir, run=RUN, epochs=4)
    return tensorboard_server(Path(logdir), load_fast=False)


def route(base_url: str, path: str, **params):
    status, body = get(f"{base_url}/data/plugin/deepscope/{path}?{urlencode(params)}")
    assert status == 200, body
    return json.loads(body)


def card(frame):
    found = frame.locator(f'[data-testid=confusion-card][data-run="{RUN}"][data-tag="{data.TAG}"]')
    found.wait_for(timeout=TIMEOUT_MS)
    return found


def test_matrix_table_and_pairs_are_the_routes(tab, confusion_server):
    kinds = {k["name"]: k for k in route(confusion_server, "kinds")}
    newest = route(confusion_server, "confusion", run=RUN, tag=data.TAG)
    frame = tab.open(confusion_server)
    section = frame.locator("[data-testid=section-confusion]")
    section.wait_for(timeout=TIMEOUT_MS)
    assert section.locator(".ds-kind-title").inner_text() == kinds["confusion"]["title"]
    found = card(frame)
    grid = found.locator(f'[data-testid=confusion-matrix][data-step="{newest["step"]}"]')
    grid.wait_for(timeout=TIMEOUT_MS)
    cells = grid.locator("td.ds-cm-cell")
    assert cells.count() == 100
    shown = [[int(cells.nth(10 * i + j).inner_text()) for j in range(10)] for i in range(10)]
    assert shown == newest["counts"]
    headers = grid.locator("th.ds-cm-col").all_inner_texts()
    assert headers == list(data.DIGITS)
    # Per-class table: recall of each class as the route serves it.
    rows = found.locator("[data-testid=confusion-classes] tbody tr")
    assert rows.count() == 10
    for i, entry in enumerate(newest["per_class"]):
        cell = rows.nth(i).locator("td[data-field=recall]").inner_text()
        want = number(entry["recall"])
        assert cell == ("—" if want != want else f"{want:.3f}")
    pairs = found.locator("[data-testid=confusion-pairs] li")
    assert pairs.count() == len(newest["most_confused"])
    first = newest["most_confused"][0]
    assert pairs.nth(0).get_attribute("data-true") == str(first["true"])
    assert f": {first['count']} (" in pairs.nth(0).inner_text()


def test_toggle_hover_sort_and_slider(tab, confusion_server):
    newest = route(confusion_server, "confusion", run=RUN, tag=data.TAG)
    frame = tab.open(confusion_server)
    found = card(frame)
    found.locator("[data-testid=confusion-matrix][data-mode=counts]").wait_for(timeout=TIMEOUT_MS)
    found.locator("[data-testid=confusion-normalization]").select_option("true")
    grid = found.locator("[data-testid=confusion-matrix][data-mode=true]")
    grid.wait_for(timeout=TIMEOUT_MS)
    row = newest["counts"][3]
    diagonal = grid.locator('td.ds-cm-cell[data-true="3"][data-predicted="3"]')
    assert diagonal.inner_text() == f"{row[3] / sum(row):.2f}"  # the row's recall
    diagonal.hover()
    tooltip = frame.locator("[data-testid=tooltip]")
    tooltip.wait_for(timeout=TIMEOUT_MS)
    assert tooltip.locator("[data-field=count]").inner_text().endswith(str(row[3]))
    column = sum(r[3] for r in newest["counts"])
    assert (
        tooltip.locator("[data-field=column]")
        .inner_text()
        .endswith(f"{100 * row[3] / column:.1f}%")
    )
    # Sorting by F1 (descending first): the table's order is the route's F1 order.
    found.locator("[data-testid=confusion-classes] th[data-sort=f1]").click()
    names = found.locator("[data-testid=confusion-classes] tbody tr").evaluate_all(
        "els => els.map(e => e.dataset.class)"
    )
    f1 = {e["name"]: number(e["f1"]) for e in newest["per_class"]}
    values = [f1[n] for n in names if f1[n] == f1[n]]
    assert values == sorted(values, reverse=True)
    slider = found.locator("[data-testid=step-slider] input")
    slider.fill("0")
    slider.dispatch_event("change")
    first_step = route(confusion_server, "confusion_series", run=RUN, tag=data.TAG)["steps"][0]
    found.locator(f'[data-testid=confusion-matrix][data-step="{first_step}"]').wait_for(
        timeout=TIMEOUT_MS
    )


def test_screenshot(tab, confusion_server, tmp_path):
    frame = tab.open(confusion_server)
    found = card(frame)
    found.locator("[data-testid=confusion-matrix][data-mode=counts]").wait_for(timeout=TIMEOUT_MS)
    height = frame.evaluate("document.documentElement.scrollHeight")
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": height + 80})
    tab.page.wait_for_timeout(500)
    section = frame.locator("[data-testid=section-confusion]")
    screenshot(section, tmp_path, "confusion.png", min_bytes=10_000)
