// The layer statistics' line charts (through depth, gradient norms over steps, eigenvalues
// by rank, effective dimension over steps): lines of (x, y) points on linear or log axes,
// some faint (earlier steps), a vertical rule (the selected step), a red mark on the top
// edge for a non-finite value, and a tooltip naming the line nearest the pointer.

import { axisBottom, axisLeft } from "d3-axis";
import { scaleLinear, scaleLog, type ScaleContinuousNumeric, type ScaleLogarithmic } from "d3-scale";
import { line } from "d3-shape";
import { formatPow10, locale } from "../format";
import { NON_FINITE_COLOR } from "../palette";
import { axisTitles, clearPlot, decadeTicks, plotSvg } from "../svgchart";
import { hideTooltip, showTooltip, type TooltipRow } from "../tooltip";

/** One line. `y[k]` is NaN where there is no value (the line skips it). */
export interface XYSeries {
  /** data-key of its path (tests and hover find it by it). */
  key: string;
  /** Tooltip label, e.g. the run, or "run · step 40". */
  label: string;
  color: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  /** 0–1; < 1 draws it faint (no hover). */
  opacity?: number;
  width?: number;
  dash?: string;
  /** Extra data-* attributes of its path. */
  data?: Record<string, string>;
}

export interface AxisSpec {
  title: string;
  log: boolean;
  /** Tick labels (default: numbers). */
  tickFormat?: (v: number) => string;
  /** Integer ticks only (steps, layer indices). */
  integer?: boolean;
  domain?: [number, number];
  /**
   * Labelled ticks instead of the scale's numbers (the through-depth chart's layer names):
   * given where a value lies (px from the plot's left) and the px range a label may use
   * (margins included), the ticks to draw, each with its text, anchor and hover text.
   */
  labels?: (position: (v: number) => number, room: [number, number]) => readonly AxisLabel[];
}

/** A labelled tick of `AxisSpec.labels`. */
export interface AxisLabel {
  value: number;
  text: string;
  /** Hover text (an SVG <title>), e.g. the full name. */
  title?: string;
  anchor?: "start" | "middle" | "end";
}

export interface XYChartSpec {
  series: readonly XYSeries[];
  width: number;
  height?: number;
  x: AxisSpec;
  y: AxisSpec;
  /** A vertical rule at this x (the selected step), or null. */
  rule?: number | null;
  /** Marked points (flagged layers): a ring in `color` at (x, y), with data-mark=`kind`. */
  marks?: readonly { x: number; y: number; color: string; kind: string }[];
  /** Tooltip rows for the point `k` of `series` nearest the pointer. */
  describe: (series: XYSeries, k: number) => TooltipRow[];
}

const MARGIN = { top: 14, right: 16, bottom: 40, left: 68 };
const general = locale.format("~g");
const short = locale.format(".3~g");

/** Whether `v` can be drawn on an axis (finite; > 0 on a log axis). */
export function drawable(v: number, log: boolean): boolean {
  return log ? v > 0 && v < Infinity : Number.isFinite(v);
}

