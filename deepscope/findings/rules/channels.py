"""Rules on channel correlations: redundant channels, and two networks that do not match.

- redundant_channels: at the last kept step of a within-layer series, the share
  of channels with another channel of |ρ| > `rho` (Li et al. 2016).
- seeds_disagree: a cross-network series (two seeds, `deepscope.compare`)
  whose one-to-one matching's mean |ρ| is below `matched`, in the first
  `early` share of the compared layers (in the model's order, else by name).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from deepscope.findings.evidence import RunEvidence
from deepscope.findings.finding import Evidence, Finding
from deepscope.findings.wording import num


def redundant_channels(matrix: np.ndarray, rho: float) -> tuple[int, int]:
    """(channels with a partner of |ρ| > rho, pairs so) of a C × C correlation matrix;
    channels with a NaN row (dead) count for neither."""
    magnitude = np.abs(np.asarray(matrix, dtype=np.float64))
    np.fill_diagonal(magnitude, 0.0)
    above = np.nan_to_num(magnitude, nan=0.0) > rho
    return int(above.any(axis=1).sum()), int(np.triu(above, 1).sum())


def check_redundant(evidence: RunEvidence, settings: Mapping[str, float], severity: str):
    findings = []
    for layer in evidence.correlations:
        if layer.cross or layer.matrix is None or layer.matrix.shape[0] < 2:
            continue
        channels = layer.matrix.shape[0]
        redundant, pairs = redundant_channels(layer.matrix, settings["rho"])
        if redundant < settings["fraction"] * channels:
            continue
        findings.append(
            Finding(
                rule="redundant_channels",
                severity=severity,
                run=evidence.run,
                layer=layer.layer,
                message=(
                    f"{layer.layer}: {redundant} of its {channels} channels "
                    f"({redundant / channels:.0%}) have a partner with |ρ| > "
                    f"{num(settings['rho'])} ({pairs} pairs) at step {layer.step}: they "
                    "carry the same feature."
                ),
                advice=(
                    "The layer is wider than it needs, or its channels collapsed onto each "
                    "other: try fewer channels, a different initialisation, or a lower "
                    "learning rate; dropout and weight decay decorrelate."
                ),
                first_step=layer.step,
                last_step=layer.step,
                evidence=Evidence("correlation", layer.tag, layer.step),
                numbers={"redundant_channels": float(redundant), "channels": float(channels)},
            )
        )
    return findings


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def check_seeds(evidence: RunEvidence, settings: Mapping[str, float], severity: str):
    order = evidence.layer_order()
    cross = [layer for layer in evidence.correlations if layer.cross]
    cross.sort(key=lambda layer: (order.get(layer.layer, 1 << 30), _natural(layer.layer)))
    early = cross[: max(1, math.ceil(settings["early"] * len(cross)))] if cross else []
    findings = []
    for layer in early:
        mean = layer.bipartite_mean
        if mean is None or not np.isfinite(mean) or mean >= settings["matched"]:
            continue
        findings.append(
            Finding(
                rule="seeds_disagree",
                severity=severity,
                run=evidence.run,
                layer=layer.layer,
                message=(
                    f"{layer.layer}: the channels of {layer.row_name or 'network A'} and "
                    f"{layer.col_name or 'network B'} match with mean |ρ| {mean:.2f} "
                    f"(one-to-one matching) at step {layer.step}, under "
                    f"{num(settings['matched'])}; early layers of two seeds usually learn "
                    "the same features."
                ),
                advice=(
                    "One of the two runs may not have learnt this layer's features: compare "
                    "their losses, and look at the layer's spectrum and dead units in each run."
                ),
                first_step=layer.step,
                last_step=layer.step,
                evidence=Evidence("correlation", layer.tag, layer.step),
                numbers={"bipartite_mean": float(mean)},
            )
        )
    return findings
