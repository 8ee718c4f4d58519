"""Exact conv operator spectra (deepscope.analysis.conv_operator) on a CIFAR ResNet-18 (CPU).

Every figure is a ratio of two things measured in the same run, one thread
(torch.set_num_threads(1); numpy's BLAS limited to one thread by threadpoolctl).

(a) Operator norm of all 20 convolutions (grid 16: min(16, n/s) frequencies per
    dim, the layers at the input sizes a 3x32x32 image gives them, recorded by
    forward pre-hooks with `conv_input_size`) vs today's im2col spectra of the
    same layers (`spectrum.layer_spectra`, every singular value of out x in*kh*kw).
    Target: <= 1x. Cold (Lanczos from random vectors), and warm: after the
    weights moved by WARM_MOVE, from the last measurement's vectors
    (`NormWarmStart`, what the Spectra measurer does).
(b) Full operator spectra of the 20 convolutions at those sizes
    (`conv_singular_values`) vs a numpy reference: the kernel's full 2-D FFT
    (np.fft.fft2, every frequency) of the same polyphase kernel, then
    np.linalg.svd(compute_uv=False) of each frequency matrix, complex128.
    Target: >= 10x faster. The two are also compared value by value.
(a') The floor of (a): our Lanczos stopped by an oracle the first time its largest
    Ritz value is within 1e-3 (and 1e-2) of the exact grid norm; no stopping rule
    can do better at that precision.
(b') The floor of (b): the decompositions alone, the half-spectrum matrices and
    their Grams prebuilt: svdvals; the cheaper Hermitian route MMᴴ + eigvalsh in
    torch (MKL) and in scipy (OpenBLAS cheevd); and the fastest of the three per
    layer, summed.
(c) operator norm / im2col sigma_max per layer: the ResNet-18 at its random
    initialisation, and a small CNN (the digits example's) trained for a few
    epochs on scikit-learn's 8x8 digits. Theory: between 1 and sqrt(kh*kw)
    (for stride 1).
(d) Circular vs zero padding on one trained layer at n = 8: the zero-padded
    operator's explicit matrix (the layer's own conv on every basis input),
    decomposed by numpy, against the circular operator norm.

    .venv/bin/python benchmarks/bench_conv_operator.py            # ~2-5 min on 2 busy cores
    .venv/bin/python benchmarks/bench_conv_operator.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402
from resnet import resnet18  # noqa: E402

from deepscope.analysis import conv_operator as co  # noqa: E402
from deepscope.analysis import spectrum as sp  # noqa: E402


def convs_with_sizes(model: torch.nn.Module, image: tuple[int, ...]):
    """[(name, conv, input spatial size)] recorded on one forward pass."""
    sizes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):

            def hook(mod, inputs, name=name):
                sizes[name] = co.conv_input_size(mod, inputs[0].shape)

            hooks.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        model.eval()(torch.zeros(1, *image))
    for h in hooks:
        h.remove()
    return [(n, m, sizes[n]) for n, m in model.named_modules() if n in sizes]


def timed(fn, repeats: int, sync=lambda: None) -> tuple[float, object]:
    """Median seconds of fn() over repeats after a warm-up; `sync` (e.g. waiting for the
    GPU) is called before each clock read, so work queued on a device is counted."""
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return median(times), out


def numpy_full_spectrum(weight: np.ndarray, n: tuple[int, int], stride: int) -> np.ndarray:
    """Reference: polyphase kernel, full 2-D FFT at n/s, SVD of every frequency matrix."""
    c_out, c_in, kh, kw = weight.shape
    s = stride
    w = np.pad(weight, ((0, 0), (0, 0), (0, (-kh) % s), (0, (-kw) % s)))
    qh, qw = w.shape[2] // s, w.shape[3] // s
    w = w.reshape(c_out, c_in, qh, s, qw, s).transpose(0, 1, 3, 5, 2, 4)
    w = w.reshape(c_out, c_in * s * s, qh, qw)
    N = (n[0] // s, n[1] // s)
    if qh > N[0] or qw > N[1]:  # taps wrapping around: sum them modulo N
        folded = np.zeros((c_out, c_in * s * s) + N)
        for i in range(qh):
            for j in range(qw):
                folded[:, :, i % N[0], j % N[1]] += w[:, :, i, j]
        w = folded
    spec = np.fft.fft2(w.astype(np.float64), s=N, axes=(2, 3))  # [o, i, N0, N1]
    mats = spec.transpose(2, 3, 0, 1).reshape(-1, c_out, c_in * s * s)
    return np.sort(np.linalg.svd(mats, compute_uv=False).ravel())[::-1]


def bench_norm_vs_im2col(convs, repeats: int, grid: int) -> dict:
    layers = [sp.module_weight(m) for _, m, _ in convs]

    def im2col():
        return sp.layer_spectra(layers)

    def operator_norms():
        return [
            co.conv_operator_norm(m.weight, n, stride=m.stride, groups=m.groups, grid=grid)
            for _, m, n in convs
        ]

    # alternate the two, repeat after repeat
    t_im, t_op = [], []
    spectra, norms = im2col(), operator_norms()
    for _ in range(repeats):
        t0 = time.perf_counter()
        spectra = im2col()
        t1 = time.perf_counter()
        norms = operator_norms()
        t2 = time.perf_counter()
        t_im.append(t1 - t0)
        t_op.append(t2 - t1)
    warm = warm_norms(convs, repeats, grid)
    per_layer = []
    for name, m, n in convs:
        t0 = time.perf_counter()
        co.conv_operator_norm(m.weight, n, stride=m.stride, groups=m.groups, grid=grid)
        t1 = time.perf_counter()
        sp.layer_spectra([sp.module_weight(m)])
        t2 = time.perf_counter()
        per_layer.append(
            {
                "layer": name,
                "weight": list(m.weight.shape),
                "input_size": list(n),
                "stride": list(m.stride),
                "grid": list(co._norm_grid(tuple(n), co._args(m.weight, m.stride, 1, 1), grid)),
                "operator_ms": round((t1 - t0) * 1e3, 2),
                "im2col_ms": round((t2 - t1) * 1e3, 2),
            }
        )
    return {
        "grid": grid,
        "repeats": repeats,
        "im2col_ms": round(median(t_im) * 1e3, 1),
        "operator_norm_ms": round(median(t_op) * 1e3, 1),
        "ratio_operator_over_im2col": round(median(t_op) / median(t_im), 3),
        "target_ratio": 1.0,
        "warm": {
            "weights_moved": WARM_MOVE,
            "operator_norm_ms": round(warm["seconds"] * 1e3, 1),
            "ratio_operator_over_im2col": round(warm["seconds"] / median(t_im), 3),
            "largest_norm_difference_vs_cold": warm["difference"],
        },
        "per_layer_once": per_layer,
        "_norms": norms,
        "_spectra": spectra,
    }


# How far the weights move between two measurements in the warm-start figure:
# ||dW||/||W|| = 1.4%, a random walk of 200 steps (the default spectra cadence) at
# the 1e-3 rule-of-thumb update ratio.
WARM_MOVE = 0.014


def warm_norms(convs, repeats: int, grid: int) -> dict:
    """Operator norms of weights moved by WARM_MOVE, each conv's Lanczos started from
    its vectors of the unmoved weights (what the Spectra measurer does between two
    measurements): median seconds over repeats, and the largest relative
    difference from a cold computation of the same moved weights."""
    gen = torch.Generator().manual_seed(1)
    times, worst = [], 0.0
    for _ in range(repeats):
        starts, moved = [], []
        for _, m, n in convs:
            w = m.weight.detach()
            start = co.NormWarmStart()
            co.conv_operator_norm(
                w, n, stride=m.stride, groups=m.groups, grid=grid, warm_start=start
            )
            noise = torch.randn(w.shape, generator=gen)
            moved.append(w + WARM_MOVE * w.norm() / noise.norm() * noise)
            starts.append(start)
        t0 = time.perf_counter()
        norms = [
            co.conv_operator_norm(w, n, stride=m.stride, groups=m.groups, grid=grid, warm_start=s)
            for (_, m, n), w, s in zip(convs, moved, starts)
        ]
        times.append(time.perf_counter() - t0)
        for (_, m, n), w, x in zip(convs, moved, norms):
            cold = co.conv_operator_norm(w, n, stride=m.stride, groups=m.groups, grid=grid)
            worst = max(worst, abs(x - cold) / cold)
    return {"seconds": median(times), "difference": float(f"{worst:.3g}")}


def bench_full_vs_numpy(convs, repeats: int) -> dict:
    weights = [(m.weight.detach(), n, m.stride[0]) for _, m, n in convs]
    np_weights = [(w.double().numpy(), n, s) for w, n, s in weights]

    def ours():
        return [co.conv_singular_values(w, n, stride=s) for w, n, s in weights]

    def reference():
        return [numpy_full_spectrum(w, n, s) for w, n, s in np_weights]

    t_ours, got = timed(ours, repeats)
    t_ref, ref = timed(reference, max(1, repeats // 2))
    worst = 0.0
    for g, r in zip(got, ref):
        g = g.double().numpy()
        assert g.shape == r.shape, (g.shape, r.shape)
        worst = max(worst, float(np.max(np.abs(g - r)) / r[0]))
    return {
        "singular_values": int(sum(g.numel() for g in got)),
        "ours_s": round(t_ours, 3),
        "numpy_reference_s": round(t_ref, 3),
        "speedup": round(t_ref / t_ours, 2),
        "target_speedup": 10.0,
        "max_abs_difference_over_sigma_max": float(f"{worst:.3g}"),
    }


@contextlib.contextmanager
def oracle_stop(target: float):
    """Lanczos (`co._lanczos_top`) ends as soon as its largest Ritz value reaches `target`.

    A perfect stopping rule: it knows the answer. Implemented by wrapping the
    tridiagonal eigensolver Lanczos calls each step (torch.linalg.eigh), restored after.
    """

    class Reached(Exception):
        pass

    eigh = torch.linalg.eigh

    def watched(t):
        theta, y = eigh(t)
        if math.sqrt(max(float(theta[:, -1].max()), 0.0)) >= target:
            raise Reached
        return theta, y

    torch.linalg.eigh = watched
    try:
        yield
    except Reached:
        pass
    finally:
        torch.linalg.eigh = eigh


def norm_floor(convs, repeats: int, grid: int, tolerances=(1e-3, 1e-2)) -> dict:
    """What the cold operator norms would cost were Lanczos stopped by an oracle.

    Per conv, the exact grid norm (dense), then our Lanczos from the same random start
    ended at the first step whose largest Ritz value is within `tol` of it (pruning as
    usual): no stopping rule can stop earlier at that precision. Summed over the 20
    convs, median over repeats, against im2col spectra timed alternately.
    """
    exact = [
        co.conv_operator_norm(m.weight, n, stride=m.stride, grid=grid, method="dense")
        for _, m, n in convs
    ]
    layers = [sp.module_weight(m) for _, m, _ in convs]
    t_im: list[float] = []
    t_tol: dict[float, list[float]] = {tol: [] for tol in tolerances}
    for _ in range(repeats):
        t0 = time.perf_counter()
        sp.layer_spectra(layers)
        t_im.append(time.perf_counter() - t0)
        for tol in tolerances:
            total = 0.0
            for (_, m, n), x in zip(convs, exact):
                t0 = time.perf_counter()
                with oracle_stop(x * (1 - tol)):
                    co.conv_operator_norm(m.weight, n, stride=m.stride, grid=grid, rtol=1e-9)
                total += time.perf_counter() - t0
            t_tol[tol].append(total)
    im = median(t_im)
    return {
        "im2col_ms": round(im * 1e3, 1),
        "oracle_stop": {
            f"within {tol:g}": {
                "operator_norm_ms": round(median(t) * 1e3, 1),
                "ratio_operator_over_im2col": round(median(t) / im, 3),
            }
            for tol, t in t_tol.items()
        },
    }


def full_floor(convs, repeats: int) -> dict:
    """The decompositions alone in the full spectra (b): the half-spectrum matrices built
    beforehand, then torch.linalg.svdvals of each layer's (what conv_singular_values
    runs), and the Hermitian alternative (MMᴴ on the smaller side, then eigvalsh: about
    half the work, its small values only to ~√eps·σ_max), in torch (MKL) and in scipy's
    LAPACK (OpenBLAS `cheevd`, one matrix a call); and, per layer, the fastest of the
    three summed. The reference's time over these is the most any half-spectrum LAPACK
    route could gain."""
    from scipy.linalg import lapack

    matrices = []
    for _, m, n in convs:
        a = co._args(m.weight, m.stride, m.groups, m.dilation)
        grid = tuple(ni // si for ni, si in zip(n, a.stride))
        spec, _, _ = co._symbol(m.weight.detach(), a, grid, torch.float32)
        matrices.append(spec.reshape((-1,) + tuple(spec.shape[-2:])))
    grams = [x @ x.mH if x.shape[-2] <= x.shape[-1] else x.mH @ x for x in matrices]
    grams_np = [np.ascontiguousarray(g.numpy()) for g in grams]

    routes = {
        "svdvals": [lambda x=x: torch.linalg.svdvals(x) for x in matrices],
        "gram_eigvalsh": [lambda g=g: torch.linalg.eigvalsh(g) for g in grams],
        "gram_openblas_cheevd": [
            lambda g=g: [lapack.cheevd(gi, compute_v=0) for gi in g] for g in grams_np
        ],
    }
    per_layer = {name: [timed(fn, repeats)[0] for fn in fns] for name, fns in routes.items()}
    best = [min(times) for times in zip(*per_layer.values())]
    seconds = {f"{name}_s": round(sum(times), 3) for name, times in per_layer.items()}
    return {**seconds, "fastest_per_layer_s": round(sum(best), 3)}


class DigitsCNN(torch.nn.Module):
    """The digits example's network (two 3x3 convs, padding 1, on 1x8x8)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = torch.nn.Linear(32 * 4 * 4, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        h = torch.nn.functional.max_pool2d(h, 2)
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


