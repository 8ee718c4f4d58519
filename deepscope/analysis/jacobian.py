"""Jacobian singular values of a map on fixed probe samples (dynamical isometry).

For a module f (a layer, or a whole network) and probe samples x_1..x_S, the
Jacobian J_s = ∂f(x_s)/∂x_s (an m × n matrix: n = the input's elements per
sample, m = the output's) says how the map stretches small changes of its
input: a network whose layers' singular values all sit near 1 (dynamical
isometry; Saxe et al. 2014, Pennington et al. 2017) passes signals and
gradients through depth undistorted; σ_max ≫ 1 explodes them, many σ ≈ 0
lose directions.

What `jacobian_singular_values` computes per sample, never forming J unless
it is small:

- the full spectrum (all min(m, n) singular values) when min(m, n) ≤
  `full_max` and m·n ≤ `max_entries`: J is built from min(m, n) Jacobian-vector
  (or vector-Jacobian) products with the basis vectors and its singular values
  taken in float64 (`torch.linalg.svdvals`);
- else the top `k` singular values by restarted block Lanczos (a block Krylov
  method) on the smaller of JᵀJ (n × n) and JJᵀ (m × m), each product one
  `torch.func.jvp` and one `torch.func.vjp`, with full reorthogonalisation
  and Rayleigh–Ritz; it stops when the top-k values change by less than `tol`
  (relative to σ_max) between iterations, or after `max_iterations` block
  products (the basis is restarted from the top Ritz vectors when it would
  exceed 6 blocks);
- the mean squared singular value ‖J‖_F² / min(m, n): exact with the full
  spectrum; else ‖J‖_F² = tr(QᵀAQ) + tr(PAP), A the product above, Q the
  final Krylov basis (exact part) and P = I − QQᵀ, whose trace is estimated
  with `probes` Rademacher vectors (Hutchinson 1990; with the Krylov part
  exact this is the variance-reduced Hutch++ scheme of Meyer et al. 2021):
  unbiased, and exact where Q spans the whole space;
- log|det J| for a square map (m = n): exact (Σ log σ) with the full
  spectrum; else ½·tr log(JᵀJ) by stochastic Lanczos quadrature (Ubaru, Chen
  & Saad 2017) with `probes` Rademacher vectors and `quadrature_steps` Lanczos
  steps each: an estimate, skipped with `log_det=False` (NaN then; it is NaN
  where the map is not square). An exactly singular J reads −inf when exact;
  the estimate reads a very negative number there (log of the smallest float64
  for a zero Ritz value).

Samples are independent in eval mode (batch norm uses its running
statistics; dropout is off), so the Jacobian of the batched map is block
diagonal and one batched `jvp`/`vjp` applies every sample's J to its own
vectors: the probe is repeated once per vector and the products run as one
batch (in chunks of `chunk` rows), which needs no `vmap`. Where an op of the
map has no forward-AD rule, J·v comes from two vjps instead (J·v = ∂/∂u
⟨Jᵀu, v⟩, exact). The module is put in eval mode
for the measurement and every submodule's mode is restored after.

For a layer inside a network, `within=network` runs `inputs` through the
network (no gradients) and takes the layer's input from a forward pre-hook:
the map measured is the layer's, from its input to its output, at the inputs
it sees on the probe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

# Defaults (see `jacobian_singular_values`).
DEFAULT_K = 8
DEFAULT_FULL_MAX = 256
DEFAULT_MAX_ENTRIES = 1 << 24
DEFAULT_PROBES = 16
DEFAULT_QUADRATURE_STEPS = 24
DEFAULT_TOL = 1e-4
DEFAULT_MAX_ITERATIONS = 40
DEFAULT_CHUNK = 256


@dataclasses.dataclass
class JacobianSpectrum:
    """One map's Jacobian singular values on S probe samples.

    input_dim, output_dim: n and m, elements per sample of the map's input and output.
    singular_values: float64 [S, K], each row descending: all min(m, n) when
      `full`, else the top k (NaN where a sample has fewer).
    full: whether each row is the whole spectrum.
    mean_squared: float64 [S], ‖J‖_F² / min(m, n); exact when `mean_squared_probes`
      is 0, else a Hutchinson estimate with that many probes (see the module doc).
    log_abs_det: float64 [S], log|det J| for a square map (exact when `full`,
      else a stochastic Lanczos quadrature estimate with `log_det_probes`
      probes), NaN otherwise.
    products: Jacobian products per sample spent (each a jvp or a vjp of one vector;
      a Gram product JᵀJv is two).
    seconds: host seconds the measurement took.
    """

    input_dim: int
    output_dim: int
    singular_values: np.ndarray
    full: bool
    mean_squared: np.ndarray
    log_abs_det: np.ndarray
    mean_squared_probes: int = 0
    log_det_probes: int = 0
    products: int = 0
    seconds: float = 0.0

    @property
    def square(self) -> bool:
        return self.input_dim == self.output_dim

    @property
    def sigma_max(self) -> np.ndarray:
        """float64 [S]: each sample's largest singular value."""
        return self.singular_values[:, 0]

    def summary(self) -> JacobianSummary:
        """Mean and spread (population standard deviation) over the samples."""
        return JacobianSummary.of(self.sigma_max, self.mean_squared, self.log_abs_det)


