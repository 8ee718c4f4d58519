"""Singular value spectra of layer weights and the health metrics read from them.

A layer's weight is made into one matrix per group (rules below); its singular
values say whether the layer is badly initialised, exploding, collapsing in
rank, still as random as at initialisation (inside the Marchenko–Pastur bulk),
or heavy-tailed after training (Martin & Mahoney).

Matrix rules (`matrix_layout`), shapes [groups, rows, cols]:
  - Linear (out, in): one matrix out × in.
  - ConvNd (out, in/groups, k…): per group, out/groups × in/groups·∏k — the
    weight's rows split into `groups` consecutive blocks (what a grouped
    convolution applies to each block of input channels).
  - ConvTransposeNd (in, out/groups, k…): per group, in/groups × out/groups·∏k,
    the weight as stored; its singular values are those of the transpose
    out/groups·∏k × in/groups that maps a group's inputs to its outputs.
  - Embedding / EmbeddingBag (num_embeddings, embedding_dim): one matrix as is.
  - Anything else of 2 or more dimensions: shape[0] × ∏shape[1:] (split into
    `groups` row blocks when groups > 1).
These are the unfolded (im2col) matrices, not the exact spectrum of the
convolution operator over an image (Sedghi et al. 2019); they are what
WeightWatcher-style analyses use, and cost one SVD of the weight's size.

Singular values are computed with `torch.linalg.svdvals` on the weight's
device, float32 unless float64 is asked for. A wide matrix is decomposed as
its (tall) transpose: the same singular values, several times faster on CPU.
`layer_spectra` decomposes many layers at once, one batched call per set of
equal-shaped matrices.

Metrics (`spectrum_metrics`) are computed in float64 with numpy/scipy.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy import integrate, optimize

# The power-law fit considers x_min candidates that leave at least this many
# eigenvalues in the tail (all eigenvalues when there are fewer): a tail of two
# or three points fits anything, and would win the KS comparison by chance.
MIN_POWER_LAW_TAIL = 10

# A tail whose mean ln(x/x_min) is below this is constant to the SVD's
# precision (float32 singular values carry relative errors near 1e-7): no fit.
MIN_MEAN_LOG_SPREAD = 1e-5

# Pairs (candidate x_min, tail point) evaluated at once in the KS search.
_KS_CHUNK = 1 << 20


class MatrixLayout(NamedTuple):
    """How a weight is made into matrices.

    matrix_shape: (groups, rows, cols) of the matrices decomposed.
    matrix_rule: the rule in words, e.g. "out x in*kh*kw".
    layer_kind: e.g. "Linear", "Conv2d", "Embedding"; "" when unknown.
    weight_shape: the weight's shape.
    """

    matrix_shape: tuple[int, int, int]
    matrix_rule: str
    layer_kind: str
    weight_shape: tuple[int, ...]


class LayerWeight(NamedTuple):
    """A weight to decompose, with what `matrix_layout` needs to know about its layer."""

    weight: torch.Tensor
    groups: int = 1
    layer_kind: str | None = None


@dataclass(frozen=True)
class Spectrum:
    """The singular values of one layer's weight, and how they were obtained.

    Build one with `layer_spectrum`/`layer_spectra`, or by hand for singular
    values computed elsewhere; `SummaryWriter.add_singular_values` takes either.

    singular_values: float tensor [groups, k], k = min(rows, cols), each row
      descending. All NaN when `error` is set.
    matrix_shape: (groups, rows, cols) of the decomposed matrices.
    matrix_rule, layer_kind, weight_shape: as in `MatrixLayout`.
    error: non-empty when the spectrum could not be measured (non-finite weight,
      SVD did not converge): what happened.
    seconds: host seconds spent computing it (its share of a batched call).
    """

    singular_values: torch.Tensor
    matrix_shape: tuple[int, int, int]
    matrix_rule: str = ""
    layer_kind: str = ""
    weight_shape: tuple[int, ...] = ()
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class SpectrumMetrics:
    """Health metrics of a spectrum; the fields of `deepscope.proto.SpectrumMetrics`.

    spectral_norm: σ_max. frobenius_norm: sqrt(Σσ²).
    condition_number: σ_max/σ_min when σ_min is above the rank tolerance; else
      the lower bound σ_max/tolerance = 1/(max(rows, cols)·eps) with
      `condition_number_is_bound` set; inf for a zero matrix (σ_max = 0).
    condition_number_is_bound: σ_min is at or below the rank tolerance, beyond
      the resolution of the SVD's precision: the condition number is at least
      `condition_number` (and may be infinite). Whether such a matrix is
      singular by construction is told by `numerical_rank` (< min(rows, cols):
      that many σ are indistinguishable from 0), not by an infinity.
    numerical_rank: number of σ above the rank tolerance.
    stable_rank: ‖W‖²_F/‖W‖²₂ (0 for a zero matrix).
    effective_rank: exp of the entropy of p_i = σ_i/Σσ (Roy & Vetterli; 0 for a zero matrix).
    mp_bulk_edge: Marchenko–Pastur upper edge of the singular values, s·(√rows + √cols).
    mp_noise_scale: s, the entry standard deviation of the noise it assumes.
    num_above_mp_edge: singular values above the edge.
    alpha, alpha_xmin, alpha_ks_distance: power-law tail exponent of the
      eigenvalues λ = σ² (density ∝ λ^−α for λ ≥ x_min), its x_min, and the
      Kolmogorov–Smirnov distance of the fit; NaN when fewer than 2 positive
      eigenvalues (or all tail values equal).
    """

    spectral_norm: float
    frobenius_norm: float
    condition_number: float
    numerical_rank: int
    stable_rank: float
    effective_rank: float
    mp_bulk_edge: float
    mp_noise_scale: float
    num_above_mp_edge: int
    alpha: float
    alpha_xmin: float
    alpha_ks_distance: float
    condition_number_is_bound: bool = False

    @classmethod
    def unmeasured(cls) -> SpectrumMetrics:
        """Metrics of a spectrum that could not be measured: NaN, counts 0."""
        nan = math.nan
        return cls(nan, nan, nan, 0, nan, nan, nan, nan, 0, nan, nan, nan, False)


@dataclass
class _Prepared:
    index: int
    matrices: torch.Tensor  # [groups, rows, cols] as decomposed (tall: rows >= cols)
    layout: MatrixLayout
    error: str = ""
    values: torch.Tensor | None = None  # host tensor [groups, k]
    seconds: float = 0.0


# ---------------------------------------------------------------------------
# Weights to matrices


def _kernel_words(ndim: int) -> str:
    return {1: "k", 2: "kh*kw", 3: "kd*kh*kw"}.get(ndim, "prod(k)")


def matrix_layout(
    weight_shape: Sequence[int], *, groups: int = 1, layer_kind: str | None = None
) -> MatrixLayout:
    """The matrices a weight of `weight_shape` is decomposed as (see the module's rules).

    Raises:
      ValueError: fewer than 2 dimensions, an empty weight, or `groups` not
        dividing the weight's first dimension.
    """
    shape = tuple(int(n) for n in weight_shape)
    kind = layer_kind or ""
    if len(shape) < 2:
        raise ValueError(
            f"a spectrum needs a weight of at least 2 dimensions (e.g. a Linear's (out, in) "
            f"or a Conv2d's (out, in, kh, kw)), got shape {list(shape)}"
        )
    if any(n == 0 for n in shape):
        raise ValueError(f"cannot take the spectrum of an empty weight of shape {list(shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    if shape[0] % groups:
        raise ValueError(
            f"groups={groups} does not divide the first dimension of a weight of shape "
            f"{list(shape)}; pass the layer's own groups (e.g. conv.groups)"
        )
    rows = shape[0] // groups
    cols = int(np.prod(shape[1:], dtype=np.int64))
    kernel = _kernel_words(len(shape) - 2)
    per_group = "per group: " if groups > 1 else ""
    g = "/groups" if groups > 1 else ""
    if kind.startswith("ConvTranspose"):
        rule = f"{per_group}in{g} x out{g}*{kernel}"
    elif kind.startswith("Conv") and len(shape) >= 3:
        rule = f"{per_group}out{g} x in{g}*{kernel}"
    elif kind.startswith("Embedding") and len(shape) == 2:
        rule = "num_embeddings x embedding_dim"
    elif kind in ("Linear", "LazyLinear") and len(shape) == 2:
        rule = f"{per_group}out{g} x in"
    elif len(shape) == 2:
        rule = f"{per_group}rows{g} x cols"
    else:
        rule = f"{per_group}shape[0]{g} x prod(shape[1:])"
    return MatrixLayout((groups, rows, cols), rule, kind, shape)


def weight_matrices(
    weight: torch.Tensor, *, groups: int = 1, layer_kind: str | None = None
) -> tuple[torch.Tensor, MatrixLayout]:
    """The weight as matrices [groups, rows, cols] (a view where possible) and their layout."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    layout = matrix_layout(weight.shape, groups=groups, layer_kind=layer_kind)
    return weight.detach().reshape(layout.matrix_shape), layout


_CANONICAL_KINDS: tuple[tuple[type, str], ...] = (
    (torch.nn.Linear, "Linear"),
    (torch.nn.Bilinear, "Bilinear"),
    (torch.nn.ConvTranspose1d, "ConvTranspose1d"),
    (torch.nn.ConvTranspose2d, "ConvTranspose2d"),
    (torch.nn.ConvTranspose3d, "ConvTranspose3d"),
    (torch.nn.Conv1d, "Conv1d"),
    (torch.nn.Conv2d, "Conv2d"),
    (torch.nn.Conv3d, "Conv3d"),
    (torch.nn.EmbeddingBag, "EmbeddingBag"),
    (torch.nn.Embedding, "Embedding"),
)


def module_weight(module: torch.nn.Module) -> LayerWeight | None:
    """A module's weight to decompose, or None when it has none eligible.

    Eligible: a `weight` attribute (parameter, buffer or parametrization) of
    2 or more dimensions that is initialised: Linear, ConvNd, ConvTransposeNd,
    Embedding, EmbeddingBag, Bilinear, and any other module with such a
    `weight` (its class name is its kind, its rule the generic one). Normalisation
    layers have 1-D weights and are left out; so are weights under other names
    (an LSTM's weight_ih_l0, MultiheadAttention's in_proj_weight).
    Subclasses of the torch layers take their base class's kind.
    """
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or torch.nn.parameter.is_lazy(weight):
        return None
    if weight.ndim < 2 or weight.numel() == 0:
        return None
    kind = next(
        (name for cls, name in _CANONICAL_KINDS if isinstance(module, cls)),
        type(module).__name__,
    )
    groups = 1
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        groups = int(module.groups)
    return LayerWeight(weight, groups, kind)


# ---------------------------------------------------------------------------
# Singular values


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"singular values are computed in float32 or float64, not {dtype}")


