"""Rules on the weights' spectra: still random, the tail exponent, conv operator norms.

- random_spectrum: no singular value above the Marchenko–Pastur spike threshold
  (the bulk edge plus a Tracy–Widom margin) at the last kept step, after
  `min_steps` steps since its first spectrum: the layer is not learning.
- alpha_range: the power-law tail exponent α outside [`low`, `high`]
  (WeightWatcher's heuristic), at the last kept step.
- operator_norm_outlier: a conv layer's operator norm over `factor` × the
  median of its `neighbours` conv layers on each side (in the model's order).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deepscope.findings.evidence import RunEvidence, SpectrumLayer
from deepscope.findings.finding import Evidence, Finding
from deepscope.findings.wording import num, times


def _full(layer: SpectrumLayer) -> bool:
    return not layer.last.error and layer.last.coverage == "full"


def check_random(evidence: RunEvidence, settings: Mapping[str, float], severity: str):
    findings = []
    for layer in evidence.spectra:
        spikes = layer.last.metrics.get("num_above_mp_edge", np.nan)
        if not _full(layer) or not np.isfinite(spikes) or spikes > 0:
            continue
        trained = layer.last.step - layer.first.step
        if trained < settings["min_steps"]:
            continue
        since = layer.last.unchanged_since
        frozen = (
            f" Its weight has not changed since step {since}: the layer is frozen or gets "
            "no gradient."
            if since is not None
            else ""
        )
        findings.append(
            Finding(
                rule="random_spectrum",
                severity=severity,
                run=evidence.run,
                layer=layer.layer,
                message=(
                    f"{layer.layer}: after {trained} steps its spectrum is still "
                    "indistinguishable from random: no singular value above the "
                    "Marchenko–Pastur edge "
                    f"({num(layer.last.metrics.get('mp_spike_threshold', np.nan))}) at step "
                    f"{layer.last.step}.{frozen}"
                ),
                advice=(
                    "Check that the layer is trained: requires_grad, that the optimizer "
                    "holds it, that a gradient reaches it (a dead or saturated layer after "
                    "it blocks it); or raise its learning rate."
                ),
                first_step=layer.first.step,
                last_step=layer.last.step,
                evidence=Evidence("spectrum", layer.tag, layer.last.step),
                numbers={"steps": float(trained), "spikes": float(spikes)},
            )
        )
    return findings


def check_alpha(evidence: RunEvidence, settings: Mapping[str, float], severity: str):
    findings = []
    for layer in evidence.spectra:
        alpha = layer.last.metrics.get("alpha", np.nan)
        if not _full(layer) or not np.isfinite(alpha):
            continue
        if settings["low"] <= alpha <= settings["high"]:
            continue
        low = alpha < settings["low"]
        findings.append(
            Finding(
                rule="alpha_range",
                severity=severity,
                run=evidence.run,
                layer=layer.layer,
                message=(
                    f"{layer.layer}: the power-law exponent of its eigenvalues' tail is "
                    f"α = {alpha:.2f} at step {layer.last.step}, "
                    f"{'below' if low else 'above'} WeightWatcher's "
                    f"[{num(settings['low'])}, {num(settings['high'])}] "
                    f"({'over' if low else 'under'}-trained by its heuristic)."
                ),
                advice=(
                    "A heuristic: compare with the layers around it and with the validation "
                    + (
                        "loss; over-training often comes with a too high learning rate."
                        if low
                        else "loss; an under-trained layer may need more steps or a higher rate."
                    )
                ),
                first_step=layer.last.step,
                last_step=layer.last.step,
                evidence=Evidence("spectrum", layer.tag, layer.last.step),
                numbers={"alpha": float(alpha)},
            )
        )
    return findings


def check_operator_norms(evidence: RunEvidence, settings: Mapping[str, float], severity: str):
    order = evidence.layer_order()
    convs = [
        layer
        for layer in evidence.spectra
        if layer.last.operator_norm is not None and np.isfinite(layer.last.operator_norm)
    ]
    convs.sort(key=lambda layer: (order.get(layer.layer, 1 << 30), layer.layer))
    reach = max(1, int(settings["neighbours"]))
    findings = []
    for i, layer in enumerate(convs):
        around = convs[max(0, i - reach) : i] + convs[i + 1 : i + 1 + reach]
        if len(around) < 2:
            continue
        median = float(np.median([other.last.operator_norm for other in around]))
        norm = float(layer.last.operator_norm)
        if median <= 0 or norm < settings["factor"] * median:
            continue
        findings.append(
            Finding(
                rule="operator_norm_outlier",
                severity=severity,
                run=evidence.run,
                layer=layer.layer,
                message=(
                    f"{layer.layer}: its operator norm (Lipschitz constant) is {num(norm)} at "
                    f"step {layer.last.step}, {times(norm / median)} the median of its "
                    f"{len(around)} neighbouring conv layers ({num(median)})."
                ),
                advice=(
                    "Check this layer's initialisation and learning rate; spectral "
                    "normalisation or weight decay bound it."
                ),
                first_step=layer.last.step,
                last_step=layer.last.step,
                evidence=Evidence("spectrum", layer.tag, layer.last.step),
                numbers={"operator_norm": norm, "neighbours_median": median},
            )
        )
    return findings
