// Confusion matrices: one card per (run, tag).
//   - accuracy, macro F1 and weighted F1 over the logged steps (a small chart);
//   - a step slider; the step's matrix as a heatmap, class names on the axes (rows true
//     classes, columns predicted), shown as counts or normalised by row (recall on the
//     diagonal) or by column (precision on the diagonal); hover gives the counts and both
//     fractions;
//   - the per-class table (support, predicted, precision, recall, F1), sortable by any column;
//   - the most-confused (true → predicted) pairs.

import { cardHead, el, nameCard, runError } from "../dom";
import { errorText } from "../json";
import { StepSlider } from "../slider";
import { addStyles } from "../style";
import { hideTooltip, showTooltip } from "../tooltip";
import { CardListView, type Card } from "../views/card_list";
import type { ViewContext, ViewEntry } from "../views/kind_view";
import {
  fetchSeries,
  fetchStep,
  normalized,
  type ClassRow,
  type ConfusionSeries,
  type ConfusionStepData,
  type Normalization,
} from "./api";

addStyles(`
.ds-cm-toolbar { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; margin: 8px 0 4px; }
.ds-cm-body { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.ds-cm-grid { border-collapse: collapse; font-size: 11px; }
.ds-cm-grid td.ds-cm-cell { width: 28px; height: 28px; text-align: center; font-variant-numeric: tabular-nums;
  border: 1px solid #fff; cursor: default; }
.ds-cm-grid th { font-weight: 500; color: #616161; padding: 2px 4px; white-space: nowrap; }
.ds-cm-grid th.ds-cm-col { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
.ds-cm-axis { font-size: 11px; color: #757575; }
.ds-cm-table { border-collapse: collapse; font-size: 12px; }
.ds-cm-table th { text-align: left; font-weight: 500; color: #616161; padding: 3px 8px;
  border-bottom: 1px solid #e0e0e0; cursor: pointer; user-select: none; }
.ds-cm-table td { padding: 3px 8px; border-bottom: 1px solid #f0f0f0; font-variant-numeric: tabular-nums; }
.ds-cm-pairs { font-size: 12px; margin: 4px 0; padding-left: 18px; }
.ds-cm-error { color: #c62828; }
.ds-cm-warning { color: #e65100; font-size: 12px; margin: 4px 0; }
.ds-cm-summary { font-size: 13px; margin: 4px 0; }
`);

function fmt(value: number, digits = 3): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "—";
}

function percent(value: number): string {
  return Number.isFinite(value) ? `${(100 * value).toFixed(1)}%` : "—";
}

/** A white → blue ramp for t in [0, 1] (NaN: light grey). */
export function cellColor(t: number): string {
  if (!Number.isFinite(t)) return "#f5f5f5";
  const u = Math.max(0, Math.min(1, t));
  const r = Math.round(255 + (13 - 255) * u);
  const g = Math.round(255 + (71 - 255) * u);
  const b = Math.round(255 + (161 - 255) * u);
  return `rgb(${r}, ${g}, ${b})`;
}

type SortKey = keyof ClassRow | "index";
const COLUMNS: [SortKey, string][] = [
  ["index", "#"],
  ["name", "class"],
  ["support", "support"],
  ["predicted", "predicted"],
  ["precision", "precision"],
  ["recall", "recall"],
  ["f1", "F1"],
];

class SeriesChart {
  readonly element = el("div");

