// One card per layer statistics tag: a statistic selector, a run and a step; then the
// statistic as a layers × steps heatmap per run (update ratios' grid card: layers in model
// order grouped by module path), through depth at the step (runs overlaid, earlier steps
// faint), every statistic of every row at the step (flags, collapse, filter, sort), and for
// parameters the gradient norm per parameter over steps, for module outputs the covariance
// spectrum of a chosen layer.

import type { Visibility } from "../dom";
import { cardHead, el } from "../dom";
import { StepSlider } from "../slider";
import { addStyles } from "../style";
import { GridCard, type CardEntry, type GridKind } from "../update_ratios/card";
import { DataStore } from "../update_ratios/store";
import {
  activationValue,
  fetchLayerSpectrum,
  fetchStatisticGrid,
  fetchStepTable,
  type LayerSpectrum,
  type StatisticGrid,
  type StepTable,
} from "./api";
import { GenerationCache } from "./cache";
import { flagsOf, type Flags } from "./blocks";
import { DepthPanel, stepIndexFor, type DepthFlags, type DepthRun } from "./depth";
import { GradNormPanel } from "./grad_norms";
import { SpectrumPanel, type SpectrumRun } from "./spectrum";
import { defaultStatistic, statisticInfo, statisticQuantity, statisticTitle, type Part } from "./statistics";
import { LayerTable } from "./table";

addStyles(`
.ds-ls-head { display: flex; align-items: center; gap: 14px; flex-wrap: wrap; margin: 2px 0 4px; font-size: 12px; }
.ds-ls-head label { display: inline-flex; align-items: center; gap: 6px; color: #616161; }
.ds-ls-help { color: #757575; font-size: 12px; margin: 0 0 4px; }
.ds-ls-heat > .ds-card { border: 0; padding: 0; margin: 0; box-shadow: none; }
.ds-ls-heat > .ds-card > .ds-card-head .ds-card-title { display: none; }
`);

/** The step of `grid` a card shows for the selected step: that step, else the nearest it has. */
function stepAt(grid: StatisticGrid, step: number | null): number {
  return grid.steps[stepIndexFor(grid, step)];
}

export interface LayerStatisticsCardContext {
  visibility: Visibility;
  generation: () => number;
}

/** What the heatmap card calls its rows and values, by part. */
function gridKind(part: Part | null, statistic: string | null): GridKind {
  return {
    what: "Layer statistics",
    rowNoun: part === "parameters" ? "parameter" : "layer",
    quantity: statisticQuantity(statistic ?? ""),
    // ‖g‖/‖W‖ of a weight exactly zero is undefined: the route marks it (zero_weight).
    zeroWeightLegend: statistic === "grad_to_weight",
  };
}

export class LayerStatisticsCard {
  readonly element = el("section", "ds-card");
  private readonly statisticPicker = el("select", "ds-select");
  private readonly runPicker = el("select", "ds-select");
  private readonly runLabel = el("label", "", "run");
  private readonly slider: StepSlider;
  private readonly help = el("div", "ds-ls-help");
  private readonly heat = el("div", "ds-ls-heat");
  private readonly depth = new DepthPanel();
  private readonly table: LayerTable;
  private readonly grads = new GradNormPanel();
  private readonly spectrum: SpectrumPanel;
  private readonly errors = el("div");
  private runs: CardEntry[] = [];
  /** The statistic shown; null until the first answer names the series' default. */
  private statistic: string | null = null;
  private statistics: string[] = [];
  private part: Part | null = null;
  /** One grid store per statistic ("" = the route's default, before it is known). */
  private readonly stores = new Map<string, DataStore>();
  private gridCard: GridCard | null = null;
  private gridCardFor: string | null = null;
  private sidebar: RegExp | null = null;
  private chosenRun: string | null = null;
  private spectrumLayer: string | null = null;
  private readonly stepTables: GenerationCache<StepTable>;
  private readonly spectra: GenerationCache<LayerSpectrum>;
  private step: number | null = null;
  private drawQueued = false;
  /** What `reveal` asked for, until the grids have steps (the step) and the heatmap card exists. */
  private pendingStep: number | null = null;
  private pendingCell: { run: string; step: number; name?: string } | null = null;

