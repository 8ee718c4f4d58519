"""The Findings section of the tab, in a real browser and TensorBoard, on planted faults.

The log is tests/findings_data.py's: small real training runs under `deepscope.watch`,
each with one planted fault (a dead ReLU, a NaN at a step, duplicated channels, ...). The
tab must open on a Findings section above every kind's section, one line per finding of
the `findings` route (severity in colour and word, run with its colour, layer, the
sentence with the numbers, what to try), in the route's order, info folded behind a
toggle when there are many; following the sidebar's runs and the tab's refresh. Clicking
a line must open the view holding the evidence (its section opened when collapsed, a tag
filter hiding it cleared): the card of its (run, tag) in view, at the evidence's step,
its row marked (update ratios, layer statistics) and its statistic chosen. With no
findings (a healthy run alone) the section says what was checked.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/findings.png.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.tab_page import TIMEOUT_MS, VIEWPORT, css_rgb, screenshot
from tests.findings_data import planted_logdir  # noqa: F401  (the session's planted runs)
from tests.route_helpers import route

sync_api = pytest.importorskip("playwright.sync_api")

# frontend/src/findings/digest.ts: this many findings show whole, info too.
COMPACT = 8
HEALTHY = "healthy"
# The severity words' colours (frontend/src/findings/styles.ts).
SEVERITY_RGB = {
    "error": (0xB7, 0x1C, 0x1C),
    "warning": (0x7A, 0x5C, 0x00),
    "info": (0x0D, 0x47, 0xA1),
}


@pytest.fixture(scope="session")
def findings_server(planted_logdir, tensorboard_server) -> str:  # noqa: F811
    logdir, _ = planted_logdir
    return tensorboard_server(Path(logdir), load_fast=False)


@pytest.fixture(scope="session")
def healthy_server(tmp_path_factory, tensorboard_server) -> str:
    """One run whose update ratios sit at the rule of thumb (1e-3) at every step."""
    import numpy as np

    import deepscope

    logdir = tmp_path_factory.mktemp("findings-healthy")
    rng = np.random.default_rng(0)
    writer = deepscope.SummaryWriter(str(logdir / HEALTHY))
    names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for step in range(0, 200, 5):
        ratios = {name: float(1e-3 * np.exp(rng.normal(0.0, 0.2))) for name in names}
        writer.add_update_ratios("update_ratios", ratios, global_step=step)
    writer.close()
    return tensorboard_server(logdir, load_fast=False)


def layer_text(layer: str) -> str:
    return layer or "whole network"


def open_findings(tab, base_url: str):
    frame = tab.open(base_url)
    section = frame.locator("[data-testid=section-findings]")
    section.wait_for(timeout=TIMEOUT_MS)
    frame.locator(
        "[data-testid=section-findings] :is([data-testid=finding], [data-testid=findings-none])"
    ).first.wait_for(timeout=TIMEOUT_MS)
    return frame, section


def line_of(frame, finding: dict):
    """The tab's line of a finding of the route."""
    e = finding["evidence"]
    return frame.locator(
        f'[data-testid=finding][data-rule="{finding["rule"]}"][data-run="{finding["run"]}"]'
        f'[data-layer="{finding["layer"]}"][data-tag="{e["tag"]}"][data-step="{e["step"]}"]'
    )


def show_all_lines(frame) -> None:
    """Unfold the info findings and the errors and warnings past the first ones."""
    for testid in ("findings-more", "findings-info-toggle"):
        toggle = frame.locator(f"[data-testid={testid}]")
        if toggle.count() and "hide" not in toggle.inner_text():
            toggle.click()


def field(line, name: str) -> str:
    return line.locator(f"[data-field={name}]").inner_text()


