// Gradient norm per parameter over steps, on a log axis: a line per parameter of one run,
// coloured by its place in the model (first → last), so a spike (which comes before a
// divergence) and the layer it starts in stand out.

import { interpolatePlasma } from "d3-scale-chromatic";
import { el } from "../dom";
import { legendItem, lineSample } from "../legend";
import type { StatisticGrid } from "./api";
import { statisticTitle } from "./statistics";
import { XYChart, formatNumber, type XYSeries } from "./xychart";

/** The colour of the parameter at `index` of `count` (plasma, its too-light end left out). */
export function depthColor(index: number, count: number): string {
  const t = count <= 1 ? 0 : index / (count - 1);
  return interpolatePlasma(0.85 * t);
}

/** Row `name`'s values over the grid's steps (NaN where not measured). */
export function rowSeries(grid: StatisticGrid, name: string): Float64Array {
  const j = grid.names.indexOf(name);
  const S = grid.steps.length;
  const P = grid.names.length;
  const out = new Float64Array(S).fill(NaN);
  if (j < 0) return out;
  for (let i = 0; i < S; i++) if (!grid.missing[i * P + j]) out[i] = grid.values[i * P + j];
  return out;
}

export class GradNormPanel {
  readonly element = el("div", "ds-chart-section");
  private readonly note = el("span", "ds-muted");
  private readonly chart = new XYChart("Gradient norm per parameter over steps, log scale", "ls-grad-norms");
  private readonly legend = el("div", "ds-chart-legend");
  private readonly placeholder = el("div", "ds-placeholder", "Loading…");

  constructor() {
    const head = el("div", "ds-chart-head");
    head.append(el("span", "ds-chart-title", "Gradient norm per parameter"), this.note);
    this.element.append(head, this.placeholder, this.chart.element, this.legend);
  }

  /** Draw `grid` (one run's grad_norm) for `names` (model order, filtered); `step`: the rule. */
  draw(run: string, grid: StatisticGrid | null, names: readonly string[], step: number | null, width: number, message?: string): void {
    this.placeholder.hidden = grid !== null && names.length > 0;
    this.placeholder.textContent = message ?? (grid === null ? "Loading…" : "No parameter passes the filters.");
    this.chart.element.hidden = !this.placeholder.hidden;
    this.legend.hidden = this.chart.element.hidden;
    if (grid === null || names.length === 0) return;
    this.note.textContent = `${run}: each line a parameter, coloured by its place in the model`;
    const x = Float64Array.from(grid.steps);
    const series: XYSeries[] = names.map((name, k) => ({
      key: name,
      label: name,
      color: depthColor(k, names.length),
      x,
      y: rowSeries(grid, name),
      width: names.length > 50 ? 1 : 1.5,
      data: { name },
    }));
    this.chart.draw({
      series,
      width,
      height: 300,
      x: { title: "step", log: false, integer: true },
      y: { title: statisticTitle(grid.statistic || "grad_norm"), log: true },
      rule: step,
      describe: (s, k) => [
        { label: "parameter", field: "name", value: s.label, strong: true },
        { label: "step", field: "step", value: String(grid.steps[k]) },
        { label: "‖g‖", color: s.color, field: "value", value: formatNumber(Number(s.y[k])) },
      ],
    });
    this.chart.element.dataset.run = run;
    this.legend.replaceChildren(
      legendItem(lineSample(depthColor(0, 2), ""), `first: ${names[0]}`),
      legendItem(lineSample(depthColor(1, 2), ""), `last: ${names[names.length - 1]}`),
    );
  }
}
