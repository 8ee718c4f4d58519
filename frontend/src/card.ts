// One card per tag: for update_ratios, a heatmap per selected run (one shared colour
// scale), then a line chart of the chosen parameters with the runs overlaid.

import { schemeTableau10 } from "d3-scale-chromatic";
import type { TagInfo, UpdateRatios } from "./api";
import { ColorScale } from "./colormap";
import { Visibility, el, runError, swatch } from "./dom";
import { formatInt } from "./format";
import { Heatmap, LABEL_GAP, labelColumnWidth, type PlotFrame } from "./heatmap";
import { boxItem, colorBarItem, lineSample } from "./legend";
import { LineChart, type LineSeries } from "./linechart";
import { NON_FINITE_COLOR, dashFor } from "./palette";
import { farthestFromTarget, log10Extent, stepDomain } from "./stats";
import type { DataStore } from "./store";

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

const KIND_LABELS: Record<string, string> = {
  update_ratios: "update ratios ‖ΔW‖/‖W‖ per parameter and step",
  spectrum: "singular value spectra",
  correlation: "channel correlations",
  saliency: "saliency maps",
};

export class TagCard {
  readonly element: HTMLElement;
  private readonly legendSlot: HTMLDivElement;
  private readonly sub: HTMLDivElement;
  private readonly messages: HTMLDivElement;
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
  private chartVisible = false;

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
    this.chartHint = el(
      "div",
      "ds-placeholder",
      "Pick a parameter (click a heatmap row or use the menu) to plot its update ratio over steps.",
    );
    this.chartSection.append(chartHead, this.chartHint, this.chart.element);
    this.element.append(head, this.messages, this.blocksEl, this.chartSection);

    ctx.visibility.observe(this.chartSection, (visible) => {
      this.chartVisible = visible;
      if (visible) this.loadAll();
    });
  }

  dispose(): void {
    this.ctx.visibility.unobserve(this.chartSection);
    for (const block of this.blocks.values()) block.dispose();
    this.blocks.clear();
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
    this.sub.textContent = [...kinds].map((k) => KIND_LABELS[k] ?? k).join(" · ");

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
    this.onData();
  }

  isSelected(name: string): boolean {
    return this.selected?.includes(name) ?? false;
  }

  toggleParam(name: string, on?: boolean): void {
    const current = this.selected ?? [];
    const has = current.includes(name);
    const want = on ?? !has;
    if (want === has && this.selected !== null) return;
    this.selected = want ? [...current.filter((n) => n !== name), name] : current.filter((n) => n !== name);
    for (const block of this.blocks.values()) block.heatmap.updateSelection();
    this.drawChart();
  }

  contentWidth(): number {
    return Math.max(200, this.blocksEl.clientWidth || this.element.clientWidth - 34);
  }

  private loadAll(): void {
    const gen = this.ctx.generation();
    for (const entry of this.ratioRuns) {
      this.ctx.store.load(entry.run, this.tag, gen).then(() => this.onData());
    }
  }

  /** Data arrived (or layout changed): recompute the shared colour scale and redraw. */
  onData(): void {
    const loaded: UpdateRatios[] = [];
    let lo = Infinity;
    let hi = -Infinity;
    for (const entry of this.ratioRuns) {
      const data = this.ctx.store.get(entry.run, this.tag)?.data;
      if (!data) continue;
      loaded.push(data);
      const ext = log10Extent(data);
      if (ext) {
        lo = Math.min(lo, ext[0]);
        hi = Math.max(hi, ext[1]);
      }
    }
    const color = new ColorScale(lo <= hi ? [lo, hi] : null);
    const frame = plotFrame(loaded);
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
    if (this.selected === null && loaded.length > 0) {
      const pick = farthestFromTarget(loaded[0]);
      this.selected = pick ? [pick] : [];
    }
    for (const block of this.blocks.values()) {
      block.render(this.color ?? color, this.frame, scaleChanged);
    }
    this.updatePicker(loaded);
    this.drawChart();
  }

  private updatePicker(loaded: readonly UpdateRatios[]): void {
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
    const signature = names.join("\u0000");
    if (this.picker.dataset.signature === signature) return;
    this.picker.dataset.signature = signature;
    const first = el("option", "", "Add parameter…");
    first.value = "";
    this.picker.replaceChildren(first, ...names.map((n) => {
      const o = el("option", "", n);
      o.value = n;
      return o;
    }));
  }

  private drawChart(): void {
    const selected = this.selected ?? [];
    const withData = this.ratioRuns
      .map((e) => ({ entry: e, data: this.ctx.store.get(e.run, this.tag)?.data }))
      .filter((x): x is { entry: CardEntry; data: UpdateRatios } => x.data !== undefined);
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
        for (let i = 0; i < S; i++) {
          values[i] = data.values[i * P + j];
          noUpdate[i] = data.noUpdate[i * P + j];
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
      chip.append(sample, el("span", "", param), remove);
      this.chips.appendChild(chip);
    });

    const show = series.length > 0;
    this.chartHint.hidden = show;
    if (selected.length > 0 && withData.length === 0) {
      this.chartHint.hidden = false;
      this.chartHint.textContent = "Loading…";
    } else {
      this.chartHint.textContent =
        "Pick a parameter (click a heatmap row or use the menu) to plot its update ratio over steps.";
    }
    this.chart.element.hidden = !show;
    if (show) this.chart.draw(series, this.contentWidth(), this.frame);
  }
}

