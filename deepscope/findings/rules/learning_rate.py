"""Is the learning rate right? Update ratios against the 1e-3 rule of thumb (CS231n).

Per parameter: off by more than `factor` either way in `most` of its last
`recent` measurements. The whole network: `share` of the judged parameters off
in the same direction (then the per-parameter findings of that direction are
folded into it). Biases and the gains of normalisation layers (by their type in
the layer statistics, else by name: LayerNorm, normalization, bn1, ln_f, ...)
are not judged unless `biases` is 1: their ratios are noisy and small by nature.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from deepscope.findings.evidence import ColumnSeries, RunEvidence
from deepscope.findings.finding import Evidence, Finding
from deepscope.findings.wording import num, steps, times

# A module named as a normalisation layer (LayerNorm, normalization, bn1, ln_f, norm1...):
# its gains are judged as biases are, also where no layer statistics give its type.
_NORM_NAME = re.compile(r"norm|^bn\d*$|^ln(_\w+)?\d*$", re.IGNORECASE)


def _judged(name: str, module_types: Mapping[str, str], biases: bool) -> bool:
    if biases:
        return True
    module, _, leaf = name.rpartition(".")
    if "bias" in leaf:  # bias, in_proj_bias, bias_ih_l0, ...
        return False
    if "Norm" in module_types.get(module, ""):
        return False
    return not _NORM_NAME.search(module.rpartition(".")[2])


def _recent(series: ColumnSeries, column: int, recent: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the column's last `recent` finite measured values."""
    values = series.values[:, column]
    good = ~series.unmeasured[:, column] & np.isfinite(values)
    rows = np.flatnonzero(good)[-recent:]
    return series.steps[rows], values[rows].astype(np.float64)


def _module_types(evidence: RunEvidence) -> dict[str, str]:
    types: dict[str, str] = {}
    for series in evidence.statistics:
        for name, kind in zip(series.activations.names, series.activations.types):
            types.setdefault(name.split(":", 1)[0], kind)
    return types


def _verdicts(series: ColumnSeries, settings: Mapping[str, float], types: dict[str, str]):
    """Per judged parameter: (name, direction +1/-1/0, median, off count, measured, steps)."""
    target, factor = settings["target"], settings["factor"]
    recent, most = max(1, int(settings["recent"])), settings["most"]
    biases = bool(settings.get("biases", 0))
    for j, name in enumerate(series.names):
        if not _judged(name, types, biases):
            continue
        when, values = _recent(series, j, recent)
        if not values.size:
            continue
        high = int((values > target * factor).sum())
        low = int((values < target / factor).sum())
        direction = 1 if high >= most * values.size else (-1 if low >= most * values.size else 0)
        if direction < 0 and _peak(series, j, recent) >= target / factor:
            direction = DECAYED  # in range earlier: a schedule that decayed, not a bad rate
        off = high if direction > 0 else low
        yield name, direction, float(np.median(values)), off, values.size, when


# A parameter whose ratios are low now but were within the rule's range earlier in the
# run: the learning rate decayed (cosine, step or linear schedules end near 0), which is
# no fault; the network rule says so as "info", the per-parameter rule not at all.
DECAYED = -2
_TINY = 1e-30  # a floor for a median ratio of 0 (as factor, it divides)


def _peak(series: ColumnSeries, column: int, window: int) -> float:
    """The largest median of `window` consecutive finite measured values of the column (its
    level at its busiest time), 0 when it has fewer."""
    values = series.values[:, column].astype(np.float64)
    values = values[~series.unmeasured[:, column] & np.isfinite(values)]
    if values.size < window:
        return float(np.median(values)) if values.size else 0.0
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    return float(np.median(windows, axis=1).max())


def _evidence(series: ColumnSeries, step: int, name: str) -> Evidence:
    return Evidence("update_ratios", series.tag, step, name=name)


def _network_off(evidence: RunEvidence, settings: Mapping[str, float]):
    """(series, direction, verdicts off that way, parameters judged) for each series and
    direction in which `share` of the judged parameters are off: the network rule's cases."""
    types = _module_types(evidence)
    for series in evidence.ratios:
        verdicts = list(_verdicts(series, settings, types))
        if len(verdicts) < 2:
            continue
        for direction in (1, -1, DECAYED):
            off = [v for v in verdicts if v[1] == direction]
            if off and len(off) >= settings["share"] * len(verdicts):
                yield series, direction, off, len(verdicts)


