// Singular value spectra: one card for all spectrum layers of the selected runs.
//   - a step slider (over the selected layer's logged steps);
//   - the metrics table of every layer (value at the step per run, sparklines over steps),
//     sortable by clicking a column; clicking a row selects the layer;
//   - the selected layer's spectrum at the step (rank plot, log–log, with the MP bulk edge
//     and the fitted power-law tail), the runs overlaid in their colours; for a conv layer
//     also its operator norm, and its operator spectrum's own plot when logged;
//   - its evolution over training: a steps × rank heatmap of log10 σ per run.

import { ColorScale } from "../colormap";
import { cardHead, el } from "../dom";
import { errorText } from "../json";
import { boxItem, colorBarItem } from "../legend";
import { NON_FINITE_COLOR } from "../palette";
import { ReloadWhenVisible } from "../reload_when_visible";
import { StepSlider } from "../slider";
import { nearestStepIndex } from "../stats";
import { addStyles } from "../style";
import type { KindView, RevealTarget, ViewContext, ViewEntry } from "../views/kind_view";
import {
  fetchEvolution,
  fetchRunMetrics,
  fetchSpectrum,
  type Evolution,
  type RunMetrics,
  type StepSpectrum,
} from "./api";
import { SpectrumChart } from "./chart";
import { chartStatus } from "./chart_status";
import { OperatorChart } from "./operator_chart";
import { EvolutionHeatmap } from "./evolution";
import { MetricsTable, valueAt, type TableRow } from "./table";

addStyles(`
.ds-sp-split { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 16px; min-width: 0; }
.ds-sp-left { flex: 3 1 520px; min-width: 0; max-width: 100%; }
.ds-sp-right { flex: 2 1 360px; min-width: 0; max-width: 100%; position: sticky; top: 0;
  max-height: 100vh; overflow-y: auto; }
.ds-sp-right .ds-chart-section:first-child { margin-top: 8px; border-top: 0; padding-top: 0; }
.ds-sp-tablewrap { overflow: auto; margin: 8px 0 4px; max-height: calc(100vh - 120px); }
.ds-sp-table thead th { position: sticky; top: 0; background: #fff; z-index: 2; }
.ds-sp-table td.ds-sp-layer { position: sticky; left: 0; background: #fff; z-index: 1; }
.ds-sp-table tbody tr.ds-sp-selected td.ds-sp-layer { background: #fff3e0; }
.ds-sp-bound { color: #616161; }
.ds-sp-table { border-collapse: collapse; font-size: 12px; width: 100%; }
.ds-sp-table th { text-align: left; font-weight: 500; color: #616161; padding: 4px 6px;
  border-bottom: 1px solid #e0e0e0; cursor: pointer; user-select: none; vertical-align: bottom; }
.ds-sp-table th:hover { color: #000; }
.ds-sp-table th[data-sorted] { color: #e65100; }
.ds-sp-range { font-size: 11px; white-space: normal; }
.ds-sp-table td { padding: 3px 6px; border-bottom: 1px solid #f0f0f0; vertical-align: top; }
.ds-sp-table tbody tr { cursor: pointer; }
.ds-sp-table tbody tr:hover { background: #fafafa; }
.ds-sp-table tbody tr.ds-sp-selected { background: #fff3e0; }
.ds-sp-table tbody tr.ds-sp-selected .ds-sp-tag { color: #e65100; font-weight: 500; }
.ds-sp-tag { word-break: break-all; min-width: 120px; }
.ds-sp-cell { white-space: nowrap; }
.ds-sp-values { font-variant-numeric: tabular-nums; }
.ds-sp-value { display: flex; align-items: center; gap: 2px; line-height: 16px; }
.ds-sp-value .ds-swatch { width: 8px; height: 8px; }
.ds-sp-bad { color: #c62828; font-weight: 500; }
.ds-sp-spark { display: block; margin-top: 1px; }
.ds-sp-toolbar { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; margin: 4px 0; }
.ds-sp-selected-name { color: #e65100; }
.ds-sp-operator { margin-top: 10px; }
.ds-sp-optitle { font-size: 12px; color: #424242; margin: 4px 0; }
.ds-sp-caveat { font-size: 11px; margin-top: 4px; }
`);

