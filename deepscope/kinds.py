"""The kind registry: the one place every deepscope kind is declared.

A *kind* is one thing deepscope measures and shows (update ratios, spectra,
channel correlations, saliency, ...). Everything that lists kinds is derived
from `KINDS`: `metadata.py` (enum ↔ name, data class), the plugin's route
table and `/kinds` (the tab's sections, in this order), and the tests'
parametrisation. Adding a kind is one entry here plus its own files; see
docs/adding_a_kind.md.

This module is shared by the writer and the plugin, so it imports neither
torch nor TensorBoard's server: routes and measurers are named by import path
("module:attribute") and imported only by the side that uses them.
"""

from __future__ import annotations

import dataclasses
import importlib

from tensorboard.compat.proto import summary_pb2

from deepscope.proto import deepscope_pb2 as pb


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of deepscope series.

    Attributes:
      name: the kind's name in routes, `/tags` and the tab, e.g. "spectrum".
      enum: its `deepscope.Kind` value in `PluginData.kind`.
      data_class: how TensorBoard stores it: `DATA_CLASS_TENSOR` for small
        per-step payloads, `DATA_CLASS_BLOB_SEQUENCE` for large ones.
      details: the `PluginData.details` oneof field holding its `*Info`.
      step_message: the `*Step` message one step's payload is.
      title, subtitle: the tab's section heading and the question it answers.
      routes: "module:Class" of its plugin routes (the Class takes a
        `RouteContext` and has `apps()`, route path → WSGI app).
      measurer: "module:Class" of its `watch()` measurer, or None.
    """

    name: str
    enum: int
    data_class: int
    details: str
    step_message: type
    title: str
    subtitle: str
    routes: str
    measurer: str | None = None

    def load_routes(self) -> type:
        """The routes class (imports its module: plugin side only)."""
        return _load(self.routes)

    def load_measurer(self) -> type | None:
        """The measurer class (imports its module, which needs torch: writer side only)."""
        return None if self.measurer is None else _load(self.measurer)


def _load(path: str):
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


KINDS: tuple[Kind, ...] = (
    Kind(
        name="update_ratios",
        enum=pb.UPDATE_RATIOS,
        data_class=summary_pb2.DATA_CLASS_TENSOR,
        details="update_ratios",
        step_message=pb.UpdateRatiosStep,
        title="Update ratios",
        subtitle="‖ΔW‖/‖W‖ per parameter and optimizer step: is each layer's learning rate right?",
        routes="deepscope.tb_plugin.update_ratio_routes:UpdateRatioRoutes",
        measurer="deepscope.writer.watch_update_ratios:UpdateRatios",
    ),
    Kind(
        name="spectrum",
        enum=pb.SPECTRUM,
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
        details="spectrum",
        step_message=pb.SpectrumStep,
        title="Singular value spectra",
        subtitle="Is a layer well conditioned, collapsing in rank, exploding, or still random?",
        routes="deepscope.tb_plugin.spectrum_routes:SpectrumRoutes",
        measurer="deepscope.writer.watch_spectra:Spectra",
    ),
    Kind(
        name="correlation",
        enum=pb.CORRELATION,
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
        details="correlation",
        step_message=pb.CorrelationStep,
        title="Channel correlations",
        subtitle="Are channels redundant or dead? Did two networks learn the same features?",
        routes="deepscope.tb_plugin.correlation_routes:CorrelationRoutes",
        measurer="deepscope.writer.watch_correlation:Correlations",
    ),
    Kind(
        name="cka",
        enum=pb.CKA,
        data_class=summary_pb2.DATA_CLASS_TENSOR,  # layers_a x layers_b float32 a step: small
        details="cka",
        step_message=pb.CkaStep,
        title="Layer similarity (CKA)",
        subtitle="Which layers of two networks (or checkpoints) represent the probe alike?",
        routes="deepscope.tb_plugin.cka_routes:CkaRoutes",
        measurer=None,  # deepscope.compare_cka() logs it
    ),
    Kind(
        name="saliency",
        enum=pb.SALIENCY,
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
        details="saliency",
        step_message=pb.SaliencyStep,
        title="Saliency",
        subtitle="What in the input drives the prediction, and how does that change with training?",
        routes="deepscope.tb_plugin.saliency_routes:SaliencyRoutes",
        measurer="deepscope.writer.watch_saliency:Saliency",
    ),
    Kind(
        name="layer_values",
        enum=pb.LAYER_VALUES,
        data_class=summary_pb2.DATA_CLASS_TENSOR,
        details="layer_values",
        step_message=pb.LayerValuesStep,
        title="Layer values",
        subtitle="Your own per-layer measurements (writer.add_layer_values), layer by step",
        routes="deepscope.tb_plugin.layer_values_routes:LayerValuesRoutes",
        measurer=None,  # a carrier: users' own measurers log into it
    ),
    Kind(
        name="layer_statistics",
        enum=pb.LAYER_STATISTICS,
        data_class=summary_pb2.DATA_CLASS_TENSOR,
        details="layer_statistics",
        step_message=pb.LayerStatisticsStep,
        title="Layer statistics",
        subtitle=(
            "Are activations and gradients healthy through depth? "
            "Dead or saturated units? Rank collapse?"
        ),
        routes="deepscope.tb_plugin.layer_statistics_routes:LayerStatisticsRoutes",
        measurer="deepscope.writer.watch_layer_statistics:LayerStats",
    ),
    Kind(
        name="jacobian",
        enum=pb.JACOBIAN,
        data_class=summary_pb2.DATA_CLASS_TENSOR,
        details="jacobian",
        step_message=pb.JacobianStep,
        title="Jacobian singular values",
        subtitle=(
            "Is each layer, and the whole network, near isometry (all singular values near 1)?"
        ),
        routes="deepscope.tb_plugin.jacobian_routes:JacobianRoutes",
        measurer="deepscope.writer.watch_jacobian:JacobianSpectra",
    ),
    Kind(
        name="confusion",
        enum=pb.CONFUSION,
        data_class=summary_pb2.DATA_CLASS_TENSOR,  # C x C counts a step: small
        details="confusion",
        step_message=pb.ConfusionStep,
        title="Confusion matrices",
        subtitle="Which classes does the model mistake for which? Precision, recall, F1 per class",
        routes="deepscope.tb_plugin.confusion_routes:ConfusionRoutes",
        measurer="deepscope.writer.watch_confusion:ConfusionMatrices",
    ),
    Kind(
        name="filters",
        enum=pb.FILTERS,
        # a ResNet-18 conv1 weight is 19 kB a step, a 64 x 56 x 56 feature map 401 kB
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
        details="filters",
        step_message=pb.FiltersStep,
        title="Filters and feature maps",
        subtitle="What has each conv filter learned, and what does each channel see in a probe?",
        routes="deepscope.tb_plugin.filters_routes:FiltersRoutes",
        measurer="deepscope.writer.watch_filters:Filters",
    ),
)

BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}
BY_ENUM: dict[int, Kind] = {kind.enum: kind for kind in KINDS}


def by_name(name: str) -> Kind:
    """The kind called `name`; ValueError listing the known ones otherwise."""
    kind = BY_NAME.get(name)
    if kind is None:
        raise ValueError(f"unknown deepscope kind {name!r}; known kinds: {', '.join(BY_NAME)}")
    return kind
