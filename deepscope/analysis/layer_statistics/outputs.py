"""Which tensors of a module's output are measured, and what their rows are called.

The output rule (one for every module):

- a tensor: itself, key "" (its row is the module's name);
- a tuple or list: its items by position, keys "0", "1", …; a named tuple by
  its field names;
- a mapping (dict, and Hugging Face's `ModelOutput`, an ordered dict of its
  non-None fields): its items in insertion order, keys `str(key)`;
- a dataclass instance: its fields in declaration order;
- nested containers: keys joined with ".", e.g. "past_key_values.0.1";
- None (an unset optional output): nothing, silently;
- anything else (integer, bool or complex tensors, strings, numbers, other
  objects), and containers nested deeper than `MAX_DEPTH`: skipped, and
  reported as (key, reason) so a measurer can list them once.

Only floating-point tensors are measured; the row of key k of module m is
"m:k" (`row_name`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from deepscope.analysis.correlation.channel_dim import (
    default_channel_dim,
    is_channels_first_module,
)

MAX_DEPTH = 8
"""Containers nested deeper than this are skipped (a guard against cycles)."""


def output_tensors(
    output: object, skipped: list[tuple[str, str]] | None = None
) -> list[tuple[str, torch.Tensor]]:
    """The floating-point tensors of a module's `output` as (key, tensor), by the output rule.

    Args:
      output: what a module's forward returned.
      skipped: if given, (key, reason) of every part not measured is appended
        to it, e.g. ("1", "int64 tensor (not floating point)"); None parts are
        not listed.

    Returns:
      (key, tensor) in the output's order; key "" for a lone tensor. The
      tensors are the output's own (not detached or copied).
    """
    found: list[tuple[str, torch.Tensor]] = []
    _walk(output, "", 0, found, skipped)
    return found


def row_name(module_name: str, key: str) -> str:
    """A row's name: `module_name` for a lone tensor (key ""), else "module_name:key"."""
    return f"{module_name}:{key}" if key else module_name


def channel_dim_of(x: torch.Tensor, module: object = None) -> int | None:
    """The channel dimension of activation `x` (non-negative), or None for one channel.

    The project's rule (`deepscope.analysis.correlation.channel_dim`): 4 or
    more dims at 1; (N, C) at 1; (N, L, C) at 2, but (N, C, L) at 1 when
    `module` is a Conv1d-like module. 0-d and 1-d outputs (a loss, an (N,)
    score) are one channel (None): every element is a sample.
    """
    if x.ndim < 2:
        return None
    return default_channel_dim(x.ndim, is_channels_first_module(module))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _walk(
    value: object,
    key: str,
    depth: int,
    found: list[tuple[str, torch.Tensor]],
    skipped: list[tuple[str, str]] | None,
) -> None:
    if value is None:
        return
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            found.append((key, value))
        elif skipped is not None:
            kind = "complex" if value.is_complex() else "not floating point"
            skipped.append((key, f"{str(value.dtype).removeprefix('torch.')} tensor ({kind})"))
        return
    children: list[tuple[str, object]] | None = None
    if isinstance(value, Mapping):
        children = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        children = list(zip(value._fields, value))
    elif isinstance(value, (tuple, list)):
        children = [(str(i), v) for i, v in enumerate(value)]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        children = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    if children is None:
        if skipped is not None:
            skipped.append((key, type(value).__name__))
        return
    if depth >= MAX_DEPTH:
        if skipped is not None:
            skipped.append((key, f"nested deeper than {MAX_DEPTH} containers"))
        return
    for child_key, child in children:
        _walk(child, _join(key, child_key), depth + 1, found, skipped)