def _non_finite_message(matrices: torch.Tensor) -> str:
    nan = int(torch.isnan(matrices).sum())
    inf = int(torch.isinf(matrices).sum())
    return (
        f"non-finite weight: {nan} NaN and {inf} infinite of {matrices.numel()} values; "
        "no spectrum measured"
    )


def _prepare(layers: Sequence[LayerWeight]) -> list[_Prepared]:
    prepared = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, LayerWeight):
            layer = LayerWeight(*layer)
        matrices, layout = weight_matrices(
            layer.weight, groups=layer.groups, layer_kind=layer.layer_kind
        )
        if matrices.shape[1] < matrices.shape[2]:
            matrices = matrices.transpose(1, 2)  # same singular values, faster when tall
        prepared.append(_Prepared(i, matrices, layout))
    # Finiteness of every layer, with one host synchronisation per device.
    by_device: dict[torch.device, list[_Prepared]] = {}
    for p in prepared:
        by_device.setdefault(p.matrices.device, []).append(p)
    for items in by_device.values():
        flags = torch.stack([torch.isfinite(p.matrices).all() for p in items]).tolist()
        for p, finite in zip(items, flags):
            if not finite:
                p.error = _non_finite_message(p.matrices)
    return prepared


# Stacked matrices per batched svdvals call, at most (bytes).
MAX_BATCH_BYTES = 256 * 2**20


