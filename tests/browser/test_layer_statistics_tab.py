"""Layer statistics in the tab, in a real browser and TensorBoard, on real training data.

Two runs train a small network for 40 steps under `deepscope.watch` with the real
measurers (`LayerStats` every 2 steps, covariances every 4; `ParameterNorms` every 2):
an input layer, four numbered blocks (Linear then Tanh; block 3's weights scaled so its
tanh saturates), a gate whose channels 8-15 are planted dead (zero weights, bias -50:
ReLU gives 0 on every sample), and a head. The test records every layer's output and
every gradient itself, with its own hooks, and checks the tab against numpy on them:
the through-depth chart's values (population std of each layer's output), the table's
numbers and its dead and saturated flags, the sort, the collapse of the numbered blocks
and the module-path filter, the gradient norms per parameter, and the covariance
spectrum's eigenvalues and effective dimension of a layer.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/layer_statistics.png.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.tab_page import (
    BEFORE_THE_NEXT_REFRESH_MS,
    TIMEOUT_MS,
    VIEWPORT,
    css_rgb,
    hover_point,
    screenshot,
)
from tests.conftest import SmallCNN, get

sync_api = pytest.importorskip("playwright.sync_api")

RUNS = ("run_a", "run_b")
STEPS = 40
EVERY = 2
COVARIANCE_EVERY = 4
WIDTH = 16
ACTIVATIONS = "layer_statistics/activations"
PARAMETERS = "layer_statistics/parameters"
LAYERS = [
    "inp",
    *(f"blocks.{b}.{leaf}" for b in range(4) for leaf in ("fc", "act")),
    "gate",
    "relu",
    "head",
]
TYPES = ["Linear", *(["Linear", "Tanh"] * 4), "Linear", "ReLU", "Linear"]
DEAD_CHANNELS = range(8, 16)  # of the gate, planted
TOLERANCE = 0.01  # LayerStats' default saturation tolerance (a fraction of tanh's range)
THRESHOLD = 0.10  # the tab's default flag threshold (10%)
# The flags' backgrounds (frontend/src/layer_statistics/table.ts).
DEAD_BACKGROUND = (0xFF, 0xCD, 0xD2)
SATURATED_BACKGROUND = (0xFF, 0xE0, 0xB2)


def _network():
    import torch

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(WIDTH, WIDTH)
            self.act = torch.nn.Tanh()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = torch.nn.Linear(8, WIDTH)
            self.blocks = torch.nn.ModuleList(Block() for _ in range(4))
            self.gate = torch.nn.Linear(WIDTH, WIDTH)
            self.relu = torch.nn.ReLU()
            self.head = torch.nn.Linear(WIDTH, 4)
            with torch.no_grad():
                self.blocks[3].fc.weight.mul_(30.0)  # its tanh saturates
                self.gate.weight[DEAD_CHANNELS.start :] = 0.0
                self.gate.bias[DEAD_CHANNELS.start :] = -50.0  # ReLU: 0 on every sample

        def forward(self, x):
            h = self.inp(x)
            for block in self.blocks:
                h = block.act(block.fc(h))
            return self.head(self.relu(self.gate(h)))

    return Net()


def _writer(logdir: Path):
    import deepscope
    from deepscope.writer.layer_statistics import LayerStatisticsSummaries

    if hasattr(deepscope.SummaryWriter, "add_layer_statistics"):
        return deepscope.SummaryWriter(str(logdir))

    class Writer(LayerStatisticsSummaries, deepscope.SummaryWriter):
        pass

    return Writer(str(logdir))


def train(logdir: Path, seed: int) -> dict:
    """Train one run under watch() with the real measurers; record the reference.

    Returns {"outputs": {step: {layer: float64 [N, C]}}, "grads": {step: {param: ‖g‖₂}},
    "params": [names]} for the measured steps, from the test's own hooks.
    """
    import torch

    import deepscope
    from deepscope.writer.watch_layer_statistics import LayerStats, ParameterNorms

    torch.manual_seed(seed)
    model = _network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    writer = _writer(logdir)
    outputs: dict[int, dict[str, np.ndarray]] = {}
    grads: dict[int, dict[str, float]] = {}
    step = 0
    modules = dict(model.named_modules())

    def recorder(name):
        def hook(module, inputs, output):
            if step % EVERY == 0:
                outputs.setdefault(step, {})[name] = output.detach().double().numpy().copy()

        return hook

    handles = [modules[name].register_forward_hook(recorder(name)) for name in LAYERS]
    monitor = deepscope.watch(
        model,
        optimizer,
        writer,
        measure=[
            LayerStats(every=EVERY, covariance_every=COVARIANCE_EVERY),
            ParameterNorms(every=EVERY),
        ],
    )
    x_all = torch.randn(256, 8)
    y_all = torch.randint(0, 4, (256,))
    for step in range(STEPS):
        idx = torch.arange(32) + (step * 32) % 224
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
        loss.backward()
        if step % EVERY == 0:
            grads[step] = {
                name: float(np.linalg.norm(p.grad.detach().double().numpy().ravel()))
                for name, p in model.named_parameters()
            }
        optimizer.step()
    monitor.close()
    writer.close()
    for handle in handles:
        handle.remove()
    return {"outputs": outputs, "grads": grads, "params": [n for n, _ in model.named_parameters()]}


@pytest.fixture(scope="session")
def layer_statistics_log(tmp_path_factory) -> tuple[Path, dict]:
    logdir = tmp_path_factory.mktemp("layer-statistics-tab")
    reference = {run: train(logdir / run, seed) for seed, run in enumerate(RUNS)}
    return logdir, reference


@pytest.fixture(scope="session")
def layer_statistics_server(layer_statistics_log, tensorboard_server) -> str:
    return tensorboard_server(layer_statistics_log[0], load_fast=False)


# ----------------------------------------------------------------------------- references


def saturated_fraction(a: np.ndarray) -> float:
    """Tanh outputs within TOLERANCE of tanh's range (2) of a bound (±1), over every element."""
    band = TOLERANCE * 2.0
    return float(np.mean((a <= -1.0 + band) | (a >= 1.0 - band)))


