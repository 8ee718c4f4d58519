"""watch()'s Jacobian-spectrum measurer: layers' and the network's Jacobian singular values.

Off by default (not one of watch()'s default measurers): give it in
`watch(..., measure=[deepscope.JacobianSpectra(probe=x, layers=["fc1"], every=500)])`.
Every `every` optimizer steps, after the step, it measures on the fixed probe
samples (eval mode: batch norm on running statistics, dropout off; every
module's mode restored after):

- the whole network's map, probe input → output (`network=True`; the output
  by `output`'s rule: a tensor, a tuple's first tensor, a `.logits`);
- each named layer's map, from its input (caught by a forward pre-hook on one
  probe pass through the network) to its output,

with `deepscope.jacobian_singular_values` (the full spectrum where a map is
small, else the top `k` by block Lanczos; see deepscope/analysis/jacobian.py),
and logs them as one step of the tag `tag` (`add_jacobian_singular_values`).
Its cost is the monitor's `MeasurerStats.seconds` for it (and each step's
`seconds`); `last_seconds` is the latest measurement's. A map that fails is
that map's error in the step; the measurement then raises (recorded in the
stats, training goes on), naming it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from deepscope.analysis import jacobian as jac
from deepscope.module_names import eager_module, find_modules, strip_compile_prefix
from deepscope.writer.jacobian import NETWORK
from deepscope.writer.measurer import Measurer
from deepscope.writer.probe import batch_to, model_device, probe_batches

DEFAULT_JACOBIAN_EVERY = 1000


class JacobianSpectra(Measurer):
    """Logs Jacobian singular values of layers and of the network on `probe`.

    A `deepscope.Measurer` (name "jacobian"), off by default. `measurements`
    counts the steps measured, `last_seconds` the latest one's cost,
    `non_finite` the maps whose spectrum held a non-finite value.

    Args:
      probe: fixed probe samples: a float tensor [S, ...], an (inputs, labels)
        tuple, or a list of such batches (concatenated); moved to the model's
        device when measured. Keep S small (4–16): every product runs the
        probe repeated once per Lanczos vector.
      every: optimizer steps between measurements.
      layers: module names (as in `model.named_modules()`) whose own map,
        input → output, is measured.
      network: also measure the whole network's map (input → output).
      k: top singular values found where a map's spectrum is not whole.
      output: which tensor of the network's output its map ends at (None:
        the default rule; a key or attribute name such as "logits"; or a
        function of the output). Its name (the string, a function's name, ""
        for the default rule) is the series' `output`.
      tag: the series' tag.
      options: more keyword arguments of `jacobian_singular_values`
        (full_max, probes, tol, max_iterations, chunk, seed, ...).
      name: the measurer's name (default "jacobian").
    """

    name = "jacobian"

    def __init__(
        self,
        probe,
        every: int = DEFAULT_JACOBIAN_EVERY,
        layers: Sequence[str] = (),
        network: bool = True,
        k: int = jac.DEFAULT_K,
        output: str | Callable | None = None,
        tag: str = "jacobian",
        *,
        name: str | None = None,
        **options,
    ):
        super().__init__(every, name=name)
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        if not all(isinstance(layer, str) and layer for layer in layers):
            raise ValueError(
                f"layers must be module names as in model.named_modules(), got {layers!r}"
            )
        if len({strip_compile_prefix(x) for x in layers}) != len(layers):
            raise ValueError(f"layers names a layer twice: {layers}")
        if not layers and not network:
            raise ValueError("nothing to measure: name layers=[...] or keep network=True")
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty string, got {tag!r}")
        jac._check_positive(k=k)
        unknown = set(options) - _OPTIONS
        if unknown:
            raise TypeError(
                f"unknown option(s) {sorted(unknown)} of JacobianSpectra; options of "
                f"jacobian_singular_values: {sorted(_OPTIONS)}"
            )
        batches = list(probe_batches(probe))
        if not batches or not all(isinstance(b, torch.Tensor) for b in batches):
            raise TypeError(
                "probe must be a float tensor [S, ...] of inputs (or an (inputs, labels) "
                "tuple, or a list of such batches)"
            )
        self.probe = torch.cat(batches) if len(batches) > 1 else batches[0]
        if network and not self.probe.is_floating_point():
            raise TypeError(
                f"the probe is a {self.probe.dtype} tensor: the network's Jacobian needs a "
                "floating-point input; for token ids pass network=False and name layers "
                "after the embedding"
            )
        self.layers = [strip_compile_prefix(x) for x in layers]
        self._given_layers = layers
        self.network = bool(network)
        self.k = k
        self.output = output
        self.tag = tag
        self.options = options
        self.model: torch.nn.Module | None = None
        self.writer = None
        self.modules: list[torch.nn.Module] = []
        self.measurements = 0
        self.last_seconds = 0.0
        self.non_finite = 0
        self._on_device: tuple[torch.device | None, torch.Tensor] | None = None

    @property
    def output_name(self) -> str:
        """The series' `output`: the name given, "" for the default rule (a function's
        `__name__`)."""
        if isinstance(self.output, str):
            return self.output
        return "" if self.output is None else getattr(self.output, "__name__", "output")

    def on_every_rank(self, ranks) -> bool:
        """Under FSDP2 every rank runs the probe (a forward is a collective); else rank 0."""
        return ranks.sharded

    def start(self, model: torch.nn.Module, optimizer, writer) -> None:
        """Find the layers in `model` (ValueError naming the ones it lacks); write to `writer`."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not hasattr(writer, "add_jacobian_singular_values"):
            raise TypeError(
                "writer must be a deepscope.SummaryWriter "
                "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
            )
        self.modules = find_modules(model, self._given_layers, "jacobian layers")
        self.model = model
        self.writer = writer
        self._on_device = None

    def _device_probe(self) -> torch.Tensor:
        device = model_device(self.model)
        if device is None:
            return self.probe
        if self._on_device is None or self._on_device[0] != device:
            self._on_device = (device, batch_to(self.probe, device))
        return self._on_device[1]

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        """Measure every map at `step` and log them; raises (after logging) naming the maps
        that failed."""
        if self.model is None:
            raise RuntimeError("JacobianSpectra.measure before start(model, optimizer, writer)")
        begin = time.perf_counter()
        results = self.spectra()
        seconds = time.perf_counter() - begin
        self.writer.add_jacobian_singular_values(
            self.tag, results, global_step=step, output=self.output_name, seconds=seconds
        )
        self.measurements += 1
        self.last_seconds = seconds
        failed = {name or "network": r for name, r in results.items() if isinstance(r, str)}
        for result in results.values():
            if not isinstance(result, str) and not _finite(result):
                self.non_finite += 1
        if failed:
            raise RuntimeError(
                f"jacobian at step {step}: "
                + "; ".join(f"{name}: {message}" for name, message in failed.items())
            )

    def spectra(self) -> dict[str, jac.JacobianSpectrum | str]:
        """Map name ("" for the network) → its spectrum now, or its error message."""
        eager = eager_module(self.model)
        x = self._device_probe()
        options = {"k": self.k, **self.options}
        results: dict[str, jac.JacobianSpectrum | str] = {}
        with jac.eval_mode(eager):
            if self.network:
                try:
                    results[NETWORK] = jac.jacobian_singular_values(
                        eager, x, output=self.output, **options
                    )
                except Exception as error:  # that map's error; the others go on
                    results[NETWORK] = f"{type(error).__name__}: {error}"
            if self.layers:
                try:
                    with torch.no_grad():
                        caught = jac.capture_inputs(eager, self.modules, x)
                except Exception as error:
                    for layer in self.layers:
                        results[layer] = f"{type(error).__name__}: {error}"
                    return results
                for layer, module, (args, kwargs) in zip(self.layers, self.modules, caught):
                    try:
                        results[layer] = _layer_spectrum(module, args, kwargs, options)
                    except Exception as error:
                        results[layer] = f"{type(error).__name__}: {error}"
        return results

    def flush(self) -> None:
        """Nothing is held: each measurement is written when made."""

    def close(self) -> None:
        """Nothing to release: hooks live only during a measurement."""


def _layer_spectrum(module, args: tuple, kwargs: dict, options: dict) -> jac.JacobianSpectrum:
    rest = args[1:]

    def layer(x):
        return module(x, *rest, **kwargs)

    with jac.eval_mode(module):
        return jac.jacobian_singular_values(layer, args[0].detach(), **options)


def _finite(result: jac.JacobianSpectrum) -> bool:
    values = result.singular_values if result.full else result.singular_values[:, :1]
    return bool(np.isfinite(values).all() and np.isfinite(result.mean_squared).all())


_OPTIONS = frozenset(
    {
        "full_max",
        "max_entries",
        "probes",
        "quadrature_steps",
        "tol",
        "max_iterations",
        "chunk",
        "seed",
        "log_det",
    }
)
