"""The update-ratio card at 200 parameters, in a real browser in a real TensorBoard (issue 9 §4).

The log: run `bert_resnet`, the 201 parameters of tests/scale_logs.py's two-tower model
(Hugging Face BERT and ResNet names) over 10,000 steps, and run `short`, the same
parameters over 30 steps. In `bert_resnet` one parameter is extreme early only (a
median over all steps would pick it) and another one lately (the one the eye is drawn to).

Set DEEPSCOPE_SCREENSHOTS=1 to refresh docs/images/update_ratios_grouped.png.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.browser.tab_page import (
    TIMEOUT_MS,
    VIEWPORT,
    canvas_rgb,
    fold_findings,
    hover_point,
    screenshot,
    tooltip_fields,
)
from tests.conftest import get, wait_until
from tests.scale_logs import scale_parameters, update_ratio_values, write_update_ratios

sync_api = pytest.importorskip("playwright.sync_api")

RUN = "bert_resnet"
SHORT = "short"
STEPS = 10_000
SHORT_STEPS = 30
EARLY_EXTREME = "bert.embeddings.word_embeddings.weight"
RECENT_EXTREME = "model.resnet.encoder.stages.3.layers.1.layer.1.convolution.weight"
ROW_H = 16  # px: heatmap.ts's ROW_H
RECENT_STEPS = 100  # stats.ts's RECENT_STEPS


def ratio_values(steps: int, seed: int, extremes: bool) -> tuple[list[str], np.ndarray]:
    names = [p.name for p in scale_parameters()]
    values = update_ratio_values(len(names), steps, seed)
    if extremes:
        early = names.index(EARLY_EXTREME)
        recent = names.index(RECENT_EXTREME)
        values[: int(0.6 * steps), early] = 1e-7  # far off, but only during the first 60 %
        values[int(0.85 * steps) :, recent] = 0.3  # far off over the last 15 %
    return names, values


@pytest.fixture(scope="session")
def scale_logdir(tmp_path_factory):
    import deepscope

    logdir = tmp_path_factory.mktemp("ratios-201")
    truth = {}
    for run, steps, seed in ((RUN, STEPS, 0), (SHORT, SHORT_STEPS, 1)):
        names, values = ratio_values(steps, seed, extremes=run == RUN)
        writer = deepscope.SummaryWriter(str(logdir / run))
        write_update_ratios(writer, names, values, block=100)
        writer.close()
        truth[run] = (names, values)
    return logdir, truth


@pytest.fixture(scope="session")
def scale_server(scale_logdir, tensorboard_server) -> str:
    base = tensorboard_server(scale_logdir[0], load_fast=False)

    def all_steps_read():  # TensorBoard reads the 10,000 steps in several passes
        url = (
            f"{base}/data/plugin/deepscope/update_ratios?run={RUN}&tag=update_ratios&format=base64"
        )
        status, body = get(url)
        return status == 200 and len(json.loads(body)["steps"]) == STEPS

    wait_until(all_steps_read, timeout=120, what="all 10,000 steps served")
    return base


@pytest.fixture(scope="session")
def odd_names_logdir(tmp_path_factory):
    """Runs and tags named like Object's own properties."""
    import deepscope

    logdir = tmp_path_factory.mktemp("odd-names")
    for run in ("__proto__", "constructor", "plain"):
        writer = deepscope.SummaryWriter(str(logdir / run))
        for step in range(3):
            for tag in ("__proto__", "constructor", "hasOwnProperty"):
                writer.add_update_ratios(
                    tag, {"fc.weight": 1e-3, "fc.bias": 2e-3}, global_step=step
                )
            # A fresh bias: zero before step 0, so its first ratio is undefined.
            bias = deepscope.ZERO_WEIGHT if step == 0 else 2e-3
            writer.add_update_ratios(
                "fresh", {"fc.weight": 1e-3, "fc.bias": bias}, global_step=step
            )
        writer.close()
    return logdir


@pytest.fixture(scope="session")
def odd_names_server(odd_names_logdir, tensorboard_server) -> str:
    return tensorboard_server(odd_names_logdir, load_fast=False)


