// One card per tag: for update_ratios, a heatmap per selected run (one shared colour
// scale, the same rows in every run), then a line chart of the chosen parameters with the
// runs overlaid. At 200 parameters the rows are grouped by module path (collapsible,
// numbered blocks under one row) and a filter box narrows the heatmaps and the chart.

import { schemeTableau10 } from "d3-scale-chromatic";
import type { TagInfo, UpdateRatios } from "./api";
import { ColorScale } from "./colormap";
import { Visibility, el, runError, swatch } from "./dom";
import { ZERO_WEIGHT_TEXT, formatInt } from "./format";
import {
  Heatmap,
  INDENT,
  LABEL_GAP,
  MAX_LABEL_WIDTH,
  ZERO_WEIGHT_COLOR,
  fitLabel,
  rowLabelWidth,
  textWidth,
  type GroupSummary,
  type HeatRow,
  type PlotFrame,
} from "./heatmap";
import { boxItem, colorBarItem, lineSample } from "./legend";
import { LineChart, type LineSeries } from "./linechart";
import { NON_FINITE_COLOR, dashFor } from "./palette";
import {
  buildTree,
  defaultExpanded,
  flatRows,
  groupSegments,
  labelCandidates,
  paramFilter,
  visibleRows,
  type GroupNode,
  type ParamTree,
  type TreeRow,
} from "./param_groups";
import { RECENT_STEPS, log10Extent, mostExtreme, stepDomain } from "./stats";
import type { DataStore } from "./store";
import { addStyles } from "./style";

addStyles(`
.ds-ur-tools { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; margin: 4px 0 6px; font-size: 12px; }
.ds-ur-filter { width: 260px; max-width: 100%; padding: 3px 8px; border: 1px solid #c6c6c6; border-radius: 4px; background: #fff; }
.ds-ur-filter:focus { outline: none; border-color: #f57c00; box-shadow: 0 0 0 1px #f57c00; }
.ds-ur-filter.ds-invalid { border-color: #c62828; }
.ds-ur-tools .ds-filter-error { color: #c62828; }
.ds-ur-tools label { display: inline-flex; align-items: center; gap: 4px; color: #616161; }
`);

/** At most this many parameters (after filtering) show as plain rows, ungrouped. */
export const FLAT_MAX = 40;
/** About this many rows show at first when the parameters are grouped. */
export const ROW_BUDGET = 36;

export interface CardEntry {
  run: string;
  color: string;
  info: TagInfo;
}

export interface CardContext {
  store: DataStore;
  visibility: Visibility;
  generation: () => number;
}

const KIND_LABELS = new Map<string, string>([
  ["update_ratios", "update ratios ‖ΔW‖/‖W‖ per parameter and step"],
  ["spectrum", "singular value spectra"],
  ["correlation", "channel correlations"],
  ["saliency", "saliency maps"],
]);

const CHART_HINT =
  "Pick a parameter (click a heatmap row or use the menu) to plot its update ratio over steps.";

/** The card's rows for the filters and expansion in force, and the label column they need. */
interface RowSet {
  signature: string;
  rows: HeatRow[];
  left: number;
  /** Parameters that pass the filters, in logged order. */
  shown: string[];
  total: number;
}

