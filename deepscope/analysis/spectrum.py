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

What a conv layer's matrix measures. Three rules are in use, and they give
different numbers:
  - im2col (this module): the out × in·∏k matrix that maps one receptive field
    (one patch of the input) to one output position. Its singular values are
    those of the layer on a single patch; one SVD of the weight's size.
  - WeightWatcher's (Martin & Mahoney): the ∏k kernel-position slices
    W[:, :, i, j], each out × in (transposed to tall), their eigenvalues pooled
    into one empirical spectral density and, by default, rescaled by a
    kernel-size factor (its `conv2d_norm` option) — a third matrix set: its α
    and norms are not comparable with this module's.
  - The operator: the linear map the layer applies to a whole n × n input.
    With circular padding its singular values are, exactly, the union over the
    n² DFT frequencies of the singular values of the out × in matrices of the
    kernel's Fourier transform (Sedghi, Gupta & Long 2019); its largest one is
    the layer's Lipschitz constant, between 1 and √∏k times the im2col σ_max.
    `deepscope.analysis.conv_operator` computes it (strides, groups, 1-3 D).

Singular values are computed with `torch.linalg.svdvals` on the weight's
device, float32 unless float64 is asked for. A wide matrix is decomposed as
its (tall) transpose: the same singular values, faster on CPU (the transposed
view of a row-major wide matrix is the column-major tall one LAPACK wants, no
copy). `layer_spectra` decomposes equal-shaped matrices in one batched call
only where that is faster (`batches_equal_shapes`): on a GPU always; on a CPU
only for small matrices — measured on a ResNet-18 at 1 and 2 threads, a batched
call over the 3-4 equal convs of a shape class was 1.0-1.2x slower than one call
per layer (benchmarks/bench_spectra.py, "batching").

