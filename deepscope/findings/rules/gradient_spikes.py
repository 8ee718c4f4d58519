"""Gradient-norm spikes: a norm above `factor` × its rolling median, and the layer behind it.

The network's gradient norm (the root of the sum of the parameters' squared
norms) is compared with the median of its previous `window` measurements;
at a spike, the layer is the parameter whose own norm rose most over its own
median (`spike_source`: the largest rise of its squared norm, which the network's
squared norm sums). Spikes of single parameters that leave the network's norm alone are
reported as "info" (at most `_SOLO_SHOWN`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from deepscope.findings.evidence import RunEvidence
from deepscope.findings.finding import Evidence, Finding
from deepscope.findings.wording import num, steps, times

_SOLO_SHOWN = 5


def _rise(ratio: float) -> str:
    return times(ratio) if np.isfinite(ratio) else "(no history before it)"


def rolling_ratio(values: np.ndarray, window: int, min_history: int) -> np.ndarray:
    """values [S, ...] over the median of each row's previous `window` finite values
    (NaN where fewer than `min_history` of them are finite)."""
    values = np.asarray(values, dtype=np.float64)
    padded = np.concatenate([np.full((window, *values.shape[1:]), np.nan), values[:-1]])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # [S, ..., w]
    enough = np.isfinite(windows).sum(axis=-1) >= min_history
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmedian's "All-NaN slice"
        medians = np.nanmedian(windows, axis=-1)
        return np.where(enough & (medians > 0), values / medians, np.nan)


def spike_source(norms: np.ndarray, ratios: np.ndarray) -> int:
    """The parameter whose squared gradient norm rose most over its usual one (its rolling
    median: norm² · (1 − 1/ratio²)) at a spike of the network's norm, whose square is
    their sum: the layer the spike comes from, not a tiny bias that rose more in ratio.
    Parameters without a history (ratio NaN) count by their whole squared norm."""
    norms = np.nan_to_num(np.asarray(norms, dtype=np.float64), nan=0.0)
    with np.errstate(all="ignore"):
        usual = np.where(np.isfinite(ratios) & (ratios > 0), norms / ratios, 0.0)
    return int(np.argmax(norms**2 - usual**2))


def check(evidence: RunEvidence, settings: Mapping[str, float], severity: str) -> list[Finding]:
    factor, window = settings["factor"], max(1, int(settings["window"]))
    min_history = max(1, int(settings["min_history"]))
    findings: list[Finding] = []
    for series in evidence.statistics:
        norms = series.parameters.column("grad_norm")
        if norms is None or norms.shape[0] < min_history + 1:
            continue
        finite = np.where(np.isfinite(norms), norms, np.nan)
        total = np.sqrt(np.nansum(finite**2, axis=1))
        total[~np.isfinite(finite).any(axis=1)] = np.nan
        network = rolling_ratio(total, window, min_history)
        per_parameter = rolling_ratio(finite, window, min_history)
        spikes = np.flatnonzero(np.nan_to_num(network) > factor)
        names = series.parameters.names
        if spikes.size:
            first = int(spikes[0])
            biggest = int(spikes[np.argmax(network[spikes])])
            culprit = spike_source(finite[first], per_parameter[first])
            name = names[culprit]
            s_first, s_last = int(series.steps[first]), int(series.steps[spikes[-1]])
            findings.append(
                Finding(
                    rule="gradient_spike",
                    severity=severity,
                    run=evidence.run,
                    layer=name,
                    message=(
                        f"{name}: the gradient norm spiked {len(spikes)} time(s) in "
                        f"{steps(s_first, s_last)}, up to {times(float(network[biggest]))} "
                        f"its rolling median (at step {int(series.steps[biggest])}); the "
                        f"first spike starts in {name}, whose own norm rose "
                        f"{_rise(float(per_parameter[first, culprit]))} "
                        f"(to {num(float(finite[first, culprit]))})."
                    ),
                    advice=(
                        "Clip gradients (torch.nn.utils.clip_grad_norm_), lower the learning "
                        "rate or add warm-up; look at the batch of that step (an outlier or "
                        "a bad label) and at this layer's input scale."
                    ),
                    first_step=s_first,
                    last_step=s_last,
                    evidence=Evidence(
                        "layer_statistics",
                        series.tag,
                        s_first,
                        name=name,
                        statistic="grad_norm",
                        part="parameters",
                    ),
                    numbers={
                        "spikes": float(len(spikes)),
                        "max_ratio": float(network[biggest]),
                        "layer_ratio": float(np.nan_to_num(per_parameter[first, culprit])),
                    },
                )
            )
            continue
        solo = np.nan_to_num(per_parameter, nan=0.0) > factor
        hit = np.flatnonzero(solo.any(axis=0))
        ranked = sorted(hit, key=lambda j: -float(np.max(per_parameter[solo[:, j], j])))
        for j in ranked[:_SOLO_SHOWN]:
            rows = np.flatnonzero(solo[:, j])
            peak = float(np.max(per_parameter[rows, j]))
            s_first, s_last = int(series.steps[rows[0]]), int(series.steps[rows[-1]])
            findings.append(
                Finding(
                    rule="gradient_spike",
                    severity="info",
                    run=evidence.run,
                    layer=names[j],
                    message=(
                        f"{names[j]}: its gradient norm spiked {len(rows)} time(s) in "
                        f"{steps(s_first, s_last)}, up to {times(peak)} its rolling median; "
                        "the network's norm did not."
                    ),
                    advice="Usually harmless; if it recurs, clip this layer's gradients.",
                    first_step=s_first,
                    last_step=s_last,
                    evidence=Evidence(
                        "layer_statistics",
                        series.tag,
                        s_first,
                        name=names[j],
                        statistic="grad_norm",
                        part="parameters",
                    ),
                    numbers={"spikes": float(len(rows)), "max_ratio": peak},
                )
            )
    return findings