  draw(series: ConfusionSeries, width: number): void {
    const height = 140;
    const pad = { l: 36, r: 100, t: 8, b: 22 };
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.dataset.testid = "confusion-series-chart";
    const steps = series.steps;
    const lo = steps[0] ?? 0;
    const hi = steps[steps.length - 1] ?? 1;
    const x = (s: number) => pad.l + ((s - lo) / Math.max(1, hi - lo)) * (width - pad.l - pad.r);
    const y = (v: number) => pad.t + (1 - v) * (height - pad.t - pad.b);
    for (const v of [0, 0.5, 1]) {
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", String(pad.l));
      line.setAttribute("x2", String(width - pad.r));
      line.setAttribute("y1", String(y(v)));
      line.setAttribute("y2", String(y(v)));
      line.setAttribute("stroke", "#eeeeee");
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", String(pad.l - 4));
      label.setAttribute("y", String(y(v) + 4));
      label.setAttribute("text-anchor", "end");
      label.setAttribute("font-size", "10");
      label.textContent = String(v);
      svg.append(line, label);
    }
    const lines: [string, number[], string][] = [
      ["accuracy", series.accuracy, "#1565c0"],
      ["macro F1", series.macroF1, "#ef6c00"],
      ["weighted F1", series.weightedF1, "#2e7d32"],
    ];
    lines.forEach(([name, values, color], k) => {
      const points = values
        .map((v, i) => (Number.isFinite(v) ? `${x(steps[i])},${y(v)}` : null))
        .filter((p): p is string => p !== null);
      const path = document.createElementNS(ns, "polyline");
      path.setAttribute("points", points.join(" "));
      path.setAttribute("fill", "none");
      path.setAttribute("stroke", color);
      path.setAttribute("stroke-width", "1.5");
      path.dataset.series = name;
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", String(width - pad.r + 8));
      label.setAttribute("y", String(pad.t + 12 + 14 * k));
      label.setAttribute("font-size", "11");
      label.setAttribute("fill", color);
      label.textContent = name;
      svg.append(path, label);
    });
    const axis = document.createElementNS(ns, "text");
    axis.setAttribute("x", String(pad.l));
    axis.setAttribute("y", String(height - 4));
    axis.setAttribute("font-size", "10");
    axis.textContent = steps.length ? `steps ${lo} … ${hi}` : "no steps";
    svg.append(axis);
    this.element.replaceChildren(svg);
  }
}

class ConfusionCard implements Card {
  readonly element = el("section", "ds-card");
  private readonly sub = el("div", "ds-card-sub");
  private readonly status = el("div", "ds-placeholder", "Loading…");
  private readonly warnings = el("div");
  private readonly chart = new SeriesChart();
  private readonly slider = new StepSlider((step) => void this.loadStep(step));
  private readonly mode = el("select");
  private readonly stepStatus = el("div");
  private readonly summary = el("div", "ds-cm-summary");
  private readonly grid = el("table", "ds-cm-grid");
  private readonly table = el("table", "ds-cm-table");
  private readonly pairs = el("ol", "ds-cm-pairs");
  private series: ConfusionSeries | null = null;
  private stepData: ConfusionStepData | null = null;
  private sortKey: SortKey = "index";
  private sortDescending = false;
  private token = 0;
  private entry: ViewEntry | null = null;

  constructor(
    readonly run: string,
    readonly tag: string,
  ) {
    nameCard(this.element, "confusion-card", run, tag);
    const head = cardHead(`${tag} — ${run}`, this.sub);
    for (const [value, text] of [
      ["counts", "counts"],
      ["true", "normalised by row (recall)"],
      ["predicted", "normalised by column (precision)"],
    ]) {
      const option = el("option", "", text);
      option.value = value;
      this.mode.append(option);
    }
    this.mode.setAttribute("aria-label", "Show");
    this.mode.dataset.testid = "confusion-normalization";
    this.mode.addEventListener("change", () => this.drawStep());
    const toolbar = el("div", "ds-cm-toolbar");
    const pick = el("label", "", "show ");
    pick.append(this.mode);
    toolbar.append(this.slider.element, pick);
    this.grid.dataset.testid = "confusion-matrix";
    this.table.dataset.testid = "confusion-classes";
    this.pairs.dataset.testid = "confusion-pairs";
    const left = el("div");
    left.append(el("div", "ds-cm-axis", "rows: true class · columns: predicted class"), this.grid);
    const right = el("div");
    right.append(this.table, el("div", "ds-chart-title", "Most confused (true → predicted)"), this.pairs);
    const body = el("div", "ds-cm-body");
    body.append(left, right);
    const seriesSection = el("div", "ds-chart-section");
    seriesSection.append(el("span", "ds-chart-title", "Accuracy and F1 over training"), this.chart.element);
    const stepSection = el("div", "ds-chart-section");
    stepSection.append(el("span", "ds-chart-title", "The matrix at the step"), toolbar, this.stepStatus, this.summary, body);
    this.element.append(head, this.status, this.warnings, seriesSection, stepSection);
  }

