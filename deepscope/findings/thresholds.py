"""Every findings rule with its thresholds, their sources, and how to change them: one table.

`RULES` is the table docs/findings.md prints. A user overrides a threshold per
rule (`deepscope diagnose --set dead_units.fraction=0.8`, `/findings?set=...`,
`deepscope.diagnose(..., overrides={"dead_units": {"fraction": 0.8}})`), a
rule's severity the same way (`--set alpha_range.severity=warning`), and turns
a rule off (`--off alpha_range`). `resolve` checks overrides against the table
and says what exists when a name is wrong.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

from deepscope.findings.finding import SEVERITIES


@dataclasses.dataclass(frozen=True)
class Threshold:
    default: float
    meaning: str


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule: what it checks, from which kinds, its thresholds and where they come from."""

    name: str
    title: str
    severity: str
    reads: tuple[str, ...]  # the kinds whose series it reads
    thresholds: Mapping[str, Threshold]
    source: str
    checks: str = ""  # what it checks, precisely (docs/findings.md)


# Thresholds that count measurements, layers or neighbours, and those that are shares.
_COUNTS = frozenset({"recent", "window", "min_history", "min_layers", "neighbours"})
_FRACTIONS = frozenset({"share", "most", "fraction", "early", "matched", "rho"})
# A count a request may ask for: bounds the work (window × steps × parameters) of one rule.
MAX_COUNT = 10_000


def _t(default: float, meaning: str) -> Threshold:
    return Threshold(float(default), meaning)


def _kind(key: str) -> str:
    """A threshold's range by its name: "count", "fraction", "non_negative" or "positive"."""
    if key in _COUNTS:
        return "count"
    if key in _FRACTIONS:
        return "fraction"
    return "non_negative" if key in ("biases", "min_steps") else "positive"


def _check_value(rule: str, key: str, number: float, value) -> None:
    """ValueError saying what to give when `number` is out of the threshold's range."""
    kind = _kind(key)
    if kind == "count" and not (number == int(number) and 1 <= number <= MAX_COUNT):
        raise ValueError(f"{rule}.{key}={value!r}: give a whole number from 1 to {MAX_COUNT}")
    if kind == "fraction" and not 0 <= number <= 1:
        raise ValueError(f"{rule}.{key}={value!r}: give a fraction from 0 to 1")
    if kind == "non_negative" and number < 0:
        raise ValueError(f"{rule}.{key}={value!r}: give a number from 0 up")
    if kind == "positive" and number <= 0:
        raise ValueError(f"{rule}.{key}={value!r}: give a number above 0")


