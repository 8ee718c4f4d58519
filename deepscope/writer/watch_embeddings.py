"""watch()'s embeddings measurer: layers' outputs on probe samples, for TensorBoard's Projector.

Off by default (not one of watch()'s default measurers): give it in
`watch(..., measure=[deepscope.Embeddings(probe=x, layers=["fc1"], labels=y)])`.
Every `every` optimizer steps, after the step, one pass of the fixed probe
through the model (eval mode, no gradients; every module's mode and the RNG
states restored after, no `.grad` touched) catches every named layer's
output; each is pooled to one vector per sample (the rule of
deepscope/writer/embeddings.py: positions of a conv's (N, C, H, W) output
averaged, tokens of a (N, L, C) sequence averaged, (N, D) as is; `pooling=`
chooses "max", "first"/"cls", "flatten" or a function) and written with
TensorBoard's own `add_embedding` as the tag "embeddings/<layer>" at that
step, with the labels (and class names) as metadata and the sprite images.
The Projector tab lists one tensor per layer and step, "embeddings/fc1:00500".

Cost: the monitor's `MeasurerStats.seconds` for it; `last_seconds` is the
latest measurement's (probe pass and writing), `last_bytes` the storage it
wrote (tensors.tsv, metadata.tsv, sprite.png of every layer), `bytes_written`
the total. A layer that fails (non-finite vectors, say) is left out of that
step; the measurement then raises after writing the others (recorded in the
stats, training goes on), naming it.

Default cadence: DEFAULT_EMBEDDINGS_EVERY = 1000 (benchmarks/bench_embeddings.py,
ResNet-18 on CPU, one thread, batch 64: one measurement of 256 probe images for layer3,
layer4 and linear costs 1.8 training steps, 0.18% of training time at every=1000, 1% at
about every=180). Storage limits it more: that measurement wrote 5.95 MB (per layer the
text tensors.tsv, about N × D × 15 bytes, plus the sprite, rewritten at each step).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch

from deepscope import module_names
from deepscope.writer import embeddings as emb
from deepscope.writer.measurer import Measurer

DEFAULT_EMBEDDINGS_EVERY = 1000


class Embeddings(Measurer):
    """Logs the named layers' pooled outputs on `probe` as Projector embeddings.

    A `deepscope.Measurer` (name "embeddings"), off by default.
    `measurements` counts the steps measured, `last_seconds` and `last_bytes`
    the latest one's cost and storage, `bytes_written` the storage in all,
    `logged` the latest `LoggedEmbedding` of each layer, `non_finite` the
    layers' vectors left out for holding NaN or infinity.

    Args:
      probe: fixed probe samples: a tensor (N, ...), an (inputs, labels)
        tuple, a mapping of inputs, or a list of such batches (concatenated);
        moved to the model's device at each measurement (kept where it is
        given in between).
      every: optimizer steps between measurements.
      layers: the modules embedded: names as in `model.named_modules()` (""
        is the model's output; `_orig_mod.` prefixes accepted) or modules.
      labels: one per probe sample (ints or strings); None takes the
        probe's labels when its batches are (inputs, labels) tuples.
      images: sprite images, one per sample; None uses image-like probe
        inputs (float (N, 1|3, H, W)); False writes none.
      class_names: names of integer labels 0..K-1.
      pooling: "mean", "max", "first" / "cls", "flatten", or a function.
      channel_dims: layer name → its output's channel dim, overriding the rule.
      tag: the tags' prefix: each layer is "<tag>/<layer>".
      name: the measurer's name (default "embeddings").
    """

    name = "embeddings"

    def __init__(
        self,
        probe,
        every: int = DEFAULT_EMBEDDINGS_EVERY,
        layers: Sequence[str | torch.nn.Module] | str | torch.nn.Module = (),
        labels=None,
        images=None,
        *,
        class_names: Sequence[str] | None = None,
        pooling: emb.Pooling = "mean",
        channel_dims: Mapping[str, int] | None = None,
        tag: str = emb.DEFAULT_TAG,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        if isinstance(layers, (str, torch.nn.Module)):
            layers = [layers]
        layers = list(layers)
        if not layers:
            raise ValueError(
                "Embeddings needs layers=[...]: the modules (or their names) whose outputs "
                "are embedded, e.g. layers=['fc1']"
            )
        for layer in layers:
            if not isinstance(layer, (str, torch.nn.Module)):
                raise TypeError(
                    "layers must be module names (str) or modules of the model, got "
                    f"{type(layer).__name__}"
                )
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty string, got {tag!r}")
        if channel_dims is not None and not isinstance(channel_dims, Mapping):
            raise TypeError(
                "channel_dims must map layer names to channel dims, e.g. {'encoder.0': 1}, "
                f"got {type(channel_dims).__name__}"
            )
        for key, dim in (channel_dims or {}).items():
            if not isinstance(key, str) or isinstance(dim, bool) or not isinstance(dim, int):
                raise TypeError(f"channel_dims must map layer names to ints, got {key!r}: {dim!r}")
        self.pooling = emb.check_pooling(pooling)
        self.probe = emb.split_probe(probe)
        self.probe.batches = [_detached(b) for b in self.probe.batches]
        if labels is None:
            labels = self.probe.labels
        self.rows, self.header = emb.metadata_rows(self.probe.samples, labels, class_names)
        self.sprite = emb.prepared_images(images, self.probe)
        self.probe.images = None  # the sprite holds them
        self.tag = tag
        self._given_layers = layers
        self._given_dims = dict(channel_dims or {})
        self.layers: dict[str, torch.nn.Module] = {}
        self.channel_dims: dict[str, int] = {}
        self.model: torch.nn.Module | None = None
        self.writer = None
        self.measurements = 0
        self.last_seconds = 0.0
        self.last_bytes = 0
        self.bytes_written = 0
        self.logged: dict[str, emb.LoggedEmbedding] = {}
        self.non_finite = 0

    def on_every_rank(self, ranks) -> bool:
        """Under FSDP2 every rank runs the probe (a forward is a collective); else rank 0."""
        return ranks.sharded

    def start(self, model: torch.nn.Module, optimizer, writer) -> None:
        """Find the layers in `model` (ValueError naming unknown ones, with close matches)."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        emb.check_writer(writer)
        layers: dict[str, torch.nn.Module] = {}
        for layer in self._given_layers:
            name, module = emb.resolve_layer(model, layer, "embeddings layers")
            if name in layers:
                raise ValueError(
                    f"embeddings layers names the layer {name or emb.ROOT_NAME!r} twice"
                )
            layers[name] = module
        dims = {}
        for key, dim in self._given_dims.items():
            user = module_names.strip_compile_prefix(key)
            if user not in layers:
                raise ValueError(
                    f"channel_dims names {key!r}, which is not one of the layers embedded: "
                    f"{sorted(layers)}"
                )
            dims[user] = dim
        self.layers, self.channel_dims = layers, dims
        self.model, self.writer = model, writer

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        """Embed every layer at `step` and write them; raises (after writing the others)
        naming the layers that failed."""
        if self.model is None:
            raise RuntimeError("Embeddings.measure before start(model, optimizer, writer)")
        began = time.perf_counter()
        vectors = emb.compute_embeddings(
            self.model, self.layers, self.probe, self.pooling, self.channel_dims, self.name
        )
        failed: dict[str, str] = {}
        written = 0
        for layer, values in vectors.items():
            tag = f"{self.tag}/{layer or emb.ROOT_NAME}"
            try:
                logged = emb.write_embedding(
                    self.writer, values, tag, step, layer, self.rows, self.header, self.sprite
                )
            except Exception as error:  # that layer's error; the others are written
                if not torch.isfinite(values).all():
                    self.non_finite += 1
                failed[layer or emb.ROOT_NAME] = f"{type(error).__name__}: {error}"
                continue
            self.logged[layer] = logged
            written += logged.bytes
        self.measurements += 1
        self.last_bytes = written
        self.bytes_written += written
        self.last_seconds = time.perf_counter() - began
        if failed:
            raise RuntimeError(
                f"embeddings at step {step}: "
                + "; ".join(f"{layer}: {message}" for layer, message in failed.items())
            )

    def flush(self) -> None:
        """Nothing is held: each embedding is written when measured."""

    def close(self) -> None:
        """Nothing to release: hooks live only during a measurement."""


def _detached(batch):
    if isinstance(batch, Mapping):
        return {k: v.detach() for k, v in batch.items()}
    return batch.detach()


__all__ = ["DEFAULT_EMBEDDINGS_EVERY", "Embeddings"]