# ---------------------------------------------------------------- helpers


def card(frame, tag: str = "update_ratios"):
    return frame.locator(f'section.ds-card[data-tag="{tag}"]')


def heatmap(frame, run: str, tag: str = "update_ratios"):
    canvas = frame.locator(f'[data-testid=heatmap][data-run="{run}"][data-tag="{tag}"]')
    canvas.and_(frame.locator("[data-drawn=true]")).wait_for(timeout=TIMEOUT_MS)
    return canvas


def rows_of(frame, run: str):
    """The row labels of `run`'s heatmap, in order."""
    return frame.locator(f'.ds-runblock[data-run="{run}"] .ds-ur-row')


def row_facts(frame, run: str) -> list[dict]:
    return frame.evaluate(
        """run => [...document.querySelectorAll(`.ds-runblock[data-run="${run}"] .ds-ur-row`)]
            .map(e => ({key: e.dataset.key, kind: e.dataset.kind, name: e.dataset.name ?? null,
                        text: e.textContent, title: e.dataset.title,
                        height: e.getBoundingClientRect().height,
                        expanded: e.dataset.expanded ?? null, depth: Number(e.dataset.depth)}))""",
        run,
    )


def wait_rows(frame, run: str, predicate: str, arg=None):
    """Wait until `predicate` (JS, gets the list of row labels and arg) holds."""
    frame.wait_for_function(
        f"""([run, arg]) => {{
            const block = document.querySelector(`.ds-runblock[data-run="${{run}}"]`);
            const rows = block ? [...block.querySelectorAll(".ds-ur-row")] : [];
            return ({predicate})(rows, arg);
        }}""",
        arg=[run, arg],
        timeout=TIMEOUT_MS,
    )


def format_ratio(value: float) -> str:
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def hover_row(tab, frame, run: str, row_index: int, x_fraction: float, dy: float):
    """Move the pointer over row `row_index` of `run`'s heatmap, `dy` px below the row's top."""
    label = rows_of(frame, run).nth(row_index)
    label.scroll_into_view_if_needed()
    canvas = heatmap(frame, run)
    box = canvas.bounding_box()
    top = label.bounding_box()["y"]  # page coordinates, like the canvas's
    x = box["x"] + x_fraction * box["width"]
    tab.page.mouse.move(x, top + dy)
    return box


def open_all(frame, run: str) -> None:
    button = card(frame).locator("[data-testid=expand-all]")
    if button.inner_text() == "expand all":
        button.click()
    wait_rows(
        frame,
        run,
        "rows => rows.every(r => r.dataset.kind !== 'group' || r.dataset.expanded === 'true')",
    )


# ---------------------------------------------------------------- tests


