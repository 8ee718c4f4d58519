"""`make demo`'s training script runs and writes every kind it trains of deepscope series."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tensorboard.context import RequestContext

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
    }
    assert kinds == {
        "adamw-lr1e-3": trained,
        "sgd-lr0.01": trained,
        "adamw-lr1e-3-seed1": trained,
        "compare-seed0-vs-seed1": {"correlation"},
    }
    methods = {tag for tag in listing["adamw-lr1e-3"] if tag.startswith("saliency/")}
    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    try:
        from train_digits import SALIENCY_METHODS
    finally:
        sys.path.pop(0)
    assert methods == {f"saliency/{method}" for method in SALIENCY_METHODS}
    compare = listing["compare-seed0-vs-seed1"]["compare/relu2"].plugin_data.correlation
    assert compare.cross and compare.row_name == "adamw-lr1e-3/relu2"