interface RunEntry {
  run: string;
  color: string;
  tags: string[];
}

const EVOLUTION_VALUES = 256;

export class SpectrumView implements KindView {
  readonly element = el("div", "ds-kind-body");
  private readonly card = el("section", "ds-card");
  private readonly sub = el("div", "ds-card-sub");
  private readonly tableStatus = el("div", "ds-placeholder", "Loading…");
  private readonly slider = new StepSlider((step) => this.onStep(step));
  private readonly table = new MetricsTable((tag) => this.select(tag));
  private readonly chart = new SpectrumChart();
  private readonly operatorChart = new OperatorChart();
  private readonly chartTitle = el("span", "ds-chart-title");
  private readonly chartStatus = el("div");
  private readonly evolutionTitle = el("span", "ds-chart-title");
  private readonly evolutionLegend = el("div");
  private readonly evolutionBlocks = el("div");
  /** The charts' column, beside the table (below it on a narrow page). */
  private readonly right = el("div", "ds-sp-right");
  private readonly heatmaps = new Map<string, EvolutionHeatmap>();
  private runs: RunEntry[] = [];
  /** The runs whose metrics the table last drew. */
  private drawnRuns: RunEntry[] | null = null;
  private signature = "";
  private metrics = new Map<string, RunMetrics>();
  private metricErrors = new Map<string, string>();
  private spectra = new Map<string, StepSpectrum>();
  private spectrumErrors = new Map<string, string>();
  private evolutions = new Map<string, Evolution>();
  private selected: string | null = null;
  private userSelected = false;
  private readonly reload: ReloadWhenVisible;
  private spectraToken = 0;
  private evolutionToken = 0;
  private spectraQueued = false;
  /** The step `reveal` asked for, until the selected layer's steps are known. */
  private pendingStep: number | null = null;
  /** Suppresses the slider's callback while `onMetrics` moves it (it renders once itself). */
  private movingSlider = false;
  /**
   * Widths (px) of the charts' column and of the card, as a ResizeObserver last reported
   * them: reading `clientWidth` instead forced a layout of the freshly built table (~0.1-0.9 s).
   */
  private rightWidth = 0;
  private cardWidth = 0;
  private readonly resizeObserver = new ResizeObserver((entries) => this.onResize(entries));

  constructor(ctx: ViewContext) {
    this.card.dataset.testid = "spectrum-card";
    const head = cardHead("Layer spectra", this.sub);
    const toolbar = el("div", "ds-sp-toolbar");
    toolbar.append(this.slider.element);

    const chartSection = el("div", "ds-chart-section");
    const chartHead = el("div", "ds-chart-head");
    chartHead.append(this.chartTitle);
    chartSection.append(chartHead, this.chartStatus, this.chart.element, this.operatorChart.element);

    const evolutionSection = el("div", "ds-chart-section");
    const evolutionHead = el("div", "ds-chart-head");
    evolutionHead.append(this.evolutionTitle, this.evolutionLegend);
    evolutionSection.append(evolutionHead, this.evolutionBlocks);

    const left = el("div", "ds-sp-left");
    left.append(this.tableStatus, this.table.element);
    this.right.append(chartSection, evolutionSection);
    const split = el("div", "ds-sp-split");
    split.dataset.testid = "spectrum-split";
    split.append(left, this.right);
    this.card.append(head, toolbar, split);
    this.element.appendChild(this.card);
    this.chart.element.hidden = true;
    this.operatorChart.element.hidden = true;
    this.resizeObserver.observe(this.right);
    this.resizeObserver.observe(this.card);
    this.reload = new ReloadWhenVisible({
      generation: ctx.generation,
      reload: () => this.loadMetrics(),
    });
    this.reload.watch(ctx.visibility, this.card);
  }

