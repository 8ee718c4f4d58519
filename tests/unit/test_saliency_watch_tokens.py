"""The saliency watcher on text models (token probes) and on torch.compile'd models."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import deepscope
from deepscope import metadata
from deepscope.analysis import saliency as sal
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from tests.hf_models import tiny_gpt2

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB, LENGTH = 30, 5


def started(measurer, model, writer):
    """`measurer` attached to `model` and `writer` as watch() attaches it (no optimizer needed)."""
    measurer.start(model, None, writer)
    return measurer


IDS = torch.tensor([[1, 4, 9, 16, 25], [2, 3, 5, 7, 11]])
TEXTS = [["a", "b", "c", "d", "e"], ["f", "g", "h", "i", "j"]]


def _steps(read_values, logdir, tag):
    written = read_values(logdir, tag)
    info = metadata.parse_plugin_data(written[0].value.metadata.plugin_data.content).saliency
    return info, [pb.SaliencyStep.FromString(w.value.tensor.string_val[0]) for w in written]


def _reference_gradient_norm(model, ids, target=None):
    """‖∂ logit_last[target] / ∂ embeddings‖ per token, through inputs_embeds."""
    model = model.eval()
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits[:, -1]
    target = logits.argmax(dim=1) if target is None else target
    (grad,) = torch.autograd.grad(logits[torch.arange(len(ids)), target].sum(), embeds)
    return grad.norm(dim=-1).numpy(), target


def test_watcher_logs_per_token_maps_with_ids_and_texts(tmp_path, read_values):
    model = tiny_gpt2(vocab=VOCAB)
    writer = deepscope.SummaryWriter(str(tmp_path))
    watcher = started(
        deepscope.Saliency(
            probe=IDS,
            methods=["gradient", "integrated_gradients"],
            embeddings="transformer.wte",
            tokens=TEXTS,
            method_options={"integrated_gradients": {"n_steps": 16}},
        ),
        model,
        writer,
    )
    assert model.training  # the check at construction restored the mode
    watcher.measure(0)
    writer.close()
    info, (step,) = _steps(read_values, tmp_path, "saliency/gradient")
    assert info.input_kind == "tokens" and list(info.input_shape) == [LENGTH]
    assert info.token_reduction == "L2 norm over the embedding dim"
    assert step.inputs.dtype == pb.INT64
    assert arrays.decode_array(step.inputs).tolist() == IDS.tolist()
    assert list(step.token_texts) == [t for row in TEXTS for t in row]
    want, target = _reference_gradient_norm(model, IDS)
    got = arrays.decode_array(step.maps)
    np.testing.assert_allclose(got, want, rtol=2**-10, atol=2**-10 * np.abs(want).max())
    assert arrays.decode_array(step.predictions).tolist() == target.tolist()
    info, (step,) = _steps(read_values, tmp_path, "saliency/integrated_gradients")
    assert info.token_reduction == "sum over the embedding dim"
    assert arrays.decode_array(step.completeness_error).shape == (2,)


def test_token_probe_is_checked_when_watching():
    model = tiny_gpt2(vocab=VOCAB)
    with pytest.raises(TypeError, match="token ids"):
        started(deepscope.Saliency(probe=IDS.float(), embeddings="transformer.wte"), model, None)
    with pytest.raises(ValueError, match="no module named 'wte'"):
        started(deepscope.Saliency(probe=IDS, embeddings="wte"), model, None)
    with pytest.raises(ValueError, match="2 lists of 5 strings"):
        started(
            deepscope.Saliency(probe=IDS, embeddings="transformer.wte", tokens=[["a"] * 5]),
            model,
            None,
        )
    with pytest.raises(ValueError, match="give embeddings= too"):
        started(deepscope.Saliency(probe=IDS.float(), tokens=TEXTS), model, None)
    with pytest.raises(ValueError, match="saliency probe .*out of range for a model with 30"):
        started(
            deepscope.Saliency(probe=(IDS, torch.tensor([3, 30])), embeddings="transformer.wte"),
            model,
            None,
        )
    model.unused = torch.nn.Embedding(VOCAB, 32)  # a submodule the forward never calls
    with pytest.raises(ValueError, match="saliency probe .*embedding module ran 0 times"):
        started(deepscope.Saliency(probe=IDS, embeddings="unused"), model, None)


# ---------------------------------------------------------------- torch.compile


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(4 * 36, 3)

    def forward(self, x):
        return self.head(self.relu(self.conv(x)).flatten(1))


X = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("method", list(sal.METHODS))
def test_saliency_of_a_compiled_model_equals_the_eager_one(method):
    model = Net()
    compiled = torch.compile(model, backend="eager")
    want = sal.saliency(model, X, method=method)
    got = sal.saliency(compiled, X, method=method)
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, rtol=0, atol=16 * torch.finfo(torch.float32).eps * scale)


def test_watcher_on_a_compiled_model_measures_every_method(tmp_path, read_values):
    model = Net()
    compiled = torch.compile(model, backend="eager")
    writer = deepscope.SummaryWriter(str(tmp_path))
    watcher = started(deepscope.Saliency(probe=X, methods=list(sal.METHODS)), compiled, writer)
    watcher.measure(0)
    writer.close()
    for method in sal.METHODS:
        _, (step,) = _steps(read_values, tmp_path, f"saliency/{method}")
        want = sal.saliency(model, X, method=method).numpy()
        got = arrays.decode_array(step.maps)
        np.testing.assert_allclose(got, want, rtol=2**-10, atol=2**-10 * np.abs(want).max())


def test_watcher_on_a_compiled_text_model_takes_the_user_name(tmp_path, read_values):
    model = tiny_gpt2(vocab=VOCAB)
    compiled = torch.compile(model, backend="eager")
    writer = deepscope.SummaryWriter(str(tmp_path))
    for name in ("transformer.wte", "_orig_mod.transformer.wte"):
        watcher = started(deepscope.Saliency(probe=IDS, embeddings=name), compiled, writer)
        assert watcher.embeddings is model.transformer.wte
    watcher.measure(0)
    writer.close()
    _, (step,) = _steps(read_values, tmp_path, "saliency/gradient")
    want, _ = _reference_gradient_norm(model, IDS)
    got = arrays.decode_array(step.maps)
    np.testing.assert_allclose(got, want, rtol=2**-10, atol=2**-10 * np.abs(want).max())
