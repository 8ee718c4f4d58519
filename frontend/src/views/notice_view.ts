// Series the tab cannot draw, each as a card saying why and what to do: series whose
// metadata cannot be read (the `tags` route's `error`: damaged, of an unknown kind, written
// by a newer deepscope), and series of a kind the plugin serves but this tab has no view
// for. A card is drawn once and kept while its reason stays the same.

import type { KindInfo } from "../api";
import { el, nameCard, swatch } from "../dom";
import { addStyles } from "../style";
import type { KindView, ViewEntry } from "./kind_view";

addStyles(`
.ds-notice { border-left: 3px solid #c62828; }
.ds-notice-why { white-space: pre-wrap; word-break: break-word; margin: 6px 0 4px; font-size: 13px; color: #b71c1c; }
.ds-notice-todo { font-size: 12px; color: #424242; margin: 0; }
.ds-notice .ds-card-title { display: flex; align-items: center; gap: 6px; }
`);

/** Why a series cannot be drawn, and what the user can do about it. */
export interface Notice {
  why: string;
  todo: string;
}

/** A view of cards, one per series, each saying why it cannot be drawn (see `notice`). */
export class NoticeView implements KindView {
  readonly element = el("div", "ds-kind-body");
  private readonly cards = new Map<string, { signature: string; element: HTMLElement }>();

  constructor(private readonly notice: (entry: ViewEntry) => Notice) {}

  update(entries: readonly ViewEntry[]): void {
    const live = new Set<string>();
    let position = 0;
    for (const entry of entries) {
      const key = JSON.stringify([entry.run, entry.tag]);
      live.add(key);
      const notice = this.notice(entry);
      const signature = JSON.stringify([notice.why, notice.todo, entry.color]);
      let card = this.cards.get(key);
      if (card?.signature !== signature) {
        card?.element.remove();
        card = { signature, element: noticeCard(entry, notice) };
        this.cards.set(key, card);
      }
      // A card already in its place stays put; a new or moved one goes into order.
      const there = this.element.children.item(position);
      if (there !== card.element) this.element.insertBefore(card.element, there);
      position++;
    }
    for (const [key, card] of this.cards) {
      if (!live.has(key)) {
        card.element.remove();
        this.cards.delete(key);
      }
    }
  }

  refresh(): void {}

  resize(): void {}

  dispose(): void {
    this.cards.clear();
    this.element.replaceChildren();
  }
}

function noticeCard(entry: ViewEntry, notice: Notice): HTMLElement {
  const card = el("section", "ds-card ds-notice");
  nameCard(card, "tag-error", entry.run, entry.tag);
  card.dataset.kind = entry.info.kind;
  const title = el("h2", "ds-card-title");
  const run = el("strong", "", entry.run);
  run.style.color = entry.color;
  title.append(swatch(entry.color), run, el("span", "", `· ${entry.tag}`));
  const why = el("p", "ds-notice-why", notice.why);
  why.dataset.testid = "tag-error-why";
  const todo = el("p", "ds-notice-todo", notice.todo);
  todo.dataset.testid = "tag-error-todo";
  card.append(title, why, todo);
  return card;
}

/** Why and what to do for a series whose `tags` entry carries an error (or an unknown kind). */
export function unreadableNotice(entry: ViewEntry, kinds: ReadonlyMap<string, KindInfo>): Notice {
  const error = entry.info.error;
  const kind = entry.info.kind;
  if (error === undefined) {
    return {
      why: `cannot show this series: its kind “${kind}” is not one this deepscope serves`,
      todo:
        "It was probably written by a newer deepscope: upgrade deepscope " +
        "(pip install -U deepscope) and restart TensorBoard.",
    };
  }
  const why = `cannot show this series: ${error}`;
  // A newer schema version (metadata.NewerSchemaError): nothing is damaged.
  if (/newer than this reader/i.test(error)) {
    return { why, todo: "Upgrade deepscope (pip install -U deepscope) and restart TensorBoard." };
  }
  const known = kinds.get(kind);
  return {
    why,
    todo:
      (known ? `Its metadata says “${known.title}” but cannot be read. ` : "") +
      "If a newer deepscope wrote it, upgrade (pip install -U deepscope) and restart TensorBoard; " +
      "otherwise its event file is damaged: log this tag again (other tags and runs are unaffected).",
  };
}

/** Why and what to do for a series of a kind the plugin serves but this tab cannot draw. */
export function noViewNotice(kind: KindInfo): Notice {
  return {
    why: `this version of the tab has no view for “${kind.title}” series (kind ${kind.name})`,
    todo:
      "The tab and the plugin come from different deepscope versions: reinstall deepscope " +
      "(pip install -U deepscope) and restart TensorBoard; in a source checkout, rebuild the " +
      "tab (cd frontend && npm run build).",
  };
}
