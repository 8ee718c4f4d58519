// Which view draws which kind. The sections' order, titles and subtitles come from the
// plugin's `kinds` route (deepscope/kinds.py); a kind the plugin lists with no view here
// gets a section saying so.

import { CkaView } from "../cka/view";
import { ConfusionView } from "../confusion/view";
import { CorrelationView } from "../correlation/view";
import { FiltersView } from "../filters/view";
import { JacobianView } from "../jacobian/view";
import { LayerStatisticsView, layerStatisticsFiltersInside } from "../layer_statistics/view";
import { LayerValuesView } from "../layer_values/view";
import { SaliencyView } from "../saliency/view";
import { SpectrumView } from "../spectrum/view";
import { narrowsInside } from "../update_ratios/grid_view";
import { UpdateRatiosView } from "../update_ratios/view";
import type { KindViewFactory } from "./kind_view";

export const KIND_VIEWS: ReadonlyMap<string, KindViewFactory> = new Map<string, KindViewFactory>([
  ["update_ratios", { create: (ctx) => new UpdateRatiosView(ctx), filtersInside: narrowsInside }],
  ["spectrum", { create: (ctx) => new SpectrumView(ctx) }],
  ["correlation", { create: (ctx) => new CorrelationView(ctx) }],
  ["cka", { create: (ctx) => new CkaView(ctx) }],
  ["saliency", { create: (ctx) => new SaliencyView(ctx) }],
  ["layer_values", { create: (ctx) => new LayerValuesView(ctx), filtersInside: narrowsInside }],
  ["layer_statistics", {
    create: (ctx) => new LayerStatisticsView(ctx),
    filtersInside: layerStatisticsFiltersInside,
  }],
  ["jacobian", { create: (ctx) => new JacobianView(ctx) }],
  ["confusion", { create: (ctx) => new ConfusionView(ctx) }],
  ["filters", { create: (ctx) => new FiltersView(ctx) }],
]);
