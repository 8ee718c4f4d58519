"""The tab at scale (issue 9 §4): a 201-parameter, 74-layer, 10,000-step log and a 50-run log.

Served by a real `tensorboard` (Python loader), shown in Debian's Chromium. Checks
that an idle reload moves little (ETag / 304), that the tab stays responsive,
that the tag filter narrows the update-ratio section instead of hiding it, and
that 50 runs (500-character names, `__proto__`, `constructor`) fit the viewport
with 50 distinct colours.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from tests.browser.tab_page import (
    TIMEOUT_MS,
    NetworkMeter,
    css_rgb,
    fold_findings,
    long_tasks_ms,
    record_long_tasks,
    screenshot,
)
from tests.conftest import get, wait_until
from tests.scale_logs import SPECTRA_PREFIX

HEATMAP_DRAWN = (
    "() => [...document.querySelectorAll('canvas[data-testid=heatmap]')]"
    ".some(c => c.dataset.drawn === 'true' && c.width > 0)"
)
IDLE_RELOAD_BYTES = 50_000  # issue 9's target for one idle reload of the 201-parameter log
# Issue 9's target is 200 ms; this bound is generous because the machine running the
# tests is shared (measured figures: benchmarks/results/tab.json).
LONGEST_TASK_MS = 1500.0


def _wait_loaded(base: str, run: str, last_tag: str, steps: int) -> None:
    """Until the server lists every step of the log's last-written tag (so all before it)."""
    url = f"{base}/data/plugin/deepscope/spectrum_steps?{urlencode({'run': run, 'tag': last_tag})}"

    def loaded():
        status, body = get(url, timeout=30)
        return status == 200 and len(json.loads(body)["steps"]) >= steps

    wait_until(loaded, timeout=240, what=f"{last_tag} of {run} fully loaded")


@pytest.fixture(scope="module")
def server_201(tensorboard_server, log_201_parameters):
    log = log_201_parameters
    base = tensorboard_server(log.logdir, load_fast=False)
    _wait_loaded(
        base, log.run, f"{SPECTRA_PREFIX}/{log.layer_modules[-1]}", len(log.spectrum_steps)
    )
    return base


@pytest.fixture(scope="module")
def server_50(tensorboard_server, log_50_runs):
    log = log_50_runs
    base = tensorboard_server(log.logdir, load_fast=False)
    last_tag = f"{SPECTRA_PREFIX}/{log.layer_modules[-1]}"

    def every_run_listed():
        status, body = get(f"{base}/data/plugin/deepscope/tags", timeout=30)
        tags = json.loads(body) if status == 200 else {}
        return set(tags) == set(log.runs) and all(last_tag in t for t in tags.values())

    wait_until(every_run_listed, timeout=240, what="all 50 runs listed")
    return base


def _open(tab, base: str):
    record_long_tasks(tab.page.context)
    meter = NetworkMeter(tab.page)
    frame = tab.open(base)
    fold_findings(frame)  # the update ratios at the top, as these tests point at them
    frame.wait_for_function(HEATMAP_DRAWN, timeout=60_000, polling="raf")
    meter.wait_quiet()
    return frame, meter


def test_an_idle_reload_of_the_201_parameter_log_moves_under_50_kB(tab, server_201):
    frame, meter = _open(tab, server_201)
    first_load = sum(r["bytes"] for r in meter.since(0))
    assert first_load > 1_000_000  # 10,000 steps x 201 parameters came once
    revalidated = []
    for _ in range(2):
        mark = meter.mark()
        frame.locator("[data-testid=refresh]").click()  # what the 30 s timer does
        tab.page.wait_for_timeout(300)
        meter.wait_quiet(quiet_ms=2500)
        reloaded = meter.since(mark)
        assert any(r["url"].endswith("/tags") for r in reloaded), reloaded
        total = sum(r["bytes"] for r in reloaded)
        assert total <= IDLE_RELOAD_BYTES, [(r["url"][-80:], r["bytes"]) for r in reloaded]
        revalidated += [r["url"] for r in reloaded if r["status"] == 304]
    # The 10 MB of update ratios were asked again and answered "not modified".
    assert any("update_ratios" in url for url in revalidated), revalidated


