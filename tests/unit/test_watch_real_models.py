"""watch()'s update ratios on real Hugging Face models (small configs, no download).

Fresh HF models initialise every bias (and LayerNorm shift) to exactly zero:
at step 0 their ratio is undefined and must be logged as zero weight, without
a warning; afterwards they are ordinary ratios. Gradient accumulation and a
step a GradScaler skips must keep the step count right. Every number is
checked against float64 numpy copies of the weights taken around each
`optimizer.step()`.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

import deepscope
from deepscope.writer import resume
from deepscope.writer.update_ratios import ZERO_WEIGHT
from tests.hf_models import tiny_bert, tiny_gpt2  # the "hf" test extra (transformers)
from tests.update_ratio_logs import read_update_ratios

HIDDEN = 64
VOCAB = 100


def _tokens(seed: int, batch: int = 4, length: int = 12) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def _copies(model) -> dict[str, np.ndarray]:
    return {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}


def _reference_row(before: dict, after: dict) -> dict:
    """{name: ratio, None (bit for bit unchanged) or ZERO_WEIGHT}, in float64 numpy."""
    row = {}
    for name, old in before.items():
        if np.array_equal(after[name], old):
            row[name] = None
        elif not old.any():
            row[name] = ZERO_WEIGHT
        else:
            row[name] = np.linalg.norm(after[name] - old) / np.linalg.norm(old)
    return row


def _assert_rows_match(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name, expected in want.items():
        if expected is None or expected is ZERO_WEIGHT:
            assert got[name] is expected, (name, got[name], expected)
        else:
            assert isinstance(got[name], float), (name, got[name])
            assert got[name] == pytest.approx(expected, rel=1e-4), name


def _deepscope_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if "deepscope" in str(w.message)]


def test_gpt2_zero_initialised_biases_are_zero_weight_at_step_0_and_nothing_is_warned(
    tmp_path, read_values
):
    model = tiny_gpt2(hidden=HIDDEN, positions=32, vocab=VOCAB).train()
    zero_at_start = sorted(n for n, p in model.named_parameters() if not p.detach().any())
    assert len(zero_at_start) >= 8  # the trap: every Conv1D bias and LayerNorm shift
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    writer = deepscope.SummaryWriter(str(tmp_path))
    reference = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None) as monitor:
            for step in range(3):
                ids = _tokens(step)
                loss = model(input_ids=ids, labels=ids).loss
                optimizer.zero_grad()
                loss.backward()
                before = _copies(model)
                optimizer.step()
                reference.append(_reference_row(before, _copies(model)))
    writer.close()
    assert _deepscope_warnings(caught) == []
    assert monitor.stats.errors == [] and monitor.stats.non_finite == 0
    assert monitor.stats.zero_weight == len(zero_at_start)
    log = read_update_ratios(read_values, tmp_path)
    names, rows = log.names, log.rows
    assert names == [n for n, _ in model.named_parameters()]  # lm_head.weight is tied: once
    assert [step for step, _ in rows] == [0, 1, 2]
    assert sorted(n for n, v in rows[0][1].items() if v is ZERO_WEIGHT) == zero_at_start
    for _, row in rows[1:]:
        assert all(isinstance(row[n], float) and row[n] > 0 for n in zero_at_start)
    for (_, got), want in zip(rows, reference):
        _assert_rows_match(got, want)


def test_bert_with_gradient_accumulation_counts_optimizer_steps(tmp_path, read_values):
    """3 backward passes per optimizer step; the pooler is unused, so it gets no update."""
    model = tiny_bert(hidden=HIDDEN, intermediate=96, positions=32, vocab=VOCAB).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    writer = deepscope.SummaryWriter(str(tmp_path))
    reference = []
    with deepscope.watch(model, optimizer, writer, every=2, spectra_every=None) as monitor:
        for step in range(4):
            optimizer.zero_grad(set_to_none=True)
            for micro in range(3):
                hidden = model(input_ids=_tokens(10 * step + micro)).last_hidden_state
                (hidden.pow(2).mean() / 3).backward()
            before = _copies(model)
            optimizer.step()
            reference.append(_reference_row(before, _copies(model)))
    writer.close()
    assert monitor.stats.steps_seen == 4 and monitor.stats.measurements == 2
    assert monitor.step == resume.optimizer_step_count(optimizer) == 4
    rows = read_update_ratios(read_values, tmp_path).rows
    assert [step for step, _ in rows] == [0, 2]
    for step, got in rows:
        _assert_rows_match(got, reference[step])
    assert rows[1][1]["pooler.dense.weight"] is None  # no gradient, not 0
    assert rows[0][1]["encoder.layer.0.attention.self.query.bias"] is ZERO_WEIGHT
    assert isinstance(rows[1][1]["encoder.layer.0.attention.self.query.bias"], float)


def test_a_step_gradscaler_skips_is_not_counted(tmp_path, read_values):
    model = tiny_gpt2(hidden=HIDDEN, positions=32, vocab=VOCAB).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    writer = deepscope.SummaryWriter(str(tmp_path))
    reference = []
    with deepscope.watch(model, optimizer, writer, every=1, spectra_every=None) as monitor:
        for step in range(3):
            ids = _tokens(step)
            optimizer.zero_grad()
            scaler.scale(model(input_ids=ids, labels=ids).loss).backward()
            if step == 1:  # an overflow: the scaler skips optimizer.step()
                model.transformer.wte.weight.grad[0, 0] = float("inf")
            before = _copies(model)
            scaler.step(optimizer)
            scaler.update()
            after = _copies(model)
            if step == 1:
                assert all(np.array_equal(before[n], after[n]) for n in before)  # skipped
            else:
                reference.append(_reference_row(before, after))
    writer.close()
    assert monitor.stats.steps_seen == 2
    assert monitor.step == resume.optimizer_step_count(optimizer) == 2
    rows = read_update_ratios(read_values, tmp_path).rows
    assert [step for step, _ in rows] == [0, 1]  # optimizer steps, as Adam counts them
    for (_, got), want in zip(rows, reference):
        _assert_rows_match(got, want)
