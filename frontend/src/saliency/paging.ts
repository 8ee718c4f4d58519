// The grid's pages of probe samples: PAGE samples per request, with ‹ › buttons and a
// "samples 1–8 of 20" label; hidden while every sample fits on one page.

import { el } from "../dom";

/** Samples per page of the grid (one request). */
export const PAGE = 8;

/** The `samples` argument of the saliency route for the page at `offset`: "0-7". */
export function samplesRange(offset: number, numSamples: number): string {
  return `${offset}-${Math.max(offset, Math.min(numSamples, offset + PAGE) - 1)}`;
}

export class Pager {
  readonly element = el("span", "ds-sal-pager");
  private readonly label = el("span", "ds-muted");
  private readonly prev = el("button", "", "‹");
  private readonly next = el("button", "", "›");
  /** The first sample of the page shown. */
  offset = 0;
  private numSamples = 0;

  /** @param onPage called after the user turned a page. */
  constructor(private readonly onPage: () => void) {
    this.prev.dataset.testid = "saliency-prev";
    this.next.dataset.testid = "saliency-next";
    this.prev.setAttribute("aria-label", "Previous samples");
    this.next.setAttribute("aria-label", "Next samples");
    this.prev.addEventListener("click", () => this.page(-1));
    this.next.addEventListener("click", () => this.page(1));
    this.label.dataset.testid = "saliency-pager";
    this.element.append(this.prev, this.label, this.next);
  }

  /** The number of probe samples of the series (from its steps route). */
  setSamples(numSamples: number): void {
    this.numSamples = numSamples;
    this.render();
  }

  /**
   * The number of probe samples as a step's maps tell it, when the steps route could not
   * (its newest step is damaged, so it said 0). Whether it learned them now.
   */
  learnSamples(numSamples: number): boolean {
    if (this.numSamples !== 0 || numSamples <= 0) return false;
    this.setSamples(numSamples);
    return true;
  }

  /** Back to the first page (a new series). */
  reset(): void {
    this.offset = 0;
    this.numSamples = 0;
    this.render();
  }

  /**
   * The route's `samples` argument for this page; "" (the route's default samples) while
   * the number of samples is unknown.
   */
  samples(): string {
    return this.numSamples > 0 ? samplesRange(this.offset, this.numSamples) : "";
  }

  private page(direction: number): void {
    const next = this.offset + direction * PAGE;
    if (next < 0 || next >= this.numSamples) return;
    this.offset = next;
    this.render();
    this.onPage();
  }

  private render(): void {
    const n = this.numSamples;
    this.element.hidden = n <= PAGE;
    const hi = Math.min(n, this.offset + PAGE);
    this.label.textContent = `samples ${this.offset + 1}–${hi} of ${n}`;
    this.prev.disabled = this.offset === 0;
    this.next.disabled = hi >= n;
  }
}
