"""One rank of a transformers.Trainer run under torch.distributed (2 gloo processes).

The Trainer (accelerate) sets up the process group itself from the usual
environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as
torchrun would set it; `train_rank` is what each spawned process runs.
"""

from __future__ import annotations

import os
from pathlib import Path


def train_rank(rank: int, world: int, port: int, output_dir: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        HF_HUB_OFFLINE="1",
    )
    import torch

    torch.set_num_threads(1)
    from deepscope.integrations.transformers import DeepscopeCallback
    from tests.integrations import test_transformers_callback as hf

    callback = DeepscopeCallback(
        **hf.OPTIONS,
        layer_statistics_options={"covariance_every": hf.OPTIONS["layer_statistics_every"]},
    )
    trainer = hf._trainer(Path(output_dir), [callback], ddp_backend="gloo")
    trainer.train()
    monitor = callback.monitor
    seen = {
        "world": monitor.ranks.world_size if monitor else None,
        "errors": monitor.stats.errors if monitor else ["no monitor"],
        "global_step": trainer.state.global_step,
        "log_dir": callback.log_dir,
    }
    torch.save(seen, Path(output_dir) / f"rank{rank}.pt")
