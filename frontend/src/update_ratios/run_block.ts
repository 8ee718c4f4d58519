// One run in a grid card: its name, counts and badges (non-finite values, ‖W‖ = 0 cells),
// its warnings, and its heatmap; loads its data when it comes into view.

import type { ColorScale } from "../colormap";
import { Visibility, el, swatch } from "../dom";
import { formatInt } from "../format";
import { ReloadWhenVisible } from "../reload_when_visible";
import { ZERO_WEIGHT_TEXT } from "./format";
import type { LayerGrid } from "./grid";
import { Heatmap, type GroupSummary, type HeatRow, type PlotFrame } from "./heatmap";
import type { RowSet } from "./rows";
import type { DataStore } from "./store";

/** What a run block needs from its card. */
export interface BlockHost {
  readonly tag: string;
  /** What the grid shows ("Update ratios") and what a row is ("parameter"). */
  readonly what: string;
  readonly rowNoun: string;
  readonly store: DataStore;
  readonly visibility: Visibility;
  generation(): number;
  onRowClick(row: HeatRow): void;
  isSelected(name: string): boolean;
  /** Data arrived: recompute and redraw. */
  onData(): void;
}

export class RunBlock {
  readonly element: HTMLDivElement;
  readonly heatmap: Heatmap;
  private readonly meta: HTMLSpanElement;
  private readonly status: HTMLDivElement;
  private readonly warnings: HTMLDivElement;
  private readonly reload: ReloadWhenVisible;
  private drawn: { data: LayerGrid; width: number; rows: string } | null = null;

  constructor(
    private readonly host: BlockHost,
    readonly run: string,
    readonly color: string,
  ) {
    this.element = el("div", "ds-runblock");
    this.element.dataset.run = run;
    const head = el("div", "ds-runblock-head");
    const name = el("span", "ds-runblock-name", run);
    this.meta = el("span", "ds-muted");
    head.append(swatch(color), name, this.meta);
    this.warnings = el("div");
    this.status = el("div", "ds-placeholder", "Loading…");
    this.heatmap = new Heatmap({
      run,
      tag: host.tag,
      runColor: color,
      what: host.what,
      rowNoun: host.rowNoun,
      onRowClick: (row) => host.onRowClick(row),
      isSelected: (name) => host.isSelected(name),
    });
    this.heatmap.element.hidden = true;
    this.element.append(head, this.warnings, this.status, this.heatmap.element);
    this.reload = new ReloadWhenVisible({ reload: () => this.load(), generation: () => host.generation() });
    this.reload.watch(host.visibility, this.element);
  }

  dispose(): void {
    this.reload.dispose();
    this.element.remove();
  }

  /** A new refresh generation: load this run's data now if in view, else once it is. */
  refresh(): void {
    this.reload.refresh();
  }

  /** This run's data for the current generation, then a redraw. The store fetches only what
   * it neither holds nor is fetching; the redraw waits for a fetch another view of the same
   * store started (a layer-statistics card loads a new statistic for its charts first), which
   * would otherwise draw this heatmap only at the next refresh. */
  private load(): void {
    const gen = this.host.generation();
    this.host.store.load(this.run, this.host.tag, gen).then(() => this.host.onData());
  }

  invalidate(): void {
    this.drawn = null;
  }

  /** Whether render() would draw anything (new data, rows, width, or forced). */
  needsRender(rowSet: RowSet, width: number, force: boolean): boolean {
    const loaded = this.host.store.get(this.run, this.host.tag);
    if (!loaded) return false;
    if (loaded.error !== undefined || !loaded.data) return true;
    const d = this.drawn;
    return force || !d || d.data !== loaded.data || d.width !== width || d.rows !== rowSet.signature;
  }

  /** Compute the heatmap's columns ahead of drawing it; whether that took any work. */
  prepare(width: number, frame: PlotFrame): boolean {
    const data = this.host.store.get(this.run, this.host.tag)?.data;
    if (!data || data.steps.length === 0 || data.names.length === 0) return false;
    Heatmap.prepare(data, width, frame);
    return true;
  }

  render(
    color: ColorScale,
    frame: PlotFrame,
    rowSet: RowSet,
    summary: GroupSummary,
    width: number,
    force: boolean,
  ): boolean {
    const loaded = this.host.store.get(this.run, this.host.tag);
    if (!loaded) return false;
    if (loaded.error !== undefined) {
      this.status.className = "ds-error";
      this.status.dataset.testid = "load-error";
      this.status.textContent = loaded.error;
      this.status.hidden = false;
      this.heatmap.element.hidden = true;
      this.meta.textContent = "";
      this.warnings.replaceChildren();
      this.drawn = null;
      return false;
    }
    const data = loaded.data;
    if (!data) return false;
    const d = this.drawn;
    if (!force && d && d.data === data && d.width === width && d.rows === rowSet.signature) return false;
    delete this.status.dataset.testid;
    const noun = this.host.rowNoun;
    this.meta.replaceChildren(`${formatInt(data.steps.length)} steps × ${formatInt(data.names.length)} ${noun}s`);
    if (data.steps.length) {
      this.meta.append(` · steps ${formatInt(data.steps[0])}–${formatInt(data.steps[data.steps.length - 1])}`);
    }
    if (data.nonFinite > 0) {
      const badge = el("span", "ds-badge ds-badge-bad", `${formatInt(data.nonFinite)} non-finite`);
      badge.title = "values that are NaN or ±Inf (red cells)";
      this.meta.append(" ", badge);
    }
    const zeros = countOnes(data.zeroWeight);
    if (zeros > 0) {
      const badge = el("span", "ds-badge", `${formatInt(zeros)} × ‖W‖ = 0`);
      badge.dataset.testid = "zero-weight-count";
      badge.style.background = "#eceff1";
      badge.style.color = "#455a64";
      badge.title = `${ZERO_WEIGHT_TEXT}: the weight was exactly zero before the step (e.g. a fresh bias); not a fault`;
      this.meta.append(" ", badge);
    }
    this.warnings.replaceChildren(...data.warnings.map((w) => el("div", "ds-warn", w)));
    if (data.steps.length === 0 || data.names.length === 0) {
      this.showStatus("No steps logged yet.");
    } else if (rowSet.rows.length === 0) {
      this.showStatus(`No ${noun} matches the filter.`);
    } else {
      this.status.hidden = true;
      this.heatmap.element.hidden = false;
      this.heatmap.draw(data, rowSet.rows, summary, color, width, frame);
    }
    this.drawn = { data, width, rows: rowSet.signature };
    return true;
  }

  private showStatus(text: string): void {
    this.status.className = "ds-placeholder";
    this.status.textContent = text;
    this.status.hidden = false;
    this.heatmap.element.hidden = true;
  }
}

function countOnes(mask: Uint8Array): number {
  let n = 0;
  for (let k = 0; k < mask.length; k++) n += mask[k];
  return n;
}