def test_200_parameters_are_grouped_by_module_and_every_row_is_labelled(
    tab, scale_server, scale_logdir
):
    names, _ = scale_logdir[1][RUN]
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    canvas = heatmap(frame, RUN)
    assert canvas.get_attribute("data-params") == str(len(names)) == "201"
    rows = row_facts(frame, RUN)
    # Grouped: far fewer rows than parameters, each as tall as its label needs.
    assert 3 <= len(rows) <= 40
    assert int(canvas.get_attribute("data-rows")) == len(rows)
    assert all(r["height"] >= 14 for r in rows), rows
    assert canvas.bounding_box()["height"] == pytest.approx(ROW_H * len(rows), abs=1)
    groups = {r["title"]: r for r in rows if r["kind"] == "group"}
    assert "bert" in groups and "model.resnet" in groups, list(groups)

    # The BERT layers are numbered blocks: one row for all six, then one per layer.
    block_row = next(r for r in rows if r["title"] == "bert.encoder.layer.0–5")
    assert block_row["text"].endswith(str(6 * 16))  # its parameter count
    toggle = frame.locator(
        f'.ds-runblock[data-run="{RUN}"] .ds-ur-row[data-key="{block_row["key"]}"]'
    )
    has_layer5 = "rows => rows.some(r => r.dataset.title === 'bert.encoder.layer.5')"
    if block_row["expanded"] == "true":  # opened at first: there is room for its six rows
        toggle.click()
        wait_rows(frame, RUN, f"rows => !({has_layer5})(rows)")
    toggle.click()
    wait_rows(frame, RUN, has_layer5)
    layer5 = next(r for r in row_facts(frame, RUN) if r["title"] == "bert.encoder.layer.5")
    assert layer5["kind"] == "group" and "layer.5" in layer5["text"]

    # Every parameter row keeps what tells it apart: its last block index and its leaf
    # (the rows above it name the earlier ones), and no two rows of a group read alike.
    open_all(frame, RUN)
    rows = row_facts(frame, RUN)
    params = [r for r in rows if r["kind"] == "param"]
    assert sorted(r["name"] for r in params) == sorted(names)
    siblings: dict[tuple, list[str]] = {}
    parents: list[str] = []
    for r in rows:
        del parents[r["depth"] :]
        siblings.setdefault(tuple(parents), []).append(r["text"])
        if r["kind"] == "group":
            parents.append(r["title"])
    for group, texts in siblings.items():
        assert len(set(texts)) == len(texts), (group, texts)
    for r in params:
        name = r["name"]
        assert r["height"] >= 14
        numbered = re.findall(r"([A-Za-z_]+)\.(\d+)\.", name)
        if numbered:
            assert ".".join(numbered[-1]) in r["text"], (name, r["text"])
        assert r["text"].endswith(name.rsplit(".", 1)[1]), (name, r["text"])
        assert name in r["title"]
        assert "…ention" not in r["text"] and "enco…" not in r["text"]
    key_bias = next(
        r for r in params if r["name"] == "bert.encoder.layer.5.attention.self.key.bias"
    )
    assert "layer.5" in key_bias["text"] and "key.bias" in key_bias["text"]
    # Open, the rows scroll inside the card instead of shrinking.
    scroller = frame.locator(f'.ds-runblock[data-run="{RUN}"] [data-testid=heatmap-rows]')
    assert scroller.bounding_box()["height"] <= 561
    body = scroller.locator(".ds-ur-body")
    assert body.bounding_box()["height"] == pytest.approx(ROW_H * len(rows), abs=1)
    # The canvas covers the rows in view (and the one cut at the bottom), not all of them.
    assert canvas.bounding_box()["height"] <= 560 + ROW_H


def test_hover_names_exactly_the_row_under_the_pointer(tab, scale_server, scale_logdir):
    names, values = scale_logdir[1][RUN]
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    heatmap(frame, RUN)
    open_all(frame, RUN)
    rows = row_facts(frame, RUN)
    picks = sorted(set(np.linspace(0, len(rows) - 1, 40).round().astype(int).tolist()))
    for r in picks:
        for dy in (1.5, ROW_H / 2, ROW_H - 2.5):  # near both edges of the row, and its middle
            hover_row(tab, frame, RUN, r, 0.5, dy)
            fields = tooltip_fields(frame)
            want = rows[r]["name"] if rows[r]["kind"] == "param" else rows[r]["title"]
            assert fields["name"] == want, (r, dy, rows[r])
        if rows[r]["kind"] == "param":
            step = int(fields["step"])
            j = names.index(rows[r]["name"])
            assert fields["value"] == format_ratio(float(values[step, j])), (r, step)


def test_a_group_row_shows_the_median_and_max_of_its_parameters(tab, scale_server, scale_logdir):
    names, values = scale_logdir[1][RUN]
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    heatmap(frame, RUN)
    rows = row_facts(frame, RUN)
    r = next(k for k, row in enumerate(rows) if row["title"] == "bert.encoder.layer.0–5")
    hover_row(tab, frame, RUN, r, 0.3, ROW_H / 2)
    fields = tooltip_fields(frame)
    step = int(fields["step"])
    members = [j for j, n in enumerate(names) if n.startswith("bert.encoder.layer.")]
    assert fields["count"] == str(len(members)) == "96"
    at = values[step, members].astype(np.float64)
    assert fields["median"] == format_ratio(float(np.median(at)))
    assert fields["max"] == format_ratio(float(at.max()))
    assert fields["max_name"] == names[members[int(at.argmax())]]
    # The colour of a group follows the median unless asked for the max.
    card(frame).locator("[data-testid=group-summary]").select_option("max")
    hover_row(tab, frame, RUN, r, 0.3, ROW_H / 2)
    assert tooltip_fields(frame)["max"] == fields["max"]


