// Through depth: the chosen statistic against layer index (model order) at the selected step,
// a line per run in its colour, with earlier steps drawn faint behind it (the picture of
// Glorot & Bengio 2010: activations' std should neither vanish nor explode with depth).

import { el } from "../dom";
import { legendItem, lineSample } from "../legend";
import { nearestStepIndex } from "../stats";
import { quantityTitle } from "../update_ratios/grid";
import type { StatisticGrid } from "./api";
import { XYChart, formatNumber, type XYSeries } from "./xychart";

/** Earlier steps drawn faint behind the selected one. */
export const FADED_STEPS = 5;

/**
 * Up to `count` step indices before `selected`, spread evenly from the first step (so the
 * faint lines show the whole way there), ascending, without repeats.
 */
export function fadedStepIndices(selected: number, count: number): number[] {
  if (selected <= 0 || count <= 0) return [];
  if (selected <= count) return Array.from({ length: selected }, (_, k) => k);
  const out = new Set<number>();
  for (let k = 0; k < count; k++) out.add(Math.round((k * (selected - 1)) / Math.max(1, count - 1)));
  return [...out].sort((a, b) => a - b);
}

/**
 * The grid's values at step index `i` for `names` (x = position in `names`): NaN where a
 * name is not in the grid or was not measured at that step.
 */
export function depthProfile(grid: StatisticGrid, names: readonly string[], i: number): Float64Array {
  const out = new Float64Array(names.length).fill(NaN);
  if (i < 0 || i >= grid.steps.length) return out;
  const column = new Map(grid.names.map((n, j) => [n, j]));
  const P = grid.names.length;
  names.forEach((name, k) => {
    const j = column.get(name);
    if (j === undefined || grid.missing[i * P + j]) return;
    out[k] = grid.values[i * P + j];
  });
  return out;
}

/** The step index a run shows for the selected step: that step, else the nearest it has. */
export function stepIndexFor(grid: StatisticGrid, step: number | null): number {
  if (grid.steps.length === 0) return -1;
  if (step === null) return grid.steps.length - 1;
  return nearestStepIndex(grid.steps, step);
}

/** The flags' colours on the chart: dead (red) and saturated (orange), as the table's badges. */
export const DEAD_MARK = "#e53935";
export const SATURATED_MARK = "#fb8c00";

/** Flagged layers of one run at its shown step: name → its flags. */
export interface DepthFlags {
  run: string;
  flags: ReadonlyMap<string, { dead: boolean; saturated: boolean }>;
}

export interface DepthRun {
  run: string;
  color: string;
  grid: StatisticGrid;
}

export class DepthPanel {
  readonly element = el("div", "ds-chart-section");
  private readonly chart = new XYChart("The statistic against layer index at the selected step", "ls-depth");
  private readonly legend = el("div", "ds-chart-legend");
  private readonly note = el("div", "ds-placeholder");

  constructor() {
    const head = el("div", "ds-chart-head");
    head.append(el("span", "ds-chart-title", "Through depth"));
    head.append(el("span", "ds-muted", "at the selected step; earlier steps faint"));
    this.element.append(head, this.note, this.chart.element, this.legend);
  }