  update(entries: readonly ViewEntry[]): void {
    // Series whose metadata cannot be read are not here: the app gives them their section.
    const byRun = new Map<string, RunEntry>();
    for (const e of entries) {
      if (e.info.error !== undefined || e.info.kind !== "spectrum") continue;
      const entry = byRun.get(e.run) ?? { run: e.run, color: e.color, tags: [] };
      entry.tags.push(e.tag);
      byRun.set(e.run, entry);
    }
    const runs = [...byRun.values()].sort((a, b) =>
      a.run.localeCompare(b.run, undefined, { numeric: true }),
    );
    const signature = JSON.stringify(runs);
    if (signature !== this.signature) {
      this.signature = signature;
      this.runs = runs; // the same runs and tags keep their array: what is drawn stands
      for (const run of [...this.metrics.keys()]) {
        if (!byRun.has(run)) this.metrics.delete(run);
      }
      this.reload.invalidate();
      this.render();
    }
  }

  refresh(): void {
    this.reload.refresh();
  }

  resize(): void {
    this.render();
    this.drawChart();
    this.drawEvolution();
  }

  /** Select `target`'s layer (as a click on its row does) and move the slider to its step. */
  reveal(target: RevealTarget): HTMLElement | null {
    if (!this.runs.some((r) => r.run === target.run && r.tags.includes(target.tag))) return null;
    this.pendingStep = target.step;
    if (target.tag !== this.selected) this.select(target.tag);
    else this.userSelected = true;
    this.table.scrollToSelected();
    this.applyPendingStep();
    return this.card;
  }

  /** The step `reveal` asked for, once the slider has the selected layer's steps. */
  private applyPendingStep(): void {
    const step = this.pendingStep;
    if (step === null || this.slider.value === null) return;
    this.pendingStep = null;
    this.slider.select(step);
  }

  dispose(): void {
    this.reload.dispose();
    this.resizeObserver.disconnect();
    this.element.replaceChildren();
  }

  // ---------------------------------------------------------------- loading

  /** Every run's metrics (called by `reload` while the card is visible and stale). */
  private loadMetrics(): void {
    if (this.runs.length === 0) return;
    const runs = this.runs;
    // Nothing new (every run's metrics the very objects drawn, after 304s): nothing to redraw.
    let changed = this.drawnRuns !== runs;
    void Promise.all(
      runs.map((r) =>
        fetchRunMetrics(r.run, r.tags).then(
          (m) => {
            if (this.metrics.get(r.run) !== m || this.metricErrors.has(r.run)) changed = true;
            this.metrics.set(r.run, m);
            this.metricErrors.delete(r.run);
          },
          (error: unknown) => {
            if (this.metricErrors.get(r.run) !== errorText(error)) changed = true;
            this.metricErrors.set(r.run, errorText(error));
          },
        ),
      ),
    ).then(() => {
      if (runs !== this.runs || !changed) return;
      this.drawnRuns = runs;
      this.onMetrics();
      this.loadEvolution();
    });
  }

  private onMetrics(): void {
    if (!this.userSelected || !this.allTags().includes(this.selected ?? "")) {
      this.selected = this.worstConditioned();
    }
    this.movingSlider = true;
    try {
      this.updateSlider();
    } finally {
      this.movingSlider = false;
    }
    if (this.pendingStep !== null && this.slider.value !== null) {
      this.applyPendingStep(); // the slider's callback renders, loads the spectra, marks the heatmaps
      return;
    }
    this.render();
    this.queueSpectra();
    for (const h of this.heatmaps.values()) h.mark(this.stepFor(h.run));
  }

  private allTags(): string[] {
    const tags = new Set<string>();
    for (const r of this.runs) r.tags.forEach((t) => tags.add(t));
    return [...tags].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  }

  /**
   * The layer with the largest condition number at its last step in any run. A condition
   * number beyond float32's resolution is only a lower bound: such layers are not picked
   * (unless no layer has a measured one).
   */
  private worstConditioned(): string | null {
    let best: string | null = null;
    let worst = -Infinity;
    for (const tag of this.allTags()) {
      for (const r of this.runs) {
        const layer = this.metrics.get(r.run)?.layers.get(tag);
        const v = valueAt(layer, "condition_number", null).value;
        if (valueAt(layer, "condition_number_is_bound", null).value === 1) continue;
        if (!Number.isNaN(v) && v > worst) {
          worst = v;
          best = tag;
        }
      }
      if (best === null) best = tag;
    }
    return best;
  }