  constructor(
    readonly tag: string,
    private readonly ctx: LayerStatisticsCardContext,
  ) {
    this.element.dataset.tag = tag;
    this.element.dataset.testid = "ls-card";
    this.element.classList.add("ds-ls-card");
    const redraw = () => this.queueDraw();
    this.stepTables = new GenerationCache(redraw);
    this.spectra = new GenerationCache(redraw);
    this.table = new LayerTable(
      (name) => this.chooseSpectrumLayer(name),
      () => this.queueDraw(),
    );
    this.spectrum = new SpectrumPanel((layer) => this.chooseSpectrumLayer(layer));
    this.slider = new StepSlider((step) => {
      this.step = step;
      this.queueDraw();
    });

    const head = cardHead(tag, null);
    const tools = el("div", "ds-ls-head");
    this.statisticPicker.dataset.testid = "ls-statistic";
    this.statisticPicker.setAttribute("aria-label", `Statistic of ${tag} to show`);
    this.statisticPicker.addEventListener("change", () => {
      this.pendingCell = null; // the user's choice: no mark carried to the new heatmap
      this.setStatistic(this.statisticPicker.value);
    });
    const statLabel = el("label", "", "statistic");
    statLabel.append(this.statisticPicker);
    this.runPicker.dataset.testid = "ls-run";
    this.runPicker.setAttribute("aria-label", "Run whose step the table and the charts below show");
    this.runPicker.addEventListener("change", () => {
      this.chosenRun = this.runPicker.value;
      this.queueDraw();
    });
    this.runLabel.append(this.runPicker);
    tools.append(statLabel, this.runLabel, this.slider.element);
    this.element.append(head, tools, this.help, this.errors, this.heat, this.depth.element, this.table.element);
    this.element.append(this.grads.element, this.spectrum.element);
    this.grads.element.hidden = true;
    this.spectrum.element.hidden = true;
    this.renderStatistics();
  }

  private store(statistic: string | null): DataStore {
    const key = statistic ?? "";
    let store = this.stores.get(key);
    if (!store) {
      store = new DataStore((run, tag) => fetchStatisticGrid(run, tag, statistic));
      this.stores.set(key, store);
    }
    return store;
  }

  /** The loaded grid of `run` for `statistic` (the current one by default), asking for it if needed. */
  private grid(run: string, statistic: string | null = this.statistic): StatisticGrid | null {
    const store = this.store(statistic);
    const gen = this.ctx.generation();
    if (!store.isFresh(run, this.tag, gen)) {
      void store.load(run, this.tag, gen).then(() => this.onGrid());
    }
    const data = store.get(run, this.tag)?.data;
    return data ? (data as StatisticGrid) : null;
  }

  /** A grid answered: learn the series' statistics and part from the first, then redraw. */
  private onGrid(): void {
    if (this.statistic === null) {
      for (const entry of this.runs) {
        const data = this.store(null).get(entry.run, this.tag)?.data as StatisticGrid | undefined;
        if (!data) continue;
        // Open on std (module outputs) or the gradient norm (parameters) when the series has it.
        this.statistic = defaultStatistic(data.statistics, data.part) ?? data.statistic;
        // The route's default is that statistic's store too: no second request for it.
        if (!this.stores.has(data.statistic)) this.stores.set(data.statistic, this.store(null));
        break;
      }
    }
    for (const entry of this.runs) {
      const data = this.store(this.statistic).get(entry.run, this.tag)?.data as StatisticGrid | undefined;
      if (!data) continue;
      this.statistics = data.statistics;
      this.part = data.part;
      break;
    }
    this.renderStatistics();
    this.ensureGridCard();
    this.queueDraw();
  }

  private setStatistic(name: string): void {
    if (name === this.statistic || name === "") return;
    this.statistic = name;
    this.part = statisticInfo(name).part;
    this.ensureGridCard();
    this.queueDraw();
  }

  private renderStatistics(): void {
    const signature = JSON.stringify([this.statistics, this.statistic]);
    if (this.statisticPicker.dataset.signature === signature) return;
    this.statisticPicker.dataset.signature = signature;
    const names = this.statistics.length > 0 ? this.statistics : this.statistic ? [this.statistic] : [];
    this.statisticPicker.replaceChildren(
      ...names.map((name) => {
        const o = el("option", "", statisticTitle(name));
        o.value = name;
        o.title = statisticInfo(name).help;
        o.selected = name === this.statistic;
        return o;
      }),
    );
    this.statisticPicker.disabled = names.length < 2;
    this.help.textContent = this.statistic ? statisticInfo(this.statistic).help : "";
  }

