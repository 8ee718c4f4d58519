"""The deepscope tab in a real browser, inside a real TensorBoard.

Chromium is Debian's (`shutil.which("chromium")`, see the `chromium_path` fixture), driven
by Playwright's sync API; `playwright install` is never needed. Each test opens
TensorBoard's own page at `/#deepscope` and works in the tab's iframe
(`data/plugin_entry.html?name=deepscope`).

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/update_ratios.png.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from tests.browser.tab_page import (
    TIMEOUT_MS,
    UNIT_BOX,
    VIEWPORT,
    Picture,
    canvas_rgb,
    css_rgb,
    hover_point,
)
from tests.conftest import get

sync_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "images" / "update_ratios.png"


@pytest.fixture(scope="session")
def scalars_only_logdir(tmp_path_factory) -> Path:
    """A log dir TensorBoard can read that holds no deepscope data: plain scalars."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = tmp_path_factory.mktemp("scalars-only")
    writer = SummaryWriter(str(logdir / "plain"))
    for step in range(5):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()
    return logdir


@pytest.fixture(scope="session", params=[False, True], ids=["load_fast=false", "load_fast=true"])
def trained_server(request, trained_logdir, tensorboard_server) -> str:
    return tensorboard_server(trained_logdir, load_fast=request.param)


@pytest.fixture(scope="session")
def python_loader_server(trained_logdir, tensorboard_server) -> str:
    return tensorboard_server(trained_logdir, load_fast=False)


# ---------------------------------------------------------------- helpers


def route(base_url: str, path: str, **params) -> dict:
    status, body = get(f"{base_url}/data/plugin/deepscope/{path}?{urlencode(params)}")
    assert status == 200, body
    return json.loads(body)


def format_ratio(value) -> str:
    """The tab's formatting of a value of the JSON route: 1.23e-3, no update, NaN, ..."""
    if value is None:
        return "no update"
    if isinstance(value, str):  # "NaN", "Infinity", "-Infinity"
        return value
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def cell_centre(box: dict, steps: list[int], n_params: int, i: int, j: int) -> tuple[float, float]:
    """Where the heatmap draws (step index i, parameter j).

    Rows are equal bands; step i spans [steps[i], steps[i+1]) on a linear step axis that
    ends one typical gap (the median) after the last step.
    """
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    gap = max(1, statistics.median(gaps)) if gaps else 1
    lo, hi = steps[0], steps[-1] + gap
    end = steps[i + 1] if i + 1 < len(steps) else hi
    centre = (steps[i] + end) / 2
    x = box["x"] + (centre - lo) / (hi - lo) * box["width"]
    y = box["y"] + (j + 0.5) * box["height"] / n_params
    return x, y


def heatmap(frame, run: str, tag: str = "update_ratios"):
    canvas = frame.locator(f'[data-testid=heatmap][data-run="{run}"][data-tag="{tag}"]')
    canvas.and_(frame.locator("[data-drawn=true]")).wait_for(timeout=TIMEOUT_MS)
    return canvas


# ---------------------------------------------------------------- tests


def test_heatmap_draws_every_step_and_parameter_of_the_route(tab, trained_server):
    expected = route(trained_server, "update_ratios", run="seed0", tag="update_ratios")
    frame = tab.open(trained_server)
    canvas = heatmap(frame, "seed0")
    assert canvas.get_attribute("data-steps") == str(len(expected["steps"]))
    assert canvas.get_attribute("data-params") == str(len(expected["names"]))
    assert len(expected["steps"]) > 100  # all of watch(every=1)'s steps, not a 10-sample reservoir