  /** `flagged`: the table's run's flagged layers, ringed on its line (dead red, saturated orange). */
  draw(
    runs: readonly DepthRun[],
    names: readonly string[],
    step: number | null,
    width: number,
    flagged: DepthFlags | null = null,
  ): void {
    const usable = runs.filter((r) => r.grid.steps.length > 0);
    this.note.hidden = usable.length > 0 && names.length > 0;
    this.note.textContent = names.length === 0 ? "No layer passes the filters." : "Loading…";
    this.chart.element.hidden = !this.note.hidden;
    if (!this.note.hidden) return;
    const quantity = usable[0].grid.quantity;
    const x = Float64Array.from(names, (_, k) => k);
    const series: XYSeries[] = [];
    const shownSteps = new Map<string, number>();
    let fadedAny: number[] = [];
    for (const r of usable) {
      const i = stepIndexFor(r.grid, step);
      shownSteps.set(r.run, r.grid.steps[i]);
      const faded = fadedStepIndices(i, FADED_STEPS);
      if (faded.length > fadedAny.length) fadedAny = faded.map((f) => r.grid.steps[f]);
      faded.forEach((f, n) => {
        series.push({
          key: `${r.run}@${r.grid.steps[f]}`,
          label: `${r.run} · step ${r.grid.steps[f]}`,
          color: r.color,
          x,
          y: depthProfile(r.grid, names, f),
          opacity: 0.12 + (0.3 * (n + 1)) / faded.length,
          width: 1.25,
          data: { run: r.run, step: String(r.grid.steps[f]) },
        });
      });
      series.push({
        key: `${r.run}@${r.grid.steps[i]}`,
        label: r.run,
        color: r.color,
        x,
        y: depthProfile(r.grid, names, i),
        width: 2,
        data: { run: r.run, step: String(r.grid.steps[i]), selected: "true" },
      });
    }
    const log = quantity.scale === "log";
    const marks: { x: number; y: number; color: string; kind: string }[] = [];
    const flaggedLine = flagged ? series.find((s) => s.data?.run === flagged.run && s.data?.selected === "true") : undefined;
    let dead = 0;
    let saturated = 0;
    if (flagged && flaggedLine) {
      names.forEach((name, k) => {
        const f = flagged.flags.get(name);
        const y = Number(flaggedLine.y[k]);
        if (f?.dead) {
          marks.push({ x: k, y, color: DEAD_MARK, kind: "dead" });
          dead++;
        }
        if (f?.saturated) {
          marks.push({ x: k, y, color: SATURATED_MARK, kind: "saturated" });
          saturated++;
        }
      });
    }
    this.chart.draw({
      marks,
      series,
      width,
      x: {
        title: `${usable[0].grid.part === "parameters" ? "parameter" : "layer"} index (model order)`,
        log: false,
        integer: true,
        domain: [0, Math.max(1, names.length - 1)],
        tickFormat: (v) => String(v),
      },
      y: { title: quantityTitle(quantity), log },
      // Every run's value at the layer under the pointer (x is the layer's index in all of them).
      describe: (_s, k) => [
        { label: usable[0].grid.part === "parameters" ? "parameter" : "layer", field: "layer", value: names[k], strong: true },
        { label: "index", field: "index", value: String(k) },
        ...series
          .filter((b) => b.data?.selected === "true")
          .map((b) => ({
            label: `${b.data?.run ?? ""} (step ${b.data?.step ?? ""})`,
            color: b.color,
            field: `value:${b.data?.run ?? ""}`,
            value: formatNumber(Number(b.y[k])),
          })),
      ],
    });
    this.chart.element.dataset.steps = JSON.stringify(Object.fromEntries(shownSteps));
    this.chart.element.dataset.layers = String(names.length);
    this.legend.replaceChildren();
    for (const r of usable) {
      this.legend.appendChild(legendItem(lineSample(r.color, ""), `${r.run} at step ${shownSteps.get(r.run)}`));
    }
    const ring = (color: string, text: string) => {
      const dot = el("span", "ds-box");
      dot.style.background = color;
      dot.style.borderRadius = "50%";
      dot.style.width = "10px";
      this.legend.appendChild(legendItem(dot, text));
    };
    if (dead > 0) ring(DEAD_MARK, `dead channels above the table's threshold (${flagged?.run})`);
    if (saturated > 0) ring(SATURATED_MARK, `saturated units above the table's threshold (${flagged?.run})`);
    if (fadedAny.length > 0) {
      const faint = lineSample("#9e9e9e", "");
      faint.style.opacity = "0.45";
      this.legend.appendChild(legendItem(faint, `earlier steps, fainter the older (${fadedAny.join(", ")})`));
    }
  }
}