  /** The heatmap card of the current statistic (a new one when the statistic changed). */
  private ensureGridCard(): void {
    // Not before the first answer says which statistic the card opens on.
    const key = this.statistic;
    if (key === null || (this.gridCard && this.gridCardFor === key)) return;
    this.gridCard?.dispose();
    const card = new GridCard(this.tag, {
      store: this.store(this.statistic),
      visibility: this.ctx.visibility,
      generation: this.ctx.generation,
      kind: gridKind(this.part, this.statistic),
    });
    this.gridCard = card;
    this.gridCardFor = key;
    card.element.dataset.statistic = key;
    this.heat.replaceChildren(card.element);
    card.setSidebarFilter(this.sidebar);
    card.update(this.runs);
    if (this.pendingCell) card.reveal(this.pendingCell);
    card.refresh();
  }

  /**
   * Show a finding's evidence: its statistic, its run's table and charts at its step, its row
   * marked and plotted in the statistic's heatmap card and flagged in the table. Returns what
   * to scroll to: the run's heatmap when the card has several runs, else the card.
   */
  reveal(target: { run: string; step: number; name?: string; statistic?: string }): HTMLElement {
    if (target.statistic) {
      this.setStatistic(target.statistic);
      this.renderStatistics();
    }
    if (this.runs.some((e) => e.run === target.run)) {
      this.chosenRun = target.run;
      this.runPicker.value = target.run;
    }
    this.pendingCell = { run: target.run, step: target.step, name: target.name };
    this.pendingStep = target.step;
    this.table.highlight(target.name ?? null);
    const block = this.gridCard?.reveal(this.pendingCell);
    this.queueDraw();
    // With several runs, the run's heatmap (its marked cell) rather than the card's top.
    return block && block !== this.gridCard?.element ? block : this.element;
  }

  setSidebarFilter(regex: RegExp | null): void {
    const narrowing = regex !== null && regex.source !== "(?:)" && !regex.test(this.tag) ? regex : null;
    this.sidebar = narrowing;
    this.gridCard?.setSidebarFilter(regex);
    this.table.setSidebarFilter(narrowing);
    this.queueDraw();
  }

  update(entries: readonly CardEntry[]): void {
    this.runs = [...entries];
    const signature = JSON.stringify(entries.map((e) => e.run));
    if (this.runPicker.dataset.signature !== signature) {
      this.runPicker.dataset.signature = signature;
      this.runPicker.replaceChildren(
        ...entries.map((e) => {
          const o = el("option", "", e.run);
          o.value = e.run;
          return o;
        }),
      );
    }
    if (this.chosenRun === null || !entries.some((e) => e.run === this.chosenRun)) {
      this.chosenRun = entries[0]?.run ?? null;
    }
    this.runPicker.value = this.chosenRun ?? "";
    this.runLabel.hidden = entries.length < 2;
    this.ensureGridCard();
    this.gridCard?.update(entries);
    this.queueDraw();
  }

  refresh(): void {
    this.gridCard?.refresh();
    this.queueDraw();
  }

  resize(): void {
    this.gridCard?.resize();
    this.queueDraw();
  }

  dispose(): void {
    this.gridCard?.dispose();
    this.gridCard = null;
  }

  private chooseSpectrumLayer(layer: string): void {
    this.spectrumLayer = layer;
    this.queueDraw();
    if (!this.spectrum.element.hidden) this.spectrum.element.scrollIntoView({ block: "nearest" });
  }

  private queueDraw(): void {
    if (this.drawQueued) return;
    this.drawQueued = true;
    window.requestAnimationFrame(() => {
      this.drawQueued = false;
      this.draw();
    });
  }

  private width(): number {
    return Math.max(240, (this.element.clientWidth || 900) - 34);
  }

  /** Names of every run's grid in model order (first seen), narrowed by the filters. */
  private names(grids: readonly StatisticGrid[]): string[] {
    const seen = new Set<string>();
    const out: string[] = [];
    for (const g of grids) for (const n of g.names) if (!seen.has(n)) (seen.add(n), out.push(n));
    return out.filter(this.table.passes());
  }

