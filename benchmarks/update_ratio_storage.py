"""Update-ratio storage for bench_update_ratios_route.py: synthetic series and watch()'s bytes.

`storage_figures` writes a synthetic series (blocks of
`DEFAULT_MEASUREMENTS_PER_EVENT` steps per event, as watch() writes; no
training) per run and reports event-file bytes per logged step;
`watch_storage` runs the default `watch()` on a ResNet-18 with fixed gradients
and reports the bytes it writes per 1,000 optimizer steps.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

import deepscope
from deepscope.writer.watch import DEFAULT_MEASUREMENTS_PER_EVENT

TAG = "update_ratios"
TARGET_FILE_BYTES = 5_000_000


def event_bytes(logdir: Path) -> int:
    return sum(f.stat().st_size for f in logdir.glob("events.out.tfevents.*"))


def empty_writer_bytes(tmp: Path) -> int:
    """What a writer that logs nothing leaves (the file_version header event)."""
    d = tmp / "empty"
    w = deepscope.SummaryWriter(str(d))
    w.flush()
    w.close()
    size = event_bytes(d)
    shutil.rmtree(d)
    return size


def write_series(logdir: Path, steps: list[int], n_params: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    names = [f"layer{i // 4 + 1}.{i % 4}.conv.weight" for i in range(n_params)]
    base = rng.lognormal(np.log(1e-3), 0.7, size=n_params).astype(np.float32)
    writer = deepscope.SummaryWriter(str(logdir))
    t0 = time.perf_counter()
    wall = 1.7e9
    # As watch() writes them: blocks of DEFAULT_MEASUREMENTS_PER_EVENT measurements per event.
    per_event = DEFAULT_MEASUREMENTS_PER_EVENT
    for start in range(0, len(steps), per_event):
        block = steps[start : start + per_event]
        values = base * rng.lognormal(0.0, 0.1, size=(len(block), n_params)).astype(np.float32)
        walls = [wall + 0.25 * k for k in range(len(block))]
        writer._add_update_ratio_block(TAG, names, values, steps=block, wall_times=walls)
        wall += 0.25 * len(block)
    writer.flush()
    seconds = time.perf_counter() - t0
    writer.close()
    return {"names": names, "write_us_per_step": seconds / len(steps) * 1e6}


def storage_figures(root: Path, args) -> dict:
    header = empty_writer_bytes(root)
    runs = {
        "big": list(range(args.steps)),
        "small": list(range(0, args.steps, args.small_every)),
    }
    out = {"empty_writer_bytes": header, "runs": {}}
    for run, steps in runs.items():
        info = write_series(root / "logs" / run, steps, args.params, seed=len(steps))
        size = event_bytes(root / "logs" / run)
        out["runs"][run] = {
            "logged_steps": len(steps),
            "params": args.params,
            "event_file_bytes": size,
            "bytes_per_logged_step": round((size - header) / len(steps), 1),
            "write_us_per_step": round(info["write_us_per_step"], 1),
        }
    out["target_file_bytes"] = TARGET_FILE_BYTES
    return out


def watch_storage(root: Path, optimizer_steps: int) -> dict:
    """Bytes the default watch()'s update ratios write for a ResNet-18 over N optimizer steps.

    Spectra (on by default too) are left out here; bench_spectra.py measures their bytes.
    """
    import torch
    from resnet import resnet18

    from deepscope.writer.watch import DEFAULT_EVERY

    torch.manual_seed(0)
    model = resnet18()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    logdir = root / "watch-storage"
    writer = deepscope.SummaryWriter(str(logdir))
    header = empty_writer_bytes(root)
    monitor = deepscope.watch(model, optimizer, writer, spectra_every=None)
    for _ in range(optimizer_steps):
        optimizer.step()
    monitor.close()
    writer.close()
    size = event_bytes(logdir)
    measurements = monitor.stats.measurements
    per_1000 = (size - header) * 1000 / optimizer_steps
    return {
        "model": "ResNet-18 (CIFAR), 62 parameter tensors",
        "every": DEFAULT_EVERY,
        "optimizer_steps": optimizer_steps,
        "measurements": measurements,
        "parameter_tensors": len(monitor.names),
        "event_file_bytes": size,
        "bytes_per_1000_steps": round(per_1000),
        "bytes_per_measurement_after_first": None
        if measurements < 2
        else round((size - header - _first_event_bytes(logdir)) / (measurements - 1), 1),
        "first_event_bytes": _first_event_bytes(logdir),
    }


def _first_event_bytes(logdir: Path) -> int:
    """Size on disk of the first deepscope event (the one carrying the metadata)."""
    (path,) = logdir.glob("events.out.tfevents.*")
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        (length,) = np.frombuffer(data[pos : pos + 8], dtype="<u8")
        record = 8 + 4 + int(length) + 4
        if b"deepscope" in data[pos : pos + record]:
            return record
        pos += record
    return 0
