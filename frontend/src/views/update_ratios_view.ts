// Update ratios: one card per tag (heatmap of steps x parameters, and a line chart).

import { TagCard } from "../card";
import { DataStore } from "../store";
import { CardListView } from "./card_list";
import type { ViewContext } from "./kind_view";

export class UpdateRatiosView extends CardListView<TagCard> {
  constructor(ctx: ViewContext) {
    const store = new DataStore();
    super({
      key: (entry) => entry.tag,
      create: (tag) =>
        new TagCard(tag, { store, visibility: ctx.visibility, generation: ctx.generation }),
      created: (card) => card.refresh(),
    });
  }
}
