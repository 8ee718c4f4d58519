"""Big generated log dirs for the tab's scale tests and benchmarks (issue 9 §4).

Pure functions, deterministic (fixed seeds and wall times), a few seconds each:

- `write_201_parameter_log`: one run of a two-tower model (a BERT text tower
  and a Hugging Face ResNet image tower, with their real parameter names):
  201 parameters, 74 layers with a weight of 2 or more dimensions, 10,000
  steps of update ratios (every step, written in blocks as `watch()` does) and
  the spectra of every layer at 50 steps.
- `write_50_run_log`: 50 runs of a sweep: runs of different lengths (one of 30
  steps beside runs of 10,000), some with 500-character names, one named
  `__proto__` and one `constructor`, with a few tags each.

Update ratios are log-normal around a per-parameter level with a warm-up and
decay; spectra are Marchenko–Pastur quantiles (what a random matrix of that
shape has) plus a few outliers that grow with training, so no SVD is run.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

BASE_WALL_TIME = 1_750_000_000.0  # seconds since the epoch of every log's step 0
SECONDS_PER_STEP = 0.25
UPDATE_RATIOS_TAG = "update_ratios"
SPECTRA_PREFIX = "spectra"
SCALE_RUN = "bert_resnet"


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One parameter of the generated model: its name, shape and module kind."""

    name: str
    shape: tuple[int, ...]
    layer_kind: str  # the owning module's class name: Linear, Conv2d, Embedding, LayerNorm, …

    @property
    def module(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def is_layer(self) -> bool:
        """A weight of 2 or more dimensions: it gets a spectrum."""
        return self.name.endswith(".weight") and len(self.shape) >= 2


def _linear(prefix: str, out: int, into: int, bias: bool = True) -> list[Parameter]:
    found = [Parameter(f"{prefix}.weight", (out, into), "Linear")]
    if bias:
        found.append(Parameter(f"{prefix}.bias", (out,), "Linear"))
    return found


def _layer_norm(prefix: str, width: int, kind: str = "LayerNorm") -> list[Parameter]:
    return [
        Parameter(f"{prefix}.weight", (width,), kind),
        Parameter(f"{prefix}.bias", (width,), kind),
    ]


def bert_parameters(layers: int = 6, width: int = 128, vocab: int = 30522) -> list[Parameter]:
    """A Hugging Face `BertModel`'s parameters (names as `named_parameters()` gives them)."""
    found = [
        Parameter("bert.embeddings.word_embeddings.weight", (vocab, width), "Embedding"),
        Parameter("bert.embeddings.position_embeddings.weight", (512, width), "Embedding"),
        Parameter("bert.embeddings.token_type_embeddings.weight", (2, width), "Embedding"),
        *_layer_norm("bert.embeddings.LayerNorm", width),
    ]
    for k in range(layers):
        layer = f"bert.encoder.layer.{k}"
        for head in ("query", "key", "value"):
            found += _linear(f"{layer}.attention.self.{head}", width, width)
        found += _linear(f"{layer}.attention.output.dense", width, width)
        found += _layer_norm(f"{layer}.attention.output.LayerNorm", width)
        found += _linear(f"{layer}.intermediate.dense", 4 * width, width)
        found += _linear(f"{layer}.output.dense", width, 4 * width)
        found += _layer_norm(f"{layer}.output.LayerNorm", width)
    found += _linear("bert.pooler.dense", width, width)
    return found


def _conv_block(prefix: str, out: int, into: int, kernel: int) -> list[Parameter]:
    return [
        Parameter(f"{prefix}.convolution.weight", (out, into, kernel, kernel), "Conv2d"),
        *_layer_norm(f"{prefix}.normalization", out, "BatchNorm2d"),
    ]


def resnet_parameters(depths: Sequence[int] = (2, 3, 2, 2), width: int = 16) -> list[Parameter]:
    """A Hugging Face `ResNetModel`'s bottleneck parameters, under `model.resnet.`.

    `width` is the stem's channels (ResNet-50's 64 in the real model).
    """
    root = "model.resnet"
    found = _conv_block(f"{root}.embedder.embedder", width, 3, 7)
    into = width
    for stage, depth in enumerate(depths):
        reduced = width * 2**stage
        out = 4 * reduced
        for k in range(depth):
            block = f"{root}.encoder.stages.{stage}.layers.{k}"
            if k == 0:
                found += _conv_block(f"{block}.shortcut", out, into, 1)
            found += _conv_block(f"{block}.layer.0", reduced, into if k == 0 else out, 1)
            found += _conv_block(f"{block}.layer.1", reduced, reduced, 3)
            found += _conv_block(f"{block}.layer.2", out, reduced, 1)
        into = out
    return found


def scale_parameters() -> list[Parameter]:
    """The 201 parameters (74 layers) of the generated two-tower model.

    Names and depth are the real models'; widths are narrow (BERT hidden 128,
    ResNet stem 16) so that the spectra stay cheap to write and to read.
    """
    found = bert_parameters() + resnet_parameters()
    found += _linear("text_projection", 64, 128, bias=False)
    found += _linear("visual_projection", 64, 512, bias=False)
    return found


def update_ratio_values(
    parameter_count: int, steps: int, seed: int = 0, extreme: int | None = None
) -> np.ndarray:
    """float32 [steps, parameter_count] ratios ‖ΔW‖/‖W‖: log-normal around a level per parameter.

    Warm-up over the first 5% of steps, then a cosine decay to a tenth; `extreme`
    (an index) runs 30 times hotter than the rest, so one row stands out.
    """
    rng = np.random.default_rng(seed)
    level = 10.0 ** rng.uniform(-3.8, -2.4, parameter_count)
    if extreme is not None:
        level[extreme] = 3e-2
    t = np.arange(steps, dtype=np.float64)
    warmup = max(1, steps // 20)
    schedule = np.minimum(1.0, (t + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t / max(1, steps - 1)))
    )
    noise = np.exp(rng.normal(0.0, 0.25, (steps, parameter_count)))
    return (schedule[:, None] * level[None, :] * noise).astype(np.float32)


def write_update_ratios(
    writer,
    names: Sequence[str],
    values: np.ndarray,
    block: int,
    tag: str = UPDATE_RATIOS_TAG,
    no_update: np.ndarray | None = None,
) -> None:
    """Write `values` [steps, len(names)] (row k at step k) in events of `block` steps."""
    steps = values.shape[0]
    for start in range(0, steps, block):
        rows = np.arange(start, min(start + block, steps))
        writer._add_update_ratio_block(
            tag,
            list(names),
            values[rows],
            steps=rows.tolist(),
            wall_times=(BASE_WALL_TIME + SECONDS_PER_STEP * rows).tolist(),
            no_update=None if no_update is None else no_update[rows],
        )


@functools.lru_cache(maxsize=256)
def _marchenko_pastur_quantiles(rows: int, cols: int) -> np.ndarray:
    values = marchenko_pastur_singular_values(rows, cols, 1.0)
    values.flags.writeable = False
    return values


def marchenko_pastur_singular_values(rows: int, cols: int, scale: float) -> np.ndarray:
    """The min(rows, cols) singular values a rows×cols matrix of N(0, scale²) entries has.

    Quantiles of the Marchenko–Pastur law (descending), so no SVD is run: the
    eigenvalues of W Wᵀ/n lie in [scale²(1−√y)², scale²(1+√y)²], y = min/max.
    """
    small, large = min(rows, cols), max(rows, cols)
    y = small / large
    low, high = (1 - np.sqrt(y)) ** 2, (1 + np.sqrt(y)) ** 2
    grid = np.linspace(low, high, 4096)
    grid[0] = max(grid[0], 1e-9)  # y = 1: the density's pole at 0 is integrable
    density = np.sqrt(np.maximum((high - grid) * (grid - low), 0.0)) / (2 * np.pi * y * grid)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    quantiles = (np.arange(small) + 0.5) / small
    eigenvalues = np.interp(quantiles, cdf, grid)
    return np.sort(scale * np.sqrt(large * eigenvalues))[::-1]


def layer_spectrum(parameter: Parameter, progress: float, rng: np.random.Generator):
    """A `Spectrum` of `parameter` at training progress 0…1: MP bulk plus growing outliers."""
    import torch

    from deepscope.analysis import spectrum as spectrum_math

    layout = spectrum_math.matrix_layout(parameter.shape, layer_kind=parameter.layer_kind)
    groups, rows, cols = layout.matrix_shape
    scale = 0.02 if parameter.layer_kind in ("Linear", "Embedding") else np.sqrt(2.0 / cols)
    values = scale * _marchenko_pastur_quantiles(rows, cols)
    outliers = min(len(values), 1 + int(rng.integers(0, 6)))
    values[:outliers] *= 1.0 + progress * rng.uniform(1.0, 6.0, outliers)
    values = np.sort(values)[::-1].copy()
    return spectrum_math.Spectrum(
        singular_values=torch.from_numpy(values.astype(np.float32))[None, :],
        matrix_shape=(groups, rows, cols),
        matrix_rule=layout.matrix_rule,
        layer_kind=layout.layer_kind,
        weight_shape=layout.weight_shape,
    )


def write_spectra(
    writer,
    parameters: Sequence[Parameter],
    spectrum_steps: Sequence[int],
    total_steps: int,
    seed: int = 0,
    prefix: str = SPECTRA_PREFIX,
) -> None:
    """Spectra of each layer among `parameters` at each of `spectrum_steps` (tags prefix/module)."""
    rng = np.random.default_rng(seed)
    layers = [p for p in parameters if p.is_layer]
    for step in spectrum_steps:
        progress = step / max(1, total_steps - 1)
        for parameter in layers:
            writer.add_singular_values(
                f"{prefix}/{parameter.module}",
                layer_spectrum(parameter, progress, rng),
                global_step=int(step),
                walltime=BASE_WALL_TIME + SECONDS_PER_STEP * step,
            )


@dataclasses.dataclass(frozen=True)
class ScaleLog:
    """What `write_201_parameter_log` wrote."""

    logdir: Path
    run: str
    parameter_names: list[str]
    layer_modules: list[str]  # spectrum tags are f"spectra/{module}"
    steps: int
    spectrum_steps: list[int]
    extreme_parameter: str  # the parameter whose ratios stand out


def write_201_parameter_log(
    logdir: Path,
    steps: int = 10_000,
    block: int = 10,
    spectrum_count: int = 50,
    run: str = SCALE_RUN,
    seed: int = 0,
) -> ScaleLog:
    """The 201-parameter, 74-layer log: update ratios at every step, spectra at `spectrum_count`.

    Takes 5–15 s at the default sizes (the spectra's metrics dominate). The 'extreme' parameter is
    `bert.encoder.layer.3.attention.self.key.bias`.
    """
    import deepscope

    parameters = scale_parameters()
    names = [p.name for p in parameters]
    extreme = names.index("bert.encoder.layer.3.attention.self.key.bias")
    spectrum_steps = np.linspace(0, steps - 1, spectrum_count).round().astype(int).tolist()
    writer = deepscope.SummaryWriter(str(Path(logdir) / run))
    write_update_ratios(writer, names, update_ratio_values(len(names), steps, seed, extreme), block)
    write_spectra(writer, parameters, spectrum_steps, steps, seed)
    writer.close()
    return ScaleLog(
        logdir=Path(logdir),
        run=run,
        parameter_names=names,
        layer_modules=[p.module for p in parameters if p.is_layer],
        steps=steps,
        spectrum_steps=spectrum_steps,
        extreme_parameter=names[extreme],
    )


def long_run_name(index: int, length: int = 500) -> str:
    """A sweep run name of exactly `length` characters, split in path parts of ≤ 200 (NAME_MAX)."""
    words = (
        f"sweep-{index:02d}/lr=3e-4,warmup=2000,weight_decay=0.01,batch=256,seq_len=128,"
        "optimizer=adamw,betas=0.9-0.999,eps=1e-8,dropout=0.1,attention_dropout=0.1,"
        "label_smoothing=0.1,grad_clip=1.0,schedule=cosine,"
    )
    text = (words * (length // len(words) + 1))[:length]
    parts = [text[k : k + 200] for k in range(0, length, 200)]
    # A path part may not end in a space or be empty; neither happens with these words.
    return "/".join(part.strip("/") or "x" for part in parts)[:length]


@dataclasses.dataclass(frozen=True)
class RunsLog:
    """What `write_50_run_log` wrote: each run's name and number of steps."""

    logdir: Path
    runs: dict[str, int]  # run name → steps of update ratios
    parameter_names: list[str]
    layer_modules: list[str]
    short_run: str  # the run of `short_steps` steps


SMALL_MODEL = [
    *_linear("encoder.layer.0.attention.self.query", 64, 64),
    *_linear("encoder.layer.0.intermediate.dense", 256, 64),
    *_linear("encoder.layer.1.attention.self.query", 64, 64),
    *_linear("classifier", 10, 64),
]


def run_names_of_50(count: int = 50) -> list[str]:
    """The sweep's run names: `__proto__`, `constructor`, three of 500 characters, then short."""
    names = ["__proto__", "constructor"]
    names += [long_run_name(k) for k in range(3)]
    names += [f"sweep/lr={lr:.0e},seed={k}" for k, lr in enumerate(np.geomspace(1e-5, 1e-2, count))]
    return names[:count]


def write_50_run_log(
    logdir: Path,
    runs: int = 50,
    long_steps: int = 10_000,
    short_steps: int = 30,
    block: int = 100,
    spectrum_count: int = 5,
    seed: int = 0,
) -> RunsLog:
    """`runs` runs of update ratios and spectra of a 4-layer model, of 30 to 10,000 steps.

    Run 2 (a 500-character name) has `short_steps` steps; the others range from
    1,000 to `long_steps`. Takes 3–7 s at the default sizes.
    """
    import deepscope

    names = [p.name for p in SMALL_MODEL]
    run_names = run_names_of_50(runs)
    lengths: dict[str, int] = {}
    for k, run in enumerate(run_names):
        steps = short_steps if k == 2 else int(np.linspace(1000, long_steps, runs)[(7 * k) % runs])
        lengths[run] = steps
        writer = deepscope.SummaryWriter(str(Path(logdir) / run))
        values = update_ratio_values(len(names), steps, seed + k, extreme=k % len(names))
        write_update_ratios(writer, names, values, block)
        spectrum_steps = np.linspace(0, steps - 1, spectrum_count).round().astype(int)
        write_spectra(writer, SMALL_MODEL, sorted(set(spectrum_steps.tolist())), steps, seed + k)
        writer.close()
    return RunsLog(
        logdir=Path(logdir),
        runs=lengths,
        parameter_names=names,
        layer_modules=[p.module for p in SMALL_MODEL if p.is_layer],
        short_run=run_names[2],
    )
