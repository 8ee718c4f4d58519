// Update ratios: one card per tag (heatmap of steps x parameters, and a line chart).

import { TagCard, type CardEntry } from "../card";
import { el } from "../dom";
import { DataStore } from "../store";
import type { KindView, ViewContext, ViewEntry } from "./kind_view";

export class UpdateRatiosView implements KindView {
  readonly element = el("div", "ds-kind-body");
  private readonly cards = new Map<string, TagCard>();
  private readonly store = new DataStore();

  constructor(private readonly ctx: ViewContext) {}

  update(entries: readonly ViewEntry[]): void {
    const byTag = new Map<string, CardEntry[]>();
    for (const e of entries) {
      const list = byTag.get(e.tag) ?? [];
      list.push({ run: e.run, color: e.color, info: e.info });
      byTag.set(e.tag, list);
    }
    for (const [tag, card] of this.cards) {
      if (!byTag.has(tag)) {
        card.dispose();
        card.element.remove();
        this.cards.delete(tag);
      }
    }
    for (const [tag, list] of byTag) {
      let card = this.cards.get(tag);
      const isNew = !card;
      if (!card) {
        card = new TagCard(tag, {
          store: this.store,
          visibility: this.ctx.visibility,
          generation: this.ctx.generation,
        });
        this.cards.set(tag, card);
      }
      this.element.appendChild(card.element); // new or moved into order
      card.update(list);
      if (isNew) card.refresh();
    }
  }

  refresh(): void {
    for (const card of this.cards.values()) card.refresh();
  }

  resize(): void {
    for (const card of this.cards.values()) card.resize();
  }

  dispose(): void {
    for (const card of this.cards.values()) card.dispose();
    this.cards.clear();
    this.element.replaceChildren();
  }
}