def _decompose(prepared: list[_Prepared], dtype: torch.dtype) -> None:
    """Fill `values` (host tensors [groups, k]) of every item without an error.

    Equal-shaped matrices on one device go through one batched svdvals call,
    whose result is copied to the host at once.
    A batch that fails to converge is retried layer by layer so that only the
    failing layers are marked.
    """
    by_shape: dict[tuple, list[_Prepared]] = {}
    for p in prepared:
        if not p.error:
            key = (p.matrices.device, tuple(p.matrices.shape[1:]))
            by_shape.setdefault(key, []).append(p)
    batches: list[list[_Prepared]] = []
    element_size = torch.empty((), dtype=dtype).element_size()
    for items in by_shape.values():
        # At most MAX_BATCH_BYTES of stacked matrices per call, so that a model of many
        # large equal layers (a transformer) does not copy all of them at once.
        batch: list[_Prepared] = []
        size = 0
        for p in items:
            nbytes = p.matrices.numel() * element_size
            if batch and size + nbytes > MAX_BATCH_BYTES:
                batches.append(batch)
                batch, size = [], 0
            batch.append(p)
            size += nbytes
        batches.append(batch)
    for items in batches:
        start = time.perf_counter()
        try:
            if len(items) == 1:
                stacked = items[0].matrices.to(dtype)
            else:
                stacked = torch.cat([p.matrices.to(dtype) for p in items])
            values = torch.linalg.svdvals(stacked).cpu()
            finite = bool(torch.isfinite(values).all())
        except (torch.linalg.LinAlgError, torch.OutOfMemoryError):
            finite = False  # retried one layer at a time below
        if finite:
            seconds = time.perf_counter() - start
            total = sum(p.matrices.shape[0] for p in items)
            offset = 0
            for p in items:
                g = p.matrices.shape[0]
                p.values = values[offset : offset + g]
                p.seconds = seconds * g / total
                offset += g
            continue
        for p in items:  # find the failing layers
            start = time.perf_counter()
            try:
                values = torch.linalg.svdvals(p.matrices.to(dtype)).cpu()
                if bool(torch.isfinite(values).all()):
                    p.values = values
                else:
                    p.error = "the SVD returned non-finite singular values"
            except torch.linalg.LinAlgError as error:
                p.error = f"the SVD did not converge: {error}"
            except torch.OutOfMemoryError:
                p.error = "out of memory on the weight's device during the SVD"
            p.seconds = time.perf_counter() - start


