// A kind's section of the tab (update ratios, spectra, correlations, saliency, layer values).
// The app filters tags (regex) and runs (sidebar), then hands each kind's view the
// (run, tag) pairs it should show; the view fetches and draws them. The app builds a
// section's view only once the section comes near the viewport.

import type { TagInfo } from "../api";
import type { Visibility } from "../dom";

export interface ViewEntry {
  run: string;
  /** The run's colour (palette.runColor of its index among all runs). */
  color: string;
  tag: string;
  info: TagInfo;
}

export interface ViewContext {
  visibility: Visibility;
  /** Bumped on every refresh (TensorBoard's reload, the 30 s timer, the button). */
  generation: () => number;
  /**
   * The sidebar's tag filter, a case-insensitive regex; null when empty or invalid. A view
   * that declares `filtersInside` narrows what it shows of a tag by it.
   */
  tagFilter: () => RegExp | null;
}

/**
 * Where something is shown (a finding's evidence): a series (run, tag) at a step and, for
 * a series of rows, one row; the view brings its card there, as if the user had clicked.
 */
export interface RevealTarget {
  run: string;
  tag: string;
  step: number;
  /** A row of the series: an update-ratio parameter, a layer-statistics layer or parameter. */
  name?: string;
  /** Layer statistics: the statistic whose chart shows it (its part follows from it). */
  statistic?: string;
}

export interface KindView {
  readonly element: HTMLElement;
  /** The pairs to show now, in tag order; called after every filter, run or refresh change. */
  update(entries: readonly ViewEntry[]): void;
  /** Reload data (a new refresh generation); keep showing the old data until it arrives. */
  refresh(): void;
  /** The tab's width changed. */
  resize(): void;
  dispose(): void;
  /**
   * Show `target` (a step, a row: now, or once its data has come) and return the element to
   * scroll into view; null when the view does not show `target`'s (run, tag). Without it,
   * the tab scrolls to the section.
   */
  reveal?(target: RevealTarget): HTMLElement | null;
}

/** How the tab builds a kind's view; its section's title and subtitle come from the `kinds` route. */
export interface KindViewFactory {
  create(ctx: ViewContext): KindView;
  /**
   * For a view that filters inside its tags (e.g. update ratios narrow their parameters):
   * whether `entry`, whose tag the filter `regex` does not match, still has something that
   * matches. Such entries are handed to the view, which narrows them by `ctx.tagFilter()`.
   * Without it, a tag the filter does not match is left out.
   */
  filtersInside?(entry: ViewEntry, regex: RegExp): boolean;
}