RULES: tuple[Rule, ...] = (
    Rule(
        "non_finite",
        "Non-finite values",
        "error",
        (
            "update_ratios",
            "layer_statistics",
            "spectrum",
            "correlation",
            "layer_values",
            "jacobian",
        ),
        {},
        "NaN or Inf in any logged value is numerical failure (PyTorch's anomaly "
        "detection looks for the same); the first step and layer are where to look.",
        "Any NaN or Inf among the update ratios, the layer values, the Jacobian singular "
        "values, the activations (their non-finite fraction), "
        "the gradient and weight norms, the spectra (a non-finite weight) and the correlations "
        "(activations left out). One finding per run: the earliest, and within that step the "
        "value made first (weights, then activations in forward order, then gradients from the "
        "last layer back, then what the optimizer's step left); the other kinds' first steps are "
        "in the message.",
    ),
    Rule(
        "learning_rate_network",
        "Learning rate of the whole network",
        "error",
        ("update_ratios",),
        {
            "target": _t(1e-3, "the rule of thumb for ‖ΔW‖/‖W‖ per step"),
            "factor": _t(10, "how far off (either way) a ratio must be"),
            "share": _t(0.9, "fraction of the parameters off in the same direction"),
            "recent": _t(20, "the last measurements looked at"),
            "most": _t(0.5, "fraction of those measurements a parameter must be off in"),
        },
        "Karpathy's update-to-weight ratio (CS231n, 'Neural Networks Part 3'): "
        "about 1e-3; much higher diverges, much lower barely learns.",
        "`share` of the judged parameters (biases and norm layers' gains left out) have ‖ΔW‖/‖W‖ "
        "above `target`×`factor` (or all below `target`/`factor`) in `most` of their last "
        "`recent` measurements. The per-parameter findings of that direction are folded into "
        "this one.",
    ),
    Rule(
        "learning_rate_parameter",
        "Learning rate per parameter",
        "warning",
        ("update_ratios",),
        {
            "target": _t(1e-3, "the rule of thumb for ‖ΔW‖/‖W‖ per step"),
            "factor": _t(10, "how far off (either way) a ratio must be"),
            "recent": _t(20, "the last measurements looked at"),
            "most": _t(0.5, "fraction of those measurements the parameter must be off in"),
            "biases": _t(0, "1: also judge biases and 1-d gains (their ratios are noisy)"),
        },
        "Karpathy's update-to-weight ratio (CS231n): about 1e-3 per step.",
        "One parameter's ‖ΔW‖/‖W‖ above `target`×`factor`, or below `target`/`factor`, in `most` "
        "of its last `recent` measurements.",
    ),
    Rule(
        "gradient_spike",
        "Gradient-norm spikes",
        "warning",
        ("layer_statistics",),
        {
            "factor": _t(10, "a spike: the norm above this many times its rolling median"),
            "window": _t(20, "measurements in the rolling median"),
            "min_history": _t(5, "measurements needed before a spike can be called"),
        },
        "Loss-spike detectors (llm-foundry, Lightning) and AUTOTRAINER compare a "
        "gradient norm with its recent history; here per parameter, to find the layer.",
        "The network's gradient norm (the root of the sum of the parameters' squared norms) "
        "above `factor` × the median of its previous `window` measurements (with at least "
        "`min_history` of them); the layer is the parameter whose own norm rose most over its "
        "own median at the first spike. Spikes of one parameter that leave the network's norm "
        "alone are `info`.",
    ),
    Rule(
        "activation_depth",
        "Exploding or vanishing activations through depth",
        "warning",
        ("layer_statistics",),
        {
            "growth": _t(2.0, "per-layer std ratio (geometric mean over weight layers)"),
            "end_to_end": _t(100, "std of the last weight layer over the first's (or inverse)"),
            "jump": _t(10, "std of a weight layer over the one before it (or inverse)"),
            "min_layers": _t(3, "weight layers needed"),
        },
        "Glorot & Bengio 2010, He et al. 2015: a good initialisation keeps the "
        "activations' variance about constant through depth.",
        "At a measured step, the std of the weight layers' outputs (Linear, Conv) in forward "
        "order: exploding when the growth per layer ((last/first)^(1/(n-1))) is at least "
        "`growth` and last/first at least `end_to_end`, or when one layer's std is at least "
        "`jump` × the one before it; vanishing when these are at most their inverses. The "
        "layer named is where the largest jump (or drop) is, at the worst step.",
    ),
    Rule(
        "dead_units",
        "Dead units",
        "warning",
        ("layer_statistics",),
        {
            "fraction": _t(0.7, "fraction of a ReLU layer's channels never active on the batch"),
            "recent": _t(5, "the last measurements looked at"),
            "most": _t(0.5, "fraction of those measurements above the threshold"),
        },
        "Dying ReLUs (Lu et al. 2019; CS231n): a unit that is zero on every input "
        "gets no gradient and stays dead.",
        "A ReLU layer (ReLU, ReLU6, Threshold, Hardshrink) whose share of channels zero on every "
        "sample of the batch is at least `fraction` in `most` of its last `recent` measurements, "
        "the last among them.",
    ),
    Rule(
        "saturated_units",
        "Saturated units",
        "warning",
        ("layer_statistics",),
        {
            "fraction": _t(0.5, "fraction of a bounded activation's values at a bound"),
            "recent": _t(5, "the last measurements looked at"),
            "most": _t(0.5, "fraction of those measurements above the threshold"),
        },
        "Glorot & Bengio 2010: saturated tanh/sigmoid units pass almost no gradient.",
        "Any layer whose share of values at a bound of its range (tanh, sigmoid, hardtanh...: "
        "`saturated_fraction`) is at least `fraction` in `most` of its last `recent` "
        "measurements, the last among them.",
    ),
    Rule(
        "rank_collapse",
        "Rank collapse",
        "warning",
        ("spectrum", "layer_statistics"),
        {
            "fraction": _t(0.25, "effective rank or dimension below this share of its start"),
            "min_start": _t(2.0, "its value at the start must be at least this"),
        },
        "Rank collapse of weights and representations (Feng et al. 2022; "
        "delve, Shenk et al. 2021): a layer using ever fewer directions.",
        "A weight's effective rank (Roy & Vetterli: exp of the entropy of its normalised "
        "singular values; not the stable rank, which falls by design as a layer learns) at its "
        "last kept spectrum below `fraction` of its first, from at least `min_start`; the same "
        "for a layer output's effective dimension (participation ratio of its channel "
        "covariance).",
    ),
    Rule(
        "random_spectrum",
        "Spectrum still random",
        "warning",
        ("spectrum",),
        {
            "min_steps": _t(
                1000, "steps since its first spectrum after which it should have learnt"
            ),
        },
        "Martin & Mahoney 2021: a trained layer's spectrum leaves the "
        "Marchenko–Pastur bulk; one with no value above it (with the Tracy–Widom "
        "margin) is indistinguishable from its random initialisation.",
        "At the last kept spectrum (whole spectrum measured), no singular value above the "
        "Marchenko–Pastur spike threshold, at least `min_steps` steps after its first "
        "spectrum.",
    ),
    Rule(
        "alpha_range",
        "Power-law exponent outside [2, 6]",
        "info",
        ("spectrum",),
        {
            "low": _t(2.0, "alpha below: over-trained (WeightWatcher)"),
            "high": _t(6.0, "alpha above: under-trained (WeightWatcher)"),
        },
        "WeightWatcher (Martin & Mahoney): alpha of the eigenvalues' tail between 2 "
        "and 6 in well-trained layers; a heuristic, hence 'info'.",
        "The power-law exponent α of the eigenvalues' tail at the last kept spectrum outside "
        "[`low`, `high`] (α needs a tail of at least 10 values; NaN is not judged).",
    ),
    Rule(
        "operator_norm_outlier",
        "Operator norm far above its neighbours'",
        "warning",
        ("spectrum",),
        {
            "factor": _t(4.0, "the conv's operator norm over its neighbours' median"),
            "neighbours": _t(2, "conv layers each side compared with"),
        },
        "Sedghi, Gupta & Long 2019: a conv layer's operator norm is its Lipschitz "
        "constant; one far above its neighbours' amplifies everything it passes on.",
        "A conv layer's operator norm (its Lipschitz constant for circular padding) at its last "
        "kept spectrum over `factor` × the median of the `neighbours` conv layers on each side, "
        "in the model's order (at least two neighbours).",
    ),
    Rule(
        "redundant_channels",
        "Redundant channels",
        "warning",
        ("correlation",),
        {
            "rho": _t(0.9, "absolute Pearson correlation above which two channels are redundant"),
            "fraction": _t(0.25, "fraction of the layer's channels with a redundant partner"),
        },
        "Li et al., Convergent Learning (ICLR 2016): highly correlated channels "
        "carry the same feature.",
        "At the last kept step of a within-layer correlation series, at least `fraction` of the "
        "channels have another channel with |ρ| > `rho`.",
    ),
    Rule(
        "seeds_disagree",
        "Two networks' early layers do not match",
        "warning",
        ("correlation",),
        {
            "matched": _t(0.5, "mean absolute correlation of the one-to-one matching below this"),
            "early": _t(0.5, "the first share of the compared layers that counts as early"),
        },
        "Li et al. 2016: networks trained from different seeds learn matching "
        "features in their early layers; a low match there means one did not learn them.",
        "A cross-network correlation series (deepscope.compare of two networks) among the first "
        "`early` share of the compared layers (in the model's order, else by name) whose "
        "one-to-one matching has mean |ρ| under `matched` at its last kept step.",
    ),
)

