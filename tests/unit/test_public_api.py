"""The public names of `deepscope`: listed once, each resolves, none needs torch to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import deepscope

INIT = Path(deepscope.__file__)


def test_every_name_in_all_resolves_to_what_its_module_defines():
    import importlib

    for name in deepscope.__all__:
        value = getattr(deepscope, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        module = importlib.import_module(deepscope._LAZY[name])
        assert getattr(module, name) is value, name


def test_the_type_checking_imports_name_exactly_the_lazy_table():
    """The TYPE_CHECKING block repeats _LAZY for type checkers: the two must not drift."""
    tree = ast.parse(INIT.read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    imported = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            assert alias.asname == alias.name  # re-exported under its own name
            assert alias.name not in imported, f"{alias.name} imported twice"
            imported[alias.name] = node.module
    assert imported == deepscope._LAZY


def test_the_returned_types_and_measurers_are_exported():
    for name in (
        "Measurer",
        "MeasurerStats",
        "MonitorStats",
        "UpdateRatios",
        "Spectra",
        "Correlations",
        "Saliency",
        "SpectrumMetrics",
        "LayerComparison",
        "ChannelCorrelation",
        "ChannelMatching",
        "Attribution",
        "attribute",
        "layer_values_pb",
    ):
        assert name in deepscope.__all__, name
    assert deepscope.__all__.count("watch") == 1
    assert len(set(deepscope.__all__)) == len(deepscope.__all__)


def test_import_deepscope_does_not_import_torch():
    code = "import sys, deepscope; dir(deepscope); print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"