/** The extent of the drawable values of every series' `pick`, or null when there is none. */
export function extentOf(
  series: readonly XYSeries[],
  pick: (s: XYSeries) => ArrayLike<number>,
  log: boolean,
): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of series) {
    const values = pick(s);
    for (let k = 0; k < values.length; k++) {
      const v = values[k];
      if (!drawable(v, log)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

function makeScale(spec: AxisSpec, extent: [number, number] | null, range: [number, number], pad: boolean) {
  let [lo, hi] = spec.domain ?? extent ?? (spec.log ? [0.1, 10] : [0, 1]);
  if (spec.log) {
    if (!(hi > lo)) [lo, hi] = [lo / 2, hi * 2];
    const s = scaleLog().domain(pad ? [lo / 1.4, hi * 1.4] : [lo, hi]).range(range);
    return pad ? s.nice() : s;
  }
  if (!(hi > lo)) [lo, hi] = [lo - Math.max(1, Math.abs(lo)) * 0.5, hi + Math.max(1, Math.abs(hi)) * 0.5];
  const margin = pad ? (hi - lo) * 0.05 : 0;
  const s = scaleLinear().domain([lo - margin, hi + margin]).range(range);
  return pad ? s.nice() : s;
}

function ticksOf(scale: ScaleContinuousNumeric<number, number>, spec: AxisSpec, count: number): number[] {
  if (spec.log) {
    const decades = decadeTicks(scale as ScaleLogarithmic<number, number>);
    if (decades.length >= 2) return decades;
  }
  const ticks = scale.ticks(count);
  return spec.integer ? ticks.filter(Number.isInteger) : ticks;
}

export class XYChart {
  readonly element: HTMLDivElement;
  private readonly svg: SVGSVGElement;

  constructor(ariaLabel: string, testid: string) {
    this.element = document.createElement("div");
    this.element.dataset.testid = testid;
    const { plot, svg } = plotSvg(ariaLabel);
    svg.setAttribute("class", "ds-chart-svg");
    this.svg = svg;
    this.element.appendChild(plot);
  }

  draw(spec: XYChartSpec): void {
    const height = spec.height ?? 260;
    const width = Math.max(160, Math.floor(spec.width));
    const plotW = Math.max(60, width - MARGIN.left - MARGIN.right);
    const plotH = height - MARGIN.top - MARGIN.bottom;
    const svg = clearPlot(this.svg, width, height);
    const series = spec.series;
    const x = makeScale(spec.x, extentOf(series, (s) => s.x, spec.x.log), [0, plotW], false);
    const y = makeScale(spec.y, extentOf(series, (s) => s.y, spec.y.log), [plotH, 0], true);
    const g = svg.append("g").attr("transform", `translate(${MARGIN.left},${MARGIN.top})`);
    const yTicks = ticksOf(y, spec.y, Math.max(3, Math.floor(plotH / 40)));
    const xTicks = ticksOf(x, spec.x, Math.max(2, Math.floor(plotW / 80)));
    const yFormat = spec.y.tickFormat ?? (spec.y.log ? formatPow10 : general);
    const xFormat = spec.x.tickFormat ?? (spec.x.log ? formatPow10 : general);
    g.append("g")
      .attr("class", "ds-grid")
      .call(axisLeft(y).tickValues(yTicks).tickSize(-plotW).tickFormat(() => ""));
    const xAxis = g.append("g").attr("class", "ds-axis").attr("transform", `translate(0,${plotH})`);
    const labels = spec.x.labels?.((v) => x(v), [-MARGIN.left + 2, plotW + MARGIN.right - 2]);
    if (labels) {
      const byValue = new Map(labels.map((l) => [l.value, l]));
      xAxis.call(
        axisBottom(x)
          .tickValues(labels.map((l) => l.value))
          .tickFormat((v) => byValue.get(Number(v))?.text ?? "")
          .tickSizeOuter(0),
      );
      xAxis.attr("data-labels", String(labels.length));
      xAxis.selectAll<SVGGElement, number>(".tick").attr("data-value", (v) => String(v));
      xAxis
        .selectAll<SVGTextElement, number>(".tick text")
        .attr("text-anchor", (v) => byValue.get(Number(v))?.anchor ?? "middle")
        .append("title")
        .text((v) => byValue.get(Number(v))?.title ?? byValue.get(Number(v))?.text ?? "");
    } else {
      xAxis.call(axisBottom(x).tickValues(xTicks).tickFormat((v) => xFormat(Number(v))).tickSizeOuter(0));
    }
    g.append("g")
      .attr("class", "ds-axis")
      .call(axisLeft(y).tickValues(yTicks).tickFormat((v) => yFormat(Number(v))).tickSizeOuter(0));
    axisTitles(
      g,
      plotW,
      plotH,
      { text: spec.x.title + (spec.x.log ? " (log scale)" : ""), below: plotH + 34 },
      { text: spec.y.title + (spec.y.log ? " (log scale)" : ""), left: -MARGIN.left + 14 },
    );
    const clip = `ds-xy-clip-${Math.random().toString(36).slice(2)}`;
    g.append("clipPath").attr("id", clip).append("rect").attr("width", plotW).attr("height", plotH);
    const layer = g.append("g").attr("clip-path", `url(#${clip})`).attr("fill", "none");
    if (spec.rule !== undefined && spec.rule !== null && drawable(spec.rule, spec.x.log)) {
      layer
        .append("line")
        .attr("class", "ds-xy-rule")
        .attr("x1", x(spec.rule))
        .attr("x2", x(spec.rule))
        .attr("y1", 0)
        .attr("y2", plotH)
        .attr("stroke", "#9e9e9e")
        .attr("stroke-dasharray", "3,3");
    }
    const marks = g.append("g");
    let nonFinite = 0;
    // Faint lines first, so the bold ones lie on top.
    const ordered = [...series].sort((a, b) => (a.opacity ?? 1) - (b.opacity ?? 1));
    for (const s of ordered) {
      const idx = Array.from({ length: s.x.length }, (_, k) => k);
      const ok = (k: number) => drawable(s.x[k], spec.x.log) && drawable(s.y[k], spec.y.log);
      const path = line<number>()
        .defined(ok)
        .x((k) => x(s.x[k]))
        .y((k) => y(s.y[k]));
      const p = layer
        .append("path")
        .attr("class", "ds-xy-line")
        .attr("data-key", s.key)
        .attr("d", path(idx) ?? "")
        .attr("stroke", s.color)
        .attr("stroke-width", s.width ?? 1.75)
        .attr("stroke-opacity", s.opacity ?? 1)
        .attr("stroke-dasharray", s.dash || null)
        .attr("stroke-linejoin", "round");
      if ((s.opacity ?? 1) < 1) p.attr("data-faint", "true");
      for (const [k, v] of Object.entries(s.data ?? {})) p.attr(`data-${k}`, v);
      // A lone point between gaps draws nothing as a line: a dot.
      for (const k of idx) {
        if (!ok(k) || (k > 0 && ok(k - 1)) || (k + 1 < idx.length && ok(k + 1))) continue;
        layer
          .append("circle")
          .attr("cx", x(s.x[k]))
          .attr("cy", y(s.y[k]))
          .attr("r", 2.25)
          .attr("fill", s.color)
          .attr("fill-opacity", s.opacity ?? 1);
      }
      // NaN is "no value"; ±Infinity (and a value ≤ 0 on a log axis that is -Infinity) is marked.
      for (const k of idx) {
        const v = s.y[k];
        if (Number.isNaN(v) || Number.isFinite(v) || !drawable(s.x[k], spec.x.log)) continue;
        nonFinite++;
        marks
          .append("path")
          .attr("class", "ds-xy-nonfinite")
          .attr("d", `M${x(s.x[k])},0l-4,-7h8z`)
          .attr("fill", NON_FINITE_COLOR);
      }
    }
    for (const m of spec.marks ?? []) {
      if (!drawable(m.x, spec.x.log) || !drawable(m.y, spec.y.log)) continue;
      layer
        .append("circle")
        .attr("class", "ds-xy-mark")
        .attr("data-mark", m.kind)
        .attr("cx", x(m.x))
        .attr("cy", y(m.y))
        .attr("r", 5.5)
        .attr("fill", m.color)
        .attr("fill-opacity", 0.35)
        .attr("stroke", m.color)
        .attr("stroke-width", 2);
    }
    this.element.dataset.drawn = "true";
    this.element.dataset.series = String(series.length);
    this.element.dataset.nonFinite = String(nonFinite);

    // Hover: the point nearest the pointer among the bold lines (faint ones are context).
    const bold = series.filter((s) => (s.opacity ?? 1) >= 1);
    const focus = g.append("circle").attr("r", 4).attr("stroke", "#fff").attr("visibility", "hidden");
    g.append("rect")
      .attr("class", "ds-hit")
      .attr("width", plotW)
      .attr("height", plotH)
      .attr("fill", "transparent")
      .on("mousemove", (event: MouseEvent) => {
        const rect = (event.currentTarget as SVGRectElement).getBoundingClientRect();
        const px = event.clientX - rect.left;
        const py = event.clientY - rect.top;
        let best: { s: XYSeries; k: number; d: number } | null = null;
        for (const s of bold) {
          for (let k = 0; k < s.x.length; k++) {
            if (!drawable(s.x[k], spec.x.log) || !drawable(s.y[k], spec.y.log)) continue;
            const dx = x(s.x[k]) - px;
            const dy = y(s.y[k]) - py;
            const d = dx * dx + dy * dy * 0.25;
            if (best === null || d < best.d) best = { s, k, d };
          }
        }
        if (best === null) return;
        focus
          .attr("visibility", "visible")
          .attr("cx", x(best.s.x[best.k]))
          .attr("cy", y(best.s.y[best.k]))
          .attr("fill", best.s.color);
        showTooltip(spec.describe(best.s, best.k), event.clientX, event.clientY);
      })
      .on("mouseleave", () => {
        focus.attr("visibility", "hidden");
        hideTooltip();
      });
  }
}

/** A value as the charts' tooltips write it: 3 significant digits, 1.23e-4 when small or large. */
export function formatNumber(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "Infinity";
  if (v === -Infinity) return "-Infinity";
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a < 1e-3 || a >= 1e5 ? locale.format(".2~e")(v) : short(v);
}
