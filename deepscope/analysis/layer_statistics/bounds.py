"""The output range of bounded activations, and the rule that calls a value saturated.

A value of a bounded activation with range [lo, hi] is saturated when it lies
within `tolerance · (hi − lo)` of a bound: a ≤ lo + t·(hi − lo) or
a ≥ hi − t·(hi − lo). With the default t = 0.01: |tanh| ≥ 0.98, sigmoid
≤ 0.01 or ≥ 0.99, ReLU6 ≤ 0.06 or ≥ 5.94. There the derivative is near zero
(exactly zero for the hard ones), so the unit passes almost no gradient
(Glorot & Bengio 2010).

Bounded by module class: Tanh, Sigmoid, Hardtanh and its subclass ReLU6
(their own min_val/max_val), Hardsigmoid, Softsign. Activations called as
functions (torch.tanh in a forward) are not modules and have no bounds here;
neither have ReLU (dead, not saturated: see the zero fraction and dead
channels) nor Softmax (its outputs near 0 are its normal state).
"""

from __future__ import annotations

from torch import nn

DEFAULT_TOLERANCE = 0.01
"""The default saturation tolerance, as a fraction of the activation's range."""

_FIXED = (
    (nn.Tanh, (-1.0, 1.0)),
    (nn.Sigmoid, (0.0, 1.0)),
    (nn.Hardsigmoid, (0.0, 1.0)),
    (nn.Softsign, (-1.0, 1.0)),
)


def saturation_bounds(module: object) -> tuple[float, float] | None:
    """The output range (lo, hi) of a bounded activation module; None for any other module."""
    if isinstance(module, nn.Hardtanh):  # ReLU6 too
        lo, hi = float(module.min_val), float(module.max_val)
        return (lo, hi) if lo < hi else None
    for cls, bounds in _FIXED:
        if isinstance(module, cls):
            return bounds
    return None


def saturation_thresholds(
    bounds: tuple[float, float], tolerance: float = DEFAULT_TOLERANCE
) -> tuple[float, float]:
    """(low, high): a value ≤ low or ≥ high is saturated, by the rule above.

    Raises:
      ValueError: a tolerance outside [0, 0.5), or bounds not lo < hi.
    """
    lo, hi = bounds
    if not lo < hi:
        raise ValueError(f"saturation bounds need lo < hi, got {bounds!r}")
    if not 0.0 <= tolerance < 0.5:
        raise ValueError(
            f"saturation tolerance is a fraction of the range in [0, 0.5), got {tolerance!r}"
        )
    width = tolerance * (hi - lo)
    return lo + width, hi - width
