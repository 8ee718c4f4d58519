// A grid's value over steps for the chosen rows: log-y or linear-y (the quantity's scale),
// with the quantity's rule-of-thumb band when it has one (update ratios: 1e-3).

import { axisBottom, axisLeft } from "d3-axis";
import { scaleLinear, scaleLog, type ScaleContinuousNumeric } from "d3-scale";
import type { Selection } from "d3-selection";
import { line } from "d3-shape";
import { formatPow10, formatStepTick, locale } from "../format";
import { legendItem, lineSample } from "../legend";
import { NON_FINITE_COLOR } from "../palette";
import { nearestStepIndex } from "../stats";
import { axisTitles, clearPlot, decadeTicks, hoverLayer, plotSvg } from "../svgchart";
import { showTooltip, type TooltipRow } from "../tooltip";
import { formatValue } from "./format";
import { quantityTitle, type Quantity } from "./grid";
import type { PlotFrame } from "./heatmap";
import { onScale } from "./stats";

export interface LineSeries {
  run: string;
  param: string;
  label: string;
  color: string;
  dash: string;
  steps: readonly number[];
  values: Float32Array;
  /** 1 where the row has no value at that step (update ratios: no update). */
  missing: Uint8Array;
  /** 1 where the weight was exactly zero before the step: no ratio (not a fault). */
  zeroWeight: Uint8Array;
}

const general = locale.format("~g");
const exponent = locale.format("~e");
const HEIGHT = 280;
const MARGIN = { top: 14, right: 12, bottom: 38 };

/** A step with no value to draw: none logged (no update), or a zero weight before it. */
function noRatio(s: LineSeries, i: number): boolean {
  return s.missing[i] === 1 || s.zeroWeight[i] === 1;
}

function nonFinite(s: LineSeries, i: number): boolean {
  const v = s.values[i];
  return !noRatio(s, i) && !Number.isFinite(v);
}

export class LineChart {
  readonly element: HTMLDivElement;
  private readonly svg: SVGSVGElement;
  private readonly legend: HTMLDivElement;

  constructor(what: string) {
    this.element = document.createElement("div");
    this.element.dataset.testid = "linechart";
    const { plot, svg } = plotSvg(`${what} of the chosen rows over steps`);
    this.svg = svg;
    this.svg.setAttribute("class", "ds-chart-svg");
    this.legend = document.createElement("div");
    this.legend.className = "ds-chart-legend";
    this.element.append(plot, this.legend);
  }

