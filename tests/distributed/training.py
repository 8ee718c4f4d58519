"""The training run the distributed tests repeat: a small CNN on fixed random batches.

`train_ranks` is one rank's part (run by `ranks.run_ranks` on every rank:
DDP or FSDP2, each rank its slice of every global batch); `train_reference`
is the single process on the concatenated global batches. Same seeds, same
SGD, so every logged number must agree to float tolerance.
"""

from __future__ import annotations

from pathlib import Path

import torch

GLOBAL_BATCH = 8
STEPS = 6
CLASSES = 5


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 6, 3)
        self.fc = torch.nn.Linear(6, CLASSES)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


def build_model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN()


def global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (
            torch.randn(GLOBAL_BATCH, 1, 8, 8, generator=generator),
            torch.randint(0, CLASSES, (GLOBAL_BATCH,), generator=generator),
        )
        for _ in range(STEPS)
    ]


def probe() -> torch.Tensor:
    return torch.randn(GLOBAL_BATCH, 1, 8, 8, generator=torch.Generator().manual_seed(2))


def rank_slice(tensor: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    share = tensor.shape[0] // world
    return tensor[rank * share : (rank + 1) * share]


def eval_set() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return (
        torch.randn(GLOBAL_BATCH, 1, 8, 8, generator=generator),
        torch.randint(0, CLASSES, (GLOBAL_BATCH,), generator=generator),
    )


def measurers(rank_probe, rank_eval) -> list:
    """Every kind's measurer at a cadence of 2 steps.

    rank_probe, rank_eval: what this rank sees of the probe and the evaluation
    data (its share: the sums are combined over the ranks); the replicas'
    measurers (saliency, filters, feature maps, Jacobians, embeddings) get the
    whole probe, as rank 0 alone (or, under FSDP2, every rank) runs them.
    """
    import deepscope

    whole = probe()
    labels = torch.arange(GLOBAL_BATCH) % CLASSES
    return [
        deepscope.UpdateRatios(every=2),
        deepscope.ParameterNorms(every=2),
        deepscope.LayerStats(every=2, covariance_every=2, max_samples=1 << 20),
        deepscope.Spectra(every=2, time_budget=None, threads=1),  # nothing load-dependent
        deepscope.Correlations(layers=["conv1", "conv2"], probe=rank_probe, every=2),
        deepscope.ConfusionMatrices(rank_eval, every=2, num_classes=CLASSES),
        deepscope.Saliency(probe=(whole[:2], labels[:2]), every=2),
        deepscope.Filters(every=2, layers=["conv1"]),
        deepscope.FeatureMaps(layers=["conv1"], probe=whole, every=2),
        deepscope.JacobianSpectra(whole[:2], every=2, layers=["conv2"], network=True),
        deepscope.Embeddings(whole, every=4, layers=["conv2"], labels=labels),
    ]


def _train(model, optimizer, batches, step_input) -> None:
    for x, y in batches:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(step_input(x)), step_input(y))
        loss.backward()
        optimizer.step()


def train_reference(log_dir: str, world: int) -> None:
    """The single process on the global batches; the probe is the ranks' probes as batches."""
    import deepscope

    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    writer = deepscope.SummaryWriter(log_dir)
    ranks_probe = [rank_slice(probe(), rank, world) for rank in range(world)]
    x, y = eval_set()
    ranks_eval = [(rank_slice(x, r, world), rank_slice(y, r, world)) for r in range(world)]
    with deepscope.watch(
        model, optimizer, writer, measure=measurers(ranks_probe, ranks_eval)
    ) as monitor:
        _train(model, optimizer, global_batches(), lambda t: t)
    writer.close()
    assert monitor.stats.error_count == 0, monitor.stats.errors
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.save({"params": params}, Path(log_dir).parent / "reference.pt")


