"""Li et al.'s regression and the pair's CKA from co-moments against one `numpy.linalg.lstsq`.

For each layer width C (C channels in network A and in network B; 96 is AlexNet's conv1,
Li et al.'s table; 768 a GPT-2 or ViT-B layer's), in one run on the same thread:

- the reference: one `numpy.linalg.lstsq(R_bb, R_abᵀ)` of the C × C correlations of B
  with the C right-hand sides of A's channels (what predicting every channel of A from B
  by least squares costs at the least);
- `channel_regression(R_ab, R_bb)`: every channel's least-squares error (one
  eigendecomposition) and its L1 fit at the α rule's grid point (the exact lasso path of
  every channel, `analysis.channel_regression.lasso_paths`, compiled by numba: timed
  warm; the first call of a process is timed apart, compiling and from numba's cache);
- `cka_from_comoments` of the same co-moments (compare()'s per-pair CKA);

each the median of `--repeats` rounds (one call of each per round, interleaved). The
figure is (regression + CKA) / lstsq. The correlations come from the real
`CorrelationAccumulator` (cross mode) over `--samples` sample positions of synthetic
activations: B's channels share a few latent factors; each channel of A mixes 4 of B's
("sparse": like Li et al.'s, whose L1 fits use 4.7 of 96) or 10% of them ("dense"), plus
noise. The L1 path's cost grows with the channels its fits use (one event each).
Storage: the bytes one compare() step adds to its CorrelationStep (`CrossNetworkFit`),
and one compare_cka step of L × L layers. Results: benchmarks/results/channel_regression.json.

    .venv/bin/python benchmarks/bench_channel_regression.py            # 1 thread
    .venv/bin/python benchmarks/bench_channel_regression.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

if "--threads" not in sys.argv:  # one BLAS thread unless asked: set before numpy starts it
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import machine, median, table, write_json  # noqa: E402

from deepscope.analysis.channel_regression import channel_regression  # noqa: E402
from deepscope.analysis.cka import cka_from_comoments  # noqa: E402
from deepscope.analysis.correlation import CorrelationAccumulator  # noqa: E402
from deepscope.writer.cka import cka_matrix_pb  # noqa: E402
from deepscope.writer.correlation import cross_network_fit_pb  # noqa: E402

MIXES = {"sparse": "4 of B's channels", "dense": "10% of B's channels"}


def comoments(channels: int, samples: int, seed: int, mix: str = "dense"):
    """A cross accumulator's correlations and co-moments of synthetic related layers: each
    channel of A a mix of 4 of B's channels ("sparse", Li et al.'s L1 fits use 4.7 of 96)
    or of 10% of them ("dense"), plus noise."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((samples, max(4, channels // 8)))
    b = latent @ rng.standard_normal((latent.shape[1], channels)) * 0.5
    b += rng.standard_normal((samples, channels))
    if mix == "sparse":
        used = np.zeros((channels, channels), bool)
        for i in range(channels):
            used[rng.choice(channels, 4, replace=False), i] = True
    else:
        used = rng.random((channels, channels)) < 0.1
    weights = rng.standard_normal((channels, channels)) * used
    a = b @ weights + rng.standard_normal((samples, channels)) * 1.5
    accumulator = CorrelationAccumulator(channel_dim=1, other_channel_dim=1)
    for chunk in np.array_split(np.arange(samples), 4):
        accumulator.update(torch.from_numpy(a[chunk]), torch.from_numpy(b[chunk]))
    return accumulator.compute(), accumulator.comoments()


def timed(functions: dict, repeats: int) -> dict:
    """Median seconds of each function, interleaved (one call of each per round) so that
    a busy machine slows them alike."""
    for function in functions.values():
        function()  # warm
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: median(values) for name, values in times.items()}


