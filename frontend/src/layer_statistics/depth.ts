// Through depth: the chosen statistic against layer index (model order) at the selected step,
// a line per run in its colour, with earlier steps drawn faint behind it (the picture of
// Glorot & Bengio 2010: activations' std should neither vanish nor explode with depth).
// The x axis is labelled with the layers' names, thinned so that no two overlap: every name
// when they all fit, else the first and last, where the top-level module changes, and the
// starts of numbered blocks ("blocks.3"), as many as fit; the full name on hover.

import { el } from "../dom";
import { legendItem, lineSample } from "../legend";
import { nearestStepIndex } from "../stats";
import { LABEL_FONT } from "../style";
import { ZERO_WEIGHT_TEXT } from "../update_ratios/format";
import { quantityTitle } from "../update_ratios/grid";
import type { StatisticGrid } from "./api";
import { XYChart, formatNumber, type AxisLabel, type XYSeries } from "./xychart";

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
 * name is not in the grid, was not measured at that step, or has no value because its weight
 * was exactly zero (‖g‖/‖W‖ undefined: a gap, not a non-finite mark).
 */
export function depthProfile(grid: StatisticGrid, names: readonly string[], i: number): Float64Array {
  const out = new Float64Array(names.length).fill(NaN);
  if (i < 0 || i >= grid.steps.length) return out;
  const column = new Map(grid.names.map((n, j) => [n, j]));
  const P = grid.names.length;
  names.forEach((name, k) => {
    const j = column.get(name);
    if (j === undefined || grid.missing[i * P + j] || grid.zeroWeight[i * P + j]) return;
    out[k] = grid.values[i * P + j];
  });
  return out;
}

/** Whether `name`'s weight was exactly zero at step index `i` of `grid` (its ratio undefined). */
export function zeroWeightAt(grid: StatisticGrid, name: string, i: number): boolean {
  const j = grid.names.indexOf(name);
  return j >= 0 && i >= 0 && i < grid.steps.length && grid.zeroWeight[i * grid.names.length + j] === 1;
}

const NUMBERED = /^\d+$/;

/** The numbered block a name is in: its path up to its first numbered segment ("blocks.3"), or null. */
export function blockOf(name: string): string | null {
  const path = name.split(":")[0].split(".");
  const k = path.findIndex((segment) => NUMBERED.test(segment));
  return k < 0 ? null : path.slice(0, k + 1).join(".");
}

/** The widest a tick label may be (px); a longer name keeps its end, after "…". */
export const MAX_LABEL_PX = 180;
/** The least space between two labels (px). */
export const LABEL_GAP_PX = 8;

/** `text` cut from the left (after "…") until `width` says it fits in `max` px. */
function fitText(text: string, width: (s: string) => number, max: number): string {
  if (width(text) <= max) return text;
  let cut = 1;
  while (cut < text.length - 1 && width(`…${text.slice(cut)}`) > max) cut++;
  return `…${text.slice(cut)}`;
}

/**
 * The ticks of the through-depth chart's x axis, labelled with layer names, none overlapping.
 * `position(k)`: the px of layer k; `room`: the px a label may use; `width(text)`: a label's
 * px. Every full name when all fit; otherwise, in this order, each where it overlaps no label
 * already placed: the first and last layers; the layers where the top-level module changes;
 * the starts of numbered blocks, labelled by the block ("blocks.3"), every k-th of them with
 * the least k at which they do not overlap one another (blocks.0, 3, 6, …); then any other
 * layer that fits. A label that would leave `room` is anchored at its tick's start or end.
 */