BY_NAME: dict[str, Rule] = {rule.name: rule for rule in RULES}
# A rule's place in the table: findings of one severity are listed in this order.
RULE_ORDER: dict[str, int] = {rule.name: i for i, rule in enumerate(RULES)}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The rules in force: each rule's thresholds and severity after overrides; those off."""

    values: Mapping[str, Mapping[str, float]]
    severities: Mapping[str, str]
    off: frozenset[str]

    def __getitem__(self, rule: str) -> Mapping[str, float]:
        return self.values[rule]

    def key(self) -> tuple:
        """Hashable, for caches."""
        return (
            tuple((r, tuple(sorted(v.items()))) for r, v in sorted(self.values.items())),
            tuple(sorted(self.severities.items())),
            tuple(sorted(self.off)),
        )


def _rule(name: str) -> Rule:
    rule = BY_NAME.get(name)
    if rule is None:
        raise ValueError(f"no findings rule named {name!r}; the rules: {', '.join(BY_NAME)}")
    return rule


def resolve(
    overrides: Mapping[str, Mapping[str, object]] | None = None, off: Iterable[str] = ()
) -> Settings:
    """The settings of `overrides` (rule → {threshold or "severity": value}) and `off`.

    ValueError naming what exists for an unknown rule or threshold, a severity not
    among SEVERITIES, or a threshold that is not a finite number.
    """
    values = {rule.name: {k: t.default for k, t in rule.thresholds.items()} for rule in RULES}
    severities = {rule.name: rule.severity for rule in RULES}
    if isinstance(off, str):
        raise TypeError(f"off: give a list of rule names, e.g. [{off!r}], not one string")
    for name, changes in (overrides or {}).items():
        rule = _rule(name)
        if not isinstance(changes, Mapping):
            raise TypeError(
                f"overrides[{name!r}]: give a mapping of its settings, e.g. "
                f"{{{name!r}: {{{next(iter(rule.thresholds), 'severity')!r}: ...}}}}, "
                f"not {changes!r}"
            )
        for key, value in changes.items():
            if key == "severity":
                if value not in SEVERITIES:
                    raise ValueError(
                        f"{name}.severity={value!r}: choose one of {', '.join(SEVERITIES)}"
                    )
                severities[name] = str(value)
                continue
            if key not in rule.thresholds:
                known = ", ".join([*rule.thresholds, "severity"])
                raise ValueError(f"rule {name} has no threshold {key!r}; its settings: {known}")
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                number = math.nan
            if not math.isfinite(number):
                raise ValueError(f"{name}.{key}={value!r}: give a finite number")
            _check_value(name, key, number, value)
            values[name][key] = number
    off_set = frozenset(off)
    for name in off_set:
        _rule(name)
    return Settings(values, severities, off_set)


def parse_assignments(assignments: Iterable[str]) -> dict[str, dict[str, str]]:
    """ "rule.name=value" strings (the CLI's --set, the route's set=) as overrides."""
    overrides: dict[str, dict[str, str]] = {}
    for text in assignments:
        target, sep, value = text.partition("=")
        rule, dot, key = target.strip().partition(".")
        if not sep or not dot or not rule or not key or not value.strip():
            raise ValueError(
                f"{text!r}: write RULE.SETTING=VALUE, e.g. dead_units.fraction=0.8 "
                "or alpha_range.severity=warning"
            )
        overrides.setdefault(rule, {})[key.strip()] = value.strip()
    return overrides
