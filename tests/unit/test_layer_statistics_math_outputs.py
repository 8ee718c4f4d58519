"""deepscope.analysis.layer_statistics output rule, row names, channel dims and bounds.

The output rule on hand-made outputs (tensor, tuple, list, named tuple, dict,
dataclass, nested, None, integer tensors, cycles) and on real Hugging Face
models built from configs (nothing downloaded): every floating tensor of a
`ModelOutput` or a tuple is found under its documented key, and its
statistics match numpy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from deepscope.analysis.layer_statistics.activations import activation_statistics, activation_sums
from deepscope.analysis.layer_statistics.bounds import saturation_bounds, saturation_thresholds
from deepscope.analysis.layer_statistics.outputs import (
    MAX_DEPTH,
    channel_dim_of,
    output_tensors,
    row_name,
)
from tests.hf_models import tiny_bert, tiny_gpt2  # the "hf" test extra (transformers)
from tests.unit.test_layer_statistics_math import _check, _reference


class Pair(NamedTuple):
    hidden: torch.Tensor
    mask: torch.Tensor


@dataclasses.dataclass
class Out:
    logits: torch.Tensor
    extra: object = None
    steps: int = 3


def _keys(found):
    return [k for k, _ in found]


def test_a_lone_tensor_is_key_empty():
    t = torch.randn(2, 3)
    found = output_tensors(t)
    assert _keys(found) == [""] and found[0][1] is t
    assert row_name("layer1.conv", "") == "layer1.conv"
    assert row_name("encoder", "last_hidden_state") == "encoder:last_hidden_state"


def test_containers_by_the_rule():
    a, b, c, d = (torch.randn(2, 2) for _ in range(4))
    skipped: list[tuple[str, str]] = []
    output = (
        a,
        [b, None],
        {"x": c, 7: Pair(d, torch.ones(2, dtype=torch.bool))},
        Out(logits=a, extra={"y": b}),
        "text",
    )
    found = output_tensors(output, skipped)
    assert _keys(found) == ["0", "1.0", "2.x", "2.7.hidden", "3.logits", "3.extra.y"]
    assert [t for _, t in found] == [a, b, c, d, a, b] and all(
        t is want for (_, t), want in zip(found, [a, b, c, d, a, b])
    )
    assert skipped == [
        ("2.7.mask", "bool tensor (not floating point)"),
        ("3.steps", "int"),
        ("4", "str"),
    ]


def test_non_floating_tensors_are_skipped_with_their_dtype():
    skipped: list[tuple[str, str]] = []
    found = output_tensors(
        (torch.ones(2, dtype=torch.int64), torch.ones(2, dtype=torch.complex64)), skipped
    )
    assert found == []
    assert skipped == [
        ("0", "int64 tensor (not floating point)"),
        ("1", "complex64 tensor (complex)"),
    ]
    assert output_tensors(torch.ones(3, dtype=torch.int32)) == []  # no list given: nothing recorded


def test_none_is_nothing_and_not_a_skip():
    skipped: list[tuple[str, str]] = []
    assert output_tensors(None, skipped) == [] and skipped == []
    assert output_tensors((None, {"a": None}), skipped) == [] and skipped == []


def test_half_precision_tensors_are_measured():
    found = output_tensors(
        {"h": torch.ones(2, dtype=torch.float16), "b": torch.ones(2, dtype=torch.bfloat16)}
    )
    assert _keys(found) == ["h", "b"]


def test_deep_nesting_and_cycles_are_skipped_not_followed():
    deep: object = torch.ones(1)
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    skipped: list[tuple[str, str]] = []
    assert output_tensors(deep, skipped) == []
    assert skipped == [(".".join(["0"] * MAX_DEPTH), f"nested deeper than {MAX_DEPTH} containers")]
    cycle: list = [torch.ones(1)]
    cycle.append(cycle)
    skipped = []
    found = output_tensors(cycle, skipped)
    assert _keys(found) == [
        "0",
        "1.0",
        "1.1.0",
        "1.1.1.0",
        "1.1.1.1.0",
        "1.1.1.1.1.0",
        "1.1.1.1.1.1.0",
        "1.1.1.1.1.1.1.0",
    ]
    assert len(skipped) == 1 and skipped[0][1].startswith("nested deeper")


@pytest.mark.parametrize(
    "module,shape,expected",
    [
        (nn.Conv2d(3, 4, 1), (2, 4, 5, 5), 1),
        (nn.Linear(3, 4), (2, 4), 1),
        (nn.Linear(3, 4), (2, 7, 4), 2),
        (nn.Conv1d(3, 4, 1), (2, 4, 7), 1),
        (nn.BatchNorm1d(4), (2, 4, 7), 1),
        (nn.Conv3d(3, 4, 1), (2, 4, 3, 3, 3), 1),
        (None, (2, 7, 4), 2),
        (None, (5,), None),
        (None, (), None),
    ],
)
def test_channel_dim_rule(module, shape, expected):
    assert channel_dim_of(torch.zeros(shape), module) == expected


@pytest.mark.parametrize(
    "module,bounds",
    [
        (nn.Tanh(), (-1.0, 1.0)),
        (nn.Sigmoid(), (0.0, 1.0)),
        (nn.ReLU6(), (0.0, 6.0)),
        (nn.Hardtanh(-3.0, 2.0), (-3.0, 2.0)),
        (nn.Hardsigmoid(), (0.0, 1.0)),
        (nn.Softsign(), (-1.0, 1.0)),
        (nn.ReLU(), None),
        (nn.Softmax(dim=1), None),
        (nn.GELU(), None),
        (nn.Linear(2, 2), None),
        (object(), None),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(v),
)
def test_saturation_bounds(module, bounds):
    assert saturation_bounds(module) == bounds


@pytest.mark.parametrize("module", [nn.Tanh(), nn.Sigmoid(), nn.ReLU6(), nn.Hardtanh(-3.0, 2.0)])
def test_bounds_are_the_modules_true_range(module):
    """The activation's outputs on inputs far past both ends reach exactly its bounds."""
    lo, hi = saturation_bounds(module)
    y = module(torch.tensor([-1e4, 1e4], dtype=torch.float64))
    assert y.tolist() == pytest.approx([lo, hi], abs=1e-12)