def test_filter_box_narrows_heatmap_picker_and_chart(tab, scale_server, scale_logdir):
    names, _ = scale_logdir[1][RUN]
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    heatmap(frame, RUN)
    box = card(frame).locator("[data-testid=param-filter]")
    box.fill(r"layer\.3\.")
    wanted = [n for n in names if re.search(r"layer\.3\.", n, re.I)]
    wait_rows(frame, RUN, "(rows, n) => rows.length === n", len(wanted))
    rows = row_facts(frame, RUN)
    assert [r["name"] for r in rows] == wanted  # few enough: one row per parameter
    assert (
        f"{len(wanted)} of 201 parameters"
        in card(frame).locator("[data-testid=param-count]").inner_text()
    )
    # Both runs' heatmaps show the same rows (drawn one run after the other); the chart
    # only parameters that match.
    wait_rows(frame, SHORT, "(rows, n) => rows.length === n", len(wanted))
    assert [r["name"] for r in row_facts(frame, SHORT)] == wanted
    chart = frame.locator("[data-testid=linechart]")
    frame.wait_for_function(
        "() => JSON.parse(document.querySelector('[data-testid=linechart]').dataset.params || '[]')"
        ".every(n => /layer\\.3\\./i.test(n))",
        timeout=TIMEOUT_MS,
    )
    params = json.loads(chart.get_attribute("data-params"))
    assert params and all(n in wanted for n in params)
    options = card(frame).locator("select[aria-label='Add a parameter to the chart'] option")
    assert [options.nth(k).get_attribute("value") for k in range(1, options.count())] == wanted

    box.fill("key.bias")  # plain text is a regex too; here it matches like a substring
    wait_rows(
        frame, RUN, "rows => rows.length > 0 && rows.every(r => /key.bias/i.test(r.dataset.name))"
    )
    assert len(row_facts(frame, RUN)) == sum("key.bias" in n for n in names)

    box.fill("layer.(")  # not a regex: matched as text, and said so
    card(frame).locator(".ds-filter-error").wait_for(timeout=TIMEOUT_MS)
    frame.locator(
        f'.ds-runblock[data-run="{RUN}"] .ds-placeholder', has_text="No parameter matches"
    ).wait_for()
    box.fill("")
    wait_rows(frame, RUN, "rows => rows.some(r => r.dataset.kind === 'group')")


def test_chart_opens_on_the_parameter_farthest_from_the_rule_of_thumb_lately(
    tab, scale_server, scale_logdir
):
    # The independent reference: median of log10 over each parameter's last 100 steps.
    distances = {}
    for run in (RUN, SHORT):
        names, values = scale_logdir[1][run]
        recent = np.log10(values[-RECENT_STEPS:].astype(np.float64))
        for j, d in enumerate(np.abs(np.median(recent, axis=0) + 3)):
            distances[names[j]] = max(distances.get(names[j], 0.0), float(d))
    expected = max(distances, key=distances.get)
    assert expected == RECENT_EXTREME
    names, values = scale_logdir[1][RUN]
    overall = np.abs(np.median(np.log10(values.astype(np.float64)), axis=0) + 3)
    assert names[int(overall.argmax())] == EARLY_EXTREME  # what a median over all steps picks

    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    heatmap(frame, RUN)
    heatmap(frame, SHORT)
    chart = frame.locator("[data-testid=linechart]")
    chart.scroll_into_view_if_needed()
    frame.wait_for_function(
        "() => document.querySelector('[data-testid=linechart]').dataset.params !== undefined"
        " && document.querySelector('[data-testid=linechart]').dataset.params !== '[]'",
        timeout=TIMEOUT_MS,
    )
    assert json.loads(chart.get_attribute("data-params")) == [RECENT_EXTREME]
    assert card(frame).locator(f'.ds-chip[data-param="{RECENT_EXTREME}"]').count() == 1


