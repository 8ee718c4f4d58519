"""The findings as a terminal table: a head line per finding, its sentence and advice wrapped."""

from __future__ import annotations

import textwrap

from deepscope.findings.finding import SEVERITIES
from deepscope.findings.wording import steps

_INDENT = "    "


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 or word == "info" else f"{count} {word}s"


def summary_line(report: dict, where: str) -> str:
    """ "runs/demo: 4 runs; 1 error, 3 warnings, 9 info"."""
    counts = ", ".join(_plural(report["counts"][s], s) for s in SEVERITIES)
    return f"{where}: {_plural(len(report['runs']), 'run')}; {counts}"


def render(report: dict, where: str, width: int = 100, least: str = "info") -> str:
    """The report as text `width` wide: findings at or above `least` severity, most severe
    first; with none, what was checked. Then the warnings."""
    width = max(40, width)
    shown = [
        f for f in report["findings"] if SEVERITIES.index(f["severity"]) <= SEVERITIES.index(least)
    ]
    lines = [summary_line(report, where), ""]
    for finding in shown:
        head = "  ".join(
            part
            for part in (
                finding["severity"].upper().ljust(7),
                finding["run"],
                finding["layer"] or "(whole network)",
                steps(finding["first_step"], finding["last_step"]),
                f"[{finding['rule']}]",
            )
        )
        lines.append(head)
        wrap = dict(
            width=width,
            initial_indent=_INDENT,
            subsequent_indent=_INDENT,
            break_on_hyphens=False,
        )
        lines.extend(textwrap.wrap(finding["message"], **wrap))
        lines.extend(
            textwrap.wrap(
                "Try: " + finding["advice"],
                width=width,
                initial_indent=_INDENT,
                subsequent_indent=_INDENT + "     ",
                break_on_hyphens=False,
            )
        )
        lines.append("")
    hidden = len(report["findings"]) - len(shown)
    if hidden:
        lines.append(f"({hidden} finding(s) below {least} not shown: --show info shows them)")
        lines.append("")
    if not report["findings"]:
        titles = {rule["name"]: rule["title"] for rule in report["rules"]}
        lines.append("No findings. Checked:")
        for run in report["runs"]:
            checked = report["checked"].get(run, [])
            names = ", ".join(titles[name].lower() for name in checked) or "nothing it could read"
            lines.extend(
                textwrap.wrap(
                    f"{run}: {names}",
                    width=width,
                    initial_indent=_INDENT,
                    subsequent_indent=_INDENT * 2,
                )
            )
        lines.append("")
    for warning in report["warnings"]:
        text = f"warning: {warning['message']}"
        lines.extend(textwrap.wrap(text, width=width, subsequent_indent=_INDENT))
    return "\n".join(lines).rstrip() + "\n"