@dataclasses.dataclass(frozen=True)
class JacobianSummary:
    """Summaries over probe samples: mean and population std (ddof 0) of σ_max, of the
    mean squared singular value and of log|det J| (NaN for a map that is not square)."""

    sigma_max_mean: float
    sigma_max_std: float
    mean_squared_mean: float
    mean_squared_std: float
    log_abs_det_mean: float
    log_abs_det_std: float

    @classmethod
    def of(
        cls, sigma_max: np.ndarray, mean_squared: np.ndarray, log_abs_det: np.ndarray
    ) -> JacobianSummary:
        def mean_std(values: np.ndarray) -> tuple[float, float]:
            values = np.asarray(values, dtype=np.float64)
            if values.size == 0 or np.all(np.isnan(values)):
                return math.nan, math.nan
            with np.errstate(invalid="ignore"):
                return float(np.mean(values)), float(np.std(values))

        return cls(*mean_std(sigma_max), *mean_std(mean_squared), *mean_std(log_abs_det))


# --------------------------------------------------------------------------- public entry


def jacobian_singular_values(
    module: Callable[[torch.Tensor], object],
    inputs: torch.Tensor,
    *,
    k: int = DEFAULT_K,
    within: torch.nn.Module | None = None,
    output: str | Callable[[object], torch.Tensor] | None = None,
    full_max: int = DEFAULT_FULL_MAX,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    probes: int = DEFAULT_PROBES,
    quadrature_steps: int = DEFAULT_QUADRATURE_STEPS,
    tol: float = DEFAULT_TOL,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    chunk: int = DEFAULT_CHUNK,
    seed: int = 0,
    log_det: bool = True,
) -> JacobianSpectrum:
    """The singular values of each probe sample's Jacobian of `module` w.r.t. its input.

    Args:
      module: the map, a `torch.nn.Module` (or any callable of a batch): its
        output for a batch [S, ...] is a tensor [S, ...] (or, by `output`'s
        rule, holds one).
      inputs: float tensor [S, ...]: S probe samples of the map's input; or,
        with `within`, the network's input batch.
      k: how many of the largest singular values to find when the spectrum is
        not computed whole (an int >= 1).
      within: a network holding `module`: `inputs` go through it and the
        module's own input is caught by a forward pre-hook (the module must
        run once per forward pass).
      output: which tensor of the module's output the map ends at: None (a
        tensor; a tuple's or list's first tensor; a mapping's or object's
        `logits`, else its first tensor), an attribute or key name (e.g.
        "logits"), or a function of the output returning a tensor.
      full_max, max_entries: the whole spectrum (exact) when min(m, n) <=
        full_max and m * n <= max_entries.
      probes: Rademacher probes of the Hutchinson and log-det estimates
        (used only when the spectrum is not whole).
      quadrature_steps: Lanczos steps per probe of the log-det estimate.
      tol: relative change of the top-k values between iterations at which
        block Lanczos stops.
      max_iterations: block products at most (each one jvp and one vjp of
        the probe repeated block-size times).
      chunk: rows per batched forward pass (memory bound).
      seed: of the start block and the probes (a fixed seed measures the same
        way at every step).
      log_det: estimate log|det J| of a square map whose spectrum is not whole
        (stochastic Lanczos quadrature: probes × quadrature_steps Gram products,
        often most of the cost); False leaves it NaN. With the whole spectrum it
        is always exact.

    Returns:
      A `JacobianSpectrum` (float64 arrays on the host).

    Raises:
      TypeError: inputs is not a floating-point tensor with a batch dim, or
        the output holds no tensor.
      ValueError: bad k, probes or sizes; an output whose first dim is not
        the batch of S samples.
      RuntimeError: `module` does not run in `within`'s forward pass, or runs
        more than once.
    """
    start = time.perf_counter()
    _check_positive(
        k=k,
        full_max=full_max,
        max_entries=max_entries,
        probes=probes,
        quadrature_steps=quadrature_steps,
        max_iterations=max_iterations,
        chunk=chunk,
    )
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        raise TypeError(
            "inputs must be a floating-point tensor [S, ...] of probe samples (the map's "
            "input, or the network's with within=); for token ids measure from the "
            f"embedding's output instead; got {_describe(inputs)}"
        )
    if inputs.dim() < 1 or inputs.shape[0] < 1:
        raise ValueError(
            f"inputs must have a batch dim holding at least one sample, got shape "
            f"{list(inputs.shape)}"
        )
    modules = [module] if isinstance(module, torch.nn.Module) else []
    if within is not None:
        modules.append(within)
    with eval_mode(*modules), torch.no_grad():
        if within is not None:
            ((args, kwargs),) = capture_inputs(within, [module], inputs)
            x, rest = args[0], args[1:]
            fn = _bound(module, rest, kwargs, output)
        else:
            x, fn = inputs, _bound(module, (), {}, output)
        x = x.detach()
        result = _measure(
            fn,
            x,
            k,
            full_max,
            max_entries,
            probes,
            quadrature_steps,
            tol,
            max_iterations,
            chunk,
            seed,
            log_det,
        )
    result.seconds = time.perf_counter() - start
    return result


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return type(value).__name__


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Eval mode (batch norm on running statistics, dropout off) for the duration;
    every submodule's mode restored after."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for m, training in modes:
            m.training = training