def test_findings_come_first_a_line_per_finding_in_the_routes_order(
    tab,
    findings_server,
    planted_logdir,  # noqa: F811
):
    _, truths = planted_logdir
    report = route(findings_server, "findings")
    findings = report["findings"]
    assert findings, "the planted faults gave no findings"
    frame, section = open_findings(tab, findings_server)
    # Above every kind's section.
    frame.locator("[data-testid=section-update_ratios]").wait_for(timeout=TIMEOUT_MS)
    first = frame.locator("details.ds-kind").first
    assert first.get_attribute("data-testid") == "section-findings"

    counts = section.locator("[data-testid=findings-counts] [data-severity]")
    shown_counts = {
        counts.nth(k).get_attribute("data-severity"): counts.nth(k).inner_text()
        for k in range(counts.count())
    }
    for severity, n in report["counts"].items():
        if n:
            assert shown_counts[severity].startswith(f"{n} "), (severity, shown_counts)

    # Errors and warnings at first, in the route's order; info folded when there are many.
    primary = [f for f in findings if f["severity"] != "info"]
    infos = [f for f in findings if f["severity"] == "info"]
    lines = section.locator("[data-testid=finding]")
    if len(findings) > COMPACT and infos:
        toggle = section.locator("[data-testid=findings-info-toggle]")
        assert toggle.inner_text() == f"show {len(infos)} info finding{'s' * (len(infos) > 1)}"
        expect(lines).to_have_count(len(primary))
        toggle.click()
    expect(lines).to_have_count(len(findings))
    order = [
        (lines.nth(k).get_attribute("data-run"), lines.nth(k).get_attribute("data-rule"))
        for k in range(lines.count())
    ]
    assert order == [(f["run"], f["rule"]) for f in primary + infos]

    for finding in findings:
        line = line_of(frame, finding)
        expect(line).to_have_count(1)
        assert field(line, "severity").lower() == finding["severity"]
        assert field(line, "run") == finding["run"]
        assert field(line, "layer") == layer_text(finding["layer"])
        assert field(line, "message") == finding["message"]
        assert finding["advice"] in field(line, "advice")
        rgb = css_rgb(
            line.locator("[data-field=severity]").evaluate("e => getComputedStyle(e).color")
        )
        assert rgb == SEVERITY_RGB[finding["severity"]]

    # The planted dead ReLU: its run's top line names the layer, with the route's numbers.
    dead = [f for f in findings if f["run"] == "dead-relu"]
    assert dead and dead[0]["rule"] == "dead_units"
    assert dead[0]["layer"] == truths["dead-relu"].layer
    line = line_of(frame, dead[0])
    assert field(line, "severity").lower() == "warning"
    assert "100%" in field(line, "message")
    assert "Layer statistics" in field(line, "where")
    assert f"step {dead[0]['evidence']['step']}" in field(line, "where")
    # The run's swatch is the sidebar's colour of the run.
    sidebar = frame.locator('[data-testid=run-selector] label[data-run="dead-relu"] .ds-swatch')
    swatch = line.locator("[data-field=run] .ds-swatch")
    assert css_rgb(swatch.evaluate("e => getComputedStyle(e).backgroundColor")) == css_rgb(
        sidebar.get_attribute("data-color")
    )
    # What was checked, below the lines.
    checked = section.locator("[data-testid=findings-checked]").inner_text()
    assert checked.startswith(f"Checked in {len(report['runs'])} runs: Non-finite values")


def test_the_findings_follow_the_sidebars_runs_and_its_refresh(tab, findings_server):
    frame, section = open_findings(tab, findings_server)
    runs = frame.locator("[data-testid=run-selector] label[data-run]")
    expect(runs).not_to_have_count(0)
    # Only dead-relu: its findings alone (no new request needed: the report holds it).
    for k in range(runs.count()):
        if runs.nth(k).get_attribute("data-run") != "dead-relu":
            runs.nth(k).locator("input").uncheck()
    lines = section.locator("[data-testid=finding]")
    report = route(findings_server, "findings", run=["dead-relu"])
    expect(lines).to_have_count(len(report["findings"]))
    assert {lines.nth(k).get_attribute("data-run") for k in range(lines.count())} == {"dead-relu"}
    assert (
        section.locator("[data-testid=findings-checked]")
        .inner_text()
        .startswith("Checked in 1 run: ")
    )
    # The refresh asks again.
    with tab.page.expect_response(lambda r: "/data/plugin/deepscope/findings" in r.url):
        frame.locator("[data-testid=refresh]").click()
    # No run selected: no section.
    frame.locator('[data-testid=run-selector] label[data-run="dead-relu"] input').uncheck()
    expect(section).to_be_hidden()


