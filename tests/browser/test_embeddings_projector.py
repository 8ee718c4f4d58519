"""deepscope's embeddings in TensorBoard's own Projector tab, in a real browser.

The log is written as a user writes it: a small CNN on digit-like 8×8 images trained under
`deepscope.watch` with the `Embeddings` measurer (its hidden layer at steps 0 and 4, with
labels, class names and the images as sprites). The Projector tab (TensorBoard's, in
nested iframes: plugin_entry.html → projector_binary.html) must list both tensors, with
their shapes, and draw the points.

Set DEEPSCOPE_SCREENSHOTS=1 to refresh the README's picture, docs/images/projector.png.
"""

from __future__ import annotations

import pytest

from tests.browser.tab_page import TIMEOUT_MS, screenshot

sync_api = pytest.importorskip("playwright.sync_api")

SAMPLES = 64
NAMES = ["embeddings/hidden:00000", "embeddings/hidden:00004"]

# Every element of the projector's page, shadow roots included; the tensor menu's label
# ("2 tensors found") and its items' text (name and shape), and the "Points: N" status.
_LISTING = """() => {
  function all(root, out) {
    for (const el of root.querySelectorAll('*')) {
      out.push(el);
      if (el.shadowRoot) all(el.shadowRoot, out);
    }
    return out;
  }
  const els = all(document, []);
  const menu = els.find((e) => e.tagName === 'PAPER-DROPDOWN-MENU' &&
                               String(e.label).includes('tensors found'));
  if (!menu) return null;
  const items = all(menu, []).filter((e) => e.tagName === 'PAPER-ITEM')
    .map((e) => e.textContent.replace(/\\s+/g, ' ').trim());
  const status = els.map((e) => (e.shadowRoot ? '' : e.textContent || ''))
    .find((t) => /^\\s*Points: \\d+/.test(t)) || '';
  return { label: String(menu.label), items, status: status.replace(/\\s+/g, ' ').trim() };
}"""


@pytest.fixture(scope="session")
def projector_server(tmp_path_factory, tensorboard_server) -> str:
    import torch

    import deepscope
    from deepscope.writer.watch_embeddings import Embeddings

    logdir = tmp_path_factory.mktemp("projector")
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("conv", torch.nn.Conv2d(1, 8, 3, padding=1))
    model.add_module("relu", torch.nn.ReLU())
    model.add_module("flat", torch.nn.Flatten())
    model.add_module("hidden", torch.nn.Linear(8 * 8 * 8, 16))
    model.add_module("out", torch.nn.Linear(16, 4))
    generator = torch.Generator().manual_seed(1)
    y = torch.arange(SAMPLES) % 4
    x = torch.rand(SAMPLES, 1, 8, 8, generator=generator) * 0.3
    for k in range(4):  # a bright quadrant per class: classes the embedding can separate
        rows, cols = divmod(k, 2)
        x[y == k, :, 4 * rows : 4 * rows + 4, 4 * cols : 4 * cols + 4] += 0.7
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    writer = deepscope.SummaryWriter(str(logdir / "digits"))
    measurer = Embeddings(
        probe=(x, y),
        layers=["hidden"],
        every=4,
        class_names=["top-left", "top-right", "low-left", "low-right"],
    )
    with deepscope.watch(model, optimizer, writer, measure=[measurer]):
        for step in range(5):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            writer.add_scalar("loss", loss.item(), step)
    writer.close()
    return tensorboard_server(logdir, load_fast=False)


def _projector_frame(page):
    for _ in range(600):
        frame = next((f for f in page.frames if "projector/projector_binary.html" in f.url), None)
        if frame is not None:
            return frame
        page.wait_for_timeout(100)
    raise AssertionError("the projector's iframe (projector_binary.html) never appeared")


def test_projector_tab_lists_the_tensors(tab, projector_server, tmp_path):
    page = tab.page
    page.goto(f"{projector_server}/#projector")
    frame = _projector_frame(page)
    listing = None
    for _ in range(TIMEOUT_MS // 200 * 2):
        listing = frame.evaluate(_LISTING)
        drawn = listing and listing["status"].startswith(f"Points: {SAMPLES} ")
        if drawn and len(listing["items"]) == len(NAMES):
            break
        page.wait_for_timeout(200)
    assert listing is not None, "the projector's tensor menu never appeared"
    assert listing["label"] == f"{len(NAMES)} tensors found"
    assert listing["items"] == [f"{name} {SAMPLES}x16" for name in NAMES]
    assert listing["status"].startswith(f"Points: {SAMPLES} Dimension: 16")
    page.wait_for_timeout(1500)  # the sprites are drawn once their image has loaded
    screenshot(page.locator("body"), tmp_path, "projector.png", min_bytes=10_000)