def test_a_short_run_is_drawn_only_where_it_has_data(tab, scale_server):
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    long_canvas = heatmap(frame, RUN)
    short_canvas = heatmap(frame, SHORT)
    width = int(short_canvas.evaluate("c => c.width"))
    assert width == int(long_canvas.evaluate("c => c.width"))
    alpha = short_canvas.evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 4, c.width, 1).data)"
        ".filter((_, k) => k % 4 === 3)"
    )
    # The shared axis spans 10,000 steps; the short run's 30 steps (plus one gap) cover
    # the first 31/10,000 of it, the rest of its row is empty.
    covered = 31 / STEPS * width
    assert alpha[0] == 255
    assert all(a == 0 for a in alpha[int(np.ceil(covered)) + 1 :]), alpha[:20]
    long_alpha = long_canvas.evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 4, c.width, 1).data)"
        ".filter((_, k) => k % 4 === 3)"
    )
    assert all(a == 255 for a in long_alpha)
    # Off its data, hovering the short run says nothing instead of naming its last step.
    box = short_canvas.bounding_box()
    tab.page.mouse.move(box["x"] + 0.6 * box["width"], box["y"] + ROW_H / 2)
    tab.page.wait_for_timeout(200)
    assert frame.locator("[data-testid=tooltip]").is_hidden()


def test_a_run_that_stopped_and_resumed_is_empty_in_between(tab, scale_server):
    def resumed(route):  # the short run's 30 steps as 0–14, then 6,000–6,014
        response = route.fetch()
        body = response.json()
        body["steps"] = list(range(15)) + list(range(6000, 6015))
        route.fulfill(response=response, body=json.dumps(body))

    tab.page.route(f"**/data/plugin/deepscope/update_ratios?run={SHORT}*", resumed)
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    heatmap(frame, RUN)
    canvas = heatmap(frame, SHORT)
    alpha = canvas.evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 4, c.width, 1).data)"
        ".filter((_, k) => k % 4 === 3)"
    )
    width = len(alpha)

    def at(step: float) -> int:  # the pixel column of a step on the shared 0–10,000 axis
        return int(step / STEPS * width)

    assert alpha[at(0)] == 255 and alpha[at(6005)] == 255
    assert all(a == 0 for a in alpha[at(100) : at(5900)])  # the gap
    assert all(a == 0 for a in alpha[at(6100) :])  # after its last step


def test_zero_weight_cells_are_undefined_not_non_finite(tab, scale_server, scale_logdir):
    names, _ = scale_logdir[1][SHORT]
    biases = [j for j, n in enumerate(names) if n.endswith(".bias")]

    def with_zero_weight(route):
        response = route.fetch()
        body = response.json()
        body.pop("zero_weight", None)
        # Fresh biases: zero before step 0, so their ratio there is undefined (NaN).
        body["zero_weight"] = [[0, j] for j in biases]
        route.fulfill(response=response, body=json.dumps(body))

    tab.page.route(f"**/data/plugin/deepscope/update_ratios?run={SHORT}*", with_zero_weight)
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    heatmap(frame, SHORT)
    # Only the short run, so its 30 steps span the axis; only the pooler's rows, flat.
    frame.locator(f'label.ds-run[data-run="{RUN}"] input').uncheck()
    card(frame).locator("[data-testid=param-filter]").fill(r"pooler")
    wait_rows(frame, SHORT, "rows => rows.length === 2")
    rows = row_facts(frame, SHORT)
    r = next(k for k, row in enumerate(rows) if row["name"] == "bert.pooler.dense.bias")
    canvas = heatmap(frame, SHORT)
    height = canvas.bounding_box()["height"]
    point = (0.5 / SHORT_STEPS, (r + 0.5) * ROW_H / height)
    fields = hover_point(tab, canvas, *point, {"step": "0", "name": "bert.pooler.dense.bias"})
    assert fields["step"] == "0" and fields["name"] == "bert.pooler.dense.bias"
    assert fields["value"] == "‖W‖ = 0: ratio undefined"
    rgba = canvas.evaluate(
        "(c, y) => Array.from(c.getContext('2d').getImageData(1, y, 1, 1).data)", r * ROW_H + 4
    )
    assert rgba[:3] == [0xB3, 0xC7, 0xD6]  # the neutral ‖W‖ = 0 colour, not the red of NaN
    legend = card(frame).locator("[data-testid=legend]").inner_text()
    assert "‖W‖ = 0: ratio undefined" in legend
    badge = frame.locator(f'.ds-runblock[data-run="{SHORT}"] [data-testid=zero-weight-count]')
    assert badge.inner_text().startswith(str(len(biases)))
    assert frame.locator(f'.ds-runblock[data-run="{SHORT}"] .ds-badge-bad').count() == 0


