"""`make demo`'s training script runs and writes every kind it trains of deepscope series."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import text_format
from PIL import Image
from tensorboard.context import RequestContext
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from deepscope.tb_plugin import series
from tests.route_helpers import multiplexer_provider

REPO = Path(__file__).resolve().parents[1]


def test_demo_logs_every_kind_for_every_run(tmp_path):
    logdir = tmp_path / "demo"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "train_digits.py"),
            "--logdir",
            str(logdir),
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "deepscope:" not in done.stderr, done.stderr[-2000:]  # no measurement failed
    _, provider = multiplexer_provider(logdir)
    listing = series.list_series(provider, RequestContext(), "")
    kinds = {run: {info.kind for info in tags.values()} for run, tags in listing.items()}
    trained = {
        "update_ratios",
        "spectrum",
        "correlation",
        "saliency",
        "layer_statistics",
        "jacobian",
        "confusion",
        "filters",
    }
    assert kinds == {
        "adamw-lr1e-3": trained,
        "sgd-lr0.01": trained,
        "adamw-lr1e-3-seed1": trained,
        "compare-seed0-vs-seed1": {"correlation", "cka"},
    }
    methods = {tag for tag in listing["adamw-lr1e-3"] if tag.startswith("saliency/")}
    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    try:
        from train_digits import CKA_LAYERS, EMBEDDING_LAYER, SALIENCY_METHODS, load_data
    finally:
        sys.path.pop(0)
    assert methods == {f"saliency/{method}" for method in SALIENCY_METHODS}
    # The hidden layer's embeddings of the probe digits, at the first and the last step,
    # in the projector's files (one epoch: steps 0 .. batches - 1).
    (x_train, _), (_, y_test) = load_data()
    last = (len(x_train) + 31) // 32 - 1
    for run in ("adamw-lr1e-3", "sgd-lr0.01", "adamw-lr1e-3-seed1"):
        config = text_format.Parse(
            (logdir / run / "projector_config.pbtxt").read_text(), ProjectorConfig()
        )
        tag = f"embeddings/{EMBEDDING_LAYER}"
        assert [e.tensor_name for e in config.embeddings] == [f"{tag}:00000", f"{tag}:{last:05d}"]
        for embedding in config.embeddings:
            rows = (logdir / run / embedding.tensor_path).read_text().splitlines()
            assert len(rows) == 256 and {len(row.split("\t")) for row in rows} == {64}
            metadata = (logdir / run / embedding.metadata_path).read_text().splitlines()
            assert metadata[0] == "label\tclass\tindex"
            assert [line.split("\t")[0] for line in metadata[1:]] == [
                str(int(label)) for label in y_test[:256]
            ]
            sprite = Image.open(logdir / run / embedding.sprite.image_path)
            assert sprite.size == (16 * 8, 16 * 8)  # 256 digits of 8 × 8 on a 16 × 16 grid
            assert list(embedding.sprite.single_image_dim) == [8, 8]
    compare = listing["compare-seed0-vs-seed1"]["compare/relu2"].plugin_data.correlation
    assert compare.cross and compare.row_name == "adamw-lr1e-3/relu2"
    # compare() logged Li et al.'s regression and the pair's CKA with each matching, and
    # compare_cka() the layer x layer matrix.
    from deepscope.proto import arrays
    from deepscope.proto import deepscope_pb2 as pb

    ctx = RequestContext()
    blobs = provider.read_blob_sequences(
        ctx, experiment_id="", plugin_name="deepscope", run_tag_filter=None, downsample=100
    )["compare-seed0-vs-seed1"]["compare/relu2"]
    step = pb.CorrelationStep.FromString(
        provider.read_blob(ctx, blob_key=blobs[-1].values[0].blob_key)
    )
    fit = step.cross_network
    assert arrays.decode_array(fit.least_squares_error).shape == (32,)
    assert 0.0 <= fit.mean_least_squares_error <= fit.mean_l1_error <= 1.0
    assert 0.0 < fit.cka <= 1.0
    cka = listing["compare-seed0-vs-seed1"]["cka"].plugin_data.cka
    assert list(cka.layers_a) == list(CKA_LAYERS) == list(cka.layers_b)
