"""Channel correlations on real Hugging Face models (small configs, no download) and compiled ones.

The logged matrices must be hidden × hidden (channels), not positions ×
positions, over N·L samples; ModelOutput returns and dict probes must not
break the probe; torch.compile's `_orig_mod.` is accepted and never tagged.
Every matrix is checked against numpy.corrcoef of the layer's output caught
by a separate hook.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

import deepscope
from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.compare import compare
from deepscope.writer.probe import layer_output
from deepscope.writer.watch_correlation import CorrelationWatcher
from tests.hf_models import tiny_bert, tiny_gpt2, tiny_vit  # the "hf" test extra (transformers)

HIDDEN = 64
INNER = 96
ATOL = 2e-3  # float16 matrices


def _gpt2(seed: int):
    return tiny_gpt2(seed=seed, hidden=HIDDEN, inner=INNER, positions=32, vocab=100).eval()


def _bert(seed: int):
    return tiny_bert(seed=seed, hidden=HIDDEN, intermediate=INNER, positions=32, vocab=100).eval()


def _vit(seed: int):
    return tiny_vit(seed=seed, hidden=HIDDEN, intermediate=INNER, labels=5).eval()


def _tokens(n: int = 8, length: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 100, (n, length), generator=torch.Generator().manual_seed(seed))


def _caught(model, names: list[str], run) -> dict[str, torch.Tensor]:
    """The named modules' outputs in one forward pass (`run(model)`), by our own hooks."""
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}

    def catch(name: str):
        def hook(module, inputs, output) -> None:  # returns None: the output stays as it is
            outputs.setdefault(name, layer_output(output).detach().clone())

        return hook

    handles = [modules[name].register_forward_hook(catch(name)) for name in names]
    try:
        with torch.no_grad():
            run(model)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _corrcoef(values: torch.Tensor, channel_dim: int) -> np.ndarray:
    rows = values.movedim(channel_dim, -1).reshape(-1, values.shape[channel_dim])
    return np.corrcoef(rows.double().numpy(), rowvar=False)


def _logged(read_values, logdir, tag: str) -> tuple[pb.CorrelationStep, pb.CorrelationInfo]:
    written = read_values(logdir, tag)[0]  # the first step, which carries the metadata
    step = pb.CorrelationStep.FromString(written.value.tensor.string_val[0])
    info = metadata.parse_plugin_data(written.value.metadata.plugin_data.content).correlation
    return step, info


def test_gpt2_layers_correlate_hidden_channels_over_every_token(tmp_path, read_values):
    model = _gpt2(0)
    probe = _tokens()
    layers = ["transformer.h.0", "transformer.h.1.mlp.c_fc", "transformer"]  # block, Conv1D, body
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        CorrelationWatcher(model, writer, layers, probe).measure(0)
    expected = _caught(model, layers, lambda m: m(probe))
    for layer, channels in zip(layers, (HIDDEN, INNER, HIDDEN)):
        step, info = _logged(read_values, tmp_path, f"correlation/{layer}")
        matrix = arrays.decode_array(step.matrix)
        assert matrix.shape == (channels, channels), layer  # not 16 x 16 token positions
        assert info.channel_dim == 2 and list(step.activation_shape) == [8, 16, channels]
        assert step.samples == 8 * 16
        ref = _corrcoef(expected[layer], 2)
        np.testing.assert_allclose(matrix, ref, rtol=0, atol=ATOL, err_msg=layer)


def test_bert_with_a_dict_probe_and_the_pooler_that_has_too_few_samples(tmp_path, read_values):
    model = _bert(1)
    tokens = _tokens(n=8, seed=1)
    probe = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}
    layers = ["encoder.layer.0.output", "pooler"]
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            CorrelationWatcher(model, writer, layers, probe).measure(0)
            CorrelationWatcher(model, writer, layers, probe).measure(1)  # the same writer
    few = [str(w.message) for w in caught if "samples for" in str(w.message)]
    assert len(few) == 1 and "'correlation/pooler': 8 samples for 64 channels" in few[0]
    expected = _caught(model, layers, lambda m: m(**probe))
    hidden, _ = _logged(read_values, tmp_path, "correlation/encoder.layer.0.output")
    assert arrays.decode_array(hidden.matrix).shape == (HIDDEN, HIDDEN)
    assert hidden.samples == 8 * 16
    np.testing.assert_allclose(
        arrays.decode_array(hidden.matrix),
        _corrcoef(expected["encoder.layer.0.output"], 2),
        rtol=0,
        atol=ATOL,
    )
    (first, _second) = read_values(tmp_path, "correlation/pooler")
    pooler = pb.CorrelationStep.FromString(first.value.tensor.string_val[0])
    assert pooler.samples == 8 and list(pooler.activation_shape) == [8, HIDDEN]
    assert arrays.decode_array(pooler.matrix).shape == (HIDDEN, HIDDEN)


