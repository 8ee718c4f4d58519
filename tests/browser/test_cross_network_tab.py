"""compare()'s regression table and compare_cka's CKA heatmap in the tab, in a real browser
and TensorBoard.

The log is written as a user writes it (tests/cross_network_data.py): two CNNs trained
from seeds 0 and 1 on scikit-learn's digits, compared at two steps. The compare card of a
layer must show, beside its matching curves, Li et al.'s table as the
`correlation_regression` route serves it (the layer means, each channel's least-squares
and L1 error and L1 channel count, the pair's CKA); the CKA section must show the matrix
as the `cka` route serves it, layer names on both axes, each row's best layer outlined,
hover with the value, and follow its step slider.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/cross_network.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import cross_network_data as data
from tests.browser.tab_page import TIMEOUT_MS, VIEWPORT, screenshot, tooltip_fields
from tests.route_helpers import route

sync_api = pytest.importorskip("playwright.sync_api")

RUN = "compare"


@pytest.fixture(scope="session")
def cross_server(tmp_path_factory, tensorboard_server) -> str:
    logdir = tmp_path_factory.mktemp("cross-network-tab")
    data.log_two_seeds(logdir, run=RUN)
    return tensorboard_server(Path(logdir), load_fast=False)


def shown_error(value) -> str:
    """The tab's formatting of an error: three decimals, "—" for none."""
    return "—" if value is None else f"{value:.3f}"


def regression_block(frame, tag: str, step: int):
    found = frame.locator(f'[data-testid=correlation-card][data-tag="{tag}"]')
    found.scroll_into_view_if_needed(timeout=TIMEOUT_MS)  # cards load when seen
    block = found.locator(
        f'[data-testid=regression-table] .ds-corr-reg-run[data-run="{RUN}"][data-step="{step}"]'
    )
    block.wait_for(timeout=TIMEOUT_MS)
    block.scroll_into_view_if_needed(timeout=TIMEOUT_MS)
    return block


def test_the_regression_table_is_the_routes(tab, cross_server):
    tag = "compare/relu2"
    newest = route(cross_server, "correlation_regression", run=RUN, tag=tag)
    frame = tab.open(cross_server)
    block = regression_block(frame, tag, newest["step"])
    means = block.locator("[data-testid=regression-means]")
    for field in ("mean_least_squares_error", "mean_l1_error"):
        assert means.locator(f"td[data-field={field}]").inner_text() == shown_error(newest[field])
    channels = means.locator("td[data-field=mean_l1_channels]").inner_text()
    assert channels == f"{newest['mean_l1_channels']:.1f}"
    assert f"all {newest['predictors']} channels" in means.inner_text()
    assert block.locator("[data-testid=pair-cka]").inner_text() == f"CKA {newest['cka']:.3f}"
    rows = block.locator("[data-testid=regression-channels] tbody tr")
    assert rows.count() == len(newest["least_squares_error"]) == 12
    assert newest["l1_error"].count(None) == 1  # the dead channel: not fitted
    for i in range(rows.count()):
        row = rows.nth(i)
        assert row.locator("td[data-field=least_squares_error]").inner_text() == shown_error(
            newest["least_squares_error"][i]
        )
        assert row.locator("td[data-field=l1_error]").inner_text() == shown_error(
            newest["l1_error"][i]
        )
        fitted = newest["l1_error"][i] is not None  # a dead channel has no fit: "—"
        assert row.locator("td[data-field=l1_channels]").inner_text() == (
            str(newest["l1_channels"][i]) if fitted else "—"
        )
    # Beside the matching curves, in the same strip.
    curves = frame.locator(
        f'[data-testid=correlation-card][data-tag="{tag}"] [data-testid=matching-curves]'
    )
    assert curves.locator("[data-testid=matching-curve]").count() == 2
    assert curves.locator("[data-testid=regression-table]").is_visible()
    assert tab.errors == []


def cka_grid(frame, step: int):
    found = frame.locator(f'[data-testid=cka-card][data-run="{RUN}"][data-tag="{data.CKA_TAG}"]')
    found.scroll_into_view_if_needed(timeout=TIMEOUT_MS)
    grid = found.locator(f'[data-testid=cka-matrix][data-step="{step}"]')
    grid.wait_for(timeout=TIMEOUT_MS)
    grid.scroll_into_view_if_needed(timeout=TIMEOUT_MS)  # drawn (innerText) once on screen
    return found, grid


def test_the_cka_heatmap_is_the_routes_and_follows_the_slider(tab, cross_server):
    kinds = {k["name"]: k for k in route(cross_server, "kinds")}
    newest = route(cross_server, "cka", run=RUN, tag=data.CKA_TAG)
    frame = tab.open(cross_server)
    section = frame.locator("[data-testid=section-cka]")
    section.wait_for(timeout=TIMEOUT_MS)
    assert section.locator(".ds-kind-title").inner_text() == kinds["cka"]["title"]
    found, grid = cka_grid(frame, newest["step"])
    n_a, n_b = len(newest["layers_a"]), len(newest["layers_b"])
    cells = grid.locator("td.ds-cm-cell")
    assert cells.count() == n_a * n_b
    for i in range(n_a):
        for j in range(n_b):
            cell = cells.nth(n_b * i + j)
            assert cell.inner_text() == f"{newest['matrix'][i][j]:.2f}"
    assert grid.locator("th.ds-cm-col").all_inner_texts() == newest["layers_b"]
    best = grid.locator("td.ds-cka-best").evaluate_all("els => els.map(e => +e.dataset.col)")
    assert best == [b["col"] for b in newest["best"]]
    grid.locator('td.ds-cm-cell[data-row="1"][data-col="3"]').hover()
    fields = tooltip_fields(frame)
    assert fields["cka"].endswith(f"{newest['matrix'][1][3]:.4f}")
    # The slider's first step shows the first step's matrix.
    first = route(cross_server, "cka", run=RUN, tag=data.CKA_TAG, step=data.STEPS[0])
    slider = found.locator("[data-testid=step-slider] input")
    slider.fill("0")
    slider.dispatch_event("change")
    _, earlier = cka_grid(frame, data.STEPS[0])
    assert earlier.locator("td.ds-cm-cell").nth(n_b + 3).inner_text() == (
        f"{first['matrix'][1][3]:.2f}"
    )
    assert tab.errors == []


def test_screenshot(tab, cross_server, tmp_path):
    frame = tab.open(cross_server)
    regression_block(frame, "compare/relu2", data.STEPS[-1])
    cka_grid(frame, data.STEPS[-1])
    height = frame.evaluate("document.documentElement.scrollHeight")
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": height + 80})
    tab.page.wait_for_timeout(500)
    card = frame.locator('[data-testid=correlation-card][data-tag="compare/relu2"]')
    screenshot(card, tmp_path, "cross_network.png", min_bytes=10_000)
    section = frame.locator("[data-testid=section-cka]")
    screenshot(section, tmp_path, "cka.png", min_bytes=5_000)
