"""Layer × layer CKA summaries: which layers of two networks represent the probe alike?

`deepscope.compare_cka(model_a, model_b, probe, layers_a, layers_b, writer=w)`
(deepscope/writer/compare.py) takes the linear CKA (Kornblith et al. 2019) of
every layer of model_a against every layer of model_b on the same probe
inputs and logs the matrix here; `writer.add_cka_matrix(tag, matrix,
layers_a, layers_b)` logs one computed elsewhere, and `cka_matrix_pb` builds
the `Summary` for another writer.

A series is a tensor series (a matrix of a few dozen layers is small): its
metadata (`CkaInfo`: the two sides' names and layers, on the tag's first
event) and, per step, a DT_STRING scalar tensor holding a `CkaStep` (the
float32 [L_a, L_b] matrix, the probe's sample count, the seconds it took).
Storage per step: 4·L_a·L_b bytes plus about 20 (10 × 10 layers: about 420
bytes). The layers are the series' constant facts: every step of a tag must
name the same layers (a ValueError otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from tensorboard.compat.proto import summary_pb2

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import tensor_summary

# CKA is in [0, 1]; float32 rounding of a float64 value may step past 1 by an epsilon.
_SLACK = 4 * float(np.finfo(np.float32).eps)


def _names(layers: Sequence[str], what: str) -> list[str]:
    if isinstance(layers, str):
        raise TypeError(f"{what} must be a list of layer names, not one string")
    names = list(layers)
    if not names:
        raise ValueError(f"{what} is empty: name at least one layer")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what} must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names a layer twice: {names}")
    return names


def cka_info(
    layers_a: Sequence[str], layers_b: Sequence[str], row_name: str = "", col_name: str = ""
) -> pb.PluginData:
    """The series' `PluginData`: the two sides' names and layers (rows: layers_a)."""
    return pb.PluginData(
        kind=pb.CKA,
        cka=pb.CkaInfo(
            row_name=str(row_name),
            col_name=str(col_name),
            layers_a=_names(layers_a, "layers_a"),
            layers_b=_names(layers_b, "layers_b"),
        ),
    )


def cka_step(matrix, samples: int = 0, seconds: float = 0.0) -> pb.CkaStep:
    """One step's `CkaStep`: the matrix as float32 (NaN kept: a layer without variance).

    Raises:
      ValueError: a matrix that is not 2-d, a value outside [0, 1], a negative
        sample count or duration.
    """
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"the CKA matrix must be [layers_a, layers_b], got {list(values.shape)}")
    finite = values[np.isfinite(values)]
    if np.any(np.isinf(values)) or (
        finite.size and (finite.min() < -_SLACK or finite.max() > 1 + _SLACK)
    ):
        raise ValueError("linear CKA lies in [0, 1] (NaN where undefined); this matrix does not")
    if int(samples) < 0 or not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"samples ({samples}) and seconds ({seconds}) must not be negative")
    stored = np.clip(values, 0.0, 1.0).astype(np.float32)
    return pb.CkaStep(
        matrix=arrays.encode_array(stored), samples=int(samples), seconds=float(seconds)
    )


def cka_matrix_pb(
    tag: str,
    matrix,
    layers_a: Sequence[str],
    layers_b: Sequence[str],
    *,
    row_name: str = "",
    col_name: str = "",
    samples: int = 0,
    seconds: float = 0.0,
    description: str = "",
) -> summary_pb2.Summary:
    """A `Summary` with one step's layer × layer CKA matrix, its metadata included.

    Args:
      tag: the series, e.g. "cka/seed0-vs-seed1".
      matrix: [len(layers_a), len(layers_b)] CKA values (numpy, a list, or
        `deepscope.analysis.cka.cka_matrix`'s result).
      layers_a, layers_b: the rows' and columns' layer names.
      row_name, col_name: what to call the two networks.
      samples: the probe inputs it was taken over; seconds: its cost.
      description: shown by TensorBoard next to the tag.
    """
    plugin_data = cka_info(layers_a, layers_b, row_name, col_name)
    step = cka_step(matrix, samples, seconds)
    shape = list(step.matrix.shape)
    want = [len(plugin_data.cka.layers_a), len(plugin_data.cka.layers_b)]
    if shape != want:
        raise ValueError(
            f"the CKA matrix has shape {shape}, but {want[0]} layers_a and {want[1]} "
            "layers_b were named"
        )
    return tensor_summary(tag, step.SerializeToString(), plugin_data, description)


class CkaSummaries:
    """Mixin of `deepscope.SummaryWriter`: `add_cka_matrix`."""

    def add_cka_matrix(
        self,
        tag: str,
        matrix,
        layers_a: Sequence[str],
        layers_b: Sequence[str],
        global_step: int | None = None,
        walltime: float | None = None,
        row_name: str = "",
        col_name: str = "",
        samples: int = 0,
        seconds: float = 0.0,
        description: str = "",
    ) -> None:
        """Log one step's layer × layer linear CKA matrix of two networks.

        Args:
          tag: the series, e.g. "cka".
          matrix: [len(layers_a), len(layers_b)], values in [0, 1] (NaN where undefined).
          layers_a, layers_b: the rows' (network A's) and columns' layer names.
          global_step: the training step; walltime: seconds since the epoch.
          row_name, col_name: what to call the two networks.
          samples: probe inputs; seconds: the measurement's cost.
          description: shown next to the tag.

        The layers and names are the series' metadata, kept from a tag's first
        event only: every step of a tag must name the same layers.
        """
        summary_pb = cka_matrix_pb(
            tag,
            matrix,
            layers_a,
            layers_b,
            row_name=row_name,
            col_name=col_name,
            samples=samples,
            seconds=seconds,
            description=description,
        )
        written = self._series_plugin_data(tag)
        if written is not None and written.WhichOneof("details") == "cka":
            given = pb.PluginData.FromString(summary_pb.value[0].metadata.plugin_data.content)
            if list(given.cka.layers_a) != list(written.cka.layers_a) or list(
                given.cka.layers_b
            ) != list(written.cka.layers_b):
                raise ValueError(
                    f"CKA matrix {tag!r} names other layers than the tag's first event "
                    f"({list(written.cka.layers_a)[:5]} x {list(written.cka.layers_b)[:5]}), "
                    "which TensorBoard keeps: use a new tag for other layers"
                )
        self._write(summary_pb, global_step, walltime)
