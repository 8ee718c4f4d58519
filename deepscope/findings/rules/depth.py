"""Exploding or vanishing activations through depth (Glorot & Bengio 2010; He et al. 2015).

At each measured step, the activations' std of the weight layers (Linear and
Conv outputs) in forward order: the end-to-end ratio (last over first) and the
growth per layer (its (n-1)-th root). Exploding: growth ≥ `growth` and
end-to-end ≥ `end_to_end`, or one layer's std `jump` × its predecessor's
(with no normalisation layer between them, and not into the last weight layer:
`comparable_pairs`); vanishing: the inverse. A condition gone by the last
measured step is "info". Reported when the last
measured step is so, or was at any step (an initialisation that training
partly repaired: the message says until when); the layer is where the
largest jump (or drop) happens, at the worst flagged step.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from deepscope.findings.evidence import RunEvidence
from deepscope.findings.finding import Evidence, Finding
from deepscope.findings.wording import num, steps, times


def is_weight_layer(layer_type: str) -> bool:
    """Linear and convolution modules: where a bad initialisation scales the signal."""
    return "Linear" in layer_type or layer_type.startswith(("Conv", "LazyConv"))


def depth_profile(std: np.ndarray) -> tuple[float, float] | None:
    """(end-to-end ratio, growth per layer) of one step's stds in forward order, or None
    with fewer than two positive finite values."""
    good = std[np.isfinite(std) & (std > 0)]
    if good.size < 2:
        return None
    end_to_end = float(good[-1] / good[0])
    return end_to_end, end_to_end ** (1.0 / (good.size - 1))


def comparable_pairs(types: list[str], columns: list[int]) -> list[tuple[int, int]]:
    """Consecutive weight layers (row indices, forward order) whose stds can be compared
    for a jump: no normalisation layer between them (its output's scale is its own: a
    residual branch's small output before a LayerNorm'd MLP is no jump), and not into
    the last weight layer (logits grow with confidence)."""
    norms = [j for j, t in enumerate(types) if "Norm" in t]
    return [
        (a, b)
        for a, b in zip(columns, columns[1:])
        if b != columns[-1] and not any(a < r < b for r in norms)
    ]


def pair_ratios(std: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """std[b] / std[a] of each pair at one step (NaN where either is missing or zero)."""
    if not pairs:
        return np.zeros(0)
    a, b = (np.array(side) for side in zip(*pairs))
    with np.errstate(all="ignore"):
        ratios = std[b] / std[a]
    good = np.isfinite(std[a]) & np.isfinite(std[b]) & (std[a] > 0) & (std[b] > 0)
    return np.where(good, ratios, np.nan)


def _jump_message(name, before, jump, std_before, std_after, step, e2e, layers) -> str:
    word = "above" if jump > 1 else "below"
    factor = jump if jump > 1 else 1 / jump
    return (
        f"{name}: its output's std is {times(factor)} {word} {before}'s "
        f"({num(float(std_before))} → {num(float(std_after))}) at step {step}, the two "
        "consecutive weight layers; end to end "
        f"{times(e2e if e2e >= 1 else 1 / e2e)} {'up' if e2e >= 1 else 'down'} over {layers} "
        "weight layers."
    )


def check(evidence: RunEvidence, settings: Mapping[str, float], severity: str) -> list[Finding]:
    findings = []
    for series in evidence.statistics:
        part = series.activations
        std = part.column("std")
        if std is None:
            continue
        columns = [j for j, t in enumerate(part.types) if is_weight_layer(t)]
        if len(columns) < settings["min_layers"]:
            continue
        pairs = comparable_pairs(part.types, columns)
        flagged = []
        profiles = []
        for i in range(std.shape[0]):
            row = std[i, columns]
            present = np.isfinite(row) & (row > 0)
            profile = depth_profile(row) if present.sum() >= settings["min_layers"] else None
            profiles.append(profile)
            if profile is None:
                flagged.append(0)
                continue
            e2e, growth = profile
            jumps = pair_ratios(std[i], pairs)
            if growth >= settings["growth"] and e2e >= settings["end_to_end"]:
                flagged.append(1)
            elif growth <= 1 / settings["growth"] and e2e <= 1 / settings["end_to_end"]:
                flagged.append(-1)
            elif np.nanmax(jumps, initial=0.0) >= settings["jump"]:
                flagged.append(1)
            elif np.nanmin(jumps, initial=np.inf) <= 1 / settings["jump"]:
                flagged.append(-1)
            else:
                flagged.append(0)
        measured = [i for i, p in enumerate(profiles) if p is not None]
        hits = [i for i in measured if flagged[i] != 0]
        if not hits:
            continue
        # The direction of the latest flagged step; the worst step of that direction.
        direction = flagged[hits[-1]]
        hits = [i for i in hits if flagged[i] == direction]
        start, end = hits[0], hits[-1]
        last = max(hits, key=lambda i: profiles[i][0] if direction > 0 else -profiles[i][0])
        still = end == measured[-1]
        row = std[last, columns]
        keep = [c for c, v in zip(columns, row) if np.isfinite(v) and v > 0]
        values = std[last, keep]
        jumps = values[1:] / values[:-1]
        k = int(np.argmax(jumps) if direction > 0 else np.argmin(jumps)) + 1
        name, before = part.names[keep[k]], part.names[keep[k - 1]]
        e2e, growth = profiles[last]
        trend = (
            growth >= settings["growth"] and e2e >= settings["end_to_end"]
            if direction > 0
            else growth <= 1 / settings["growth"] and e2e <= 1 / settings["end_to_end"]
        )
        word = "explode" if direction > 0 else "vanish"
        first_step, last_step = int(series.steps[start]), int(series.steps[end])
        worst_step = int(series.steps[last])
        jump = float(jumps[k - 1])
        std_before, std_after = values[k - 1], values[k]
        if not trend:  # one jump: between the comparable pair that jumps most
            ratios = pair_ratios(std[last], pairs)
            p = int(np.nanargmax(ratios) if direction > 0 else np.nanargmin(ratios))
            a, b = pairs[p]
            name, before, jump = part.names[b], part.names[a], float(ratios[p])
            std_before, std_after = std[last, a], std[last, b]
        until = (
            "still at the last measured step"
            if still
            else f"gone by step {int(series.steps[measured[-1]])}"
        )
        findings.append(
            Finding(
                rule="activation_depth",
                # Repaired by training since (an initialisation that recovered): "info".
                severity=severity if still else "info",
                run=evidence.run,
                layer=name,
                message=(
                    _jump_message(
                        name, before, jump, std_before, std_after, worst_step, e2e, len(keep)
                    )
                    + f" Flagged in {steps(first_step, last_step)} ({until})."
                    if not trend
                    else f"Activations {word} through depth: the std goes from "
                    f"{num(float(values[0]))} ({part.names[keep[0]]}) to "
                    f"{num(float(values[-1]))} ({part.names[keep[-1]]}), "
                    f"{times(e2e if direction > 0 else 1 / e2e)} over {len(keep)} weight layers "
                    f"({times(growth if direction > 0 else 1 / growth)} per layer) at step "
                    f"{worst_step}; flagged in {steps(first_step, last_step)} ({until}); "
                    "the largest "
                    f"{'jump' if direction > 0 else 'drop'} is at {name} "
                    f"({times(float(jumps[k - 1]) if direction > 0 else float(1 / jumps[k - 1]))}"
                    f" from {before})."
                ),
                advice=(
                    "Check the initialisation (Kaiming/He for ReLU, Xavier/Glorot for tanh: "
                    "torch.nn.init), add normalisation (BatchNorm, LayerNorm) or residual "
                    "scaling; start with the layer named."
                ),
                first_step=first_step,
                last_step=last_step,
                evidence=Evidence(
                    "layer_statistics",
                    series.tag,
                    worst_step,
                    name=name,
                    statistic="std",
                    part="activations",
                ),
                numbers={"end_to_end": e2e, "growth_per_layer": growth, "largest_jump": jump},
            )
        )
    return findings
