"""Embeddings through a real `tensorboard` process, with both loaders: its Projector plugin
lists the tensors deepscope wrote (the plugin's own HTTP routes) and serves them back.

The log dir is written as users write it: a small CNN trained under `deepscope.watch` with
the `Embeddings` measurer (two layers, steps 0 and 3), and a run logged with
`log_embeddings` on a model of token sequences (no images). The Projector plugin reads the
run folders itself (projector_config.pbtxt, tensors.tsv, ...); the runs come from the data
provider, which is the Python multiplexer with --load_fast=false and the Rust data server
with --load_fast=true: both list them.
"""

from __future__ import annotations

import json
import urllib.parse

import numpy as np
import pytest

from tests.conftest import get, wait_until
from tests.route_helpers import LOADERS

ROUTE = "/data/plugin/projector"
CNN_NAMES = [f"embeddings/{layer}:{step:05d}" for step in (0, 3) for layer in ("relu", "fc")]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    import torch

    import deepscope
    from deepscope.writer.embeddings import log_embeddings
    from deepscope.writer.watch_embeddings import Embeddings

    logdir = tmp_path_factory.mktemp("embeddings-tb")
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("conv", torch.nn.Conv2d(1, 4, 3, padding=1))
    model.add_module("relu", torch.nn.ReLU())
    model.add_module("flat", torch.nn.Flatten())
    model.add_module("fc", torch.nn.Linear(4 * 6 * 6, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = torch.rand(10, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(10) % 3
    measurer = Embeddings(
        probe=(probe, labels), layers=["relu", "fc"], every=3, class_names=["a", "b", "c"]
    )
    writer = deepscope.SummaryWriter(str(logdir / "cnn"))
    x, y = torch.randn(16, 1, 6, 6), torch.arange(16) % 3
    with deepscope.watch(model, optimizer, writer, measure=[measurer]):
        for step in range(5):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            writer.add_scalar("loss", loss.item(), step)
    writer.close()
    written = {e.tensor_name: e for e in measurer.logged.values()}

    tokens = torch.nn.Sequential(torch.nn.Embedding(30, 5), torch.nn.Linear(5, 4))
    writer = deepscope.SummaryWriter(str(logdir / "tokens"))
    ids = torch.randint(0, 30, (7, 9), generator=torch.Generator().manual_seed(2))
    logged = log_embeddings(writer, tokens, "1", ids, labels=list("abcdefg"), global_step=12)
    writer.close()
    written[logged.tensor_name] = logged
    return logdir, written


@pytest.fixture(scope="module", params=LOADERS)
def served(request, logdir, tensorboard_server):
    base = tensorboard_server(logdir[0], load_fast=request.param)

    def listed():
        status, body = get(f"{base}{ROUTE}/runs")
        return status == 200 and sorted(json.loads(body)) == ["cnn", "tokens"]

    wait_until(listed, timeout=120, what="the projector to list both runs")
    return base


def _get(base: str, path: str, **params) -> bytes:
    status, body = get(f"{base}{ROUTE}/{path}?{urllib.parse.urlencode(params)}")
    assert status == 200, body[:500]
    return body


def test_the_projector_plugin_is_active(served):
    def active():
        status, body = get(f"{served}/data/plugins_listing")
        return status == 200 and json.loads(body).get("projector", {}).get("enabled")

    assert wait_until(active, timeout=60, what="the projector plugin to be active")


def test_info_lists_every_tensor_with_its_shape_metadata_and_sprite(served, logdir):
    _, written = logdir
    info = json.loads(_get(served, "info", run="cnn"))
    embeddings = info["embeddings"]
    assert [e["tensorName"] for e in embeddings] == CNN_NAMES
    for entry in embeddings:
        vectors = written.get(entry["tensorName"])
        dims = [10, 4] if "relu" in entry["tensorName"] else [10, 3]
        assert [int(d) for d in entry["tensorShape"]] == dims
        assert entry["metadataPath"].endswith("metadata.tsv")
        assert entry["sprite"]["singleImageDim"] == [6, 6]
        if vectors is not None:
            assert list(vectors.vectors.shape) == dims
    tokens = json.loads(_get(served, "info", run="tokens"))["embeddings"]
    assert [e["tensorName"] for e in tokens] == ["embeddings/1:00012"]
    assert [int(d) for d in tokens[0]["tensorShape"]] == [7, 4] and "sprite" not in tokens[0]


def test_tensors_metadata_and_sprites_are_served_as_written(served, logdir):
    _, written = logdir
    for name, logged in written.items():
        run = "tokens" if name.startswith("embeddings/1:") else "cnn"
        body = _get(served, "tensor", run=run, name=name)
        served_vectors = np.frombuffer(body, dtype=np.float32).reshape(logged.vectors.shape)
        assert np.array_equal(served_vectors, logged.vectors)  # float32 written exactly
        metadata = _get(served, "metadata", run=run, name=name).decode().splitlines()
        assert metadata == logged.metadata
        if logged.sprite:
            sprite = _get(served, "sprite_image", run=run, name=name)
            assert sprite == (logged.directory / "sprite.png").read_bytes()
    assert written["embeddings/1:00012"].metadata[0] == "label\tindex"
    relu = written["embeddings/relu:00003"].metadata
    assert relu[0] == "label\tclass\tindex" and relu[2] == "1\tb\t1"