def measure(channels: int, samples: int, repeats: int, mix: str) -> dict:
    """The figures of one layer width and mix."""
    correlation, (within_a, within_b, cross) = comoments(channels, samples, channels, mix)
    r_ab, r_bb = correlation.matrix, correlation.within_cols
    seconds = timed(
        {
            "lstsq": lambda: np.linalg.lstsq(r_bb, r_ab.T, rcond=None),
            "regression": lambda: channel_regression(r_ab, r_bb),
            "cka": lambda: cka_from_comoments(cross, within_a, within_b),
        },
        repeats,
    )
    lstsq, regression, cka = seconds["lstsq"], seconds["regression"], seconds["cka"]
    found = channel_regression(r_ab, r_bb)
    fit = cross_network_fit_pb(found, cka_from_comoments(cross, within_a, within_b), channels)
    return {
        "channels": channels,
        "mix": mix,
        "a_channel_mixes": MIXES[mix],
        "lstsq_seconds": lstsq,
        "regression_seconds": regression,
        "cka_seconds": cka,
        "ratio_to_lstsq": (regression + cka) / lstsq,
        "mean_least_squares_error": found.mean_least_squares_error,
        "mean_l1_error": found.mean_l1_error,
        "mean_l1_channels": found.mean_l1_channels,
        "cross_network_bytes_per_step": fit.ByteSize(),
    }


FIRST_USE = """
import time, numpy as np
from deepscope.analysis.channel_regression import lasso_paths
gram, targets = np.eye(4), np.full((4, 2), 0.5)
start = time.perf_counter()
lasso_paths(gram, targets, np.full(2, 0.5))
print(time.perf_counter() - start)
"""


def first_use_seconds() -> dict:
    """The first lasso_paths call of a fresh process: with no compiled walk on disk (an
    empty NUMBA_CACHE_DIR: numba compiles it), then with the one that run cached."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        seconds = [
            float(
                subprocess.run(
                    [sys.executable, "-c", FIRST_USE], env=env, check=True,
                    capture_output=True, text=True,
                ).stdout
            )
            for _ in range(2)
        ]  # fmt: skip
    return {"compiling_seconds": seconds[0], "from_the_disk_cache_seconds": seconds[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 256, 512, 768, 1024])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [64, 128] if args.quick else args.sizes
    repeats = 2 if args.quick else args.repeats
    rows, figures = [], []
    for mix in MIXES:
        for channels in sizes:
            found = measure(channels, args.samples, repeats, mix)
            figures.append(found)
            rows.append(
                [
                    mix,
                    channels,
                    f"{1e3 * found['lstsq_seconds']:.2f}",
                    f"{1e3 * found['regression_seconds']:.2f}",
                    f"{1e3 * found['cka_seconds']:.3f}",
                    f"{found['ratio_to_lstsq']:.2f}",
                    f"{found['mean_l1_channels']:.1f}",
                    found["cross_network_bytes_per_step"],
                ]
            )
    header = [
        "mix",
        "C",
        "lstsq ms",
        "regression ms",
        "CKA ms",
        "ratio",
        "L1 channels",
        "fit bytes",
    ]
    print(table(rows, header))
    cka_bytes = {}
    for layers in (5, 10, 20):
        names = [f"layer{i}" for i in range(layers)]
        summary = cka_matrix_pb("cka", np.full((layers, layers), 0.5), names, names)
        payload = len(summary.value[0].tensor.string_val[0])
        cka_bytes[f"{layers}x{layers}"] = {
            "bytes_per_step_without_metadata": payload,
            "bytes_first_step_with_metadata": summary.ByteSize(),
        }
    print("compare_cka storage:", cka_bytes)
    first_use = first_use_seconds()
    print("lasso walk, first call of a process:", first_use)
    info = machine()
    info["threads"] = args.threads
    write_json(
        "channel_regression.json",
        {
            "machine": info,
            "samples": args.samples,
            "repeats": repeats,
            "sizes": figures,
            "lasso_walk_first_call": first_use,
            "cka_matrix_storage": cka_bytes,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