def check_network(evidence: RunEvidence, settings: Mapping[str, float], severity: str):
    findings = []
    for series, direction, off, judged in _network_off(evidence, settings):
        if direction == DECAYED:
            findings.append(_decayed(evidence, series, off, judged, settings))
            continue
        medians = np.array([v[2] for v in off])
        factor = max(float(np.median(medians)), _TINY) / settings["target"]
        worst = off[int(np.argmax(medians) if direction > 0 else np.argmin(medians))]
        first = int(min(v[5][0] for v in off))
        last = int(max(v[5][-1] for v in off))
        word = "above" if direction > 0 else "below"
        what = times(factor if direction > 0 else 1 / factor)
        step_factor = settings["factor"] if direction > 0 else 1 / settings["factor"]
        bound = settings["target"] * step_factor
        findings.append(
            Finding(
                rule="learning_rate_network",
                severity=severity,
                run=evidence.run,
                layer="",
                message=(
                    f"The whole network's updates are {what} {word} the rule of thumb: "
                    f"{len(off)} of {judged} parameters have ‖ΔW‖/‖W‖ "
                    f"{'over' if direction > 0 else 'under'} {num(bound)} "
                    f"(median {num(float(np.median(medians)))}, rule of thumb "
                    f"{num(settings['target'])}) in {steps(first, last)}; the farthest: "
                    f"{worst[0]} ({num(worst[2])})."
                ),
                advice=(
                    f"{'Lower' if direction > 0 else 'Raise'} the learning rate about "
                    f"{what} (or use a warm-up / schedule); check the optimizer's "
                    "settings (lr, momentum, eps) before anything else."
                ),
                first_step=first,
                last_step=last,
                evidence=_evidence(series, last, worst[0]),
                numbers={
                    "factor": factor,
                    "median_ratio": float(np.median(medians)),
                    "parameters_off": float(len(off)),
                    "parameters": float(judged),
                },
            )
        )
    return findings


def _decayed(evidence, series, off, judged: int, settings) -> Finding:
    """The network's ratios fell below the rule's range after being in it: info."""
    medians = np.array([v[2] for v in off])
    median = max(float(np.median(medians)), _TINY)
    first = int(min(v[5][0] for v in off))
    last = int(max(v[5][-1] for v in off))
    worst = off[int(np.argmin(medians))]
    return Finding(
        rule="learning_rate_network",
        severity="info",
        run=evidence.run,
        layer="",
        message=(
            f"The whole network's updates have fallen to {times(settings['target'] / median)} "
            f"below the rule of thumb: {len(off)} of {judged} parameters have median "
            f"‖ΔW‖/‖W‖ {num(median)} in {steps(first, last)}, after being within "
            f"{times(settings['factor'])} of {num(settings['target'])} earlier in the run: a "
            "learning-rate schedule that decayed."
        ),
        advice=(
            "Nothing to fix if the schedule is meant to end low; if not, the learning rate "
            "decays too early or too far."
        ),
        first_step=first,
        last_step=last,
        evidence=_evidence(series, last, worst[0]),
        numbers={"median_ratio": median, "parameters_off": float(len(off))},
    )


def network_directions(evidence: RunEvidence, settings: Mapping[str, float]) -> set:
    """(tag, direction) pairs the network rule reports, so the per-parameter rule folds them."""
    return {(series.tag, direction) for series, direction, _, _ in _network_off(evidence, settings)}


def check_parameter(
    evidence: RunEvidence,
    settings: Mapping[str, float],
    severity: str,
    folded: frozenset = frozenset(),
):
    findings = []
    types = _module_types(evidence)
    for series in evidence.ratios:
        for name, direction, median, off, measured, when in _verdicts(series, settings, types):
            if direction in (0, DECAYED) or (series.tag, direction) in folded:
                continue
            factor = max(median, _TINY) / settings["target"]
            what = times(factor if direction > 0 else 1 / factor)
            word = "above" if direction > 0 else "below"
            first, last = int(when[0]), int(when[-1])
            advice = (
                f"Lower this parameter's learning rate about {what} (its own parameter "
                "group), or clip its gradients; a layer that needs a much smaller rate "
                "than the rest often has a badly scaled input or initialisation."
                if direction > 0
                else f"Raise this parameter's learning rate about {what} (its own parameter "
                "group), or check that it gets a useful gradient (frozen, detached, or "
                "behind a dead or saturated layer)."
            )
            findings.append(
                Finding(
                    rule="learning_rate_parameter",
                    severity=severity,
                    run=evidence.run,
                    layer=name,
                    message=(
                        f"{name}: updates are {what} {word} the rule of thumb: median "
                        f"‖ΔW‖/‖W‖ {num(median)} (rule of thumb "
                        f"{num(settings['target'])}), off by over {times(settings['factor'])} "
                        f"in {off} of its last {measured} measurements ({steps(first, last)})."
                    ),
                    advice=advice,
                    first_step=first,
                    last_step=last,
                    evidence=_evidence(series, last, name),
                    numbers={"factor": factor, "median_ratio": median},
                )
            )
    return findings
