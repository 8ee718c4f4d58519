// A kind view made of cards, one per key (a tag, or a run): it groups the entries by key,
// keeps each card across updates (so its state and loaded data survive), drops the cards
// whose key is gone, and keeps the cards in the order of the entries.

import { el } from "../dom";
import type { KindView, RevealTarget, ViewEntry } from "./kind_view";

export interface Card {
  readonly element: HTMLElement;
  /** This card's entries, in order; called after every filter, run or refresh change. */
  update(entries: readonly ViewEntry[]): void;
  refresh(): void;
  resize?(): void;
  dispose(): void;
  /** Show `target` (its step, its row); the element to scroll to (default: the card). */
  reveal?(target: RevealTarget): HTMLElement | null;
}

export interface CardListOptions<C extends Card> {
  /** Which card shows an entry. */
  key: (entry: ViewEntry) => string;
  create: (key: string, entries: readonly ViewEntry[]) => C;
  /** Whether `card` can go on showing `entries` (e.g. its run's colour is unchanged); else a new one. */
  fits?: (card: C, entries: readonly ViewEntry[]) => boolean;
  /** Called once a new card has its first entries. */
  created?: (card: C) => void;
  /** Which card shows a reveal's target (default: the one keyed by its tag). */
  revealKey?: (target: RevealTarget) => string;
}

export class CardListView<C extends Card> implements KindView {
  readonly element = el("div", "ds-kind-body");
  private readonly cards = new Map<string, C>();

  constructor(private readonly options: CardListOptions<C>) {}

  update(entries: readonly ViewEntry[]): void {
    const byKey = new Map<string, ViewEntry[]>();
    for (const e of entries) {
      const key = this.options.key(e);
      const list = byKey.get(key);
      if (list) list.push(e);
      else byKey.set(key, [e]);
    }
    for (const [key, card] of this.cards) {
      if (!byKey.has(key)) this.drop(key, card);
    }
    for (const [key, list] of byKey) {
      let card = this.cards.get(key);
      if (card && this.options.fits && !this.options.fits(card, list)) {
        this.drop(key, card);
        card = undefined;
      }
      const isNew = !card;
      if (!card) {
        card = this.options.create(key, list);
        this.cards.set(key, card);
      }
      this.element.appendChild(card.element); // new or moved into order
      card.update(list);
      if (isNew) this.options.created?.(card);
    }
  }

  refresh(): void {
    for (const card of this.cards.values()) card.refresh();
  }

  resize(): void {
    for (const card of this.cards.values()) card.resize?.();
  }

  reveal(target: RevealTarget): HTMLElement | null {
    const card = this.cards.get(this.options.revealKey?.(target) ?? target.tag);
    if (!card) return null;
    return card.reveal?.(target) ?? card.element;
  }

  dispose(): void {
    for (const card of this.cards.values()) card.dispose();
    this.cards.clear();
    this.element.replaceChildren();
  }

  private drop(key: string, card: C): void {
    card.dispose();
    card.element.remove();
    this.cards.delete(key);
  }
}
