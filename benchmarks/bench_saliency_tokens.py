"""Cost of token saliency (attributions over the input embeddings) against plain autograd (CPU).

Model: a GPT-2 from a transformers config (4 layers, width 256, 4 heads, vocabulary
1,000; nothing downloaded), a probe of 8 sequences of 64 tokens, eval mode, float32,
one torch thread by default. Target: the predicted next token.

Each method is timed against what any implementation must do, by hand through the
model's `inputs_embeds` (no hook):
  gradient, gradient_x_input: one forward + backward of the batch to the embeddings;
  integrated_gradients (n steps): n × 8 interpolated rows through forward + backward
    in the same batches.
The difference is deepscope's: the forward hook that substitutes the embeddings,
the extra pass that reads them, the reduction per token.

Noise control as in bench_saliency.py: configurations take turns call by call, the
order rotating each round; each figure is the median over rounds of the ratio of
the method's time to the reference's measured in the same round.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_saliency_tokens.py           # ~1-2 min
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_saliency_tokens.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median, table, write_json  # noqa: E402
from bench_saliency import ms, rounds_of  # noqa: E402

from deepscope.analysis import saliency as sal  # noqa: E402
from deepscope.analysis.saliency.integrated_gradients import path_points  # noqa: E402
from deepscope.analysis.saliency.target_scores import rows_per_pass  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def gpt2(vocab: int, width: int, layers: int, length: int) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=layers,
        n_embd=width,
        n_head=4,
        vocab_size=vocab,
        n_positions=length,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--n", type=int, default=32, help="integrated-gradients steps")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--heavy-rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/saliency_tokens.json)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.heavy_rounds, args.n = 3, 1, 8
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = gpt2(1000, 256, 4, args.length)
    embedding = model.get_input_embeddings()
    ids = torch.randint(0, 1000, (args.batch, args.length))
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(False)  # as saliency runs: no parameter gradients
    with torch.no_grad():
        embeds = embedding(ids)
        targets = model(ids).logits[:, -1].argmax(dim=1)

    def embeds_gradient(points, rows_targets):
        leaf = points.detach().requires_grad_(True)
        logits = model(inputs_embeds=leaf).logits[:, -1]
        score = logits.gather(1, rows_targets[:, None]).sum()
        return torch.autograd.grad(score, leaf)[0]

    alphas, _ = path_points(args.n)
    alphas = torch.as_tensor(alphas, dtype=embeds.dtype)
    per_pass = rows_per_pass(None, embeds.shape[1:])

    def ig_reference():
        rows = args.batch * len(alphas)
        for start in range(0, rows, per_pass):
            row = torch.arange(start, min(start + per_pass, rows))
            sample, step = row % args.batch, row // args.batch
            points = alphas[step][:, None, None] * embeds[sample]
            embeds_gradient(points, targets[sample])

    def token(method, **options):
        return lambda: sal.saliency(model, ids, method=method, embeddings=embedding, **options)

    results: dict = {}
    times = rounds_of(
        {
            "reference": lambda: embeds_gradient(embeds, targets),
            "gradient": token("gradient"),
            "gradient_x_input": token("gradient_x_input"),
        },
        args.rounds,
        warmup=1,
    )
    results["gradient"] = {
        "reference_ms": ms(times["reference"]),
        "methods": {
            m: {
                "ms": ms(times[m]),
                "ratio": round(median(a / b for a, b in zip(times[m], times["reference"])), 3),
            }
            for m in ("gradient", "gradient_x_input")
        },
    }
    times = rounds_of(
        {
            "reference": ig_reference,
            "integrated_gradients": token("integrated_gradients", n_steps=args.n),
        },
        args.heavy_rounds,
        warmup=1,
    )
    results["integrated_gradients"] = {
        "n_steps": args.n,
        "reference_ms": ms(times["reference"]),
        "ms": ms(times["integrated_gradients"]),
        "ratio": round(
            median(a / b for a, b in zip(times["integrated_gradients"], times["reference"])), 3
        ),
    }
    rows = [
        [m, fig["ms"], results["gradient"]["reference_ms"], fig["ratio"]]
        for m, fig in results["gradient"]["methods"].items()
    ]
    ig = results["integrated_gradients"]
    rows.append([f"integrated_gradients (n={args.n})", ig["ms"], ig["reference_ms"], ig["ratio"]])
    print(table(rows, ["method", "ms", "reference ms", "ratio"]))
    figures = {
        "machine": machine(),
        "model": f"GPT-2 4x256, vocab 1000, probe {args.batch}x{args.length} tokens",
        "threads": args.threads,
        **results,
    }
    path = write_json("saliency_tokens.json", figures, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
