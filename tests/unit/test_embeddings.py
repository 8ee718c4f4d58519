"""log_embeddings: the layer's outputs pooled as numpy pools them, the projector files read
back, the model left as it was, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

import deepscope
from deepscope.writer import embeddings as emb
from deepscope.writer.embeddings import log_embeddings

EPS32 = float(np.finfo(np.float32).eps)


class Net(torch.nn.Module):
    """conv → batch norm → ReLU → dropout → conv → linear; names as users know them."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, 6, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(6)
        self.relu = torch.nn.ReLU()
        self.drop = torch.nn.Dropout(0.5)
        self.conv2 = torch.nn.Conv2d(6, 8, 3)
        self.fc = torch.nn.Linear(8 * 4 * 4, 5)

    def trunk(self, x):
        return self.conv2(self.drop(self.relu(self.norm(self.conv1(x)))))

    def forward(self, x):
        return self.fc(self.trunk(x).flatten(1))


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():  # running statistics that are not the defaults
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture
def writer(tmp_path):
    w = deepscope.SummaryWriter(str(tmp_path / "run"))
    yield w
    w.close()


def reference_conv2(model: Net, x: torch.Tensor) -> np.ndarray:
    """conv2's output in eval mode, computed without any hook: (N, 8, 4, 4) float32."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model.trunk(x).numpy()
    model.train(was)
    return out


def read_tensors(directory: Path) -> np.ndarray:
    rows = (directory / "tensors.tsv").read_text().splitlines()
    return np.array([[float(v) for v in row.split("\t")] for row in rows])


def read_config(logdir: Path) -> ProjectorConfig:
    return text_format.Parse((logdir / "projector_config.pbtxt").read_text(), ProjectorConfig())


# --------------------------------------------------------------------------- pooling


def test_conv_output_mean_over_positions_as_numpy(net, writer):
    x = torch.randn(10, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    logged = log_embeddings(writer, net, "conv2", x, global_step=7)
    out = reference_conv2(net, x)
    want = out.astype(np.float64).mean(axis=(2, 3))
    got = read_tensors(logged.directory)
    assert got.shape == (10, 8) and logged.vectors.dtype == np.float32
    # a float32 mean of 16 values: within 16 roundings of the largest magnitude
    np.testing.assert_allclose(got, want, rtol=0, atol=16 * EPS32 * np.abs(out).max())
    # tensors.tsv holds the float32 vectors exactly (each value written in full)
    assert np.array_equal(got.astype(np.float32), logged.vectors)


@pytest.mark.parametrize(
    "pooling, reduce",
    [
        ("max", lambda out: out.max(axis=(2, 3))),
        ("first", lambda out: out[:, :, 0, 0]),
        ("cls", lambda out: out[:, :, 0, 0]),
        ("flatten", lambda out: out.reshape(out.shape[0], -1)),
    ],
)
def test_other_poolings_are_bit_for_bit(net, writer, pooling, reduce):
    x = torch.randn(6, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    logged = log_embeddings(writer, net, net.conv2, x, pooling=pooling)
    want = reduce(reference_conv2(net, x))
    got = read_tensors(logged.directory).astype(np.float32)
    assert got.shape == want.shape
    assert np.array_equal(got, want)  # no arithmetic: the very floats of the output


def test_pooling_function_and_vector_outputs_as_is(net, writer):
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    logged = log_embeddings(writer, net, "fc", x, pooling="max")  # (N, 5): pooling not applied
    net.eval()
    with torch.no_grad():
        want = net(x).numpy()
    net.train()
    assert np.array_equal(read_tensors(logged.directory).astype(np.float32), want)
    custom = log_embeddings(
        writer, net, "conv2", x, pooling=lambda out: out.std(dim=(2, 3)), tag="std"
    )
    out = reference_conv2(net, x).astype(np.float64)
    np.testing.assert_allclose(
        custom.vectors, out.std(axis=(2, 3), ddof=1), rtol=64 * EPS32, atol=64 * EPS32
    )


class Sequence(torch.nn.Module):
    """Token embeddings (N, L, C) → linear (N, L, C) → a Conv1d over them (N, C, L)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, 6)
        self.proj = torch.nn.Linear(6, 4)
        self.conv = torch.nn.Conv1d(4, 3, 1)

    def forward(self, input_ids, attention_mask=None):
        h = self.proj(self.embed(input_ids))
        return self.conv(h.transpose(1, 2))


