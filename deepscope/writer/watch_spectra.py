"""watch()'s spectra measurer: singular value spectra of every eligible weight, periodically.

Default cadence: every DEFAULT_SPECTRA_EVERY = 200 optimizer steps, measured
on this project's 2-core CPU (benchmarks/bench_spectra.py,
benchmarks/results/spectra.json) with a CIFAR ResNet-18 (batch 32, SGD): one
measurement of all 21 weights (svdvals, metrics, writing) cost 1.4 training
steps on the heavily shared machine of the recorded run (0.7% at every 200),
and about a third of a step when it was quiet (0.4 s against 1.2 s). 200 keeps
the overhead under 2% with a margin of 3x or more for machines where SVDs are
relatively slower than training (GPUs train a step in milliseconds).
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field

import torch

from deepscope.analysis import spectrum as spectrum_math
from deepscope.writer import module_names
from deepscope.writer.hook_warnings import warn_from_hook

DEFAULT_SPECTRA_EVERY = 200
MAX_ERRORS_KEPT = 20


@dataclass
class SpectraStats:
    """What the spectra measurer did.

    measurements: times it ran. spectra: layer spectra written.
    non_finite: spectra not measured because the weight was not finite.
    failed: spectra not measured because the SVD did not converge (or gave
      non-finite values). seconds: host seconds spent measuring and writing.
    errors: the first MAX_ERRORS_KEPT messages of both kinds.
    """

    measurements: int = 0
    spectra: int = 0
    non_finite: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class SpectraWatcher:
    """Logs the spectrum of every eligible weight every `every` optimizer steps.

    A `watch.PeriodicMeasurer` named "spectra". Eligible: every module whose
    `weight` has 2 or more dimensions (`deepscope.analysis.spectrum.module_weight`:
    Linear, ConvNd, ConvTransposeNd, Embedding, EmbeddingBag, Bilinear, and
    custom modules with such a weight), found anew at each measurement (lazy
    modules join once initialised). A weight shared by several modules is
    measured once, under its first name. Tags are "<prefix>/<module name>" with
    the name from `model.named_modules()` ("<prefix>/model" for the model itself),
    without `torch.compile`'s `_orig_mod.` (`deepscope.writer.module_names`): a
    compiled model logs the same tags as the eager one.

    All layers are decomposed together (`layer_spectra`: one batched svdvals
    call per shape) under torch.no_grad; nothing touches `.grad`, the modules'
    training mode, or the weights. Results are copied to the host once per batch
    (a synchronisation every `every` steps, not on every step).

    A non-finite weight or an SVD that does not converge is written as a step
    with its error, counted in `stats` and warned about once; training goes on.

    Args:
      model: the module to watch.
      writer: a deepscope.SummaryWriter.
      every: cadence in optimizer steps.
      prefix: tag prefix.
      dtype: torch.float32 (default) or torch.float64 for the SVDs.
    """

    name = "spectra"

    def __init__(
        self,
        model: torch.nn.Module,
        writer,
        every: int = DEFAULT_SPECTRA_EVERY,
        *,
        prefix: str = "spectra",
        dtype: torch.dtype = torch.float32,
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not hasattr(writer, "add_spectrum"):
            raise TypeError(
                "writer must be a deepscope.SummaryWriter "
                "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
            )
        if isinstance(every, bool) or not hasattr(every, "__index__") or operator.index(every) < 1:
            raise ValueError(
                f"spectra_every must be a positive number of optimizer steps, got {every!r}"
            )
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.model = model
        self.writer = writer
        self.every = operator.index(every)
        self.prefix = prefix
        self.dtype = dtype
        self.stats = SpectraStats()

    def layers(self) -> list[tuple[str, spectrum_math.LayerWeight]]:
        """(tag, LayerWeight) of every eligible weight now, in `named_modules()` order."""
        found, seen = [], set()
        for name, module in module_names.named_modules(self.model):
            layer = spectrum_math.module_weight(module)
            if layer is None or id(layer.weight) in seen:
                continue
            seen.add(id(layer.weight))
            found.append((f"{self.prefix}/{name or 'model'}", layer))
        return found

    def measure(self, step: int) -> None:
        """Compute and write every eligible layer's spectrum at global step `step`."""
        start = time.perf_counter()
        try:
            with torch.no_grad():
                layers = self.layers()
                spectra = spectrum_math.layer_spectra(
                    [layer for _, layer in layers], dtype=self.dtype
                )
            for (tag, _), spectrum in zip(layers, spectra):
                written = self.writer.add_spectrum(tag, spectrum, global_step=step)
                self.stats.spectra += 1
                if written.error:
                    self._count_error(tag, step, spectrum, written.error)
        finally:
            self.stats.measurements += 1
            self.stats.seconds += time.perf_counter() - start

    def _count_error(self, tag: str, step: int, spectrum, error: str) -> None:
        if spectrum.error.startswith("non-finite weight"):
            self.stats.non_finite += 1
        else:
            self.stats.failed += 1
        message = f"deepscope: spectrum of {tag} at step {step} not measured: {error}"
        if len(self.stats.errors) < MAX_ERRORS_KEPT:
            self.stats.errors.append(message)
        if self.stats.non_finite + self.stats.failed == 1:
            warn_from_hook(
                message + " (recorded with its error; training goes on; such spectra are "
                "counted in monitor.measurers['spectra'].stats, warned about once)",
                stacklevel=2,
            )

    def flush(self) -> None:
        """Nothing is held back: every measurement is written as it is made."""

    def close(self) -> None:
        """Nothing to release."""
