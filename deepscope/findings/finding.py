"""One finding: what a rule saw in one run, where, when, and what to try."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# From the most to the least severe; `severity_rank` orders them.
SEVERITIES = ("error", "warning", "info")


def severity_rank(severity: str) -> int:
    """0 for "error" (the most severe) ... 2 for "info"; ValueError naming the choices."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(
            f"unknown severity {severity!r}: choose one of {', '.join(SEVERITIES)}"
        ) from None


def json_number(value: float) -> float | str:
    """A number for strict JSON: non-finite ones spelled "NaN", "Infinity", "-Infinity"."""
    value = float(value)
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Where the numbers behind a finding are shown: a kind's view of (run, tag) at `step`.

    `name`: the column within a tensor series (a parameter of update ratios, a row of
    layer statistics); `statistic` and `part`: layer statistics' chart that shows it.
    """

    kind: str
    tag: str
    step: int
    name: str | None = None
    statistic: str | None = None
    part: str | None = None

    def to_json(self) -> dict:
        body: dict[str, Any] = {"kind": self.kind, "tag": self.tag, "step": self.step}
        for field in ("name", "statistic", "part"):
            value = getattr(self, field)
            if value is not None:
                body[field] = value
        return body


@dataclasses.dataclass(frozen=True)
class Finding:
    """A rule's verdict on one layer (or the whole network: `layer` "") of one run.

    `message`: a sentence with the numbers and the step range; `advice`: what to
    try; `numbers`: the values the message cites (JSON numbers), for scripts.
    """

    rule: str
    severity: str
    run: str
    layer: str
    message: str
    advice: str
    first_step: int
    last_step: int
    evidence: Evidence
    numbers: dict[str, float] = dataclasses.field(default_factory=dict)

    def sort_key(self) -> tuple:
        """Most severe first; within a severity, in the rules table's order (causes before
        the symptoms they bring: non-finite values, the learning rate, spikes, ... ), then
        the earliest, then by run and layer."""
        from deepscope.findings.thresholds import RULE_ORDER

        return (
            severity_rank(self.severity),
            RULE_ORDER.get(self.rule, len(RULE_ORDER)),
            self.first_step,
            self.run,
            self.layer,
        )

    def to_json(self) -> dict:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "run": self.run,
            "layer": self.layer,
            "message": self.message,
            "advice": self.advice,
            "first_step": self.first_step,
            "last_step": self.last_step,
            "evidence": self.evidence.to_json(),
            "numbers": {key: json_number(value) for key, value in self.numbers.items()},
        }