def singular_values(
    weight: torch.Tensor,
    *,
    groups: int = 1,
    layer_kind: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Singular values of a weight, shape [groups, k] with k = min(rows, cols), rows descending.

    The weight is made into matrices by `matrix_layout`'s rule for `layer_kind`
    (e.g. "Conv2d"; None: the generic rule) and decomposed on its own device in
    `dtype` (float32 or float64). Returns a tensor on the weight's device.

    Raises:
      ValueError: fewer than 2 dimensions, bad groups, or a non-finite weight.
      torch.linalg.LinAlgError: the SVD did not converge.
    """
    _check_dtype(dtype)
    with torch.no_grad():
        (p,) = _prepare([LayerWeight(weight, groups, layer_kind)])
        if p.error:
            raise ValueError(p.error)
        values = torch.linalg.svdvals(p.matrices.to(dtype))
        if not bool(torch.isfinite(values).all()):
            raise torch.linalg.LinAlgError("the SVD returned non-finite singular values")
        return values


def layer_spectra(
    layers: Sequence[LayerWeight | tuple], *, dtype: torch.dtype = torch.float32
) -> list[Spectrum]:
    """Spectra of many layers at once, in the order given.

    Equal-shaped matrices (a ResNet has many) share one batched svdvals call
    on their device; results come back on the host (every consumer — metrics,
    event files — needs them there), one copy per batch. A layer whose weight is
    not finite, or whose SVD does not converge, gets a Spectrum with `error`
    set and NaN singular values; the others are unaffected.

    Args:
      layers: LayerWeight(weight, groups, layer_kind) or plain tuples of them.
      dtype: float32 (default) or float64.

    Raises:
      ValueError: a weight of fewer than 2 dimensions or bad groups (a caller's mistake).
    """
    _check_dtype(dtype)
    with torch.no_grad():
        prepared = _prepare(layers)
        _decompose(prepared, dtype)
        spectra = []
        for p in prepared:
            groups, rows, cols = p.layout.matrix_shape
            values = p.values
            if p.error:
                values = torch.full((groups, min(rows, cols)), math.nan, dtype=dtype)
            spectra.append(
                Spectrum(
                    singular_values=values,
                    matrix_shape=p.layout.matrix_shape,
                    matrix_rule=p.layout.matrix_rule,
                    layer_kind=p.layout.layer_kind,
                    weight_shape=p.layout.weight_shape,
                    error=p.error,
                    seconds=p.seconds,
                )
            )
        return spectra


def layer_spectrum(
    weight: torch.Tensor,
    *,
    groups: int = 1,
    layer_kind: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Spectrum:
    """The `Spectrum` of one weight (on the host); numerical trouble is in its `error`."""
    return layer_spectra([LayerWeight(weight, groups, layer_kind)], dtype=dtype)[0]


# ---------------------------------------------------------------------------
# Metrics


@functools.lru_cache(maxsize=4096)
def mp_median(ratio: float) -> float:
    """Median of the Marchenko–Pastur law of singular values, in units of s·√n.

    For an n × m matrix (m ≤ n, ratio y = m/n) of iid entries of standard
    deviation s, the singular values divided by s·√n follow, as n grows, the
    law of √λ where λ has the MP density √((b−λ)(λ−a)) / (2π y λ) on
    [a, b] = [(1−√y)², (1+√y)²]. Computed by quadrature (λ = centre − half·cos θ
    removes the square-root endpoints) and root finding; cached per ratio.
    """
    y = float(ratio)
    if not 0.0 < y <= 1.0:
        raise ValueError(f"the aspect ratio min/max must be in (0, 1], got {ratio}")
    a, b = (1 - math.sqrt(y)) ** 2, (1 + math.sqrt(y)) ** 2
    centre, half = (a + b) / 2, (b - a) / 2

    def density(theta: float) -> float:  # dP/dθ
        lam = centre - half * math.cos(theta)
        return (half * math.sin(theta)) ** 2 / (2 * math.pi * y * lam)

    def cdf(theta: float) -> float:
        return integrate.quad(density, 0.0, theta, epsabs=1e-13, epsrel=1e-11)[0]

    theta = optimize.brentq(lambda t: cdf(t) - 0.5, 0.0, math.pi, xtol=1e-13)
    return math.sqrt(centre - half * math.cos(theta))


def _matrix_dims(shape: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(int(n) for n in shape)
    if len(dims) == 2:
        dims = (1, *dims)
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(
            f"shape must be the decomposed matrix's (rows, cols) or (groups, rows, cols), "
            f"all positive; got {list(shape)}"
        )
    return dims  # type: ignore[return-value]


def power_law_fit(
    eigenvalues: np.ndarray, min_tail: int = MIN_POWER_LAW_TAIL
) -> tuple[float, float, float]:
    """Power-law tail of positive values by maximum likelihood (Clauset, Shalizi & Newman 2009).

    For each candidate x_min (each distinct value leaving at least `min_tail`
    values at or above it; all values when there are fewer), the continuous
    MLE α = 1 + n / Σ ln(x_i/x_min) over the n tail values, and the
    Kolmogorov–Smirnov distance between the tail's empirical CDF and
    1 − (x/x_min)^(1−α). The candidate with the smallest distance wins.

    Returns (alpha, x_min, ks_distance); NaNs when fewer than 2 positive values
    or every tail is constant (mean ln(x/x_min) below MIN_MEAN_LOG_SPREAD,
    e.g. an orthogonal matrix's eigenvalues, equal up to rounding).
    """
    x = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())
    x = x[np.isfinite(x) & (x > 0)]
    count = x.size
    nan = (math.nan, math.nan, math.nan)
    if count < 2:
        return nan
    log_x = np.log(x)
    # suffix[i] = Σ_{j ≥ i} ln x_j
    suffix = np.cumsum(log_x[::-1])[::-1]
    first = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])  # first index of each distinct value
    tail = count - first
    keep = tail >= min(min_tail, count)
    candidates = first[keep]
    n = (count - candidates).astype(np.float64)
    denom = suffix[candidates] - n * log_x[candidates]
    good = denom > n * MIN_MEAN_LOG_SPREAD
    candidates, n, denom = candidates[good], n[good], denom[good]
    if candidates.size == 0:
        return nan
    alpha = 1.0 + n / denom
    best = (math.inf, -1)
    positions = np.arange(count)
    chunk = max(1, _KS_CHUNK // count)
    for lo in range(0, candidates.size, chunk):
        c = candidates[lo : lo + chunk]
        a = alpha[lo : lo + chunk]
        nn = n[lo : lo + chunk]
        k = positions[None, :] - c[:, None]  # index within the tail
        in_tail = k >= 0
        # The exponent is ≤ 0 in the tail; values below x_min (masked out below)
        # would overflow, so they are clipped to 0.
        exponent = (1.0 - a[:, None]) * (log_x[None, :] - log_x[c][:, None])
        model = -np.expm1(np.minimum(exponent, 0.0))
        upper = (k + 1) / nn[:, None] - model
        lower = model - k / nn[:, None]
        distance = np.where(in_tail, np.maximum(upper, lower), -np.inf).max(axis=1)
        i = int(np.argmin(distance))
        if distance[i] < best[0]:
            best = (float(distance[i]), lo + i)
    distance, i = best
    return float(alpha[i]), float(x[candidates[i]]), distance


def spectrum_metrics(
    singular_values: np.ndarray | torch.Tensor,
    shape: Sequence[int],
    *,
    eps: float | None = None,
) -> SpectrumMetrics:
    """Health metrics of a layer's spectrum.

    Args:
      singular_values: [k] or [groups, k], any order, non-negative and finite.
      shape: (rows, cols) or (groups, rows, cols) of the decomposed matrices.
        For grouped layers the metrics are those of the block-diagonal matrix
        diag(W_1, …, W_groups), whose singular values are all groups' together;
        the rank tolerance and the MP law use one group's rows × cols.
      eps: machine epsilon of the precision the SVD ran in; by default that of
        the values' dtype (float32 unless they are float64).

    Definitions:
      rank tolerance: σ_max · max(rows, cols) · eps (numpy.linalg.matrix_rank's),
        the resolution of an SVD in that precision: singular values below it
        are rounding, not measurement. numerical_rank counts σ above it.
      condition number: σ_max/σ_min when σ_min is above the tolerance. When it
        is not, σ_min is beyond resolution (5 of 50 GPT-2 weights at
        initialisation: a random n x n matrix's σ_min is about σ_max/n, and
        float32 resolves σ_max·n·1.2e-7), and condition_number is the lower
        bound σ_max/tolerance = 1/(max(rows, cols)·eps), flagged by
        `condition_number_is_bound` — never inf, never a division by zero.
        A zero matrix (σ_max = 0) has condition_number inf and no bound. A
        matrix singular by construction shows as numerical_rank < min(rows, cols)
        (a random square matrix loses at most its one smallest σ to rounding).
      Marchenko–Pastur: under the null of iid noise of standard deviation s, the
        singular values of a rows × cols matrix fill [s·|√rows−√cols|, s·(√rows+√cols)].
        s is estimated robustly by matching the median singular value to the MP
        law's median: s = median(σ) / (√max(rows, cols) · `mp_median`(min/max)).
        A few large (signal) singular values barely move the median, whereas the
        Frobenius estimate ‖W‖_F/√(rows·cols) grows with them. The edge is
        s·(√rows + √cols); num_above_mp_edge counts σ above it.
      alpha: `power_law_fit` of the eigenvalues λ = σ².

    Raises:
      ValueError: non-finite or negative values, or a shape that does not match.
    """
    if isinstance(singular_values, torch.Tensor):
        singular_values = singular_values.detach().cpu().numpy()
    values = np.asarray(singular_values)
    if eps is None:
        eps = float(np.finfo(np.float64 if values.dtype == np.float64 else np.float32).eps)
    groups, rows, cols = _matrix_dims(shape)
    s = np.sort(values.astype(np.float64).ravel())[::-1]
    if s.size == 0:
        raise ValueError("no singular values given")
    if not np.all(np.isfinite(s)) or s[-1] < 0:
        raise ValueError("singular values must be finite and non-negative")
    if s.size > groups * min(rows, cols):
        raise ValueError(
            f"{s.size} singular values is more than {groups} matrices of {rows} x {cols} have"
        )
    s_max, s_min = float(s[0]), float(s[-1])
    frobenius = float(np.sqrt(np.sum(s * s)))
    tol = s_max * max(rows, cols) * eps
    rank = int(np.count_nonzero(s > tol))
    is_bound = s_max > 0 and not s_min > tol
    if s_min > tol:
        condition = s_max / s_min
    elif s_max > 0:
        condition = s_max / tol  # = 1 / (max(rows, cols) * eps): a lower bound
    else:
        condition = math.inf  # the zero matrix
    stable = frobenius**2 / s_max**2 if s_max > 0 else 0.0
    total = float(np.sum(s))
    if total > 0:
        p = s[s > 0] / total
        effective = float(np.exp(-np.sum(p * np.log(p))))
    else:
        effective = 0.0
    n, m = max(rows, cols), min(rows, cols)
    noise = float(np.median(s)) / (math.sqrt(n) * mp_median(m / n))
    edge = noise * (math.sqrt(rows) + math.sqrt(cols))
    # Above the edge and above the rank tolerance: when most singular values are zero
    # (a low-rank matrix) the median, and so the edge, is about zero too.
    above = int(np.count_nonzero(s > max(edge, tol)))
    alpha, x_min, ks = power_law_fit(s * s)
    return SpectrumMetrics(
        spectral_norm=s_max,
        frobenius_norm=frobenius,
        condition_number=condition,
        numerical_rank=rank,
        stable_rank=stable,
        effective_rank=effective,
        mp_bulk_edge=edge,
        mp_noise_scale=noise,
        num_above_mp_edge=above,
        alpha=alpha,
        alpha_xmin=x_min,
        alpha_ks_distance=ks,
        condition_number_is_bound=bool(is_bound),
    )
