"""Rank collapse: a weight's effective rank, or a representation's effective dimension,
fallen below `fraction` of its value at the start (from at least `min_start`).

The weight's effective rank (Roy & Vetterli 2007: the exponential of the
entropy of its normalised singular values) rather than its stable rank: the
stable rank falls by design as a layer learns (a few strong directions grow out
of the random bulk: 34 → 7 on the demo's fc1, whose effective rank goes 63 →
54), while the effective rank falls only when the spectrum itself collapses. A
representation's fall is "info": a trained classifier's features collapse toward
C − 1 dimensions by design (neural collapse, Papyan et al. 2020).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deepscope.findings.evidence import RunEvidence
from deepscope.findings.finding import Evidence, Finding
from deepscope.findings.wording import num, steps

_ADVICE = (
    "Lower the learning rate or the weight decay; a collapsing layer uses ever fewer "
    "directions (too strong regularisation, a dead or saturated input, or training "
    "that is diverging)."
)


def _finding(evidence, severity, layer, what, start, end, first, last, where) -> Finding:
    return Finding(
        rule="rank_collapse",
        severity=severity,
        run=evidence.run,
        layer=layer,
        message=(
            f"{layer}: its {what} fell from {num(start)} to {num(end)} "
            f"({end / start:.0%} of its start) over {steps(first, last)}."
        ),
        advice=_ADVICE,
        first_step=first,
        last_step=last,
        evidence=where,
        numbers={"start": start, "end": end, "share": end / start},
    )


def check(evidence: RunEvidence, settings: Mapping[str, float], severity: str) -> list[Finding]:
    fraction, min_start = settings["fraction"], settings["min_start"]
    findings = []
    for layer in evidence.spectra:
        start = layer.first.metrics.get("effective_rank", np.nan)
        end = layer.last.metrics.get("effective_rank", np.nan)
        if layer.last.error or layer.first.error or not (np.isfinite(start) and np.isfinite(end)):
            continue
        if start >= min_start and end < fraction * start:
            findings.append(
                _finding(
                    evidence,
                    severity,
                    layer.layer,
                    "weight's effective rank",
                    start,
                    end,
                    layer.first.step,
                    layer.last.step,
                    Evidence("spectrum", layer.tag, layer.last.step),
                )
            )
    for series in evidence.statistics:
        values = series.activations.column("effective_dimension")
        if values is None:
            continue
        for j, name in enumerate(series.activations.names):
            rows = np.flatnonzero(np.isfinite(values[:, j]))
            if rows.size < 2:
                continue
            start, end = float(values[rows[0], j]), float(values[rows[-1], j])
            if start >= min_start and end < fraction * start:
                last = int(series.steps[rows[-1]])
                findings.append(
                    _finding(
                        evidence,
                        # A trained classifier's features collapse toward C - 1 dimensions
                        # by design (neural collapse): a representation's fall is "info".
                        "info",
                        name,
                        "output's effective dimension",
                        start,
                        end,
                        int(series.steps[rows[0]]),
                        last,
                        Evidence(
                            "layer_statistics",
                            series.tag,
                            last,
                            name=name,
                            statistic="effective_dimension",
                            part="activations",
                        ),
                    )
                )
    return findings
