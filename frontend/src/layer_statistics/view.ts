// Layer statistics: one card per tag (the activations measurer's module outputs, the
// parameter-norm measurer's parameters), each drawing a chosen statistic as a layers × steps
// heatmap, through depth, in a flagged table at a step, and for parameters their gradient
// norms over steps, for module outputs a layer's covariance spectrum. The sidebar's tag
// filter narrows a card's rows when it does not match the tag itself.

import { CardListView } from "../views/card_list";
import type { ViewContext, ViewEntry } from "../views/kind_view";
import { LayerStatisticsCard } from "./card";

export class LayerStatisticsView extends CardListView<LayerStatisticsCard> {
  private readonly ctx: ViewContext;
  private readonly liveCards: Set<LayerStatisticsCard>;

  constructor(ctx: ViewContext) {
    const cards = new Set<LayerStatisticsCard>();
    super({
      key: (entry) => entry.tag,
      create: (tag) => {
        const card = new LayerStatisticsCard(tag, { visibility: ctx.visibility, generation: ctx.generation });
        cards.add(card);
        return card;
      },
      created: (card) => {
        card.setSidebarFilter(ctx.tagFilter());
        card.refresh();
      },
    });
    this.ctx = ctx;
    this.liveCards = cards;
  }

  update(entries: readonly ViewEntry[]): void {
    super.update(entries);
    const live = new Set(entries.map((e) => e.tag));
    for (const card of this.liveCards) {
      if (!live.has(card.tag)) this.liveCards.delete(card);
      else card.setSidebarFilter(this.ctx.tagFilter());
    }
  }
}

/**
 * Whether the view can show part of `entry`'s tag under a sidebar filter the tag does not
 * match. The tag list names no rows of a layer statistics series (each step names its
 * own), so unless it does, every such tag goes to the view, whose card narrows its layers
 * and parameters to those the filter matches (saying so when none does).
 */
export function layerStatisticsFiltersInside(entry: ViewEntry, regex: RegExp): boolean {
  const names = entry.info.names;
  return names === undefined || names.some((n) => regex.test(n));
}