def test_sequences_mean_over_tokens_and_conv1d_over_length(writer):
    torch.manual_seed(4)
    model = Sequence()
    ids = torch.randint(0, 20, (5, 7))
    proj = log_embeddings(writer, model, "proj", {"input_ids": ids})  # (N, L, C): over L
    conv = log_embeddings(writer, model, "conv", {"input_ids": ids})  # Conv1d (N, C, L): over L
    first = log_embeddings(writer, model, "proj", {"input_ids": ids}, pooling="cls", tag="cls")
    with torch.no_grad():
        h = model.proj(model.embed(ids)).numpy().astype(np.float64)
        c = model.conv(torch.from_numpy(h).float().transpose(1, 2)).numpy().astype(np.float64)
    tol = 8 * EPS32 * max(np.abs(h).max(), np.abs(c).max())
    np.testing.assert_allclose(proj.vectors, h.mean(axis=1), rtol=0, atol=tol)
    np.testing.assert_allclose(conv.vectors, c.mean(axis=2), rtol=0, atol=tol)
    assert np.array_equal(first.vectors, h[:, 0].astype(np.float32))


def test_attention_mask_leaves_padding_out_of_mean_and_max(writer):
    torch.manual_seed(5)
    model = Sequence()
    ids = torch.randint(0, 20, (4, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4, [1] + [0] * 5])
    batch = {"input_ids": ids, "attention_mask": mask}
    mean = log_embeddings(writer, model, "proj", batch)
    most = log_embeddings(writer, model, "proj", batch, pooling="max", tag="max")
    with torch.no_grad():
        h = model.proj(model.embed(ids)).numpy()
    keep = mask.numpy().astype(bool)
    want_mean = np.stack([h[i][keep[i]].astype(np.float64).mean(axis=0) for i in range(4)])
    want_max = np.stack([h[i][keep[i]].max(axis=0) for i in range(4)])
    np.testing.assert_allclose(mean.vectors, want_mean, rtol=0, atol=8 * EPS32 * np.abs(h).max())
    assert np.array_equal(most.vectors, want_max)


def test_half_outputs_are_pooled_in_float32(writer):
    model = torch.nn.Sequential(torch.nn.Identity())
    x = (torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4) / 7).half()
    logged = log_embeddings(writer, model, "0", x, channel_dim=1)  # (N, C, L) by choice
    want = x.numpy().astype(np.float64).mean(axis=2)
    assert logged.vectors.dtype == np.float32
    np.testing.assert_allclose(logged.vectors, want, rtol=4 * EPS32, atol=0)


def test_list_of_batches_and_dataloader_concatenate_in_order(net, writer):
    x = torch.randn(9, 3, 6, 6, generator=torch.Generator().manual_seed(6))
    y = torch.arange(9) % 5
    whole = log_embeddings(writer, net, "conv2", (x, y), tag="whole")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    parts = log_embeddings(writer, net, "conv2", loader, tag="parts")
    np.testing.assert_allclose(parts.vectors, whole.vectors, rtol=0, atol=4 * EPS32)
    assert parts.metadata == whole.metadata  # the loader's labels, in order
    assert whole.metadata[1:] == [f"{int(y[i])}\t{i}" for i in range(9)]


