// One card per tag of a grid kind (update ratios, layer values): a heatmap per selected run
// (one shared colour scale, the same rows in every run), then a line chart of the chosen
// rows with the runs overlaid. At 200 rows they are grouped by module path (collapsible,
// numbered blocks under one row) and a filter box narrows the heatmaps and the chart.
// The card orchestrates; its parts are RowModel (rows.ts), CardTools (tools.ts), RunBlock
// (run_block.ts), ChartPanel (chart_panel.ts) and colorLegend (color_legend.ts).

import { ColorScale } from "../colormap";
import { Visibility, cardHead, el } from "../dom";
import { ReloadWhenVisible } from "../reload_when_visible";
import { stepDomain } from "../stats";
import { ChartPanel, type RunData } from "./chart_panel";
import { colorLegend } from "./color_legend";
import type { LayerGrid, Quantity } from "./grid";
import type { HeatRow, PlotFrame } from "./heatmap";
import type { Mark } from "./mark";
import { MIN_LEFT, RowModel, type RowSet } from "./rows";
import { RunBlock, type BlockHost } from "./run_block";
import { CardTools } from "./tools";
import { mostExtreme, scaledExtent } from "./stats";
import type { DataStore } from "./store";

/** A run of the card's tag, with its colour and what the tag list says of the tag. */
export interface CardEntry {
  run: string;
  color: string;
  /** The tag's rows as the tag list gives them (shown before the data arrives). */
  info: { names?: readonly string[] };
}

/** What a kind drawn by grid cards says about itself. */
export interface GridKind {
  /** What its grids show, e.g. "Update ratios" (accessible names). */
  what: string;
  /** What a row is: "parameter" or "layer". */
  rowNoun: string;
  /** The quantity until data arrives (then the data's own). */
  quantity: Quantity;
  /** Whether the legend explains the ‖W‖ = 0 cells (update ratios). */
  zeroWeightLegend: boolean;
}

export interface CardContext {
  store: DataStore;
  visibility: Visibility;
  generation: () => number;
  kind: GridKind;
}

export class GridCard implements BlockHost {
  readonly element: HTMLElement;
  readonly what: string;
  readonly rowNoun: string;
  readonly store: DataStore;
  readonly visibility: Visibility;
  private readonly legendSlot: HTMLDivElement;
  private readonly tools: CardTools;
  private readonly blocksEl: HTMLDivElement;
  private readonly chart: ChartPanel;
  private readonly blocks = new Map<string, RunBlock>();
  private readonly model = new RowModel();
  private runs: CardEntry[] = [];
  /** Names the tag list gives for this tag (before any data). */
  private listedNames: string[] = [];
  private color: ColorScale | null = null;
  private frame: PlotFrame = { left: MIN_LEFT, domain: [0, 1] };
  /** Rows in the line chart; null until a default is chosen from the data. */
  private selected: string[] | null = null;
  /** The row the chart opened on (the most extreme), while it is still shown. */
  private autoPick: string | null = null;
  /** Loads every run's data while the chart is in view (it plots them all). */
  private readonly chartReload: ReloadWhenVisible;
  private rowSet: RowSet | null = null;
  /** The blocks' width as the ResizeObserver last saw it (0 until it has). */
  private observedWidth = 0;
  /** The width the latest render pass drew at (0 before any). */
  private passWidth = 0;
  private readonly resizeObserver: ResizeObserver | null = null;
  /** Bumped by every onData: a render pass still running for an older one stops. */
  private pass = 0;
  /** Whether the pending render pass must redraw even unchanged heatmaps. */
  private passForce = false;
  /** The cell `reveal` marked, and on which run's heatmap. */
  private revealed: { run: string; mark: Mark } | null = null;
  /** A row `reveal` asked to show, until the rows (the data) have it. */
  private openPending: string | null = null;

