"""LayerStats on real model shapes: torch.compile'd models and Hugging Face models from configs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import deepscope
from deepscope.writer.watch_layer_statistics import LayerStats
from tests.unit.test_layer_statistics_watch import (
    ACTIVATIONS,
    F32,
    Writer,
    assert_row,
    reference,
    rows_of,
    steps_of,
)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.act = torch.nn.Tanh()
        self.fc2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _steps(model, optimizer, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, generator=g)
    y = torch.randint(0, 3, (16,), generator=g)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return x


# --------------------------------------------------------------------------- torch.compile


def test_a_compiled_model_says_once_which_layers_it_cannot_measure(tmp_path, read_values):
    torch.manual_seed(0)
    torch._dynamo.reset()
    eager = Block()
    model = torch.compile(eager, backend="eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Writer(str(tmp_path)) as writer:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with deepscope.watch(
                model, optimizer, writer, measure=[LayerStats(every=1)]
            ) as monitor:
                _steps(model, optimizer, 3)
    said = [w for w in caught if "torch.compile" in str(w.message)]
    assert len(said) == 1
    assert "'fc1', 'act', 'fc2'" in str(said[0].message)
    stats = monitor.stats.measurers["layer_statistics"]
    assert stats.error_count == 1 and "torch.compile" in stats.errors[0]
    measurer = monitor.measurers["layer_statistics"]
    assert measurer.compiled_layers == ["fc1", "act", "fc2"]
    # Not silently nothing: the compiled region's own output is logged at every step.
    steps = steps_of(read_values, tmp_path, ACTIVATIONS)
    assert sorted(steps) == [0, 1, 2]
    assert all(list(step.layers) == ["(model)"] for step in steps.values())
    assert all(list(step.layer_types) == ["Block"] for step in steps.values())
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_a_compiled_leaf_is_measured_through_its_wrapper(tmp_path, read_values):
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = Block()
    model.act = torch.compile(model.act, backend="eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Writer(str(tmp_path)) as writer:
        with deepscope.watch(model, optimizer, writer, measure=[LayerStats(every=1)]) as monitor:
            _steps(model, optimizer, 2)
    assert monitor.stats.errors == []
    for step in steps_of(read_values, tmp_path, ACTIVATIONS).values():
        assert list(step.layers) == ["fc1", "act", "fc2"]
        rows = rows_of(step)
        assert rows["act"]["type"] == "Tanh" and not np.isnan(rows["act"]["saturated_fraction"])


def test_watching_the_eager_module_of_a_compiled_model_is_not_silent(tmp_path):
    """The hooks are never called (the compiled graph runs): each measured step says so."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    eager = Block()
    compiled = torch.compile(eager, backend="eager")
    optimizer = torch.optim.SGD(eager.parameters(), lr=0.1)
    _steps(compiled, optimizer, 1)  # compiled before the hooks exist
    with Writer(str(tmp_path)) as writer:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with deepscope.watch(eager, optimizer, writer, measure=[LayerStats(every=1)]) as m:
                _steps(compiled, optimizer, 3)
    stats = m.stats.measurers["layer_statistics"]
    assert stats.error_count == 3
    assert "none of the measured layers' forward hooks was called" in stats.errors[0]
    assert "torch.compile" in stats.errors[0]
    assert len([w for w in caught if "forward hooks was called" in str(w.message)]) == 1


