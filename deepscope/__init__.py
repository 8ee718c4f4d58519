"""deepscope: look inside a PyTorch network while it trains, in TensorBoard.

The write side needs PyTorch; the TensorBoard plugin does not. Names that
need torch are imported on first use, so `import deepscope` (which
TensorBoard does when it loads the plugin) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name → the module that defines it: the one list of the exports. The
# TYPE_CHECKING imports below name the same (for type checkers and editors);
# tests/unit/test_public_api.py checks that the two agree.
_LAZY = {
    "SummaryWriter": "deepscope.writer.summary_writer",
    # watch(): the scheduler, its stats, and the measurers it runs.
    "watch": "deepscope.writer.watch",
    "Monitor": "deepscope.writer.watch",
    "MonitorStats": "deepscope.writer.watch",
    "Measurer": "deepscope.writer.measurer",
    "MeasurerStats": "deepscope.writer.measurer",
    "UpdateRatios": "deepscope.writer.watch_update_ratios",
    "Spectra": "deepscope.writer.watch_spectra",
    "Correlations": "deepscope.writer.watch_correlation",
    "Saliency": "deepscope.writer.watch_saliency",
    "LayerStats": "deepscope.writer.watch_layer_statistics",
    "ParameterNorms": "deepscope.writer.watch_layer_statistics",
    "JacobianSpectra": "deepscope.writer.watch_jacobian",
    "ConfusionMatrices": "deepscope.writer.watch_confusion",
    "Embeddings": "deepscope.writer.watch_embeddings",
    "Filters": "deepscope.writer.watch_filters",
    "FeatureMaps": "deepscope.writer.watch_filters",
    "log_embeddings": "deepscope.writer.embeddings",
    "compare": "deepscope.writer.compare",
    "LayerComparison": "deepscope.writer.compare",
    "compare_cka": "deepscope.writer.compare",
    "CkaComparison": "deepscope.writer.compare",
    "cka_matrix_pb": "deepscope.writer.cka",
    "cross_network_fit_pb": "deepscope.writer.correlation",
    # Analysis: pure functions on tensors, and the types they return.
    "singular_values": "deepscope.analysis.spectrum",
    "spectrum_metrics": "deepscope.analysis.spectrum",
    "partial_spectrum_metrics": "deepscope.analysis.spectrum",
    "Spectrum": "deepscope.analysis.spectrum",
    "SpectrumMetrics": "deepscope.analysis.spectrum",
    "CorrelationAccumulator": "deepscope.analysis.correlation",
    "ChannelCorrelation": "deepscope.analysis.correlation",
    "ChannelMatching": "deepscope.analysis.matching",
    "saliency": "deepscope.analysis.saliency",
    "attribute": "deepscope.analysis.saliency",
    "Attribution": "deepscope.analysis.saliency",
    "conv_singular_values": "deepscope.analysis.conv_operator",
    "conv_operator_norm": "deepscope.analysis.conv_operator",
    "jacobian_singular_values": "deepscope.analysis.jacobian",
    "JacobianSpectrum": "deepscope.analysis.jacobian",
    # Summary builders, for people who write events with another writer.
    "update_ratios_pb": "deepscope.writer.update_ratios",
    "ZERO_WEIGHT": "deepscope.writer.update_ratios",
    "spectrum_pb": "deepscope.writer.spectrum",
    "channel_correlation_pb": "deepscope.writer.correlation",
    "saliency_pb": "deepscope.writer.saliency",
    "layer_values_pb": "deepscope.writer.layer_values",
    "layer_statistics_pb": "deepscope.writer.layer_statistics",
    "ActivationRows": "deepscope.writer.layer_statistics",
    "ParameterRows": "deepscope.writer.layer_statistics",
    "jacobian_pb": "deepscope.writer.jacobian",
    "confusion_matrix_pb": "deepscope.writer.confusion",
    "filters_pb": "deepscope.writer.filters",
    "feature_maps_pb": "deepscope.writer.filters",
    # Findings of a log dir (read side: no torch).
    "diagnose": "deepscope.diagnosis",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from deepscope.analysis.conv_operator import conv_operator_norm as conv_operator_norm
    from deepscope.analysis.conv_operator import conv_singular_values as conv_singular_values
    from deepscope.analysis.correlation import ChannelCorrelation as ChannelCorrelation
    from deepscope.analysis.correlation import CorrelationAccumulator as CorrelationAccumulator
    from deepscope.analysis.jacobian import JacobianSpectrum as JacobianSpectrum
    from deepscope.analysis.jacobian import jacobian_singular_values as jacobian_singular_values
    from deepscope.analysis.matching import ChannelMatching as ChannelMatching
    from deepscope.analysis.saliency import Attribution as Attribution
    from deepscope.analysis.saliency import attribute as attribute
    from deepscope.analysis.saliency import saliency as saliency
    from deepscope.analysis.spectrum import Spectrum as Spectrum
    from deepscope.analysis.spectrum import SpectrumMetrics as SpectrumMetrics
    from deepscope.analysis.spectrum import partial_spectrum_metrics as partial_spectrum_metrics
    from deepscope.analysis.spectrum import singular_values as singular_values
    from deepscope.analysis.spectrum import spectrum_metrics as spectrum_metrics
    from deepscope.diagnosis import diagnose as diagnose
    from deepscope.writer.cka import cka_matrix_pb as cka_matrix_pb
    from deepscope.writer.compare import CkaComparison as CkaComparison
    from deepscope.writer.compare import LayerComparison as LayerComparison
    from deepscope.writer.compare import compare as compare
    from deepscope.writer.compare import compare_cka as compare_cka
    from deepscope.writer.confusion import confusion_matrix_pb as confusion_matrix_pb
    from deepscope.writer.correlation import channel_correlation_pb as channel_correlation_pb
    from deepscope.writer.correlation import cross_network_fit_pb as cross_network_fit_pb
    from deepscope.writer.embeddings import log_embeddings as log_embeddings
    from deepscope.writer.filters import feature_maps_pb as feature_maps_pb
    from deepscope.writer.filters import filters_pb as filters_pb
    from deepscope.writer.jacobian import jacobian_pb as jacobian_pb
    from deepscope.writer.layer_statistics import ActivationRows as ActivationRows
    from deepscope.writer.layer_statistics import ParameterRows as ParameterRows
    from deepscope.writer.layer_statistics import layer_statistics_pb as layer_statistics_pb
    from deepscope.writer.layer_values import layer_values_pb as layer_values_pb
    from deepscope.writer.measurer import Measurer as Measurer
    from deepscope.writer.measurer import MeasurerStats as MeasurerStats
    from deepscope.writer.saliency import saliency_pb as saliency_pb
    from deepscope.writer.spectrum import spectrum_pb as spectrum_pb
    from deepscope.writer.summary_writer import SummaryWriter as SummaryWriter
    from deepscope.writer.update_ratios import ZERO_WEIGHT as ZERO_WEIGHT
    from deepscope.writer.update_ratios import update_ratios_pb as update_ratios_pb
    from deepscope.writer.watch import Monitor as Monitor
    from deepscope.writer.watch import MonitorStats as MonitorStats
    from deepscope.writer.watch import watch as watch
    from deepscope.writer.watch_confusion import ConfusionMatrices as ConfusionMatrices
    from deepscope.writer.watch_correlation import Correlations as Correlations
    from deepscope.writer.watch_embeddings import Embeddings as Embeddings
    from deepscope.writer.watch_filters import FeatureMaps as FeatureMaps
    from deepscope.writer.watch_filters import Filters as Filters
    from deepscope.writer.watch_jacobian import JacobianSpectra as JacobianSpectra
    from deepscope.writer.watch_layer_statistics import LayerStats as LayerStats
    from deepscope.writer.watch_layer_statistics import ParameterNorms as ParameterNorms
    from deepscope.writer.watch_saliency import Saliency as Saliency
    from deepscope.writer.watch_spectra import Spectra as Spectra
    from deepscope.writer.watch_update_ratios import UpdateRatios as UpdateRatios


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deepscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
