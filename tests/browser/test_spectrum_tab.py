"""The spectrum views in a real browser, inside a real TensorBoard, with real training data.

Numbers read from the page (table cells, the chart's tooltip) are checked against the
routes' JSON; the table's sort order against the routes' condition numbers; the slider
against the step the chart draws.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/spectrum.png.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.tab_page import TIMEOUT_MS, css_rgb, hover_point, screenshot
from tests.route_helpers import decode, number, route
from tests.spectrum_data import BROKEN_STEP, BROKEN_TAG, MEASURED_STEPS

sync_api = pytest.importorskip("playwright.sync_api")

RUNS = ("seed0", "seed1")


@pytest.fixture(scope="session", params=[False, True], ids=["load_fast=false", "load_fast=true"])
def spectrum_server(request, spectrum_logdir, tensorboard_server) -> str:
    return tensorboard_server(spectrum_logdir, load_fast=request.param)


@pytest.fixture(scope="session")
def spectrum_python_server(spectrum_logdir, tensorboard_server) -> str:
    return tensorboard_server(spectrum_logdir, load_fast=False)


# ---------------------------------------------------------------- helpers


def spectrum(base_url: str, run: str, tag: str, step: int) -> np.ndarray:
    """The route's singular values at (run, tag, step), all groups merged, descending."""
    slot = route(base_url, "spectrum", run=run, tag=tag, step=step)["singular_values"]
    return np.sort(decode(slot).ravel())[::-1]


def nearest(steps: list[int], step: int) -> int:
    """The index of the kept step nearest `step`, the earlier on a tie (as the tab picks)."""
    return min(range(len(steps)), key=lambda i: (abs(steps[i] - step), i))


def open_spectra(tab, base_url: str):
    frame = tab.open(base_url)
    card = frame.locator("[data-testid=spectrum-card]")
    card.wait_for(state="attached", timeout=TIMEOUT_MS)
    card.scroll_into_view_if_needed()  # the views load when they scroll into view
    frame.locator("[data-testid=spectrum-table] tbody tr").first.wait_for(timeout=TIMEOUT_MS)
    table_built(frame)
    chart(frame)
    return frame


def table_built(frame) -> None:
    """Wait until the table has built every row (it builds them in chunks)."""
    frame.locator("[data-testid=spectrum-table][data-complete=true]").wait_for(
        state="attached", timeout=TIMEOUT_MS
    )


def chart(frame):
    locator = frame.locator("[data-testid=spectrum-chart][data-drawn=true]")
    locator.wait_for(timeout=TIMEOUT_MS)
    return locator


def row_order(frame) -> list[str]:
    table_built(frame)
    rows = frame.locator("[data-testid=spectrum-table] tbody tr")
    return [rows.nth(i).get_attribute("data-tag") for i in range(rows.count())]


def slider_step(frame) -> int:
    slider = frame.locator("[data-testid=spectrum-card] [data-testid=step-slider]")
    return int(slider.get_attribute("data-step"))


def drawn_steps(frame) -> dict[str, int]:
    return json.loads(chart(frame).get_attribute("data-steps"))


def hover_rank(tab, frame, rank: int, n: int) -> dict[str, str]:
    """Hover the chart at `rank` (x is log rank over [1, n]); the tooltip's fields."""
    chart(frame).scroll_into_view_if_needed()
    hit = frame.locator("[data-testid=spectrum-hit]")
    width = hit.bounding_box()["width"]
    fraction = min(max(math.log(rank) / math.log(n), 1 / width), 1 - 1 / width)
    fields = hover_point(tab, hit, fraction, 0.5)
    assert fields["rank"] == str(rank)
    return fields


def at(box: dict, fx: float, fy: float) -> tuple[float, float]:
    """The page point at fraction (fx, fy) of a bounding box."""
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def near(rgb: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int) -> bool:
    """Whether every channel of `rgb` is within `tolerance` levels of `expected`."""
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


