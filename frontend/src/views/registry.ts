// Which view draws which kind, in the order the sections appear.

import { CorrelationView } from "../correlation/view";
import { SaliencyView } from "../saliency/view";
import { SpectrumView } from "../spectrum/view";
import type { KindViewFactory } from "./kind_view";
import { UpdateRatiosView, narrowsInside } from "./update_ratios_view";

export const KIND_VIEWS: ReadonlyArray<[kind: string, factory: KindViewFactory]> = [
  [
    "update_ratios",
    {
      title: "Update ratios",
      subtitle: "‖ΔW‖/‖W‖ per parameter and optimizer step: is each layer's learning rate right?",
      create: (ctx) => new UpdateRatiosView(ctx),
      filtersInside: narrowsInside,
    },
  ],
  [
    "spectrum",
    {
      title: "Singular value spectra",
      subtitle: "Is a layer well conditioned, collapsing in rank, exploding, or still random?",
      create: (ctx) => new SpectrumView(ctx),
    },
  ],
  [
    "correlation",
    {
      title: "Channel correlations",
      subtitle: "Are channels redundant or dead? Did two networks learn the same features?",
      create: (ctx) => new CorrelationView(ctx),
    },
  ],
  [
    "saliency",
    {
      title: "Saliency",
      subtitle: "What in the input drives the prediction, and how does that change with training?",
      create: (ctx) => new SaliencyView(ctx),
    },
  ],
];
