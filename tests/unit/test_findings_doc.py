"""docs/findings.md holds the rules table of the code (deepscope/findings/thresholds.py)."""

from __future__ import annotations

import re
from pathlib import Path

from deepscope.findings import rules_doc
from deepscope.findings.thresholds import RULES
from deepscope.findings.wording import num

DOC = Path(__file__).resolve().parents[2] / "docs" / "findings.md"


def test_the_pages_rules_section_is_the_tables():
    text = DOC.read_text(encoding="utf-8")
    _, found, section = text.partition(rules_doc.HEADING)
    assert found, "docs/findings.md lost its '## The rules' heading"
    assert rules_doc.HEADING + section == rules_doc.markdown(), (
        "docs/findings.md differs from the rules table: run "
        "`python -m deepscope.findings.rules_doc docs/findings.md`"
    )


def test_every_rule_is_documented_with_its_check_thresholds_and_source():
    text = DOC.read_text(encoding="utf-8")
    documented = re.findall(r"^### `(\w+)`", text, re.MULTILINE)
    assert documented == [rule.name for rule in RULES]
    for rule, block in zip(RULES, re.split(r"^### ", text, flags=re.MULTILINE)[1:]):
        assert block.startswith(f"`{rule.name}`: {rule.title}\n"), rule.name
        assert rule.checks in block and f"Source: {rule.source}" in block, rule.name
        # The thresholds parse back as a markdown table (no meaning breaks a row).
        rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|$", block, re.MULTILINE)
        assert rows == [
            (key, num(threshold.default), threshold.meaning)
            for key, threshold in rule.thresholds.items()
        ], rule.name