def train_ranks(
    rank: int, world: int, log_dir: str, how: str, trouble: str = "", timeout: float = 60.0
) -> None:
    """One rank's training under `how` ("ddp" or "fsdp"); rank 0 writes to `log_dir`.

    trouble: "" (none), "raise" (every measurement of rank 1 raises, its own
    part only) or "stall" (rank 1 never runs its cross-rank measurers: the
    others' collectives time out after `timeout` seconds). Each rank saves what
    its monitor saw to rank<r>.pt beside `log_dir`.
    """
    import deepscope

    model = build_model()
    if how == "ddp":
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    else:
        from torch.distributed.fsdp import fully_shard

        for layer in (model.conv1, model.conv2, model.fc):
            fully_shard(layer)
        wrapped = fully_shard(model)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.5, momentum=0.9)
    writer = deepscope.SummaryWriter(log_dir) if rank == 0 else None
    monitor = deepscope.watch(
        wrapped,
        optimizer,
        writer,
        measure=measurers(
            rank_slice(probe(), rank, world),
            [tuple(rank_slice(t, rank, world) for t in eval_set())],
        ),
        collective_timeout=timeout,
    )
    if rank == 1 and trouble == "raise":
        _break_measurements(monitor)
    if rank == 1 and trouble == "stall":
        for name in ("layer_statistics", "correlation"):
            del monitor.measurers[name]
    _train(wrapped, optimizer, global_batches(), lambda t: rank_slice(t, rank, world))
    monitor.close()
    result = {
        "errors": monitor.stats.errors,
        "broken": monitor.ranks.broken,
        "error_count": monitor.stats.error_count,
        "measurers": sorted(monitor.measurers),
        "bytes": monitor.ranks.collective_bytes,
        "bytes_by_what": dict(monitor.ranks.bytes_by_what),
        "params": {
            n: deepscope.writer.distributed.full_tensor(p.detach()).clone()
            for n, p in model.named_parameters()
        },
        "steps_seen": monitor.stats.steps_seen,
    }
    if writer is not None:
        writer.close()
    torch.save(result, Path(log_dir).parent / f"rank{rank}.pt")


def _break_measurements(monitor) -> None:
    """Make every measurement of this rank raise (its own part only)."""

    def broken(*args, **kwargs):
        raise RuntimeError("a broken measurement on this rank")

    layer_stats = monitor.measurers["layer_statistics"]
    layer_stats._collect_train = broken
    if "update_ratios" in monitor.measurers and monitor.ranks.sharded:
        monitor.measurers["update_ratios"]._watched = broken


def check_edges(rank: int, world: int, out: str) -> None:
    """Three edges in one group of ranks; each rank saves what it saw to <out>/edges<r>.pt.

    - A DTensor parameter placed Shard(1) (tensor parallel): watch() refuses it.
    - watch(process_group=...) given a group: measures across it.
    - FSDP2 spectra with a small max_gather_bytes: the big weight is skipped, said so.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard, distribute_tensor

    import deepscope

    seen = {}
    mesh = init_device_mesh("cpu", (world,))
    layer = torch.nn.Linear(4, 2 * world)
    layer.weight = torch.nn.Parameter(distribute_tensor(layer.weight.detach(), mesh, [Shard(1)]))
    try:
        deepscope.watch(layer, torch.optim.SGD(layer.parameters(), lr=0.1), None)
        seen["refused"] = None
    except ValueError as error:
        seen["refused"] = str(error)

    group = dist.new_group(list(range(world)))
    model = torch.nn.parallel.DistributedDataParallel(build_model(), process_group=group)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(Path(out) / "group")) if rank == 0 else None
    monitor = deepscope.watch(
        model,
        optimizer,
        writer,
        process_group=group,
        measure=[deepscope.UpdateRatios(every=1), deepscope.LayerStats(every=1)],
    )
    _train(model, optimizer, global_batches()[:2], lambda t: rank_slice(t, rank, world))
    monitor.close()
    seen["group"] = (monitor.ranks.world_size, monitor.ranks.group is group, monitor.stats.errors)
    if writer is not None:
        writer.close()

    model = build_model()
    for module in (model.conv1, model.conv2, model.fc):
        fully_shard(module)
    fully_shard(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(Path(out) / "skipped")) if rank == 0 else None
    spectra = deepscope.Spectra(every=1, max_gather_bytes=200)  # conv2's 864 bytes do not fit
    monitor = deepscope.watch(model, optimizer, writer, measure=[spectra])
    _train(model, optimizer, global_batches()[:1], lambda t: rank_slice(t, rank, world))
    monitor.close()
    seen["skipped"] = (list(spectra.stats.skipped_sharded), monitor.stats.errors)
    if writer is not None:
        writer.close()
    torch.save(seen, Path(out) / f"edges{rank}.pt")