def first_of_kind(report: dict, kind: str) -> dict:
    found = [f for f in report["findings"] if f["evidence"]["kind"] == kind]
    if not found:
        pytest.fail(f"the planted faults gave no finding whose evidence is {kind}")
    return found[0]


@pytest.mark.parametrize("kind", ["update_ratios", "layer_statistics", "correlation", "spectrum"])
def test_a_finding_opens_its_evidence_at_its_step(tab, findings_server, kind):
    report = route(findings_server, "findings")
    finding = first_of_kind(report, kind)
    run, e = finding["run"], finding["evidence"]
    tag, step = e["tag"], e["step"]
    frame, _ = open_findings(tab, findings_server)
    show_all_lines(frame)
    kind_section = frame.locator(f"[data-testid=section-{kind}]")
    kind_section.wait_for(state="attached", timeout=TIMEOUT_MS)
    if kind == "update_ratios":
        # A tag filter that hides the series: the click clears it.
        frame.locator("[data-testid=tag-filter]").fill("^spectra/")
        expect(kind_section).to_have_count(0)
    else:
        # A collapsed section: the click opens it.
        kind_section.evaluate("e => { e.open = false; }")
    line = line_of(frame, finding)
    line.scroll_into_view_if_needed()
    line.locator("button").click()
    expect(kind_section).to_have_attribute("open", "")

    if kind == "update_ratios":
        assert frame.locator("[data-testid=tag-filter]").input_value() == ""
        card = kind_section.locator(f'.ds-card[data-tag="{tag}"]')
        block = card.locator(f'.ds-runblock[data-run="{run}"]')
        mark = block.locator("[data-testid=evidence-mark]")
        expect(mark).to_have_attribute("data-step", str(step), timeout=TIMEOUT_MS)
        expect(mark).to_have_attribute("data-name", e["name"])
        expect(mark).to_be_in_viewport(timeout=TIMEOUT_MS)
        label = block.locator(f'.ds-ur-row[data-name="{e["name"]}"]')
        expect(label).to_have_class(re.compile(r"\bds-selected\b"))
        expect(card.locator(f'.ds-chip[data-param="{e["name"]}"]')).to_have_count(1)
    elif kind == "layer_statistics":
        card = kind_section.locator(f'[data-testid=ls-card][data-tag="{tag}"]')
        expect(card).to_have_attribute("data-statistic", e["statistic"], timeout=TIMEOUT_MS)
        expect(card).to_have_attribute("data-part", e["part"])
        expect(card.locator("[data-testid=ls-statistic]")).to_have_value(e["statistic"])
        expect(card.locator(".ds-ls-head [data-testid=step-slider]")).to_have_attribute(
            "data-step", str(step), timeout=TIMEOUT_MS
        )
        if card.locator("[data-testid=ls-run] option").count() > 1:
            expect(card.locator("[data-testid=ls-run]")).to_have_value(run)
        block = card.locator(f'.ds-runblock[data-run="{run}"]')
        mark = block.locator("[data-testid=evidence-mark]")
        expect(mark).to_have_attribute("data-step", str(step), timeout=TIMEOUT_MS)
        expect(mark).to_have_attribute("data-name", e["name"])
        expect(mark).to_be_in_viewport(timeout=TIMEOUT_MS)
        # The table at that step, of that run, its row flagged.
        table = card.locator("[data-testid=ls-table]")
        expect(table.locator(".ds-chart-head")).to_contain_text(f"{run}, step {step}")
        expect(table.locator("tr[data-revealed=true]")).to_have_attribute(
            "data-label", e["name"], timeout=TIMEOUT_MS
        )
    elif kind == "correlation":
        card = kind_section.locator(f'[data-testid=correlation-card][data-tag="{tag}"]')
        expect(card.locator("[data-testid=step-slider]")).to_have_attribute(
            "data-step", str(step), timeout=TIMEOUT_MS
        )
        expect(card).to_be_in_viewport(timeout=TIMEOUT_MS)
        expect(card.locator(f'.ds-corr-panel[data-run="{run}"]')).to_be_in_viewport()
    else:
        card = kind_section.locator("[data-testid=spectrum-card]")
        expect(card.locator("[data-testid=step-slider]")).to_have_attribute(
            "data-step", str(step), timeout=TIMEOUT_MS
        )
        expect(card).to_be_in_viewport(timeout=TIMEOUT_MS)
        selected = card.locator("[data-testid=spectrum-table] tr[aria-selected=true]")
        expect(selected).to_have_attribute("data-tag", tag, timeout=TIMEOUT_MS)
        chart = card.locator(f'[data-testid=spectrum-chart][data-tag="{tag}"]')
        frame.wait_for_function(
            "([el, run, step]) => JSON.parse(el.dataset.steps || '{}')[run] === step",
            arg=[chart.element_handle(timeout=TIMEOUT_MS), run, step],
            timeout=TIMEOUT_MS,
        )