  update(entries: readonly ViewEntry[]): void {
    const first = this.entry === null;
    this.entry = entries[0] ?? null;
    if (first) void this.load();
  }

  refresh(): void {
    void this.load();
  }

  resize(): void {
    if (this.series) this.chart.draw(this.series, this.width());
  }

  dispose(): void {
    this.token++;
    hideTooltip();
  }

  private width(): number {
    return Math.max(320, Math.min(900, (this.element.clientWidth || 700) - 32));
  }

  private async load(): Promise<void> {
    const token = ++this.token;
    try {
      const series = await fetchSeries(this.run, this.tag);
      if (token !== this.token) return;
      this.series = series;
      this.status.replaceChildren();
      this.status.hidden = true;
      this.sub.textContent = `${series.classNames.length} classes · ${series.steps.length} steps`;
      this.warnings.replaceChildren(...series.warnings.map((w) => el("div", "ds-cm-warning", w)));
      this.chart.draw(series, this.width());
      const all = series.steps;
      this.slider.setSteps(all);
      const step = this.slider.value;
      if (step !== null && (this.stepData === null || this.stepData.step !== step)) await this.loadStep(step);
    } catch (error) {
      if (token !== this.token) return;
      this.status.hidden = false;
      this.status.replaceChildren(runError(this.run, this.entry?.color ?? "#000", errorText(error)));
    }
  }

  private async loadStep(step: number): Promise<void> {
    const token = this.token;
    try {
      const data = await fetchStep(this.run, this.tag, step);
      if (token !== this.token) return;
      this.stepData = data;
      this.drawStep();
    } catch (error) {
      this.stepStatus.replaceChildren(el("div", "ds-cm-error", errorText(error)));
    }
  }

  private drawStep(): void {
    const data = this.stepData;
    if (!data) return;
    this.stepStatus.replaceChildren();
    if (data.error !== null) {
      this.grid.replaceChildren();
      this.table.replaceChildren();
      this.pairs.replaceChildren();
      this.summary.textContent = "";
      this.stepStatus.append(el("div", "ds-cm-error", `step ${data.step}: ${data.error}`));
      return;
    }
    this.summary.textContent =
      `step ${data.step} · ${data.samples} samples${data.on ? ` (${data.on})` : ""} · accuracy ` +
      `${percent(data.accuracy)} · macro F1 ${fmt(data.macro.f1)} · weighted F1 ${fmt(data.weighted.f1)}`;
    this.summary.dataset.accuracy = String(data.accuracy);
    this.drawGrid(data);
    this.drawTable(data);
    this.pairs.replaceChildren(
      ...data.mostConfused.map((p) => {
        const item = el("li", "", `${p.trueName} → ${p.predictedName}: ${p.count} (${percent(p.fraction)} of ${p.trueName})`);
        item.dataset.true = String(p.true);
        item.dataset.predicted = String(p.predicted);
        return item;
      }),
    );
    if (!data.mostConfused.length) this.pairs.append(el("li", "", "none: every sample is on the diagonal"));
  }

