"""Saliency of text models over their input embeddings, against brute force.

Small GPT-2 and BERT models from `transformers` configs (nothing downloaded).
References are computed here by hand through the models' `inputs_embeds`
argument — the embedding output fed directly, a different code path from the
forward hook deepscope uses — with plain `torch.autograd.grad`.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deepscope.analysis import saliency as sal
from deepscope.analysis.saliency.token_embeddings import TOKEN_REDUCTIONS
from tests.hf_models import tiny_bert_classifier, tiny_gpt2

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB, LENGTH = 40, 7
EPS32 = torch.finfo(torch.float32).eps


def _gpt2(activation: str = "gelu_new"):
    return tiny_gpt2(vocab=VOCAB, positions=16, activation=activation).eval()


@pytest.fixture(scope="module")
def gpt2():
    return _gpt2()


@pytest.fixture(scope="module")
def bert():
    return tiny_bert_classifier(seed=1, vocab=VOCAB).eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(1, VOCAB, (3, LENGTH), generator=torch.Generator().manual_seed(2))


def _score(model, embeds, target):
    """The target score per sample from embeddings fed as `inputs_embeds` [N, L, D]."""
    logits = model(inputs_embeds=embeds).logits
    if logits.ndim == 3:  # causal LM: the next-token prediction at the last position
        logits = logits[:, -1]
    return logits[torch.arange(len(embeds)), target]


def _embedding_gradient(model, embeds, target):
    point = embeds.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_score(model, point, target).sum(), point)
    return grad


def _close(got, want, factor=256):
    """Equal up to float32 rounding of a deep network: `factor` ulps of the largest value."""
    atol = factor * EPS32 * float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("which", ["gpt2", "bert"])
def test_gradient_is_the_gradient_at_inputs_embeds_reduced_by_its_norm(which, gpt2, bert, ids):
    model = gpt2 if which == "gpt2" else bert
    embeds = model.get_input_embeddings()(ids).detach()
    with torch.no_grad():
        logits = model(inputs_embeds=embeds).logits
    predicted = (logits[:, -1] if logits.ndim == 3 else logits).argmax(dim=1)
    result = sal.attribute(model, ids, method="gradient", embeddings=model.get_input_embeddings())
    np.testing.assert_array_equal(result.targets.numpy(), predicted.numpy())
    grad = _embedding_gradient(model, embeds, predicted)
    _close(result.embedding_maps, grad)
    _close(result.maps, grad.norm(dim=-1))
    assert result.maps.shape == ids.shape and result.input_kind == "tokens"
    assert result.token_reduction == "L2 norm over the embedding dim"
    times = sal.attribute(
        model,
        ids,
        method="gradient_x_input",
        embeddings="bert.embeddings.word_embeddings" if which == "bert" else "transformer.wte",
    )
    _close(times.maps, (grad * embeds).sum(dim=-1))
    assert times.token_reduction == "sum over the embedding dim"


def test_a_given_next_token_is_the_target(gpt2, ids):
    embeds = gpt2.get_input_embeddings()(ids).detach()
    target = torch.tensor([5, 9, 5])
    maps = sal.saliency(gpt2, ids, target=target, embeddings=gpt2.get_input_embeddings())
    _close(maps, _embedding_gradient(gpt2, embeds, target).norm(dim=-1))
    with pytest.raises(ValueError, match=f"out of range for a model with {VOCAB} outputs"):
        sal.saliency(gpt2, ids, target=VOCAB, embeddings=gpt2.get_input_embeddings())


@pytest.mark.parametrize("which", ["gpt2", "bert"])
@pytest.mark.parametrize("baseline_token", [None, 3])
def test_integrated_gradients_are_complete_over_tokens(which, baseline_token, gpt2, bert, ids):
    model = gpt2 if which == "gpt2" else bert
    embedding = model.get_input_embeddings()
    result = sal.attribute(
        model,
        ids,
        method="integrated_gradients",
        embeddings=embedding,
        n_steps=64,
        baseline_token=baseline_token,
    )
    embeds = embedding(ids).detach()
    if baseline_token is None:
        base = torch.zeros_like(embeds)
    else:
        base = embedding(torch.full_like(ids, baseline_token)).detach()
    with torch.no_grad():
        gain = _score(model, embeds, result.targets) - _score(model, base, result.targets)
    total = result.maps.double().sum(dim=1)  # Σ over tokens of the sums over dims
    assert torch.all((total - gain.double()).abs() <= 0.01 * gain.abs() + 1e-4), (total, gain)
    torch.testing.assert_close(
        result.completeness_error.double(), total - gain.double(), rtol=0, atol=1e-4
    )
    # The integral itself, by a 65-point trapezoid rule on inputs_embeds.
    alphas = torch.linspace(0, 1, 65)
    integral = torch.zeros_like(embeds)
    for k, alpha in enumerate(alphas):
        weight = (0.5 if k in (0, 64) else 1.0) / 64
        integral += weight * _embedding_gradient(
            model, base + alpha * (embeds - base), result.targets
        )
    want = ((embeds - base) * integral).sum(dim=-1)
    torch.testing.assert_close(result.maps, want, rtol=0, atol=0.02 * float(want.abs().max()))


def test_occlusion_hides_one_token_at_a_time(bert, ids):
    embedding = bert.get_input_embeddings()
    result = sal.attribute(bert, ids, method="occlusion", embeddings=embedding)
    embeds = embedding(ids).detach()
    with torch.no_grad():
        clean = _score(bert, embeds, result.targets)
        want = torch.zeros(ids.shape)
        for position in range(LENGTH):
            hidden = embeds.clone()
            hidden[:, position] = 0
            want[:, position] = clean - _score(bert, hidden, result.targets)
    _close(result.maps, want)
    # Two tokens per window, stride 1, and a baseline token's embedding as the fill.
    result = sal.attribute(
        bert, ids, method="occlusion", embeddings=embedding, window=2, stride=1, baseline_token=4
    )
    fill = embedding(torch.full_like(ids, 4)).detach()
    with torch.no_grad():
        drops = []
        for start in range(LENGTH - 1):
            hidden = embeds.clone()
            hidden[:, start : start + 2] = fill[:, start : start + 2]
            drops.append(clean - _score(bert, hidden, result.targets))
    want = torch.zeros(ids.shape)
    for position in range(LENGTH):
        covering = [drops[s] for s in (position - 1, position) if 0 <= s < LENGTH - 1]
        want[:, position] = sum(covering) / len(covering)
    _close(result.maps, want)


def test_baseline_delta_subtracts_the_gradient_at_zero_embeddings(gpt2, ids):
    embedding = gpt2.get_input_embeddings()
    result = sal.attribute(gpt2, ids, method="baseline_delta", embeddings=embedding)
    embeds = embedding(ids).detach()
    at_x = _embedding_gradient(gpt2, embeds, result.targets)
    at_zero = _embedding_gradient(gpt2, torch.zeros_like(embeds), result.targets)
    _close(result.maps, (at_x - at_zero).norm(dim=-1))
    _close(result.baseline_maps, at_zero.norm(dim=-1))
    assert result.baseline is None  # the baseline lives in embedding space


class HalfSquare(torch.nn.Module):
    """f = ½ Σ e² over the embeddings: ∇f = e, so a noisy gradient shows the noise itself."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.embed = torch.nn.Embedding(VOCAB, 64)
        with torch.no_grad():
            self.embed.weight.mul_(3.0).add_(5.0)  # std 3, far from range-based noise

    def forward(self, ids):
        return 0.5 * (self.embed(ids) ** 2).sum(dim=(1, 2))


