"""watch()'s channel-correlation measurer: a layer's channel correlations on a fixed probe.

Every `every` optimizer steps the probe batches go through the model (eval
mode, no gradients) with forward hooks on the named layers; each layer's
outputs are accumulated (every input and spatial position is a sample) and
logged under "correlation/<layer>". Hooks live only during the measurement,
so training steps run without them; the modules' modes are restored after,
so batch-norm statistics are untouched.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch

from deepscope.analysis.correlation import CorrelationAccumulator
from deepscope.writer.compare import (
    find_modules,
    layer_output,
    model_device,
    probe_batches,
    probing,
    reused_module_error,
)
from deepscope.writer.hook_warnings import warn_from_hook

DEFAULT_CORRELATION_EVERY = 500


class CorrelationWatcher:
    """Logs the named layers' channel correlations on `probe` every `every` optimizer steps.

    A `watch.PeriodicMeasurer` (name "correlation"). `non_finite` counts the
    NaN/Inf activation values met (left out of the statistics), `overflow` the
    channels whose sums overflowed (correlation 0); the first trouble warns
    once. `measurements` counts the steps measured.

    Args:
      model: the network being trained.
      writer: a `deepscope.SummaryWriter`.
      layers: module names as in `model.named_modules()`; checked here.
      probe: fixed inputs: a tensor, an (inputs, labels) tuple, or a list of
        batches; moved to the model's device when measured (the moved copy is kept).
      every: optimizer steps between measurements.
      channel_dim: the channel dimension of the layers' outputs.
      tag_prefix: tags are `tag_prefix + layer`.
      matrix_dtype: "float16" (default) or "uint8".
    """

    name = "correlation"

    def __init__(
        self,
        model: torch.nn.Module,
        writer,
        layers: Sequence[str],
        probe,
        every: int = DEFAULT_CORRELATION_EVERY,
        channel_dim: int = 1,
        tag_prefix: str = "correlation/",
        matrix_dtype: str = "float16",
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not hasattr(writer, "add_channel_correlation"):
            raise TypeError(
                "writer must be a deepscope.SummaryWriter "
                "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
            )
        if isinstance(every, bool) or not hasattr(every, "__index__") or operator.index(every) < 1:
            raise ValueError(f"every must be a positive number of optimizer steps, got {every!r}")
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        if not layers or not all(isinstance(name, str) for name in layers):
            raise ValueError(
                "correlation_layers must be a non-empty list of module names, as in "
                f"model.named_modules(), got {layers!r}"
            )
        if len(set(layers)) != len(layers):
            raise ValueError(f"correlation_layers names a layer twice: {layers}")
        self.modules = find_modules(model, layers, "correlation_layers")
        self.batches = list(probe_batches(probe))
        if not self.batches:
            raise ValueError("probe holds no batches: give a tensor of inputs")
        self.model = model
        self.writer = writer
        self.layers = layers
        self.every = operator.index(every)
        self.channel_dim = channel_dim
        self.tag_prefix = tag_prefix
        self.matrix_dtype = matrix_dtype
        self.non_finite = 0
        self.overflow = 0
        self.measurements = 0
        self._on_device: tuple[torch.device | None, list[torch.Tensor]] | None = None

    def _device_batches(self) -> list[torch.Tensor]:
        device = model_device(self.model)
        if device is None:
            return self.batches
        if self._on_device is None or self._on_device[0] != device:
            self._on_device = (device, [batch.to(device) for batch in self.batches])
        return self._on_device[1]

    def measure(self, step: int) -> None:
        """Run the probe, log each layer's correlations at `step`; raises on failure."""
        accumulators = [CorrelationAccumulator(self.channel_dim) for _ in self.layers]

        calls: set[int] = set()  # layers that ran in the current forward pass

        def hook_for(index: int, accumulator: CorrelationAccumulator):
            def hook(module, inputs, output):
                if index in calls:
                    raise reused_module_error(self.layers[index])
                calls.add(index)
                accumulator.update(layer_output(output))

            return hook

        handles = [
            module.register_forward_hook(hook_for(index, accumulator))
            for index, (module, accumulator) in enumerate(zip(self.modules, accumulators))
        ]
        try:
            with probing(self.model):
                for batch in self._device_batches():
                    calls.clear()
                    self.model(batch)
        finally:
            for handle in handles:
                handle.remove()

        silent = []
        for layer, accumulator in zip(self.layers, accumulators):
            if not accumulator.channels:
                silent.append(layer)
                continue
            result = accumulator.compute()
            self._count_trouble(
                layer, step, result.rows.non_finite, int(result.rows.overflow.sum())
            )
            self.writer.add_channel_correlation(
                self.tag_prefix + layer,
                result,
                global_step=step,
                channel_dim=self.channel_dim
                % accumulator.ndim,  # a non-negative index for the metadata
                matrix_dtype=self.matrix_dtype,
                row_name=layer,
            )
        self.measurements += 1
        if silent:
            raise RuntimeError(
                f"correlation layers {silent} did not run in the model's forward pass on "
                "the probe; nothing was logged for them"
            )

    def _count_trouble(self, layer: str, step: int, non_finite: int, overflow: int) -> None:
        if (non_finite or overflow) and not (self.non_finite or self.overflow):
            warn_from_hook(
                f"deepscope: {non_finite} non-finite activations and {overflow} channels too "
                f"large to square (overflow) in {layer!r} on the probe at step {step}; "
                "non-finite sample positions are left out, overflowing channels get "
                "correlation 0; counted in the watcher's non_finite and overflow "
                "(monitor.measurers['correlation'])",
                stacklevel=2,
            )
        self.non_finite += non_finite
        self.overflow += overflow

    def flush(self) -> None:
        """Nothing is held: each measurement is written when made."""

    def close(self) -> None:
        """Nothing to release: hooks live only during a measurement."""
