"""The tab's view registry (frontend/src/views/registry.ts) covers the kind registry.

Every kind in `deepscope.kinds.KINDS` needs a view in the tab, or its series would only
get a "no view for this kind" card; and a view for a kind the plugin does not serve is
dead code. The registry's entries are read from its source: `["<name>", { create: ...`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepscope import kinds

REGISTRY = Path(__file__).resolve().parents[2] / "frontend" / "src" / "views" / "registry.ts"
ENTRY = re.compile(r'^\s*\[\s*"([a-z_]+)"\s*,\s*\{\s*create:', re.MULTILINE)


def tab_views() -> list[str]:
    return ENTRY.findall(REGISTRY.read_text(encoding="utf-8"))


def test_the_registry_source_is_read():
    views = tab_views()
    assert views, f"no entries found in {REGISTRY}"
    assert len(views) == len(set(views)), f"a kind registered twice: {views}"


@pytest.mark.parametrize("kind", [k.name for k in kinds.KINDS])
def test_every_kind_has_a_view_in_the_tab(kind):
    assert kind in tab_views(), f"kind {kind!r} has no view in {REGISTRY.name}"


def test_every_view_is_of_a_kind_the_plugin_serves():
    extra = set(tab_views()) - set(kinds.BY_NAME)
    assert not extra, f"views for kinds deepscope.kinds does not list: {sorted(extra)}"
