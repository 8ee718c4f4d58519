"""The generated module matches deepscope.proto and imports under protobuf 6.31 (the tool
environment, `make proto-venv`) and under whatever protobuf is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import google.protobuf
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTO_PYTHON = ROOT / ".cache" / "proto-venv" / "bin" / "python"
GENERATED = ROOT / "deepscope" / "proto" / "deepscope_pb2.py"


@pytest.fixture(scope="module")
def proto_python() -> Path:
    if not PROTO_PYTHON.exists():
        pytest.fail("the protobuf 6.31.1 tool environment is missing: run `make proto-venv`")
    return PROTO_PYTHON


def test_generated_module_matches_the_proto(proto_python, tmp_path):
    subprocess.run(
        [
            proto_python,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--python_out={tmp_path}",
            "deepscope/proto/deepscope.proto",
        ],
        cwd=ROOT,
        check=True,
    )
    regenerated = (tmp_path / "deepscope" / "proto" / "deepscope_pb2.py").read_text()
    assert regenerated == GENERATED.read_text(), "run `make proto` and commit the result"


ROUND_TRIP = """
import importlib.util, sys
import google.protobuf
spec = importlib.util.spec_from_file_location("deepscope_pb2", sys.argv[1])
pb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pb)
message = pb.PluginData(version=1, kind=pb.UPDATE_RATIOS)
message.update_ratios.names.extend(["fc.weight", "fc.bias"])
again = pb.PluginData.FromString(message.SerializeToString())
assert list(again.update_ratios.names) == ["fc.weight", "fc.bias"]
assert again.WhichOneof("details") == "update_ratios"
print(google.protobuf.__version__)
"""


def test_imports_under_protobuf_6_31(proto_python):
    out = subprocess.run(
        [proto_python, "-c", ROUND_TRIP, str(GENERATED)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "6.31.1"


def test_imports_under_the_installed_protobuf():
    out = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, str(GENERATED)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == google.protobuf.__version__