  private drawGrid(data: ConfusionStepData): void {
    const by = this.mode.value as Normalization;
    const shown = normalized(data.counts, by);
    const byRow = normalized(data.counts, "true");
    const byColumn = normalized(data.counts, "predicted");
    const max = by === "counts" ? Math.max(1, ...data.counts.flat()) : 1;
    const head = el("tr");
    head.append(el("th", "ds-cm-axis", "true \\ predicted"));
    for (const name of data.classNames) head.append(el("th", "ds-cm-col", name));
    const rows = data.counts.map((row, i) => {
      const tr = el("tr");
      tr.append(el("th", "", data.classNames[i]));
      row.forEach((count, j) => {
        const value = shown[i][j];
        const td = el("td", "ds-cm-cell", by === "counts" ? String(count) : fmt(value, 2));
        const t = value / max;
        td.style.background = cellColor(t);
        td.style.color = t > 0.55 ? "#fff" : "#212121";
        td.dataset.true = String(i);
        td.dataset.predicted = String(j);
        td.dataset.count = String(count);
        td.addEventListener("mousemove", (event) =>
          showTooltip(
            [
              { label: "true", value: data.classNames[i], strong: true },
              { label: "predicted", value: data.classNames[j], strong: true },
              { field: "count", label: "count", value: String(count) },
              { field: "row", label: `of true ${data.classNames[i]}`, value: percent(byRow[i][j]) },
              { field: "column", label: `of predicted ${data.classNames[j]}`, value: percent(byColumn[i][j]) },
            ],
            event.clientX,
            event.clientY,
          ),
        );
        td.addEventListener("mouseleave", () => hideTooltip());
        tr.append(td);
      });
      return tr;
    });
    this.grid.replaceChildren(head, ...rows);
    this.grid.dataset.step = String(data.step);
    this.grid.dataset.mode = by;
  }

  private drawTable(data: ConfusionStepData): void {
    const head = el("tr");
    for (const [key, text] of COLUMNS) {
      const arrow = key === this.sortKey ? (this.sortDescending ? " ▼" : " ▲") : "";
      const th = el("th", "", text + arrow);
      th.dataset.sort = key;
      th.addEventListener("click", () => {
        if (this.sortKey === key) this.sortDescending = !this.sortDescending;
        else {
          this.sortKey = key;
          this.sortDescending = key !== "index" && key !== "name";
        }
        this.drawTable(data);
      });
      head.append(th);
    }
    const order = data.perClass.map((_, i) => i);
    const key = this.sortKey;
    order.sort((a, b) => {
      let cmp: number;
      if (key === "index") cmp = a - b;
      else if (key === "name") cmp = data.perClass[a].name.localeCompare(data.perClass[b].name);
      else {
        const va = data.perClass[a][key] as number;
        const vb = data.perClass[b][key] as number;
        // Undefined values (NaN) last, whichever the direction.
        if (Number.isNaN(va) || Number.isNaN(vb)) return Number.isNaN(va) ? (Number.isNaN(vb) ? a - b : 1) : -1;
        cmp = va - vb || a - b;
      }
      return this.sortDescending ? -cmp : cmp;
    });
    const body = el("tbody");
    for (const i of order) {
      const r = data.perClass[i];
      const tr = el("tr");
      tr.dataset.class = r.name;
      const cells: [string, string][] = [
        ["index", String(i)],
        ["name", r.name],
        ["support", String(r.support)],
        ["predicted", String(r.predicted)],
        ["precision", fmt(r.precision)],
        ["recall", fmt(r.recall)],
        ["f1", fmt(r.f1)],
      ];
      for (const [field, text] of cells) {
        const td = el("td", "", text);
        td.dataset.field = field;
        tr.append(td);
      }
      body.append(tr);
    }
    const thead = el("thead");
    thead.append(head);
    this.table.replaceChildren(thead, body);
  }
}

/** One card per run and tag. */
export class ConfusionView extends CardListView<ConfusionCard> {
  constructor(_ctx: ViewContext) {
    super({
      key: (e) => `${e.run}\u0000${e.tag}`,
      create: (_key, entries) => new ConfusionCard(entries[0].run, entries[0].tag),
    });
  }
}
