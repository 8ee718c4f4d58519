"""Dead and saturated units, from the layer statistics of the measured batches.

Dead: a ReLU layer whose share of channels zero on every sample of the batch
(`dead_fraction`) is at least `fraction` in `most` of its last `recent`
measurements. Saturated: a bounded activation (tanh, sigmoid, ...) whose
share of values at a bound (`saturated_fraction`) is so, except ReLU6 (its
zero side counts as a bound) and the network's last output (a confident
classifier's sigmoid). Measurements of an output with non-finite values are
left out (those are the non_finite rule's).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deepscope.findings.evidence import RunEvidence
from deepscope.findings.finding import Evidence, Finding
from deepscope.findings.wording import steps

# Activations that are exactly zero on the negative side: a unit can die.
DYING_TYPES = frozenset({"ReLU", "ReLU6", "Threshold", "Hardshrink"})
# Bounded activations whose lower bound is their ordinary zero side (ReLU6: about half
# its values after a BatchNorm): their saturated fraction is no sign of saturation.
ZERO_SIDED = frozenset({"ReLU6"})


def _sustained(values: np.ndarray, settings: Mapping[str, float]):
    """(rows, fraction) of the column's last `recent` measured values when at least
    `most` of them reach `fraction`, else None."""
    rows = np.flatnonzero(np.isfinite(values))[-max(1, int(settings["recent"])) :]
    if not rows.size:
        return None
    above = values[rows] >= settings["fraction"]
    if above.sum() < settings["most"] * rows.size or not above[-1]:
        return None
    return rows, float(np.median(values[rows]))


def _check(
    evidence: RunEvidence,
    settings: Mapping[str, float],
    severity: str,
    rule: str,
    statistic: str,
    wanted,
    describe,
    advice: str,
) -> list[Finding]:
    findings = []
    for series in evidence.statistics:
        part = series.activations
        values = part.column(statistic)
        if values is None:
            continue
        # Non-finite outputs are the non_finite rule's: not dead, not saturated.
        non_finite = part.column("non_finite_fraction")
        if non_finite is not None:
            values = np.where(np.nan_to_num(non_finite, nan=0.0) > 0, np.nan, values)
        last_row = len(part.names) - 1  # the network's output
        for j, (name, kind) in enumerate(zip(part.names, part.types)):
            if not wanted(kind, j == last_row):
                continue
            hit = _sustained(values[:, j], settings)
            if hit is None:
                continue
            rows, median = hit
            first, last = int(series.steps[rows[0]]), int(series.steps[rows[-1]])
            findings.append(
                Finding(
                    rule=rule,
                    severity=severity,
                    run=evidence.run,
                    layer=name,
                    message=describe(name, kind, median, len(rows), steps(first, last)),
                    advice=advice,
                    first_step=first,
                    last_step=last,
                    evidence=Evidence(
                        "layer_statistics",
                        series.tag,
                        last,
                        name=name,
                        statistic=statistic,
                        part="activations",
                    ),
                    numbers={"fraction": median},
                )
            )
    return findings


def check_dead(evidence: RunEvidence, settings: Mapping[str, float], severity: str):
    return _check(
        evidence,
        settings,
        severity,
        "dead_units",
        "dead_fraction",
        lambda kind, output: kind in DYING_TYPES,
        lambda name, kind, f, n, when: (
            f"{name}: {f:.0%} of this {kind}'s channels are dead (zero on every sample of "
            f"the batch), median of its last {n} measurements ({when})."
        ),
        "Lower the learning rate, check the bias initialisation of the layer before it "
        "(a large negative bias kills ReLUs), or use LeakyReLU/GELU or normalisation "
        "before the ReLU.",
    )


def check_saturated(evidence: RunEvidence, settings: Mapping[str, float], severity: str):
    return _check(
        evidence,
        settings,
        severity,
        "saturated_units",
        "saturated_fraction",
        # Not the network's output: a confident classifier's sigmoid is no fault.
        lambda kind, output: kind not in ZERO_SIDED and not output,
        lambda name, kind, f, n, when: (
            f"{name}: {f:.0%} of this {kind or 'layer'}'s values sit at a bound of its "
            f"range (saturated), median of its last {n} measurements ({when})."
        ),
        "Scale down the layer's input (initialisation, normalisation before it), lower "
        "the learning rate, or use a non-saturating activation (ReLU, GELU).",
    )
