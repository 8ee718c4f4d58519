"""What `pip install deepscope` gives: the entry point, the bundle, no torch for the plugin."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    (path,) = out.glob("deepscope-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_carries_the_built_frontend_and_the_schema(wheel):
    names = set(wheel.namelist())
    assert "deepscope/tb_plugin/static/index.js" in names
    assert "deepscope/proto/deepscope.proto" in names
    assert "deepscope/proto/deepscope_pb2.py" in names
    assert not any(name.startswith(("frontend/", "tests/")) for name in names)


def test_wheel_declares_the_tensorboard_entry_point(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[tensorboard_plugins]" in text
    assert "deepscope = deepscope.tb_plugin.loader:DeepscopeLoader" in text


def test_installing_the_plugin_alone_pulls_no_torch(wheel):
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [
        line.split(":", 1)[1].strip()
        for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    core = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("tensorboard") for r in core)
    assert not any(r.startswith("torch") for r in core), core
    assert any(r.startswith("torch") and 'extra == "torch"' in r for r in requires)


def test_default_samples_keep_a_10000_step_run_logged_every_10_steps_whole():
    from deepscope.tb_plugin.loader import DEFAULT_SAMPLES

    # Steps 0..9999 every 10: 1,000 measurements; even one event each, all are kept.
    assert DEFAULT_SAMPLES >= len(range(0, 10_000, 10))


def test_the_hf_extra_names_no_torch_so_it_cannot_move_the_pinned_build(wheel):
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    hf = [
        line.split(":", 1)[1].strip()
        for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and 'extra == "hf"' in line
    ]
    assert any(r.startswith("transformers") for r in hf), hf
    assert not any(r.startswith("torch") for r in hf), hf