  constructor(
    readonly tag: string,
    private readonly ctx: CardContext,
  ) {
    this.what = ctx.kind.what;
    this.rowNoun = ctx.kind.rowNoun;
    this.store = ctx.store;
    this.visibility = ctx.visibility;
    this.element = el("section", "ds-card");
    this.element.dataset.tag = tag;
    this.legendSlot = el("div");
    const head = cardHead(tag, null, this.legendSlot);
    this.tools = new CardTools(tag, this.rowNoun, {
      onFilter: (text) => this.setFilterText(text),
      onSummary: (summary) => this.setSummary(summary),
      onExpandAll: () => this.toggleAllGroups(),
    });
    this.blocksEl = el("div");
    this.chart = new ChartPanel(this.what, this.rowNoun, (name, on) => this.toggleParam(name, on));
    this.element.append(head, this.tools.element, this.blocksEl, this.chart.element);

    this.chartReload = new ReloadWhenVisible({ reload: () => this.loadAll(), generation: ctx.generation });
    this.chartReload.watch(ctx.visibility, this.chart.element);
    // The width comes from a ResizeObserver, so that a redraw does not force a layout.
    if (typeof ResizeObserver !== "undefined") {
      this.resizeObserver = new ResizeObserver((entries) => {
        const w = Math.round(entries[entries.length - 1].contentRect.width);
        if (w <= 0 || w === this.observedWidth) return;
        this.observedWidth = w;
        // Drawn at another width (or before the observer first reported): redraw.
        if (this.passWidth > 0 && this.contentWidth() !== this.passWidth) this.onData();
      });
      this.resizeObserver.observe(this.blocksEl);
    }
  }

  generation(): number {
    return this.ctx.generation();
  }

  dispose(): void {
    this.pass++;
    this.resizeObserver?.disconnect();
    this.chartReload.dispose();
    for (const block of this.blocks.values()) block.dispose();
    this.blocks.clear();
  }

  /**
   * The sidebar's tag filter (a case-insensitive regex; null when empty or invalid). When
   * it does not match this tag, it narrows the tag's rows to the names it matches.
   */
  setSidebarFilter(regex: RegExp | null): void {
    const narrowing = regex !== null && regex.source !== "(?:)" && !regex.test(this.tag) ? regex : null;
    const current = this.model.sidebarFilter;
    if (narrowing?.source === current?.source && narrowing?.flags === current?.flags) return;
    this.model.sidebarFilter = narrowing;
    this.onData();
  }

  /** The filter box's text changed. */
  setFilterText(text: string): void {
    this.model.filterText = text;
    this.onData();
  }

  /** Groups show the median or the max of their rows. */
  setSummary(summary: "median" | "max"): void {
    this.model.summary = summary;
    this.onData();
  }

  /** Open every group, or close them all when all are open. */
  toggleAllGroups(): void {
    this.model.setAllExpanded(this.rowSet?.rows ?? []);
    this.onData();
  }

  /** The runs (selected, with this tag) changed, or a refresh brought new tag info. */
  update(entries: readonly CardEntry[]): void {
    const runsBefore = this.runs.map((e) => e.run).join("\u0000");
    this.runs = [...entries];
    this.listedNames = entries.flatMap((e) => e.info.names ?? []);
    const keep = new Set(entries.map((e) => e.run));
    for (const [run, block] of this.blocks) {
      if (!keep.has(run)) {
        block.dispose();
        this.blocks.delete(run);
      }
    }
    for (const entry of entries) {
      let block = this.blocks.get(entry.run);
      if (!block || block.color !== entry.color) {
        block?.dispose();
        block = new RunBlock(this, entry.run, entry.color);
        block.heatmap.setMark(this.revealed?.run === entry.run ? this.revealed.mark : null);
        this.blocks.set(entry.run, block);
      }
      this.blocksEl.appendChild(block.element); // keeps run order
    }
    this.chart.element.hidden = entries.length === 0;
    this.tools.element.hidden = entries.length === 0;
    this.legendSlot.replaceChildren();
    this.onData();
    // Other runs: the chart (if in view) loads those it has not got.
    if (entries.map((e) => e.run).join("\u0000") !== runsBefore) this.chartReload.invalidate();
  }

  /** A new refresh generation: reload what is on screen, the rest when it scrolls into view. */
  refresh(): void {
    for (const block of this.blocks.values()) block.refresh();
    this.chartReload.refresh();
  }

  resize(): void {
    for (const block of this.blocks.values()) block.invalidate();
    this.chart.invalidate();
    this.onData();
  }