  /** The slider moves over the selected layer's logged steps (all runs). */
  private updateSlider(): void {
    const steps = new Set<number>();
    for (const r of this.runs) {
      const layer = this.selected ? this.metrics.get(r.run)?.layers.get(this.selected) : undefined;
      layer?.steps.forEach((s) => steps.add(s));
    }
    this.slider.setSteps([...steps].sort((a, b) => a - b));
  }

  private select(tag: string): void {
    if (tag === this.selected) return;
    this.selected = tag;
    this.userSelected = true;
    this.updateSlider();
    this.render();
    this.queueSpectra();
    this.loadEvolution();
  }

  private onStep(_step: number): void {
    if (this.movingSlider) return; // onMetrics draws once the slider has moved
    this.render();
    this.queueSpectra();
    for (const h of this.heatmaps.values()) h.mark(this.stepFor(h.run));
  }

  /** The kept step of `run`'s selected layer nearest the slider's step. */
  private stepFor(run: string): number | null {
    const layer = this.selected ? this.metrics.get(run)?.layers.get(this.selected) : undefined;
    const step = this.slider.value;
    if (!layer || layer.steps.length === 0 || step === null) return null;
    return layer.steps[nearestStepIndex(layer.steps, step)];
  }

  private queueSpectra(): void {
    if (this.spectraQueued) return;
    this.spectraQueued = true;
    queueMicrotask(() => {
      this.spectraQueued = false;
      this.loadSpectra();
    });
  }

  private loadSpectra(): void {
    const tag = this.selected;
    const token = ++this.spectraToken;
    if (tag === null) return;
    const wanted = this.runs
      .map((r) => ({ r, step: this.stepFor(r.run) }))
      .filter((x): x is { r: RunEntry; step: number } => x.step !== null);
    this.chartTitle.textContent = `Spectrum of ${tag} at step ${this.slider.value ?? "–"}`;
    void Promise.all(
      wanted.map(({ r, step }) => {
        const have = this.spectra.get(r.run);
        if (have && have.tag === tag && have.step === step) return Promise.resolve();
        return fetchSpectrum(r.run, tag, step).then(
          (s) => {
            if (token !== this.spectraToken) return;
            this.spectra.set(r.run, s);
            this.spectrumErrors.delete(r.run);
          },
          (error: unknown) => {
            if (token !== this.spectraToken) return;
            this.spectra.delete(r.run);
            this.spectrumErrors.set(r.run, errorText(error));
          },
        );
      }),
    ).then(() => {
      if (token === this.spectraToken) this.drawChart();
    });
  }

  private loadEvolution(): void {
    const tag = this.selected;
    const token = ++this.evolutionToken;
    if (tag === null) return;
    const maxSteps = Math.max(20, Math.min(400, Math.floor(this.contentWidth() - 80)));
    const runs = this.runs.filter((r) => r.tags.includes(tag));
    this.evolutionTitle.textContent = `Spectrum of ${tag} over training`;
    const heldBefore = new Map(this.evolutions);
    void Promise.all(
      runs.map((r) =>
        fetchEvolution(r.run, tag, maxSteps, EVOLUTION_VALUES).then(
          (e): [string, Evolution | string] => [r.run, e],
          (error: unknown): [string, Evolution | string] => [r.run, errorText(error)],
        ),
      ),
    ).then((results) => {
      if (token !== this.evolutionToken) return;
      const same =
        results.length === heldBefore.size &&
        results.every(([run, result]) => heldBefore.get(run) === result);
      if (same && this.evolutionBlocks.childElementCount === results.length) return; // 304s
      this.evolutions.clear();
      const errors: string[] = [];
      for (const [run, result] of results) {
        if (typeof result === "string") errors.push(`${run}: ${result}`);
        else this.evolutions.set(run, result);
      }
      this.drawEvolution(errors);
    });
  }

  // ---------------------------------------------------------------- drawing

  /** The charts' width: their column beside the table (the card's width when below it). */
  private contentWidth(): number {
    return Math.max(280, (this.rightWidth || this.cardWidth || 900) - 4);
  }

