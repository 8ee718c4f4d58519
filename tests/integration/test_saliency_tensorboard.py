"""Saliency through a real `tensorboard` process, with both loaders.

The log dir is written by deepscope.watch() during real training (tests/saliency_data.py);
the maps the routes serve are checked against gradients recomputed here with plain
torch.autograd from the parameters the model had at each logged step.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SmallCNN
from tests.route_helpers import LOADERS, decode, route
from tests.saliency_data import BROKEN_TAG, METHODS, PROBE, RGB_TAG, SALIENCY_EVERY, TRAIN_STEPS
from tests.tensorboard_process import get, wait_until

ROUTE = "/data/plugin/deepscope"
LOGGED = list(range(0, TRAIN_STEPS, SALIENCY_EVERY))


@pytest.fixture(scope="module", params=LOADERS)
def served(request, saliency_logdir, tensorboard_server):
    import torch

    base = tensorboard_server(saliency_logdir, load_fast=request.param)

    def all_read():
        status, body = get(f"{base}{ROUTE}/saliency_steps?run=seed1&tag=saliency/gradient")
        return status == 200 and json.loads(body)["steps"] == LOGGED

    wait_until(all_read, timeout=120, what="every saliency step to be read")
    return base, torch.load(saliency_logdir / "reference.pt")


def _model_at(reference: dict, step: int):
    model = SmallCNN.build()
    model.load_state_dict(reference["states"][step])
    return model.eval()


def _gradient(model, x, target):
    """∂ logit[target] / ∂x per sample, by plain autograd."""
    import torch

    x = x.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
    return grad.numpy(), logits.detach()


def test_tags_list_each_method_with_its_input_shape(served):
    base, _ = served
    tags = route(base, "tags")
    for run in ("seed0", "seed1"):
        for method in METHODS:
            entry = tags[run][f"saliency/{method}"]
            assert entry["kind"] == "saliency" and entry["method"] == method
            assert [int(n) for n in entry["input_shape"]] == [1, 8, 8]
    assert tags["seed0"][RGB_TAG]["method"] == "gradient"
    assert [int(n) for n in tags["seed0"][RGB_TAG]["input_shape"]] == [3, 6, 6]


def test_steps_route_lists_the_logged_steps_and_the_probe(served):
    base, references = served
    for run in ("seed0", "seed1"):
        body = route(base, "saliency_steps", run=run, tag="saliency/integrated_gradients")
        assert body["steps"] == LOGGED
        assert body["num_samples"] == PROBE
        assert body["labels"] == references[run]["probe_y"].tolist()
        assert body["input_shape"] == [1, 8, 8]


@pytest.mark.parametrize("run", ["seed0", "seed1"])
def test_gradient_maps_equal_autograd_at_the_logged_parameters(served, run):
    base, references = served
    reference = references[run]
    x, y = reference["probe_x"], reference["probe_y"]
    for step in (LOGGED[0], LOGGED[-1]):
        body = route(base, "saliency", run=run, tag="saliency/gradient", step=step, samples="0-9")
        want, logits = _gradient(_model_at(reference, step), x, y)
        got = decode(body["maps"]).astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-3 * np.abs(want).max())
        np.testing.assert_allclose(decode(body["inputs"]), x.numpy(), rtol=1e-3, atol=1e-3)
        assert body["labels"] == y.tolist()
        assert body["predictions"] == logits.argmax(dim=1).tolist()
        assert body["non_finite_per_sample"] == [0] * PROBE


def test_baseline_delta_serves_zero_baseline_its_gradient_and_the_difference(served):
    import torch

    base, references = served
    reference = references["seed0"]
    x, y = reference["probe_x"], reference["probe_y"]
    step = LOGGED[1]
    body = route(
        base, "saliency", run="seed0", tag="saliency/baseline_delta", step=step, samples="2-5"
    )
    model = _model_at(reference, step)
    at_x, _ = _gradient(model, x, y)
    at_zero, _ = _gradient(model, torch.zeros_like(x), y)
    assert body["samples"] == [2, 3, 4, 5]
    assert np.all(decode(body["baseline"]) == 0)
    scale = np.abs(at_x).max()
    np.testing.assert_allclose(decode(body["baseline_maps"]), at_zero[2:6], atol=2e-3 * scale)
    np.testing.assert_allclose(decode(body["maps"]), (at_x - at_zero)[2:6], atol=2e-3 * scale)


def test_integrated_gradients_completeness_error_is_what_the_maps_sum_to(served):
    import torch

    base, references = served
    reference = references["seed1"]
    x, y = reference["probe_x"], reference["probe_y"]
    step = LOGGED[-1]
    body = route(base, "saliency", run="seed1", tag="saliency/integrated_gradients", step=step)
    model = _model_at(reference, step)
    with torch.no_grad():
        rise = (model(x) - model(torch.zeros_like(x))).gather(1, y[:, None])[:, 0].numpy()
    maps = decode(body["maps"]).astype(np.float64)
    error = np.asarray(body["completeness_error"])
    samples = body["samples"]
    # The maps are float16: their sum carries a rounding error of ~1e-3 of the largest value.
    slack = 1e-3 * np.abs(maps).reshape(len(samples), -1).sum(axis=1) + 1e-4
    np.testing.assert_array_less(
        np.abs(maps.reshape(len(samples), -1).sum(axis=1) - rise[samples] - error), slack
    )
    assert np.all(np.abs(error) <= 0.05 * np.abs(rise[samples]) + 1e-3)


def test_rgb_maps_logged_by_add_saliency(served):
    base, references = served
    reference = references["seed0"]["rgb"]
    body = route(base, "saliency", run="seed0", tag=RGB_TAG, step=5)
    assert body["input_shape"] == [3, 6, 6] and body["samples"] == [0, 1, 2]
    np.testing.assert_allclose(decode(body["inputs"]), reference["x"].numpy(), atol=1e-3)
    assert body["labels"] == reference["y"].tolist()
    assert route(base, "saliency_steps", run="seed0", tag=RGB_TAG)["steps"] == [0, 5]


def test_non_finite_maps_are_counted_per_sample(served):
    base, _ = served
    body = route(base, "saliency", run="seed0", tag=BROKEN_TAG)
    assert body["non_finite_per_sample"] == [0, 1, 2, 0]
    assert body["non_finite"] == 3
    assert body["labels"] is None and body["method"] == "captum-saliency"


def test_errors_through_tensorboard(served):
    base, _ = served
    status, body = get(f"{base}{ROUTE}/saliency?run=seed0&tag=saliency/gradient&step=5")
    assert status == 404 and b"nearest kept steps: 0, 10" in body
    status, body = get(f"{base}{ROUTE}/saliency?run=seed0&tag=update_ratios")
    assert status == 400 and b"holds update_ratios data" in body
    status, body = get(f"{base}{ROUTE}/saliency?run=seed0&tag=saliency/gradient&samples=10")
    assert status == 400 and b"has 10 samples" in body


# ---------------------------------------------------------------- token series (a text model)

TOKEN_IDS = [[1, 4, 9, 16, 2], [3, 5, 7, 11, 13]]
TOKEN_TEXTS = [["a", " b", " c", " d", " e"], ["f", " g", " h", " i", " j"]]
TOKEN_STEPS = [0, 5]


def _tiny_gpt2():
    from tests.hf_models import tiny_gpt2

    return tiny_gpt2(vocab=20)


@pytest.fixture(scope="module")
def token_logdir(tmp_path_factory):
    """A GPT-2 token probe measured by the watcher at two steps; the weights of each step."""
    import torch

    import deepscope
    from deepscope.writer.watch_saliency import SaliencyWatcher

    logdir = tmp_path_factory.mktemp("saliency-tokens")
    model = _tiny_gpt2()
    writer = deepscope.SummaryWriter(str(logdir / "gpt2"))
    watcher = SaliencyWatcher(
        model,
        writer,
        probe=torch.tensor(TOKEN_IDS),
        methods=["gradient", "integrated_gradients"],
        method_options={"integrated_gradients": {"n_steps": 32}},
        embeddings="transformer.wte",
        tokens=TOKEN_TEXTS,
    )
    states = {}
    for step in TOKEN_STEPS:
        watcher.measure(step)
        states[step] = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(1.1)
    writer.close()
    return logdir, states


@pytest.fixture(scope="module", params=LOADERS)
def token_server(request, token_logdir, tensorboard_server):
    logdir, states = token_logdir
    base = tensorboard_server(logdir, load_fast=request.param)

    def all_read():
        status, body = get(f"{base}{ROUTE}/saliency_steps?run=gpt2&tag=saliency/gradient")
        return status == 200 and json.loads(body)["steps"] == TOKEN_STEPS

    wait_until(all_read, timeout=120, what="every token saliency step to be read")
    return base, states


def test_token_series_through_tensorboard_equal_autograd_at_inputs_embeds(token_server):
    import torch

    base, states = token_server
    tags = route(base, "tags")["gpt2"]
    assert tags["saliency/gradient"]["kind"] == "saliency"
    steps = route(base, "saliency_steps", run="gpt2", tag="saliency/gradient")
    assert steps["input_kind"] == "tokens" and steps["input_shape"] == [5]
    assert steps["token_reduction"] == "L2 norm over the embedding dim"
    model = _tiny_gpt2().eval()
    for step in TOKEN_STEPS:
        body = route(base, "saliency", run="gpt2", tag="saliency/gradient", step=step)
        assert body["token_ids"] == TOKEN_IDS and body["token_texts"] == TOKEN_TEXTS
        assert body["inputs"] is None
        model.load_state_dict(states[step])
        ids = torch.tensor(TOKEN_IDS)
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        logits = model(inputs_embeds=embeds).logits[:, -1]
        target = logits.argmax(dim=1)
        (grad,) = torch.autograd.grad(logits[torch.arange(2), target].sum(), embeds)
        want = grad.norm(dim=-1).numpy()
        got = decode(body["maps"]).astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=2**-10, atol=2**-10 * np.abs(want).max())
        assert body["predictions"] == target.tolist()


def test_token_integrated_gradients_sum_to_the_score_gain(token_server):
    import torch

    base, states = token_server
    body = route(base, "saliency", run="gpt2", tag="saliency/integrated_gradients", step=5)
    assert body["token_reduction"] == "sum over the embedding dim"
    model = _tiny_gpt2().eval()
    model.load_state_dict(states[5])
    ids = torch.tensor(TOKEN_IDS)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
        gain = (
            model(inputs_embeds=embeds).logits[:, -1]
            - model(inputs_embeds=torch.zeros_like(embeds)).logits[:, -1]
        )
    gain = gain[torch.arange(2), torch.tensor(body["predictions"])].numpy()
    maps = decode(body["maps"]).astype(np.float64)
    # float16 maps: their sum carries ~1e-3 of the summed magnitudes; the quadrature a little.
    slack = 2e-3 * np.abs(maps).sum(axis=1) + 0.02 * np.abs(gain)
    assert np.all(np.abs(maps.sum(axis=1) - gain) <= slack)
