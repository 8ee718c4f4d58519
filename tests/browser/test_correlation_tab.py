"""The channel-correlation section of the tab in a real browser, inside a real TensorBoard.

The log dir is written during real training (tests/correlation_data.py). Hovering
a cell must show the ρ the matrix route returns, which is numpy.corrcoef of the
saved activations; the order toggle must reorder; a compare tag must show the
matched-correlation curves; dragging zooms to full resolution.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/correlation.png.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import warnings

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.tab_page import TIMEOUT_MS, VIEWPORT, hover_point, screenshot
from tests.correlation_data import (
    CROSS_TAG,
    DEAD_CHANNEL,
    WITHIN_TAG,
    load_activations,
    numpy_correlation,
)
from tests.route_helpers import decode, route

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="session")
def correlation_server(correlation_logdir, tensorboard_server) -> str:
    return tensorboard_server(correlation_logdir, load_fast=False)


def matrix_of(body: dict) -> np.ndarray:
    return decode(body["values"])


def format_rho(value: float) -> str:
    """The tab's formatting of ρ: 4 decimals, no negative zero."""
    text = f"{value:.4f}"
    return "0.0000" if text == "-0.0000" else text


def card(frame, tag: str):
    return frame.locator(f'[data-testid=correlation-card][data-tag="{tag}"]')


def heatmap(frame, tag: str, run: str, **data):
    selector = f'[data-testid=correlation-heatmap][data-run="{run}"][data-drawn=true]'
    for key, value in data.items():
        selector += f'[data-{key}="{value}"]'
    target = card(frame, tag)
    target.scroll_into_view_if_needed(timeout=TIMEOUT_MS)  # cards load when seen
    canvas = target.locator(selector)
    canvas.wait_for(timeout=TIMEOUT_MS)
    canvas.scroll_into_view_if_needed(timeout=TIMEOUT_MS)  # the card grew once it loaded
    return canvas


def hover_cell(tab, canvas, rows: int, cols: int, i: int, j: int) -> dict[str, str]:
    return hover_point(tab, canvas, (j + 0.5) / cols, (i + 0.5) / rows)


def near(rgb: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int) -> bool:
    """Whether every channel of `rgb` is within `tolerance` levels of `expected`."""
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


def test_hover_shows_the_routes_rho_which_is_numpys_and_dead_channels_are_marked(
    tab, correlation_server, correlation_logdir
):
    body = route(correlation_server, "correlation_matrix", run="seed1", tag=WITHIN_TAG)
    values = matrix_of(body)
    step = body["step"]
    expected = numpy_correlation(load_activations(correlation_logdir, "seed1", step))
    frame = tab.open(correlation_server)
    canvas = heatmap(frame, WITHIN_TAG, "seed1", step=step)
    assert canvas.get_attribute("data-rows") == "16" and canvas.get_attribute("data-cols") == "16"
    for i, j in [(0, 1), (5, 12), (15, 2), (9, 9)]:
        fields = hover_cell(tab, canvas, 16, 16, i, j)
        assert fields["row"] == str(i) and fields["col"] == str(j)
        assert fields["rho"] == format_rho(values[i, j])
        assert abs(float(fields["rho"]) - expected[i, j]) < 1e-3
        assert fields["step"] == str(step) and fields["run"] == "seed1"

    # seed0's dead channel: counted, and marked beside its row and above its column.
    heatmap(frame, WITHIN_TAG, "seed0")
    panel = card(frame, WITHIN_TAG).locator('.ds-corr-panel[data-run="seed0"]')
    count = panel.locator("[data-testid=dead-count]")
    assert count.get_attribute("data-count") == "1"
    expect(count).to_contain_text("1 dead channel", timeout=TIMEOUT_MS)
    ticks = panel.locator("[data-testid=dead-ticks] rect")
    assert ticks.count() == 2
    assert {ticks.nth(k).get_attribute("data-channel") for k in range(2)} == {str(DEAD_CHANNEL)}
    fields = hover_cell(tab, heatmap(frame, WITHIN_TAG, "seed0"), 16, 16, DEAD_CHANNEL, 0)
    assert "dead" in fields["dead"]
    live = card(frame, WITHIN_TAG).locator('.ds-corr-panel[data-run="seed1"]')
    assert live.locator("[data-testid=dead-count]").is_hidden()


