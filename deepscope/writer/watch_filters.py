"""watch()'s filters and feature-maps measurers: conv weights, and layers' outputs, as images.

Both are off unless given in `watch(..., measure=[...])`:

- `Filters(every=..., layers=None)`: every `every` optimizer steps, after the
  step (the weights updated), each chosen conv layer's weight is logged with
  `add_filters` as the tag "filters/<layer>". `layers=None` is the model's
  first conv (nn.Conv1d or nn.Conv2d, in `named_modules()` order): the layer
  whose filters look at the input; name any others (a later layer's filters are
  one grayscale tile per (out, in) pair, capped at `max_tiles` a step). Cost: one
  host copy of each weight, 19 kB a step for ResNet-18's conv1.
- `FeatureMaps(layers, probe, every=...)`: every `every` steps, after the step,
  one forward pass of the probe sample (`probe[sample]` alone: eval mode, so
  batch norm uses its running statistics and the sample's output does not
  depend on the rest of the batch; no gradients; every module's mode and the
  torch random state, CPU and the model's CUDA device, restored after; the
  forward hooks removed after) catches each named layer's output, logged with
  `add_feature_maps` as the tag "feature_maps/<layer>", one image per channel.

Default cadences keep each ≤ 1% of training time on the ResNet-18 benchmark
(benchmarks/bench_filters.py, results in benchmarks/results/filters.json).
A failing measurement raises (recorded in the monitor's stats; training goes on).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from deepscope.module_names import eager_module, find_modules, named_modules, strip_compile_prefix
from deepscope.writer import distributed
from deepscope.writer.filters import DEFAULT_MAX_CHANNELS, DEFAULT_MAX_TILES
from deepscope.writer.measurer import Measurer
from deepscope.writer.probe import (
    batch_to,
    layer_output,
    model_device,
    not_called_message,
    probe_batches,
    probing,
    reused_module_error,
    run_probe,
)

DEFAULT_FILTERS_EVERY = 500
DEFAULT_FEATURE_MAPS_EVERY = 500
_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d)


def first_conv(model: torch.nn.Module) -> str:
    """The model's first nn.Conv1d/Conv2d's name (`named_modules()` order); ValueError if none."""
    for name, module in named_modules(model):
        if isinstance(module, _CONVS):
            return name
    raise ValueError(
        "the model has no nn.Conv1d or nn.Conv2d: name the layers whose filters to log "
        "(Filters(layers=[...]), modules with a conv weight [out, in, kH, kW])"
    )


def _check_layers(layers: object, what: str) -> list[str] | None:
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)  # type: ignore[call-overload]
    if not layers or not all(isinstance(name, str) for name in layers):
        raise ValueError(f"{what} must be module names (strings), got {layers!r}")
    return layers


def _check_writer(writer, method: str) -> None:
    if not hasattr(writer, method):
        raise TypeError(
            "writer must be a deepscope.SummaryWriter "
            "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
        )


class Filters(Measurer):
    """Logs conv layers' weights as images every `every` optimizer steps (name "filters").

    Args:
      every: optimizer steps between measurements.
      layers: module names of conv layers; None: the first conv.
      max_tiles: tiles stored per layer and step (`add_filters`).
      scale: the tab's default colour scale, "per_tile" or "shared".
      tag_prefix: tags are "<tag_prefix>/<layer>".
      name: the measurer's name (default "filters").

    `measurements` counts the steps logged, `last_seconds` the latest one's cost.
    """

    name = "filters"

    def __init__(
        self,
        every: int = DEFAULT_FILTERS_EVERY,
        layers: Sequence[str] | str | None = None,
        max_tiles: int = DEFAULT_MAX_TILES,
        scale: str = "per_tile",
        tag_prefix: str = "filters",
        *,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        self.layers = _check_layers(layers, "layers")
        self.max_tiles = max_tiles
        self.scale = scale
        self.tag_prefix = tag_prefix
        self.modules: dict[str, torch.nn.Module] = {}
        self.writer = None
        self.measurements = 0
        self.last_seconds = 0.0

    def on_every_rank(self, ranks) -> bool:
        """Under FSDP2 every rank joins the gather of each weight; else rank 0 alone."""
        return ranks.sharded

    def start(self, model: torch.nn.Module, optimizer, writer) -> None:
        """Find the layers (ValueError for unknown or weightless ones); remember the writer."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_writer(writer, "add_filters")
        names = self.layers if self.layers is not None else [first_conv(model)]
        modules = find_modules(model, names, "Filters layers")
        for name, module in zip(names, modules):
            weight = getattr(module, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.ndim not in (3, 4):
                raise ValueError(
                    f"Filters layer {name!r} ({type(module).__name__}) has no conv weight "
                    "[out, in, kH, kW] (or [out, in, k]): name a conv layer"
                )
        self.modules = {strip_compile_prefix(n): m for n, m in zip(names, modules)}
        self.writer = writer

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        """Log each layer's weight (as updated by this step) as step `step`."""
        if self.writer is None:
            raise RuntimeError("Filters.measure before start(model, optimizer, writer)")
        begin = time.perf_counter()
        for name, module in self.modules.items():
            start = time.perf_counter()
            with torch.no_grad():
                weight = distributed.full_tensor(module.weight.detach())  # whole, under FSDP2
            self.writer.add_filters(
                f"{self.tag_prefix}/{name}",
                weight,
                global_step=step,
                layer=name,
                max_tiles=self.max_tiles,
                scale=self.scale,
                seconds=time.perf_counter() - start,
            )
        self.measurements += 1
        self.last_seconds = time.perf_counter() - begin


def _one_sample(batch, sample: int):
    """Sample `sample` of a probe batch, kept as a batch of one (tensor or mapping)."""
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 0 or not 0 <= sample < batch.shape[0]:
            raise ValueError(
                f"sample {sample} is out of range for a probe of shape {list(batch.shape)}"
            )
        return batch[sample : sample + 1]
    return {key: value[sample : sample + 1] for key, value in batch.items()}


class FeatureMaps(Measurer):
    """Logs the named layers' outputs on one probe sample every `every` steps (name "feature_maps").

    Args:
      layers: module names whose outputs to log (their output [1, C, H, W] or
        [1, C, L] on the sample; a tuple or mapping output by `probe.layer_output`'s rule).
      probe: a batch of inputs (a tensor [N, ...], an (inputs, labels) tuple, a
        mapping of keyword inputs) or batches of them (the first is used).
      every: optimizer steps between measurements.
      sample: the probe sample's index in its batch.
      max_channels: channels stored per layer and step.
      scale: the tab's default colour scale, "per_tile" or "shared".
      tag_prefix: tags are "<tag_prefix>/<layer>".
      name: the measurer's name (default "feature_maps").
    """

    name = "feature_maps"

    def __init__(
        self,
        layers: Sequence[str] | str,
        probe,
        every: int = DEFAULT_FEATURE_MAPS_EVERY,
        sample: int = 0,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        scale: str = "per_tile",
        tag_prefix: str = "feature_maps",
        *,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        checked = _check_layers(layers, "layers")
        if checked is None:
            raise ValueError("FeatureMaps needs layers: the module names whose outputs to log")
        self.layers = checked
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
            raise ValueError(f"sample must be a non-negative int, got {sample!r}")
        self.sample = sample
        batches = probe_batches(probe)
        first = next(iter(batches), None)
        if first is None:
            raise ValueError("probe holds no batch")
        self.input = _one_sample(first, sample)
        self.max_channels = max_channels
        self.scale = scale
        self.tag_prefix = tag_prefix
        self.modules: dict[str, torch.nn.Module] = {}
        self.model: torch.nn.Module | None = None
        self.writer = None
        self.measurements = 0
        self.last_seconds = 0.0
        self.last_outputs: dict[str, torch.Tensor] = {}

    def on_every_rank(self, ranks) -> bool:
        """Under FSDP2 every rank runs the probe (a forward is a collective); else rank 0."""
        return ranks.sharded

    def start(self, model: torch.nn.Module, optimizer, writer) -> None:
        """Find the layers (ValueError naming unknown ones) and remember the model and writer."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_writer(writer, "add_feature_maps")
        modules = find_modules(model, self.layers, "FeatureMaps layers")
        self.modules = {strip_compile_prefix(n): m for n, m in zip(self.layers, modules)}
        self.model = model
        self.writer = writer

    def outputs(self, model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Each layer's output on the probe sample now, [C, ...] (detached, on its device)."""
        model = model if model is not None else self.model
        if model is None:
            raise RuntimeError("FeatureMaps.outputs before start(model, optimizer, writer)")
        eager = eager_module(model)
        device = model_device(eager)
        caught: dict[str, torch.Tensor] = {}
        calls: dict[str, int] = {}
        errors: list[Exception] = []

        def hook_for(name: str):
            def hook(module, inputs, output):
                calls[name] = calls.get(name, 0) + 1
                try:
                    caught[name] = layer_output(output).detach()[0]
                except Exception as error:  # raised after the pass, hooks removed
                    errors.append(error)

            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in self.modules.items()]
        devices = [device] if device is not None and device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), probing(eager):
                run_probe(eager, batch_to(self.input, device))
        finally:
            for handle in handles:
                handle.remove()
        if errors:
            raise errors[0]
        reused = [name for name, count in calls.items() if count > 1]
        if reused:
            raise reused_module_error(reused[0])
        missing = [name for name in self.modules if name not in caught]
        if missing:
            raise RuntimeError(not_called_message(model, missing, "FeatureMaps"))
        return caught

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        """Run the probe sample and log each layer's output as step `step`."""
        if self.writer is None:
            raise RuntimeError("FeatureMaps.measure before start(model, optimizer, writer)")
        begin = time.perf_counter()
        outputs = self.outputs()
        seconds = time.perf_counter() - begin
        for name, output in outputs.items():
            self.writer.add_feature_maps(
                f"{self.tag_prefix}/{name}",
                output,
                global_step=step,
                sample=self.sample,
                layer=name,
                max_channels=self.max_channels,
                scale=self.scale,
                seconds=seconds,
            )
        self.last_outputs = outputs
        self.measurements += 1
        self.last_seconds = time.perf_counter() - begin
