"""Browser fixtures: one Chromium for the session, a fresh page (`tab`) per test.

Chromium is Debian's (`shutil.which("chromium")`); `playwright install` is never needed.
A test fails when the page logged a CSP violation or an uncaught error.
"""

from __future__ import annotations

import pytest

from tests.browser.tab_page import CHROMIUM_ARGS, VIEWPORT, Tab

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="session")
def browser(chromium_path):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def tab(browser):
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    tab = Tab(context.new_page())
    yield tab
    context.close()
    assert not tab.errors, "\n".join(tab.errors)