def test_order_toggle_reorders_the_channels(tab, correlation_server):
    clustered = route(
        correlation_server, "correlation_matrix", run="seed0", tag=WITHIN_TAG, order="clustered"
    )
    original_order = ",".join(str(k) for k in range(16))
    clustered_order = ",".join(str(k) for k in clustered["row_order"])
    assert clustered_order != original_order
    frame = tab.open(correlation_server)
    canvas = heatmap(frame, WITHIN_TAG, "seed0", order="original")
    assert canvas.get_attribute("data-row-order") == original_order
    toggle = card(frame, WITHIN_TAG).locator("[data-testid=order-toggle]")
    assert toggle.locator("button[data-order=matched]").is_disabled()  # within one layer
    toggle.locator("button[data-order=clustered]").click()
    canvas = heatmap(frame, WITHIN_TAG, "seed0", order="clustered")
    assert canvas.get_attribute("data-row-order") == clustered_order
    assert toggle.locator("button[data-order=clustered]").get_attribute("aria-pressed") == "true"
    # Hover names channels in their original numbering: position 0 shows the first clustered.
    fields = hover_cell(tab, canvas, 16, 16, 0, 1)
    assert fields["row"] == str(clustered["row_order"][0])
    assert fields["col"] == str(clustered["col_order"][1])
    assert fields["rho"] == format_rho(matrix_of(clustered)[0, 1])


def test_compare_tag_shows_both_matching_curves_and_a_matched_order(tab, correlation_server):
    frame = tab.open(correlation_server)
    # Scrolled to, as a person would: cards off screen are not rendered (content-visibility).
    card(frame, CROSS_TAG).scroll_into_view_if_needed()
    curves = card(frame, CROSS_TAG).locator("[data-testid=matching-curves]")
    for method in ("semi", "bipartite"):
        for run in ("seed0", "seed1"):
            path = curves.locator(f'[data-method={method}] path[data-run="{run}"]')
            path.wait_for(timeout=TIMEOUT_MS)
            assert path.get_attribute("data-points") == "16"
    matching = route(correlation_server, "correlation_matching", run="seed0", tag=CROSS_TAG)
    legend = curves.locator('[data-method=bipartite] .ds-legend-item[data-run="seed0"]')
    assert format_rho(matching["bipartite"]["mean"]) in legend.inner_text()
    # A within-layer tag has no curves.
    assert card(frame, WITHIN_TAG).locator("[data-testid=matching-curves]").is_hidden()

    card(frame, CROSS_TAG).locator("button[data-order=matched]").click()
    canvas = heatmap(frame, CROSS_TAG, "seed0", order="matched")
    matched = route(
        correlation_server, "correlation_matrix", run="seed0", tag=CROSS_TAG, order="matched"
    )
    assert canvas.get_attribute("data-col-order") == ",".join(map(str, matched["col_order"]))
    fields = hover_cell(tab, canvas, 16, 16, 4, 4)  # a matched pair, on the diagonal
    pairs = dict(zip(matching["bipartite"]["rows"], matching["bipartite"]["cols"]))
    assert fields["col"] == str(pairs[int(fields["row"])])


def test_drag_zooms_to_a_full_resolution_window_and_reset_returns(tab, correlation_server):
    frame = tab.open(correlation_server)
    canvas = heatmap(frame, WITHIN_TAG, "seed1")
    box = canvas.bounding_box()
    cell = box["width"] / 16
    tab.page.mouse.move(box["x"] + 2.5 * cell, box["y"] + 4.5 * cell)
    tab.page.mouse.down()
    tab.page.mouse.move(box["x"] + 9.5 * cell, box["y"] + 7.5 * cell, steps=4)
    tab.page.mouse.up()
    # Rows 4..7 and columns 2..9, as half-open windows.
    canvas = heatmap(frame, WITHIN_TAG, "seed1", window="4,8,2,10")
    assert canvas.get_attribute("data-rows") == "4" and canvas.get_attribute("data-cols") == "8"
    full = matrix_of(route(correlation_server, "correlation_matrix", run="seed1", tag=WITHIN_TAG))
    fields = hover_cell(tab, canvas, 4, 8, 1, 3)
    assert (fields["row"], fields["col"]) == ("5", "5")
    assert fields["rho"] == format_rho(full[5, 5])
    reset = card(frame, WITHIN_TAG).locator('[data-run="seed1"] [data-testid=reset-zoom]')
    reset.click()
    heatmap(frame, WITHIN_TAG, "seed1", window="0,16,0,16")


