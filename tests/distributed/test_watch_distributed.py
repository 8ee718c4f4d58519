"""watch() under real torch.distributed (gloo, 2 and 4 processes on this CPU), DDP and FSDP2.

Every number logged by the ranks (rank 0 writing) equals the single-process
run on the concatenated global batches (`training.train_reference`), field by
field (`tests.logged_numbers`); rank 0 alone writes; DDP's replicas are
identical (why rank 0 alone measures them); a rank whose measurements raise,
or that stops joining deepscope's collectives, neither hangs the others nor
changes training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.distributed import training
from tests.distributed.ranks import run_ranks
from tests.logged_numbers import assert_same_numbers, event_files, read_logged

pytestmark = pytest.mark.timeout(240)

# float32 sums over the ranks' shards and batches in another order than one
# process's: agreement to a few float32 ulps of the values' accumulated error.
RTOL = 64 * torch.finfo(torch.float32).eps
ATOL = 1e-6

# The measurers that run on every rank (they combine what each rank sees or holds).
SUMS = ["confusion", "correlation", "layer_statistics"]
EVERY = sorted(
    SUMS
    + ["embeddings", "feature_maps", "filters", "jacobian", "parameter_norms", "saliency"]
    + ["spectra", "update_ratios"]
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The single-process run's logged numbers and weights, per world size's probe batching."""
    runs = {}
    for world in (2, 4):
        root = tmp_path_factory.mktemp(f"reference{world}")
        training.train_reference(str(root / "run"), world)
        runs[world] = (
            read_logged(root),
            torch.load(root / "reference.pt")["params"],
            _projector_files(root / "run"),
        )
    return runs


def _projector_files(run: Path) -> dict:
    """{relative path: numbers (tensors.tsv) or lines} of the projector's files under `run`."""
    found = {}
    for path in sorted(run.rglob("*.tsv")):
        name = str(path.relative_to(run))
        if path.name == "tensors.tsv":
            found[name] = np.loadtxt(path, delimiter="\t", ndmin=2)
        else:
            found[name] = path.read_text().splitlines()
    return found


def _run(tmp_path: Path, how: str, world: int, trouble: str = "", timeout: float = 60.0):
    log_dir = tmp_path / "run"
    run_ranks(training.train_ranks, world, str(log_dir), how, trouble, timeout, timeout=200)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]
    return read_logged(tmp_path), ranks


@pytest.mark.parametrize("how,world", [("ddp", 2), ("ddp", 4), ("fsdp", 2), ("fsdp", 4)])
def test_every_logged_number_equals_the_single_process_run(tmp_path, reference, how, world):
    logged, ranks = _run(tmp_path, how, world)
    want, want_params, want_projector = reference[world]
    kinds = {tag.split("/")[0] for tag, _ in want}
    assert kinds == {
        "confusion",
        "correlation",
        "feature_maps",
        "filters",
        "jacobian",
        "layer_statistics",
        "saliency",
        "spectra",
        "update_ratios",
    }
    assert_same_numbers(logged, want, rtol=RTOL, atol=ATOL, what=f"{how} x{world}")
    # Embeddings go to TensorBoard's projector files, beside the events.
    projector = _projector_files(tmp_path / "run")
    assert sorted(projector) == sorted(want_projector) and projector
    for name, values in want_projector.items():
        if isinstance(values, list):
            assert projector[name] == values, name
        else:
            np.testing.assert_allclose(projector[name], values, rtol=RTOL, atol=ATOL, err_msg=name)
    for rank, seen in enumerate(ranks):
        assert seen["error_count"] == 0, seen["errors"]
        assert seen["steps_seen"] == training.STEPS
        assert seen["measurers"] == (EVERY if rank == 0 or how == "fsdp" else SUMS)
        for name, value in want_params.items():  # training itself is the same
            torch.testing.assert_close(seen["params"][name], value, rtol=RTOL, atol=ATOL)
        if how == "fsdp":
            # One float32 per parameter tensor (‖ΔW‖²; ‖W‖² came with the parameter
            # norms of the same step) and one flag per rank, at steps 0, 2 and 4.
            tensors = len(want_params)
            assert seen["bytes_by_what"]["update ratios"] == 3 * 4 * (tensors + world)
            assert seen["bytes_by_what"]["parameter norms"] == 3 * 4 * (2 * tensors + world)
        else:  # replicas: measured on rank 0 alone, nothing sent
            assert "update ratios" not in seen["bytes_by_what"]
    # Rank 0 alone writes: one event file (and the projector's), nothing else.
    files = event_files(tmp_path)
    assert len(files) == 1 and files[0].parent == tmp_path / "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["run"] + [f"rank{r}.pt" for r in range(world)]
    )
    assert not list(Path.cwd().glob("0000*"))  # no rank wrote projector files elsewhere


