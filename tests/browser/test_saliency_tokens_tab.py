"""Token saliency (a text model's per-token maps) in a real browser, in a real TensorBoard.

The log dir is written by the saliency watcher on a small GPT-2 built from a config
(token probe, integrated gradients with the token texts) and by `add_saliency`
(plain gradient maps without texts). What the tab shows is checked against the
saliency route's own values: the tokens and their texts, each token's value and
colour, the percentile the colours clip at, the default sign mode per reduction,
the hover tooltip, the step slider and compare mode.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/saliency_tokens.png.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import route_helpers
from tests.browser.tab_page import TIMEOUT_MS, css_rgb, screenshot, tooltip_fields
from tests.route_helpers import route

sync_api = pytest.importorskip("playwright.sync_api")

WORDS = "the a cat dog sat ran on under mat log big small red old new . , and".split()
VOCAB = len(WORDS)
IDS = [[0, 2, 4, 6, 0, 8], [1, 10, 3, 5, 7, 1], [12, 9, 15, 16, 11, 17]]
TEXTS = [[("" if k == 0 else " ") + WORDS[i] for k, i in enumerate(row)] for row in IDS]
STEPS = (0, 10)
IG_TAG = "saliency/integrated_gradients"
PLAIN_TAG = "text/gradient"


def _write(logdir) -> None:
    import torch

    import deepscope
    from deepscope.writer.watch_saliency import SaliencyWatcher
    from tests.hf_models import tiny_gpt2

    model = tiny_gpt2(vocab=VOCAB)
    writer = deepscope.SummaryWriter(str(logdir / "gpt2"))
    ids = torch.tensor(IDS)
    watcher = SaliencyWatcher(
        model,
        writer,
        probe=ids,
        methods=["integrated_gradients"],
        method_options={"integrated_gradients": {"n_steps": 16}},
        embeddings="transformer.wte",
        tokens=TEXTS,
    )
    for step in STEPS:
        watcher.measure(step)
        maps = deepscope.saliency(model, ids, embeddings=model.get_input_embeddings())
        writer.add_saliency(PLAIN_TAG, ids, maps, global_step=step, method="gradient")
        with torch.no_grad():
            model.transformer.wte.weight.mul_(1.5)  # the maps change between the steps
    writer.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tensorboard_server) -> str:
    logdir = tmp_path_factory.mktemp("saliency-tokens")
    _write(logdir)
    return tensorboard_server(logdir, load_fast=False)


def _card(frame, tag: str):
    locator = frame.locator('[data-testid=saliency-card][data-run="gpt2"]')
    locator.wait_for(timeout=TIMEOUT_MS)
    locator.scroll_into_view_if_needed()
    locator.locator("[data-testid=saliency-method]").select_option(tag)
    locator.and_(frame.locator(f'[data-tag="{tag}"]')).wait_for(timeout=TIMEOUT_MS)
    locator.locator("[data-testid=saliency-grid][data-drawn=true]").wait_for(timeout=TIMEOUT_MS)
    return locator


def _compare(c) -> None:
    """Turns compare mode on in card `c` and waits until it is drawn against STEPS[0]."""
    c.locator("[data-testid=saliency-compare]").check()
    c.locator(
        f"[data-testid=saliency-grid][data-drawn=true][data-compare-step='{STEPS[0]}']"
    ).wait_for(timeout=TIMEOUT_MS)


def _rgb(style: str) -> tuple[int, ...]:
    return tuple(int(v) for v in style[style.index("(") + 1 : style.index(")")].split(","))


def near(rgb: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int) -> bool:
    """Whether every channel of `rgb` is within `tolerance` levels of `expected`."""
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


def _row_values(c, sample: int, step: int) -> tuple[list[float], list[str], float, list]:
    row = c.locator(f'[data-testid=saliency-token-row][data-sample="{sample}"][data-step="{step}"]')
    tokens = row.locator("[data-testid=saliency-token]")
    values = [float(tokens.nth(k).get_attribute("data-value")) for k in range(tokens.count())]
    texts = [tokens.nth(k).text_content() for k in range(tokens.count())]
    colours = [
        _rgb(tokens.nth(k).evaluate("t => getComputedStyle(t).backgroundColor"))
        for k in range(tokens.count())
    ]
    return values, texts, float(row.get_attribute("data-clip-value")), colours


def test_a_token_series_is_drawn_as_rows_of_coloured_tokens(tab, server):
    body = route(server, "saliency", run="gpt2", tag=IG_TAG, step=STEPS[-1])
    maps = route_helpers.decode(body["maps"]).astype(np.float64)
    frame = tab.open(server)
    c = _card(frame, IG_TAG)
    assert c.locator("[data-testid=saliency-sign]").input_value() == "signed"
    assert c.locator("[data-testid=saliency-token-row]").count() == len(IDS)
    assert not c.locator("[data-testid=saliency-pager]").is_visible()  # 3 samples: one page
    legend = c.locator("[data-testid=saliency-legend]").inner_text()
    assert "over the input embeddings" in legend and "sum over the embedding dim" in legend
    for sample in range(len(IDS)):
        values, texts, clip, colours = _row_values(c, sample, STEPS[-1])
        assert texts == TEXTS[sample]  # leading spaces kept
        np.testing.assert_array_equal(values, maps[sample])  # float16 values, sent as stored
        want_clip = np.percentile(np.abs(maps[sample]), 99)
        assert clip == pytest.approx(want_clip, rel=1e-9)
        for value, (r, g, b) in zip(values, colours):
            if value > 0.3 * clip:
                assert r > b + 40, (value, (r, g, b))  # red side of the diverging map
            elif value < -0.3 * clip:
                assert b > r + 40, (value, (r, g, b))  # blue side
            elif abs(value) < 0.02 * clip:
                assert min(r, g, b) > 225  # near white
    for sample in range(len(IDS)):
        head = c.locator(f'[data-testid=saliency-rowhead][data-sample="{sample}"]').inner_text()
        predicted = body["predictions"][sample]
        text = TEXTS[sample][IDS[sample].index(predicted)] if predicted in IDS[sample] else None
        want = f"predicted #{predicted}" + (f" “{text.strip()}”" if text else "")
        assert want in head and "✓" not in head  # no label: nothing to be right about
    assert "completeness error" in head

    token = c.locator(
        '[data-testid=saliency-token-row][data-sample="2"] [data-testid=saliency-token]'
    ).nth(3)
    token.hover()
    fields = tooltip_fields(frame)
    assert fields["token"] == TEXTS[2][3].strip() and fields["id"] == str(IDS[2][3])
    assert fields["position"] == "3" and fields["sample"] == "2"
    assert fields["step"] == str(STEPS[-1]) and fields["run"] == "gpt2"
    assert float(fields["value"]) == pytest.approx(maps[2, 3], rel=1e-3)


def test_norm_maps_without_texts_show_ids_on_a_sequential_scale(tab, server):
    body = route(server, "saliency", run="gpt2", tag=PLAIN_TAG)
    assert body["token_texts"] is None and body["token_reduction"].startswith("L2 norm")
    maps = route_helpers.decode(body["maps"]).astype(np.float64)
    frame = tab.open(server)
    c = _card(frame, PLAIN_TAG)
    assert c.locator("[data-testid=saliency-sign]").input_value() == "absolute"
    values, texts, clip, colours = _row_values(c, 0, STEPS[-1])
    assert texts == [f"#{i}" for i in IDS[0]]
    assert all(v >= 0 for v in values)
    np.testing.assert_array_equal(values, maps[0])
    strongest, weakest = int(np.argmax(values)), int(np.argmin(values))
    # Faded from white: the weakest token is the palest, the strongest the darkest.
    assert sum(colours[weakest]) > sum(colours[strongest])


def test_step_slider_and_compare_mode(tab, server):
    first = route(server, "saliency", run="gpt2", tag=IG_TAG, step=STEPS[0])
    maps_first = route_helpers.decode(first["maps"]).astype(np.float64)
    frame = tab.open(server)
    c = _card(frame, IG_TAG)
    _compare(c)
    for step in STEPS:
        rows = c.locator(f'[data-testid=saliency-token-row][data-step="{step}"]')
        assert rows.count() == len(IDS)
    values, _, clip_first, _ = _row_values(c, 1, STEPS[0])
    np.testing.assert_array_equal(values, maps_first[1])
    _, _, clip_last, _ = _row_values(c, 1, STEPS[-1])
    assert clip_first == clip_last  # one scale per sample row, both steps


def test_screenshot(tab, server, tmp_path):
    """The GPT-2 card in compare mode; DEEPSCOPE_SCREENSHOTS=1 makes it the README's picture.

    The picture must show every token of both steps on its background colour (read in
    the token's left padding, where no glyph is): each row's strongest value at its clip
    in the saturated red end of the diverging map (#67001f), values near zero near white.
    """
    tab.page.set_viewport_size({"width": 1200, "height": 900})
    frame = tab.open(server)
    c = _card(frame, IG_TAG)
    _compare(c)
    tab.page.mouse.move(1, 1)
    picture = screenshot(c, tmp_path, "saliency_tokens.png")
    rows = c.locator("[data-testid=saliency-token-row]")
    assert rows.count() == 2 * len(IDS)
    points, colours, values, clips = [], [], [], []
    for r in range(rows.count()):
        tokens = rows.nth(r).locator("[data-testid=saliency-token]")
        clip = float(rows.nth(r).get_attribute("data-clip-value"))
        for k in range(tokens.count()):
            box = tokens.nth(k).bounding_box()
            points.append((box["x"] + 2, box["y"] + box["height"] / 2))
            style = tokens.nth(k).evaluate("t => getComputedStyle(t).backgroundColor")
            colours.append(_rgb(style))
            values.append(float(tokens.nth(k).get_attribute("data-value")))
            clips.append(clip)
    assert len(points) == 2 * sum(len(row) for row in IDS)
    got = picture.rgbs(points)
    saturated = 0
    for k, (seen, want) in enumerate(zip(got, colours, strict=True)):
        assert near(seen, want, 3), (k, seen, want)  # the picture shows the token's colour
        if values[k] >= clips[k]:
            saturated += 1
            assert near(seen, css_rgb("#67001f"), 3), (k, values[k], seen)
        elif abs(values[k]) < 0.02 * clips[k]:
            assert min(seen) > 225, (k, values[k], seen)
    assert saturated >= 2  # every row's strongest (positive) token at least once