def output_tensor(value, output: str | Callable[[object], torch.Tensor] | None = None):
    """The tensor of a module's output the map ends at (see `output` of
    `jacobian_singular_values`)."""
    if callable(output):
        value = output(value)
    elif isinstance(output, str):
        if isinstance(value, Mapping) and output in value:
            value = value[output]
        elif hasattr(value, output):
            value = getattr(value, output)
        else:
            raise TypeError(f"the output ({type(value).__name__}) has no {output!r}")
    if isinstance(value, torch.Tensor):
        return value
    logits = value.get("logits") if isinstance(value, Mapping) else getattr(value, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    items = list(value.values()) if isinstance(value, Mapping) else value
    if isinstance(items, (tuple, list)):
        for item in items:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(
        f"the output is a {type(value).__name__} holding no tensor: pass output= (a key, an "
        "attribute name or a function returning the tensor)"
    )


def _bound(module, rest: tuple, kwargs: dict, output) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return output_tensor(module(x, *rest, **kwargs), output)

    return fn


def capture_inputs(
    network: torch.nn.Module, modules: Sequence[torch.nn.Module], inputs
) -> list[tuple[tuple, dict]]:
    """Each module's (args, kwargs) on one forward pass of `inputs` through `network`.

    The first positional argument must be a tensor (the map's input); the rest
    are held fixed. Runs under the caller's grad mode and module modes.

    Raises:
      RuntimeError: a module that did not run, or ran more than once, in the pass.
    """
    caught: list[tuple[tuple, dict] | None] = [None] * len(modules)
    runs = [0] * len(modules)

    def hook_for(index: int):
        def hook(module, args, kwargs):
            runs[index] += 1
            caught[index] = (tuple(args), dict(kwargs))

        return hook

    handles = [
        m.register_forward_pre_hook(hook_for(i), with_kwargs=True) for i, m in enumerate(modules)
    ]
    try:
        if isinstance(inputs, Mapping):
            network(**inputs)
        else:
            network(inputs)
    finally:
        for handle in handles:
            handle.remove()
    found = []
    for index, got in enumerate(caught):
        if got is None or runs[index] == 0:
            raise RuntimeError(
                f"{type(modules[index]).__name__} did not run in the network's forward pass "
                "on the probe, so its input is unknown"
            )
        if runs[index] > 1:
            raise RuntimeError(
                f"{type(modules[index]).__name__} runs {runs[index]} times in one forward pass "
                "(one module used in several places), so its input is not one layer's; "
                "give each use its own module"
            )
        args, kwargs = got
        if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
            raise TypeError(
                f"{type(modules[index]).__name__}'s first input is "
                f"{_describe(args[0]) if args else 'missing'}, not a floating-point tensor"
            )
        found.append(got)
    return found


# --------------------------------------------------------------------------- the products


class _Products:
    """J and Jᵀ of every sample applied to blocks of vectors, batched over samples.

    x: the probe [S, *in]. `jv(V)`: V [S, n, c] → [S, m, c]; `jtu(U)`: U [S, m, c] →
    [S, n, c]. The probe repeated c times runs as one batch (in chunks): the batched
    map's Jacobian is block diagonal (samples independent in eval mode).
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int):
        self.fn, self.x, self.chunk = fn, x, chunk
        self.samples = x.shape[0]
        self.in_shape = tuple(x.shape[1:])
        y = fn(x)
        if not isinstance(y, torch.Tensor) or y.dim() < 1 or y.shape[0] != self.samples:
            raise ValueError(
                f"the map's output for {self.samples} samples has shape "
                f"{list(getattr(y, 'shape', []))}: its first dim must be the samples"
            )
        if not y.is_floating_point():
            raise TypeError(f"the map's output is a {y.dtype} tensor, not floating point")
        self.out_shape = tuple(y.shape[1:])
        self.n = math.prod(self.in_shape)
        self.m = math.prod(self.out_shape)
        self.dtype = x.dtype
        self.products = 0
        # True once forward-mode AD failed on an op of the map: J·v by two vjps instead.
        self.double_vjp = False

    def _rows(self, c: int) -> Iterator[tuple[int, int]]:
        """Chunks (start, stop) of the S·c rows, whole samples' blocks of vectors."""
        total = self.samples * c
        step = max(1, self.chunk)
        for begin in range(0, total, step):
            yield begin, min(total, begin + step)

    def _repeated(self, c: int) -> torch.Tensor:
        """The probe with each sample repeated c times, [S·c, *in] (its own memory: forward
        AD cannot write tangents into an expanded view)."""
        return self.x.repeat_interleave(c, dim=0)

    def jv(self, v: torch.Tensor) -> torch.Tensor:
        c = v.shape[-1]
        xs = self._repeated(c)
        tangents = v.transpose(1, 2).reshape(self.samples * c, *self.in_shape).to(self.dtype)
        parts = []
        for begin, stop in self._rows(c):
            out = self._jvp(xs[begin:stop], tangents[begin:stop])
            parts.append(out.reshape(stop - begin, self.m))
        self.products += c
        return torch.cat(parts).reshape(self.samples, c, self.m).transpose(1, 2)

    def _jvp(self, xs: torch.Tensor, tangents: torch.Tensor) -> torch.Tensor:
        """J·v by forward-mode AD; where the map has an op without a forward-AD rule,
        by the double-vjp identity J·v = ∂/∂u ⟨Jᵀu, v⟩ (reverse mode twice, exact)."""
        if not self.double_vjp:
            try:
                return torch.func.jvp(self.fn, (xs,), (tangents,))[1]
            except (NotImplementedError, RuntimeError) as error:
                if not _no_forward_ad(error):
                    raise
                self.double_vjp = True  # the rest of this measurement goes this way
        _, pullback = torch.func.vjp(self.fn, xs)
        zeros = torch.zeros((xs.shape[0], *self.out_shape), dtype=self.dtype, device=xs.device)
        _, transposed = torch.func.vjp(lambda u: pullback(u)[0], zeros)
        return transposed(tangents)[0]

    def jtu(self, u: torch.Tensor) -> torch.Tensor:
        c = u.shape[-1]
        xs = self._repeated(c)
        cotangents = u.transpose(1, 2).reshape(self.samples * c, *self.out_shape).to(self.dtype)
        parts = []
        for begin, stop in self._rows(c):
            _, pullback = torch.func.vjp(self.fn, xs[begin:stop])
            (grad,) = pullback(cotangents[begin:stop])
            parts.append(grad.reshape(stop - begin, self.n))
        self.products += c
        return torch.cat(parts).reshape(self.samples, c, self.n).transpose(1, 2)

    def gram(self, v: torch.Tensor) -> torch.Tensor:
        """A v with A = JᵀJ (n ≤ m) or JJᵀ (m < n): the smaller Gram matrix."""
        if self.n <= self.m:
            return self.jtu(self.jv(v))
        return self.jv(self.jtu(v))

    def gram_quadratic(self, v: torch.Tensor) -> torch.Tensor:
        """vᵀ A v per column: ‖J v‖² (n ≤ m) or ‖Jᵀ v‖²: float64 [S, c], one product."""
        image = self.jv(v) if self.n <= self.m else self.jtu(v)
        return (image.double() ** 2).sum(dim=1)


def _no_forward_ad(error: BaseException) -> bool:
    """Whether an error says an op (or an autograd.Function) has no forward-AD rule."""
    text = str(error).lower()
    return any(
        words in text
        for words in ("forward ad", "forward-mode", "jvp", "forward mode", "not implemented")
    )


# --------------------------------------------------------------------------- the measurement


def _measure(
    fn, x, k, full_max, max_entries, probes, steps, tol, max_iterations, chunk, seed, log_det
):
    ops = _Products(fn, x, chunk)
    n, m, samples = ops.n, ops.m, ops.samples
    d = min(m, n)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    if d <= full_max and m * n <= max_entries:
        values = _full_spectrum(ops)
        mean_squared = (values**2).sum(dim=1) / d
        if m == n:
            with np.errstate(divide="ignore"):
                exact_log_det = np.log(values.cpu().numpy()).sum(axis=1)
        else:
            exact_log_det = np.full(samples, np.nan)
        return JacobianSpectrum(
            input_dim=n,
            output_dim=m,
            singular_values=values.cpu().numpy(),
            full=True,
            mean_squared=mean_squared.cpu().numpy(),
            log_abs_det=exact_log_det,
            products=ops.products,
        )
    top, basis, trace_part = _block_lanczos(ops, k, tol, max_iterations, generator)
    rest = _remainder_trace(ops, basis, probes, generator)
    mean_squared = ((trace_part + rest) / d).cpu().numpy()
    log_values = np.full(samples, np.nan)
    log_probes = 0
    if m == n and log_det:
        log_values = _log_det_slq(ops, probes, steps, generator).cpu().numpy()
        log_probes = probes
    values = np.full((samples, k), np.nan)
    found = top.cpu().numpy()[:, :k]
    values[:, : found.shape[1]] = found
    return JacobianSpectrum(
        input_dim=n,
        output_dim=m,
        singular_values=values,
        full=False,
        mean_squared=mean_squared,
        log_abs_det=log_values,
        mean_squared_probes=probes,
        log_det_probes=log_probes,
        products=ops.products,
    )


def _full_spectrum(ops: _Products) -> torch.Tensor:
    """All min(m, n) singular values per sample (float64 [S, min(m, n)], descending),
    from J built by products with the basis of the smaller side."""
    samples, n, m = ops.samples, ops.n, ops.m
    side = min(n, m)
    eye = torch.eye(side, dtype=ops.dtype, device=ops.x.device).expand(samples, side, side)
    block = max(1, min(side, ops.chunk // max(1, samples)))
    columns = []
    for begin in range(0, side, block):
        part = eye[:, :, begin : begin + block]
        columns.append(ops.jv(part) if n <= m else ops.jtu(part))
    matrix = torch.cat(columns, dim=2).double()  # [S, m, n] (J) or [S, n, m] (Jᵀ)
    return torch.linalg.svdvals(matrix)


def _orthonormal(w: torch.Tensor, basis: torch.Tensor | None, generator) -> torch.Tensor:
    """Columns of w made orthonormal and orthogonal to `basis` (two Gram–Schmidt
    passes); columns that vanish against it are replaced by random directions."""
    norms = w.norm(dim=1, keepdim=True)
    for _ in range(2):
        if basis is not None and basis.shape[-1]:
            w = w - basis @ (basis.transpose(1, 2) @ w)
    small = w.norm(dim=1, keepdim=True) <= 1e-5 * norms.clamp_min(torch.finfo(w.dtype).tiny)
    if bool(small.any()):
        fresh = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype)
        w = torch.where(small, fresh, w)
        for _ in range(2):
            if basis is not None and basis.shape[-1]:
                w = w - basis @ (basis.transpose(1, 2) @ w)
    q, _ = torch.linalg.qr(w)
    if basis is not None and basis.shape[-1]:
        q = q - basis @ (basis.transpose(1, 2) @ q)
        q, _ = torch.linalg.qr(q)
    return q


def _block_lanczos(ops: _Products, k: int, tol: float, max_iterations: int, generator):
    """Top-k singular values by restarted block Lanczos on the smaller Gram matrix A.

    Returns (σ float64 [S, ≤ B] descending, the final orthonormal basis Q [S, d, B],
    tr(QᵀAQ) float64 [S]).
    """
    samples, d = ops.samples, min(ops.n, ops.m)
    device, dtype = ops.x.device, ops.dtype
    b = min(d, k + max(4, k // 2))
    max_basis = min(d, max(6 * b, 2 * k + 4 * b))
    start = torch.randn((samples, d, b), generator=generator, device=device, dtype=dtype)
    block = _orthonormal(start, None, generator)
    basis = torch.empty((samples, d, 0), device=device, dtype=dtype)
    t = torch.empty((samples, 0, 0), dtype=torch.float64, device=device)
    previous = None
    for iteration in range(max_iterations):
        basis = torch.cat([basis, block], dim=2)
        w = ops.gram(block)  # A Q_j
        column = (basis.transpose(1, 2) @ w).double()  # [S, B, b]: Q_iᵀ A Q_j
        size = basis.shape[-1]
        grown = torch.zeros((samples, size, size), dtype=torch.float64, device=device)
        old = t.shape[-1]
        grown[:, :old, :old] = t
        grown[:, :, old:] = column
        grown[:, old:, :old] = column[:, :old, :].transpose(1, 2)
        t = 0.5 * (grown + grown.transpose(1, 2))
        theta, vectors = torch.linalg.eigh(t)  # ascending
        sigma = theta.flip(-1).clamp_min(0).sqrt()
        top = sigma[:, :k]
        if previous is not None and previous.shape == top.shape:
            scale = top[:, :1].clamp_min(torch.finfo(torch.float64).tiny)
            if float(((top - previous).abs() / scale).max()) <= tol:
                break
        previous = top
        if size >= d or iteration == max_iterations - 1:
            break
        room = min(b, d - size)
        block = _orthonormal(w[:, :, :room], basis, generator)
        if size + room > max_basis:
            # Thick restart: keep the top Ritz vectors (their Gram block is diag θ
            # exactly); the next block, orthogonal to the whole old basis, continues
            # the Krylov space from them.
            keep = min(size, max(k, max_basis - 2 * b))
            basis = basis @ vectors.flip(-1)[:, :, :keep].to(dtype)
            t = torch.diag_embed(theta.flip(-1)[:, :keep])
    trace = torch.diagonal(t, dim1=1, dim2=2).sum(-1)
    return sigma, basis, trace


def _rademacher(shape, generator, device, dtype) -> torch.Tensor:
    signs = torch.randint(0, 2, shape, generator=generator, device=device)
    return (signs * 2 - 1).to(dtype)


def _remainder_trace(ops: _Products, basis: torch.Tensor, probes: int, generator) -> torch.Tensor:
    """Hutchinson estimate of tr(PAP), P = I − QQᵀ, with `probes` Rademacher vectors
    (float64 [S]); 0 when Q spans the whole space."""
    samples, d = ops.samples, min(ops.n, ops.m)
    if basis.shape[-1] >= d:
        return torch.zeros(samples, dtype=torch.float64, device=ops.x.device)
    z = _rademacher((samples, d, probes), generator, ops.x.device, ops.dtype)
    z = z - basis @ (basis.transpose(1, 2) @ z)
    return ops.gram_quadratic(z).mean(dim=1)


def _log_det_slq(ops: _Products, probes: int, steps: int, generator) -> torch.Tensor:
    """½ tr log(JᵀJ) = log|det J| (square J) by stochastic Lanczos quadrature:
    float64 [S], `probes` Rademacher start vectors, `steps` Lanczos steps each
    (the three-term recurrence, as Ubaru et al.), all probes as one batch of products."""
    samples, d = ops.samples, ops.n
    device, dtype = ops.x.device, ops.dtype
    steps = min(steps, d)
    z = _rademacher((samples, d, probes), generator, device, dtype)
    q = z / math.sqrt(d)
    alphas, betas = [], []
    beta = torch.zeros((samples, 1, probes), device=device, dtype=dtype)
    previous = torch.zeros_like(q)
    for j in range(steps):
        w = ops.gram(q) - beta * previous
        alpha = (q * w).sum(dim=1, keepdim=True)
        w = w - alpha * q
        alphas.append(alpha.squeeze(1).double())
        beta = w.norm(dim=1, keepdim=True)
        if j == steps - 1:
            break
        betas.append(beta.squeeze(1).double())
        previous, q = q, w / beta.clamp_min(torch.finfo(dtype).tiny)
    count = len(alphas)
    tri = torch.diag_embed(torch.stack(alphas, dim=-1))  # [S, P, j, j]
    if count > 1:
        off = torch.stack(betas[: count - 1], dim=-1)
        tri = tri + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)
    theta, u = torch.linalg.eigh(tri)
    weights = u[..., 0, :] ** 2  # [S, P, j]
    # A singular value of exactly 0 reads as the log of the smallest float64.
    logs = torch.log(theta.clamp_min(torch.finfo(torch.float64).tiny))
    quad = (weights * logs).sum(-1)  # zᵀ log(A) z / ‖z‖² per probe
    return 0.5 * d * quad.mean(dim=1)
