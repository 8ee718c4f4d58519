"""deepscope: look inside a PyTorch network while it trains, in TensorBoard.

The write side needs PyTorch; the TensorBoard plugin does not. Names that
need torch are imported on first use, so `import deepscope` (which
TensorBoard does when it loads the plugin) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name → the module that defines it.
_LAZY = {
    "SummaryWriter": "deepscope.writer.summary_writer",
    "watch": "deepscope.writer.watch",
    "Monitor": "deepscope.writer.watch",
    "compare": "deepscope.writer.compare",
    # Analysis: pure functions on tensors.
    "singular_values": "deepscope.analysis.spectrum",
    "spectrum_metrics": "deepscope.analysis.spectrum",
    "Spectrum": "deepscope.analysis.spectrum",
    "CorrelationAccumulator": "deepscope.analysis.correlation",
    "saliency": "deepscope.analysis.saliency",
    "Attribution": "deepscope.analysis.saliency",
    # Summary builders, for people who write events with another writer.
    "update_ratios_pb": "deepscope.writer.summary",
    "ZERO_WEIGHT": "deepscope.writer.summary",
    "spectrum_pb": "deepscope.writer.spectrum",
    "channel_correlation_pb": "deepscope.writer.correlation",
    "saliency_pb": "deepscope.writer.saliency",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from deepscope.analysis.correlation import CorrelationAccumulator as CorrelationAccumulator
    from deepscope.analysis.saliency import Attribution as Attribution
    from deepscope.analysis.saliency import saliency as saliency
    from deepscope.analysis.spectrum import Spectrum as Spectrum
    from deepscope.analysis.spectrum import singular_values as singular_values
    from deepscope.analysis.spectrum import spectrum_metrics as spectrum_metrics
    from deepscope.writer.compare import compare as compare
    from deepscope.writer.correlation import channel_correlation_pb as channel_correlation_pb
    from deepscope.writer.saliency import saliency_pb as saliency_pb
    from deepscope.writer.spectrum import spectrum_pb as spectrum_pb
    from deepscope.writer.summary import ZERO_WEIGHT as ZERO_WEIGHT
    from deepscope.writer.summary import update_ratios_pb as update_ratios_pb
    from deepscope.writer.summary_writer import SummaryWriter as SummaryWriter
    from deepscope.writer.watch import Monitor as Monitor
    from deepscope.writer.watch import watch as watch


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deepscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