Big matrices (`layer_spectra(..., coverage="auto", time_budget=...)`): the full
SVD of a 4096 x 4096 attention projection takes 18 s on one CPU thread, of a
50257 x 768 token embedding 1.2-2 s. Past a size (`FULL_MAX_UNITS`, unless the
randomized path would cost as much: very tall matrices) or a time budget a layer's
spectrum is partial (`Spectrum.coverage`):
  - "top_k": the `top_k` largest singular values by randomized block Krylov
    iteration (Halko, Martinsson & Tropp 2011: a Gaussian block of
    top_k + oversample vectors in the smaller space, AᵀA applied and
    re-orthonormalised by QR, `top_singular_values`), continued until σ_max's
    last change and its estimated remaining change are at most `norm_rtol`
    relative (the k-th value's at most 10·`norm_rtol`); every value is a Ritz
    value, a lower bound of the true one (up to rounding).
    Plus the exact Frobenius norm, read from the weight: the stable rank
    ‖W‖²_F/σ²_max is exact up to the σ_max tolerance.
  - "norm_only": σ_max alone by the same iteration on a small block, and the
    exact Frobenius norm.
Metrics that need the whole spectrum (condition number, numerical and effective
rank, Marchenko–Pastur noise, edge and spike count, power-law α) are NaN (counts
0) for partial spectra (`partial_spectrum_metrics`).

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
from scipy import integrate, interpolate, optimize, special

from deepscope import module_names

# The power-law fit considers x_min candidates that leave at least this many
# eigenvalues in the tail (all eigenvalues when there are fewer): a tail of two
# or three points fits anything, and would win the KS comparison by chance.
MIN_POWER_LAW_TAIL = 10

# A tail whose mean ln(x/x_min) is below this is constant to the SVD's
# precision (float32 singular values carry relative errors near 1e-7): no fit.
MIN_MEAN_LOG_SPREAD = 1e-5

# Pairs (candidate x_min, tail point) evaluated at once in the KS search.
_KS_CHUNK = 1 << 20

# How much of a spectrum a `Spectrum` holds (proto SpectrumCoverage, by name).
COVERAGES = ("full", "top_k", "norm_only")

# Big matrices (see the module's docstring). Cost units: one group's tall m x n
# matrix (m >= n) costs m*n^2 + FULL_SQUARE_FACTOR*n^3 units for a full svdvals
# (QR of the tall matrix, then the bidiagonalisation of an n x n one, BLAS-2 and
# slower per flop), and m*n*b per pass over it with a block of b vectors for
# the randomized path (matmuls, BLAS-3). Fitted on this project's 2-core CPU,
# one thread (benchmarks/results/spectra_big.json): 3072 x 768 0.2 s,
# 50257 x 768 1.9 s, 4096 x 4096 18 s for svdvals; 6e-11 s a unit.
FULL_SQUARE_FACTOR = 3.0
DEFAULT_SECONDS_PER_UNIT = 6e-11
# Full svdvals up to this many units (about 0.5 s on one thread of that CPU):
# every ResNet-18 weight (at most 1.2e9) and GPT-2's 768 x 768, 768 x 2304 and
# 3072 x 768 ones (at most 3.3e9) are decomposed fully; a 4096 x 4096 projection
# (2.7e11) gets the top k. The 50257 x 768 token embedding (3.1e10) is past it, but
# its top k would cost more (`choose_coverage`): it too is decomposed fully unless
# the time budget is smaller.
FULL_MAX_UNITS = 8e9
DEFAULT_TOP_K = 32
DEFAULT_OVERSAMPLE = 10
# Subspace iterations at least (Halko et al. recommend 1-3 for slowly decaying
# spectra) and at most; between them, until σ_max's last change, and what is
# still to come were the changes to fall geometrically at the slower of the last
# two rates, are both within the tolerance.
DEFAULT_POWER_ITERATIONS = 2
MAX_SUBSPACE_ITERATIONS = 16
MAX_CONVERGENCE_RATE = 0.9
"""The largest ratio of two successive σ_max changes the stopping rule extrapolates with."""
TAIL_RTOL_FACTOR = 10.0
"""The top-k iteration also waits for the k-th value, the last to converge, to settle to
this many times the σ_max tolerance."""
DEFAULT_NORM_RTOL = 1e-4
# Block size of the norm-only iteration: a few vectors converge much faster than
# one where the top of the spectrum is flat (a random initialisation), and a pass
# over the matrix costs about the same (memory-bound) for up to ~16 of them.
NORM_BLOCK = 8
# Iterations at most of the norm-only path: its block is small (8 vectors), so where the
# top of the spectrum is flat σ_max needs more of them than MAX_SUBSPACE_ITERATIONS to
# reach the tolerance (18 on a random 4096 x 4096), each costing one pass over the matrix.
NORM_MAX_ITERATIONS = 40
# Iterations the cost estimate counts before a layer is measured: what a random (flat,
# the slowest) spectrum took, 9-14 for the top 32 and 13-19 for σ_max alone
# (benchmarks/results/spectra_big.json).
ESTIMATED_ITERATIONS = {"top_k": 10, "norm_only": 15}
# A pass with fewer vectors than this costs about as much (it reads the matrix).
_MIN_PASS_COLUMNS = 16
# CPU: equal-shaped matrices share a batched svdvals call only up to this size
# (m*n^2 units each). Measured at 1 and 2 threads: batches of 10 matrices from
# 8 x 8 to 128 x 64 were 1-37% faster batched, 256 x 128 8% slower, ResNet-18's
# classes (576 x 64 to 4608 x 512, 3-4 layers each) 0-24% slower.
CPU_BATCH_MAX_UNITS = 1e6


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

    singular_values: float tensor [groups, k], each row descending: k =
      min(rows, cols) (coverage "full"), the top_k largest (k = min(top_k,
      min(rows, cols)), "top_k") or σ_max alone (k = 1, "norm_only"). All NaN
      when `error` is set.
    matrix_shape: (groups, rows, cols) of the decomposed matrices.
    matrix_rule, layer_kind, weight_shape: as in `MatrixLayout`.
    error: non-empty when the spectrum could not be measured (non-finite weight,
      SVD did not converge): what happened.
    seconds: host seconds spent computing it (its share of a batched call).
    coverage: "full" (every singular value, by svdvals), "top_k" or "norm_only"
      (the big-matrix path; see the module's docstring). Metrics that need the
      whole spectrum are computed only for "full" (`partial_spectrum_metrics`).
    frobenius_norm: ‖W‖_F of all groups together (the block-diagonal matrix),
      read from the weight itself; set for partial coverage (NaN: take it from
      the singular values, as for "full").
    norm_rtol: partial coverage: the tolerance σ_max was iterated to (relative
      change between two subspace iterations); 0 for "full".
    iterations: partial coverage: the subspace iterations done (0 for "full").
    """

    singular_values: torch.Tensor
    matrix_shape: tuple[int, int, int]
    matrix_rule: str = ""
    layer_kind: str = ""
    weight_shape: tuple[int, ...] = ()
    error: str = ""
    seconds: float = 0.0
    coverage: str = "full"
    frobenius_norm: float = math.nan
    norm_rtol: float = 0.0
    iterations: int = 0


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
    num_above_mp_edge: spikes: singular values above the edge plus its finite-size
      Tracy–Widom margin (`mp_spike_threshold`; false spikes in ~1% of pure-noise draws).
    mp_spike_threshold: the singular value above which spikes are counted (that
      margin, and at least the rank tolerance); NaN where the full spectrum was
      not computed.
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
    mp_spike_threshold: float = math.nan

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
    coverage: str = "full"
    frobenius: float = math.nan
    iterations: int = 0


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
        module_names.class_name(module),
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


def batches_equal_shapes(device: torch.device | str, rows: int, cols: int) -> bool:
    """Whether equal-shaped rows x cols matrices on `device` share one batched svdvals call.

    On a GPU always (one launch instead of one per layer). On a CPU only up to
    CPU_BATCH_MAX_UNITS (rows·cols·min(rows, cols)): above it one call per
    layer was as fast or faster at 1 and 2 threads (measured per shape class in
    benchmarks/bench_spectra.py, "batching"), and a batch costs a copy.
    """
    if torch.device(device).type != "cpu":
        return True
    return rows * cols * min(rows, cols) <= CPU_BATCH_MAX_UNITS


def _decompose(prepared: list[_Prepared], dtype: torch.dtype) -> None:
    """Fill `values` (host tensors [groups, k]) of every item without an error.

    Equal-shaped matrices on one device go through one batched svdvals call
    where `batches_equal_shapes` says it is faster, whose result is copied to
    the host at once; the others, one call each.
    A batch that fails to converge is retried layer by layer so that only the
    failing layers are marked.
    """
    by_shape: dict[tuple, list[_Prepared]] = {}
    for p in prepared:
        if not p.error:
            rows, cols = p.matrices.shape[1:]
            key: tuple = (p.matrices.device, (rows, cols))
            if not batches_equal_shapes(p.matrices.device, rows, cols):
                key = (*key, p.index)  # a batch of its own
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
                # Stacked column-major (LAPACK's layout: a wide weight's transposed
                # view already is), which saves svdvals a transposing copy.
                stacked = torch.cat([p.matrices.to(dtype).mT for p in items]).mT
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


# ---------------------------------------------------------------------------
# Big matrices: the top k singular values, or σ_max, and the Frobenius norm


def svd_cost_units(
    matrix_shape: Sequence[int],
    coverage: str = "full",
    *,
    top_k: int = DEFAULT_TOP_K,
    oversample: int = DEFAULT_OVERSAMPLE,
    iterations: int | None = None,
) -> float:
    """The cost of a layer's spectrum by `coverage`, in units (see FULL_SQUARE_FACTOR).

    matrix_shape: (groups, rows, cols) or (rows, cols). Seconds are about units ×
    seconds per unit (`SpectrumCosts`: DEFAULT_SECONDS_PER_UNIT on one thread
    of this project's CPU until measured). "top_k" and "norm_only" count
    2·iterations + 2 passes over the matrix (default iterations:
    ESTIMATED_ITERATIONS, what a random matrix's spectrum takes), each with
    max(block, 16) columns (a pass reads the whole matrix however few vectors it
    multiplies).
    """
    groups, rows, cols = _matrix_dims(matrix_shape)
    m, n = max(rows, cols), min(rows, cols)
    if coverage == "full":
        return float(groups) * (m * n * n + FULL_SQUARE_FACTOR * n**3)
    if coverage not in ("top_k", "norm_only"):
        raise ValueError(f"coverage must be one of {COVERAGES}, got {coverage!r}")
    block = _block_size(n, coverage, top_k, oversample)
    its = ESTIMATED_ITERATIONS[coverage] if iterations is None else int(iterations)
    passes = 2 * its + 2
    return float(groups) * passes * m * n * max(block, _MIN_PASS_COLUMNS)


def _block_size(n: int, coverage: str, top_k: int, oversample: int) -> int:
    if coverage == "norm_only":
        return min(n, NORM_BLOCK)
    return min(n, top_k + oversample)


class SpectrumCosts:
    """Seconds per cost unit (`svd_cost_units`), learnt from the spectra measured.

    One figure per (device type, coverage, torch thread count), the latest
    measurement's (the machine's load changes; the latest is the best guess of
    the next). Before any: DEFAULT_SECONDS_PER_UNIT (one thread of this
    project's 2-core CPU: a conservative guess on faster machines, a GPU's
    first big layer included). Measurements of fewer than 1e8 units (a few
    milliseconds, dominated by call overheads) are not learnt from.
    """

    MIN_UNITS_LEARNT = 1e8

    def __init__(self, seconds_per_unit: float = DEFAULT_SECONDS_PER_UNIT):
        self.default = float(seconds_per_unit)
        self._learnt: dict[tuple[str, str, int], float] = {}

    def seconds_per_unit(self, coverage: str, device: torch.device | str = "cpu") -> float:
        key = (torch.device(device).type, coverage, torch.get_num_threads())
        return self._learnt.get(key, self.default)

    def estimate(
        self,
        matrix_shape: Sequence[int],
        coverage: str,
        device: torch.device | str = "cpu",
        **units_options,
    ) -> float:
        """Estimated seconds of a spectrum of `matrix_shape` by `coverage` on `device`."""
        units = svd_cost_units(matrix_shape, coverage, **units_options)
        return units * self.seconds_per_unit(coverage, device)

    def observe(
        self, units: float, coverage: str, device: torch.device | str, seconds: float
    ) -> None:
        """Learn from a measurement of `units` that took `seconds`."""
        if units >= self.MIN_UNITS_LEARNT and seconds > 0:
            key = (torch.device(device).type, coverage, torch.get_num_threads())
            self._learnt[key] = seconds / units


# The estimates `layer_spectra` uses unless given others (learnt in this process).
COSTS = SpectrumCosts()


def choose_coverage(
    matrix_shape: Sequence[int],
    *,
    time_budget: float | None = None,
    full_max_units: float | None = FULL_MAX_UNITS,
    top_k: int = DEFAULT_TOP_K,
    device: torch.device | str = "cpu",
    costs: SpectrumCosts | None = None,
) -> str:
    """The coverage "auto" picks for a layer: the richest that fits.

    "full" when its estimated seconds are at most `time_budget` (None: no
    budget) and either its cost is at most `full_max_units` (None: no size
    limit) or the top k would cost as much (estimated: a very tall matrix, e.g.
    a 50257 x 768 embedding, whose QR-first SVD costs m·n², takes no longer
    than the passes of the randomized path); else "top_k" when its estimate
    fits the budget; else "norm_only" (measured whatever its estimate: the
    cheapest there is). A matrix whose smaller side is at most
    top_k + DEFAULT_OVERSAMPLE is always "full" (the randomized path would
    decompose as much).
    """
    costs = COSTS if costs is None else costs
    groups, rows, cols = _matrix_dims(matrix_shape)
    if min(rows, cols) <= top_k + DEFAULT_OVERSAMPLE:
        return "full"
    full_s = costs.estimate(matrix_shape, "full", device)
    top_s = costs.estimate(matrix_shape, "top_k", device, top_k=top_k)
    small = full_max_units is None or svd_cost_units(matrix_shape, "full") <= full_max_units
    if (small or full_s <= top_s) and (time_budget is None or full_s <= time_budget):
        return "full"
    if time_budget is None or top_s <= time_budget:
        return "top_k"
    return "norm_only"


def frobenius_norm(matrices: torch.Tensor, dtype: torch.dtype = torch.float32) -> float:
    """‖·‖_F of matrices [groups, rows, cols] together (the block-diagonal matrix), exactly
    (one pass over the weight)."""
    # Row norms in `dtype` (short sums: accurate), then their norm in float64: one
    # reduction over 38M float32 values lost 3e-3 relative; this loses ~1e-9.
    rows = torch.linalg.vector_norm(matrices.to(dtype), dim=-1)
    return float(torch.linalg.vector_norm(rows.double()))


def top_singular_values(
    matrices: torch.Tensor,
    k: int = DEFAULT_TOP_K,
    *,
    oversample: int = DEFAULT_OVERSAMPLE,
    power_iterations: int = DEFAULT_POWER_ITERATIONS,
    rtol: float = DEFAULT_NORM_RTOL,
    max_iterations: int = MAX_SUBSPACE_ITERATIONS,
    seed: int = 0,
) -> tuple[torch.Tensor, int]:
    """The k largest singular values of each matrix [groups, rows, cols], randomized.

    Randomized block Krylov iteration (Halko, Martinsson & Tropp 2011, §4.5 and
    Alg. 4.4's power iterations; Musco & Musco 2015), in the tall orientation
    [m, n], m ≥ n (same singular values), its basis in the smaller space R^n: a
    Gaussian block Ω of b = k + oversample vectors (seeded: reproducible),
    V₀ = orth(Ω), then per iteration Y_j = AᵀA V_j (two passes over A) and
    V_{j+1} = orth(Y_j), orthogonalised against the blocks before; the
    Rayleigh–Ritz values are the square roots of the eigenvalues of
    H = Vᵀ AᵀA V (float64, grown by Y_j's block column), for V = [V₀ … V_j]:
    each a lower bound of the true one (interlacing) up to rounding (H's
    entries carry about eps·σ_max² of it, so a value σ may come out as high as
    about √(σ² + eps·σ_max²): values far below σ_max, zeros included, only to
    about √eps·σ_max), converging from below — much faster than plain
    subspace iteration where the top of the spectrum is flat (a random
    initialisation). Working in R^n keeps the Gram–Schmidt and Ritz steps at
    n·size·b, off the long side: on a 50257 x 768 embedding they had cost 3x
    the passes themselves when the basis lived in R^m.
    At least `power_iterations` iterations, then until σ_max has settled to
    `rtol` and, for k > 1, the k-th value (the last to converge) to
    TAIL_RTOL_FACTOR·rtol (`_Convergence`: the last relative change, the
    largest over groups, and its geometric extrapolation); at most
    `max_iterations`. An estimate, not a bound: where the top of the spectrum
    is evenly dense the changes can stall and resume (a planted 800 x 400
    matrix with σ evenly from 1 to 0.5, norm-only, stopped 1.1·rtol short). Where the next
    block would span the smaller side, svdvals gives the exact values instead
    (they cost no more). Computed in the matrices' dtype (float32 or float64)
    on their device.

    Error against svdvals (tests/unit/test_spectrum_big.py, bench_spectra's
    "big matrices"): see the figures there.

    Returns (values [groups, min(k, n)] descending on the matrices' device,
    iterations done; 0 when b covers the smaller side and svdvals was used).

    Raises:
      ValueError: k < 1.
      torch.linalg.LinAlgError: a QR or the small SVD failed (non-finite input).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    a = matrices if matrices.ndim == 3 else matrices.unsqueeze(0)
    if a.shape[1] < a.shape[2]:
        a = a.mT
    groups, m, n = a.shape
    b = min(n, k + max(0, int(oversample)))
    if b >= n:
        return torch.linalg.svdvals(a)[:, :k], 0
    if not (a.is_contiguous() or a.mT.is_contiguous()):
        a = a.contiguous()
    gram = _GramProducts(a)
    generator = torch.Generator().manual_seed(seed)
    omega = torch.randn(groups, n, b, generator=generator, dtype=a.dtype).to(a.device)
    v, _ = torch.linalg.qr(omega)
    blocks = [v]  # orthonormal [groups, n, b] each, orthogonal to each other
    # H = Vᵀ (AᵀA) V over the basis so far [groups, size, size], float64 on the host (small;
    # some devices have no float64 eigensolver); only the new block's column is computed
    # each iteration (H is symmetric).
    rayleigh = torch.zeros(groups, 0, 0, dtype=torch.float64)
    top, tail = _Convergence(), _Convergence()  # σ_max, and the k-th value (k > 1)
    last = min(k, n) - 1
    values = None
    iterations = 0
    for iterations in range(1, max(1, int(max_iterations)) + 1):
        y = gram(blocks[-1])  # AᵀA V_j, two passes over A
        basis = torch.cat(blocks, dim=-1)
        rayleigh = _grow_symmetric(rayleigh, (basis.mT @ y).double().cpu())
        theta = torch.linalg.eigvalsh(rayleigh).flip(-1)
        values = theta.clamp_min(0.0).sqrt().to(device=a.device, dtype=a.dtype)
        settled = top.settled(values[:, 0], rtol)
        if last > 0:
            # A k-th value at the Rayleigh matrix's rounding (rank below k) has nothing to
            # settle.
            floor = 10 * math.sqrt(torch.finfo(a.dtype).eps) * values[:, 0]
            settled &= tail.settled(values[:, last], TAIL_RTOL_FACTOR * rtol, floor)
        if iterations >= power_iterations and settled:
            break
        if iterations == max_iterations:
            break
        if (iterations + 1) * b >= n:
            # The next block would span the smaller side: the exact values cost no more.
            return torch.linalg.svdvals(a)[:, : min(k, n)], iterations
        # Block Gram-Schmidt twice ("twice is enough"; one pass leaves the new block far
        # from orthogonal to the earlier ones, and Ritz values of a non-orthonormal basis
        # overshoot), in the small space: n·size·b per pass.
        for _ in range(2):
            y = y - basis @ (basis.mT @ y)
        q, _ = torch.linalg.qr(y)
        # Columns the QR completes (a rank-deficient block) need not be orthogonal to
        # the basis: project once more and finish.
        q, _ = torch.linalg.qr(q - basis @ (basis.mT @ q))
        blocks.append(q)
    assert values is not None
    return values[:, : min(k, n)], iterations


class _Convergence:
    """Whether one Ritz value (per group) has settled, from its relative changes.

    Settled when its last relative change (the largest over groups) and its
    extrapolation, change·ρ/(1 − ρ) with ρ the slower of the last two ratios of
    successive changes (the change still to come, were the changes to fall
    geometrically), are both at most the tolerance. Where the top of the spectrum
    is flat the changes fall slowly and unevenly, and the last change alone
    understated the error (1.75x on a random 4096 x 4096).
    """

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.last_change: float | None = None
        self.rates: list[float] = []  # ratios of successive changes

    def settled(self, value: torch.Tensor, tol: float, floor: torch.Tensor | None = None) -> bool:
        """After this iteration's `value` [groups]; `floor`: a value at or below it (in
        every group) is settled whatever its changes (zero to working precision)."""
        previous, self.previous = self.previous, value
        at_floor = floor is not None and bool((value <= floor).all())
        if previous is None:
            return at_floor
        change = float(((value - previous).abs() / value.clamp_min(1e-30)).max())
        ratio = max(self.rates[-2:], default=0.5)
        remaining = change * ratio / (1.0 - ratio)
        if self.last_change is not None and self.last_change > 0:
            self.rates.append(min(change / self.last_change, MAX_CONVERGENCE_RATE))
        self.last_change = change
        # NaN: settled (the caller sees it)
        return at_floor or not (change > tol or remaining > tol)


class _GramProducts:
    """X ↦ AᵀA X for tall matrices a [groups, m, n] and a narrow block X [groups, n, b].

    Both products are written so that BLAS reads the big matrix in its stored order
    (row- or column-major): a transposed big operand with a narrow block was 10-30x
    slower.
    """

    def __init__(self, a: torch.Tensor):
        self.row_major = a.is_contiguous()
        self.a = a if self.row_major else a.mT  # row-major [m, n], or [n, m]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.row_major:
            z = self.a @ x  # A X [m, b]
            return (z.mT @ self.a).mT  # Aᵀ Z
        z = (x.mT @ self.a).mT  # A X, A stored as Aᵀ row-major
        return self.a @ z


def _grow_symmetric(matrix: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """[g, s, s] symmetric, new last block column [g, s + b, b] → [g, s + b, s + b].

    The new column's top s rows are the cross terms with the old basis; the new
    diagonal block is symmetrised (its two halves differ by rounding).
    """
    s = matrix.shape[-1]
    corner = column[:, s:, :]
    corner = (corner + corner.mT) / 2
    top = torch.cat([matrix, column[:, :s, :]], dim=-1)
    bottom = torch.cat([column[:, :s, :].mT, corner], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def _decompose_partial(
    p: _Prepared, dtype: torch.dtype, top_k: int, rtol: float, seed: int
) -> None:
    """Fill `values` [groups, k'] of a "top_k" or "norm_only" item, and its Frobenius norm."""
    start = time.perf_counter()
    matrices = p.matrices.to(dtype)
    n = min(matrices.shape[1:])
    if p.coverage == "norm_only":
        k, oversample, most = 1, min(n, NORM_BLOCK) - 1, NORM_MAX_ITERATIONS
    else:
        k, oversample, most = top_k, DEFAULT_OVERSAMPLE, MAX_SUBSPACE_ITERATIONS
    try:
        values, iterations = top_singular_values(
            matrices, k, oversample=oversample, rtol=rtol, max_iterations=most, seed=seed
        )
        values = values.cpu()
        frobenius = frobenius_norm(matrices, dtype)
        if bool(torch.isfinite(values).all()) and math.isfinite(frobenius):
            p.values, p.frobenius, p.iterations = values, frobenius, iterations
        else:
            p.error = "the randomized SVD returned non-finite singular values"
    except torch.linalg.LinAlgError as error:
        p.error = f"the randomized SVD did not converge: {error}"
    except torch.OutOfMemoryError:
        p.error = "out of memory on the weight's device during the randomized SVD"
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
    layers: Sequence[LayerWeight | tuple],
    *,
    dtype: torch.dtype = torch.float32,
    coverage: str = "full",
    time_budget: float | None = None,
    top_k: int = DEFAULT_TOP_K,
    norm_rtol: float = DEFAULT_NORM_RTOL,
    full_max_units: float | None = FULL_MAX_UNITS,
    costs: SpectrumCosts | None = None,
    seed: int = 0,
) -> list[Spectrum]:
    """Spectra of many layers at once, in the order given.

    Equal-shaped matrices share one batched svdvals call on their device where
    that is faster (`batches_equal_shapes`); results come back on the host
    (every consumer — metrics, event files — needs them there), one copy per
    call. A layer whose weight is not finite, or whose SVD does not converge,
    gets a Spectrum with `error` set and NaN singular values; the others are
    unaffected.

    Args:
      layers: LayerWeight(weight, groups, layer_kind) or plain tuples of them.
      dtype: float32 (default) or float64.
      coverage: "full" (default: every singular value of every layer, whatever
        its size), "auto" (per layer, `choose_coverage`: full up to
        `full_max_units` and `time_budget`, else the top `top_k`, else σ_max
        alone), or "top_k" / "norm_only" for every layer (a layer whose smaller
        side is at most top_k + DEFAULT_OVERSAMPLE is decomposed fully anyway).
      time_budget: "auto": seconds one layer's spectrum may take (estimated
        before, by `costs`); None: no budget, the size rule alone.
      top_k: singular values kept per group for "top_k".
      norm_rtol: relative tolerance σ_max is iterated to on the partial paths.
      full_max_units: "auto": the largest full SVD (`svd_cost_units`); None: no limit.
      costs: the seconds-per-unit estimates (default `COSTS`, learnt in this
        process from every layer measured here).
      seed: of the randomized paths' Gaussian blocks (reproducible values).

    Raises:
      ValueError: a weight of fewer than 2 dimensions, bad groups or bad options
        (a caller's mistake).
    """
    _check_dtype(dtype)
    if coverage not in ("auto", *COVERAGES):
        raise ValueError(
            f"coverage must be 'full', 'auto', 'top_k' or 'norm_only', got {coverage!r}"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if not (isinstance(norm_rtol, int | float) and norm_rtol > 0):
        raise ValueError(f"norm_rtol must be a positive number, got {norm_rtol!r}")
    if time_budget is not None and not (
        isinstance(time_budget, int | float)
        and not isinstance(time_budget, bool)
        and time_budget > 0
    ):
        raise ValueError(
            f"time_budget must be a positive number of seconds or None, got {time_budget!r}"
        )
    costs = COSTS if costs is None else costs
    with torch.no_grad():
        prepared = _prepare(layers)
        for p in prepared:
            shape = p.layout.matrix_shape
            if coverage == "auto":
                p.coverage = choose_coverage(
                    shape,
                    time_budget=time_budget,
                    full_max_units=full_max_units,
                    top_k=top_k,
                    device=p.matrices.device,
                    costs=costs,
                )
            elif coverage != "full" and min(shape[1:]) > top_k + DEFAULT_OVERSAMPLE:
                p.coverage = coverage
        full = [p for p in prepared if p.coverage == "full"]
        _decompose(full, dtype)
        for p in prepared:
            if p.coverage != "full" and not p.error:
                _decompose_partial(p, dtype, top_k, float(norm_rtol), seed)
        _learn(costs, prepared)
        return [_spectrum(p, dtype, top_k, float(norm_rtol)) for p in prepared]


def _learn(costs: SpectrumCosts, prepared: list[_Prepared]) -> None:
    """Seconds per unit from the layers just measured (per coverage and device)."""
    totals: dict[tuple, list[float]] = {}
    for p in prepared:
        if p.error or p.values is None:
            continue
        if p.coverage == "full":
            units = svd_cost_units(p.layout.matrix_shape, "full")
        else:
            units = svd_cost_units(
                p.layout.matrix_shape,
                p.coverage,
                top_k=p.values.shape[1],
                iterations=p.iterations,
            )
        total = totals.setdefault((p.coverage, p.matrices.device), [0.0, 0.0])
        total[0] += units
        total[1] += p.seconds
    for (coverage, device), (units, seconds) in totals.items():
        costs.observe(units, coverage, device, seconds)


def _spectrum(p: _Prepared, dtype: torch.dtype, top_k: int, rtol: float) -> Spectrum:
    groups, rows, cols = p.layout.matrix_shape
    values = p.values
    if p.error:
        k = {"full": min(rows, cols), "top_k": min(top_k, rows, cols), "norm_only": 1}
        values = torch.full((groups, k[p.coverage]), math.nan, dtype=dtype)
    partial = p.coverage != "full"
    return Spectrum(
        singular_values=values,
        matrix_shape=p.layout.matrix_shape,
        matrix_rule=p.layout.matrix_rule,
        layer_kind=p.layout.layer_kind,
        weight_shape=p.layout.weight_shape,
        error=p.error,
        seconds=p.seconds,
        coverage=p.coverage,
        frobenius_norm=p.frobenius if partial else math.nan,
        norm_rtol=rtol if partial else 0.0,
        iterations=p.iterations,
    )


def layer_spectrum(
    weight: torch.Tensor,
    *,
    groups: int = 1,
    layer_kind: str | None = None,
    dtype: torch.dtype = torch.float32,
    **options,
) -> Spectrum:
    """The `Spectrum` of one weight (on the host); numerical trouble is in its `error`.

    `options`: those of `layer_spectra` (coverage, time_budget, top_k, ...).
    """
    return layer_spectra([LayerWeight(weight, groups, layer_kind)], dtype=dtype, **options)[0]


# ---------------------------------------------------------------------------
# Metrics


# The Marchenko–Pastur spike count's finite-size margin: the Tracy–Widom law

# The TW1 quantile of the spike threshold: a pure-noise matrix's largest singular
# value exceeds it in about 1 - MP_SPIKE_QUANTILE of draws (Johnstone's
# approximation; measured in tests/unit/test_spectrum_mp_margin.py).
MP_SPIKE_QUANTILE = 0.99

# Gauss–Legendre nodes of the Fredholm determinant (Bornemann 2010: exponential
# convergence; 64 nodes give ~1e-14 for the CDF's tabulated range).
_TW_NODES = 64


def tracy_widom1_cdf(s: float) -> float:
    """F₁(s), the Tracy–Widom law of the largest eigenvalue of the GOE (β = 1).

    Computed as the Fredholm determinant F₁(s) = det(I − K)|L²(s, ∞) with kernel
    K(x, y) = ½·Ai((x + y)/2) (Ferrari & Spohn 2005), discretised by
    Gauss–Legendre quadrature on [s, s + L], beyond which Ai is below 1e-17
    (Bornemann 2010, "On the numerical evaluation of distributions in random
    matrix theory"). Checked against the tabulated quantiles and the law's mean
    and variance (tests/unit/test_spectrum_mp_margin.py); 0 below -14 and 1
    above 14 (within 1e-15 there).
    """
    s = float(s)
    if s >= 14.0:
        return 1.0
    if s <= -14.0:
        return 0.0
    upper = max(s, 0.0) + 18.0  # the kernel there is below Ai(18) ≈ 1e-23
    nodes, weights = np.polynomial.legendre.leggauss(_TW_NODES)
    x = s + (nodes + 1.0) * (upper - s) / 2.0
    w = weights * (upper - s) / 2.0
    root = np.sqrt(w)
    kernel = 0.5 * special.airy((x[:, None] + x[None, :]) / 2.0)[0]
    determinant = np.linalg.det(np.eye(_TW_NODES) - root[:, None] * kernel * root[None, :])
    return float(min(1.0, max(0.0, determinant)))


@functools.lru_cache(maxsize=64)
def tracy_widom1_quantile(q: float) -> float:
    """The q-quantile of TW1 (`tracy_widom1_cdf` inverted by root finding; cached).

    E.g. 0.90 → 0.4501, 0.95 → 0.9793, 0.99 → 2.0234 (Johnstone 2001, Table 1).
    """
    q = float(q)
    if not 0.0 < q < 1.0:
        raise ValueError(f"a quantile must be in (0, 1), got {q}")
    return float(optimize.brentq(lambda s: tracy_widom1_cdf(s) - q, -10.0, 10.0, xtol=1e-12))


def wishart_largest_centre_scale(n: int, p: int) -> tuple[float, float]:
    """Johnstone's (2001) centre μ and scale σ of the largest eigenvalue of XᵀX.

    X is n × p with iid N(0, 1) entries: (λ_max − μ)/σ → TW1 as n, p → ∞, with
    μ = (√(n−1) + √p)², σ = (√(n−1) + √p)·(1/√(n−1) + 1/√p)^(1/3),
    accurate already for n, p of 5-10 at the upper quantiles. Symmetric use:
    n = max(rows, cols), p = min (n − 1 taken as at least 1).
    """
    n, p = max(int(n), int(p)), min(int(n), int(p))
    if p < 1:
        raise ValueError(f"a matrix needs positive sizes, got {n} x {p}")
    a, b = math.sqrt(max(n - 1, 1)), math.sqrt(p)
    return (a + b) ** 2, (a + b) * (1.0 / a + 1.0 / b) ** (1.0 / 3.0)


# The noise scale s is estimated from the same matrix (its median singular value):
# measured on Gaussian matrices, sd(ŝ/s) ≈ MP_NOISE_SD / √(rows·cols) with this
# constant between 1.17 (200 x 50) and 1.46 (100 x 100) (tests/unit/
# test_spectrum_mp_margin.py); the larger value keeps the false-spike rate at
# or below the nominal one.
MP_NOISE_SD = 1.5

_TW_TABLE_GRID = np.linspace(-8.0, 8.0, 81)


@functools.lru_cache(maxsize=1)
def _tw1_spline():
    """F₁ on a grid of 81 points (one batch of Fredholm determinants, ~0.3 s once),
    as a cubic spline (within 1e-7 of `tracy_widom1_cdf`)."""
    grid = _TW_TABLE_GRID
    nodes, weights = np.polynomial.legendre.leggauss(_TW_NODES)
    half = (np.maximum(grid, 0.0) + 18.0 - grid) / 2.0
    x = grid[:, None] + (nodes[None, :] + 1.0) * half[:, None]
    root = np.sqrt(weights[None, :] * half[:, None])
    kernel = 0.5 * special.airy((x[:, :, None] + x[:, None, :]) / 2.0)[0]
    table = np.linalg.det(np.eye(_TW_NODES) - root[:, :, None] * kernel * root[:, None, :])
    return interpolate.CubicSpline(grid, np.clip(table, 0.0, 1.0))


@functools.lru_cache(maxsize=4096)
def _spike_quantile(spread: float, quantile: float) -> float:
    """The `quantile` of TW1 + spread·G, G standard normal (Gauss–Hermite, 40 nodes)."""
    if spread <= 0:
        return tracy_widom1_quantile(quantile)
    spline = _tw1_spline()
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()

    def cdf(t: float) -> float:
        points = np.clip(t - spread * nodes, _TW_TABLE_GRID[0], _TW_TABLE_GRID[-1])
        return float(np.dot(weights, np.clip(spline(points), 0.0, 1.0)))

    reach = 8.0 + 9.0 * spread  # beyond the Hermite nodes' reach (|node| < 8.1)
    return float(optimize.brentq(lambda t: cdf(t) - quantile, -reach, reach, xtol=1e-9))


def mp_spike_threshold(
    noise_scale: float, rows: int, cols: int, quantile: float = MP_SPIKE_QUANTILE
) -> float:
    """The singular value above which a rows × cols matrix's σ counts as a spike.

    Under the null of iid noise of standard deviation s = `noise_scale`, the
    largest eigenvalue of WᵀW is s²·(μ + σ·TW1) (`wishart_largest_centre_scale`,
    Johnstone 2001). s itself is estimated from the matrix (`spectrum_metrics`:
    its median singular value), with a relative error ε of standard deviation
    δ = MP_NOISE_SD/√(rows·cols); λ_max/ŝ² moves by about −2ε·μ/σ in TW units.
    The threshold is s·√(μ + σ·t), t the `quantile` of TW1 + (2δμ/σ)·G, G a
    standard normal: pure noise exceeds it in about 1 − quantile of draws
    (0.99: about 1%; the hard edge s·(√rows + √cols) alone is exceeded in
    13-22%). Its margin over the hard edge is of order s·n^(−1/6).
    """
    if not 0.0 < float(quantile) < 1.0:
        raise ValueError(f"a quantile must be in (0, 1), got {quantile}")
    mu, sigma = wishart_largest_centre_scale(rows, cols)
    spread = 2.0 * (mu / sigma) * MP_NOISE_SD / math.sqrt(float(rows) * float(cols))
    t = _spike_quantile(round(spread, 4), float(quantile))
    return float(noise_scale) * math.sqrt(max(0.0, mu + sigma * t))


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


def partial_spectrum_metrics(spectrum: Spectrum) -> SpectrumMetrics:
    """The metrics a partial spectrum ("top_k" or "norm_only" coverage) has.

    spectral_norm: the largest value (σ_max to `spectrum.norm_rtol`, a lower
    bound); frobenius_norm: `spectrum.frobenius_norm` (exact, from the weight);
    stable_rank: ‖W‖²_F/σ²_max (exact up to the σ_max tolerance: relative error
    about 2·norm_rtol, an upper bound since σ_max is one from below). Every
    metric that needs the whole spectrum — condition number, numerical rank,
    effective rank, the Marchenko–Pastur noise, edge and spike count, the
    power-law fit — is NaN, and its counts 0 (the coverage says they were not
    measured, not that they are zero).

    A "full" spectrum gets `spectrum_metrics` of its values.

    Raises:
      ValueError: singular values that are not finite and non-negative, or a
        partial spectrum without a finite non-negative `frobenius_norm`.
    """
    values = spectrum.singular_values
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64)
    if spectrum.coverage == "full":
        return spectrum_metrics(spectrum.singular_values, spectrum.matrix_shape)
    if spectrum.coverage not in COVERAGES:
        raise ValueError(f"coverage must be one of {COVERAGES}, got {spectrum.coverage!r}")
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("singular values must be finite and non-negative (and at least one)")
    frobenius = float(spectrum.frobenius_norm)
    if not (math.isfinite(frobenius) and frobenius >= 0):
        raise ValueError(
            f"a {spectrum.coverage} spectrum needs the weight's Frobenius norm "
            f"(Spectrum.frobenius_norm), got {spectrum.frobenius_norm!r}"
        )
    s_max = float(values.max())
    nan = math.nan
    return SpectrumMetrics(
        spectral_norm=s_max,
        frobenius_norm=frobenius,
        condition_number=nan,
        numerical_rank=0,
        stable_rank=frobenius**2 / s_max**2 if s_max > 0 else 0.0,
        effective_rank=nan,
        mp_bulk_edge=nan,
        mp_noise_scale=nan,
        num_above_mp_edge=0,
        alpha=nan,
        alpha_xmin=nan,
        alpha_ks_distance=nan,
        condition_number_is_bound=False,
    )


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
        Frobenius estimate ‖W‖_F/√(rows·cols) grows with them. The (hard)
        edge is s·(√rows + √cols). num_above_mp_edge counts σ above the edge
        plus a finite-size margin, `mp_spike_threshold`: s·√(μ + σ·t), with
        Johnstone's (2001) centre μ and scale σ of the largest eigenvalue of a
        rows × cols Wishart matrix and t the Tracy–Widom (TW1) quantile
        MP_SPIKE_QUANTILE = 0.99 — pure noise shows a false spike in about 1%
        of draws (with the hard edge alone: 15-50%, by size; measured in
        tests/unit/test_spectrum_mp_margin.py).
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
    threshold = mp_spike_threshold(noise, rows, cols)
    # Above the threshold and above the rank tolerance: when most singular values are
    # zero (a low-rank matrix) the median, and so the threshold, is about zero too.
    threshold = max(threshold, tol)
    above = int(np.count_nonzero(s > threshold))
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
        mp_spike_threshold=float(threshold),
    )