  /**
   * Show a cell (a finding's evidence): `name`'s row shown (its groups opened, the filter box
   * cleared when it hides it) and plotted in the chart, `step` marked on `run`'s heatmap.
   * Returns what to scroll to: the run's heatmap when the card has several runs, else the card.
   */
  reveal(target: { run: string; step: number; name?: string }): HTMLElement {
    const { run, step, name } = target;
    const mark: Mark = name === undefined ? { step } : { step, name };
    this.revealed = { run, mark };
    for (const block of this.blocks.values()) block.heatmap.setMark(block.run === run ? mark : null);
    if (name !== undefined) {
      if (this.model.filterText !== "" && !this.model.passes()(name)) {
        this.model.filterText = "";
        this.tools.clearFilter();
      }
      this.openPending = name;
      this.selected = [...(this.selected ?? []).filter((n) => n !== name && n !== this.autoPick), name];
      this.autoPick = null;
      for (const block of this.blocks.values()) block.heatmap.updateSelection();
    }
    this.onData();
    const block = this.blocks.get(run);
    return block && this.blocks.size > 1 ? block.element : this.element;
  }

  isSelected(name: string): boolean {
    return this.chartRows().includes(name);
  }

  toggleParam(name: string, on?: boolean): void {
    const current = this.chartRows();
    const has = current.includes(name);
    const want = on ?? !has;
    if (want === has && this.selected !== null) return;
    const base = this.selected ?? [];
    this.selected = want ? [...base.filter((n) => n !== name), name] : base.filter((n) => n !== name);
    for (const block of this.blocks.values()) block.heatmap.updateSelection();
    this.drawChart();
  }

  /** A row was clicked: a group opens or closes, a single row goes into or out of the chart. */
  onRowClick(row: HeatRow): void {
    if (row.kind === "param") {
      this.toggleParam(row.names[0]);
      return;
    }
    this.model.toggleGroup(row.key);
    this.onData();
  }

  /**
   * px the heatmaps and the chart may take: the ResizeObserver's figure, or (before it has
   * reported, e.g. while the card is hidden) read once, which forces a layout.
   */
  contentWidth(): number {
    if (this.observedWidth > 0) return Math.max(200, this.observedWidth);
    return Math.max(200, this.blocksEl.clientWidth || this.element.clientWidth - 34);
  }

  private loadAll(): void {
    const gen = this.ctx.generation();
    for (const entry of this.runs) {
      this.ctx.store.load(entry.run, this.tag, gen).then(() => this.onData());
    }
  }

  private loaded(): LayerGrid[] {
    const out: LayerGrid[] = [];
    for (const entry of this.runs) {
      const data = this.ctx.store.get(entry.run, this.tag)?.data;
      if (data) out.push(data);
    }
    return out;
  }

  /** What the card's values are: the first loaded run's quantity, else the kind's. */
  private quantity(loaded: readonly LayerGrid[] = this.loaded()): Quantity {
    return loaded[0]?.quantity ?? this.ctx.kind.quantity;
  }

  /** Data arrived, a filter or the layout changed: recompute the shared scales and rows, redraw. */
  onData(): void {
    const loaded = this.loaded();
    let lo = Infinity;
    let hi = -Infinity;
    for (const data of loaded) {
      const ext = scaledExtent(data);
      if (ext) {
        lo = Math.min(lo, ext[0]);
        hi = Math.max(hi, ext[1]);
      }
    }
    const color = new ColorScale(lo <= hi ? [lo, hi] : null);
    const names = this.allNames(loaded);
    let rowSet = this.model.compute(names, this.rowSet);
    // A row to reveal: its groups open once the rows have it.
    if (this.openPending !== null && this.model.openTo(this.openPending)) {
      this.openPending = null;
      rowSet = this.model.compute(names, rowSet);
    }
    const rowsChanged = rowSet.signature !== this.rowSet?.signature;
    this.rowSet = rowSet;
    const frame = plotFrame(loaded, rowSet.left);
    const scaleChanged =
      !color.equals(this.color) ||
      frame.left !== this.frame.left ||
      frame.domain[0] !== this.frame.domain[0] ||
      frame.domain[1] !== this.frame.domain[1];
    if (scaleChanged) {
      this.color = color;
      this.frame = frame;
    }
    const quantity = this.quantity(loaded);
    const legendFor = JSON.stringify(quantity);
    const legendStale = !this.legendSlot.firstChild || this.legendSlot.dataset.quantity !== legendFor;
    if (this.runs.length > 0 && (scaleChanged || legendStale)) {
      this.legendSlot.replaceChildren(colorLegend(this.color ?? color, quantity, this.ctx.kind.zeroWeightLegend));
      this.legendSlot.dataset.quantity = legendFor;
    }
    // The chart opens on the most extreme row once every run has answered.
    const answered = this.runs.every((e) => this.ctx.store.get(e.run, this.tag) !== undefined);
    if (this.selected === null && loaded.length > 0 && answered) {
      const pick = mostExtreme(loaded);
      this.selected = pick ? [pick] : [];
      this.autoPick = pick ?? null;
      // Heatmaps drawn before the pick mark it too.
      for (const block of this.blocks.values()) block.heatmap.updateSelection();
    }
    this.tools.render(rowSet, this.model.filterText, this.model.sidebarFilter);
    this.chart.setChoices(rowSet.shown);
    this.passForce = this.passForce || scaleChanged || rowsChanged;
    void this.renderPass(++this.pass, rowSet);
  }