export class TagCard {
  readonly element: HTMLElement;
  private readonly legendSlot: HTMLDivElement;
  private readonly sub: HTMLDivElement;
  private readonly messages: HTMLDivElement;
  private readonly tools: HTMLDivElement;
  private readonly filterInput: HTMLInputElement;
  private readonly filterNote: HTMLSpanElement;
  private readonly countNote: HTMLSpanElement;
  private readonly summaryPicker: HTMLSelectElement;
  private readonly expandAll: HTMLButtonElement;
  private readonly blocksEl: HTMLDivElement;
  private readonly chartSection: HTMLDivElement;
  private readonly picker: HTMLSelectElement;
  private readonly chips: HTMLDivElement;
  private readonly chartHint: HTMLDivElement;
  private readonly chart = new LineChart();
  private readonly blocks = new Map<string, RunBlock>();
  private ratioRuns: CardEntry[] = [];
  private color: ColorScale | null = null;
  private frame: PlotFrame = { left: MIN_LEFT, domain: [0, 1] };
  /** Parameters in the line chart; null until a default is chosen from the data. */
  private selected: string[] | null = null;
  /** The parameter the chart opened on (the most extreme), while it is still shown. */
  private autoPick: string | null = null;
  private chartVisible = false;
  private filterText = "";
  /** The sidebar's tag filter when it narrows this tag's parameters (the tag itself does not match). */
  private sidebarFilter: RegExp | null = null;
  private summary: GroupSummary = "median";
  /** Open groups, per filter (each filter's tree opens its own way at first). */
  private readonly expanded = new Map<string, Set<string>>();
  private rowSet: RowSet | null = null;
  private tree: ParamTree | null = null;
  private labelWidth: { key: string; px: number } | null = null;
  private readonly heatRows = new Map<string, HeatRow>();
  /** The blocks' width as the ResizeObserver last saw it (0 until it has). */
  private observedWidth = 0;
  /** The width the latest render pass drew at (0 before any). */
  private passWidth = 0;
  private readonly resizeObserver: ResizeObserver | null = null;
  /** Bumped by every onData: a render pass still running for an older one stops. */
  private pass = 0;
  /** Whether the pending render pass must redraw even unchanged heatmaps. */
  private passForce = false;
  /** What the line chart last drew, to skip redrawing the very same. */
  private chartDrawn: { key: string; data: UpdateRatios[] } | null = null;

