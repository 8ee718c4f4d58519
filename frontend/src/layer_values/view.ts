// Layer values: users' own per-layer quantities (a measurer's `writer.add_layer_values`),
// drawn like update ratios (a grid card per tag: heatmaps per run, a line chart) on the
// quantity's own scale (log or linear) and labels, without a rule of thumb.

import { GridView } from "../update_ratios/grid_view";
import type { GridKind } from "../update_ratios/card";
import type { ViewContext } from "../views/kind_view";
import { LAYER_VALUE, fetchLayerValues } from "./api";

const LAYER_VALUES: GridKind = {
  what: "Layer values",
  rowNoun: "layer",
  quantity: LAYER_VALUE,
  zeroWeightLegend: false,
};

export class LayerValuesView extends GridView {
  constructor(ctx: ViewContext) {
    super(ctx, LAYER_VALUES, fetchLayerValues);
  }
}