  private draw(): void {
    const width = this.width();
    const loaded: DepthRun[] = [];
    const errors: string[] = [];
    for (const e of this.runs) {
      const grid = this.grid(e.run);
      if (grid) loaded.push({ run: e.run, color: e.color, grid });
      const error = this.store(this.statistic).get(e.run, this.tag)?.error;
      if (error) errors.push(`${e.run}: ${error}`);
    }
    this.errors.replaceChildren(...errors.map((m) => el("div", "ds-error", m)));
    const steps = [...new Set(loaded.flatMap((r) => r.grid.steps))].sort((a, b) => a - b);
    // While another statistic's grids load, keep the steps (and the chosen step) as they are.
    if (loaded.length > 0 || this.runs.length === 0) this.slider.setSteps(steps);
    if (this.pendingStep !== null && steps.length > 0) {
      this.slider.select(this.pendingStep);
      this.pendingStep = null;
    }
    this.step = this.slider.value;
    const names = this.names(loaded.map((r) => r.grid));
    this.element.dataset.part = this.part ?? "";
    this.element.dataset.statistic = this.statistic ?? "";

    const run = this.chosenRun;
    const part: Part = this.part ?? "activations";
    const runGrid = loaded.find((r) => r.run === run)?.grid ?? null;
    // The table: every statistic of the chosen run at the step it shows.
    let table: StepTable | null = null;
    if (run !== null && runGrid && this.step !== null) {
      const at = stepAt(runGrid, this.step);
      const key = JSON.stringify([run, at]);
      const got = this.stepTables.get(key, this.ctx.generation(), () => fetchStepTable(run, this.tag, at));
      if (got?.data) table = got.data;
      // While another step loads, the table goes on showing the one before.
      if (got !== undefined || !this.table.shows(run, part)) this.table.show(table, part, run, got?.error);
    } else {
      this.table.show(null, part, run ?? "", runGrid === null ? "Loading…" : "No steps.");
    }
    // Through depth, the table's flagged layers ringed on its run's line.
    let flagged: DepthFlags | null = null;
    if (table !== null && run !== null && part === "activations" && runGrid && table.step === stepAt(runGrid, this.step)) {
      const threshold = this.table.thresholdFraction();
      const flags = new Map<string, Flags>();
      table.layers.forEach((name, i) => {
        const f = flagsOf(activationValue(table, i, "dead_fraction"), activationValue(table, i, "saturated_fraction"), threshold);
        if (f.dead || f.saturated) flags.set(name, f);
      });
      flagged = { run, flags };
    }
    this.depth.draw(loaded, names, this.step, width, flagged);

    // Parameters: the gradient norm of each over steps.
    const showGrads = part === "parameters" && this.statistics.includes("grad_norm");
    this.grads.element.hidden = !showGrads;
    if (showGrads && run !== null) {
      const grid = this.grid(run, "grad_norm");
      const error = this.store("grad_norm").get(run, this.tag)?.error;
      this.grads.draw(run, grid, grid ? this.names([grid]) : [], this.step, width, error);
    }

    // Module outputs with a covariance: the spectrum of the chosen layer.
    const withCovariance = part === "activations" && this.statistics.includes("effective_dimension");
    this.spectrum.element.hidden = !withCovariance;
    if (withCovariance && run !== null) this.drawSpectrum(run, width);
  }

  private drawSpectrum(run: string, width: number): void {
    const dims = this.grid(run, "effective_dimension");
    if (!dims) {
      this.spectrum.message(this.store("effective_dimension").get(run, this.tag)?.error ?? "Loading…");
      return;
    }
    // Layers with an effective dimension at some step have a covariance spectrum.
    const P = dims.names.length;
    const layers = dims.names.filter((_, j) => {
      for (let i = 0; i < dims.steps.length; i++) if (!dims.missing[i * P + j]) return true;
      return false;
    });
    if (layers.length === 0) {
      this.spectrum.setLayers([], null);
      this.spectrum.message("No layer of this run has a covariance spectrum.");
      return;
    }
    // Until one is chosen (or when the chosen one has none): the deepest layer that has one.
    if (this.spectrumLayer === null || !layers.includes(this.spectrumLayer)) this.spectrumLayer = layers[layers.length - 1];
    const layer = this.spectrumLayer as string;
    this.spectrum.setLayers(layers, layer);
    const runs: SpectrumRun[] = [];
    const gen = this.ctx.generation();
    let error: string | undefined;
    for (const e of this.runs) {
      const got = this.spectra.get(JSON.stringify([e.run, layer]), gen, () => fetchLayerSpectrum(e.run, this.tag, layer));
      if (got?.data) runs.push({ run: e.run, color: e.color, spectrum: got.data });
      else if (got?.error) error = `${e.run}: ${got.error}`;
    }
    if (runs.length === 0 && error) this.spectrum.message(error);
    else this.spectrum.draw(runs, this.step, width);
  }
}