  constructor(
    readonly tag: string,
    private readonly ctx: CardContext,
  ) {
    this.element = el("section", "ds-card");
    this.element.dataset.tag = tag;
    const head = el("div", "ds-card-head");
    const titles = el("div");
    titles.append(el("h2", "ds-card-title", tag), (this.sub = el("div", "ds-card-sub")));
    this.legendSlot = el("div");
    head.append(titles, this.legendSlot);
    this.messages = el("div");

    this.tools = el("div", "ds-ur-tools");
    this.filterInput = el("input", "ds-ur-filter");
    this.filterInput.type = "search";
    this.filterInput.placeholder = "Filter parameters (regex or text)";
    this.filterInput.autocomplete = "off";
    this.filterInput.spellcheck = false;
    this.filterInput.dataset.testid = "param-filter";
    this.filterInput.setAttribute("aria-label", `Filter the parameters of ${tag} (regex or text)`);
    let debounce: number | undefined;
    this.filterInput.addEventListener("input", () => {
      window.clearTimeout(debounce);
      debounce = window.setTimeout(() => {
        this.filterText = this.filterInput.value;
        this.onData();
      }, 120);
    });
    this.countNote = el("span", "ds-muted");
    this.countNote.dataset.testid = "param-count";
    this.filterNote = el("span", "ds-filter-error");
    this.filterNote.hidden = true;
    const summaryLabel = el("label", "", "groups show the");
    this.summaryPicker = el("select", "ds-select");
    this.summaryPicker.dataset.testid = "group-summary";
    for (const how of ["median", "max"] as const) {
      const o = el("option", "", how);
      o.value = how;
      this.summaryPicker.appendChild(o);
    }
    this.summaryPicker.addEventListener("change", () => {
      this.summary = this.summaryPicker.value === "max" ? "max" : "median";
      this.onData();
    });
    summaryLabel.append(this.summaryPicker, "of their parameters per step");
    this.expandAll = el("button", "ds-link");
    this.expandAll.type = "button";
    this.expandAll.dataset.testid = "expand-all";
    this.expandAll.addEventListener("click", () => this.setAllExpanded());
    this.tools.append(this.filterInput, this.countNote, this.filterNote, summaryLabel, this.expandAll);
    this.blocksEl = el("div");

    this.chartSection = el("div", "ds-chart-section");
    const chartHead = el("div", "ds-chart-head");
    this.picker = el("select", "ds-select");
    this.picker.setAttribute("aria-label", "Add a parameter to the chart");
    this.picker.addEventListener("change", () => {
      const name = this.picker.value;
      this.picker.selectedIndex = 0;
      if (name) this.toggleParam(name, true);
    });
    this.chips = el("div", "ds-chips");
    chartHead.append(el("span", "ds-chart-title", "‖ΔW‖/‖W‖ over steps"), this.picker, this.chips);
    this.chartHint = el("div", "ds-placeholder", CHART_HINT);
    this.chartSection.append(chartHead, this.chartHint, this.chart.element);
    this.element.append(head, this.messages, this.tools, this.blocksEl, this.chartSection);

    ctx.visibility.observe(this.chartSection, (visible) => {
      this.chartVisible = visible;
      if (visible) this.loadAll();
    });
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

  dispose(): void {
    this.pass++;
    this.resizeObserver?.disconnect();
    this.ctx.visibility.unobserve(this.chartSection);
    for (const block of this.blocks.values()) block.dispose();
    this.blocks.clear();
  }

  /**
   * The sidebar's tag filter (a case-insensitive regex; null when empty or invalid). When
   * it does not match this tag, it narrows the tag's parameters to the names it matches.
   */
  setSidebarFilter(regex: RegExp | null): void {
    const narrowing = regex !== null && regex.source !== "(?:)" && !regex.test(this.tag) ? regex : null;
    if (narrowing?.source === this.sidebarFilter?.source && narrowing?.flags === this.sidebarFilter?.flags) {
      return;
    }
    this.sidebarFilter = narrowing;
    this.onData();
  }

  /** The runs (selected, with this tag) changed, or a refresh brought new tag info. */
  update(entries: readonly CardEntry[]): void {
    const ratio: CardEntry[] = [];
    const errors: CardEntry[] = [];
    const other = new Map<string, string[]>();
    for (const entry of entries) {
      if (entry.info.error !== undefined) errors.push(entry);
      else if (entry.info.kind === "update_ratios") ratio.push(entry);
      else other.set(entry.info.kind, [...(other.get(entry.info.kind) ?? []), entry.run]);
    }
    this.ratioRuns = ratio;
    const kinds = new Set(entries.filter((e) => e.info.error === undefined).map((e) => e.info.kind));
    this.sub.textContent = [...kinds].map((k) => KIND_LABELS.get(k) ?? k).join(" · ");

    this.messages.replaceChildren();
    for (const entry of errors) {
      const box = runError(entry.run, entry.color, `cannot show this tag: ${entry.info.error}`);
      box.dataset.testid = "tag-error";
      box.dataset.run = entry.run;
      this.messages.appendChild(box);
    }
    for (const [kind, runs] of other) {
      const note = el("div", "ds-note");
      note.dataset.testid = "unsupported-kind";
      note.textContent =
        `“${kind}” data (${runs.join(", ")}) is not yet shown by this version of the tab.`;
      this.messages.appendChild(note);
    }

    const keep = new Set(ratio.map((e) => e.run));
    for (const [run, block] of this.blocks) {
      if (!keep.has(run)) {
        block.dispose();
        this.blocks.delete(run);
      }
    }
    for (const entry of ratio) {
      let block = this.blocks.get(entry.run);
      if (!block || block.color !== entry.color) {
        block?.dispose();
        block = new RunBlock(this, entry.run, entry.color, this.ctx);
        this.blocks.set(entry.run, block);
      }
      this.blocksEl.appendChild(block.element); // keeps run order
    }
    this.chartSection.hidden = ratio.length === 0;
    this.tools.hidden = ratio.length === 0;
    this.legendSlot.replaceChildren();
    this.onData();
  }

  /** A new refresh generation: reload what is on screen, the rest when it scrolls into view. */
  refresh(): void {
    for (const block of this.blocks.values()) block.maybeLoad();
    if (this.chartVisible) this.loadAll();
  }

  resize(): void {
    for (const block of this.blocks.values()) block.invalidate();
    this.chartDrawn = null;
    this.onData();
  }

  isSelected(name: string): boolean {
    return this.chartParams().includes(name);
  }

  toggleParam(name: string, on?: boolean): void {
    const current = this.chartParams();
    const has = current.includes(name);
    const want = on ?? !has;
    if (want === has && this.selected !== null) return;
    const base = this.selected ?? [];
    this.selected = want ? [...base.filter((n) => n !== name), name] : base.filter((n) => n !== name);
    for (const block of this.blocks.values()) block.heatmap.updateSelection();
    this.drawChart();
  }

  /** A row was clicked: a group opens or closes, a parameter goes into or out of the chart. */
  onRowClick(row: HeatRow): void {
    if (row.kind === "param") {
      this.toggleParam(row.names[0]);
      return;
    }
    const open = this.openGroups();
    if (open.has(row.key)) open.delete(row.key);
    else open.add(row.key);
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

  /** The rows every run's heatmap shows now. */
  currentRows(): RowSet {
    return this.rowSet ?? this.computeRows([]);
  }

  private loadAll(): void {
    const gen = this.ctx.generation();
    for (const entry of this.ratioRuns) {
      this.ctx.store.load(entry.run, this.tag, gen).then(() => this.onData());
    }
  }

  private loaded(): UpdateRatios[] {
    const out: UpdateRatios[] = [];
    for (const entry of this.ratioRuns) {
      const data = this.ctx.store.get(entry.run, this.tag)?.data;
      if (data) out.push(data);
    }
    return out;
  }

  /** Data arrived, a filter or the layout changed: recompute the shared scales and rows, redraw. */
  onData(): void {
    const loaded = this.loaded();
    let lo = Infinity;
    let hi = -Infinity;
    for (const data of loaded) {
      const ext = log10Extent(data);
      if (ext) {
        lo = Math.min(lo, ext[0]);
        hi = Math.max(hi, ext[1]);
      }
    }
    const color = new ColorScale(lo <= hi ? [lo, hi] : null);
    const rowSet = this.computeRows(loaded);
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
    if (this.ratioRuns.length > 0 && (scaleChanged || !this.legendSlot.firstChild)) {
      this.legendSlot.replaceChildren(colorLegend(this.color ?? color));
    }
    // The chart opens on the most extreme parameter once every run has answered.
    const answered = this.ratioRuns.every((e) => this.ctx.store.get(e.run, this.tag) !== undefined);
    if (this.selected === null && loaded.length > 0 && answered) {
      const pick = mostExtreme(loaded);
      this.selected = pick ? [pick] : [];
      this.autoPick = pick ?? null;
    }
    this.renderTools(rowSet);
    this.updatePicker(rowSet.shown);
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
    const summary = this.summary;
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

  private allNames(loaded: readonly UpdateRatios[]): string[] {
    const names: string[] = [];
    const seen = new Set<string>();
    const add = (n: string) => {
      if (!seen.has(n)) {
        seen.add(n);
        names.push(n);
      }
    };
    for (const d of loaded) d.names.forEach(add);
    for (const e of this.ratioRuns) e.info.names?.forEach(add);
    return names;
  }

  /** Whether `name` passes the card's filter box and the sidebar's filter. */
  private passes(): (name: string) => boolean {
    const box = paramFilter(this.filterText);
    const side = this.sidebarFilter;
    return (name) => box.test(name) && (side === null || side.test(name));
  }

  private filterKey(): string {
    return JSON.stringify([this.filterText, this.sidebarFilter?.source ?? null]);
  }

  private openGroups(): Set<string> {
    const key = this.filterKey();
    let open = this.expanded.get(key);
    if (!open) {
      open = this.tree ? defaultExpanded(this.tree, ROW_BUDGET) : new Set<string>();
      // Remembered once there are names to group (the first call may come before any).
      if (this.tree && this.tree.root.names.length > 0) this.expanded.set(key, open);
    }
    return open;
  }

  private computeRows(loaded: readonly UpdateRatios[]): RowSet {
    const all = this.allNames(loaded);
    const pass = this.passes();
    const shown = all.filter(pass);
    const tree = buildTree(shown, all);
    this.tree = tree;
    const grouped = shown.length > FLAT_MAX;
    const treeRows: TreeRow[] = grouped ? visibleRows(tree, this.openGroups()) : flatRows(tree);
    const signature = JSON.stringify([
      all.join("\u0000"),
      this.filterKey(),
      this.summary,
      treeRows.map((r) => [r.node.key, r.expanded]),
    ]);
    if (this.rowSet?.signature === signature) return this.rowSet;
    const rows = treeRows.map((r) => this.heatRow(r, tree.prefix));
    // The label column fits every row the tree can show, so opening a group moves nothing.
    const widthKey = JSON.stringify([signature.length, grouped, tree.prefix, shown]);
    if (this.labelWidth?.key !== widthKey) {
      const everyRow = grouped ? visibleRows(tree, allGroups(tree)) : treeRows;
      let widest = 0;
      for (const r of everyRow) widest = Math.max(widest, rowLabelWidth(this.heatRow(r, tree.prefix)));
      this.labelWidth = { key: widthKey, px: widest };
    }
    return {
      signature,
      rows,
      left: Math.max(MIN_LEFT, Math.min(MAX_LABEL_WIDTH, this.labelWidth.px) + LABEL_GAP),
      shown,
      total: all.length,
    };
  }

  /** A tree row as a heatmap row, its label fitted to the label column (remembered). */
  private heatRow(row: TreeRow, prefix: string): HeatRow {
    const key = `${prefix}\u0000${row.node.key}\u0000${row.depth}\u0000${row.expanded}`;
    let out = this.heatRows.get(key);
    if (!out) {
      out = heatRow(row, prefix);
      this.heatRows.set(key, out);
    }
    return out;
  }

  private renderTools(rowSet: RowSet): void {
    const { shown, total } = rowSet;
    const groups = rowSet.rows.filter((r) => r.kind === "group").length;
    this.countNote.textContent =
      shown.length === total
        ? `${formatInt(total)} parameters`
        : `${formatInt(shown.length)} of ${formatInt(total)} parameters` +
          (this.sidebarFilter ? ` (sidebar filter /${this.sidebarFilter.source}/)` : "");
    const box = paramFilter(this.filterText);
    this.filterInput.classList.toggle("ds-invalid", box.error !== undefined);
    this.filterNote.hidden = box.error === undefined;
    this.filterNote.textContent = box.error ?? "";
    const grouped = shown.length > FLAT_MAX;
    this.summaryPicker.parentElement!.hidden = !grouped;
    this.expandAll.hidden = !grouped;
    const anyClosed = rowSet.rows.some((r) => r.kind === "group" && !r.expanded);
    this.expandAll.textContent = anyClosed || groups === 0 ? "expand all" : "collapse all";
  }

  private setAllExpanded(): void {
    const tree = this.tree;
    if (!tree) return;
    const open = this.openGroups();
    const rows = this.rowSet?.rows ?? [];
    const anyClosed = rows.some((r) => r.kind === "group" && !r.expanded);
    open.clear();
    if (anyClosed) for (const key of allGroups(tree)) open.add(key);
    this.onData();
  }

  /** What the chart plots: the chosen parameters that pass the filters, else the most extreme that does. */
  private chartParams(): string[] {
    if (this.selected === null) return [];
    const pass = this.passes();
    const chosen = this.selected.filter(pass);
    if (chosen.length > 0 || (this.filterText.trim() === "" && this.sidebarFilter === null)) {
      return chosen;
    }
    const shown = new Set(this.rowSet?.shown ?? []);
    const pick = mostExtreme(this.loaded(), shown);
    return pick ? [pick] : [];
  }

  private updatePicker(names: readonly string[]): void {
    const signature = names.join("\u0000");
    if (this.picker.dataset.signature === signature) return;
    this.picker.dataset.signature = signature;
    const first = el("option", "", "Add parameter…");
    first.value = "";
    this.picker.replaceChildren(
      first,
      ...names.map((n) => {
        const o = el("option", "", n);
        o.value = n;
        return o;
      }),
    );
  }

  private drawChart(width = this.contentWidth()): void {
    const selected = this.chartParams();
    const withData = this.ratioRuns
      .map((e) => ({ entry: e, data: this.ctx.store.get(e.run, this.tag)?.data }))
      .filter((x): x is { entry: CardEntry; data: UpdateRatios } => x.data !== undefined);
    // The very same data, parameters, runs and geometry (an idle reload): nothing to redraw.
    const key = JSON.stringify([
      selected,
      this.autoPick,
      this.selected,
      width,
      this.frame,
      withData.map((x) => [x.entry.run, x.entry.color]),
    ]);
    const datas = withData.map((x) => x.data);
    const drawn = this.chartDrawn;
    if (drawn && drawn.key === key && drawn.data.length === datas.length && drawn.data.every((d, i) => d === datas[i])) {
      return;
    }
    this.chartDrawn = { key, data: datas };
    this.chart.element.dataset.params = JSON.stringify(selected);
    const byParam = withData.length <= 1;
    const series: LineSeries[] = [];
    selected.forEach((param, k) => {
      for (const { entry, data } of withData) {
        const j = data.names.indexOf(param);
        if (j < 0) continue;
        const S = data.steps.length;
        const P = data.names.length;
        const values = new Float32Array(S);
        const noUpdate = new Uint8Array(S);
        const zeroWeight = new Uint8Array(S);
        for (let i = 0; i < S; i++) {
          values[i] = data.values[i * P + j];
          noUpdate[i] = data.noUpdate[i * P + j];
          zeroWeight[i] = data.zeroWeight[i * P + j];
        }
        series.push({
          run: entry.run,
          param,
          label: byParam ? param : `${entry.run} · ${param}`,
          color: byParam ? schemeTableau10[k % schemeTableau10.length] : entry.color,
          dash: byParam ? "" : dashFor(k),
          steps: data.steps,
          values,
          noUpdate,
          zeroWeight,
        });
      }
    });

    this.chips.replaceChildren();
    selected.forEach((param, k) => {
      const chip = el("span", "ds-chip");
      chip.dataset.param = param;
      const sample = byParam
        ? lineSample(schemeTableau10[k % schemeTableau10.length], "")
        : lineSample("#616161", dashFor(k));
      const remove = el("button", "", "×");
      remove.title = `Remove ${param} from the chart`;
      remove.setAttribute("aria-label", `Remove ${param}`);
      remove.addEventListener("click", () => this.toggleParam(param, false));
      const name = el("span", "", param);
      if (param === this.autoPick || !this.selected?.includes(param)) {
        chip.title =
          `Chosen for you: of the parameters shown, the one whose median ratio over its last ` +
          `${RECENT_STEPS} logged steps is farthest from 1e-3 (in decades, in any run)`;
      }
      chip.append(sample, name, remove);
      this.chips.appendChild(chip);
    });

    const show = series.length > 0;
    this.chartHint.hidden = show;
    if (selected.length > 0 && withData.length === 0) {
      this.chartHint.hidden = false;
      this.chartHint.textContent = "Loading…";
    } else {
      this.chartHint.textContent = CHART_HINT;
    }
    this.chart.element.hidden = !show;
    if (show) this.chart.draw(series, width, this.frame);
  }
}

/** The keys of every group of `tree`. */
function allGroups(tree: ParamTree): Set<string> {
  const keys = new Set<string>();
  const walk = (g: GroupNode) => {
    for (const c of g.children) {
      if (c.kind === "group") {
        keys.add(c.key);
        walk(c);
      }
    }
  };
  walk(tree.root);
  return keys;
}

/** A tree row as a heatmap row: its label fitted to the label column. */
function heatRow(row: TreeRow, prefix: string): HeatRow {
  const { node, depth } = row;
  if (node.kind === "param") {
    return {
      key: node.key,
      kind: "param",
      names: [node.name],
      label: fitLabel(labelCandidates(node.segments), MAX_LABEL_WIDTH - depth * INDENT - 14),
      title: node.name,
      depth,
      expanded: false,
    };
  }
  const segments = groupSegments(node);
  const extra = 18 + textWidth(` ${node.names.length}`); // the toggle and the count
  return {
    key: node.key,
    kind: "group",
    names: node.names,
    label: fitLabel(labelCandidates(segments), MAX_LABEL_WIDTH - depth * INDENT - extra),
    title: prefix + segments.join("."),
    depth,
    expanded: row.expanded,
  };
}

class RunBlock {
  readonly element: HTMLDivElement;
  readonly heatmap: Heatmap;
  private readonly meta: HTMLSpanElement;
  private readonly status: HTMLDivElement;
  private readonly warnings: HTMLDivElement;
  private visible = false;
  private drawn: { data: UpdateRatios; width: number; rows: string } | null = null;

  constructor(
    private readonly card: TagCard,
    readonly run: string,
    readonly color: string,
    private readonly ctx: CardContext,
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
      tag: card.tag,
      runColor: color,
      onRowClick: (row) => card.onRowClick(row),
      isSelected: (param) => card.isSelected(param),
    });
    this.heatmap.element.hidden = true;
    this.element.append(head, this.warnings, this.status, this.heatmap.element);
    ctx.visibility.observe(this.element, (visible) => {
      this.visible = visible;
      if (visible) this.maybeLoad();
    });
  }

  dispose(): void {
    this.ctx.visibility.unobserve(this.element);
    this.element.remove();
  }

  maybeLoad(): void {
    if (!this.visible) return;
    const gen = this.ctx.generation();
    if (this.ctx.store.isFresh(this.run, this.card.tag, gen)) return;
    this.ctx.store.load(this.run, this.card.tag, gen).then(() => this.card.onData());
  }

  invalidate(): void {
    this.drawn = null;
  }

  /** Whether render() would draw anything (new data, rows, width, or forced). */
  needsRender(rowSet: RowSet, width: number, force: boolean): boolean {
    const loaded = this.ctx.store.get(this.run, this.card.tag);
    if (!loaded) return false;
    if (loaded.error !== undefined || !loaded.data) return true;
    const d = this.drawn;
    return force || !d || d.data !== loaded.data || d.width !== width || d.rows !== rowSet.signature;
  }

  /** Compute the heatmap's columns ahead of drawing it; whether that took any work. */
  prepare(width: number, frame: PlotFrame): boolean {
    const data = this.ctx.store.get(this.run, this.card.tag)?.data;
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
    const loaded = this.ctx.store.get(this.run, this.card.tag);
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
    this.meta.replaceChildren(
      `${formatInt(data.steps.length)} steps × ${formatInt(data.names.length)} parameters`,
    );
    if (data.steps.length) {
      this.meta.append(
        ` · steps ${formatInt(data.steps[0])}–${formatInt(data.steps[data.steps.length - 1])}`,
      );
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
      this.status.className = "ds-placeholder";
      this.status.textContent = "No steps logged yet.";
      this.status.hidden = false;
      this.heatmap.element.hidden = true;
    } else if (rowSet.rows.length === 0) {
      this.status.className = "ds-placeholder";
      this.status.textContent = "No parameter matches the filter.";
      this.status.hidden = false;
      this.heatmap.element.hidden = true;
    } else {
      this.status.hidden = true;
      this.heatmap.element.hidden = false;
      this.heatmap.draw(data, rowSet.rows, summary, color, width, frame);
    }
    this.drawn = { data, width, rows: rowSet.signature };
    return true;
  }
}

function countOnes(mask: Uint8Array): number {
  let n = 0;
  for (let k = 0; k < mask.length; k++) n += mask[k];
  return n;
}

/** Room the line chart's y axis needs on the left. */
const MIN_LEFT = 64;

/** The card's shared geometry: one label column and one step axis for all its runs. */
function plotFrame(loaded: readonly UpdateRatios[], left: number): PlotFrame {
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

function colorLegend(color: ColorScale): HTMLElement {
  const legend = el("div", "ds-legend");
  legend.dataset.testid = "legend";
  const scaleItem = colorBarItem(color, "log10(‖ΔW‖/‖W‖)", 180, (svg, x) => {
    if (color.lo <= -3 && -3 <= color.hi) {
      svg
        .append("path")
        .attr("d", `M${x(-3)},0l-4,-6h8z`)
        .attr("fill", "#212121")
        .append("title")
        .text("1e-3, the rule of thumb");
    }
  });
  const noUpdate = el("span", "ds-legend-item");
  noUpdate.append(el("span", "ds-box ds-hatch"), "no update");
  legend.append(
    scaleItem,
    noUpdate,
    boxItem(ZERO_WEIGHT_COLOR, ZERO_WEIGHT_TEXT),
    boxItem(NON_FINITE_COLOR, "non-finite (NaN, ±Inf)"),
  );
  return legend;
}

/** Resolves in a later task, letting the browser draw and handle input in between. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => window.setTimeout(resolve, 0));
}
