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


def test_the_plugin_side_never_imports_torch():
    code = (
        "import sys\n"
        "import deepscope, deepscope.tb_plugin.loader, deepscope.tb_plugin.deepscope_plugin\n"
        "import deepscope.tb_plugin.series, deepscope.metadata\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_loader_builds_the_plugin_and_declares_its_samples_default():
    from argparse import Namespace

    from tensorboard.plugins import base_plugin

    from deepscope.tb_plugin.loader import DEFAULT_SAMPLES, DeepscopeLoader

    flags = Namespace(samples_per_plugin={})
    DeepscopeLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"deepscope": DEFAULT_SAMPLES}
    # A 10,000-step run (steps 0..9999) logged every 10 steps: 1,000 samples, kept whole.
    assert DEFAULT_SAMPLES >= len(range(0, 10_000, 10))
    flags = Namespace(samples_per_plugin={"deepscope": 7})
    DeepscopeLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"deepscope": 7}  # the user's flag wins
    plugin = DeepscopeLoader().load(base_plugin.TBContext(data_provider=None))
    assert plugin.plugin_name == "deepscope"
    assert set(plugin.get_plugin_apps()) >= {"/index.js", "/tags", "/update_ratios"}