  /**
   * Draw what changed, the costly steps each in a task of its own so that no task runs
   * long: per run, its heatmap's columns, then its heatmap; then the line chart. A newer
   * onData stops this pass (its own pass draws with the newer state).
   */
  private async renderPass(pass: number, rowSet: RowSet): Promise<void> {
    const color = this.color;
    if (!color) return;
    const frame = this.frame;
    const width = this.contentWidth();
    this.passWidth = width;
    const summary = this.model.summary;
    const force = this.passForce;
    let busy = false;
    const pause = async () => {
      if (busy) await nextTask();
      busy = false;
      return pass === this.pass;
    };
    for (const block of [...this.blocks.values()]) {
      if (!block.needsRender(rowSet, width, force)) continue;
      if (!(await pause())) return;
      busy = block.prepare(width, frame) || busy;
      if (!(await pause())) return;
      busy = block.render(color, frame, rowSet, summary, width, force) || busy;
    }
    if (!(await pause())) return;
    this.passForce = false;
    this.drawChart(width);
  }

  private allNames(loaded: readonly LayerGrid[]): string[] {
    const names: string[] = [];
    const seen = new Set<string>();
    const add = (n: string) => {
      if (!seen.has(n)) {
        seen.add(n);
        names.push(n);
      }
    };
    for (const d of loaded) d.names.forEach(add);
    this.listedNames.forEach(add);
    return names;
  }

  /** What the chart plots: the chosen rows that pass the filters, else the most extreme that does. */
  private chartRows(): string[] {
    if (this.selected === null) return [];
    const pass = this.model.passes();
    const chosen = this.selected.filter(pass);
    if (chosen.length > 0 || !this.model.filtering()) return chosen;
    const shown = new Set(this.rowSet?.shown ?? []);
    const pick = mostExtreme(this.loaded(), shown);
    return pick ? [pick] : [];
  }

  private drawChart(width = this.contentWidth()): void {
    const runs: RunData[] = [];
    for (const e of this.runs) {
      const data = this.ctx.store.get(e.run, this.tag)?.data;
      if (data) runs.push({ run: e.run, color: e.color, data });
    }
    this.chart.draw({
      rows: this.chartRows(),
      chosenForYou: (name) => name === this.autoPick || !this.selected?.includes(name),
      runs,
      quantity: this.quantity(),
      frame: this.frame,
      width,
    });
  }
}

/** The card's shared geometry: one label column and one step axis for all its runs. */
function plotFrame(loaded: readonly LayerGrid[], left: number): PlotFrame {
  let lo = Infinity;
  let hi = -Infinity;
  for (const d of loaded) {
    if (d.steps.length === 0) continue;
    const [a, b] = stepDomain(d.steps);
    lo = Math.min(lo, a);
    hi = Math.max(hi, b);
  }
  return { left: Math.max(MIN_LEFT, left), domain: lo < hi ? [lo, hi] : [0, 1] };
}

/** Resolves in a later task, letting the browser draw and handle input in between. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => window.setTimeout(resolve, 0));
}
