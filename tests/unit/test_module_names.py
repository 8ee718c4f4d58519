"""User-facing module and parameter names under torch.compile."""

import pytest
import torch

from deepscope import module_names


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8),
        torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh()),
        torch.nn.Linear(8, 2),
    )


@pytest.mark.parametrize(
    ("raw", "user"),
    [
        ("_orig_mod.0.weight", "0.weight"),
        ("blocks.0._orig_mod.attn.weight", "blocks.0.attn.weight"),
        ("_orig_mod._orig_mod.fc", "fc"),
        ("_orig_mod", ""),
        ("fc.weight", "fc.weight"),
        ("my_orig_mod.weight", "my_orig_mod.weight"),  # only whole segments go
    ],
)
def test_strip_compile_prefix_removes_whole_segments_only(raw, user):
    assert module_names.strip_compile_prefix(raw) == user


def test_a_compiled_model_has_the_eager_models_names_and_modules():
    net = _net()
    compiled = torch.compile(net, backend="eager")
    raw = [name for name, _ in compiled.named_parameters()]
    assert all(name.startswith("_orig_mod.") for name in raw)  # what users would see otherwise
    assert [n for n, _ in module_names.named_parameters(compiled)] == [
        n for n, _ in net.named_parameters()
    ]
    assert [n for n, _ in module_names.named_modules(compiled)] == [
        n for n, _ in net.named_modules()
    ]
    assert module_names.eager_module(compiled) is net
    assert module_names.is_compiled(compiled) and not module_names.is_compiled(net)
    # The compiled wrapper still runs: its output is the eager model's.
    x = torch.randn(3, 4)
    torch.testing.assert_close(compiled(x), net(x))


def test_a_compiled_submodule_is_named_as_in_the_eager_model():
    net = _net()
    eager_names = [n for n, _ in net.named_modules()]
    inner = net[2]
    net[2] = torch.compile(inner, backend="eager")
    assert "2._orig_mod.0" in [n for n, _ in net.named_modules()]
    named = dict(module_names.named_modules(net))
    assert list(named) == eager_names
    assert named["2"] is inner and named["2.0"] is inner[0]


def test_find_modules_takes_either_spelling_and_lists_user_names_when_unknown():
    compiled = torch.compile(_net(), backend="eager")
    eager = module_names.eager_module(compiled)
    found = module_names.find_modules(compiled, ["2.0", "_orig_mod.3"], "layers")
    assert found == [eager[2][0], eager[3]]
    with pytest.raises(ValueError) as caught:
        module_names.find_modules(compiled, ["fc9"], "correlation_layers")
    message = str(caught.value)
    assert message.startswith("correlation_layers: no module named 'fc9'")
    assert "2.0" in message and "_orig_mod" not in message
