"""Conv operator spectra on an accelerator: figures (a) and (b) of bench_conv_operator.py.

The same CIFAR ResNet-18 (20 convs, the input sizes a 3x32x32 image gives them), its
weights on `--device`:

(a) operator norms (grid 16, cold: a first measurement) vs the im2col spectra of the
    same layers, both on the device (`spectrum.layer_spectra`);
(b) full operator spectra (`conv_singular_values`) on the device vs the numpy
    reference of bench_conv_operator.py (FFT + SVD of every frequency, complex128,
    one CPU thread), compared value by value.

And, before any timing, the device's answers checked against the CPU's: every norm
within 1e-4 (relative) of the CPU's dense grid norm, every full spectrum within
1e-5·σ_max of numpy's. A failed check exits non-zero with the worst layer named.
Device times are taken between `torch.cuda.synchronize()` calls (`timed`), median of repeats.

    .venv/bin/python benchmarks/bench_conv_operator_gpu.py --device cuda   # ~1 min on a GPU
    .venv/bin/python benchmarks/bench_conv_operator_gpu.py --device cpu --quick  # smoke run
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_json  # noqa: E402
from bench_conv_operator import convs_with_sizes, numpy_full_spectrum, timed  # noqa: E402
from resnet import resnet18  # noqa: E402

from deepscope.analysis import conv_operator as co  # noqa: E402
from deepscope.analysis import spectrum as sp  # noqa: E402

NORM_RTOL_CHECK = 1e-4
SPECTRUM_ATOL_CHECK = 1e-5  # times σ_max: float32 on the device against complex128


def device_sync(device: torch.device):
    """What `timed` calls around each clock read: wait for the device's queued work."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def check_against_cpu(convs, device_convs) -> dict:
    """The device's norms and full spectra against the CPU's dense norms and numpy's."""
    worst_norm, worst_spectrum = (0.0, ""), (0.0, "")
    for (name, m, n), (_, md, _) in zip(convs, device_convs):
        exact = co.conv_operator_norm(m.weight, n, stride=m.stride, grid=16, method="dense")
        got = co.conv_operator_norm(md.weight, n, stride=md.stride, grid=16)
        worst_norm = max(worst_norm, (abs(got - exact) / exact, name))
        values = co.conv_singular_values(md.weight, n, stride=md.stride).double().cpu().numpy()
        ref = numpy_full_spectrum(m.weight.detach().double().numpy(), n, m.stride[0])
        worst_spectrum = max(worst_spectrum, (float(np.max(np.abs(values - ref)) / ref[0]), name))
    failed = []
    if worst_norm[0] > NORM_RTOL_CHECK:
        failed.append(f"norm of {worst_norm[1]} off by {worst_norm[0]:.2e} (relative)")
    if worst_spectrum[0] > SPECTRUM_ATOL_CHECK:
        failed.append(f"spectrum of {worst_spectrum[1]} off by {worst_spectrum[0]:.2e}·σ_max")
    return {
        "largest_norm_difference": float(f"{worst_norm[0]:.3g}"),
        "largest_spectrum_difference_over_sigma_max": float(f"{worst_spectrum[0]:.3g}"),
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = 1 if args.quick else args.repeats
    torch.manual_seed(0)
    model = resnet18()
    convs = convs_with_sizes(model, (3, 32, 32))
    on_device = copy.deepcopy(model).to(device)
    modules = dict(on_device.named_modules())
    device_convs = [(name, modules[name], n) for name, _, n in convs]
    figures: dict = {
        "benchmark": "conv_operator_gpu",
        "machine": machine(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "quick": args.quick,
    }
    print("checking the device's norms and spectra against the CPU's ...", flush=True)
    check = check_against_cpu(convs, device_convs)
    figures["check"] = check
    print(f"    {check}")
    if check["failed"]:
        write_json("conv_operator_gpu.json", figures, args.out)
        sys.exit("; ".join(check["failed"]))

    sync = device_sync(device)
    layers = [sp.module_weight(m) for _, m, _ in device_convs]
    t_im, _ = timed(lambda: sp.layer_spectra(layers), repeats, sync)
    t_op, _ = timed(
        lambda: [
            co.conv_operator_norm(m.weight, n, stride=m.stride, grid=16) for _, m, n in device_convs
        ],
        repeats,
        sync,
    )
    figures["norm_vs_im2col"] = {
        "grid": 16,
        "im2col_ms": round(t_im * 1e3, 1),
        "operator_norm_ms": round(t_op * 1e3, 1),
        "ratio_operator_over_im2col": round(t_op / t_im, 3),
        "target_ratio": 1.0,
    }
    print(f"(a) {figures['norm_vs_im2col']}", flush=True)

    t_ours, _ = timed(
        lambda: [co.conv_singular_values(m.weight, n, stride=m.stride) for _, m, n in device_convs],
        repeats,
        sync,
    )
    weights = [(m.weight.detach().double().numpy(), n, m.stride[0]) for _, m, n in convs]
    with threadpool_limits(limits=1):  # the reference: numpy on one CPU thread
        t0 = time.perf_counter()
        for w, n, s in weights:
            numpy_full_spectrum(w, n, s)
        t_ref = time.perf_counter() - t0
    figures["full_vs_numpy"] = {
        "ours_s": round(t_ours, 4),
        "numpy_reference_s_one_cpu_thread": round(t_ref, 3),
        "speedup": round(t_ref / t_ours, 2),
        "target_speedup": 10.0,
    }
    print(f"(b) {figures['full_vs_numpy']}", flush=True)
    path = write_json("conv_operator_gpu.json", figures, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