def wait_for_drawn_steps(frame, want: dict[str, int], tag: str | None = None) -> None:
    """Wait until the spectrum chart shows these runs' steps (and, given, this layer's)."""
    frame.wait_for_function(
        "([want, tag]) => { const c = document.querySelector('[data-testid=spectrum-chart]');"
        " return c && c.dataset.steps === JSON.stringify(want)"
        " && (tag === null || c.dataset.tag === tag); }",
        arg=[want, tag],
        timeout=TIMEOUT_MS,
    )


# ---------------------------------------------------------------- tests


def test_chart_hover_reads_the_routes_singular_values(tab, spectrum_server):
    frame = open_spectra(tab, spectrum_server)
    selected = frame.locator("[data-testid=spectrum-table] tr[aria-selected=true]")
    tag = selected.get_attribute("data-tag")
    step = MEASURED_STEPS[-1]
    wait_for_drawn_steps(frame, {run: step for run in RUNS})
    values = {run: spectrum(spectrum_server, run, tag, step) for run in RUNS}
    n = len(values["seed0"])
    for rank in (1, max(2, n // 2), n):
        fields = hover_rank(tab, frame, rank, n)
        for run in RUNS:
            shown = float(fields[f"sigma:{run}"])
            assert shown == pytest.approx(values[run][rank - 1], rel=6e-4), (run, rank)


def test_default_layer_is_the_worst_conditioned_and_table_cells_match_the_route(
    tab, spectrum_python_server
):
    metrics = {run: route(spectrum_python_server, "spectrum_metrics", run=run) for run in RUNS}
    frame = open_spectra(tab, spectrum_python_server)
    # The default layer: the largest condition number at its last step in any run.
    last = {
        (run, tag): number(layer["metrics"]["condition_number"][-1])
        for run in RUNS
        for tag, layer in metrics[run]["layers"].items()
    }
    worst = max((v, tag) for (_, tag), v in last.items() if not math.isnan(v))[1]
    selected = frame.locator("[data-testid=spectrum-table] tr[aria-selected=true]")
    assert selected.get_attribute("data-tag") == worst
    # Each cell's value is the route's at the slider's step (the last), per run.
    step = slider_step(frame)
    for run in RUNS:
        layer = metrics[run]["layers"]["spectra/fc1"]
        i = nearest(layer["steps"], step)
        groups, rows, cols = layer["info"]["matrix_shape"]
        k = groups * min(rows, cols)  # ranks are shown as fractions of k
        for name, scale in (
            ("spectral_norm", 1),
            ("condition_number", 1),
            ("stable_rank", k),
            ("alpha", 1),
        ):
            cell = frame.locator(
                f'[data-testid=spectrum-table] tr[data-tag="spectra/fc1"] '
                f'td[data-metric="{name}"] .ds-sp-value[data-run="{run}"]'
            )
            want = number(layer["metrics"][name][i]) / scale
            assert float(cell.get_attribute("data-value")) == pytest.approx(want, rel=1e-12)
            assert float(cell.inner_text()) == pytest.approx(want, rel=6e-4)


def test_table_sorts_worst_condition_number_first_and_a_row_click_selects_it(
    tab, spectrum_python_server
):
    metrics = {run: route(spectrum_python_server, "spectrum_metrics", run=run) for run in RUNS}
    frame = open_spectra(tab, spectrum_python_server)
    step = slider_step(frame)

    def kappa(tag: str, pick=max) -> float:
        """The tag's condition number at the step, the largest (or smallest) over runs."""
        values = []
        for run in RUNS:
            layer = metrics[run]["layers"].get(tag)
            if layer:
                i = nearest(layer["steps"], step)
                if not layer["errors"] or layer["steps"][i] not in [s for s, _ in layer["errors"]]:
                    values.append(number(layer["metrics"]["condition_number"][i]))
        values = [v for v in values if not math.isnan(v)]
        return pick(values) if values else math.nan

    tags = sorted({tag for run in RUNS for tag in metrics[run]["layers"]})
    header = frame.locator('[data-testid=spectrum-table] th[data-metric="condition_number"]')
    header.click()
    order = row_order(frame)
    kappas = [kappa(tag) for tag in order]
    assert sorted(order) == tags
    assert kappas == sorted(kappas, reverse=True)  # worst conditioned first
    assert header.get_attribute("data-sorted") == "descending"
    header.click()
    assert header.get_attribute("data-sorted") == "ascending"
    ascending = row_order(frame)
    smallest = [kappa(tag, min) for tag in ascending]
    assert smallest == sorted(smallest)
    # Clicking the worst row makes it the charted layer.
    frame.locator(f'[data-testid=spectrum-table] tr[data-tag="{order[-1]}"]').click()
    frame.locator(
        f'[data-testid=spectrum-table] tr[aria-selected=true][data-tag="{order[-1]}"]'
    ).wait_for(timeout=TIMEOUT_MS)
    frame.get_by_text(f"Spectrum of {order[-1]} at step").wait_for(timeout=TIMEOUT_MS)


def test_slider_and_heatmap_click_change_the_drawn_step(tab, spectrum_python_server):
    frame = open_spectra(tab, spectrum_python_server)
    tag = frame.locator("[data-testid=spectrum-table] tr[aria-selected=true]").get_attribute(
        "data-tag"
    )
    wait_for_drawn_steps(frame, {run: MEASURED_STEPS[-1] for run in RUNS})
    slider = frame.locator("[data-testid=spectrum-card] [data-testid=step-slider] input")
    slider.focus()
    slider.press("Home")
    assert slider_step(frame) == MEASURED_STEPS[0]
    wait_for_drawn_steps(frame, {run: MEASURED_STEPS[0] for run in RUNS})
    values = spectrum(spectrum_python_server, "seed1", tag, MEASURED_STEPS[0])
    fields = hover_rank(tab, frame, 1, len(values))
    assert float(fields["sigma:seed1"]) == pytest.approx(values[0], rel=6e-4)
    # A click on the evolution heatmap's column of step 15 selects that step.
    canvas = frame.locator('[data-testid=spectrum-evolution][data-run="seed0"][data-drawn=true]')
    canvas.scroll_into_view_if_needed()
    column = MEASURED_STEPS.index(15)
    fields = hover_point(
        tab, canvas, (column + 0.5) / len(MEASURED_STEPS), 5 / canvas.bounding_box()["height"]
    )
    assert fields["step"] == "15" and fields["rank"] == "1"
    box = canvas.bounding_box()
    x = box["x"] + (column + 0.5) * box["width"] / len(MEASURED_STEPS)
    evolution = route(spectrum_python_server, "spectrum_evolution", run="seed0", tag=tag)
    assert float(fields["sigma"]) == pytest.approx(decode(evolution["values"])[column, 0], rel=6e-4)
    tab.page.mouse.click(x, box["y"] + 5)
    wait_for_drawn_steps(frame, {run: 15 for run in RUNS})
    assert slider_step(frame) == 15


def test_a_step_that_could_not_be_measured_is_shown_as_an_error(tab, spectrum_python_server):
    frame = open_spectra(tab, spectrum_python_server)
    frame.locator(f'[data-testid=spectrum-table] tr[data-tag="{BROKEN_TAG}"]').click()
    slider = frame.locator("[data-testid=spectrum-card] [data-testid=step-slider] input")
    slider.focus()
    slider.press("Home")
    slider.press("ArrowRight")
    assert slider_step(frame) == BROKEN_STEP
    error = frame.locator('[data-testid=spectrum-error][data-run="seed1"]')
    error.wait_for(timeout=TIMEOUT_MS)
    assert f"step {BROKEN_STEP}" in error.inner_text() and "non-finite" in error.inner_text()
    cell = frame.locator(
        f'[data-testid=spectrum-table] tr[data-tag="{BROKEN_TAG}"] '
        'td[data-metric="condition_number"] .ds-sp-value[data-run="seed1"]'
    )
    assert cell.get_attribute("data-error") == "true"
    assert cell.inner_text().strip() == "error"


def test_screenshot(tab, spectrum_python_server, tmp_path):
    """The spectrum card; with DEEPSCOPE_SCREENSHOTS=1 it becomes the README's picture.

    The picture must show each run's evolution heatmap as its canvas holds it (log10 σ in
    viridis), the colour bar from viridis' #440154 to #fde725, and each run's spectrum
    markers in the run's colour.
    """
    tab.page.set_viewport_size({"width": 1400, "height": 1600})  # the whole card in view
    frame = open_spectra(tab, spectrum_python_server)
    frame.locator("[data-testid=spectrum-evolution][data-drawn=true]").first.wait_for(
        timeout=TIMEOUT_MS
    )
    frame.locator('[data-testid=spectrum-table] th[data-metric="condition_number"]').click()
    card = frame.locator("[data-testid=spectrum-card]")
    card.evaluate("node => node.scrollIntoView({block: 'start'})")
    tab.page.mouse.move(1, 1)
    tab.page.wait_for_timeout(500)  # let the redraw after the resize settle
    picture = screenshot(card, tmp_path, "spectrum.png")
    points, expected = [], []
    heatmaps = frame.locator("[data-testid=spectrum-evolution][data-drawn=true]")
    assert heatmaps.count() == len(RUNS)
    for k in range(heatmaps.count()):
        canvas = heatmaps.nth(k)
        box = canvas.bounding_box()
        steps, values = (
            int(canvas.get_attribute("data-steps")),
            int(canvas.get_attribute("data-values")),
        )
        held = canvas.evaluate(
            "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
        )
        for i in range(0, max(1, steps - 1), max(1, steps // 5)):  # not the marked last step
            for j in range(0, values, max(1, values // 4)):
                points.append(at(box, (i + 0.5) / steps, (j + 0.5) / values))
                expected.append(tuple(held[4 * (j * steps + i) : 4 * (j * steps + i) + 3]))
    bar = frame.locator("[data-testid=spectrum-legend] .ds-colorbar-bar").bounding_box()
    ends = [at(bar, 0.01, 0.5), at(bar, 0.99, 0.5)]
    # Each run's markers (circles filled with its line's colour) and where they are.
    dots = frame.locator("[data-testid=spectrum-chart] circle[fill]")
    fills = [dots.nth(i).get_attribute("fill") for i in range(dots.count())]
    markers: dict[str, tuple[str, list[int]]] = {}
    for run in RUNS:
        line = frame.locator(f'[data-testid=spectrum-chart] path.ds-sp-line[data-run="{run}"]')
        stroke = line.get_attribute("stroke")
        assert stroke.startswith("#"), stroke
        where = []
        for i, fill in enumerate(fills):
            if fill == stroke:
                where.append(len(points) + len(ends))
                ends.append(at(dots.nth(i).bounding_box(), 0.5, 0.5))
        markers[run] = (stroke, where)
    got = picture.rgbs(points + ends)
    for k, want in enumerate(expected):
        assert near(got[k], want, 2), (k, got[k], want)  # the picture shows the canvas
    left, right = got[len(points)], got[len(points) + 1]
    assert near(left, css_rgb("#440154"), 12), left
    assert near(right, css_rgb("#fde725"), 12), right
    for run, (stroke, where) in markers.items():
        assert where, f"no markers of {run}"
        seen = [got[k] for k in where]
        assert any(near(rgb, css_rgb(stroke), 10) for rgb in seen), (run, stroke, seen[:5])


# ---------------------------------------------------------------- 50 runs


MANY_STEPS = (0, 10, 20)
BOUND_TAG = "spectra/square"  # sigma_min below float32's resolution at every step
UNCHANGED_RUN = 7  # this run's classifier is logged "unchanged since step 10" at step 20
UNCHANGED = ("spectra/classifier", 20, 10)  # tag, step, since


@pytest.fixture(scope="module")
def many_runs_server(tmp_path_factory, tensorboard_server) -> tuple[str, list[str]]:
    """50 runs (two named __proto__ and constructor, three of 500 characters) x 5 layers."""
    import torch

    import deepscope
    from deepscope.analysis import spectrum as sp
    from tests import scale_logs

    logdir = tmp_path_factory.mktemp("spectra50")
    runs = scale_logs.run_names_of_50()
    layers = [p for p in scale_logs.SMALL_MODEL if p.is_layer]
    for k, run in enumerate(runs):
        rng = np.random.default_rng(k)
        writer = deepscope.SummaryWriter(str(logdir / run))
        for step in MANY_STEPS:
            for parameter in layers:
                tag = f"spectra/{parameter.module}"
                if k == UNCHANGED_RUN and (tag, step) == UNCHANGED[:2]:
                    writer.add_unchanged_spectrum(tag, UNCHANGED[2], global_step=step)
                    continue
                spectrum = scale_logs.layer_spectrum(parameter, step / 20, rng)
                writer.add_singular_values(tag, spectrum, global_step=step)
            values = np.linspace(2.0, 1.0, 64, dtype=np.float32)
            values[-1] = 1e-9  # below 2 * 64 * eps32: a bound of 1 / (64 eps32) = 1.3e5
            square = sp.Spectrum(torch.from_numpy(values)[None, :], (1, 64, 64))
            writer.add_singular_values(BOUND_TAG, square, global_step=step)
        writer.close()
    return tensorboard_server(logdir, load_fast=False), runs


def test_fifty_runs_one_row_per_layer_worst_first_and_nothing_wider_than_the_page(
    tab, many_runs_server
):
    base_url, runs = many_runs_server
    tab.page.set_viewport_size({"width": 1280, "height": 900})
    frame = open_spectra(tab, base_url)
    table = frame.locator("[data-testid=spectrum-table]")
    tags = sorted(route(base_url, "spectrum_metrics", run=runs[10])["layers"])
    assert len(tags) == 5
    assert sorted(row_order(frame)) == tags  # one row per layer, not per (run, layer)
    assert table.get_attribute("data-rows") == "5"
    metrics = {run: route(base_url, "spectrum_metrics", run=run)["layers"] for run in runs}

    def at_last(run, tag, name):
        layer = metrics[run][tag]
        value = layer["metrics"][name][-1]
        return value if isinstance(value, bool) else number(value)

    assert all(at_last(run, BOUND_TAG, "condition_number_is_bound") for run in runs)
    # The default layer is the worst *measured* condition number, never the bound's layer,
    # although its bound (1.3e5) exceeds every measured one.
    selected = table.locator("tr[aria-selected=true]").get_attribute("data-tag")
    measured = {
        tag: max(at_last(run, tag, "condition_number") for run in runs)
        for tag in tags
        if tag != BOUND_TAG
    }
    assert selected == max(measured, key=measured.get) != BOUND_TAG
    assert at_last(runs[0], BOUND_TAG, "condition_number") > max(measured.values())
    chart(frame)
    # Condition number: worst (largest measured) first, the bound's layer after them.
    frame.locator('th[data-metric="condition_number"]').click()
    order = row_order(frame)
    assert order[-1] == BOUND_TAG
    assert [measured[t] for t in order[:-1]] == sorted(measured.values(), reverse=True)
    bound_cell = table.locator(f'tr[data-tag="{BOUND_TAG}"] td[data-metric="condition_number"]')
    assert bound_cell.locator("[data-bound=true]").first.inner_text().strip().startswith("> 1.3")
    # Effective rank, normalised by k = min(rows, cols): worst (smallest) first.
    header = frame.locator('th[data-metric="effective_rank"]')
    header.click()
    assert header.get_attribute("data-sorted") == "ascending"
    k = {tag: min(metrics[runs[0]][tag]["info"]["matrix_shape"][1:]) for tag in tags}
    worst = {tag: min(at_last(run, tag, "effective_rank") / k[tag] for run in runs) for tag in tags}
    order = row_order(frame)
    assert [worst[t] for t in order] == sorted(worst.values())
    shown = table.locator(f'tr[data-tag="{order[0]}"] td[data-metric="effective_rank"]')
    assert float(shown.locator("[data-worst=true]").get_attribute("data-value")) == pytest.approx(
        worst[order[0]], rel=1e-12
    )
    # The unchanged step is marked as such.
    run, (tag, _, since) = runs[UNCHANGED_RUN], UNCHANGED
    frame.locator(f'[data-testid=spectrum-table] tr[data-tag="{tag}"]').click()
    note = frame.locator(f'[data-testid=spectrum-unchanged][data-run="{run}"]')
    note.wait_for(timeout=TIMEOUT_MS)
    assert f"unchanged since step {since}" in note.inner_text()
    # Nothing is wider than the viewport: not the table, the legend, nor 500-character names.
    frame.locator("[data-testid=spectrum-evolution][data-drawn=true]").first.wait_for(
        timeout=TIMEOUT_MS
    )
    # Every element's right edge inside the viewport, except what scrolls inside the table's
    # own scroll box (which itself stays inside).
    widths = frame.evaluate(
        "() => ({page: document.documentElement.scrollWidth,"
        " view: document.documentElement.clientWidth,"
        " wide: [...document.querySelectorAll('[data-testid=spectrum-card] *')]"
        ".filter(e => !e.closest('.ds-sp-tablewrap table'))"
        ".filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)"
        ".slice(0, 5).map(e => e.tagName + ' ' + (e.textContent || '').slice(0, 60))})"
    )
    assert widths["page"] <= widths["view"], widths
    assert widths["wide"] == [], widths
    # The chart sits beside the table (its scroll box), not below it.
    table_box = frame.locator(".ds-sp-tablewrap").bounding_box()
    chart_box = chart(frame).bounding_box()
    assert chart_box["x"] >= table_box["x"] + table_box["width"] - 1
    assert chart_box["y"] < table_box["y"] + table_box["height"]


# ---------------------------------------------------------------- damaged data, odd names


@pytest.fixture(scope="module")
def damaged_server(tmp_path_factory, tensorboard_server) -> str:
    """tests/damaged_logs.py's run: good steps 10 and 30 around a damaged step 20, per damage."""
    from tests.damaged_logs import write_damaged_log

    return tensorboard_server(write_damaged_log(tmp_path_factory.mktemp("damaged")).logdir, False)


def open_filtered(tab, base_url: str, regex: str):
    """The tab with the sidebar's tag filter set to `regex`, the spectrum card in view."""
    frame = tab.open(base_url)
    frame.locator("[data-testid=tag-filter]").fill(regex)
    card = frame.locator("[data-testid=spectrum-card]")
    card.wait_for(state="attached", timeout=TIMEOUT_MS)
    card.scroll_into_view_if_needed()
    table_built(frame)
    return frame


@pytest.mark.parametrize("tag", ["spectrum/garbage", "spectrum/flipped_byte"])
def test_a_damaged_step_is_shown_at_its_step_and_the_others_still_draw(tab, damaged_server, tag):
    from tests.damaged_logs import DAMAGED_STEP, GOOD_STEPS, RUN

    body = route(damaged_server, "spectrum", run=RUN, tag=tag, step=DAMAGED_STEP)
    assert body["error"]
    frame = open_filtered(tab, damaged_server, f"^{tag}$")
    wait_for_drawn_steps(frame, {RUN: GOOD_STEPS[-1]})
    slider = frame.locator("[data-testid=spectrum-card] [data-testid=step-slider] input")
    slider.focus()
    slider.press("ArrowLeft")
    assert slider_step(frame) == DAMAGED_STEP
    error = frame.locator(f'[data-testid=spectrum-error][data-run="{RUN}"]')
    error.wait_for(timeout=TIMEOUT_MS)
    assert f"step {DAMAGED_STEP}: {body['error']}" in error.inner_text()
    cell = frame.locator(
        f'[data-testid=spectrum-table] tr[data-tag="{tag}"] '
        f'td[data-metric="condition_number"] .ds-sp-value[data-run="{RUN}"]'
    )
    assert cell.get_attribute("data-error") == "true"  # the table marks it at its step
    slider.press("ArrowLeft")
    wait_for_drawn_steps(frame, {RUN: GOOD_STEPS[0]})
    assert error.count() == 0
    assert frame.locator(f'path.ds-sp-line[data-run="{RUN}"]').get_attribute("data-step") == str(
        GOOD_STEPS[0]
    )


def test_fast_loader_and_an_odd_run_name_the_card_explains_cause_and_workaround(
    tab, odd_name_server
):
    run, tag = 'run"quote', "spectrum/odd_run"
    steps = route(odd_name_server, "spectrum_steps", run=run, tag=tag)["steps"]
    query = urllib.parse.urlencode({"run": run, "tag": tag, "step": steps[-1]})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(
            f"{odd_name_server}/data/plugin/deepscope/spectrum?{query}", timeout=30
        )
    status, explanation = answer.value.code, answer.value.read().decode().strip()
    assert 400 <= status < 500 and "--load_fast=false" in explanation
    frame = open_filtered(tab, odd_name_server, f"^{tag}$")
    escaped = run.replace('"', '\\"')  # a CSS string
    error = frame.locator(f'[data-testid=spectrum-error][data-run="{escaped}"]')
    error.wait_for(timeout=TIMEOUT_MS)
    text = error.inner_text()
    assert f"HTTP {status}: {explanation}" in text  # as the route wrote it
    assert "<" not in text and "Traceback" not in text


# ---------------------------------------------------------------- conv operators


def select_layer(frame, tag: str) -> None:
    frame.locator(f'[data-testid=spectrum-table] tr[data-tag="{tag}"]').click()
    frame.locator(
        f'[data-testid=spectrum-table] tr[data-tag="{tag}"][aria-selected=true]'
    ).wait_for(timeout=TIMEOUT_MS)


def test_conv_layers_show_their_operator_beside_the_im2col_matrix(
    tab, spectrum_python_server, tmp_path
):
    """A CNN trained under watch(): seed0 logs its convs' operator norms (the default), seed1
    their whole operator spectra. The table's operator cells, the chart's operator-norm
    lines and the operator plot's values are the routes'; other layers show "–"; the labels
    say what is computed and the zero-padding caveat is there. With DEEPSCOPE_SCREENSHOTS=1
    the card becomes docs/images/spectrum_operator.png."""
    tab.page.set_viewport_size({"width": 1400, "height": 1600})
    metrics = {run: route(spectrum_python_server, "spectrum_metrics", run=run) for run in RUNS}
    frame = open_spectra(tab, spectrum_python_server)
    tag = "spectra/conv2"
    select_layer(frame, tag)
    step = MEASURED_STEPS[-1]
    wait_for_drawn_steps(frame, {run: step for run in RUNS}, tag)
    table = frame.locator("[data-testid=spectrum-table]")
    for run in RUNS:
        layer = metrics[run]["layers"][tag]
        i = nearest(layer["steps"], slider_step(frame))
        operator = layer["operator"]
        for name, served, scale in (
            ("operator_norm", operator["metrics"]["operator_norm"][i], 1),
            (
                "operator_stable_rank",
                operator["metrics"]["stable_rank"][i],
                operator["facts"]["count"],
            ),
            ("spectral_norm", layer["metrics"]["spectral_norm"][i], 1),
        ):
            cell = table.locator(
                f'tr[data-tag="{tag}"] td[data-metric="{name}"] .ds-sp-value[data-run="{run}"]'
            )
            want = number(served) / scale
            assert float(cell.get_attribute("data-value")) == pytest.approx(want, rel=1e-12)
            assert float(cell.inner_text()) == pytest.approx(want, rel=6e-4)
        # The operator norm is at least the im2col σ_max (at most √(kh·kw) = 3 times it).
        ratio = number(operator["metrics"]["operator_norm"][i]) / number(
            layer["metrics"]["spectral_norm"][i]
        )
        assert 1 <= ratio <= 3
        hover = table.locator(
            f'tr[data-tag="{tag}"] td[data-metric="operator_norm"] '
            f'.ds-sp-value[data-run="{run}"] span[title]'
        ).first.get_attribute("title")
        assert "operator (circular padding, 8×8 input)" in hover and "im2col matrix" in hover
    # A Linear layer has no operator: "–", not a number, not an error.
    linear = table.locator(
        'tr[data-tag="spectra/fc1"] td[data-metric="operator_norm"] .ds-sp-value[data-run="seed0"]'
    )
    assert linear.get_attribute("data-operator") == "none"
    assert linear.inner_text().strip() == "–"
    # The spectrum chart: each run's operator norm as a line at the route's value.
    for run in RUNS:
        body = route(spectrum_python_server, "spectrum", run=run, tag=tag, step=step)
        line = frame.locator(f'[data-testid=spectrum-chart] line.ds-sp-opnorm[data-run="{run}"]')
        assert float(line.get_attribute("data-value")) == pytest.approx(
            body["operator"]["operator_norm"], rel=1e-6
        )
    legend = frame.locator("[data-testid=spectrum-chart] .ds-chart-legend").inner_text()
    assert "im2col matrix σ_i" in legend and "operator (circular padding, 8×8 input) norm" in legend
    # The operator plot: seed1's whole spectrum (its top values are the route's), seed0 norm only.
    plot = frame.locator("[data-testid=spectrum-operator]")
    plot.wait_for(timeout=TIMEOUT_MS)
    assert plot.get_attribute("data-runs") == "1"
    title = plot.locator(".ds-sp-optitle").inner_text()
    assert title.startswith("operator (circular padding, 8×8 input)")
    body = route(spectrum_python_server, "spectrum", run="seed1", tag=tag, step=step)
    dots = plot.locator('circle.ds-sp-optop[data-run="seed1"]')
    shown = [float(dots.nth(k).get_attribute("data-value")) for k in range(dots.count())]
    np.testing.assert_allclose(shown, body["operator"]["top_values"], rtol=1e-6)
    assert plot.locator('path.ds-sp-opline[data-run="seed1"]').count() == 1
    assert plot.locator('path.ds-sp-opline[data-run="seed0"]').count() == 0
    norm_only = plot.locator('.ds-chart-legend [data-run="seed0"]')
    assert norm_only.get_attribute("data-norm-only") == "true"
    assert "norm only" in norm_only.inner_text()
    caveat = frame.locator("[data-testid=spectrum-operator-caveat]").inner_text()
    assert "circular padding" in caveat and "zeros" in caveat and "approximation" in caveat
    card = frame.locator("[data-testid=spectrum-card]")
    card.evaluate("node => node.scrollIntoView({block: 'start'})")
    tab.page.mouse.move(1, 1)
    tab.page.wait_for_timeout(500)
    screenshot(card, tmp_path, "spectrum_operator.png", min_bytes=20_000)


def test_a_layer_without_operators_shows_no_operator_plot(tab, spectrum_python_server):
    frame = open_spectra(tab, spectrum_python_server)
    select_layer(frame, "spectra/fc1")
    wait_for_drawn_steps(frame, {run: slider_step(frame) for run in RUNS}, "spectra/fc1")
    assert frame.locator("[data-testid=spectrum-operator]").get_attribute("data-tag") == (
        "spectra/fc1"
    )
    # Retrying: until the chart is redrawn for this layer the last one's operator may show.
    expect(frame.locator("[data-testid=spectrum-operator]")).to_be_hidden(timeout=TIMEOUT_MS)
    expect(frame.locator("[data-testid=spectrum-chart] line.ds-sp-opnorm")).to_have_count(
        0, timeout=TIMEOUT_MS
    )
