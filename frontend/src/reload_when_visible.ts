// "Reload when visible and stale": the one helper for it. A view (or the tab) loads its data
// only while it can be seen; a refresh that comes while it cannot be seen marks the data
// stale, and it loads once it comes into view.
//
// API
//   const reload = new ReloadWhenVisible({ reload: () => this.load(), generation: ctx.generation });
//   reload.watch(ctx.visibility, element)  // follow an element (near the viewport = visible)
//   reload.watchDocument()                 // or follow the page (not hidden = visible)
//   reload.refresh()     // a refresh happened: reload now if visible and stale, else once visible
//   reload.invalidate()  // what to show changed (a tag, the runs): stale even at this generation
//   reload.markLoaded()  // the caller loaded by itself: fresh at this generation
//   reload.visible       // whether the watched target is visible now
//   reload.dispose()     // stop watching
//
// Stale means: never loaded, invalidated, loaded at an older refresh generation (option
// `generation`, e.g. ViewContext.generation), or the option `stale()` says so (e.g. the tab's
// "last refresh older than 30 s"). `reload` is called only while visible, and marks the
// data fresh at the generation of the call.

import type { Visibility } from "./dom";

export interface ReloadWhenVisibleOptions {
  /** Load (or reload) the data; called only while the target is visible. */
  reload: () => void;
  /** The refresh generation now; data loaded at another one is stale. Default: always 0. */
  generation?: () => number;
  /** An extra staleness test (e.g. the data is older than a period). Default: never. */
  stale?: () => boolean;
}

/** Whether data loaded at `loaded` (null: never, or invalidated) is stale at `now`. */
export function isStale(loaded: number | null, now: number, extra: boolean): boolean {
  return loaded === null || loaded !== now || extra;
}

export class ReloadWhenVisible {
  private isVisible = false;
  /** The generation the data was loaded at; null when never loaded or invalidated. */
  private loaded: number | null = null;
  private unwatch: (() => void) | null = null;

  constructor(private readonly options: ReloadWhenVisibleOptions) {}

  /** Whether the watched target is visible now (false before `watch`). */
  get visible(): boolean {
    return this.isVisible;
  }

  /** Whether the data is stale now (see the file's head). */
  get stale(): boolean {
    const now = this.options.generation?.() ?? 0;
    return isStale(this.loaded, now, this.options.stale?.() ?? false);
  }

  /** Follow `element`: visible while it is near the viewport (`visibility`'s observer). */
  watch(visibility: Visibility, element: Element): void {
    this.dispose();
    visibility.observe(element, (visible) => this.setVisible(visible));
    this.unwatch = () => visibility.unobserve(element);
  }

  /** Follow the page: visible while the document is not hidden (another browser tab...). */
  watchDocument(): void {
    this.dispose();
    const listener = () => this.setVisible(!document.hidden);
    document.addEventListener("visibilitychange", listener);
    this.isVisible = !document.hidden;
    this.unwatch = () => document.removeEventListener("visibilitychange", listener);
  }

  /** The target became visible or not (what `watch` calls; for targets watched otherwise). */
  setVisible(visible: boolean): void {
    this.isVisible = visible;
    if (visible) this.refresh();
  }

  /** Reload now if visible and stale; when not visible, the reload waits until it is. */
  refresh(): void {
    if (!this.isVisible || !this.stale) return;
    this.loaded = this.options.generation?.() ?? 0;
    this.options.reload();
  }

  /** What to show changed: stale at any generation; reloads now if visible. */
  invalidate(): void {
    this.loaded = null;
    this.refresh();
  }

  /** The caller loaded the data itself: fresh at the generation now. */
  markLoaded(): void {
    this.loaded = this.options.generation?.() ?? 0;
  }

  dispose(): void {
    this.unwatch?.();
    this.unwatch = null;
  }
}