class RunBlock {
  readonly element: HTMLDivElement;
  readonly heatmap: Heatmap;
  private readonly meta: HTMLSpanElement;
  private readonly status: HTMLDivElement;
  private readonly warnings: HTMLDivElement;
  private visible = false;
  private drawn: { data: UpdateRatios; width: number } | null = null;

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
      onRowClick: (param) => card.toggleParam(param),
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

  render(color: ColorScale, frame: PlotFrame, force: boolean): void {
    const loaded = this.ctx.store.get(this.run, this.card.tag);
    if (!loaded) return;
    if (loaded.error !== undefined) {
      this.status.className = "ds-error";
      this.status.dataset.testid = "load-error";
      this.status.textContent = loaded.error;
      this.status.hidden = false;
      this.heatmap.element.hidden = true;
      this.meta.textContent = "";
      this.warnings.replaceChildren();
      this.drawn = null;
      return;
    }
    const data = loaded.data;
    if (!data) return;
    const width = this.card.contentWidth();
    if (!force && this.drawn && this.drawn.data === data && this.drawn.width === width) return;
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
    this.warnings.replaceChildren(...data.warnings.map((w) => el("div", "ds-warn", w)));
    if (data.steps.length === 0 || data.names.length === 0) {
      this.status.className = "ds-placeholder";
      this.status.textContent = "No steps logged yet.";
      this.status.hidden = false;
      this.heatmap.element.hidden = true;
    } else {
      this.status.hidden = true;
      this.heatmap.element.hidden = false;
      this.heatmap.draw(data, color, width, frame);
    }
    this.drawn = { data, width };
  }
}

/** Room the line chart's y axis needs on the left. */
const MIN_LEFT = 64;

/** The card's shared geometry: one label column and one step axis for all its runs. */
function plotFrame(loaded: readonly UpdateRatios[]): PlotFrame {
  const names = new Set<string>();
  let lo = Infinity;
  let hi = -Infinity;
  for (const d of loaded) {
    d.names.forEach((n) => names.add(n));
    if (d.steps.length === 0) continue;
    const [a, b] = stepDomain(d.steps);
    lo = Math.min(lo, a);
    hi = Math.max(hi, b);
  }
  return {
    left: Math.max(MIN_LEFT, labelColumnWidth(names) + LABEL_GAP),
    domain: lo < hi ? [lo, hi] : [0, 1],
  };
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
  legend.append(scaleItem, noUpdate, boxItem(NON_FINITE_COLOR, "non-finite (NaN, ±Inf)"));
  return legend;
}
