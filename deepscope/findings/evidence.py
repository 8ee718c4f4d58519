"""What the rules read of one run: small, already decoded, numpy only.

The plugin side (`tb_plugin/findings_evidence.py`) fills a `RunEvidence` from
the kinds' decoded series: update ratios and layer statistics whole (tensor
series, already read by their routes), and of each spectrum and correlation
series (blob sequences) only the steps the rules need — the first and the last
kept, and for a non-finite spectrum the first non-finite step found by bisection.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Parameter statistics a parameter without a gradient has not measured.
GRADIENT_STATISTICS = ("grad_norm", "grad_to_weight")


@dataclasses.dataclass(frozen=True)
class ColumnSeries:
    """A tensor series of steps × named columns: values[i, j] is names[j]'s at steps[i]
    (update ratios: ‖ΔW‖/‖W‖ of each parameter; layer values: a user's number per layer)."""

    tag: str
    steps: np.ndarray  # int64 [S]
    names: list[str]
    values: np.ndarray  # float [S, P]
    unmeasured: np.ndarray  # bool [S, P]: not measured (no update, zero weight): no meaning


@dataclasses.dataclass(frozen=True)
class StatisticsPart:
    """One part of a layer-statistics series: values[i, j, k] is names[j]'s statistics[k]."""

    names: list[str]
    types: list[str]
    statistics: list[str]
    values: np.ndarray  # float [S, R, C]
    absent: np.ndarray  # bool [S, R]: the row is not in that step
    no_gradient: np.ndarray  # bool [S, R]: a parameter the step lists without a gradient

    def column(self, statistic: str) -> np.ndarray | None:
        """float64 [S, R] of `statistic`, NaN where not measured (absent rows; gradient
        statistics of parameters without a gradient); None when the part has none."""
        if statistic not in self.statistics:
            return None
        values = self.values[:, :, self.statistics.index(statistic)].astype(np.float64)
        unmeasured = self.absent | (self.no_gradient if statistic in GRADIENT_STATISTICS else False)
        return np.where(unmeasured, np.nan, values)

    def type_of(self, name: str) -> str:
        return self.types[self.names.index(name)] if name in self.names else ""


@dataclasses.dataclass(frozen=True)
class StatisticsSeries:
    """A layer-statistics series: its steps and its two parts."""

    tag: str
    steps: np.ndarray  # int64 [S]
    activations: StatisticsPart
    parameters: StatisticsPart


@dataclasses.dataclass(frozen=True)
class SpectrumSample:
    """One step of a spectrum series: its metrics (NaN where not computed)."""

    step: int
    metrics: dict[str, float]
    coverage: str  # "full", "top_k", "norm_only"
    error: str
    non_finite: int
    unchanged_since: int | None
    operator_norm: float | None  # conv layers' operator norm, when measured


@dataclasses.dataclass(frozen=True)
class SpectrumLayer:
    """A spectrum series as the rules see it: its first measurement (from the newest step's
    `start` summary when the writer stored one: then only `metrics`' effective_rank,
    stable_rank, num_above_mp_edge and spectral_norm are known) and its newest step."""

    tag: str
    layer: str  # the module's name (the tag without its "spectra/" prefix)
    layer_kind: str  # "Conv2d", "Linear", ...
    first: SpectrumSample
    last: SpectrumSample
    # The first kept step whose weight was non-finite (bisection over the kept steps:
    # a non-finite weight stays non-finite), None when the last one is finite.
    first_non_finite: int | None = None


@dataclasses.dataclass(frozen=True)
class CorrelationLayer:
    """A correlation series' last kept step (and its first non-finite one)."""

    tag: str
    layer: str
    cross: bool
    step: int
    matrix: np.ndarray | None  # float [R, C] (None when the step is damaged)
    bipartite_mean: float | None  # cross series with a matching
    row_name: str
    col_name: str
    non_finite: int  # activation values left out at the last step
    error: str = ""


@dataclasses.dataclass(frozen=True)
class JacobianSeries:
    """A Jacobian-spectra series: per kept step, its maps and which came out non-finite."""

    tag: str
    steps: np.ndarray  # int64 [S]
    maps: list[tuple[str, ...]]  # per step: module names, "" for the whole network
    non_finite: list[np.ndarray]  # per step: bool [M], a map with a non-finite value


@dataclasses.dataclass
class RunEvidence:
    """Everything the rules read of one run, and what could not be read."""

    run: str
    ratios: list[ColumnSeries] = dataclasses.field(default_factory=list)
    statistics: list[StatisticsSeries] = dataclasses.field(default_factory=list)
    spectra: list[SpectrumLayer] = dataclasses.field(default_factory=list)
    correlations: list[CorrelationLayer] = dataclasses.field(default_factory=list)
    layer_values: list[ColumnSeries] = dataclasses.field(default_factory=list)
    jacobians: list[JacobianSeries] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def layer_order(self) -> dict[str, int]:
        """Module name → its place in the model (forward order of the activations, else
        the parameters' order), for rules that compare neighbours."""
        order: dict[str, int] = {}
        for series in self.statistics:
            for name in series.activations.names:
                order.setdefault(name.split(":", 1)[0], len(order))
        for series in self.ratios:
            for name in series.names:
                order.setdefault(name.rsplit(".", 1)[0], len(order))
        for series in self.statistics:
            for name in series.parameters.names:
                order.setdefault(name.rsplit(".", 1)[0], len(order))
        return order
