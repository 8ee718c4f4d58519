"""Non-finite values of any kind: where and when the first NaN or Inf appeared.

One finding per run: the earliest non-finite value found (update ratios,
activations, gradient and weight norms, spectra, correlations); the other
kinds' first steps are named in the message. Within one step, values are
ordered as a training step makes them, so that the layer named is where the
trouble starts rather than where it spread to: the weights the forward pass
used (their norms), then the activations in forward order, then the
gradients in backward order (the last layer's first), then what the
optimizer's step left (update ratios, spectra, probe correlations).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deepscope.findings.evidence import RunEvidence, StatisticsSeries
from deepscope.findings.finding import Evidence, Finding


def _first(mask: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first True in row-major order of a [S, R] mask, or None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return None
    row = int(rows[0])
    return row, int(np.flatnonzero(mask[row])[0])


# Phases of a training step, in the order they happen (see the module docstring).
WEIGHTS, FORWARD, BACKWARD, AFTER_STEP = range(4)
_UNKNOWN = 1 << 30  # a layer not in the model's order: after every known one


def _candidates(evidence: RunEvidence, order: dict[str, int]):
    """(step, phase, place, layer, what, Evidence) of each kind's first non-finite value;
    `place` orders layers within a phase."""
    for series in evidence.ratios:
        bad = ~series.unmeasured & ~np.isfinite(series.values)
        hit = _first(bad)
        if hit is not None:
            step, name = int(series.steps[hit[0]]), series.names[hit[1]]
            yield (
                step,
                AFTER_STEP,
                order.get(name.rsplit(".", 1)[0], _UNKNOWN),
                name,
                "update ratio",
                Evidence("update_ratios", series.tag, step, name=name),
            )
    for series in evidence.layer_values:
        hit = _first(~series.unmeasured & ~np.isfinite(series.values))
        if hit is not None:
            step, name = int(series.steps[hit[0]]), series.names[hit[1]]
            yield (
                step,
                AFTER_STEP,
                order.get(name.split(":", 1)[0], _UNKNOWN),
                name,
                f"layer value {series.tag!r}",
                Evidence("layer_values", series.tag, step, name=name),
            )
    for series in evidence.jacobians:
        for step, maps, bad in zip(series.steps, series.maps, series.non_finite):
            if bad.any():
                names = [m for m, b in zip(maps, bad) if b]
                # A module's map names where; the whole network's only when alone.
                name = min(names, key=lambda n: order.get(n, _UNKNOWN) if n else _UNKNOWN + 1)
                yield (
                    int(step),
                    AFTER_STEP,
                    order.get(name, _UNKNOWN),
                    name or "the network",
                    "Jacobian singular values",
                    Evidence("jacobian", series.tag, int(step), name=name),
                )
                break
    for series in evidence.statistics:
        yield from _statistics_candidates(series, order)
    for layer in evidence.spectra:
        if layer.first_non_finite is not None:
            yield (
                layer.first_non_finite,
                AFTER_STEP,
                order.get(layer.layer, _UNKNOWN),
                layer.layer,
                "weight (its spectrum)",
                Evidence("spectrum", layer.tag, layer.first_non_finite),
            )
    for layer in evidence.correlations:
        if layer.non_finite:
            yield (
                layer.step,
                AFTER_STEP,
                order.get(layer.layer, _UNKNOWN),
                layer.layer,
                f"activations ({layer.non_finite} values left out of its correlations at its "
                "newest kept step; earlier steps not read)",
                Evidence("correlation", layer.tag, layer.step),
            )


def _statistics_candidates(series: StatisticsSeries, order: dict[str, int]):
    fractions = series.activations.column("non_finite_fraction")
    if fractions is not None:
        bad = np.nan_to_num(fractions, nan=0.0) > 0
        # Of the first step with any, the row first in the model.
        rows = np.flatnonzero(bad.any(axis=1))
        if rows.size:
            row = int(rows[0])
            names = [series.activations.names[j] for j in np.flatnonzero(bad[row])]
            name = min(names, key=lambda n: order.get(n.split(":", 1)[0], _UNKNOWN))
            step = int(series.steps[row])
            share = fractions[row, series.activations.names.index(name)]
            yield (
                step,
                FORWARD,
                order.get(name.split(":", 1)[0], _UNKNOWN),
                name,
                f"output ({share:.0%} of its values non-finite)",
                Evidence(
                    "layer_statistics",
                    series.tag,
                    step,
                    name=name,
                    statistic="non_finite_fraction",
                    part="activations",
                ),
            )
    for statistic, what in (("grad_norm", "gradient"), ("weight_norm", "weight")):
        values = series.parameters.column(statistic)
        if values is None:
            continue
        measured = ~series.parameters.absent
        if statistic == "grad_norm":
            measured &= ~series.parameters.no_gradient
        bad = measured & ~np.isfinite(np.where(measured, values, 0.0))
        rows = np.flatnonzero(bad.any(axis=1))
        if not rows.size:
            continue
        row = int(rows[0])
        names = [series.parameters.names[j] for j in np.flatnonzero(bad[row])]
        # Gradients: the backward pass reaches the last layer first.
        backward = -1 if statistic == "grad_norm" else 1
        name = min(names, key=lambda n: backward * order.get(n.rsplit(".", 1)[0], _UNKNOWN))
        step = int(series.steps[row])
        yield (
            step,
            BACKWARD if statistic == "grad_norm" else WEIGHTS,
            backward * order.get(name.rsplit(".", 1)[0], _UNKNOWN),
            name,
            f"{what} norm",
            Evidence(
                "layer_statistics",
                series.tag,
                step,
                name=name,
                statistic=statistic,
                part="parameters",
            ),
        )


def check(evidence: RunEvidence, settings: Mapping[str, float], severity: str) -> list[Finding]:
    order = evidence.layer_order()
    found = sorted(_candidates(evidence, order), key=lambda c: c[:3])
    if not found:
        return []
    step, _, _, layer, what, where = found[0]
    others = {}
    for other_step, _, _, other_layer, other_what, _ in found[1:]:
        kind = other_what.split(" (")[0]
        others.setdefault(kind, (other_step, other_layer))
    also = "; ".join(f"{kind} of {name} from step {s}" for kind, (s, name) in others.items())
    return [
        Finding(
            rule="non_finite",
            severity=severity,
            run=evidence.run,
            layer=layer,
            message=(
                f"{layer}: the first non-finite value (NaN or Inf) is its {what}, at step "
                f"{step}" + (f"; also non-finite: {also}." if also else ".")
            ),
            advice=(
                "Look at what this layer computed at that step: lower the learning rate, "
                "clip gradients, check for a division by zero, log of zero or an overflow "
                "in float16 (use bfloat16 or a GradScaler), or bad input data."
            ),
            first_step=step,
            last_step=max(s for s, *_ in found),
            evidence=where,
            numbers={"step": float(step)},
        )
    ]