def test_the_201_parameter_tab_stays_responsive_and_short(tab, server_201):
    frame, meter = _open(tab, server_201)
    height = frame.evaluate("() => document.documentElement.scrollHeight")
    tab.page.mouse.move(900, 450)
    for direction in (1, -1):
        for _ in range(height // 500 + 2):
            tab.page.mouse.wheel(0, direction * 500)
            tab.page.wait_for_timeout(60)
        meter.wait_quiet()
    longest = (long_tasks_ms(frame) or [0.0])[0]
    print(f"longest task {longest:.0f} ms, page {height} px")
    assert longest <= LONGEST_TASK_MS
    nodes = frame.evaluate("() => document.getElementsByTagName('*').length")
    assert nodes < 15_000, nodes
    # Cards off screen are skipped by the renderer, keeping a placeholder height.
    skipped = frame.evaluate(
        "() => [...document.querySelectorAll('.ds-kind-body > *')]"
        ".every(e => getComputedStyle(e).contentVisibility === 'auto')"
    )
    assert skipped


# The most rows added to the spectrum table in one task (one MutationObserver callback), and
# the number of tasks that added rows.
TABLE_BATCHES_SCRIPT = """
(() => {
  window.__dsTableBatches = 0;
  window.__dsMostRowsAtOnce = 0;
  new MutationObserver((records) => {
    let rows = 0;
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1 || !n.closest("[data-testid=spectrum-table]")) continue;
        rows += n.matches("tbody > tr") ? 1 : n.querySelectorAll("tbody > tr").length;
      }
    }
    if (rows) {
      window.__dsTableBatches++;
      window.__dsMostRowsAtOnce = Math.max(window.__dsMostRowsAtOnce, rows);
    }
  }).observe(document, { childList: true, subtree: true });
})();
"""


def test_the_74_layer_table_is_built_in_chunks_and_an_idle_reload_keeps_it(tab, server_201):
    """No one task builds all 74 rows (~0.2-1 s); a reload that changed nothing redraws nothing."""
    tab.page.context.add_init_script(TABLE_BATCHES_SCRIPT)
    frame, meter = _open(tab, server_201)
    card = frame.locator("[data-testid=spectrum-card]")
    card.wait_for(state="attached", timeout=TIMEOUT_MS)
    card.scroll_into_view_if_needed()  # the view loads once it is in view
    table = frame.locator("[data-testid=spectrum-table][data-complete=true]")
    table.wait_for(state="attached", timeout=TIMEOUT_MS)
    meter.wait_quiet()
    assert table.get_attribute("data-rows") == "74"
    assert frame.locator("[data-testid=spectrum-table] tbody tr").count() == 74
    most = frame.evaluate("() => window.__dsMostRowsAtOnce")
    assert 0 < most <= 24, most  # chunks of 8-24 rows, a task each
    # Mark the rows: an idle reload (304s) must keep them.
    frame.evaluate(
        "() => document.querySelectorAll('[data-testid=spectrum-table] tbody tr')"
        ".forEach((e) => { e.__dsKept = true; })"
    )
    before = frame.evaluate("() => window.__dsTableBatches")
    for _ in range(2):
        # In view (the frame's own scroll): a view off screen reloads once it scrolls back.
        frame.evaluate(
            "() => document.querySelector('[data-testid=spectrum-table]').scrollIntoView()"
        )
        tab.page.wait_for_timeout(300)
        mark = meter.mark()
        # Clicked in place: a Playwright click would scroll the table out of view first.
        frame.evaluate("() => document.querySelector('[data-testid=refresh]').click()")
        tab.page.wait_for_timeout(300)
        meter.wait_quiet(quiet_ms=2500)
        assert any(
            "spectrum_metrics" in r["url"] and r["status"] == 304 for r in meter.since(mark)
        ), meter.since(mark)
    kept = frame.evaluate(
        "() => [...document.querySelectorAll('[data-testid=spectrum-table] tbody tr')]"
        ".every((e) => e.__dsKept === true)"
    )
    assert kept
    assert frame.evaluate("() => window.__dsTableBatches") == before


def test_a_refresh_keeps_the_page_where_the_user_scrolled_it(tab, server_201):
    """A reload re-lays the sections out in place: the frame does not jump to the top."""
    frame, meter = _open(tab, server_201)
    frame.locator("[data-testid=spectrum-card]").wait_for(state="attached", timeout=TIMEOUT_MS)
    frame.evaluate("() => document.querySelector('[data-testid=spectrum-card]').scrollIntoView()")
    meter.wait_quiet()
    scroll_top = "() => document.scrollingElement.scrollTop"
    before = frame.evaluate(scroll_top)
    assert before > 200, before  # the card is well below the top of the page
    for _ in range(2):
        frame.evaluate("() => document.querySelector('[data-testid=refresh]').click()")
        tab.page.wait_for_timeout(300)
        meter.wait_quiet(quiet_ms=2500)
        assert abs(frame.evaluate(scroll_top) - before) <= 2, (before, frame.evaluate(scroll_top))


def test_the_tag_filter_narrows_update_ratios_instead_of_hiding_them(tab, server_201):
    frame, _ = _open(tab, server_201)
    frame.locator("[data-testid=tag-filter]").fill(r"key\.bias")  # parameters, no tag
    update_ratios = frame.locator("[data-testid=section-update_ratios]")
    spectra = frame.locator("[data-testid=section-spectrum]")
    spectra.wait_for(state="detached", timeout=TIMEOUT_MS)  # no spectrum tag matches
    assert update_ratios.is_visible()
    frame.locator("[data-testid=tag-filter]").fill(r"^nothing-matches$")
    update_ratios.wait_for(state="detached", timeout=TIMEOUT_MS)
    assert "No tags match" in frame.locator(".ds-main").inner_text()


def test_fifty_runs_fit_the_viewport_with_fifty_colours(tab, server_50, log_50_runs, tmp_path):
    frame, meter = _open(tab, server_50)
    labels = frame.locator("[data-testid=run-selector] label.ds-run")
    assert labels.count() == 50
    runs = [labels.nth(k).get_attribute("data-run") for k in range(50)]
    assert set(runs) == set(log_50_runs.runs)  # __proto__ and constructor among them
    colours = [labels.nth(k).locator(".ds-swatch").get_attribute("data-color") for k in range(50)]
    assert len(set(colours)) == 50
    # A 500-character name is cut with an ellipsis in the run list; its tooltip says it all.
    long_label = frame.locator(f'label.ds-run[data-run="{log_50_runs.short_run}"]')
    assert long_label.get_attribute("title") == log_50_runs.short_run
    assert long_label.locator(".ds-run-name").evaluate("e => e.scrollWidth > e.clientWidth")
    height = frame.evaluate("() => document.documentElement.scrollHeight")
    tab.page.mouse.move(900, 450)
    widths = []
    for _ in range(min(height // 700 + 2, 40)):
        widths.append(frame.evaluate("() => document.documentElement.scrollWidth - innerWidth"))
        tab.page.mouse.wheel(0, 700)
        tab.page.wait_for_timeout(150)
    meter.wait_quiet()
    widths.append(frame.evaluate("() => document.documentElement.scrollWidth - innerWidth"))
    assert max(widths) <= 0, widths
    frame.evaluate("() => window.scrollTo(0, 0)")
    tab.page.wait_for_timeout(500)
    picture = screenshot(
        tab.page.locator("iframe[src*='name=deepscope']"), tmp_path, "tab_50_runs.png"
    )
    # The picture shows each run's swatch in its colour (those the run list shows).
    points, expected = [], []
    for k in range(50):
        box = labels.nth(k).locator(".ds-swatch").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        if picture.inside(x, y):
            points.append((x, y))
            expected.append(css_rgb(colours[k]))
    assert len(points) >= 20, f"only {len(points)} of the 50 swatches are in the picture"
    for k, (shown, want) in enumerate(zip(picture.rgbs(points), expected)):
        assert max(abs(a - b) for a, b in zip(shown, want)) <= 2, (k, shown, want)