def test_hovering_a_cell_shows_its_parameter_step_and_value(tab, python_loader_server):
    expected = route(python_loader_server, "update_ratios", run="seed0", tag="update_ratios")
    steps, names, values = expected["steps"], expected["names"], expected["values"]
    frame = tab.open(python_loader_server)
    canvas = heatmap(frame, "seed0")
    no_update = next((i, j) for i, row in enumerate(values) for j, v in enumerate(row) if v is None)
    cells = [(len(steps) // 2, 0), (0, len(names) - 1), (len(steps) - 1, 2), no_update]
    for i, j in cells:
        point = cell_centre(UNIT_BOX, steps, len(names), i, j)
        fields = hover_point(tab, canvas, *point, {"name": names[j], "step": str(steps[i])})
        assert fields["name"] == names[j]
        assert fields["step"] == str(steps[i])
        assert fields["value"] == format_ratio(values[i][j]), (i, j, values[i][j])
        assert fields["run"] == "seed0"
    assert format_ratio(values[no_update[0]][no_update[1]]) == "no update"
    tab.page.mouse.move(1, 1)
    frame.locator("[data-testid=tooltip]").wait_for(state="hidden", timeout=TIMEOUT_MS)


def test_runs_have_colours_and_can_be_deselected(tab, python_loader_server):
    frame = tab.open(python_loader_server)
    heatmap(frame, "seed0")
    heatmap(frame, "seed1")
    selector = frame.locator("[data-testid=run-selector]")
    runs = selector.locator("label.ds-run")
    assert runs.count() == 2
    assert [runs.nth(k).get_attribute("data-run") for k in range(2)] == ["seed0", "seed1"]
    colours = [runs.nth(k).locator("[data-color]").get_attribute("data-color") for k in range(2)]
    assert len(set(colours)) == 2
    assert frame.locator("[data-testid=refresh]").is_visible()

    runs.nth(1).locator("input[type=checkbox]").uncheck()
    frame.locator('[data-testid=heatmap][data-run="seed1"]').wait_for(
        state="detached", timeout=TIMEOUT_MS
    )
    assert frame.locator('[data-testid=heatmap][data-run="seed0"]').count() == 1
    runs.nth(1).locator("input[type=checkbox]").check()
    heatmap(frame, "seed1")

    # The tag filter is a case-insensitive regex, like TensorBoard's.
    frame.locator("[data-testid=tag-filter]").fill("^UPDATE_R")
    frame.locator("[data-testid=refresh]").click()
    heatmap(frame, "seed0")
    frame.locator("[data-testid=tag-filter]").fill("no-such-tag")
    frame.locator("[data-testid=heatmap]").first.wait_for(state="detached", timeout=TIMEOUT_MS)


def test_line_chart_plots_the_chosen_parameters_on_a_log_axis(tab, python_loader_server):
    frame = tab.open(python_loader_server)
    heatmap(frame, "seed0")
    chart = frame.locator("[data-testid=linechart]")
    chart.wait_for(timeout=TIMEOUT_MS)
    axes = chart.locator("svg.ds-chart-svg").text_content()
    assert "‖ΔW‖/‖W‖ (log scale)" in axes and "step" in axes
    assert "rule of thumb ≈ 1e-3" in axes
    before = int(chart.get_attribute("data-series"))
    assert before == 2  # the default parameter, in both runs
    # Its row is marked in both runs' heatmaps (also one drawn before the default was chosen).
    (default,) = json.loads(chart.get_attribute("data-params"))
    for run in ("seed0", "seed1"):
        row = frame.locator(f'.ds-runblock[data-run="{run}"] .ds-ur-row[data-name="{default}"]')
        assert "ds-selected" in row.get_attribute("class").split(), run
        assert row.evaluate("e => e.scrollWidth <= e.clientWidth"), f"{run}: bold label cut"
    # Clicking a row label adds that parameter, overlaid for both runs.
    frame.locator('.ds-runblock[data-run="seed0"] .ds-ur-row[data-name="fc.weight"]').click()
    frame.wait_for_function(
        "n => document.querySelector('[data-testid=linechart]').dataset.series == n",
        arg=str(before + 2),
        timeout=TIMEOUT_MS,
    )


def test_http_errors_show_in_the_card(tab, python_loader_server):
    message = "no run named 'seed0' has deepscope data; runs with deepscope data: 'seed1'"
    tab.page.route(
        "**/data/plugin/deepscope/update_ratios?run=seed0*",
        lambda r: r.fulfill(status=404, content_type="text/plain", body=message),
    )
    frame = tab.open(python_loader_server)
    error = frame.locator('.ds-runblock[data-run="seed0"] [data-testid=load-error]')
    error.wait_for(timeout=TIMEOUT_MS)
    assert "404" in error.inner_text() and message in error.inner_text()
    heatmap(frame, "seed1")  # the other run is unaffected


def test_reloads_every_30_s_and_with_tensorboard_keeping_selections(tab, python_loader_server):
    tag_requests = []
    tab.page.on(
        "request",
        lambda r: tag_requests.append(r.url) if r.url.endswith("/plugin/deepscope/tags") else None,
    )
    tab.page.clock.install()
    frame = tab.open(python_loader_server)
    heatmap(frame, "seed0")
    heatmap(frame, "seed1")
    frame.locator('label.ds-run[data-run="seed1"] input').uncheck()
    frame.locator("[data-testid=tag-filter]").fill("update")
    frame.locator('[data-testid=heatmap][data-run="seed1"]').wait_for(state="detached")

    def reloaded_after(count: int):
        for _ in range(100):
            if len(tag_requests) > count:
                return
            tab.page.wait_for_timeout(100)
        raise AssertionError(f"no new tags request after {count}: {tag_requests}")

    before = len(tag_requests)
    tab.page.clock.run_for(31_000)
    reloaded_after(before)
    heatmap(frame, "seed0")
    assert not frame.locator('label.ds-run[data-run="seed1"] input').is_checked()
    assert frame.locator('[data-testid=heatmap][data-run="seed1"]').count() == 0
    assert frame.locator("[data-testid=tag-filter]").input_value() == "update"
    # The card keeps its colour legend through the reload (once the reload has ended).
    frame.locator("[data-testid=refresh]:not([disabled])").wait_for(timeout=TIMEOUT_MS)
    assert frame.locator('.ds-card[data-tag="update_ratios"] [data-testid=legend]').is_visible()

    # TensorBoard's own reload button reaches the tab too.
    before = len(tag_requests)
    tab.page.locator("button.reload-button").click()
    reloaded_after(before)


def test_empty_log_dir_says_how_to_log(tab, scalars_only_logdir, tensorboard_server):
    base = tensorboard_server(scalars_only_logdir, load_fast=False)
    status, body = get(f"{base}/data/plugin/deepscope/tags")
    assert status == 200 and json.loads(body) == {}
    frame = tab.open(base)
    empty = frame.locator("[data-testid=empty-state]")
    empty.wait_for(timeout=TIMEOUT_MS)
    text = empty.inner_text()
    assert 'deepscope.SummaryWriter("runs/exp")' in text
    assert "deepscope.watch(model, optimizer, writer)" in text
    assert "add_update_ratios" in text
    assert "tensorboard --logdir runs" in text


def test_newer_schema_tag_is_an_error_card_not_a_crash(
    tab, newer_schema_logdir, tensorboard_server
):
    base = tensorboard_server(newer_schema_logdir, load_fast=False)
    tags = route(base, "tags")
    (run,) = tags
    message = tags[run]["from_the_future"]["error"]
    frame = tab.open(base)
    error = frame.locator("[data-testid=tag-error]")
    error.wait_for(timeout=TIMEOUT_MS)
    # expect() retries: inner_text() read once was '' in CI, the card attached
    # but its frame not yet laid out.
    expect(error).to_contain_text(message, timeout=TIMEOUT_MS)
    assert error.get_attribute("data-run") == run
    assert error.get_attribute("data-tag") == "from_the_future"
    todo = error.locator("[data-testid=tag-error-todo]")
    expect(todo).to_contain_text("pip install -U deepscope", timeout=TIMEOUT_MS)
    # The readable tag of the same run still draws.
    heatmap(frame, run, tag="current")


@pytest.fixture(scope="session")
def unreadable_logdir(tmp_path_factory) -> Path:
    """A run with one readable update-ratio tag and two whose metadata cannot be read:
    garbage bytes, and a well-formed PluginData of a kind no deepscope knows."""
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    from deepscope.proto import deepscope_pb2 as pb
    from deepscope.writer.update_ratios import update_ratios_pb

    logdir = tmp_path_factory.mktemp("unreadable")
    writer = TorchWriter(str(logdir / "damaged"))
    writer.file_writer.add_summary(update_ratios_pb("current", {"w": 1e-3}), 0, 1000.0)
    garbage = update_ratios_pb("garbage", {"w": 1e-3})
    garbage.value[0].metadata.plugin_data.content = b"\xff\xfe not a protobuf \x00"
    writer.file_writer.add_summary(garbage, 0, 1000.0)
    unknown = update_ratios_pb("unknown_kind", {"w": 1e-3})
    plugin_data = pb.PluginData.FromString(unknown.value[0].metadata.plugin_data.content)
    plugin_data.kind = 97
    unknown.value[0].metadata.plugin_data.content = plugin_data.SerializeToString()
    writer.file_writer.add_summary(unknown, 0, 1000.0)
    writer.close()
    return logdir


def test_unreadable_series_are_cards_saying_why_and_what_to_do(
    tab, unreadable_logdir, tensorboard_server
):
    base = tensorboard_server(unreadable_logdir, load_fast=False)
    tags = route(base, "tags")["damaged"]
    unreadable = {tag: info["error"] for tag, info in tags.items() if "error" in info}
    assert set(unreadable) == {"garbage", "unknown_kind"}, tags
    frame = tab.open(base)
    section = frame.locator("[data-testid=section-unreadable]")
    section.wait_for(timeout=TIMEOUT_MS)
    assert "Unreadable series" in section.locator(".ds-kind-title").inner_text()
    cards = section.locator("[data-testid=tag-error]")
    cards.nth(len(unreadable) - 1).wait_for(timeout=TIMEOUT_MS)
    assert cards.count() == len(unreadable)
    for k in range(cards.count()):
        card = cards.nth(k)
        tag = card.get_attribute("data-tag")
        assert card.get_attribute("data-run") == "damaged"
        # Retrying reads: a card below the fold may not be rendered yet (its innerText is '').
        why, todo = (card.locator(f"[data-testid=tag-error-{part}]") for part in ("why", "todo"))
        expect(why).to_contain_text(unreadable[tag], timeout=TIMEOUT_MS)
        expect(todo).to_contain_text("pip install -U deepscope", timeout=TIMEOUT_MS)
        expect(todo).to_contain_text("log this tag again", timeout=TIMEOUT_MS)
    # The readable tag draws; a refresh keeps the very same cards (drawn once).
    heatmap(frame, "damaged", tag="current")
    section.evaluate(
        "s => s.querySelectorAll('[data-testid=tag-error]').forEach(c => c.dataset.seen = '1')"
    )
    frame.locator("[data-testid=refresh]").click()
    frame.locator("[data-testid=refresh]:not([disabled])").wait_for(timeout=TIMEOUT_MS)
    assert section.locator("[data-testid=tag-error][data-seen='1']").count() == len(unreadable)


def test_a_kind_without_a_view_gets_a_section_saying_so(tab, python_loader_server):
    """A kind the plugin lists that this bundle has no view for (an older tab) is not hidden."""
    kinds = route(python_loader_server, "kinds")
    new_kind = {"name": "future_kind", "title": "Future kind", "subtitle": "Not yet?"}
    tab.page.route(
        "**/data/plugin/deepscope/kinds",
        lambda r: r.fulfill(
            status=200, content_type="application/json", body=json.dumps(kinds + [new_kind])
        ),
    )

    def tags_with_a_new_kind(r):
        body = json.loads(r.fetch().text())
        body["seed0"]["future_kind/val"] = {"kind": "future_kind", "version": 1}
        r.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    tab.page.route("**/data/plugin/deepscope/tags", tags_with_a_new_kind)
    frame = tab.open(python_loader_server)
    section = frame.locator("[data-testid=section-future_kind]")
    section.wait_for(timeout=TIMEOUT_MS)
    assert section.locator(".ds-kind-title").inner_text() == "Future kind"
    # In the plugin's order: after the kinds it lists first.
    order = frame.locator("details.ds-kind").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert order.index("update_ratios") < order.index("future_kind")
    card = section.locator("[data-testid=tag-error]")
    card.wait_for(timeout=TIMEOUT_MS)
    assert card.get_attribute("data-tag") == "future_kind/val"
    # text_content, not inner_text: the section may be collapsed (its open state is
    # remembered from the tests before), and a collapsed section's text is not rendered.
    assert "no view for “Future kind”" in card.text_content()
    assert "npm run build" in card.text_content()
    heatmap(frame, "seed0")  # the kinds it knows still draw


def test_section_titles_come_from_the_kinds_route(tab, python_loader_server):
    kinds = {k["name"]: k for k in route(python_loader_server, "kinds")}
    frame = tab.open(python_loader_server)
    section = frame.locator("[data-testid=section-update_ratios]")
    section.wait_for(timeout=TIMEOUT_MS)
    assert section.locator(".ds-kind-title").inner_text() == kinds["update_ratios"]["title"]
    assert section.locator(".ds-kind-sub").inner_text() == kinds["update_ratios"]["subtitle"]


def test_screenshot(tab, python_loader_server, tmp_path):
    """A full view of the tab, and what it must show: both runs' heatmaps in the colours their
    canvases painted (viridis where a value is, the grey hatch where no update is), the
    chart's lines in their colours, the runs' names. With DEEPSCOPE_SCREENSHOTS=1 it becomes
    the README's picture."""
    frame = tab.open(python_loader_server)
    heatmap(frame, "seed0")
    heatmap(frame, "seed1")
    frame.locator("[data-testid=linechart] path.ds-line").first.wait_for(timeout=TIMEOUT_MS)
    # Tall enough to show the whole tab: TensorBoard's header plus the iframe's content.
    height = frame.evaluate("document.documentElement.scrollHeight")
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": height + 80})
    tab.page.mouse.move(1, 1)
    tab.page.wait_for_timeout(500)  # let the redraw after the resize settle
    out = tmp_path / "update_ratios.png"
    tab.page.screenshot(path=str(out), full_page=True)
    picture = Picture(tab.page, out)
    hatch = {(0xE6, 0xE6, 0xE6), (0xA8, 0xA8, 0xA8), (0xFF, 0xFF, 0xFF)}
    for run in ("seed0", "seed1"):
        expected = route(python_loader_server, "update_ratios", run=run, tag="update_ratios")
        steps, names, values = expected["steps"], expected["names"], expected["values"]
        canvas = heatmap(frame, run)
        box = canvas.bounding_box()
        finite = [
            (i, j)
            for i in (1, len(steps) // 2, len(steps) - 1)
            for j in range(len(names))
            if isinstance(values[i][j], float) and values[i][j] > 0
        ]
        assert finite, "no finite ratio to look at"
        for i, j in finite[:6]:
            x, y = cell_centre(box, steps, len(names), i, j)
            painted = canvas_rgb(canvas, x, y)
            assert len(set(painted)) > 1, f"{run} ({i}, {j}): grey {painted}, not a viridis colour"
            shown = picture.rgb(x, y)
            assert max(abs(a - b) for a, b in zip(shown, painted)) <= 2, (run, i, j, shown, painted)
        i, j = next((i, j) for i, row in enumerate(values) for j, v in enumerate(row) if v is None)
        x, y = cell_centre(box, steps, len(names), i, j)
        assert picture.rgb(x, y) in hatch, f"{run}: no update at ({i}, {j}) is not hatched"
        name = frame.locator(f'.ds-runblock[data-run="{run}"] .ds-runblock-name')
        assert name.inner_text() == run and name.is_visible()
    lines = frame.locator("[data-testid=linechart] path.ds-line")
    assert lines.count() == 2
    for k in range(lines.count()):
        colour = css_rgb(lines.nth(k).get_attribute("stroke"))
        assert picture.count(colour, tolerance=8) > 30, f"line {k} ({colour}) is not in the picture"
    if os.environ.get("DEEPSCOPE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, SCREENSHOT)