def test_compiled_model_by_either_name(net, writer):
    x = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(7))
    plain = log_embeddings(writer, net, "conv2", x, tag="plain")
    compiled = torch.compile(net)
    for k, name in enumerate(("conv2", "_orig_mod.conv2")):
        got = log_embeddings(writer, compiled, name, x, tag=f"compiled{k}")
        assert got.layer == "conv2"
        assert np.array_equal(got.vectors, plain.vectors)
    assert log_embeddings(writer, compiled, net.conv2, x, tag="by-module").layer == "conv2"


# --------------------------------------------------------------------------- files


def test_projector_files_read_back(net, writer, tmp_path):
    x = torch.rand(7, 3, 6, 6, generator=torch.Generator().manual_seed(8))
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    names = ["zero", "one", "two", "three", "four"]
    logged = log_embeddings(writer, net, "conv2", (x, y), class_names=names, global_step=120)
    log_embeddings(writer, net, "fc", x, images=False, global_step=121)
    run = tmp_path / "run"
    config = read_config(run)
    assert [e.tensor_name for e in config.embeddings] == [
        "embeddings/conv2:00120",
        "embeddings/fc:00121",
    ]
    first, second = config.embeddings
    assert logged.tensor_name == first.tensor_name and logged.step == 120
    assert first.tensor_path == "00120/embeddings%2fconv2/tensors.tsv"
    assert first.metadata_path == "00120/embeddings%2fconv2/metadata.tsv"
    assert first.sprite.image_path == "00120/embeddings%2fconv2/sprite.png"
    assert list(first.sprite.single_image_dim) == [6, 6]
    assert not second.sprite.image_path  # images=False
    assert (run / first.tensor_path).parent == logged.directory
    lines = (run / first.metadata_path).read_text().splitlines()
    assert lines[0] == "label\tclass\tindex"
    assert lines[1:] == [f"{int(y[i])}\t{names[int(y[i])]}\t{i}" for i in range(7)]
    assert (run / second.metadata_path).read_text().splitlines() == [str(i) for i in range(7)]
    assert read_tensors(run / Path(second.tensor_path).parent).shape == (7, 5)
    # sprite: the probe images (in [0, 1], used as they are) on a 3 × 3 grid of 6 × 6 cells
    sprite = np.asarray(Image.open(run / first.sprite.image_path).convert("RGB"))
    assert sprite.shape == (18, 18, 3)
    want = np.zeros((18, 18, 3), dtype=np.uint8)
    images = x.numpy().transpose(0, 2, 3, 1).astype(np.float64)
    for i in range(7):
        r, c = divmod(i, 3)
        want[6 * r : 6 * r + 6, 6 * c : 6 * c + 6] = np.floor(images[i] * 255).astype(np.uint8)
    assert np.array_equal(sprite, want)
    sizes = sum((logged.directory / f).stat().st_size for f in ("tensors.tsv", "metadata.tsv"))
    assert logged.bytes == sizes + (logged.directory / "sprite.png").stat().st_size


def test_sprite_scaling_rules():
    gray = torch.tensor([[[0, 51], [255, 102]]], dtype=torch.uint8).repeat(4, 1, 1)  # (N, H, W)
    out = emb.sprite_images(gray, 4)
    assert out.shape == (4, 1, 2, 2) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0, 0].numpy(), gray[0].numpy() / 255, rtol=EPS32)
    signed = torch.linspace(-2, 6, 4 * 3 * 2 * 2).reshape(4, 2, 2, 3)  # channels last, not [0, 1]
    scaled = emb.sprite_images(signed, 4)
    want = (signed.permute(0, 3, 1, 2).double() + 2) / 8
    np.testing.assert_allclose(scaled.numpy(), want.numpy(), rtol=0, atol=2 * EPS32)
    wide = torch.rand(2, 1, 2, 4)
    square = emb.sprite_images(wide, 2)  # padded with black to 4 × 4, centred
    assert square.shape == (2, 1, 4, 4)
    assert torch.equal(square[:, :, 1:3], wide) and float(square[:, :, [0, 3]].abs().max()) == 0