def dead_fraction(a: np.ndarray) -> float:
    """Channels (the last dim) zero on every sample of the batch."""
    return float(np.mean(np.all(a == 0.0, axis=0)))


def expected_flags(outputs: dict[str, np.ndarray]) -> dict[str, set[str]]:
    flags = {}
    for name, kind in zip(LAYERS, TYPES):
        a = outputs[name]
        f = set()
        if dead_fraction(a) > THRESHOLD:
            f.add("dead")
        if kind == "Tanh" and saturated_fraction(a) > THRESHOLD:
            f.add("saturated")
        flags[name] = f
    return flags


def close(shown: float, reference: float, digits: int = 3) -> bool:
    """Whether `shown`, `reference` written with `digits` significant digits, matches it."""
    if reference == 0:
        return shown == 0
    unit = 10.0 ** (math.floor(math.log10(abs(reference))) - digits + 1)
    return abs(shown - reference) <= 0.5 * unit * (1 + 1e-6) + abs(reference) * 2**-20


def route(base_url: str, path: str, **params):
    status, body = get(f"{base_url}/data/plugin/deepscope/{path}?{urlencode(params)}")
    assert status == 200, body
    return json.loads(body)


# ----------------------------------------------------------------------------- the page


def card(frame, tag: str):
    return frame.locator(
        f'[data-testid=section-layer_statistics] [data-testid=ls-card][data-tag="{tag}"]'
    )


def open_card(tab, server: str, tag: str = ACTIVATIONS):
    frame = tab.open(server)
    c = card(frame, tag)
    c.wait_for(timeout=TIMEOUT_MS)
    c.scroll_into_view_if_needed()
    # Drawn: the through-depth chart of every run, and the table's rows.
    c.locator(f"[data-testid=ls-depth][data-series='{len(RUNS) * 6}']").wait_for(timeout=TIMEOUT_MS)
    c.locator("[data-testid=ls-row]").first.wait_for(timeout=TIMEOUT_MS)
    return frame, c


def path_points(path) -> list[tuple[float, float]]:
    """The vertices of a drawn line (d3's "M x,y L x,y ..." path), in its SVG group's px."""
    d = path.get_attribute("d")
    return [
        (float(x), float(y))
        for x, y in re.findall(r"(-?[\d.]+(?:e-?\d+)?),(-?[\d.]+(?:e-?\d+)?)", d)
    ]


def hover_chart_point(tab, chart, point: tuple[float, float]) -> dict[str, str]:
    """Hover a point of a chart's plot group (translated by the margins); the tooltip's fields.

    The mouse leaves first, so the tooltip that shows is this point's; `hover_point`
    re-reads the svg's box while it does not show (a card still growing moves the chart).
    """
    svg = chart.locator("svg").first
    g = chart.locator("svg > g").first
    tx, ty = (float(v) for v in re.findall(r"[-\d.]+", g.get_attribute("transform"))[:2])
    chart.scroll_into_view_if_needed()
    box = svg.bounding_box()
    tab.page.mouse.move(1, 1)
    return hover_point(tab, svg, (tx + point[0]) / box["width"], (ty + point[1]) / box["height"])


def rows_of(c) -> list[dict]:
    """The table's rows as shown: key, label, flags, members, and per column its value and
    text (one read of the page: a read per cell took seconds on a long table)."""
    rows = c.locator("[data-testid=ls-row]").evaluate_all(
        """rows => rows.map(row => ({
            key: row.getAttribute("data-key"),
            label: row.getAttribute("data-label"),
            flags: row.getAttribute("data-flags"),
            members: row.getAttribute("data-members"),
            cells: [...row.querySelectorAll("td[data-column]")].map(td => [
                td.getAttribute("data-column"), td.getAttribute("data-value"), td.innerText,
            ]),
        }))"""
    )
    return [
        {
            "key": r["key"],
            "label": r["label"],
            "flags": set(filter(None, (r["flags"] or "").split())),
            "members": int(r["members"]),
            "values": {column: float(value) for column, value, _ in r["cells"]},
            "text": {column: text for column, _, text in r["cells"]},
        }
        for r in rows
    ]


def depth_axis_labels(chart) -> list[dict]:
    """The through-depth chart's x tick labels: layer index, text, hover title, page box."""
    ticks = chart.locator("g.ds-axis[data-labels] g.tick")
    out = []
    for k in range(ticks.count()):
        tick = ticks.nth(k)
        text = tick.locator("text")
        out.append(
            {
                "index": int(float(tick.get_attribute("data-value"))),
                "text": text.evaluate("e => e.firstChild.textContent"),
                "title": text.locator("title").text_content(),
                "box": text.bounding_box(),
            }
        )
    return out


def assert_names_label_the_depth_axis(chart, names: list[str]) -> list[dict]:
    """The x ticks are layer names (or the numbered block a block's first layer starts, such
    as "blocks.3"), at their layers' indices, the full name in the hover title, the first and
    the last layer labelled, and no two labels overlapping."""
    labels = depth_axis_labels(chart)
    assert labels, "no layer names on the x axis"
    assert int(chart.locator("g.ds-axis[data-labels]").get_attribute("data-labels")) == len(labels)
    indices = [label["index"] for label in labels]
    assert indices == sorted(set(indices)) and indices[0] == 0 and indices[-1] == len(names) - 1
    for label in labels:
        name = names[label["index"]]
        text = label["text"]
        if text.startswith("…"):  # a long name keeps its end
            assert name.endswith(text[1:]), (name, text)
        else:
            assert name == text or name.startswith(text + "."), (name, text)
        assert name in label["title"], (name, label["title"])
    boxes = sorted((label["box"] for label in labels), key=lambda b: b["x"])
    for left, right in zip(boxes, boxes[1:]):
        assert left["x"] + left["width"] <= right["x"] + 0.5, (left, right)
    svg = chart.locator("svg").first.bounding_box()
    for box in boxes:  # inside the chart, not cut off at its edges
        assert (
            svg["x"] - 0.5 <= box["x"] and box["x"] + box["width"] <= svg["x"] + svg["width"] + 0.5
        )
    return labels


