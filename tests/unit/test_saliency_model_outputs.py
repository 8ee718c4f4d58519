"""Saliency reads class scores from every output form a model may return.

The rule (`target_scores.score_tensor`): a tensor; an object's `.logits` (a
Hugging Face `ModelOutput`); a dict's "logits", else its only tensor; the first
tensor of a tuple or list. Checked on a linear model against its weights, and
on a real `transformers` ViT (built from a small config, nothing downloaded)
with every method against plain autograd and against the same model wrapped
to return its logits tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from deepscope.analysis import saliency as sal
from tests.hf_models import tiny_vit

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ALL_METHODS = list(sal.METHODS)


class Wrapped(torch.nn.Module):
    """A linear model [N, 5] -> [N, 3] whose output is packed by `pack`."""

    def __init__(self, pack):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(5, 3).double()
        self.pack = pack

    def forward(self, x):
        return self.pack(self.fc(x))


@dataclass
class Output:
    """Like a Hugging Face ModelOutput: scores under `.logits`, other fields beside."""

    loss: torch.Tensor | None
    logits: torch.Tensor


@pytest.mark.parametrize(
    "pack",
    [
        lambda s: s,
        lambda s: Output(loss=None, logits=s),
        lambda s: {"hidden": s * 0 + 1, "logits": s},
        lambda s: {"scores": s, "note": "not a tensor"},
        lambda s: (s, s * 2),
        lambda s: [None, s, s * 2],
    ],
    ids=["tensor", "logits-attribute", "dict-logits", "dict-only-tensor", "tuple", "list"],
)
def test_every_output_form_gives_the_gradient_of_its_scores(pack):
    model = Wrapped(pack)
    x = torch.tensor(np.random.default_rng(0).normal(size=(4, 5)))
    weight = model.fc.weight.detach().numpy()
    bias = model.fc.bias.detach().numpy()
    predicted = np.argmax(x.numpy() @ weight.T + bias, axis=1)
    result = sal.attribute(model, x, method="gradient")
    np.testing.assert_array_equal(result.targets.numpy(), predicted)
    np.testing.assert_allclose(result.maps.numpy(), weight[predicted], rtol=1e-12)
    # Forward-only methods read the same scores.
    occluded = sal.saliency(model, x, method="occlusion", window=1, target=1)
    want = weight[1] * x.numpy()  # hiding x_i (setting it to 0) drops the score by w_i x_i
    np.testing.assert_allclose(occluded.numpy(), want, rtol=1e-10, atol=1e-12)


def test_a_sequence_of_scores_is_read_at_its_last_position():
    # [N, L, V]: the next-token prediction is position L - 1.
    class PerPosition(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.fc = torch.nn.Linear(4, 6).double()

        def forward(self, x):  # x [N, L, 4] -> [N, L, 6], position l sees x[:, : l + 1]
            return self.fc(x.cumsum(dim=1))

    model = PerPosition()
    x = torch.tensor(np.random.default_rng(1).normal(size=(2, 3, 4)))
    maps = sal.saliency(model, x, target=5)
    # score = w_5 · Σ_l x_l: every position gets w_5.
    want = np.broadcast_to(model.fc.weight.detach().numpy()[5], (2, 3, 4))
    np.testing.assert_allclose(maps.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize(
    "pack,words",
    [
        (lambda s: {"a": s, "b": s}, r"keys \['a', 'b'\]: 2 of them hold tensors"),
        (lambda s: {"a": "text"}, r"keys \['a'\]: none of them"),
        (lambda s: ("text", None), "tuple of 2 items, none a tensor"),
        (lambda s: "text", "returned a str"),
    ],
)
def test_outputs_without_a_clear_score_tensor_are_refused_with_the_rule(pack, words):
    with pytest.raises(TypeError, match=words):
        sal.saliency(Wrapped(pack), torch.zeros(2, 5, dtype=torch.float64))


# ---------------------------------------------------------------- a Hugging Face ViT


def _vit(hidden_act: str = "relu"):
    # "relu": nn.ReLU modules, so guided backprop can run too
    return tiny_vit(activation=hidden_act).eval()


class LogitsOnly(torch.nn.Module):
    """The old workaround: a module whose forward returns the logits tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


@pytest.fixture(scope="module")
def vit():
    model = _vit()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return model, x


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_runs_on_a_hugging_face_vit(vit, method):
    model, x = vit
    options = {
        "smoothgrad": {"n_samples": 4},
        "integrated_gradients": {"n_steps": 8},
        "occlusion": {"window": 8},
    }.get(method, {})
    result = sal.attribute(model, x, method=method, **options)
    assert result.maps.shape == x.shape and torch.isfinite(result.maps).all()
    assert result.maps.abs().max() > 0
    want = sal.attribute(LogitsOnly(model), x, method=method, **options)
    np.testing.assert_array_equal(result.targets.numpy(), want.targets.numpy())
    scale = float(want.maps.abs().max())
    atol = 64 * torch.finfo(torch.float32).eps * scale  # the same computation, run twice
    torch.testing.assert_close(result.maps, want.maps, rtol=0, atol=atol)


def test_vit_gradient_equals_plain_autograd_of_its_logits(vit):
    model, x = vit
    target = torch.tensor([2, 0])
    point = x.clone().requires_grad_(True)
    logits = model(pixel_values=point).logits
    (want,) = torch.autograd.grad(logits[torch.arange(2), target].sum(), point)
    got = sal.saliency(model, x, target=target, method="gradient")
    atol = 64 * torch.finfo(torch.float32).eps * float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=atol)


def test_vit_integrated_gradients_are_complete(vit):
    model, x = vit
    result = sal.attribute(model, x, method="integrated_gradients", n_steps=64)
    with torch.no_grad():
        gain = model(x).logits - model(torch.zeros_like(x)).logits
    gain = gain[torch.arange(2), result.targets]
    total = result.maps.reshape(2, -1).double().sum(dim=1)
    assert torch.all((total - gain.double()).abs() <= 0.02 * gain.abs() + 1e-4)


def test_guided_backprop_on_a_gelu_vit_is_a_clear_refusal():
    model = _vit("gelu")
    with pytest.raises(ValueError, match="no nn.ReLU module"):
        sal.saliency(model, torch.rand(1, 3, 32, 32), method="guided_backprop")
