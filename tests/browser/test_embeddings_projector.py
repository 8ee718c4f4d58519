"""TensorBoard's own Projector tab shows the embeddings deepscope logs (issue 15 §3).

A small CNN trained on scikit-learn's 8×8 digits under `deepscope.watch` with the
`Embeddings` measurer (its hidden layer on 60 probe digits, labels and sprites, at two
steps); a real `tensorboard` (--load_fast=false and true) serves the run, and Debian's
Chromium opens the Projector tab: it finds both logged tensors, their 60 points and their
dimension, and draws the sprites. Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's
picture, docs/images/projector.png.
"""

from __future__ import annotations

import pytest

from tests.browser.tab_page import TIMEOUT_MS, screenshot
from tests.route_helpers import LOADERS

PROBE = 60
HIDDEN = 16
EVERY = 6


@pytest.fixture(scope="module")
def digits_logdir(tmp_path_factory):
    import torch
    from sklearn.datasets import load_digits

    import deepscope

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("conv", torch.nn.Conv2d(1, 8, 3, padding=1))
    model.add_module("relu1", torch.nn.ReLU())
    model.add_module("flat", torch.nn.Flatten())
    model.add_module("hidden", torch.nn.Linear(8 * 64, HIDDEN))
    model.add_module("relu2", torch.nn.ReLU())
    model.add_module("out", torch.nn.Linear(HIDDEN, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    logdir = tmp_path_factory.mktemp("projector")
    writer = deepscope.SummaryWriter(str(logdir / "digits"))
    measurer = deepscope.Embeddings(
        probe=(x[-PROBE:], y[-PROBE:]),
        layers=["relu2"],
        every=EVERY,
        class_names=[str(d) for d in range(10)],
    )
    with deepscope.watch(model, optimizer, writer, measure=[measurer]):
        for step in range(EVERY + 1):
            batch = torch.arange(step * 64, (step + 1) * 64)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    writer.close()
    return logdir


# Every text, input value and Polymer label in a frame, shadow roots included (the
# Projector is Polymer inside two nested frames).
DEEP_TEXT = """
() => {
  const out = [];
  const walk = (n) => {
    if (n.nodeType === 3) { const t = n.textContent.trim(); if (t) out.push(t); return; }
    if (n.nodeType !== 1 && n.nodeType !== 11) return;
    if (n.nodeType === 1) {
      if (typeof n.label === 'string' && n.label) out.push(n.label);
      if (typeof n.value === 'string' && n.value) out.push(n.value);
    }
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.childNodes) walk(c);
  };
  walk(document.body);
  return out;
}
"""


def _projector_texts(page) -> str:
    frames = [f for f in page.frames if "projector_binary.html" in f.url]
    return "\n".join(t for f in frames for t in f.evaluate(DEEP_TEXT))


@pytest.mark.parametrize("load_fast", LOADERS)
def test_the_projector_tab_lists_the_logged_embeddings(
    tab, tensorboard_server, digits_logdir, load_fast, tmp_path
):
    base = tensorboard_server(digits_logdir, load_fast=load_fast)
    page = tab.page
    page.goto(f"{base}/#projector")
    wanted = [
        "2 tensors found",  # the measurer's two steps
        "embeddings/relu2:00000",
        "embeddings/relu2:00006",
        "00000/embeddings%2frelu2/",  # the metadata file the run wrote
    ]
    texts = ""
    for _ in range(TIMEOUT_MS // 500):
        texts = _projector_texts(page)
        joined = " ".join(texts.split())
        if all(w in texts for w in wanted) and f"Points: {PROBE}" in joined:
            break
        page.wait_for_timeout(500)
    joined = " ".join(texts.split())
    missing = [w for w in wanted if w not in texts]
    assert not missing, (missing, texts[:2000])
    assert f"Points: {PROBE}" in joined and f"Dimension: {HIDDEN}" in joined, joined[:2000]
    if not load_fast:
        page.wait_for_timeout(2000)  # the sprites' texture
        picture = screenshot(page.locator("body"), tmp_path, "projector.png")
        # The sprites are drawn: the scatter (right of the data panel, below the toolbar)
        # holds the digits' black tiles, where the empty view is white.
        grid = [(x, y) for x in range(380, 1000, 4) for y in range(160, 860, 4)]
        dark = sum(max(rgb) < 50 for rgb in picture.rgbs(grid))
        assert dark > 100, dark
