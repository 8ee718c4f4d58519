// Update ratio over steps for the chosen parameters, log-y, with the rule-of-thumb band.

import { axisBottom, axisLeft } from "d3-axis";
import { scaleLinear, scaleLog } from "d3-scale";
import { select } from "d3-selection";
import { line } from "d3-shape";
import { formatPow10, formatRatio, formatStepTick } from "./format";
import { NON_FINITE_COLOR } from "./palette";
import type { PlotFrame } from "./heatmap";
import { BAND, TARGET_RATIO, nearestStepIndex } from "./stats";
import { hideTooltip, showTooltip, type TooltipRow } from "./tooltip";

const SVG_NS = "http://www.w3.org/2000/svg";

export interface LineSeries {
  run: string;
  param: string;
  label: string;
  color: string;
  dash: string;
  steps: readonly number[];
  values: Float32Array;
  noUpdate: Uint8Array;
}

const HEIGHT = 280;
const MARGIN = { top: 14, right: 12, bottom: 38 };

function usable(s: LineSeries, i: number): boolean {
  const v = s.values[i];
  return !s.noUpdate[i] && v > 0 && v < Infinity;
}

function nonFinite(s: LineSeries, i: number): boolean {
  const v = s.values[i];
  return !s.noUpdate[i] && !Number.isFinite(v);
}

export class LineChart {
  readonly element: HTMLDivElement;
  private readonly svg: SVGSVGElement;
  private readonly legend: HTMLDivElement;

  constructor() {
    this.element = document.createElement("div");
    this.element.dataset.testid = "linechart";
    const plot = document.createElement("div");
    plot.className = "ds-plot";
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.svg.setAttribute("role", "img");
    this.svg.setAttribute("class", "ds-chart-svg");
    this.svg.setAttribute("aria-label", "Update ratio of the chosen parameters over steps, log scale");
    plot.appendChild(this.svg);
    this.legend = document.createElement("div");
    this.legend.className = "ds-chart-legend";
    this.element.append(plot, this.legend);
  }