def test_ddp_replicas_are_identical_so_rank_0_alone_measures_them(tmp_path):
    _, ranks = _run(tmp_path, "ddp", 2)
    for name, value in ranks[0]["params"].items():
        assert torch.equal(ranks[1]["params"][name], value), name  # bit for bit


@pytest.mark.parametrize("how", ["ddp", "fsdp"])
def test_a_rank_whose_measurements_raise_hangs_nobody(tmp_path, reference, how):
    logged, ranks = _run(tmp_path, how, 2, trouble="raise")
    want, want_params, _ = reference[2]
    for seen in ranks:
        assert seen["steps_seen"] == training.STEPS  # training went on, on both ranks
        for name, value in want_params.items():
            torch.testing.assert_close(seen["params"][name], value, rtol=RTOL, atol=ATOL)
    assert any("a broken measurement on this rank" in e for e in ranks[1]["errors"])
    assert any(
        "layer_statistics" in e and "failed on rank(s) [1]" in e for e in ranks[0]["errors"]
    ), ranks[0]["errors"]
    # The failed kind is dropped on every rank; the others are logged as ever.
    assert not [key for key in logged if key[0].startswith("layer_statistics/activations")]
    kept = {key: value for key, value in want.items() if key[0].startswith("spectra/")}
    assert_same_numbers({key: logged[key] for key in kept}, kept, rtol=RTOL, atol=ATOL, what="kept")
    if how == "ddp":  # update ratios are rank 0's own: unaffected by rank 1's trouble
        assert any(key[0] == "update_ratios" for key in logged)


def test_a_rank_that_stops_joining_times_out_and_training_goes_on(tmp_path, reference):
    logged, ranks = _run(tmp_path, "ddp", 2, trouble="stall", timeout=3.0)
    _, want_params, _ = reference[2]
    for seen in ranks:
        assert seen["steps_seen"] == training.STEPS
        for name, value in want_params.items():
            torch.testing.assert_close(seen["params"][name], value, rtol=RTOL, atol=ATOL)
    # Rank 0 waits for rank 1's layer statistics: the collective times out, or rank
    # 1's next collective (its confusion counts) is caught as another one than
    # rank 0's; either way the cross-rank measurements are off, on both ranks.
    for seen in ranks:
        assert seen["broken"] and (
            "did not complete within 3 s" in seen["broken"]
            or "joined another collective" in seen["broken"]
        ), seen["broken"]
    assert any(
        "cross-rank measurements are off" in e
        or "did not complete" in e
        or "joined another collective" in e
        for e in ranks[0]["errors"]
    )
    assert any(key[0] == "update_ratios" for key in logged)  # rank 0's own kinds go on


def test_placements_a_process_group_and_weights_too_big_to_gather(tmp_path):
    run_ranks(training.check_edges, 2, str(tmp_path), timeout=200)
    for rank in range(2):
        seen = torch.load(tmp_path / f"edges{rank}.pt", weights_only=False)
        # Tensor parallel's Shard(1) is refused, naming the parameter and what to do.
        assert seen["refused"] and "'weight'" in seen["refused"]
        assert "Shard(dim=1)" in seen["refused"] and "fully_shard" in seen["refused"]
        world, used_given_group, errors = seen["group"]
        assert (world, used_given_group, errors) == (2, True, [])
        skipped, errors = seen["skipped"]
        assert errors == []
        if rank == 0:
            assert skipped == ["spectra/conv2"]
    logged = read_logged(tmp_path / "group")
    assert sorted({tag for tag, _ in logged}) == ["layer_statistics/activations", "update_ratios"]
    assert sorted({step for _, step in logged}) == [0, 1]
    logged = read_logged(tmp_path / "skipped")
    assert sorted({tag for tag, _ in logged}) == ["spectra/conv1", "spectra/fc"]
