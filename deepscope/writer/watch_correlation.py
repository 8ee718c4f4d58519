"""watch()'s channel-correlation measurer: a layer's channel correlations on a fixed probe.

Every `every` optimizer steps the probe batches go through the model (eval
mode, no gradients) with forward hooks on the named layers; each layer's
outputs are accumulated (every input and position is a sample; channels at
dim 1 of (N, C, H, W), the last dim of (N, C) and (N, L, C), dim 1 of a
Conv1d-like module's (N, C, L), unless `channel_dim`/`channel_dims` say
otherwise) and logged under "correlation/<layer>". Hooks live only during the
measurement, so training steps run without them; the modules' modes are
restored after, so batch-norm statistics are untouched. A compiled model
(`torch.compile`) is probed through the eager module it wraps, and its
layers are named and tagged without `_orig_mod.`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from deepscope.analysis.correlation import CorrelationAccumulator
from deepscope.module_names import eager_module, find_modules, strip_compile_prefix
from deepscope.writer.correlation import MATRIX_DTYPES, PACKINGS
from deepscope.writer.hook_warnings import warn_from_hook
from deepscope.writer.measurer import Measurer
from deepscope.writer.probe import (
    batch_to,
    checked_channel_dims,
    layer_channel_dim,
    layer_output,
    model_device,
    not_called_message,
    probe_batches,
    probing,
    reused_module_error,
    run_probe,
)

DEFAULT_CORRELATION_EVERY = 500


class Correlations(Measurer):
    """Logs the named layers' channel correlations on `probe` every `every` optimizer steps.

    A `deepscope.Measurer` (name "correlation"). `non_finite` counts the
    NaN/Inf activation values met (left out of the statistics), `overflow` the
    channels whose sums overflowed (correlation 0); the first trouble warns
    once. `measurements` counts the steps measured.

    Args:
      layers: module names as in `model.named_modules()`, with or without
        torch.compile's `_orig_mod.`; checked against the model by `start()`
        (done by `watch()`). Tags carry the name without it.
      probe: fixed inputs: a tensor, an (inputs, labels) tuple, a mapping of
        input tensors (`model(**batch)`), or a list of batches; moved to the
        model's device when measured (the moved copy is kept).
      every: optimizer steps between measurements.
      channel_dim: the channel dimension of every layer's outputs; None
        (default): dim 1 of (N, C, H, W, …), the last of (N, C) and (N, L, C),
        dim 1 of a Conv1d-like module's (N, C, L).
      channel_dims: per layer name, overriding channel_dim, e.g. {"conv1d": 1}.
      tag_prefix: tags are `tag_prefix + layer`.
      matrix_dtype: "float16" (default) or "uint8".
      packing: "full" (default) or "upper_triangle" (half the bytes).
      name: the measurer's name (default "correlation").
    """

    name = "correlation"

    def __init__(
        self,
        layers: Sequence[str],
        probe,
        every: int = DEFAULT_CORRELATION_EVERY,
        channel_dim: int | None = None,
        tag_prefix: str = "correlation/",
        matrix_dtype: str = "float16",
        channel_dims: Mapping[str, int] | None = None,
        packing: str = "full",
        *,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        if not layers or not all(isinstance(layer, str) for layer in layers):
            raise ValueError(
                "correlation_layers must be a non-empty list of module names, as in "
                f"model.named_modules(), got {layers!r}"
            )
        self._given_layers = layers
        layers = [strip_compile_prefix(layer) for layer in layers]
        if len(set(layers)) != len(layers):
            raise ValueError(f"correlation_layers names a layer twice: {layers}")
        if channel_dim is not None and (
            isinstance(channel_dim, bool) or not isinstance(channel_dim, int)
        ):
            raise TypeError(f"channel_dim must be an int or None, got {channel_dim!r}")
        self.channel_dims = checked_channel_dims(channel_dims, layers, "correlation channel_dims")
        if matrix_dtype not in MATRIX_DTYPES:
            raise ValueError(f"matrix_dtype must be one of {MATRIX_DTYPES}, got {matrix_dtype!r}")
        if packing not in PACKINGS:
            raise ValueError(f"packing must be one of {PACKINGS}, got {packing!r}")
        self.batches = list(probe_batches(probe))
        if not self.batches:
            raise ValueError("probe holds no batches: give a tensor of inputs")
        self.model: torch.nn.Module | None = None
        self.writer = None
        self.modules: list[torch.nn.Module] = []
        self.layers = layers
        self.channel_dim = channel_dim
        self.tag_prefix = tag_prefix
        self.matrix_dtype = matrix_dtype
        self.packing = packing
        self.non_finite = 0
        self.overflow = 0
        self.measurements = 0
        self._on_device: tuple[torch.device | None, list[torch.Tensor]] | None = None

    def start(self, model: torch.nn.Module, optimizer, writer) -> None:
        """Find the layers in `model` (ValueError naming the ones it lacks); write to `writer`."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not hasattr(writer, "add_channel_correlation"):
            raise TypeError(
                "writer must be a deepscope.SummaryWriter "
                "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
            )
        self.modules = find_modules(model, self._given_layers, "correlation_layers")
        self.model = model
        self.writer = writer
        self._on_device = None

    def _device_batches(self) -> list:
        device = model_device(self.model)
        if device is None:
            return self.batches
        if self._on_device is None or self._on_device[0] != device:
            self._on_device = (device, [batch_to(batch, device) for batch in self.batches])
        return self._on_device[1]

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        """Run the probe, log each layer's correlations at `step`; raises on failure.

        A layer whose hook was not called on the probe gets no step; the
        measurement then raises (watch() records the error) naming it.
        """
        if self.model is None:
            raise RuntimeError("Correlations.measure before start(model, optimizer, writer)")
        accumulators: list[CorrelationAccumulator | None] = [None] * len(self.layers)

        calls: set[int] = set()  # layers that ran in the current forward pass

        def hook_for(index: int):
            def hook(module, inputs, output):
                if index in calls:
                    raise reused_module_error(self.layers[index])
                calls.add(index)
                values = layer_output(output)
                if accumulators[index] is None:
                    given = self.channel_dims.get(self.layers[index], self.channel_dim)
                    accumulators[index] = CorrelationAccumulator(
                        layer_channel_dim(values, module, given)
                    )
                accumulators[index].update(values)

            return hook

        handles = [
            module.register_forward_hook(hook_for(index))
            for index, module in enumerate(self.modules)
        ]
        eager = eager_module(self.model)
        failure = None
        try:
            with probing(self.model):
                for batch in self._device_batches():
                    calls.clear()
                    run_probe(eager, batch)
        except Exception as error:
            failure = error
        finally:
            for handle in handles:
                handle.remove()

        if self.ranks.distributed:
            accumulators = self._combine_ranks(accumulators, failure)
            if not self.ranks.writes:
                return
        elif failure is not None:
            raise failure
        silent = []
        for layer, accumulator in zip(self.layers, accumulators):
            if accumulator is None or not accumulator.channels:
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
                channel_dim=result.channel_dim,
                matrix_dtype=self.matrix_dtype,
                row_name=layer,
                packing=self.packing,
            )
        self.measurements += 1
        if silent:
            raise RuntimeError(
                not_called_message(self.model, silent, f"correlation at step {step}")
            )

    def on_every_rank(self, ranks) -> bool:
        """Always: each rank's probe counts, and the co-moments are combined exactly."""
        return True

    def _combine_ranks(
        self, accumulators: list[CorrelationAccumulator | None], failure: Exception | None
    ) -> list[CorrelationAccumulator | None]:
        """Every rank's accumulators merged in rank order (on rank 0; [] elsewhere).

        Each rank's probe is its share of the samples: the correlations are
        those of the ranks' probes concatenated. Every rank joins the gather,
        one whose own probe pass failed too. Raises that failure, or
        RankFailure naming the rank that failed.
        """
        state = None
        if failure is None:
            state = list(accumulators)
        parts = self.ranks.all_gather_objects(state, "channel correlations")
        if failure is not None:
            raise failure
        if not self.ranks.writes:
            return []
        merged: list[CorrelationAccumulator | None] = list(accumulators)
        for rank, part in enumerate(parts):
            if rank == self.ranks.rank:
                continue
            for index, other in enumerate(part):
                if other is None:
                    continue
                if merged[index] is None:
                    merged[index] = other
                else:
                    merged[index].merge(other)
        return merged

    def _count_trouble(self, layer: str, step: int, non_finite: int, overflow: int) -> None:
        if (non_finite or overflow) and not (self.non_finite or self.overflow):
            warn_from_hook(
                f"deepscope: {non_finite} non-finite activations and {overflow} channels too "
                f"large to square (overflow) in {layer!r} on the probe at step {step}; "
                "non-finite sample positions are left out, overflowing channels get "
                "correlation 0; counted in the measurer's non_finite and overflow "
                f"(monitor.measurers[{self.name!r}])",
            )
        self.non_finite += non_finite
        self.overflow += overflow

    def flush(self) -> None:
        """Nothing is held: each measurement is written when made."""

    def close(self) -> None:
        """Nothing to release: hooks live only during a measurement."""


class CorrelationWatcher(Correlations):
    """`Correlations` already started on `model` and `writer` (the older spelling, for scripts).

    `CorrelationWatcher(model, writer, layers, probe, ...)` is
    `Correlations(layers, probe, ...)` followed by `start(model, None, writer)`.
    """

    def __init__(self, model: torch.nn.Module, writer, layers: Sequence[str], probe, *args, **kw):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        super().__init__(layers, probe, *args, **kw)
        self.start(model, None, writer)