def test_sidebar_tag_filter_narrows_the_parameters_of_a_tag(tab, scale_server, scale_logdir):
    names, _ = scale_logdir[1][RUN]
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    heatmap(frame, RUN)
    frame.locator("[data-testid=tag-filter]").fill(r"encoder\.layer\.3\.")
    wanted = [n for n in names if re.search(r"encoder\.layer\.3\.", n, re.I)]
    wait_rows(frame, RUN, "(rows, n) => rows.length === n", len(wanted))
    assert [r["name"] for r in row_facts(frame, RUN)] == wanted
    # A filter that matches the tag itself shows all of it.
    frame.locator("[data-testid=tag-filter]").fill("update_rat")
    wait_rows(frame, RUN, "rows => rows.some(r => r.dataset.kind === 'group')")


def test_an_unchanged_reload_does_not_redraw(tab, scale_server):
    responses = []
    tab.page.on(
        "response",
        lambda r: responses.append(r.status) if "/deepscope/update_ratios?" in r.url else None,
    )
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    canvas = heatmap(frame, RUN)
    heatmap(frame, SHORT)
    frame.locator("[data-testid=linechart] path.ds-line").first.wait_for(timeout=TIMEOUT_MS)
    draws = canvas.get_attribute("data-draws")
    before = len(responses)
    frame.locator("[data-testid=refresh]").click()
    # Playwright's sync API delivers "response" events only while it is called, so the
    # wait lets the page run (wait_for_timeout) between looks rather than sleeping.
    wait_until(
        lambda: tab.page.wait_for_timeout(200) or len(responses) >= before + 2,
        timeout=30,
        what="both runs reloaded",
    )
    tab.page.wait_for_timeout(500)
    assert 304 in responses[before:]  # the data did not change: the same parsed response
    assert canvas.get_attribute("data-draws") == draws


def test_runs_and_tags_named_like_object_properties_are_shown(tab, odd_names_server):
    frame = tab.open(odd_names_server)
    for tag in ("__proto__", "constructor", "hasOwnProperty"):
        card(frame, tag).wait_for(timeout=TIMEOUT_MS)
        card(frame, tag).scroll_into_view_if_needed()  # cards load when they come into view
        for run in ("__proto__", "constructor", "plain"):
            heatmap(frame, run, tag)
    for run in ("__proto__", "constructor", "plain"):
        assert frame.locator(f'label.ds-run[data-run="{run}"]').count() == 1
    runs = frame.locator("[data-testid=run-selector] label.ds-run")
    assert sorted(runs.nth(k).get_attribute("data-run") for k in range(runs.count())) == [
        "__proto__",
        "constructor",
        "plain",
    ]


