"""watch()'s saliency measurer: maps of fixed probe inputs, every `every` optimizer steps.

Watching the maps of the same probe samples change over training shows when a
network starts looking at the right thing. Each method's maps go under the
tag "saliency/<method>". The model's modes, `requires_grad` flags and hooks
are left as they were, and no parameter's `.grad` is touched (the maps are
gradients with respect to the inputs only), so training goes on unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from deepscope import module_names
from deepscope.analysis import saliency as saliency_math
from deepscope.analysis.saliency.model_state import preserved_model_state
from deepscope.analysis.saliency.target_scores import check_inputs, class_scores, resolve_targets
from deepscope.analysis.saliency.token_embeddings import (
    check_token_ids,
    embed_and_run,
    resolve_embedding_module,
)
from deepscope.writer.hook_warnings import warn_from_hook
from deepscope.writer.measurer import Measurer
from deepscope.writer.probe import model_device

DEFAULT_SALIENCY_EVERY = 500


def _split_probe(
    probe: object, token_ids: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(inputs, labels or None) from a probe given as inputs or (inputs, labels).

    token_ids: the inputs are token ids [N, L] (saliency over embeddings).
    """
    if isinstance(probe, (tuple, list)):
        if len(probe) != 2:
            raise ValueError(
                f"saliency probe must be inputs or (inputs, labels), got {len(probe)} items"
            )
        inputs, labels = probe
    else:
        inputs, labels = probe, None
    if token_ids:
        check_token_ids(inputs)
    else:
        check_inputs(inputs)
    inputs = inputs.detach().clone()
    if labels is not None:
        labels = torch.as_tensor(labels).detach()
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"saliency probe labels must be class indices, got {labels.dtype}")
        if tuple(labels.shape) != (inputs.shape[0],):
            raise ValueError(
                f"saliency probe has {inputs.shape[0]} inputs but labels of shape "
                f"{list(labels.shape)}: give one class index per input"
            )
        labels = labels.long().clone()
    return inputs, labels