def test_screenshot(tab, correlation_server, tmp_path):
    """The compare card in matched order; with DEEPSCOPE_SCREENSHOTS=1 the README's picture.

    The picture must show both runs' heatmaps cell by cell as the route's ρ: every cell
    of the picture is its canvas's colour, cells with ρ > 0.5 red, below -0.5 blue, near
    0 near white, a dead channel's grey; the legend bar runs from blue (-1) to red (+1);
    both runs' matching curves.
    """
    frame = tab.open(correlation_server)
    target = card(frame, CROSS_TAG)
    target.locator("button[data-order=matched]").click()
    heatmap(frame, CROSS_TAG, "seed0", order="matched")
    heatmap(frame, CROSS_TAG, "seed1", order="matched")
    target.locator('[data-method=bipartite] path[data-run="seed1"]').wait_for(timeout=TIMEOUT_MS)
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": 1100})
    tab.page.wait_for_timeout(500)  # let the redraw after the resize settle
    target.scroll_into_view_if_needed()
    canvas = heatmap(frame, CROSS_TAG, "seed0", order="matched")
    hover_cell(tab, canvas, 16, 16, 2, 2)
    picture = screenshot(target, tmp_path, "correlation.png")
    origin = target.bounding_box()
    tip = frame.locator("[data-testid=tooltip]").bounding_box()  # the hover's, over some cells

    def covered(x: float, y: float) -> bool:
        return tip["x"] - 2 <= x <= tip["x"] + tip["width"] + 2 and (
            tip["y"] - 2 <= y <= tip["y"] + tip["height"] + 2
        )

    points, expected, rhos = [], [], []
    for run in ("seed0", "seed1"):
        body = route(
            correlation_server, "correlation_matrix", run=run, tag=CROSS_TAG, order="matched"
        )
        rho = matrix_of(body)
        dead_rows = {p for p, ch in enumerate(body["row_order"]) if ch in body["row_dead"]}
        dead_cols = {p for p, ch in enumerate(body["col_order"]) if ch in body["col_dead"]}
        canvas = heatmap(frame, CROSS_TAG, run, order="matched")
        box = canvas.bounding_box()
        held = canvas.evaluate(
            "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
        )
        for i in range(0, 16, 3):
            for j in range(1, 16, 3):
                cell_x = box["x"] + (j + 0.5) * box["width"] / 16
                cell_y = box["y"] + (i + 0.5) * box["height"] / 16
                if (run, i, j) == ("seed0", 2, 2) or covered(cell_x, cell_y):
                    continue  # under the hover box or the tooltip
                points.append((cell_x, cell_y))
                expected.append(tuple(held[4 * (i * 16 + j) : 4 * (i * 16 + j) + 3]))
                rhos.append(None if i in dead_rows or j in dead_cols else rho[i, j])
    bar = target.locator("[data-testid=correlation-legend] .ds-colorbar-bar").bounding_box()
    points += [(bar["x"] + 0.02 * bar["width"], bar["y"] + bar["height"] / 2)]
    points += [(bar["x"] + 0.98 * bar["width"], bar["y"] + bar["height"] / 2)]
    got = picture.rgbs(points)
    for k, rho in enumerate(rhos):
        r, g, b = got[k]
        assert near(got[k], expected[k], 2), (k, got[k], expected[k])
        if rho is None:
            assert near(got[k], (0xD0, 0xD0, 0xD0), 2), got[k]  # a dead channel: grey
        elif rho > 0.5:
            assert r > b + 40, (rho, got[k])
        elif rho < -0.5:
            assert b > r + 40, (rho, got[k])
        elif abs(rho) < 0.05:
            assert min(r, g, b) > 220, (rho, got[k])
    assert any(rho is not None and rho > 0.5 for rho in rhos)  # red cells are shown
    left, right = got[-2], got[-1]
    assert left[2] > left[0] + 40 and right[0] > right[2] + 40, (left, right)
    for method in ("semi", "bipartite"):
        for run in ("seed0", "seed1"):
            path = target.locator(f'[data-method={method}] path[data-run="{run}"]')
            inside = path.bounding_box()
            assert inside["width"] > 50 and inside["y"] >= origin["y"], (method, run)
            assert inside["y"] + inside["height"] <= origin["y"] + origin["height"]


SEQ_TAG = "correlation/seq"
SEQ_SHAPE = (4, 8, 300)  # (N, L, C): 32 samples for 300 channels, an overview of 2x2 blocks


@pytest.fixture(scope="session")
def sequence_server(tmp_path_factory, tensorboard_server) -> str:
    """A transformer-like (N, L, C) tag with fewer samples than channels."""
    import torch

    import deepscope

    logdir = tmp_path_factory.mktemp("correlation-seq")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*SEQ_SHAPE, generator=g)
    x[..., 150] = -x[..., 3]  # one strong pair for the max-|rho| overview to keep
    with deepscope.SummaryWriter(str(logdir / "run")) as writer:
        with pytest.warns(RuntimeWarning, match="32 samples for 300 channels"):
            writer.add_channel_correlation(SEQ_TAG, x, global_step=0)
    return tensorboard_server(logdir, load_fast=False)