# ----------------------------------------------------------------------------- tests


def test_routes_serve_what_the_measurers_logged(layer_statistics_server, layer_statistics_log):
    """The data the tab draws: every layer in forward order with its class, every measured step."""
    table = route(
        layer_statistics_server, "layer_statistics", run=RUNS[0], tag=ACTIVATIONS, statistic="std"
    )
    assert table["names"] == LAYERS
    assert table["types"] == TYPES
    assert table["steps"] == list(range(0, STEPS, EVERY))
    reference = layer_statistics_log[1][RUNS[0]]["outputs"]
    for i, step in enumerate(table["steps"]):
        for j, name in enumerate(LAYERS):
            want = reference[step][name].std()
            assert abs(table["values"][i][j] - want) <= want * 1e-5 + 1e-12, (step, name)


def test_heatmap_statistic_selector_and_through_depth(
    tab, layer_statistics_server, layer_statistics_log
):
    reference = layer_statistics_log[1]
    frame, c = open_card(tab, layer_statistics_server)
    # The card opens on std, with every statistic of the series to choose from.
    picker = c.locator("[data-testid=ls-statistic]")
    assert picker.input_value() == "std"
    served = route(layer_statistics_server, "layer_statistics", run=RUNS[0], tag=ACTIVATIONS)
    options = picker.locator("option")
    assert [options.nth(k).get_attribute("value") for k in range(options.count())] == served[
        "statistics"
    ]
    # A heatmap per run: every layer and step.
    for run in RUNS:
        canvas = c.locator(f'[data-testid=heatmap][data-run="{run}"]')
        canvas.and_(frame.locator("[data-drawn=true]")).wait_for(timeout=TIMEOUT_MS)
        assert canvas.get_attribute("data-steps") == str(STEPS // EVERY)
        assert canvas.get_attribute("data-params") == str(len(LAYERS))

    # Through depth at the newest step: a bold line per run in the run's colour, and five
    # earlier steps faint behind each.
    last = STEPS - EVERY
    chart = c.locator("[data-testid=ls-depth]")
    assert json.loads(chart.get_attribute("data-steps")) == {run: last for run in RUNS}
    assert chart.get_attribute("data-layers") == str(len(LAYERS))
    assert "std (output units) (log scale)" in chart.locator("svg").text_content()
    assert "layer (model order)" in chart.locator("svg").text_content()
    assert_names_label_the_depth_axis(chart, LAYERS)
    colours = {}
    for run in RUNS:
        swatch = frame.locator(f'.ds-run[data-run="{run}"] .ds-swatch')
        colours[run] = css_rgb(swatch.get_attribute("data-color"))
        bold = chart.locator(f'path.ds-xy-line[data-run="{run}"][data-selected=true]')
        assert bold.count() == 1 and bold.get_attribute("data-step") == str(last)
        assert css_rgb(bold.get_attribute("stroke")) == colours[run]
        faint = chart.locator(f'path.ds-xy-line[data-run="{run}"][data-faint=true]')
        assert faint.count() == 5
        steps = sorted(int(faint.nth(k).get_attribute("data-step")) for k in range(faint.count()))
        assert steps[0] == 0 and steps[-1] < last
        assert all(float(faint.nth(k).get_attribute("stroke-opacity")) < 0.5 for k in range(5))

    # Hovering each layer's point gives, for every run, numpy's std of what the layer output
    # at that step.
    bold = chart.locator(f'path.ds-xy-line[data-run="{RUNS[0]}"][data-selected=true]')
    points = path_points(bold)
    assert len(points) == len(LAYERS)
    xs = [p[0] for p in points]
    assert xs == sorted(xs)
    for k, name in enumerate(LAYERS):
        fields = hover_chart_point(tab, chart, points[k])
        assert fields["layer"] == name and fields["index"] == str(k)
        for run in RUNS:
            want = reference[run]["outputs"][last][name].std()
            assert close(float(fields[f"value:{run}"]), want), (run, name, fields, want)
    tab.page.mouse.move(1, 1)

    # Another statistic: the depth chart redraws it on its own scale.
    picker.select_option("dead_fraction")
    chart.locator("text", has_text="dead channels (fraction)").first.wait_for(timeout=TIMEOUT_MS)
    assert "log scale" not in chart.locator("svg").text_content()
    # Its heatmap, scrolled back to (the hovers scrolled it away, and a run block loads only
    # near the viewport), is drawn now, not at the tab's next refresh (RELOAD_MS = 30 s):
    # the wait is shorter than that period.
    blocks = c.locator('[data-statistic="dead_fraction"] .ds-runblock')
    blocks.first.wait_for(timeout=TIMEOUT_MS)
    blocks.first.scroll_into_view_if_needed()
    heat = c.locator('[data-statistic="dead_fraction"] [data-testid=heatmap][data-drawn=true]')
    heat.first.wait_for(timeout=BEFORE_THE_NEXT_REFRESH_MS)


def test_table_flags_dead_and_saturated_layers(tab, layer_statistics_server, layer_statistics_log):
    reference = layer_statistics_log[1][RUNS[0]]["outputs"]
    last = STEPS - EVERY
    frame, c = open_card(tab, layer_statistics_server)
    table = c.locator("[data-testid=ls-table]")
    rows = rows_of(c)
    assert [r["key"] for r in rows] == LAYERS
    flags = expected_flags(reference[last])
    assert flags["relu"] == {"dead"} and "saturated" in flags["blocks.3.act"]  # what was planted
    for r in rows:
        a = reference[last][r["key"]]
        assert r["flags"] == flags[r["key"]], r["key"]
        assert abs(r["values"]["std"] - a.std()) <= a.std() * 1e-5
        assert abs(r["values"]["mean"] - a.mean()) <= np.abs(a).mean() * 1e-5 + 1e-9
        assert r["values"]["dead_fraction"] == pytest.approx(dead_fraction(a), abs=1e-7)
        if TYPES[LAYERS.index(r["key"])] == "Tanh":
            assert r["values"]["saturated_fraction"] == pytest.approx(
                saturated_fraction(a), abs=1e-6
            )
        else:
            assert math.isnan(r["values"]["saturated_fraction"])
            assert r["text"]["saturated_fraction"] == "–"
    relu = next(r for r in rows if r["key"] == "relu")
    assert relu["text"]["dead_fraction"] == "50.0% (8/16)"  # 8 of 16 channels, planted
    units = c.locator("[data-testid=ls-units]").inner_text()
    assert (
        "mean, std, RMS, max |a|: output units" in units
        and "dead: % of channels" in units
        and "delve saturation: % of eigendirections" in units
    )
    assert table.get_attribute("data-flagged") == str(sum(1 for f in flags.values() if f))
    cell = table.locator('[data-key="relu"] td[data-column=dead_fraction]')
    assert css_rgb(cell.evaluate("e => getComputedStyle(e).backgroundColor")) == DEAD_BACKGROUND
    sat = table.locator('[data-key="blocks.3.act"] td[data-column=saturated_fraction]')
    assert css_rgb(sat.evaluate("e => getComputedStyle(e).backgroundColor")) == SATURATED_BACKGROUND
    assert table.locator('[data-key="relu"] [data-flag=dead]').inner_text() == "dead"
    # The through-depth chart rings the same layers on the table's run's line.
    depth = c.locator("[data-testid=ls-depth]")
    points = path_points(
        depth.locator(f'path.ds-xy-line[data-run="{RUNS[0]}"][data-selected=true]')
    )
    for kind in ("dead", "saturated"):
        marks = depth.locator(f"circle.ds-xy-mark[data-mark={kind}]")
        want = [k for k, n in enumerate(LAYERS) if kind in flags[n]]
        got = sorted(float(marks.nth(m).get_attribute("cx")) for m in range(marks.count()))
        assert got == pytest.approx([points[k][0] for k in want], abs=0.01), kind

    # Sorted by std, largest first: numpy's order.
    table.locator("th[data-column=std]").click()
    order = sorted(LAYERS, key=lambda n: (-reference[last][n].std(), LAYERS.index(n)))
    assert [r["key"] for r in rows_of(c)] == order
    table.locator("th[data-column=std]").click()  # again: smallest first
    assert [r["key"] for r in rows_of(c)] == order[::-1]

    # Flagged only, then the numbered blocks collapsed: one row per leaf of the blocks.
    c.locator("[data-testid=ls-flagged-only]").check()
    assert {r["key"] for r in rows_of(c)} == {n for n, f in flags.items() if f}
    c.locator("[data-testid=ls-flagged-only]").uncheck()
    table.locator("th[data-column=std]").click()  # back to descending
    c.locator("[data-testid=ls-collapse]").check()
    c.locator("[data-testid=ls-summary]").select_option("max")
    collapsed = rows_of(c)
    by_label = {r["label"]: r for r in collapsed}
    assert set(by_label) == {"inp", "blocks.0–3.fc", "blocks.0–3.act", "gate", "relu", "head"}
    acts = by_label["blocks.0–3.act"]
    assert acts["members"] == 4
    block_acts = [reference[last][f"blocks.{b}.act"] for b in range(4)]
    assert abs(acts["values"]["std"] - max(a.std() for a in block_acts)) <= 1e-5
    saturated = sum(saturated_fraction(a) > THRESHOLD for a in block_acts)
    badge = table.locator('[data-key^="group:blocks.*.act"] [data-flag=saturated]')
    assert badge.inner_text() == f"saturated {saturated}/4"
    # Sorted by std, descending, groups by their max.
    stds = [r["values"]["std"] for r in collapsed]
    assert stds == sorted(stds, reverse=True)

    # The module-path filter narrows the table and the through-depth chart.
    c.locator("[data-testid=ls-collapse]").uncheck()
    c.locator("[data-testid=ls-filter]").fill("blocks")
    c.locator("[data-testid=ls-depth][data-layers='8']").wait_for(timeout=TIMEOUT_MS)
    keys = [r["key"] for r in rows_of(c)]
    assert sorted(keys) == sorted(n for n in LAYERS if n.startswith("blocks."))
    assert "8 of 12 layers" in c.locator("[data-testid=ls-count]").inner_text()


def test_parameters_gradient_norms_on_a_log_axis(
    tab, layer_statistics_server, layer_statistics_log
):
    reference = layer_statistics_log[1]
    params = reference[RUNS[0]]["params"]
    frame = tab.open(layer_statistics_server)
    c = card(frame, PARAMETERS)
    c.wait_for(timeout=TIMEOUT_MS)
    c.scroll_into_view_if_needed()
    # The picker is filled once the card's first grid arrives (a fetch after it attaches).
    expect(c.locator("[data-testid=ls-statistic]")).to_have_value("grad_norm", timeout=TIMEOUT_MS)
    chart = c.locator(f"[data-testid=ls-grad-norms][data-series='{len(params)}']")
    chart.wait_for(timeout=TIMEOUT_MS)
    text = chart.locator("svg").text_content()
    assert "gradient norm ‖g‖ (L2 norm) (log scale)" in text and "step" in text
    # A line per parameter with a point per measured step; hovering one gives its ‖g‖.
    steps = list(range(0, STEPS, EVERY))
    name = "blocks.3.fc.weight"
    line = chart.locator(f'path.ds-xy-line[data-name="{name}"]')
    points = path_points(line)
    assert len(points) == len(steps)
    k = len(steps) // 2
    fields = hover_chart_point(tab, chart, points[k])
    assert fields["name"] == name and fields["step"] == str(steps[k])
    assert close(float(fields["value"]), reference[RUNS[0]]["grads"][steps[k]][name])
    tab.page.mouse.move(1, 1)
    # The table at the newest step: every parameter's gradient norm against numpy's.
    c.locator("[data-testid=ls-row]").first.wait_for(timeout=TIMEOUT_MS)
    rows = rows_of(c)
    assert [r["key"] for r in rows] == params
    last = steps[-1]
    for r in rows:
        want = reference[RUNS[0]]["grads"][last][r["key"]]
        assert abs(r["values"]["grad_norm"] - want) <= want * 1e-5 + 1e-12, r["key"]


def test_covariance_spectrum_of_a_layer(tab, layer_statistics_server, layer_statistics_log):
    reference = layer_statistics_log[1]
    frame, c = open_card(tab, layer_statistics_server)
    panel = c.locator("[data-testid=ls-spectrum]")
    panel.scroll_into_view_if_needed()
    chart = panel.locator("[data-testid=ls-eigenvalues][data-drawn=true]")
    chart.wait_for(timeout=TIMEOUT_MS)
    # It opens on the deepest layer with a covariance; choose another.
    assert panel.locator("[data-testid=ls-spectrum-layer]").input_value() == "head"
    panel.locator("[data-testid=ls-spectrum-layer]").select_option("blocks.1.act")
    # The newest covariance step's eigenvalues, against numpy's of the recorded output.
    last = (STEPS - EVERY) // COVARIANCE_EVERY * COVARIANCE_EVERY
    # Both runs drawn (each run's line is drawn as it answers; the second redraws the chart
    # on its own y-range, moving the points).
    for run in RUNS:
        panel.locator(
            "[data-testid=ls-spectrum-facts]", has_text=f"{run}: step {last}: 16 eigenvalues"
        ).wait_for(timeout=TIMEOUT_MS)
    a = reference[RUNS[0]]["outputs"][last]["blocks.1.act"]
    centred = a - a.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(centred.T @ centred / len(a))[::-1].clip(min=0)
    bold = chart.locator(f'path.ds-xy-line[data-run="{RUNS[0]}"][data-selected=true]')
    assert bold.get_attribute("data-step") == str(last)
    points = path_points(bold)
    assert len(points) == np.count_nonzero(eigenvalues > 0)
    fields = hover_chart_point(tab, chart, points[0])
    assert fields["rank"] == "1" and fields["step"] == str(last)
    assert close(float(fields["value"]), eigenvalues[0])
    tab.page.mouse.move(1, 1)
    assert chart.locator("path.ds-xy-line[data-faint=true]").count() >= len(RUNS)
    facts = panel.locator("[data-testid=ls-spectrum-facts]").inner_text()
    participation = eigenvalues.sum() ** 2 / (eigenvalues**2).sum()
    shown = re.search(
        rf"{RUNS[0]}: step {last}: 16 eigenvalues, effective dimension ([\d.]+)", facts
    )
    assert shown and close(float(shown.group(1)), participation), facts
    # Effective dimension and saturation over the covariance steps, a line per run.
    dims = panel.locator("[data-testid=ls-dimension]")
    assert "effective dimension, rank (channels)" in dims.locator("svg").text_content()
    for run in RUNS:
        line = dims.locator(f'path.ds-xy-line[data-run="{run}"][data-metric=effective_dimension]')
        assert len(path_points(line)) == len(range(0, STEPS, COVARIANCE_EVERY))
    sat = panel.locator("[data-testid=ls-saturation]")
    assert "saturation (fraction of eigendirections)" in sat.locator("svg").text_content()


def test_step_slider_and_screenshot(tab, layer_statistics_server, layer_statistics_log, tmp_path):
    """One step back (to a covariance step): the depth chart and the table follow it, and the
    table's effective dimensions are numpy's participation ratios there; then the picture."""
    reference = layer_statistics_log[1][RUNS[0]]["outputs"]
    frame, c = open_card(tab, layer_statistics_server)
    c.locator("[data-testid=ls-eigenvalues][data-drawn=true]").wait_for(timeout=TIMEOUT_MS)
    slider = c.locator("[data-testid=step-slider] input")
    slider.focus()
    tab.page.keyboard.press("ArrowLeft")
    slider.blur()  # no focus ring in the picture
    step = STEPS - 2 * EVERY
    assert step % COVARIANCE_EVERY == 0
    c.locator("[data-testid=ls-table] .ds-muted", has_text=f"step {step}").first.wait_for(
        timeout=TIMEOUT_MS
    )
    depth = c.locator("[data-testid=ls-depth]")
    assert json.loads(depth.get_attribute("data-steps")) == {run: step for run in RUNS}
    for r in rows_of(c):
        a = reference[step][r["key"]]
        centred = a - a.mean(axis=0)
        eigenvalues = np.linalg.eigvalsh(centred.T @ centred / len(a)).clip(min=0)
        want = eigenvalues.sum() ** 2 / (eigenvalues**2).sum()
        assert abs(r["values"]["effective_dimension"] - want) <= want * 1e-5, r["key"]
    height = frame.evaluate("document.documentElement.scrollHeight")
    tab.page.set_viewport_size({"width": VIEWPORT["width"], "height": height + 80})
    tab.page.wait_for_timeout(500)  # the redraw after the resize
    c.locator("[data-testid=ls-depth][data-drawn=true]").wait_for(timeout=TIMEOUT_MS)
    picture = screenshot(c, tmp_path, "layer_statistics.png", min_bytes=20_000)
    # The flags' colours and both runs' through-depth lines are in the picture.
    assert picture.count(DEAD_BACKGROUND, tolerance=2) > 100
    assert picture.count(SATURATED_BACKGROUND, tolerance=2) > 100
    chart = c.locator("[data-testid=ls-depth]")
    for run in RUNS:
        bold = chart.locator(f'path.ds-xy-line[data-run="{run}"][data-selected=true]')
        assert picture.count(css_rgb(bold.get_attribute("stroke")), tolerance=8) > 30, run


# ----------------------------------------------------------------------------- 200 layers

BLOCKS = 18
SCALE_TAG = "scale/activations"
BLOCK_LEAVES = [
    ("ln1", "LayerNorm"),
    ("attn.q", "Linear"),
    ("attn.k", "Linear"),
    ("attn.softmax", "Softmax"),  # forward order: softmax(q kᵀ) before v
    ("attn.v", "Linear"),
    ("attn.proj", "Linear"),
    ("ln2", "LayerNorm"),
    ("mlp.fc1", "Linear"),
    ("mlp.act", "GELU"),
    ("mlp.fc2", "Linear"),
    ("drop", "Dropout"),
]
SCALE_LAYERS = [
    "embed",
    *(f"blocks.{b}.{leaf}" for b in range(BLOCKS) for leaf, _ in BLOCK_LEAVES),
    "ln_f",
    "head",
]


def _transformer():
    """A small transformer's module tree: 18 blocks of 11 leaves, 201 module outputs."""
    import torch

    nn = torch.nn
    dim = 8

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))
            self.softmax = nn.Softmax(dim=-1)

        def forward(self, x):
            weights = self.softmax(self.q(x) @ self.k(x).transpose(1, 2) / dim**0.5)
            return self.proj(weights @ self.v(x))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.attn = Attention()
            self.mlp = nn.Sequential()
            self.mlp.add_module("fc1", nn.Linear(dim, 2 * dim))
            self.mlp.add_module("act", nn.GELU())
            self.mlp.add_module("fc2", nn.Linear(2 * dim, dim))
            self.drop = nn.Dropout(0.0)

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.drop(self.mlp(self.ln2(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(16, dim)
            self.blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
            self.ln_f = nn.LayerNorm(dim)
            self.head = nn.Linear(dim, 16)

        def forward(self, ids):
            h = self.embed(ids)
            for block in self.blocks:
                h = block(h)
            return self.head(self.ln_f(h))

    return Net()


@pytest.fixture(scope="session")
def scale_server(tmp_path_factory, tensorboard_server) -> str:
    """One run of the transformer trained 6 steps, every step measured."""
    import torch

    import deepscope
    from deepscope.writer.watch_layer_statistics import LayerStats

    logdir = tmp_path_factory.mktemp("layer-statistics-200")
    torch.manual_seed(0)
    model = _transformer()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    writer = _writer(logdir / "transformer")
    monitor = deepscope.watch(
        model, optimizer, writer, measure=[LayerStats(every=1, covariance_every=2, tag=SCALE_TAG)]
    )
    ids = torch.randint(0, 16, (4, 12))
    for _ in range(6):
        optimizer.zero_grad()
        logits = model(ids)
        torch.nn.functional.cross_entropy(logits.reshape(-1, 16), ids.reshape(-1)).backward()
        optimizer.step()
    monitor.close()
    writer.close()
    return tensorboard_server(logdir, load_fast=True)


def test_200_layers_collapse_sort_and_filter(tab, scale_server):
    """A 201-output transformer: the table opens with the 18 blocks collapsed (one row per
    leaf), sorts groups by their summaries, and the sidebar's filter narrows every view."""
    served = route(scale_server, "layer_statistics_step", run="transformer", tag=SCALE_TAG)
    assert served["layers"] == SCALE_LAYERS
    frame = tab.open(scale_server)
    c = card(frame, SCALE_TAG)
    c.wait_for(timeout=TIMEOUT_MS)
    c.locator("[data-testid=ls-row]").first.wait_for(timeout=TIMEOUT_MS)
    c.locator(f"[data-testid=ls-depth][data-layers='{len(SCALE_LAYERS)}']").wait_for(
        timeout=TIMEOUT_MS
    )
    assert c.locator("[data-testid=ls-collapse]").is_checked()
    # Through depth at 201 layers: the axis is labelled with names, thinned: never
    # overlapping, the blocks' starts among them ("blocks.N" at blocks.N.ln1).
    depth = c.locator("[data-testid=ls-depth]")
    depth.scroll_into_view_if_needed()
    axis = assert_names_label_the_depth_axis(depth, SCALE_LAYERS)
    assert 5 <= len(axis) < len(SCALE_LAYERS)
    starts = [a for a in axis if re.fullmatch(r"blocks\.\d+", a["text"])]
    assert len(starts) >= 4, [a["text"] for a in axis]
    for a in starts:
        assert SCALE_LAYERS[a["index"]] == f"{a['text']}.ln1"  # the block's first layer
        assert f"layers {a['index']}–{a['index'] + len(BLOCK_LEAVES) - 1}" in a["title"]
    rows = rows_of(c)
    labels = [r["label"] for r in rows]
    assert labels == ["embed", *(f"blocks.0–17.{leaf}" for leaf, _ in BLOCK_LEAVES), "ln_f", "head"]
    assert all(r["members"] == BLOCKS for r in rows[1:-2])
    assert "201 of 201 layers in 14 rows" in c.locator("[data-testid=ls-count]").inner_text()
    # The heatmap groups its rows by module path too (far fewer rows than layers); it is
    # drawn by its own pass, apart from the depth chart and the table.
    c.locator("[data-testid=heatmap][data-drawn=true]").first.wait_for(timeout=TIMEOUT_MS)
    heat_rows = c.locator(".ds-ur-row").count()
    assert 0 < heat_rows < 40

    # Sorted by max |a|, largest first: each group by the median of its 18 blocks (numpy's).
    columns = served["activation_statistics"]
    values = np.array(
        [[math.nan if v == "NaN" else float(v) for v in row] for row in served["activations"]]
    )
    max_abs = values[:, columns.index("max_abs")]
    medians = {"embed": max_abs[0], "ln_f": max_abs[-2], "head": max_abs[-1]}
    for leaf, _ in BLOCK_LEAVES:
        medians[f"blocks.0–17.{leaf}"] = float(
            np.median([max_abs[SCALE_LAYERS.index(f"blocks.{b}.{leaf}")] for b in range(BLOCKS)])
        )
    c.locator("[data-testid=ls-table] th[data-column=max_abs]").click()
    rows = rows_of(c)
    assert [r["label"] for r in rows] == sorted(
        medians, key=lambda n: (-medians[n], labels.index(n))
    )
    for r in rows:
        assert abs(r["values"]["max_abs"] - medians[r["label"]]) <= medians[r["label"]] * 2**-20

    # The sidebar's tag filter (not matching the tag) narrows the table, the depth chart and
    # the heatmap to the layers it matches: 18 rows, not collapsed (fewer than 40).
    frame.locator("#ds-tag-filter").fill(r"mlp\.fc1")
    c.locator("[data-testid=ls-depth][data-layers='18']").wait_for(timeout=TIMEOUT_MS)
    rows = rows_of(c)
    assert {r["key"] for r in rows} == {f"blocks.{b}.mlp.fc1" for b in range(BLOCKS)}
    assert "18 of 201 layers" in c.locator("[data-testid=ls-count]").inner_text()


# ----------------------------------------------------------------------------- a damaged step

DAMAGED_TAG = "damaged/activations"
DAMAGED_LAYERS = ["conv", "relu", "fc"]


def _rows(step: int):
    """A good step's activation rows: std of layer j is (j + 1) · (1 + step / 10)."""
    from deepscope.writer.layer_statistics import ActivationRows

    values = np.zeros((3, 3))
    values[:, 0] = [0.1, 0.2, 0.3]  # mean
    values[:, 1] = [(j + 1) * (1 + step / 10) for j in range(3)]  # std
    values[:, 2] = [0.0, 0.25, 0.0]  # dead_fraction
    return ActivationRows(
        names=DAMAGED_LAYERS,
        values=values,
        statistics=("mean", "std", "dead_fraction"),
        types=("Conv2d", "ReLU", "Linear"),
        channels=[4, 4, 2],
        dead_channels=[0, 1, 0],
    )


@pytest.fixture(scope="session")
def damaged_server(tmp_path_factory, tensorboard_server) -> str:
    """Steps 0, 10, 20 good, step 30 with more dead channels than channels; the fast loader."""
    from deepscope.proto import arrays
    from deepscope.proto import deepscope_pb2 as pb
    from deepscope.writer.layer_statistics import layer_statistics_pb

    logdir = tmp_path_factory.mktemp("layer-statistics-damaged")
    writer = _writer(logdir / "run")
    for step in (0, 10, 20):
        writer.add_layer_statistics(DAMAGED_TAG, activations=_rows(step), global_step=step)
    summary = layer_statistics_pb(DAMAGED_TAG, _rows(30))
    value = summary.value[0]
    payload = pb.LayerStatisticsStep.FromString(value.tensor.string_val[0])
    payload.dead_channels.CopyFrom(arrays.encode_array(np.asarray([5, 1, 0], np.int64)))
    value.tensor.string_val[0] = payload.SerializeToString()
    writer.file_writer.add_summary(summary, 30, 1000.0)
    writer.close()
    return tensorboard_server(logdir, load_fast=True)


def test_a_damaged_step_is_its_error_the_rest_is_drawn(tab, damaged_server):
    frame = tab.open(damaged_server)
    c = card(frame, DAMAGED_TAG)
    c.wait_for(timeout=TIMEOUT_MS)
    # The table and the charts have the good steps; the damaged one is named.
    depth = c.locator("[data-testid=ls-depth][data-drawn=true]")
    depth.wait_for(timeout=TIMEOUT_MS)
    assert json.loads(depth.get_attribute("data-steps")) == {"run": 20}
    c.locator("[data-testid=ls-row]").first.wait_for(timeout=TIMEOUT_MS)
    rows = rows_of(c)
    assert [r["key"] for r in rows] == DAMAGED_LAYERS
    assert [r["values"]["std"] for r in rows] == pytest.approx([3.0, 6.0, 9.0], rel=2**-20)
    # The heatmap's run says which step was left out and why (the route's warning).
    warning = c.locator(".ds-warn", has_text="30")
    warning.first.wait_for(timeout=TIMEOUT_MS)
    served = route(damaged_server, "layer_statistics", run="run", tag=DAMAGED_TAG, statistic="std")
    assert served["steps"] == [0, 10, 20]
    assert [warning.nth(k).inner_text() for k in range(warning.count())] == served["warnings"]


# ----------------------------------------------------------------------------- no gradient, ‖W‖ = 0

AUX_STEPS = 2
# tests/conftest.py's SmallCNN uses its `aux` head only when asked: on even steps here, so at
# step 1 aux.weight and aux.bias have no gradient. fc.bias starts at exactly zero (a fresh
# bias): at step 0 its ‖g‖/‖W‖ is undefined.
AUX_PARAMS = ["aux.weight", "aux.bias"]
ZERO_BACKGROUND = (0xB3, 0xC7, 0xD6)  # update ratios' "‖W‖ = 0" colour (ZERO_WEIGHT_COLOR)


@pytest.fixture(scope="session")
def aux_log(tmp_path_factory) -> tuple[Path, dict]:
    """SmallCNN trained 2 steps under watch() with ParameterNorms every step; the reference
    ‖g‖₂ and ‖W‖₂ (float64, None without a gradient) taken before each optimizer step."""
    import torch

    import deepscope
    from deepscope.writer.watch_layer_statistics import ParameterNorms

    logdir = tmp_path_factory.mktemp("layer-statistics-aux")
    torch.manual_seed(0)
    model = SmallCNN.build()
    with torch.no_grad():
        model.fc.bias.zero_()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    writer = _writer(logdir / "cnn")
    reference: dict[int, dict[str, tuple[float | None, float]]] = {}
    x_all = torch.randn(64, 1, 8, 8)
    y_all = torch.randint(0, 10, (64,))
    with deepscope.watch(model, optimizer, writer, measure=[ParameterNorms(every=1)]):
        for step in range(AUX_STEPS):
            idx = torch.arange(16) + 16 * step
            optimizer.zero_grad(set_to_none=True)
            logits = model(x_all[idx], use_aux=step % 2 == 0)
            torch.nn.functional.cross_entropy(logits, y_all[idx]).backward()
            reference[step] = {
                name: (
                    None if p.grad is None else float(np.linalg.norm(p.grad.double().numpy())),
                    float(np.linalg.norm(p.detach().double().numpy())),
                )
                for name, p in model.named_parameters()
            }
            optimizer.step()
    writer.close()
    return logdir, reference


@pytest.fixture(scope="session")
def aux_server(aux_log, tensorboard_server) -> str:
    return tensorboard_server(aux_log[0], load_fast=False)


def test_no_gradient_and_a_zero_weight_are_said_not_counted_non_finite(tab, aux_server, aux_log):
    """At step 1 aux's parameters had no gradient: the table says "no gradient" (not 0, not
    non-finite); at step 0 fc.bias was exactly zero: its ‖g‖/‖W‖ reads "‖W‖ = 0: ratio
    undefined" in the neutral colour, and neither the table, the heatmap nor the depth chart
    counts it as non-finite. Every other number is numpy's."""
    reference = aux_log[1]
    assert [n for n, (g, _) in reference[1].items() if g is None] == AUX_PARAMS
    assert reference[0]["fc.bias"][1] == 0.0 and reference[0]["fc.bias"][0] > 0
    frame = tab.open(aux_server)
    c = card(frame, PARAMETERS)
    c.wait_for(timeout=TIMEOUT_MS)
    c.scroll_into_view_if_needed()
    table = c.locator("[data-testid=ls-table]")
    table.locator(".ds-muted", has_text="step 1").first.wait_for(timeout=TIMEOUT_MS)
    c.locator("[data-testid=ls-row]").first.wait_for(timeout=TIMEOUT_MS)

    # Step 1 (the newest): aux had no gradient.
    rows = {r["key"]: r for r in rows_of(c)}
    assert list(rows) == list(reference[1])
    for name, (grad, weight) in reference[1].items():
        r = rows[name]
        assert abs(r["values"]["weight_norm"] - weight) <= weight * 1e-5, name
        for column in ("grad_norm", "grad_to_weight"):
            cell = table.locator(f'[data-key="{name}"] td[data-column={column}]')
            if grad is None:
                assert r["text"][column] == "no gradient", (name, r["text"])
                assert cell.get_attribute("data-state") == "no-gradient"
            else:
                want = grad if column == "grad_norm" else grad / weight
                assert abs(r["values"][column] - want) <= want * 1e-5, (name, column)
                assert cell.get_attribute("data-state") == "value"
    assert table.get_attribute("data-without-gradient") == "2"
    assert table.get_attribute("data-non-finite") == "0"
    assert "2 without a gradient" in c.locator("[data-testid=ls-count]").inner_text()

    # Step 0: fc.bias was exactly zero, its ratio undefined (the route logged +Inf).
    slider = c.locator("[data-testid=step-slider] input")
    slider.focus()
    tab.page.keyboard.press("ArrowLeft")
    table.locator(".ds-muted", has_text="step 0").first.wait_for(timeout=TIMEOUT_MS)
    table.locator('[data-key="fc.bias"] td[data-state=zero-weight]').wait_for(timeout=TIMEOUT_MS)
    rows = {r["key"]: r for r in rows_of(c)}
    for name, (grad, weight) in reference[0].items():
        r = rows[name]
        assert abs(r["values"]["grad_norm"] - grad) <= grad * 1e-5, name
        if name == "fc.bias":
            assert r["values"]["weight_norm"] == 0.0
            assert r["text"]["grad_to_weight"] == "‖W‖ = 0: ratio undefined"
        else:
            assert abs(r["values"]["grad_to_weight"] - grad / weight) <= grad / weight * 1e-5
    cell = table.locator('[data-key="fc.bias"] td[data-column=grad_to_weight]')
    assert css_rgb(cell.evaluate("e => getComputedStyle(e).backgroundColor")) == ZERO_BACKGROUND
    assert table.get_attribute("data-zero-weight") == "1"
    assert table.get_attribute("data-non-finite") == "0"
    assert table.get_attribute("data-without-gradient") == "0"

    # The ratio's heatmap and depth chart: the zero weight is "‖W‖ = 0", not non-finite.
    served = route(
        aux_server, "layer_statistics", run="cnn", tag=PARAMETERS, statistic="grad_to_weight"
    )
    fc_bias = served["names"].index("fc.bias")
    assert served["zero_weight"] == [[0, fc_bias]] and served["non_finite"] == 0
    c.locator("[data-testid=ls-statistic]").select_option("grad_to_weight")
    heat = c.locator('[data-statistic="grad_to_weight"] [data-testid=heatmap][data-drawn=true]')
    heat.first.wait_for(timeout=TIMEOUT_MS)
    badge = c.locator("[data-testid=zero-weight-count]")
    badge.wait_for(timeout=TIMEOUT_MS)
    assert badge.inner_text() == "1 × ‖W‖ = 0"
    assert c.locator(".ds-badge-bad", has_text="non-finite").count() == 0
    assert c.locator("[data-testid=legend]", has_text="‖W‖ = 0: ratio undefined").count() == 1
    # The ratio's own depth chart (the gradient norm's was drawn too): its axis names it.
    depth = c.locator("[data-testid=ls-depth][data-drawn=true]", has_text="‖g‖/‖W‖")
    depth.wait_for(timeout=TIMEOUT_MS)
    assert depth.get_attribute("data-non-finite") == "0"
    assert json.loads(depth.get_attribute("data-steps")) == {"cnn": 0}
    assert tab.errors == []