class Saliency(Measurer):
    """Measures saliency every `every` optimizer steps; a `deepscope.Measurer` named "saliency".

    Args:
      probe: fixed inputs [N, ...], or (inputs, labels); the maps attribute
        the labels when given, else each sample's predicted class.
      methods: names from `deepscope.analysis.saliency.METHODS`.
      every: optimizer steps between measurements.
      method_options: method name → its options, e.g.
        {"integrated_gradients": {"n_steps": 32}}.
      eval_mode: measure in eval mode (the model's mode is restored after).
      embeddings: for text models: the model's input embedding module (e.g.
        `model.get_input_embeddings()`) or its name; the probe is then token ids
        [N, L] and the maps one value per token, attributed over the embeddings.
      tokens: with embeddings, the probe's token texts (N lists of L strings),
        shown in the tab instead of the ids.
      name: the measurer's name (default "saliency").

    The arguments are checked here; the probe against the model by `start()`
    (done by `watch()`): one forward pass (in the measuring mode, restored
    after) must give class scores the labels fit, or a ValueError says why. A
    `torch.compile`d model is measured through the module it wraps.

    Attributes:
      runs: measurements made; non_finite: non-finite map values seen (warned once).
    """

    name = "saliency"

    def __init__(
        self,
        probe: torch.Tensor | tuple[torch.Tensor, torch.Tensor | None],
        methods: Sequence[str] = ("gradient",),
        every: int = DEFAULT_SALIENCY_EVERY,
        method_options: Mapping[str, Mapping[str, Any]] | None = None,
        eval_mode: bool = True,
        embeddings: torch.nn.Module | str | None = None,
        tokens: Sequence[Sequence[str]] | None = None,
        *,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        if isinstance(methods, str):
            methods = (methods,)
        methods = list(dict.fromkeys(methods))
        if not methods:
            raise ValueError("saliency methods is empty: name at least one, e.g. ('gradient',)")
        for method in methods:
            saliency_math.check_method(method)
        method_options = dict(method_options or {})
        stray = sorted(set(method_options) - set(methods))
        if stray:
            raise ValueError(f"saliency method_options for methods not measured: {stray}")
        if embeddings is None and tokens is not None:
            raise ValueError(
                "saliency tokens= names the tokens of a token probe: give embeddings= too"
            )
        self.methods = methods
        self.method_options = {m: dict(method_options.get(m, {})) for m in methods}
        self.eval_mode = eval_mode
        self._given_embeddings = embeddings
        self._inputs, self._labels = _split_probe(probe, token_ids=embeddings is not None)
        self.tokens = [list(row) for row in tokens] if tokens is not None else None
        if self.tokens is not None:
            count, length = self._inputs.shape
            if len(self.tokens) != count or any(len(row) != length for row in self.tokens):
                raise ValueError(
                    f"saliency tokens must be {count} lists of {length} strings, one per token "
                    "of the probe"
                )
        self.model: torch.nn.Module | None = None
        self.writer = None
        self.embeddings = None
        self.runs = 0
        self.non_finite = 0
        self._warned_non_finite = False

    def on_every_rank(self, ranks) -> bool:
        """Under FSDP2 every rank runs the probe (forward and backward are collectives)."""
        return ranks.sharded

    def start(self, model: torch.nn.Module, optimizer, writer) -> None:
        """Resolve the embeddings in `model` and check the probe on it (ValueError saying why)."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        # Probe passes run the eager module: hooks on a compiled graph's
        # submodules are not always called, and the probe's cost is small.
        eager = module_names.eager_module(model)
        embeddings = self._given_embeddings
        if embeddings is not None:
            if isinstance(embeddings, str):
                (embeddings,) = module_names.find_modules(
                    model, [embeddings], "saliency embeddings"
                )
            embeddings = resolve_embedding_module(eager, embeddings)
        self.model, self.embeddings, self.writer = eager, embeddings, writer
        self._check_probe()

    def _check_probe(self) -> None:
        """One forward pass on the probe: scores found, labels in range, or a ValueError."""
        inputs, labels = self._probe_on_model_device()
        try:
            with torch.no_grad(), preserved_model_state(self.model, self.eval_mode):
                if self.embeddings is not None:
                    _, output = embed_and_run(self.model, self.embeddings, inputs)
                else:
                    output = self.model(inputs.clone())
                scores = class_scores(output)
                if scores.shape[0] != inputs.shape[0]:
                    raise ValueError(
                        f"the model's scores have {scores.shape[0]} rows for {inputs.shape[0]} "
                        "probe inputs: it must return one row of class scores per input"
                    )
                resolve_targets(labels, scores)
        except Exception as error:
            raise ValueError(f"saliency probe of shape {list(inputs.shape)}: {error}") from error

    def _probe_on_model_device(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = model_device(self.model)
        if device is not None and self._inputs.device != device:
            self._inputs = self._inputs.to(device)
            if self._labels is not None:
                self._labels = self._labels.to(device)
        return self._inputs, self._labels

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        """Log each method's maps of the probe; after all ran, raise the first failure."""
        if self.model is None:
            raise RuntimeError("Saliency.measure before start(model, optimizer, writer)")
        inputs, labels = self._probe_on_model_device()
        failures: list[tuple[str, Exception]] = []
        for method in self.methods:
            try:
                result = saliency_math.attribute(
                    self.model,
                    inputs,
                    labels,
                    method,
                    eval_mode=self.eval_mode,
                    embeddings=self.embeddings,
                    **self.method_options[method],
                )
                self._count_non_finite(method, result.non_finite, step)
                self.writer.add_saliency(
                    f"saliency/{method}",
                    inputs,
                    result.maps,
                    global_step=step,
                    labels=labels,
                    predictions=result.predictions,
                    method=method,
                    baseline=result.baseline,
                    baseline_maps=result.baseline_maps,
                    completeness_error=result.completeness_error,
                    tokens=self.tokens,
                    token_reduction=result.token_reduction or None,
                )
            except Exception as error:  # the other methods still run
                failures.append((method, error))
        self.runs += 1
        if failures:
            method, error = failures[0]
            others = f" (and {len(failures) - 1} other method(s))" if len(failures) > 1 else ""
            raise RuntimeError(f"saliency {method} failed{others}: {error}") from error

    def _count_non_finite(self, method: str, count: int, step: int) -> None:
        if not count:
            return
        self.non_finite += count
        if not self._warned_non_finite:
            self._warned_non_finite = True
            warn_from_hook(
                f"saliency {method} at step {step}: {count} map value(s) are NaN or infinite; "
                "they are logged as computed and counted in the measurer's non_finite "
                f"(monitor.measurers[{self.name!r}].non_finite; warned once)",
            )

    def flush(self) -> None:
        """Nothing is held: every measurement is written when made."""

    def close(self) -> None:
        """Nothing to release."""


class SaliencyWatcher(Saliency):
    """`Saliency` already started on `model` and `writer` (the older spelling, kept for scripts).

    `SaliencyWatcher(model, writer, probe, every, methods, ...)` is
    `Saliency(probe, methods, every, ...)` followed by `start(model, None, writer)`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        writer,
        probe: torch.Tensor | tuple[torch.Tensor, torch.Tensor | None],
        every: int = DEFAULT_SALIENCY_EVERY,
        methods: Sequence[str] = ("gradient",),
        **kw,
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        super().__init__(probe, methods, every, **kw)
        self.start(model, None, writer)