def test_the_card_states_the_channel_dim_and_samples(tab, correlation_server):
    frame = tab.open(correlation_server)
    heatmap(frame, WITHIN_TAG, "seed1")
    panel = card(frame, WITHIN_TAG).locator('.ds-corr-panel[data-run="seed1"]')
    facts = panel.locator("[data-testid=channel-facts]")
    expect(facts).to_have_text(
        "channels: dim 1 of (N, C, H, W) = [24, 16, 6, 6] · 864 samples", timeout=TIMEOUT_MS
    )
    assert panel.locator("[data-testid=few-samples]").is_hidden()


def test_a_sequence_layer_with_few_samples_warns_and_max_abs_keeps_its_strong_pair(
    tab, sequence_server
):
    frame = tab.open(sequence_server)
    canvas = heatmap(frame, SEQ_TAG, "run", reduction="mean")
    panel = card(frame, SEQ_TAG).locator('.ds-corr-panel[data-run="run"]')
    expect(panel.locator("[data-testid=channel-facts]")).to_have_text(
        "channels: dim 2 of (N, L, C) = [4, 8, 300] · 32 samples", timeout=TIMEOUT_MS
    )
    warning = panel.locator("[data-testid=few-samples]")
    assert warning.is_visible()
    expect(warning).to_contain_text("32 samples for 300 channels", timeout=TIMEOUT_MS)
    expect(warning).to_contain_text("rank at most 31", timeout=TIMEOUT_MS)
    assert canvas.get_attribute("data-rows") == "150"  # 300 channels in blocks of 2

    card(frame, SEQ_TAG).locator("[data-testid=reduce-toggle] button[data-reduce=max_abs]").click()
    canvas = heatmap(frame, SEQ_TAG, "run", reduction="max_abs")
    peak = route(sequence_server, "correlation_matrix", run="run", tag=SEQ_TAG, reduce="max_abs")
    values = matrix_of(peak)
    fields = hover_cell(tab, canvas, 150, 150, 1, 75)  # channels 2-3 x 150-151
    assert fields["rho"] == format_rho(values[1, 75])
    assert float(fields["rho"]) == pytest.approx(-1.0, abs=1e-3)  # rho(3, 150) = -1


# ---------------------------------------------------------------- non-finite, damaged, odd names

ALL_NAN_TAG = "correlation/all_nan"
SOME_NAN_TAG = "correlation/some_nan"
NAN_SHAPE = (8, 16, 4, 4)  # (N, C, H, W): 128 sample positions for 16 channels


def _nan_activations() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    some = rng.standard_normal(NAN_SHAPE).astype(np.float32)
    some[0, 5, 0, 0] = np.nan  # two positions lose their sample, in all channels
    some[3, 0, 2, 1] = np.inf
    return {ALL_NAN_TAG: np.full(NAN_SHAPE, np.nan, dtype=np.float32), SOME_NAN_TAG: some}


@pytest.fixture(scope="module")
def nan_server(tmp_path_factory, tensorboard_server) -> str:
    import torch

    import deepscope

    logdir = tmp_path_factory.mktemp("correlation-nan")
    with deepscope.SummaryWriter(str(logdir / "run")) as writer:
        for tag, x in _nan_activations().items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the writer warns of NaN
                writer.add_channel_correlation(tag, torch.from_numpy(x), global_step=0)
    return tensorboard_server(logdir, load_fast=False)


def _panel(frame, tag: str, run: str = "run"):
    frame.locator("[data-testid=tag-filter]").fill(f"^{tag}$")
    heatmap(frame, tag, run)
    return card(frame, tag).locator(f'.ds-corr-panel[data-run="{run}"]')


def test_all_nan_activations_are_not_dead_the_card_counts_the_non_finite_values(tab, nan_server):
    x = _nan_activations()[ALL_NAN_TAG]
    channels = route(nan_server, "correlation_channels", run="run", tag=ALL_NAN_TAG)
    assert channels["samples"] == 0 and channels["rows"]["non_finite"] == x.size
    frame = tab.open(nan_server)
    panel = _panel(frame, ALL_NAN_TAG)
    assert panel.locator("[data-testid=dead-count]").is_hidden()  # not "16 dead channels"
    assert panel.locator("[data-testid=dead-ticks] rect").count() == 0
    badge = panel.locator("[data-testid=non-finite-count]")
    assert badge.is_visible()
    assert badge.get_attribute("data-count") == str(x.size)
    assert badge.get_attribute("data-unknown") == "16"
    expect(badge).to_have_text(
        f"{x.size:,} non-finite values (NaN/±Inf) left out · "
        "16 channels without statistics (no finite sample)",
        timeout=TIMEOUT_MS,
    )
    facts = panel.locator("[data-testid=channel-facts]").text_content()
    assert facts.endswith("· 0 samples")
    assert panel.locator("[data-testid=few-samples]").is_hidden()  # too few is not the cause