def test_vit_blocks_are_hidden_channels_not_patches_and_its_conv_is_channels_first(
    tmp_path, read_values
):
    model = _vit(2)
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    blocks = [name for name, _ in model.named_modules() if name.endswith(".0")]
    block = [name for name in blocks if name.startswith("vit.")][0]  # "vit.layers.0" in 5.x
    projection = "vit.embeddings.patch_embeddings.projection"
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        CorrelationWatcher(model, writer, [block, projection], images).measure(0)  # logits out
    expected = _caught(model, [block, projection], lambda m: m(images))
    tokens = expected[block].shape[1]
    assert tokens == 17  # 16 patches + [CLS]
    step, info = _logged(read_values, tmp_path, f"correlation/{block}")
    assert arrays.decode_array(step.matrix).shape == (HIDDEN, HIDDEN) != (tokens, tokens)
    assert step.samples == 6 * tokens and info.channel_dim == 2
    np.testing.assert_allclose(
        arrays.decode_array(step.matrix), _corrcoef(expected[block], 2), rtol=0, atol=ATOL
    )
    conv, conv_info = _logged(read_values, tmp_path, f"correlation/{projection}")
    assert conv_info.channel_dim == 1 and list(conv.activation_shape) == [6, HIDDEN, 4, 4]
    np.testing.assert_allclose(
        arrays.decode_array(conv.matrix), _corrcoef(expected[projection], 1), rtol=0, atol=ATOL
    )


def test_compare_two_gpt2_seeds_on_hidden_channels(tmp_path, read_values):
    a, b = _gpt2(3), _gpt2(4)
    probe = _tokens(seed=3)
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        found = compare(a, b, probe, layers=["transformer.h.1"], writer=writer, global_step=0)
    out_a = _caught(a, ["transformer.h.1"], lambda m: m(probe))["transformer.h.1"]
    out_b = _caught(b, ["transformer.h.1"], lambda m: m(probe))["transformer.h.1"]
    joint = _corrcoef(torch.cat([out_a, out_b], dim=-1), 2)
    result = found["transformer.h.1"].correlation
    assert result.matrix.shape == (HIDDEN, HIDDEN) and result.samples == 8 * 16
    np.testing.assert_allclose(result.matrix, joint[:HIDDEN, HIDDEN:], rtol=0, atol=1e-5)
    step, info = _logged(read_values, tmp_path, "compare/transformer.h.1")
    assert info.cross and info.channel_dim == 2 and step.samples == 8 * 16


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(5, 12)
        self.fc2 = torch.nn.Linear(12, 3)
        self.unused = torch.nn.Linear(12, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def _compiled(seed: int):
    torch.manual_seed(seed)
    eager = Small()
    return eager, torch.compile(eager, backend="eager")


def test_compiled_models_take_user_names_and_tag_without_orig_mod(tmp_path, read_values):
    eager, compiled = _compiled(5)
    probe = torch.randn(64, 5, generator=torch.Generator().manual_seed(5))
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        watcher = CorrelationWatcher(compiled, writer, ["fc1", "_orig_mod.fc2"], probe)
        watcher.measure(0)
        other_eager, other = _compiled(6)
        found = compare(compiled, other, probe, layers=["_orig_mod.fc1"], writer=writer)
    tags = {v.tag for v in read_values(tmp_path)}
    assert tags == {"correlation/fc1", "correlation/fc2", "compare/fc1"}
    assert watcher.layers == ["fc1", "fc2"] and list(found) == ["fc1"]
    expected = _caught(eager, ["fc1"], lambda m: m(probe))["fc1"]
    step, info = _logged(read_values, tmp_path, "correlation/fc1")
    assert info.row_name == "fc1" and step.samples == 64
    np.testing.assert_allclose(
        arrays.decode_array(step.matrix), _corrcoef(expected, 1), rtol=0, atol=ATOL
    )
    _, cross = _logged(read_values, tmp_path, "compare/fc1")
    assert (cross.row_name, cross.col_name) == ("model_a/fc1", "model_b/fc1")
    for module in eager.modules():
        assert not module._forward_hooks


def test_a_layer_whose_hook_is_not_called_is_an_error_that_says_so(tmp_path, read_values):
    _, compiled = _compiled(7)
    probe = torch.randn(16, 5)
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        watcher = CorrelationWatcher(compiled, writer, ["fc1", "unused"], probe)
        with pytest.raises(RuntimeError, match=r"\['unused'\] did not run") as raised:
            watcher.measure(3)
        with pytest.raises(RuntimeError, match="forward hooks were not called"):
            compare(compiled, compiled, probe, layers=["unused"])
    assert "torch.compile" in str(raised.value)
    assert [v.tag for v in read_values(tmp_path)] == ["correlation/fc1"]  # the rest is logged


def test_watch_records_the_not_called_layer_and_training_goes_on(tmp_path):
    eager, compiled = _compiled(8)
    optimizer = torch.optim.SGD(compiled.parameters(), lr=0.01)
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        monitor = deepscope.watch(
            compiled,
            optimizer,
            writer,
            correlation_layers=["unused"],
            probe=torch.randn(16, 5),
            correlation_every=1,
            spectra_every=None,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(2):
                optimizer.zero_grad()
                compiled(torch.randn(8, 5)).square().mean().backward()
                optimizer.step()
        monitor.close()
    assert monitor.stats.error_count >= 1
    assert any("did not run" in str(error) for error in monitor.stats.errors)