def test_a_compiled_model_on_a_probe_measures_every_layer(tmp_path, read_values):
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = torch.compile(Block(), backend="eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = torch.randn(10, 4)
    with Writer(str(tmp_path)) as writer:
        with deepscope.watch(
            model, optimizer, writer, measure=[LayerStats(every=1, on=probe)]
        ) as monitor:
            _steps(model, optimizer, 2)
    assert monitor.stats.errors == []
    steps = steps_of(read_values, tmp_path, ACTIVATIONS)
    assert [list(s.layers) for s in steps.values()] == [["fc1", "act", "fc2"]] * 2


# --------------------------------------------------------------------------- Hugging Face


def test_a_bert_model_with_tuple_and_model_output_outputs(tmp_path, read_values):
    hf = pytest.importorskip("tests.hf_models")
    model = hf.tiny_bert(seed=0)
    ids = torch.randint(0, 30, (4, 8), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    layers = ["", "encoder.layer.0.attention", "encoder.layer.0.intermediate.intermediate_act_fn"]
    recorded = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(lambda m, i, o, name=name: recorded.setdefault(name, o))
        for name in layers
    ]
    with Writer(str(tmp_path)) as writer:
        with deepscope.watch(
            model, optimizer, writer, measure=[LayerStats(every=1, layers=layers)]
        ) as monitor:
            optimizer.zero_grad()
            out = model(input_ids=ids)
            out.last_hidden_state.square().mean().backward()
            optimizer.step()
    for handle in handles:
        handle.remove()
    assert monitor.stats.errors == []
    rows = rows_of(steps_of(read_values, tmp_path, ACTIVATIONS)[0])
    attention = recorded["encoder.layer.0.attention"]
    assert isinstance(attention, tuple) and attention[1] is None  # (hidden, None): one row
    want = {
        "(model):last_hidden_state": recorded[""].last_hidden_state,
        "(model):pooler_output": recorded[""].pooler_output,
        "encoder.layer.0.attention:0": attention[0],
        "encoder.layer.0.intermediate.intermediate_act_fn": recorded[layers[2]],
    }
    assert set(rows) == set(want)
    for name, tensor in want.items():
        assert_row(rows[name], reference(tensor.detach().numpy(), -1), rtol=64 * F32)
    assert rows["(model):last_hidden_state"]["channels"] == 32
    assert rows["(model):last_hidden_state"]["type"] == "BertModel"


def test_a_gpt2_model_every_leaf_that_runs(tmp_path, read_values):
    hf = pytest.importorskip("tests.hf_models")
    model = hf.tiny_gpt2(seed=0)
    ids = torch.randint(0, 30, (3, 8), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    leaves = [n for n, m in model.named_modules() if next(m.children(), None) is None]
    called: list[str] = []  # the leaves that run, by the test's own hooks, in call order
    modules = dict(model.named_modules())

    def seen(name):
        def hook(module, inputs, output) -> None:
            if name not in called:
                called.append(name)

        return hook

    handles = [modules[n].register_forward_hook(seen(n)) for n in leaves]
    with Writer(str(tmp_path)) as writer:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with deepscope.watch(
                model, optimizer, writer, measure=[LayerStats(every=1, covariance_every=2)]
            ) as monitor:
                for _ in range(3):
                    optimizer.zero_grad()
                    model(input_ids=ids, labels=ids).loss.backward()
                    optimizer.step()
    for handle in handles:
        handle.remove()
    assert monitor.stats.errors == []
    steps = steps_of(read_values, tmp_path, ACTIVATIONS)
    assert sorted(steps) == [0, 1, 2]
    for k, step in steps.items():
        # every leaf that ran, in forward order (attention dropouts do not run under SDPA)
        assert list(step.layers) == called
        assert len(called) >= len(leaves) - 2 and called[-1] == "lm_head"
        rows = rows_of(step)
        assert (rows["lm_head"]["eigenvalues"] is not None) == (k % 2 == 0)
        assert rows["lm_head"]["channels"] == 30
    # nothing here is not a tensor with every leaf: nothing skipped, nothing warned
    assert monitor.measurers["layer_statistics"].skipped == {}
    assert not [w for w in caught if "not floating-point" in str(w.message)]


def test_a_gpt2_output_with_a_cache_object_is_listed_once(tmp_path, read_values):
    hf = pytest.importorskip("tests.hf_models")
    model = hf.tiny_gpt2(seed=0)
    ids = torch.randint(0, 30, (2, 6), generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with Writer(str(tmp_path)) as writer:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with deepscope.watch(
                model, optimizer, writer, measure=[LayerStats(every=1, layers=[""])]
            ) as monitor:
                for _ in range(2):
                    optimizer.zero_grad()
                    out = model(input_ids=ids, use_cache=True)
                    out.logits.mean().backward()
                    optimizer.step()
    skipped = monitor.measurers["layer_statistics"].skipped
    if "cache" in out:  # a Cache object (transformers >= 4.x), or tuples of tensors before
        assert list(skipped) == ["(model):cache"]
        assert len([w for w in caught if "not floating-point" in str(w.message)]) == 1
    step = steps_of(read_values, tmp_path, ACTIVATIONS)[1]
    assert "(model):logits" in step.layers
    assert monitor.stats.errors == []
