// A kind drawn as grid cards (update ratios, layer values): one card per tag (heatmaps of
// steps x rows, and a line chart). The sidebar's tag filter narrows a card's rows when it
// does not match the tag itself (`encoder\.layer\.3` shows those rows of every such tag).

import { CardListView } from "../views/card_list";
import type { ViewContext, ViewEntry } from "../views/kind_view";
import { GridCard, type GridKind } from "./card";
import { DataStore, type FetchGrid } from "./store";

/**
 * Whether a grid view can show part of `entry`'s tag under a tag filter the tag does not
 * match: some of its rows (as the tag list names them) match. (The app lets such tags through.)
 */
export function narrowsInside(entry: ViewEntry, regex: RegExp): boolean {
  return (entry.info.names ?? []).some((n) => regex.test(n));
}

export class GridView extends CardListView<GridCard> {
  private readonly filterOf: () => RegExp | null;
  private readonly gridCards: Set<GridCard>;

  /** `kind`: what the grids are; `fetchGrid`: loads one run's grid of one tag. */
  constructor(ctx: ViewContext, kind: GridKind, fetchGrid: FetchGrid) {
    const store = new DataStore(fetchGrid);
    const cards = new Set<GridCard>();
    const filterOf = () => ctx.tagFilter();
    super({
      key: (entry) => entry.tag,
      create: (tag) => {
        const card = new GridCard(tag, {
          store,
          visibility: ctx.visibility,
          generation: ctx.generation,
          kind,
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
    this.gridCards = cards;
  }

  update(entries: readonly ViewEntry[]): void {
    super.update(entries);
    const regex = this.filterOf();
    const live = new Set(entries.map((e) => e.tag));
    for (const card of this.gridCards) {
      if (!live.has(card.tag)) this.gridCards.delete(card);
      else card.setSidebarFilter(regex);
    }
  }
}
