// Small DOM helpers: text is always set as text, never parsed as HTML.

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function swatch(color: string): HTMLSpanElement {
  const s = el("span", "ds-swatch");
  s.style.background = color;
  return s;
}

/** A card's head: its title (text, or nodes: a run's swatch and name), with a subtitle line under
 * it when given, then `extras`. */
export function cardHead(
  title: string | readonly (Node | string)[],
  sub: HTMLElement | null,
  ...extras: (Node | string)[]
): HTMLDivElement {
  const head = el("div", "ds-card-head");
  const titles = el("div");
  const h2 = el("h2", "ds-card-title");
  if (typeof title === "string") h2.textContent = title;
  else h2.append(...title);
  titles.append(h2);
  if (sub) titles.append(sub);
  head.append(titles, ...extras);
  return head;
}

/** Names a card for the tests and the tab's links: data-testid, and its run and tag. */
export function nameCard(card: HTMLElement, testid: string, run: string, tag: string): void {
  card.dataset.testid = testid;
  card.dataset.run = run;
  card.dataset.tag = tag;
}

/** An error line about a run: its swatch and its name in its colour, then `message`. */
export function runError(run: string, color: string, message: string): HTMLDivElement {
  const box = el("div", "ds-error");
  const name = el("strong", "", run);
  name.style.color = color;
  box.append(swatch(color), " ", name, ` — ${message}`);
  return box;
}

/** Calls back when an element scrolls into (or near) view; one observer for the tab. */
export class Visibility {
  private readonly io: IntersectionObserver | null;
  private readonly callbacks = new Map<Element, (visible: boolean) => void>();

  constructor() {
    this.io =
      typeof IntersectionObserver === "function"
        ? new IntersectionObserver(
            (entries) => {
              for (const entry of entries) this.callbacks.get(entry.target)?.(entry.isIntersecting);
            },
            { rootMargin: "300px 0px" },
          )
        : null;
  }

  observe(target: Element, callback: (visible: boolean) => void): void {
    this.callbacks.set(target, callback);
    if (this.io) this.io.observe(target);
    else callback(true);
  }

  unobserve(target: Element): void {
    this.callbacks.delete(target);
    this.io?.unobserve(target);
  }
}