  draw(series: readonly LineSeries[], width: number, frame: PlotFrame, quantity: Quantity): void {
    const log = quantity.scale === "log";
    const target = quantity.target;
    const usable = (s: LineSeries, i: number) => !noRatio(s, i) && onScale(s.values[i], log);
    const left = frame.left;
    const plotW = Math.max(60, Math.floor(width - left - MARGIN.right));
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    this.element.dataset.series = String(series.length);
    const svg = clearPlot(this.svg, width, HEIGHT);

    let yLo = target ? target.band[0] : Infinity;
    let yHi = target ? target.band[1] : -Infinity;
    let anyBad = false;
    for (const s of series) {
      for (let i = 0; i < s.steps.length; i++) {
        if (usable(s, i)) {
          yLo = Math.min(yLo, s.values[i]);
          yHi = Math.max(yHi, s.values[i]);
        } else if (nonFinite(s, i)) anyBad = true;
      }
    }
    if (!(yLo <= yHi)) [yLo, yHi] = log ? [1e-4, 1e-2] : [0, 1];
    const x = scaleLinear().domain(frame.domain).range([0, plotW]);
    let y: ScaleContinuousNumeric<number, number>;
    let yTicks: number[];
    let yTick: (v: number) => string;
    if (log) {
      const logY = scaleLog()
        .domain([yLo / 1.5, yHi * 1.5])
        .range([plotH, 0])
        .nice();
      y = logY;
      yTicks = decadeTicks(logY);
      yTick = formatPow10;
    } else {
      const pad = yHi > yLo ? (yHi - yLo) * 0.05 : Math.max(1, Math.abs(yHi)) * 0.5;
      y = scaleLinear()
        .domain([yLo - pad, yHi + pad])
        .range([plotH, 0])
        .nice();
      yTicks = y.ticks(Math.max(3, Math.floor(plotH / 40)));
      yTick = general;
    }

    const g = svg.append("g").attr("transform", `translate(${left},${MARGIN.top})`);

    // Horizontal grid at each tick (a log scale's: each decade).
    g.append("g")
      .attr("class", "ds-grid")
      .call(axisLeft(y).tickValues(yTicks).tickSize(-plotW).tickFormat(() => ""));

    if (target) this.drawBand(g, plotW, y, target);

    const ticks = x.ticks(Math.max(2, Math.floor(plotW / 90))).filter(Number.isInteger);
    g.append("g")
      .attr("class", "ds-axis")
      .attr("transform", `translate(0,${plotH})`)
      .call(axisBottom(x).tickValues(ticks).tickFormat((v) => formatStepTick(Number(v))).tickSizeOuter(0));
    g.append("g")
      .attr("class", "ds-axis")
      .call(axisLeft(y).tickValues(yTicks).tickFormat((v) => yTick(Number(v))).tickSizeOuter(0));
    axisTitles(
      g,
      plotW,
      plotH,
      { text: "step", below: plotH + 32 },
      { text: `${quantityTitle(quantity)}${log ? " (log scale)" : ""}`, left: -left + 14 },
    );

    const lines = g.append("g").attr("fill", "none").attr("stroke-width", 1.5);
    for (const s of series) {
      // A step without an update (or from a zero weight) is no measurement: the line joins its neighbours. A
      // non-finite value breaks the line and is marked on the top edge instead.
      const idx = Array.from(s.steps, (_, i) => i).filter((i) => !noRatio(s, i));
      const path = line<number>()
        .defined((i) => usable(s, i))
        .x((i) => x(s.steps[i]))
        .y((i) => y(s.values[i]));
      lines
        .append("path")
        .attr("class", "ds-line")
        .attr("d", path(idx) ?? "")
        .attr("stroke", s.color)
        .attr("stroke-dasharray", s.dash || null)
        .attr("stroke-linejoin", "round");
      // A lone point between gaps draws nothing as a line: mark it.
      idx.forEach((i, n) => {
        if (!usable(s, i)) return;
        const before = n > 0 && usable(s, idx[n - 1]);
        const after = n + 1 < idx.length && usable(s, idx[n + 1]);
        if (!before && !after) {
          lines
            .append("circle")
            .attr("cx", x(s.steps[i]))
            .attr("cy", y(s.values[i]))
            .attr("r", 2)
            .attr("fill", s.color)
            .attr("stroke", "none");
        }
      });
      // Non-finite values: a red mark on the top edge at their step.
      const bad = idx.filter((i) => nonFinite(s, i));
      lines
        .selectAll(null)
        .data(bad)
        .join("path")
        .attr("d", (i) => `M${x(s.steps[i])},0l-4,-7h8z`)
        .attr("fill", NON_FINITE_COLOR)
        .attr("stroke", "none");
    }

    // Hover: the values nearest the pointer's step.
    const { dots, showAt } = hoverLayer(g, plotW, plotH, series, 3.5, (event, px) => {
      if (series.length === 0) return;
      const step = x.invert(px);
      const near = series.map((s) => (s.steps.length ? nearestStepIndex(s.steps, step) : -1));
      let best = -1;
      let bestDist = Infinity;
      near.forEach((i, k) => {
        if (i < 0) return;
        const dist = Math.abs(series[k].steps[i] - step);
        if (dist < bestDist) {
          bestDist = dist;
          best = series[k].steps[i];
        }
      });
      if (best < 0 && bestDist === Infinity) return;
      showAt(x(best));
      dots
        .attr("visibility", (s, k) => (near[k] >= 0 && usable(s, near[k]) ? "visible" : "hidden"))
        .attr("cx", (s, k) => (near[k] >= 0 ? x(s.steps[near[k]]) : 0))
        .attr("cy", (s, k) => (near[k] >= 0 && usable(s, near[k]) ? y(s.values[near[k]]) : 0));
      const rows: TooltipRow[] = [
        { label: "step", field: "step", value: String(best), strong: true },
      ];
      series.forEach((s, k) => {
        const i = near[k];
        if (i < 0) return;
        const at = s.steps[i] === best ? "" : ` (step ${s.steps[i]})`;
        rows.push({
          label: s.label,
          color: s.color,
          value: formatValue(quantity, s.values[i], s.missing[i] === 1, s.zeroWeight[i] === 1) + at,
        });
      });
      showTooltip(rows, event.clientX, event.clientY);
    });

    this.drawLegend(series, anyBad, target);
  }

  /** The target's band (shaded) and its value (a dashed line), labelled. */
  private drawBand(
    g: Selection<SVGGElement, unknown, null, undefined>,
    plotW: number,
    y: ScaleContinuousNumeric<number, number>,
    target: NonNullable<Quantity["target"]>,
  ): void {
    const band = g.append("g").attr("class", "ds-band");
    const [lo, hi] = target.band;
    band
      .append("rect")
      .attr("x", 0)
      .attr("width", plotW)
      .attr("y", y(hi))
      .attr("height", Math.max(0, y(lo) - y(hi)))
      .attr("fill", "#43a047")
      .attr("fill-opacity", 0.1);
    band
      .append("line")
      .attr("x1", 0)
      .attr("x2", plotW)
      .attr("y1", y(target.value))
      .attr("y2", y(target.value))
      .attr("stroke", "#43a047")
      .attr("stroke-width", 1)
      .attr("stroke-dasharray", "4,3");
    band
      .append("text")
      .attr("class", "ds-axis-label")
      .attr("x", plotW - 6)
      .attr("y", y(hi) + 12)
      .attr("text-anchor", "end")
      .attr("fill", "#2e7d32")
      .style("fill", "#2e7d32")
      .text(target.text);
  }

  private drawLegend(series: readonly LineSeries[], anyBad: boolean, target: Quantity["target"]): void {
    this.legend.replaceChildren();
    for (const s of series) {
      this.legend.appendChild(legendItem(lineSample(s.color, s.dash), s.label));
    }
    if (target) {
      const band = document.createElement("span");
      band.className = "ds-box";
      band.style.background = "rgba(67,160,71,.18)";
      const [lo, hi] = target.band;
      this.legend.appendChild(legendItem(band, `${target.text} (band ${exponent(lo)} … ${exponent(hi)})`));
    }
    if (anyBad) {
      const tri = document.createElement("span");
      tri.style.color = NON_FINITE_COLOR;
      tri.textContent = "▼";
      this.legend.appendChild(legendItem(tri, "non-finite value (NaN/±Inf) at that step"));
    }
  }
}