def test_without_findings_it_says_what_was_checked(tab, healthy_server):
    report = route(healthy_server, "findings")
    assert report["findings"] == [] and report["runs"] == [HEALTHY]
    titles = {rule["name"]: rule["title"] for rule in report["rules"]}
    frame, section = open_findings(tab, healthy_server)
    none = section.locator("[data-testid=findings-none]")
    expect(none).to_contain_text("No findings in the selected run.")
    checked = none.locator("[data-testid=findings-checked]").inner_text()
    ran = set(report["checked"][HEALTHY])
    assert ran, "no rule had anything to check in the healthy run"
    in_order = [rule["title"] for rule in report["rules"] if rule["name"] in ran]
    assert checked == "Checked: " + ", ".join(in_order) + "."
    unchecked = none.locator("[data-testid=findings-unchecked]").inner_text()
    assert unchecked.startswith("Not checked (none of the series they read): ")
    assert titles["dead_units"] in unchecked and "layer statistics" in unchecked
    assert section.locator("[data-testid=findings-counts]").inner_text() == "✓ none"
    assert section.locator("[data-testid=finding]").count() == 0


def test_screenshot_shows_the_severities_and_run_colours(tab, findings_server, tmp_path):
    report = route(findings_server, "findings")
    frame, section = open_findings(tab, findings_server)
    height = frame.evaluate("document.documentElement.scrollHeight")
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": min(height, 1600) + 80})
    tab.page.wait_for_timeout(300)
    picture = screenshot(section, tmp_path, "findings.png", min_bytes=10_000)
    shown = {f["severity"] for f in report["findings"][:COMPACT] if f["severity"] != "info"}
    for severity in shown:
        badge = section.locator(f".ds-fd-sev-{severity}").first
        rgb = css_rgb(badge.evaluate("e => getComputedStyle(e).backgroundColor"))
        assert picture.count(rgb, tolerance=2) > 100, f"no {severity} badge in the picture"
    runs = {f["run"] for f in report["findings"] if f["severity"] != "info"}
    colors = json.loads(
        frame.evaluate(
            "() => JSON.stringify(Object.fromEntries([...document.querySelectorAll("
            "'[data-testid=run-selector] label[data-run]')].map(l => [l.dataset.run,"
            " l.querySelector('.ds-swatch').dataset.color])))"
        )
    )
    for run in runs:
        assert picture.count(css_rgb(colors[run]), tolerance=8) > 20, f"{run}'s swatch is missing"
