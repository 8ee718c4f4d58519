// Update ratios: one card per tag (heatmap of steps x parameters, and a line chart).
// The sidebar's tag filter narrows a card's parameters when it does not match the tag
// itself (`encoder\.layer\.3` shows those parameters of every update-ratio tag).

import { TagCard } from "../card";
import { DataStore } from "../store";
import { CardListView } from "./card_list";
import type { ViewContext, ViewEntry } from "./kind_view";

/**
 * Whether the update-ratio view can show part of `entry`'s tag under a tag filter the tag
 * does not match: some of its parameters match. (The app lets such tags through.)
 */
export function narrowsInside(entry: ViewEntry, regex: RegExp): boolean {
  return entry.info.kind === "update_ratios" && (entry.info.names ?? []).some((n) => regex.test(n));
}

export class UpdateRatiosView extends CardListView<TagCard> {
  private readonly filterOf: () => RegExp | null;
  private readonly tagCards: Set<TagCard>;

  constructor(ctx: ViewContext) {
    const store = new DataStore();
    const cards = new Set<TagCard>();
    const filterOf = () => ctx.tagFilter();
    super({
      key: (entry) => entry.tag,
      create: (tag) => {
        const card = new TagCard(tag, {
          store,
          visibility: ctx.visibility,
          generation: ctx.generation,
        });
        cards.add(card);
        return card;
      },
      created: (card) => {
        card.setSidebarFilter(filterOf());
        card.refresh();
      },
    });
    this.filterOf = filterOf;
    this.tagCards = cards;
  }

  update(entries: readonly ViewEntry[]): void {
    super.update(entries);
    const regex = this.filterOf();
    const live = new Set(entries.map((e) => e.tag));
    for (const card of this.tagCards) {
      if (!live.has(card.tag)) this.tagCards.delete(card);
      else card.setSidebarFilter(regex);
    }
  }
}
