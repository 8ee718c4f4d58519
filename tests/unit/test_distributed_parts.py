"""The single-process parts of watch()'s torch.distributed support (the rest: tests/distributed).

- Layer statistics' sums travel as one float64 vector (`pack_rows`/`unpack_rows`):
  two ranks' batches, packed, unpacked and merged, give the statistics numpy
  gives for the concatenated batch.
- `Ranks` outside torch.distributed: one process, nothing to combine.
- A collective's flags say which collective each rank joined: strays are caught.
- `unwrap_replicas`: the module a (compiled) data-parallel wrapper holds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepscope.analysis import layer_statistics as ls
from deepscope.writer import distributed


def _batch(seed: int, n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, 5, 3, 3, generator=generator) + 0.3)
    x[:, 2] = 0.0  # a dead channel
    return x


def test_packed_sums_of_two_ranks_merge_to_the_whole_batch():
    parts = [_batch(0, 4), _batch(1, 6)]
    rows = []
    for x in parts:
        sums = ls.activation_sums(x, 1)
        covariance = ls.covariance_sums(x, 1, max_samples=10_000)
        rows.append(ls.unpack_rows(ls.pack_rows([(7, sums, covariance)]))[0])
    assert [key for key, _, _ in rows] == [7, 7]
    merged = rows[0][1].merge(rows[1][1])
    covariance = rows[0][2].merge(rows[1][2])
    whole = torch.cat(parts).double().numpy()
    stats = ls.activation_statistics(merged)
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(stats["mean"], whole.mean(), rtol=16 * eps)
    np.testing.assert_allclose(stats["std"], whole.std(), rtol=16 * eps)
    np.testing.assert_allclose(stats["zero_fraction"], np.mean(whole == 0), rtol=16 * eps)
    assert stats["count"] == whole.size and stats["dead_channels"] == 1
    rows_of = whole.transpose(0, 2, 3, 1).reshape(-1, 5)  # positions x channels
    centred = rows_of - rows_of.mean(axis=0)
    np.testing.assert_allclose(
        covariance.comoment.numpy(), centred.T @ centred, rtol=64 * eps, atol=64 * eps
    )
    assert int(covariance.count) == rows_of.shape[0]


def test_a_packed_vector_cut_short_is_refused():
    x = _batch(2, 3)
    vector = ls.pack_rows([(1, ls.activation_sums(x, 1), None)])
    with pytest.raises(ValueError, match="ends inside a row"):
        ls.unpack_rows(vector[:-1])
    with pytest.raises(ValueError, match="more than its rows"):
        ls.unpack_rows(torch.cat([vector, torch.zeros(1, dtype=vector.dtype)]))


def test_outside_torch_distributed_there_is_one_process():
    model = torch.nn.Linear(3, 2)
    ranks = distributed.find_ranks(model)
    assert (ranks.rank, ranks.world_size, ranks.distributed, ranks.writes) == (0, 1, False, True)
    assert ranks.agree(False, "x") is False and ranks.broadcast_int(5, "x") == 5
    with pytest.raises(ValueError, match="init_process_group"):
        distributed.find_ranks(model, process_group=object())


def test_ranks_that_joined_another_collective_are_caught():
    ranks = distributed.Ranks(rank=0, world_size=3)
    mine = ranks._mark("update ratios", False)
    failed = ranks._mark("update ratios", True)
    other = ranks._mark("layer statistics", False)
    flags = torch.tensor([mine, failed, mine], dtype=torch.float64)
    assert ranks._failed_ranks(flags, "update ratios") == [1]
    with pytest.raises(distributed.RankFailure, match=r"rank\(s\) \[2\] joined another"):
        ranks._failed_ranks(torch.tensor([mine, mine, other]), "update ratios")
    assert ranks.broken and "joined another collective" in ranks.broken
    with pytest.raises(distributed.RankFailure, match="cross-rank measurements are off"):
        ranks.all_reduce_sum(torch.zeros(2), 2, "update ratios")


def test_unwrap_replicas_finds_the_wrapped_module():
    model = torch.nn.Linear(2, 2)
    assert distributed.unwrap_replicas(model) is model
    assert distributed.unwrap_replicas(torch.nn.DataParallel(model)) is model
    assert distributed.unwrap_replicas(torch.compile(torch.nn.DataParallel(model))) is model
    compiled = torch.compile(model)
    assert distributed.unwrap_replicas(compiled) is compiled  # not a replica wrapper