  /** The column's or the card's width changed: redraw the charts to it (not the table). */
  private onResize(entries: ResizeObserverEntry[]): void {
    const before = this.contentWidth();
    for (const entry of entries) {
      const width = entry.contentRect.width;
      if (entry.target === this.right) this.rightWidth = width;
      else if (entry.target === this.card) this.cardWidth = width;
    }
    if (Math.abs(this.contentWidth() - before) < 1) return;
    if (this.spectra.size) this.drawChart();
    if (this.evolutions.size) this.drawEvolution();
  }

  private render(): void {
    const tags = this.allTags();
    this.sub.textContent =
      `${tags.length} layer${tags.length === 1 ? "" : "s"} · ${this.runs.length} ` +
      `run${this.runs.length === 1 ? "" : "s"} · click a column to sort, a row to chart its layer`;
    const errors = [...this.metricErrors].map(([run, message]) => `${run}: ${message}`);
    if (errors.length) {
      this.tableStatus.className = "ds-error";
      this.tableStatus.dataset.testid = "load-error";
      this.tableStatus.textContent = errors.join("\n");
      this.tableStatus.hidden = false;
    } else if (this.metrics.size === 0) {
      this.tableStatus.className = "ds-placeholder";
      this.tableStatus.textContent = this.runs.length ? "Loading…" : "No spectrum series selected.";
      this.tableStatus.hidden = false;
    } else {
      this.tableStatus.hidden = true;
    }
    const rows: TableRow[] = tags.map((tag) => ({
      tag,
      runs: this.runs
        .filter((r) => r.tags.includes(tag))
        .map((r) => ({ run: r.run, color: r.color, layer: this.metrics.get(r.run)?.layers.get(tag) })),
    }));
    this.table.element.hidden = this.metrics.size === 0;
    // Hidden until metrics come: no rows of dashes to build meanwhile.
    if (this.metrics.size) this.table.draw(rows, this.slider.value, this.selected, this.runs.length > 1);
  }

  private drawChart(): void {
    const { boxes, series } = chartStatus(this.runs, this.spectra, this.spectrumErrors, this.selected);
    this.chartStatus.replaceChildren(...boxes);
    // The layer the charts show (every series is the selected layer's), for the tests.
    this.chart.element.dataset.tag = this.operatorChart.element.dataset.tag = this.selected ?? "";
    this.chart.element.hidden = series.length === 0;
    if (!this.chart.element.hidden) this.chart.draw(series, this.contentWidth());
    this.operatorChart.draw(series, this.contentWidth());
  }

  private drawEvolution(errors: string[] = []): void {
    const runs = this.runs.filter((r) => this.evolutions.has(r.run));
    let lo = Infinity;
    let hi = -Infinity;
    for (const r of runs) {
      for (const v of this.evolutions.get(r.run)!.values) {
        if (v > 0 && v < Infinity) {
          const l = Math.log10(v);
          if (l < lo) lo = l;
          if (l > hi) hi = l;
        }
      }
    }
    const color = new ColorScale(lo <= hi ? [lo, hi] : null);
    this.evolutionLegend.replaceChildren(colorLegend(color));
    for (const [run, h] of this.heatmaps) {
      if (!this.evolutions.has(run)) {
        h.element.remove();
        this.heatmaps.delete(run);
      }
    }
    const width = this.contentWidth();
    const children: HTMLElement[] = errors.map((e) => el("div", "ds-error", e));
    for (const r of runs) {
      let h = this.heatmaps.get(r.run);
      if (!h || h.color !== r.color) {
        h = new EvolutionHeatmap(r.run, r.color, (step) => this.slider.select(step));
        this.heatmaps.set(r.run, h);
      }
      h.draw(this.evolutions.get(r.run)!, color, width, this.stepFor(r.run));
      children.push(h.element);
    }
    this.evolutionBlocks.replaceChildren(...children);
  }
}

function colorLegend(color: ColorScale): HTMLElement {
  const legend = el("div", "ds-legend");
  legend.dataset.testid = "spectrum-legend";
  legend.append(
    colorBarItem(color, "log10 σ (singular value)", 160),
    boxItem(NON_FINITE_COLOR, "not measured / non-finite"),
  );
  return legend;
}
