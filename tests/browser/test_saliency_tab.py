"""The saliency view in a real browser, inside a real TensorBoard (Python loader).

What the tab draws and shows on hover is checked against the saliency route's own
arrays, decoded and reduced here with numpy: a pixel's map value, the percentile the
colours are clipped at, colours that change with the sign mode and clipping, the step
slider and the compare mode, labels and wrong predictions, and non-finite maps reported
instead of drawn.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/saliency.png.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from playwright.sync_api import expect

from tests import route_helpers
from tests.browser.tab_page import TIMEOUT_MS, css_rgb, hover_point, screenshot
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
    return hover_point(tab, canvas, (x + 0.5) / width, (y + 0.5) / height)


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


def at(box: dict, fx: float, fy: float) -> tuple[float, float]:
    """The page point at fraction (fx, fy) of a bounding box."""
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def near(rgb: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int) -> bool:
    """Whether every channel of `rgb` is within `tolerance` levels of `expected`."""
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


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
    """seed0's card in compare mode, signed; DEEPSCOPE_SCREENSHOTS=1 makes it the README's picture.

    The picture must show the grid's columns (both steps' maps and overlays), the row's
    strongest pixel in the saturated end colour of its sign (RdBu's #67001f red, #053061
    blue: it is beyond the row's 99th-percentile clip), every sampled pixel as its canvas
    holds it, and a legend bar from blue to red.
    """
    tag = "saliency/integrated_gradients"
    tab.page.set_viewport_size({"width": 1400, "height": 1700})
    steps = route(server, "saliency_steps", run="seed0", tag=tag)["steps"]
    frame = tab.open(server)
    c = card(frame, "seed0", tag)
    set_control(c, "saliency-sign", "signed")
    c.locator("[data-testid=saliency-compare]").check()
    c.locator("[data-testid=saliency-grid][data-drawn=true][data-compare-step='0']").wait_for(
        timeout=TIMEOUT_MS
    )
    tab.page.mouse.move(1, 1)
    heads = c.locator(".ds-sal-colhead")
    columns = [heads.nth(k).inner_text() for k in range(heads.count())]
    assert columns == [
        "sample",
        "source",
        f"map · step {steps[-1]}",
        f"overlay · step {steps[-1]}",
        "map · step 0",
        "overlay · step 0",
    ]
    picture = screenshot(c, tmp_path, "saliency.png")
    points, expected, extremes = [], [], []
    for step in (steps[-1], 0):
        body = route(server, "saliency", run="seed0", tag=tag, step=step, samples="0-1")
        signed = reduce(decode(body["maps"]), "signed")[0]
        height, width = signed.shape
        canvas = panel(c, "map", 0, step)
        box = canvas.bounding_box()
        inner = {"x": box["x"] + 1, "y": box["y"] + 1}  # inside the 1 px border
        inner |= {"width": box["width"] - 2, "height": box["height"] - 2}
        y, x = np.unravel_index(np.abs(signed).argmax(), signed.shape)
        if abs(signed[y, x]) >= float(canvas.get_attribute("data-clip-value")):
            extremes.append((len(points), signed[y, x] > 0))
        for px, py in [(x, y), (0, 0), (width - 1, height - 1), (width // 2, height // 3)]:
            points.append(at(inner, (px + 0.5) / width, (py + 0.5) / height))
            expected.append(pixel_rgb(canvas, px, py, width))
    bar = c.locator("[data-testid=saliency-legend] .ds-sal-bar").bounding_box()
    points += [at(bar, 0.02, 0.5), at(bar, 0.98, 0.5)]
    got = picture.rgbs(points)
    for k, want in enumerate(expected):
        assert near(got[k], want, 2), (k, got[k], want)  # the picture shows the canvas
    assert extremes  # the row's strongest pixel is at or beyond its clip value
    for k, positive in extremes:
        end = css_rgb("#67001f") if positive else css_rgb("#053061")
        assert near(got[k], end, 3), (got[k], end)
    left, right = got[-2], got[-1]
    assert left[2] > left[0] + 40 and right[0] > right[2] + 40, (left, right)


# ---------------------------------------------------------------- damaged data, odd names


@pytest.fixture(scope="module")
def damaged_server(tmp_path_factory, tensorboard_server) -> str:
    """tests/damaged_logs.py's run: good steps 10 and 30 around a damaged step 20, per damage."""
    from tests.damaged_logs import write_damaged_log

    return tensorboard_server(write_damaged_log(tmp_path_factory.mktemp("damaged")).logdir, False)


@pytest.mark.parametrize("tag", ["saliency/garbage", "saliency/maps_shape_mismatch"])
def test_a_damaged_step_shows_its_error_at_its_step_and_the_others_still_draw(
    tab, damaged_server, tag
):
    from tests.damaged_logs import DAMAGED_STEP, GOOD_STEPS, RUN

    error = route(damaged_server, "saliency", run=RUN, tag=tag, step=DAMAGED_STEP)["error"]
    assert error
    frame = tab.open(damaged_server)
    frame.locator("[data-testid=tag-filter]").fill(f"^{tag}$")  # this series' section alone
    c = card(frame, RUN, tag)
    drawn(c, GOOD_STEPS[-1])
    assert panel(c, "map", 0, GOOD_STEPS[-1]).count() == 1
    slider = c.locator("[data-testid=saliency-slider-a] input[type=range]")
    slider.focus()
    tab.page.keyboard.press("ArrowLeft")
    drawn(c, DAMAGED_STEP)
    note = c.locator(f'[data-testid=saliency-step-error][data-step="{DAMAGED_STEP}"]')
    expect(note).to_have_text(f"step {DAMAGED_STEP} cannot be shown: {error}", timeout=TIMEOUT_MS)
    assert c.locator("[data-testid=saliency-panel]").count() == 0  # no picture of it

    # Compared with the damaged step, a good step draws, the damaged one's cells say why.
    tab.page.keyboard.press("ArrowRight")
    drawn(c, GOOD_STEPS[-1])
    c.locator("[data-testid=saliency-compare]").check()
    c.locator("[data-testid=saliency-slider-b] input[type=range]").focus()
    tab.page.keyboard.press("ArrowRight")  # B: from the first step to the damaged one
    c.locator(
        f'[data-testid=saliency-grid][data-drawn=true][data-compare-step="{DAMAGED_STEP}"]'
    ).wait_for(timeout=TIMEOUT_MS)
    assert panel(c, "map", 0, GOOD_STEPS[-1]).count() == 1
    cells = c.locator("[data-testid=saliency-grid] [data-testid=saliency-step-error]")
    assert cells.count() == 2 * c.locator("[data-testid=saliency-rowhead]").count()
    assert f"step {DAMAGED_STEP} cannot be shown" in cells.first.inner_text()
    assert c.locator(f'[data-testid=saliency-step-error][data-step="{DAMAGED_STEP}"]').count() == 1

    tab.page.keyboard.press("Home")  # B back to the first, good step
    c.locator(
        f'[data-testid=saliency-grid][data-drawn=true][data-compare-step="{GOOD_STEPS[0]}"]'
    ).wait_for(timeout=TIMEOUT_MS)
    assert panel(c, "map", 0, GOOD_STEPS[0]).count() == 1
    assert c.locator("[data-testid=saliency-step-error]").count() == 0


def test_a_damaged_newest_step_shows_its_error_and_the_earlier_step_draws(tab, damaged_server):
    from tests.damaged_logs import DAMAGED_STEP, GOOD_STEPS, RUN

    tag = "saliency/newest_damaged"
    listing = route(damaged_server, "saliency_steps", run=RUN, tag=tag)
    assert listing["steps"] == [GOOD_STEPS[0], DAMAGED_STEP] and listing["num_samples"] == 0
    good = route(damaged_server, "saliency", run=RUN, tag=tag, step=GOOD_STEPS[0])
    frame = tab.open(damaged_server)
    frame.locator("[data-testid=tag-filter]").fill(f"^{tag}$")
    c = card(frame, RUN, tag)
    drawn(c, DAMAGED_STEP)  # the newest, damaged: its error, no picture
    assert c.locator(f'[data-testid=saliency-step-error][data-step="{DAMAGED_STEP}"]').count() == 1
    assert c.locator("[data-testid=saliency-panel]").count() == 0
    c.locator("[data-testid=saliency-slider-a] input[type=range]").focus()
    tab.page.keyboard.press("ArrowLeft")
    drawn(c, GOOD_STEPS[0])
    n = good["num_samples"]
    assert c.locator("[data-testid=saliency-rowhead]").count() == n
    # The probe's size comes from the good step's maps (the listing could not say it).
    assert c.locator("[data-testid=saliency-pager]").text_content() == f"samples 1–{n} of {n}"


def plain_get(base_url: str, path: str, **params) -> tuple[int, str]:
    """GET a route: its status and body as text, whatever the status."""
    url = f"{base_url}/data/plugin/deepscope/{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_fast_loader_and_an_odd_run_name_the_card_explains_cause_and_workaround(
    tab, odd_name_server
):
    run = 'run"quote'
    status, answer = plain_get(odd_name_server, "saliency_steps", run=run, tag="saliency/odd_run")
    assert 400 <= status < 500
    frame = tab.open(odd_name_server)
    frame.locator("[data-testid=tag-filter]").fill("^saliency/odd_run$")
    c = frame.locator("[data-testid=saliency-card]").filter(has_text=run).first
    c.wait_for(timeout=TIMEOUT_MS)
    c.scroll_into_view_if_needed()
    message = c.locator("[data-testid=saliency-error]")
    message.wait_for(timeout=TIMEOUT_MS)
    text = message.inner_text()
    assert text == f"HTTP {status}: {answer.strip()}"  # the route's explanation, as it wrote it
    assert "--load_fast=false" in text and "Rename" in text
    assert "<" not in text and "Traceback" not in text
