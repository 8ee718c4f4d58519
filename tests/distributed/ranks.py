"""Real torch.distributed on this CPU: spawn `world` processes on the gloo backend.

Each process runs `target(rank, world, *args)` (an importable function) after
`init_process_group("gloo")` on a free local port, with one intra-op thread;
a process that raises fails the call with its traceback
(`torch.multiprocessing.spawn`). Every process is joined within `timeout`
seconds, or the whole group is killed and the call fails.
"""

from __future__ import annotations

import datetime
import os
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, timeout: float, target, args) -> None:
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout)
    )
    try:
        target(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run_ranks(target, world: int, *args, timeout: float = 120.0) -> None:
    """Run `target(rank, world, *args)` on `world` gloo processes; raise if any fails."""
    import torch.multiprocessing as mp

    context = mp.start_processes(
        _entry,
        args=(world, free_port(), timeout, target, args),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    import time

    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            raise TimeoutError(f"the {world} ranks did not finish within {timeout:g} s (a hang)")