def train_digits(epochs: int) -> tuple[torch.nn.Module, float]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    return model, accuracy


def norm_ratios(convs, exact: bool) -> list[dict]:
    rows = []
    for name, m, n in convs:
        w = m.weight.detach()
        im2col = float(sp.singular_values(w, groups=m.groups, layer_kind="Conv2d").max())
        if exact:
            op = float(co.conv_singular_values(w, n, stride=m.stride, groups=m.groups, top_k=1))
        else:
            op = co.conv_operator_norm(w, n, stride=m.stride, groups=m.groups)
        rows.append(
            {
                "layer": name,
                "weight": list(w.shape),
                "input_size": list(n),
                "im2col_sigma_max": round(im2col, 5),
                "operator_norm": round(op, 5),
                "ratio": round(op / im2col, 3),
                "sqrt_kernel_taps": round(math.sqrt(math.prod(w.shape[2:])), 3),
            }
        )
    return rows


def zero_vs_circular(conv: torch.nn.Conv2d, n: int) -> dict:
    conv = conv.double()
    c_in = conv.in_channels
    size = c_in * n * n
    with torch.no_grad():
        basis = torch.eye(size, dtype=torch.float64).reshape(size, c_in, n, n)
        cols = torch.nn.functional.conv2d(
            basis, conv.weight, stride=conv.stride, padding=conv.padding
        )
    zero = float(np.linalg.svd(cols.reshape(size, -1).numpy().T, compute_uv=False)[0])
    circular = float(co.conv_singular_values(conv.weight, n, stride=conv.stride, top_k=1))
    return {
        "layer_weight": list(conv.weight.shape),
        "n": n,
        "padding": list(conv.padding),
        "zero_padding_norm": round(zero, 4),
        "circular_norm": round(circular, 4),
        "ratio_zero_over_circular": round(zero / circular, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.epochs = 1, 1
    torch.set_num_threads(1)
    figures: dict = {
        "benchmark": "conv_operator",
        "machine": machine(),
        "torch": torch.__version__,
        "threads": 1,
        "quick": args.quick,
    }
    with threadpool_limits(limits=1):
        torch.manual_seed(0)
        model = resnet18()
        convs = convs_with_sizes(model, (3, 32, 32))
        assert len(convs) == 20, len(convs)

        print("(a) operator norm (grid 16) vs im2col spectra, 20 convs ...", flush=True)
        a = bench_norm_vs_im2col(convs, args.repeats, 16)
        norms, spectra = a.pop("_norms"), a.pop("_spectra")
        figures["norm_vs_im2col"] = a
        print(
            f"    im2col {a['im2col_ms']} ms, operator norms {a['operator_norm_ms']} ms: "
            f"{a['ratio_operator_over_im2col']}x (target <= 1x); warm-started after the "
            f"weights moved {WARM_MOVE:.1%}: {a['warm']['operator_norm_ms']} ms, "
            f"{a['warm']['ratio_operator_over_im2col']}x"
        )

        print("(b) full spectra vs numpy FFT+SVD reference ...", flush=True)
        b = bench_full_vs_numpy(convs, max(1, args.repeats // 2))
        figures["full_vs_numpy"] = b
        print(
            f"    ours {b['ours_s']} s, numpy {b['numpy_reference_s']} s: {b['speedup']}x faster "
            f"(target >= 10x); max |diff|/sigma_max {b['max_abs_difference_over_sigma_max']}"
        )

        print("(a') the floor of (a): Lanczos stopped by an oracle ...", flush=True)
        floor = norm_floor(convs, max(1, args.repeats // 2), 16)
        figures["norm_floor"] = floor
        print(f"    {floor}")
        print("(b') the floor of (b): the decompositions alone ...", flush=True)
        ff = full_floor(convs, max(1, args.repeats // 2))
        ff["numpy_reference_over_svdvals"] = round(b["numpy_reference_s"] / ff["svdvals_s"], 2)
        for key in [k for k in ff if k.endswith("_s") and k != "svdvals_s"]:
            ff[f"numpy_reference_over_{key[:-2]}"] = round(b["numpy_reference_s"] / ff[key], 2)
        figures["full_floor"] = ff
        print(f"    {ff}")

        print("(c) operator norm / im2col sigma_max ...", flush=True)
        random_rows = norm_ratios(convs, exact=False)
        digits, accuracy = train_digits(args.epochs)
        trained = convs_with_sizes(digits, (1, 8, 8))
        trained_rows = norm_ratios(trained, exact=True)
        untrained = convs_with_sizes(DigitsCNN(), (1, 8, 8))
        figures["norm_ratios"] = {
            "resnet18_random": random_rows,
            "digits_cnn_trained": {
                "epochs": args.epochs,
                "train_accuracy": round(accuracy, 4),
                "layers": trained_rows,
            },
            "digits_cnn_random": norm_ratios(untrained, exact=True),
        }
        ratios = [r["ratio"] for r in random_rows]
        print(
            table(
                [[r["layer"], r["weight"], r["input_size"], r["ratio"]] for r in random_rows],
                ["ResNet-18 (random init)", "weight", "n", "op/im2col"],
            )
        )
        print(f"    random: {min(ratios)}-{max(ratios)}x; trained digits CNN:", end=" ")
        print(", ".join(f"{r['layer']} {r['ratio']}x" for r in trained_rows))

        print("(d) zero vs circular padding ...", flush=True)
        d = zero_vs_circular(digits.conv2, 8)
        figures["zero_vs_circular_padding"] = d
        print(
            f"    trained digits conv2 at n=8: zero-padded {d['zero_padding_norm']}, "
            f"circular {d['circular_norm']} ({d['ratio_zero_over_circular']}x)"
        )
        # sanity: the norms in (a) are the ones in (c)
        assert all(abs(x - r["operator_norm"]) < 1e-4 * x for x, r in zip(norms, random_rows))
        del spectra
    path = write_json("conv_operator.json", figures, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