def test_long_tasks_stay_short_and_screenshot(tab, scale_server, tmp_path):
    """No task over 200 ms while the tab first draws and scrolls (a generous bound is asserted)."""
    tab.page.add_init_script(
        """
        window.__longtasks = [];
        try {
          new PerformanceObserver(list => {
            // Only the tab's own tasks ("self"), not TensorBoard's page around it.
            for (const e of list.getEntries()) {
              if (window.parent === window || e.name === 'self') {
                window.__longtasks.push(Math.round(e.duration));
              }
            }
          }).observe({type: 'longtask', buffered: true});
        } catch (e) {}
        """
    )
    frame = tab.open(scale_server)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    heatmap(frame, RUN)
    heatmap(frame, SHORT)
    frame.locator("[data-testid=linechart] path.ds-line").first.wait_for(timeout=TIMEOUT_MS)
    first = frame.evaluate("window.__longtasks.slice()")
    open_all(frame, RUN)
    scroller = frame.locator(f'.ds-runblock[data-run="{RUN}"] [data-testid=heatmap-rows]')
    scroller.hover()
    for _ in range(12):
        tab.page.mouse.wheel(0, 400)
        tab.page.wait_for_timeout(50)
    for _ in range(6):
        frame.evaluate("window.scrollBy(0, 600)")
        tab.page.wait_for_timeout(50)
    tasks = frame.evaluate("window.__longtasks.slice()")
    later = tasks[len(first) :]
    print(f"long tasks (ms): first draw {first}, after opening all and scrolling {later}")
    assert max(tasks, default=0) < 2000, tasks  # generous: the CI machine may be shared

    # The README's picture: the 201-parameter card, grouped as it opens.
    tab.page.goto("about:blank")  # a fresh tab: grouped as it opens
    frame2 = tab.open(scale_server)
    heatmap(frame2, RUN)
    frame2.locator("[data-testid=linechart] path.ds-line").first.wait_for(timeout=TIMEOUT_MS)
    height = frame2.evaluate("document.documentElement.scrollHeight")
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": min(height + 80, 2400)})
    tab.page.mouse.move(1, 1)
    tab.page.wait_for_timeout(400)
    picture = screenshot(card(frame2), tmp_path, "update_ratios_grouped.png")
    # It shows the rows grouped (group rows with their counts), the legend, and the
    # heatmap's cells in the colours its canvas painted.
    groups = card(frame2).locator(f'.ds-runblock[data-run="{RUN}"] .ds-ur-row[data-kind=group]')
    assert groups.count() > 0 and groups.first.is_visible()
    assert card(frame2).locator("[data-testid=legend]").is_visible()
    canvas = heatmap(frame2, RUN)
    box = canvas.bounding_box()
    for r in range(min(8, int(canvas.get_attribute("data-rows")))):
        for fraction in (0.25, 0.75):
            x, y = box["x"] + box["width"] * fraction, box["y"] + (r + 0.5) * ROW_H
            painted = canvas_rgb(canvas, x, y)
            shown = picture.rgb(x, y)
            assert max(abs(a - b) for a, b in zip(shown, painted)) <= 2, (r, shown, painted)


def test_a_fresh_bias_written_by_the_writer_reads_as_zero_weight(tab, odd_names_server):
    frame = tab.open(odd_names_server)
    frame.locator("[data-testid=tag-filter]").fill("^fresh$")
    # The filter applied (debounced): the other cards are gone (or hidden), their rows too.
    card(frame, "__proto__").wait_for(state="hidden", timeout=TIMEOUT_MS)
    canvas = heatmap(frame, "plain", "fresh")
    height = canvas.bounding_box()["height"]
    rows = row_facts(frame, "plain")
    r = next(k for k, row in enumerate(rows) if row["name"] == "fc.bias")
    point = (1 / 6, (r + 0.5) * ROW_H / height)  # step 0
    fields = hover_point(tab, canvas, *point, {"step": "0", "name": "fc.bias"})
    assert fields["step"] == "0" and fields["name"] == "fc.bias"
    assert fields["value"] == "‖W‖ = 0: ratio undefined"
    block = frame.locator('section.ds-card[data-tag="fresh"] .ds-runblock[data-run="plain"]')
    assert block.locator(".ds-badge-bad").count() == 0  # not counted as non-finite
