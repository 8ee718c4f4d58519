"""watch() on a `torch.compile`d model: parameter names as the user wrote them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepscope
from tests.update_ratio_logs import read_update_ratios


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def _train_compiled(compiled, optimizer, steps):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=generator)
    y = torch.randint(0, 3, (16,), generator=generator)
    reference = []
    eager = compiled._orig_mod if hasattr(compiled, "_orig_mod") else compiled
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(compiled(x), y).backward()
        before = [p.detach().double().numpy().copy() for p in eager.parameters()]
        optimizer.step()
        after = [p.detach().double().numpy() for p in eager.parameters()]
        reference.append([np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(after, before)])
    return np.array(reference)


@pytest.mark.parametrize("where", ["whole model", "a submodule"])
def test_compiled_model_logs_names_without_orig_mod(where, tmp_path, read_values):
    torch.manual_seed(0)
    torch._dynamo.reset()
    eager = Block()
    if where == "whole model":
        model = torch.compile(eager, backend="eager")
        assert [n for n, _ in model.named_parameters()][0] == "_orig_mod.fc1.weight"  # the trap
    else:
        model = eager
        model.fc1 = torch.compile(model.fc1, backend="eager")
        assert [n for n, _ in model.named_parameters()][0] == "fc1._orig_mod.weight"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    writer = deepscope.SummaryWriter(str(tmp_path))
    with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None) as monitor:
        reference = _train_compiled(model, optimizer, 3)
    writer.close()
    want_names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert monitor.names == want_names
    log = read_update_ratios(read_values, tmp_path)
    names, values = log.names, log.raw
    assert names == want_names
    np.testing.assert_allclose(values, reference, rtol=1e-4)


def test_aot_compiled_model_logs_names_and_ratios(tmp_path, read_values):
    """AOTAutograd (compiled backward), as inductor does; inductor itself takes over 60 s here."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = torch.compile(Block(), backend="aot_eager")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    writer = deepscope.SummaryWriter(str(tmp_path))
    with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None) as monitor:
        reference = _train_compiled(model, optimizer, 2)
    writer.close()
    assert monitor.names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    log = read_update_ratios(read_values, tmp_path)
    names, values = log.names, log.raw
    assert names == monitor.names
    np.testing.assert_allclose(values, reference, rtol=1e-4)
