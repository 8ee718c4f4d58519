"""The saliency view in a real browser, inside a real TensorBoard (Python loader).

What the tab draws and shows on hover is checked against the saliency route's own
arrays, decoded and reduced here with numpy: a pixel's map value, the percentile the
colours are clipped at, colours that change with the sign mode and clipping, the step
slider and the compare mode, labels and wrong predictions, and non-finite maps reported
instead of drawn.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/saliency.png.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from tests import route_helpers
from tests.browser.tab_page import TIMEOUT_MS, screenshot, tooltip_fields
from tests.route_helpers import route
from tests.saliency_data import BROKEN_TAG, RGB_TAG

sync_api = pytest.importorskip("playwright.sync_api")

PAGE = 8  # samples per page of the tab's grid


@pytest.fixture(scope="module")
def server(saliency_logdir, tensorboard_server) -> str:
    return tensorboard_server(saliency_logdir, load_fast=False)


# ---------------------------------------------------------------- helpers


def decode(slot: dict) -> np.ndarray:
    return route_helpers.decode(slot).astype(np.float64)


def reduce(maps: np.ndarray, mode: str) -> np.ndarray:
    """[n, C, H, W] -> [n, H, W]: max |·| over channels (absolute), else the sum."""
    return np.abs(maps).max(axis=1) if mode == "absolute" else maps.sum(axis=1)


def shown(value: float) -> str:
    """A value as the tab writes it (JavaScript's toExponential(3), ties away from zero)."""
    if value == 0:
        return "0"
    exact = Decimal(float(value))
    exponent = exact.adjusted()
    mantissa = exact.scaleb(-exponent).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    if abs(mantissa) >= 10:
        exponent += 1
        mantissa = exact.scaleb(-exponent).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    return f"{mantissa}e{exponent}"


def card(frame, run: str, tag: str = "saliency/gradient"):
    """The run's saliency card, scrolled into view, showing `tag`, its grid drawn."""
    locator = frame.locator(f'[data-testid=saliency-card][data-run="{run}"]')
    locator.wait_for(timeout=TIMEOUT_MS)
    locator.scroll_into_view_if_needed()
    locator.locator("[data-testid=saliency-method]").select_option(tag)
    locator.and_(frame.locator(f'[data-tag="{tag}"]')).wait_for(timeout=TIMEOUT_MS)
    drawn(locator)
    return locator


def drawn(card_locator, step: int | None = None):
    selector = "[data-testid=saliency-grid][data-drawn=true]"
    if step is not None:
        selector += f'[data-step="{step}"]'
    card_locator.locator(selector).wait_for(timeout=TIMEOUT_MS)


def panel(card_locator, kind: str, sample: int, step: int | None = None):
    selector = f'[data-testid=saliency-panel][data-panel="{kind}"][data-sample="{sample}"]'
    if step is not None:
        selector += f'[data-step="{step}"]'
    return card_locator.locator(selector)


def hover_pixel(tab, canvas, x: int, y: int, width: int, height: int) -> dict[str, str]:
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    tab.page.mouse.move(
        box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height
    )
    return tooltip_fields(tab.frame)


def pixel_rgb(canvas, x: int, y: int, width: int) -> tuple[int, int, int]:
    """The colour the canvas holds at data pixel (x, y) (the centre of its block)."""
    return tuple(
        canvas.evaluate(
            """(c, [x, y, w]) => {
                const s = c.width / w;
                const d = c.getContext('2d').getImageData(Math.floor((x + .5) * s),
                                                          Math.floor((y + .5) * s), 1, 1).data;
                return [d[0], d[1], d[2]];
            }""",
            [int(x), int(y), int(width)],
        )
    )


def set_control(card_locator, testid: str, value: str):
    card_locator.locator(f"[data-testid={testid}]").select_option(value)


# ---------------------------------------------------------------- tests


def test_grid_shows_each_sample_with_its_label_and_prediction_wrong_ones_marked(tab, server):
    body = route(server, "saliency", run="seed0", tag="saliency/gradient", samples=f"0-{PAGE - 1}")
    frame = tab.open(server)
    c = card(frame, "seed0")
    heads = c.locator("[data-testid=saliency-rowhead]")
    assert heads.count() == PAGE
    assert [heads.nth(k).get_attribute("data-sample") for k in range(PAGE)] == [
        str(s) for s in range(PAGE)
    ]
    marks = c.locator("[data-testid=saliency-prediction]")
    wrong = [p != y for p, y in zip(body["predictions"], body["labels"])]
    assert [marks.nth(k).get_attribute("data-wrong") for k in range(PAGE)] == [
        str(w).lower() for w in wrong
    ]
    for k in range(PAGE):
        text = heads.nth(k).inner_text()
        assert f"label {body['labels'][k]}" in text
        assert f"predicted {body['predictions'][k]}" in text
    for kind in ("source", "map", "overlay"):
        assert c.locator(f'[data-testid=saliency-panel][data-panel="{kind}"]').count() == PAGE
    assert "∂score/∂input" in c.locator("[data-testid=saliency-legend]").inner_text()
    pager = c.locator("[data-testid=saliency-pager]")
    assert pager.inner_text() == f"samples 1–{PAGE} of 10"
    c.locator("[data-testid=saliency-next]").click()
    c.locator('[data-testid=saliency-rowhead][data-sample="9"]').wait_for(timeout=TIMEOUT_MS)
    assert c.locator("[data-testid=saliency-rowhead]").count() == 2


@pytest.mark.parametrize(
    ("tag", "sample", "modes", "pixels"),
    [
        ("saliency/gradient", 3, ["absolute"], [(0, 0), (5, 2), (7, 7)]),
        (RGB_TAG, 1, ["absolute", "signed"], [(1, 4), (5, 0), (3, 3)]),
    ],
    ids=["grey", "rgb"],
)
def test_hovering_a_pixel_shows_the_routes_map_value(tab, server, tag, sample, modes, pixels):
    body = route(server, "saliency", run="seed0", tag=tag)
    maps, inputs = decode(body["maps"]), decode(body["inputs"])
    _, channels, height, width = maps.shape
    frame = tab.open(server)
    c = card(frame, "seed0", tag)
    for mode in modes:
        reduced = reduce(maps, mode)  # RGB: max |·| over channels, or their sum
        set_control(c, "saliency-sign", mode)
        c.locator(f"[data-testid=saliency-grid][data-mode={mode}]").wait_for(timeout=TIMEOUT_MS)
        canvas = panel(c, "map", sample)
        for x, y in pixels:
            fields = hover_pixel(tab, canvas, x, y, width, height)
            assert fields["value"] == shown(reduced[sample, y, x]), (mode, x, y)
            assert fields["pixel"] == f"{x}, {y}"
            assert fields["sample"] == str(sample) and fields["step"] == str(body["step"])
            assert fields["input"] == ", ".join(shown(v) for v in inputs[sample, :, y, x])
            assert fields["run"] == "seed0"
    if channels == 3:  # the source is drawn in colour: its channels differ somewhere
        source = panel(c, "source", sample)
        colours = {pixel_rgb(source, x, y, width) for x, y in pixels}
        assert any(len(set(rgb)) > 1 for rgb in colours), colours


def test_clipping_and_sign_mode_change_the_drawing(tab, server):
    body = route(server, "saliency", run="seed0", tag="saliency/gradient")
    sample = 2
    reduced = reduce(decode(body["maps"]), "absolute")[sample]
    frame = tab.open(server)
    c = card(frame, "seed0")
    canvas = panel(c, "map", sample)
    height, width = reduced.shape

    # 99th percentile (the default): colours saturate at numpy's percentile of |map|.
    assert float(canvas.get_attribute("data-clip-value")) == pytest.approx(
        np.percentile(np.abs(reduced), 99), rel=1e-9
    )
    top = pixel_rgb(canvas, *np.unravel_index(reduced.argmax(), reduced.shape)[::-1], width)
    saturated = [
        (x, y) for y in range(height) for x in range(width) if pixel_rgb(canvas, x, y, width) == top
    ]
    clip = np.percentile(np.abs(reduced), 99)
    assert sorted(saturated) == sorted(zip(*np.nonzero(reduced >= clip)[::-1]))
    before = canvas.evaluate("c => c.toDataURL()")

    # No clipping: only the largest value saturates.
    set_control(c, "saliency-clip", "100")
    c.locator("[data-testid=saliency-grid][data-clip='100']").wait_for(timeout=TIMEOUT_MS)
    canvas = panel(c, "map", sample)
    assert float(canvas.get_attribute("data-clip-value")) == pytest.approx(reduced.max(), rel=1e-9)
    assert canvas.evaluate("c => c.toDataURL()") != before
    unclipped = canvas.evaluate("c => c.toDataURL()")

    # Signed: a diverging map, positive red, negative blue; the largest |value| saturates.
    signed = reduce(decode(body["maps"]), "signed")[sample]
    set_control(c, "saliency-sign", "signed")
    c.locator("[data-testid=saliency-grid][data-mode=signed]").wait_for(timeout=TIMEOUT_MS)
    canvas = panel(c, "map", sample)
    assert canvas.evaluate("c => c.toDataURL()") != unclipped
    red = pixel_rgb(canvas, *np.unravel_index(signed.argmax(), signed.shape)[::-1], width)
    blue = pixel_rgb(canvas, *np.unravel_index(signed.argmin(), signed.shape)[::-1], width)
    assert signed.max() > 0 > signed.min()
    assert red[0] > red[2] and blue[2] > blue[0], (red, blue)
    extreme = red if signed.max() > -signed.min() else blue
    assert abs(extreme[0] - extreme[2]) > 60, extreme
    assert float(canvas.get_attribute("data-clip-value")) == pytest.approx(
        np.abs(signed).max(), rel=1e-9
    )

    # Positive only: pixels with a negative sum draw as zero (the colour scale's bottom).
    set_control(c, "saliency-sign", "positive")
    c.locator("[data-testid=saliency-grid][data-mode=positive]").wait_for(timeout=TIMEOUT_MS)
    canvas = panel(c, "map", sample)
    bottom = pixel_rgb(canvas, *np.unravel_index(signed.argmin(), signed.shape)[::-1], width)
    assert sum(bottom) < 60, bottom  # inferno's black


def test_step_slider_and_compare_mode_show_the_chosen_steps(tab, server):
    steps = route(server, "saliency_steps", run="seed0", tag="saliency/gradient")["steps"]
    first = route(server, "saliency", run="seed0", tag="saliency/gradient", step=steps[0])
    reduced_first = reduce(decode(first["maps"]), "absolute")
    frame = tab.open(server)
    c = card(frame, "seed0")
    drawn(c, steps[-1])  # follows the newest step
    slider = c.locator("[data-testid=saliency-slider-a] input[type=range]")
    slider.focus()
    tab.page.keyboard.press("Home")
    drawn(c, steps[0])
    fields = hover_pixel(tab, panel(c, "map", 1, steps[0]), 4, 4, 8, 8)
    assert fields["step"] == str(steps[0])
    assert fields["value"] == shown(reduced_first[1, 4, 4])
    tab.page.keyboard.press("End")  # the slider still has focus
    drawn(c, steps[-1])

    c.locator("[data-testid=saliency-compare]").check()
    c.locator("[data-testid=saliency-slider-b]").wait_for(state="visible", timeout=TIMEOUT_MS)
    c.locator(
        f'[data-testid=saliency-grid][data-drawn=true][data-compare-step="{steps[0]}"]'
    ).wait_for(timeout=TIMEOUT_MS)
    for step in (steps[-1], steps[0]):
        assert panel(c, "map", 1, step).count() == 1
        assert panel(c, "overlay", 1, step).count() == 1
    fields = hover_pixel(tab, panel(c, "map", 1, steps[0]), 4, 4, 8, 8)
    assert fields["step"] == str(steps[0])
    assert fields["value"] == shown(reduced_first[1, 4, 4])
    # Both steps of a row share one clip value: the percentile over both maps.
    last = route(server, "saliency", run="seed0", tag="saliency/gradient", step=steps[-1])
    both = np.concatenate(
        [reduce(decode(last["maps"]), "absolute")[1].ravel(), reduced_first[1].ravel()]
    )
    for step in (steps[-1], steps[0]):
        clip = float(panel(c, "map", 1, step).get_attribute("data-clip-value"))
        assert clip == pytest.approx(np.percentile(both, 99), rel=1e-9)
    # The compare slider picks the other step.
    slider_b = c.locator("[data-testid=saliency-slider-b] input[type=range]")
    slider_b.focus()
    tab.page.keyboard.press("ArrowRight")
    c.locator(
        f'[data-testid=saliency-grid][data-drawn=true][data-compare-step="{steps[1]}"]'
    ).wait_for(timeout=TIMEOUT_MS)
    assert panel(c, "map", 1, steps[1]).count() == 1


def test_baseline_delta_shows_baseline_and_its_map(tab, server):
    frame = tab.open(server)
    c = card(frame, "seed0", "saliency/baseline_delta")
    for kind in ("source", "baseline", "baseline-map", "map", "overlay"):
        assert panel(c, kind, 0).count() == 1, kind
    heads = c.locator(".ds-sal-colhead")
    assert "map (delta)" in [heads.nth(k).inner_text() for k in range(heads.count())]


def test_non_finite_maps_are_reported_and_not_drawn(tab, server):
    body = route(server, "saliency", run="seed0", tag=BROKEN_TAG)
    frame = tab.open(server)
    c = card(frame, "seed0", BROKEN_TAG)
    bad = [k for k, n in enumerate(body["non_finite_per_sample"]) if n > 0]
    assert bad == [1, 2]
    for k in range(4):
        expected = 0 if k in bad else 1
        assert panel(c, "map", k).count() == expected
        assert panel(c, "overlay", k).count() == expected
    boxes = c.locator("[data-testid=saliency-non-finite]")
    assert [boxes.nth(k).get_attribute("data-count") for k in range(boxes.count())] == [
        "1",
        "1",
        "2",
        "2",
    ]
    summary = c.locator("[data-testid=saliency-non-finite-summary]")
    assert summary.get_attribute("data-count") == "3"
    assert "3 non-finite" in summary.inner_text()


def test_screenshot(tab, server, tmp_path):
    """seed0's card in compare mode; DEEPSCOPE_SCREENSHOTS=1 makes it the README's picture."""
    tab.page.set_viewport_size({"width": 1400, "height": 1700})
    frame = tab.open(server)
    c = card(frame, "seed0", "saliency/integrated_gradients")
    set_control(c, "saliency-sign", "signed")
    c.locator("[data-testid=saliency-compare]").check()
    c.locator("[data-testid=saliency-grid][data-drawn=true][data-compare-step='0']").wait_for(
        timeout=TIMEOUT_MS
    )
    tab.page.mouse.move(1, 1)
    screenshot(c, tmp_path, "saliency.png", min_bytes=10_000)
