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


@pytest.fixture(scope="session")
def odd_name_server(tmp_path_factory, tensorboard_server) -> str:
    """Good series whose run or tag holds '"', '\\', a newline, a tab or a control character,
    served by the fast data server, which cannot read their blobs (one server for every
    kind's tab tests)."""
    from tests.damaged_logs import write_odd_name_log

    logdir = tmp_path_factory.mktemp("odd-names")
    write_odd_name_log(logdir)
    return tensorboard_server(logdir, load_fast=True)
