"""The rules section of docs/findings.md, written from the rules table (`thresholds.RULES`).

    python -m deepscope.findings.rules_doc docs/findings.md   # rewrite its "## The rules"

The page's text above that heading is written by hand; the section below it is
this module's, so that the documented thresholds are the code's
(tests/unit/test_findings_doc.py fails when they differ).
"""

from __future__ import annotations

import sys
from pathlib import Path

from deepscope.findings.thresholds import RULES
from deepscope.findings.wording import num

HEADING = "## The rules\n"


def markdown() -> str:
    """The section: per rule its heading, severity, kinds read, check, source, thresholds."""
    out = [HEADING]
    for rule in RULES:
        out.append(f"### `{rule.name}`: {rule.title}\n")
        out.append(f"Severity **{rule.severity}**; reads {', '.join(rule.reads)}.\n")
        out.append(f"{rule.checks}\n")
        out.append(f"Source: {rule.source}\n")
        if rule.thresholds:
            out.append("| threshold | default | meaning |\n| --- | --- | --- |")
            for key, threshold in rule.thresholds.items():
                out.append(f"| `{key}` | {num(threshold.default)} | {threshold.meaning} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def rewrite(path: Path) -> None:
    """Replace everything from `HEADING` on in the page at `path` by `markdown()`."""
    text = path.read_text(encoding="utf-8")
    head, found, _ = text.partition(HEADING)
    if not found:
        raise ValueError(f"{path} has no {HEADING.strip()!r} heading to write the rules under")
    path.write_text(head + markdown(), encoding="utf-8")


if __name__ == "__main__":
    rewrite(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/findings.md"))