def test_sprite_shrinks_to_the_projectors_limit(monkeypatch):
    monkeypatch.setattr(emb, "SPRITE_MAX_PIXELS", 60)
    images = torch.rand(9, 1, 40, 40, generator=torch.Generator().manual_seed(9))
    out = emb.sprite_images(images, 9)  # 3 per row × 40 = 120 > 60: cells of 20
    assert out.shape == (9, 1, 20, 20) and 3 * out.shape[-1] <= 60
    blocks = images.numpy().astype(np.float64).reshape(9, 1, 20, 2, 20, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(out.numpy(), blocks, rtol=0, atol=4 * EPS32)


def test_labels_as_strings_and_tabs_cleaned(net, writer):
    x = torch.rand(3, 3, 6, 6)
    logged = log_embeddings(writer, net, "conv2", x, labels=["a\tb", "c\nd", "e"])
    assert logged.metadata == ["label\tindex", "a b\t0", "c d\t1", "e\t2"]
    assert (logged.directory / "metadata.tsv").read_text().splitlines() == logged.metadata


# --------------------------------------------------------------------------- state


class Noisy(torch.nn.Module):
    """Draws from the RNG in its forward pass, even in eval mode."""

    def forward(self, x):
        return x + 0 * torch.randn_like(x)


def test_model_modes_rng_and_grads_are_restored(net, writer):
    net.train()
    net.drop.eval()  # a mixed mode, kept as it is
    model = torch.nn.Sequential(Noisy(), net)
    x = torch.randn(4, 3, 6, 6)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    modes = [(name, m.training) for name, m in model.named_modules()]
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    grad_objects = {n: p.grad for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    log_embeddings(writer, model, "1.conv2", x)
    assert torch.equal(torch.rand(5), expected)  # the probe's draws were undone
    assert [(name, m.training) for name, m in model.named_modules()] == modes
    for n, p in model.named_parameters():
        assert p.grad is grad_objects[n] and torch.equal(p.grad, grads[n]), n
    for key, value in model.state_dict().items():  # running statistics untouched
        assert torch.equal(value, state[key]), key
    assert all(not m._forward_hooks for m in model.modules())


def test_the_pass_is_in_eval_mode_without_gradients(net, writer):
    seen = {}

    def spy(module, args, output):
        seen["training"] = module.training
        seen["grad"] = torch.is_grad_enabled()

    net.norm.register_forward_hook(spy)
    net.train()
    log_embeddings(writer, net, "conv2", torch.randn(2, 3, 6, 6))
    assert seen == {"training": False, "grad": False}
    assert net.training


# --------------------------------------------------------------------------- errors


def test_unknown_layer_lists_close_matches(net, writer):
    with pytest.raises(ValueError, match=r"'conv3'.*did you mean 'conv2' or 'conv1'"):
        log_embeddings(writer, net, "conv3", torch.randn(2, 3, 6, 6))
    with pytest.raises(ValueError, match="not a submodule"):
        log_embeddings(writer, net, torch.nn.Linear(2, 2), torch.randn(2, 3, 6, 6))
    with pytest.raises(TypeError, match="module of the model or its name"):
        log_embeddings(writer, net, 3, torch.randn(2, 3, 6, 6))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"pooling": "median"}, ValueError, "pooling must be one of"),
        ({"labels": [0, 1]}, ValueError, "2 labels for 3 probe samples"),
        ({"class_names": ["a", "b"]}, ValueError, "class_names name the labels"),
        ({"labels": [0, 1, 5], "class_names": ["a", "b"]}, ValueError, "label 5 is not"),
        ({"labels": "abc"}, TypeError, "labels must be"),
        ({"images": torch.rand(2, 1, 4, 4)}, ValueError, "2 images for 3 probe samples"),
        ({"images": torch.rand(3, 4, 5, 5)}, ValueError, "grayscale or RGB"),
        ({"images": [1, 2, 3]}, TypeError, "images must be a tensor"),
        ({"images": torch.full((3, 1, 2, 2), float("nan"))}, ValueError, "non-finite"),
        ({"global_step": -1}, ValueError, "global_step must be >= 0"),
        ({"global_step": 1.5}, TypeError, "global_step must be an int"),
        ({"tag": ""}, ValueError, "tag must be a non-empty string"),
        ({"channel_dim": 4}, ValueError, "channel_dim 4 is not a dim"),
    ],
)
def test_bad_arguments(net, writer, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        log_embeddings(writer, net, "conv2", torch.rand(3, 3, 6, 6), **kwargs)
    assert not (tmp_path / "run" / "projector_config.pbtxt").exists()  # nothing written


def test_bad_writer_model_and_probe(net, writer):
    x = torch.rand(2, 3, 6, 6)
    with pytest.raises(TypeError, match="SummaryWriter"):
        log_embeddings(object(), net, "conv2", x)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        log_embeddings(writer, lambda t: t, "conv2", x)
    with pytest.raises(TypeError, match="probe must be"):
        log_embeddings(writer, net, "conv2", 3)
    with pytest.raises(ValueError, match="no batches"):
        log_embeddings(writer, net, "conv2", [])
    with pytest.raises(ValueError, match="no samples"):
        log_embeddings(writer, net, "conv2", torch.rand(0, 3, 6, 6))


def test_non_finite_vectors_are_refused_and_nothing_written(net, writer, tmp_path):
    with torch.no_grad():
        net.conv2.bias[0] = float("nan")
    with pytest.raises(ValueError, match="3 of 3 vectors hold non-finite"):
        log_embeddings(writer, net, "conv2", torch.rand(3, 3, 6, 6))
    assert not (tmp_path / "run" / "00000").exists()


def test_the_same_tag_and_step_twice_is_refused(net, writer):
    x = torch.rand(2, 3, 6, 6)
    log_embeddings(writer, net, "conv2", x, global_step=4)
    with pytest.raises(ValueError, match="already logged at step 4"):
        log_embeddings(writer, net, "conv2", x, global_step=4)
    log_embeddings(writer, net, "conv2", x, global_step=5)  # another step is fine


def test_layers_that_do_not_run_once_per_sample(writer):
    relu = torch.nn.ReLU()
    shared = torch.nn.Sequential(torch.nn.Linear(4, 4), relu, torch.nn.Linear(4, 4), relu)
    with pytest.raises(RuntimeError, match="more than once in one forward pass"):
        log_embeddings(writer, shared, "1", torch.randn(3, 4))

    class Skips(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(RuntimeError, match="did not run"):
        log_embeddings(writer, Skips(), "unused", torch.randn(3, 4))

    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Identity()

        def forward(self, x):  # (N, 8) → (2N, 4): samples folded into heads
            return self.inner(x.reshape(-1, 4))

    with pytest.raises(ValueError, match="6 rows for a batch of 3 samples"):
        log_embeddings(writer, Heads(), "inner", torch.randn(3, 8))
    scalar = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0))
    with pytest.raises(ValueError, match="at least 2 dims"):
        log_embeddings(writer, scalar, "1", torch.randn(3, 4))


def test_images_from_the_probe_only_when_image_like(net, writer):
    x = torch.rand(4, 3, 6, 6)
    assert log_embeddings(writer, net, "conv2", x, tag="auto").sprite
    assert not log_embeddings(writer, net, "conv2", x, images=False, tag="off").sprite
    ids = {"input_ids": torch.randint(0, 20, (4, 5))}
    model = Sequence()
    assert not log_embeddings(writer, model, "proj", ids).sprite
    with pytest.raises(ValueError, match="not image-like"):
        log_embeddings(writer, model, "proj", ids, images=True, tag="t")