def test_some_non_finite_values_are_counted_and_the_samples_left_out(tab, nan_server):
    x = _nan_activations()[SOME_NAN_TAG]
    n, c, h, w = x.shape
    positions = np.moveaxis(x, 1, -1).reshape(-1, c)  # [N*H*W, C]
    finite_positions = int(np.isfinite(positions).all(axis=1).sum())
    assert finite_positions == n * h * w - 2
    frame = tab.open(nan_server)
    panel = _panel(frame, SOME_NAN_TAG)
    badge = panel.locator("[data-testid=non-finite-count]")
    assert badge.get_attribute("data-count") == "2"
    assert badge.get_attribute("data-unknown") == "0"
    # text_content: inner_text is empty while the panel is not rendered yet (seen in CI).
    assert badge.text_content() == "2 non-finite values (NaN/±Inf) left out"
    assert panel.locator("[data-testid=dead-count]").is_hidden()
    facts = panel.locator("[data-testid=channel-facts]")
    assert facts.get_attribute("data-samples") == str(finite_positions)


@pytest.fixture(scope="module")
def damaged_server(tmp_path_factory, tensorboard_server) -> str:
    """tests/damaged_logs.py's run: good steps 10 and 30 around a damaged step 20, per damage."""
    from tests.damaged_logs import write_damaged_log

    return tensorboard_server(write_damaged_log(tmp_path_factory.mktemp("damaged")).logdir, False)


@pytest.mark.parametrize("tag", ["correlation/garbage", "correlation/rho_out_of_range"])
def test_a_damaged_step_shows_its_error_in_place_of_its_heatmap(tab, damaged_server, tag):
    from tests.damaged_logs import DAMAGED_STEP, GOOD_STEPS, RUN

    body = route(damaged_server, "correlation_matrix", run=RUN, tag=tag, step=DAMAGED_STEP)
    assert body["error"]
    frame = tab.open(damaged_server)
    panel = _panel(frame, tag, RUN)
    heatmap(frame, tag, RUN, step=GOOD_STEPS[-1])
    slider = card(frame, tag).locator("[data-testid=step-slider] input[type=range]")
    slider.focus()
    tab.page.keyboard.press("ArrowLeft")
    error = panel.locator(f'[data-testid=step-error][data-step="{DAMAGED_STEP}"]')
    error.wait_for(timeout=TIMEOUT_MS)
    expect(error).to_have_text(
        f"step {DAMAGED_STEP} cannot be shown: {body['error']}", timeout=TIMEOUT_MS
    )
    assert panel.locator("[data-testid=correlation-heatmap]").is_hidden()
    tab.page.keyboard.press("ArrowLeft")
    heatmap(frame, tag, RUN, step=GOOD_STEPS[0])  # the good steps still show
    assert error.is_hidden()


def test_fast_loader_and_an_odd_tag_name_the_card_explains_cause_and_workaround(
    tab, odd_name_server
):
    tag = 'correlation/tag"quote'
    step = route(odd_name_server, "correlation_steps", run="plain", tag=tag)["steps"][-1]
    query = urllib.parse.urlencode({"run": "plain", "tag": tag, "step": step})
    url = f"{odd_name_server}/data/plugin/deepscope/correlation_matrix?{query}"
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(url, timeout=30)
    status, explanation = answer.value.code, answer.value.read().decode().strip()
    assert 400 <= status < 500
    frame = tab.open(odd_name_server)
    frame.locator("[data-testid=tag-filter]").fill("^correlation/tag.quote$")
    escaped = tag.replace("\\", "\\\\").replace('"', '\\"')  # a CSS string
    target = frame.locator(f'[data-testid=correlation-card][data-tag="{escaped}"]')
    target.scroll_into_view_if_needed(timeout=TIMEOUT_MS)
    message = target.locator('.ds-corr-panel[data-run="plain"] [data-testid=panel-error]')
    message.wait_for(timeout=TIMEOUT_MS)
    expect(message).to_have_text(f"HTTP {status}: {explanation}", timeout=TIMEOUT_MS)
    text = message.text_content()  # as the route wrote it
    assert "--load_fast=false" in text and "Rename" in text and "<" not in text