def test_smoothgrad_noise_is_relative_to_the_embeddings_std():
    model = HalfSquare()
    ids = torch.randint(0, VOCAB, (2, 200), generator=torch.Generator().manual_seed(4))
    result = sal.attribute(
        model, ids, method="smoothgrad", embeddings=model.embed, n_samples=1, noise_level=0.1
    )
    embeds = model.embed(ids).detach()
    noise = (result.embedding_maps - embeds).reshape(2, -1)
    want = 0.1 * embeds.reshape(2, -1).std(dim=1)
    torch.testing.assert_close(noise.std(dim=1), want, rtol=0.03, atol=0)
    assert result.options["noise_relative_to"] == "std"


def test_guided_backprop_runs_through_relu_modules_and_refuses_gelu(ids, bert):
    relu_gpt2 = _gpt2("relu")
    embedding = relu_gpt2.get_input_embeddings()
    guided = sal.attribute(relu_gpt2, ids, method="guided_backprop", embeddings=embedding)
    plain = sal.attribute(relu_gpt2, ids, method="gradient", embeddings=embedding)
    assert guided.options["relu_calls"] == 2  # one nn.ReLU per block
    assert not torch.allclose(guided.maps, plain.maps)
    with pytest.raises(ValueError, match="no nn.ReLU module"):
        sal.saliency(bert, ids, method="guided_backprop", embeddings=bert.get_input_embeddings())


