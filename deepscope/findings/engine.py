"""Run every rule in force over one run's evidence: findings, what was checked, what failed.

A rule that raises does not take the others down: its failure is a warning of
the result (findings are read-side advice; a bug in one rule must not hide the
rest, nor answer 500).
"""

from __future__ import annotations

import dataclasses
import logging

from deepscope.findings import thresholds
from deepscope.findings.evidence import RunEvidence
from deepscope.findings.finding import Finding
from deepscope.findings.rules import (
    channels,
    depth,
    gradient_spikes,
    learning_rate,
    non_finite,
    rank_collapse,
    spectra,
    units,
)

logger = logging.getLogger(__name__)

# Each rule of thresholds.RULES and its check(evidence, settings, severity).
RULE_CHECKS = {
    "non_finite": non_finite.check,
    "learning_rate_network": learning_rate.check_network,
    "learning_rate_parameter": learning_rate.check_parameter,
    "gradient_spike": gradient_spikes.check,
    "activation_depth": depth.check,
    "dead_units": units.check_dead,
    "saturated_units": units.check_saturated,
    "rank_collapse": rank_collapse.check,
    "random_spectrum": spectra.check_random,
    "alpha_range": spectra.check_alpha,
    "operator_norm_outlier": spectra.check_operator_norms,
    "redundant_channels": channels.check_redundant,
    "seeds_disagree": channels.check_seeds,
}

# Which evidence each kind a rule reads gives.
_KIND_EVIDENCE = {
    "update_ratios": "ratios",
    "layer_statistics": "statistics",
    "spectrum": "spectra",
    "correlation": "correlations",
    "layer_values": "layer_values",
    "jacobian": "jacobians",
}


@dataclasses.dataclass
class RunResult:
    """One run's findings (sorted), the rules that had something to read, and warnings."""

    findings: list[Finding]
    checked: list[str]
    warnings: list[str]


# Rules that need more than their kinds' series: what exactly they read.
_NEEDS = {
    "operator_norm_outlier": lambda e: any(s.last.operator_norm is not None for s in e.spectra),
    "redundant_channels": lambda e: any(not c.cross for c in e.correlations),
    "seeds_disagree": lambda e: any(c.cross for c in e.correlations),
}


def has_input(rule: thresholds.Rule, evidence: RunEvidence) -> bool:
    """Whether the run logged what the rule reads (its kinds; for some, their particular
    series: conv operator norms, within-layer or cross-network correlations)."""
    if rule.name in _NEEDS:
        return _NEEDS[rule.name](evidence)
    return any(getattr(evidence, _KIND_EVIDENCE[kind]) for kind in rule.reads)


def run_rules(evidence: RunEvidence, settings: thresholds.Settings) -> RunResult:
    findings: list[Finding] = []
    checked: list[str] = []
    warnings = list(evidence.warnings)
    folded: frozenset = frozenset()
    if "learning_rate_network" not in settings.off:
        try:
            folded = frozenset(
                learning_rate.network_directions(evidence, settings["learning_rate_network"])
            )
        except Exception:  # the network rule's own failure is reported below
            folded = frozenset()
    for rule in thresholds.RULES:
        if rule.name in settings.off or not has_input(rule, evidence):
            continue
        checked.append(rule.name)
        check = RULE_CHECKS[rule.name]
        severity = settings.severities[rule.name]
        try:
            if rule.name == "learning_rate_parameter":
                found = check(evidence, settings[rule.name], severity, folded)
            else:
                found = check(evidence, settings[rule.name], severity)
        except Exception as error:
            logger.exception(
                "deepscope findings: rule %s failed on run %r", rule.name, evidence.run
            )
            warnings.append(
                f"rule {rule.name} could not check run {evidence.run!r} "
                f"({type(error).__name__}: {error}); the other rules' findings stand"
            )
            continue
        findings.extend(found)
    findings.sort(key=Finding.sort_key)
    return RunResult(findings, checked, warnings)