@pytest.mark.parametrize("tolerance", [-0.1, 0.5, 1.0])
def test_bad_tolerance(tolerance):
    with pytest.raises(ValueError, match="fraction of the range"):
        saturation_thresholds((-1.0, 1.0), tolerance)
    with pytest.raises(ValueError, match="lo < hi"):
        saturation_thresholds((1.0, 1.0))


# ---------------------------------------------------------------------------- real models


def _record(model: nn.Module, *args, **kwargs):
    """Every module's output of one forward (module name, module, output)."""
    seen: list[tuple[str, nn.Module, object]] = []
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: seen.append((name, m, o)))
        for name, module in model.named_modules()
    ]
    try:
        with torch.no_grad():
            result = model(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return result, seen


def _check_every_tensor(seen) -> int:
    rows = 0
    for name, module, output in seen:
        for key, tensor in output_tensors(output):
            cd = channel_dim_of(tensor, module)
            bounds = saturation_bounds(module)
            got = activation_statistics(activation_sums(tensor, cd, bounds))
            _check(got, _reference(tensor, cd, bounds), tensor.dtype, tensor.numel())
            rows += 1
            assert row_name(name, key)
    return rows


def test_gpt2_model_output_and_every_module():
    model = tiny_gpt2().eval()
    ids = torch.randint(0, 30, (2, 8), generator=torch.Generator().manual_seed(0))
    result, seen = _record(model, ids, labels=ids)
    skipped: list[tuple[str, str]] = []
    found = dict(output_tensors(result, skipped))
    assert list(found) == ["loss", "logits"]  # a CausalLMOutput: loss (0-d) and logits
    assert found["logits"] is result.logits and found["loss"] is result.loss
    assert all(reason for _, reason in skipped)  # the cache object, if any, is named with its type
    assert (
        channel_dim_of(found["logits"], None) == 2 and channel_dim_of(found["loss"], None) is None
    )
    # attention modules return tuples: their tensors are found under "0", "1", ...
    tuple_outputs = [(n, o) for n, _, o in seen if isinstance(o, tuple)]
    assert tuple_outputs and all(_keys(output_tensors(o))[0] == "0" for _, o in tuple_outputs)
    assert _check_every_tensor(seen) > len(list(model.modules())) // 2


def test_bert_outputs_with_hidden_states():
    model = tiny_bert().eval()
    ids = torch.randint(0, 30, (2, 8), generator=torch.Generator().manual_seed(1))
    result, seen = _record(model, ids, output_hidden_states=True)
    found = output_tensors(result)
    assert _keys(found) == [
        "last_hidden_state",
        "pooler_output",
        "hidden_states.0",
        "hidden_states.1",
        "hidden_states.2",
    ]
    assert found[0][1] is result.last_hidden_state
    assert all(t is h for (_, t), h in zip(found[2:], result.hidden_states))
    _check_every_tensor(seen)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model_outputs(dtype):
    model = tiny_bert().eval().to(dtype)
    ids = torch.randint(0, 30, (2, 8), generator=torch.Generator().manual_seed(2))
    _, seen = _record(model, ids)
    tensors = [t for _, _, o in seen for _, t in output_tensors(o)]
    assert tensors and all(t.dtype == dtype for t in tensors if t.numel() > 1)
    _check_every_tensor(seen)


def test_not_a_number_in_a_model_is_counted_not_raised():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    with torch.no_grad():
        model[0].weight[1, 0] = math.inf
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    x[0, 0] = 0.0  # inf * 0 = NaN on one sample
    _, seen = _record(model, x)
    name, module, output = seen[0]
    got = activation_statistics(activation_sums(output, channel_dim_of(output, module)))
    want = _reference(output, 1)
    assert want["non_finite_fraction"] > 0
    _check(got, want, torch.float32, output.numel())
    assert np.isfinite(got["std"])