def test_every_method_reduces_by_its_documented_rule(gpt2, ids):
    embedding = gpt2.get_input_embeddings()
    options = {"smoothgrad": {"n_samples": 3}, "integrated_gradients": {"n_steps": 8}}
    relu = _gpt2("relu")
    for method, rule in TOKEN_REDUCTIONS.items():
        model = relu if method == "guided_backprop" else gpt2
        result = sal.attribute(
            model,
            ids,
            method=method,
            embeddings=model.get_input_embeddings(),
            **options.get(method, {}),
        )
        assert result.maps.shape == ids.shape, method
        raw = result.embedding_maps
        want = {"l2": raw.norm(dim=-1), "sum": raw.sum(dim=-1), "mean": raw.mean(dim=-1)}[rule]
        _close(result.maps, want, factor=16)
        if rule == "l2":
            assert torch.all(result.maps >= 0)
    assert embedding._forward_hooks == {}  # every substitution hook removed


def test_token_input_errors(gpt2, ids):
    embedding = gpt2.get_input_embeddings()
    with pytest.raises(TypeError, match="token ids"):
        sal.saliency(gpt2, ids.float(), embeddings=embedding)
    with pytest.raises(ValueError, match=r"ids\[None\]"):
        sal.saliency(gpt2, ids[0], embeddings=embedding)
    with pytest.raises(ValueError, match="not a submodule of the model"):
        sal.saliency(gpt2, ids, embeddings=torch.nn.Embedding(VOCAB, 32))
    with pytest.raises(ValueError, match="no module named 'wte'.*transformer.wte"):
        sal.saliency(gpt2, ids, embeddings="wte")
    with pytest.raises(ValueError, match="baseline_token applies to"):
        sal.saliency(gpt2, ids, embeddings=embedding, baseline_token=0)
    with pytest.raises(TypeError, match="floating-point inputs.*embeddings="):
        sal.saliency(gpt2, ids)  # without embeddings=: refused with the way out


def test_a_padded_sequence_with_its_attention_mask_gets_the_unpadded_maps(bert):
    # Right-padded to 7 tokens; masked, the padding is not attended to: the real tokens'
    # maps are those of the unpadded sequence and the padding's gradient is zero.
    embedding = bert.get_input_embeddings()
    short = torch.tensor([[5, 9, 2, 7]])
    padded = torch.tensor([[5, 9, 2, 7, 0, 0, 0], [3, 4, 8, 1, 6, 2, 9]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1] * 7])
    target = torch.tensor([2, 1])
    result = sal.attribute(bert, padded, target=target, embeddings=embedding, attention_mask=mask)
    alone = sal.attribute(bert, short, target=target[:1], embeddings=embedding)
    _close(result.embedding_maps[0, :4], alone.embedding_maps[0])
    assert torch.all(result.embedding_maps[0, 4:].abs() <= 256 * EPS32 * alone.maps.max())
    # By hand, through inputs_embeds with the mask.
    point = embedding(padded).detach().requires_grad_(True)
    logits = bert(inputs_embeds=point, attention_mask=mask).logits
    (want,) = torch.autograd.grad(logits[torch.arange(2), target].sum(), point)
    _close(result.embedding_maps, want)
    # Without the mask the padding is attended to, and the maps differ.
    unmasked = sal.attribute(bert, padded, target=target, embeddings=embedding)
    assert (unmasked.maps[0, :4] - alone.maps[0]).abs().max() > 1e-3 * alone.maps.max()
    # Batched methods carry each row's mask: integrated gradients stay complete.
    ig = sal.attribute(
        bert,
        padded,
        target=target,
        embeddings=embedding,
        attention_mask=mask,
        method="integrated_gradients",
        n_steps=64,
        batch_size=5,
    )
    with torch.no_grad():
        embeds = embedding(padded)
        gain = (
            bert(inputs_embeds=embeds, attention_mask=mask).logits
            - bert(inputs_embeds=torch.zeros_like(embeds), attention_mask=mask).logits
        )[torch.arange(2), target]
    total = ig.maps.double().sum(dim=1)
    assert torch.all((total - gain.double()).abs() <= 0.01 * gain.abs() + 1e-4)
    # f(baseline) of each sample under its own mask.
    torch.testing.assert_close(
        ig.completeness_error.double(), total - gain.double(), rtol=0, atol=1e-4
    )
    with pytest.raises(ValueError, match="attention_mask of shape"):
        sal.saliency(bert, padded, embeddings=embedding, attention_mask=mask[:, :3])


def test_an_embedding_module_the_forward_never_calls_is_named_as_such(gpt2, ids):
    model = _gpt2()
    model.unused = torch.nn.Embedding(VOCAB, 32)
    with pytest.raises(ValueError, match="did not run in the model's forward pass"):
        sal.saliency(model, ids, embeddings=model.unused)