  draw(series: readonly LineSeries[], width: number, frame: PlotFrame): void {
    const plot = this.svg.parentElement as HTMLDivElement;
    const left = frame.left;
    const plotW = Math.max(60, Math.floor(width - left - MARGIN.right));
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    plot.style.width = `${width}px`;
    plot.style.height = `${HEIGHT}px`;
    this.element.dataset.series = String(series.length);
    const svg = select(this.svg).attr("width", width).attr("height", HEIGHT);
    svg.selectAll("*").remove();

    let yLo: number = BAND[0];
    let yHi: number = BAND[1];
    let anyBad = false;
    for (const s of series) {
      for (let i = 0; i < s.steps.length; i++) {
        if (usable(s, i)) {
          yLo = Math.min(yLo, s.values[i]);
          yHi = Math.max(yHi, s.values[i]);
        } else if (nonFinite(s, i)) anyBad = true;
      }
    }
    const x = scaleLinear().domain(frame.domain).range([0, plotW]);
    const y = scaleLog()
      .domain([yLo / 1.5, yHi * 1.5])
      .range([plotH, 0])
      .nice();

    const g = svg.append("g").attr("transform", `translate(${left},${MARGIN.top})`);

    // Horizontal grid at each decade.
    const decades = y.ticks().filter((t) => Math.abs(Math.log10(t) - Math.round(Math.log10(t))) < 1e-9);
    g.append("g")
      .attr("class", "ds-grid")
      .call(axisLeft(y).tickValues(decades).tickSize(-plotW).tickFormat(() => ""));

    // The rule-of-thumb band and its centre line.
    const band = g.append("g").attr("class", "ds-band");
    band
      .append("rect")
      .attr("x", 0)
      .attr("width", plotW)
      .attr("y", y(BAND[1]))
      .attr("height", Math.max(0, y(BAND[0]) - y(BAND[1])))
      .attr("fill", "#43a047")
      .attr("fill-opacity", 0.1);
    band
      .append("line")
      .attr("x1", 0)
      .attr("x2", plotW)
      .attr("y1", y(TARGET_RATIO))
      .attr("y2", y(TARGET_RATIO))
      .attr("stroke", "#43a047")
      .attr("stroke-width", 1)
      .attr("stroke-dasharray", "4,3");
    band
      .append("text")
      .attr("class", "ds-axis-label")
      .attr("x", plotW - 6)
      .attr("y", y(BAND[1]) + 12)
      .attr("text-anchor", "end")
      .attr("fill", "#2e7d32")
      .style("fill", "#2e7d32")
      .text("rule of thumb ≈ 1e-3");

    const ticks = x.ticks(Math.max(2, Math.floor(plotW / 90))).filter(Number.isInteger);
    g.append("g")
      .attr("class", "ds-axis")
      .attr("transform", `translate(0,${plotH})`)
      .call(axisBottom(x).tickValues(ticks).tickFormat((v) => formatStepTick(Number(v))).tickSizeOuter(0));
    g.append("g")
      .attr("class", "ds-axis")
      .call(axisLeft(y).tickValues(decades).tickFormat((v) => formatPow10(Number(v))).tickSizeOuter(0));
    g.append("text")
      .attr("class", "ds-axis-label")
      .attr("x", plotW / 2)
      .attr("y", plotH + 32)
      .attr("text-anchor", "middle")
      .text("step");
    g.append("text")
      .attr("class", "ds-axis-label")
      .attr("transform", `translate(${-left + 14},${plotH / 2}) rotate(-90)`)
      .attr("text-anchor", "middle")
      .text("‖ΔW‖/‖W‖ (log scale)");

    const lines = g.append("g").attr("fill", "none").attr("stroke-width", 1.5);
    for (const s of series) {
      // A step without an update is no measurement: the line joins its neighbours. A
      // non-finite value breaks the line and is marked on the top edge instead.
      const idx = Array.from(s.steps, (_, i) => i).filter((i) => !s.noUpdate[i]);
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
    const focus = g.append("g").attr("visibility", "hidden");
    focus.append("line").attr("y1", 0).attr("y2", plotH).attr("stroke", "#9e9e9e");
    const dots = focus
      .selectAll("circle")
      .data(series)
      .join("circle")
      .attr("r", 3.5)
      .attr("fill", (s) => s.color)
      .attr("stroke", "#fff");
    g.append("rect")
      .attr("class", "ds-hit")
      .attr("width", plotW)
      .attr("height", plotH)
      .attr("fill", "transparent")
      .on("mousemove", (event: MouseEvent) => {
        if (series.length === 0) return;
        const rect = (event.currentTarget as SVGRectElement).getBoundingClientRect();
        const step = x.invert(event.clientX - rect.left);
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
        focus.attr("visibility", "visible");
        focus.select("line").attr("x1", x(best)).attr("x2", x(best));
        dots
          .attr("visibility", (s, k) => (near[k] >= 0 && usable(s, near[k]) ? "visible" : "hidden"))
          .attr("cx", (s, k) => (near[k] >= 0 ? x(s.steps[near[k]]) : 0))
          .attr("cy", (s, k) => (near[k] >= 0 && usable(s, near[k]) ? y(s.values[near[k]]) : 0));
        const rows: TooltipRow[] = [{ label: "step", field: "step", value: String(best), strong: true }];
        series.forEach((s, k) => {
          const i = near[k];
          if (i < 0) return;
          const at = s.steps[i] === best ? "" : ` (step ${s.steps[i]})`;
          rows.push({
            label: s.label,
            color: s.color,
            value: formatRatio(s.values[i], s.noUpdate[i] === 1) + at,
          });
        });
        showTooltip(rows, event.clientX, event.clientY);
      })
      .on("mouseleave", () => {
        focus.attr("visibility", "hidden");
        hideTooltip();
      });

    this.drawLegend(series, anyBad);
  }

  private drawLegend(series: readonly LineSeries[], anyBad: boolean): void {
    this.legend.replaceChildren();
    const item = (sample: Element, text: string) => {
      const span = document.createElement("span");
      span.className = "ds-legend-item";
      const label = document.createElement("span");
      label.textContent = text;
      span.append(sample, label);
      this.legend.appendChild(span);
    };
    for (const s of series) item(lineSample(s.color, s.dash), s.label);
    const band = document.createElement("span");
    band.className = "ds-box";
    band.style.background = "rgba(67,160,71,.18)";
    item(band, "rule of thumb ≈ 1e-3 (band 3e-4 … 3e-3)");
    if (anyBad) {
      const tri = document.createElement("span");
      tri.style.color = NON_FINITE_COLOR;
      tri.textContent = "▼";
      item(tri, "non-finite value (NaN/±Inf) at that step");
    }
  }
}

export function lineSample(color: string, dash: string): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "ds-line-sample");
  svg.setAttribute("width", "24");
  svg.setAttribute("height", "8");
  const l = document.createElementNS(SVG_NS, "line");
  l.setAttribute("x1", "0");
  l.setAttribute("x2", "24");
  l.setAttribute("y1", "4");
  l.setAttribute("y2", "4");
  l.setAttribute("stroke", color);
  l.setAttribute("stroke-width", "2");
  if (dash) l.setAttribute("stroke-dasharray", dash);
  svg.appendChild(l);
  return svg;
}