export function depthLabels(
  names: readonly string[],
  position: (k: number) => number,
  room: [number, number],
  width: (text: string) => number,
): AxisLabel[] {
  const n = names.length;
  if (n === 0) return [];
  type Placed = AxisLabel & { left: number; right: number };
  const box = (k: number, text: string, title: string): Placed => {
    const w = width(text);
    const at = position(k);
    let anchor: AxisLabel["anchor"] = "middle";
    let left = at - w / 2;
    if (left < room[0]) [anchor, left] = ["start", at];
    else if (left + w > room[1]) [anchor, left] = ["end", at - w];
    return { value: k, text, title, anchor, left, right: left + w };
  };
  const place = (wanted: Placed[], all: boolean): Placed[] | null => {
    const placed: Placed[] = [];
    for (const b of wanted) {
      const clear = placed.every((p) => b.right + LABEL_GAP_PX <= p.left || p.right + LABEL_GAP_PX <= b.left);
      if (clear) placed.push(b);
      else if (all) return null;
    }
    return placed;
  };
  const full = (k: number) => box(k, fitText(names[k], width, MAX_LABEL_PX), `${names[k]} (index ${k})`);
  // Every name, when they all fit.
  const every = place(names.map((_, k) => full(k)), true);
  if (every) return every.map(strip);
  const top = (k: number) => names[k].split(":")[0].split(".")[0];
  const blocks = names.map(blockOf);
  const blockEnd = (k: number) => {
    let end = k;
    while (end + 1 < n && blocks[end + 1] === blocks[k]) end++;
    return end;
  };
  const label = (k: number): Placed => {
    const block = blocks[k];
    const starts = block !== null && (k === 0 || blocks[k - 1] !== block);
    if (!starts || block === names[k]) return full(k);
    const end = blockEnd(k);
    const text = fitText(block, width, MAX_LABEL_PX);
    return box(k, text, `${block}: layers ${k}–${end} (${names[k]} … ${names[end]})`);
  };
  const ends: number[] = [];
  const tops: number[] = [];
  const starts: { k: number; ordinal: number }[] = [];
  const rest: number[] = [];
  let ordinal = 0;
  for (let k = 0; k < n; k++) {
    const start = blocks[k] !== null && (k === 0 || blocks[k] !== blocks[k - 1]);
    if (k === 0 || k === n - 1) ends.push(k);
    else if (top(k) !== top(k - 1)) tops.push(k);
    else if (start) starts.push({ k, ordinal });
    else rest.push(k);
    if (start) ordinal++;
  }
  // Every k-th block start (counted with those where the top-level module changes, so the
  // picks stay in step with the block numbers), k the least at which they clear one another.
  let picked: Placed[] = [];
  for (let stride = 1; stride <= Math.max(1, ordinal); stride++) {
    picked = starts.filter((b) => b.ordinal % stride === 0).map((b) => label(b.k));
    if (place(picked, true) !== null) break;
  }
  const placed = place([...ends.map(label), ...tops.map(label), ...picked, ...rest.map(label)], false) ?? [];
  return placed.sort((a, b) => a.value - b.value).map(strip);
}

function strip(p: AxisLabel): AxisLabel {
  return { value: p.value, text: p.text, title: p.title, anchor: p.anchor };
}

let measurer: CanvasRenderingContext2D | null | undefined;

/** A tick label's width in px (the axis font), measured on a canvas; 6.5 px a character without one. */
export function labelWidth(text: string): number {
  if (measurer === undefined) {
    measurer = typeof document === "undefined" ? null : document.createElement("canvas").getContext("2d");
    if (measurer) measurer.font = LABEL_FONT;
  }
  return measurer ? measurer.measureText(text).width : 6.5 * text.length;
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
        title: `${usable[0].grid.part === "parameters" ? "parameter" : "layer"} (model order)`,
        log: false,
        integer: true,
        domain: [0, Math.max(1, names.length - 1)],
        labels: (position, room) => depthLabels(names, position, room, labelWidth),
      },
      y: { title: quantityTitle(quantity), log },
      // Every run's value at the layer under the pointer (x is the layer's index in all of them).
      describe: (_s, k) => [
        { label: usable[0].grid.part === "parameters" ? "parameter" : "layer", field: "layer", value: names[k], strong: true },
        { label: "index", field: "index", value: String(k) },
        ...series
          .filter((b) => b.data?.selected === "true")
          .map((b) => {
            const shown = usable.find((r) => r.run === b.data?.run);
            const zero = shown !== undefined && zeroWeightAt(shown.grid, names[k], stepIndexFor(shown.grid, step));
            return {
              label: `${b.data?.run ?? ""} (step ${b.data?.step ?? ""})`,
              color: b.color,
              field: `value:${b.data?.run ?? ""}`,
              value: zero ? ZERO_WEIGHT_TEXT : formatNumber(Number(b.y[k])),
            };
          }),
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
