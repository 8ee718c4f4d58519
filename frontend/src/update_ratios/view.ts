// Update ratios: one grid card per tag, ‖ΔW‖/‖W‖ of each parameter at each optimizer step
// (heatmaps per run and a line chart with the 1e-3 rule of thumb).

import type { ViewContext } from "../views/kind_view";
import { UPDATE_RATIO, fetchUpdateRatios } from "./api";
import type { GridKind } from "./card";
import { GridView } from "./grid_view";

const UPDATE_RATIOS: GridKind = {
  what: "Update ratios",
  rowNoun: "parameter",
  quantity: UPDATE_RATIO,
  zeroWeightLegend: true,
};

export class UpdateRatiosView extends GridView {
  constructor(ctx: ViewContext) {
    super(ctx, UPDATE_RATIOS, fetchUpdateRatios);
  }
}
