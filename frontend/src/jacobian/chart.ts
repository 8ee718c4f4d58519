// The Jacobian tab's two charts.
//   - Over training: per map, the band from the smallest stored singular value to σ_max
//     (means over the probe samples) and the σ_max line, on a log axis, with the isometry
//     line σ = 1 and a faint band around it: a map near isometry has its whole band there.
//   - At a step: one map's singular values by rank (log–log), a thin line per probe sample
//     and their mean, with σ = 1.

import { axisBottom } from "d3-axis";
import { scaleLinear, scaleLog } from "d3-scale";
import type { Selection } from "d3-selection";
import { area, line } from "d3-shape";
import { el } from "../dom";
import { formatStepTick } from "../format";
import { legendItem, lineSample } from "../legend";
import { axisTitles, clearPlot, hoverLayer, logRankAxis, logValueAxis, plotSvg } from "../svgchart";
import { showTooltip, type TooltipRow } from "../tooltip";
import { mapLabel, meanByRank, type JacobianSeries, type MapSpectrum } from "./api";

const HEIGHT = 280;
const MARGIN = { top: 12, right: 16, bottom: 40, left: 64 };
/** The faint band drawn around σ = 1: within a factor ISOMETRY_FACTOR of it. */
export const ISOMETRY_FACTOR = 1.25;
const MAP_COLORS = ["#1976d2", "#e65100", "#2e7d32", "#6a1b9a", "#c2185b", "#00838f", "#5d4037", "#455a64"];

export function mapColor(index: number): string {
  return MAP_COLORS[index % MAP_COLORS.length];
}

export function formatSigma(v: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "–" : v > 0 ? "∞" : "-∞";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(2);
  return v.toPrecision(3);
}

/** The positive finite range of `values` ([lo, hi]), widened to include 1; [0.1, 10] when none. */
export function logRange(values: Iterable<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v > 0 && v < Infinity) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (!(hi >= lo)) return [0.1, 10];
  return [Math.min(lo, 1 / ISOMETRY_FACTOR), Math.max(hi, ISOMETRY_FACTOR)];
}

function isometry(g: Selection<SVGGElement, unknown, null, undefined>, y: (v: number) => number, plotW: number): void {
  g.append("rect")
    .attr("class", "ds-jac-isometry")
    .attr("x", 0)
    .attr("width", plotW)
    .attr("y", y(ISOMETRY_FACTOR))
    .attr("height", Math.max(1, y(1 / ISOMETRY_FACTOR) - y(ISOMETRY_FACTOR)))
    .attr("fill", "#43a047")
    .attr("fill-opacity", 0.1);
  g.append("line")
    .attr("class", "ds-jac-one")
    .attr("x1", 0)
    .attr("x2", plotW)
    .attr("y1", y(1))
    .attr("y2", y(1))
    .attr("stroke", "#43a047")
    .attr("stroke-dasharray", "4,3");
}

export class TrainingChart {
  readonly element = el("div");
  private readonly svg: SVGSVGElement;
  private readonly legend = el("div", "ds-chart-legend");

  constructor() {
    this.element.dataset.testid = "jacobian-training-chart";
    const { plot, svg } = plotSvg("Jacobian singular values per map over training, log scale");
    this.svg = svg;
    this.element.append(plot, this.legend);
  }

  draw(series: JacobianSeries, width: number): void {
    const plotW = Math.max(80, Math.floor(width - MARGIN.left - MARGIN.right));
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    const svg = clearPlot(this.svg, width, HEIGHT);
    const steps = series.steps;
    const all: number[] = [];
    for (const m of [series.sigmaMax.mean, series.sigmaMin.mean]) for (const row of m) all.push(...row);
    const [lo, hi] = logRange(all);
    const first = steps.length ? steps[0] : 0;
    const last = steps.length ? steps[steps.length - 1] : 1;
    const x = scaleLinear()
      .domain(first === last ? [first - 1, last + 1] : [first, last])
      .range([0, plotW]);
    const y = scaleLog().domain([lo / 1.2, hi * 1.2]).range([plotH, 0]).nice();
    const g = svg.append("g").attr("transform", `translate(${MARGIN.left},${MARGIN.top})`);
    g.append("g")
      .attr("class", "ds-axis")
      .attr("transform", `translate(0,${plotH})`)
      .call(axisBottom(x).ticks(Math.max(2, Math.floor(plotW / 90))).tickFormat((v) => formatStepTick(Number(v))));
    logValueAxis(g, y, plotW, formatSigma);
    axisTitles(
      g,
      plotW,
      plotH,
      { text: "step", below: plotH + 34 },
      { text: "singular value σ of ∂output/∂input (log)", left: -MARGIN.left + 14 },
    );
    isometry(g, y, plotW);
    const idx = steps.map((_, i) => i);
    const ok = (v: number) => v > 0 && v < Infinity;
    const lines = series.maps.map((name, j) => ({ name, j, color: mapColor(j) }));
    for (const { name, j, color } of lines) {
      const hiOf = (i: number) => series.sigmaMax.mean[i][j];
      const loOf = (i: number) => series.sigmaMin.mean[i][j];
      const band = area<number>()
        .defined((i) => ok(hiOf(i)) && ok(loOf(i)))
        .x((i) => x(steps[i]))
        .y0((i) => y(loOf(i)))
        .y1((i) => y(hiOf(i)));
      g.append("path")
        .attr("class", "ds-jac-band")
        .attr("data-map", name)
        .attr("d", band(idx) ?? "")
        .attr("fill", color)
        .attr("fill-opacity", 0.14);
      const top = line<number>()
        .defined((i) => ok(hiOf(i)))
        .x((i) => x(steps[i]))
        .y((i) => y(hiOf(i)));
      g.append("path")
        .attr("class", "ds-jac-max")
        .attr("data-map", name)
        .attr("d", top(idx) ?? "")
        .attr("fill", "none")
        .attr("stroke", color)
        .attr("stroke-width", 1.75);
      const bottom = line<number>()
        .defined((i) => ok(loOf(i)))
        .x((i) => x(steps[i]))
        .y((i) => y(loOf(i)));
      g.append("path")
        .attr("class", "ds-jac-min")
        .attr("data-map", name)
        .attr("d", bottom(idx) ?? "")
        .attr("fill", "none")
        .attr("stroke", color)
        .attr("stroke-width", 1)
        .attr("stroke-dasharray", "3,2");
    }
    const { dots, showAt } = hoverLayer(g, plotW, plotH, lines, 3.5, (event, px) => {
      if (!steps.length) return;
      let best = 0;
      for (let i = 1; i < steps.length; i++) {
        if (Math.abs(x(steps[i]) - px) < Math.abs(x(steps[best]) - px)) best = i;
      }
      showAt(x(steps[best]));
      dots
        .attr("visibility", (s) => (ok(series.sigmaMax.mean[best][s.j]) ? "visible" : "hidden"))
        .attr("cx", x(steps[best]))
        .attr("cy", (s) => (ok(series.sigmaMax.mean[best][s.j]) ? y(series.sigmaMax.mean[best][s.j]) : 0));
      const rows: TooltipRow[] = [{ label: "step", field: "step", value: String(steps[best]), strong: true }];
      for (const s of lines) {
        const full = series.full[best]?.[s.j];
        rows.push({
          label: `${mapLabel(s.name)} σ_max`,
          color: s.color,
          field: `sigma_max:${s.name}`,
          value: `${formatSigma(series.sigmaMax.mean[best][s.j])} ± ${formatSigma(series.sigmaMax.std[best][s.j])}`,
        });
        rows.push({
          label: full ? "σ_min" : "smallest stored σ",
          field: `sigma_min:${s.name}`,
          value: formatSigma(series.sigmaMin.mean[best][s.j]),
        });
      }
      showTooltip(rows, event.clientX, event.clientY);
    });
    this.legend.replaceChildren();
    for (const { name, color } of lines) {
      const dims = series.dims.get(name);
      const text = dims ? `${mapLabel(name)} (${dims[0]} → ${dims[1]})` : mapLabel(name);
      const item = legendItem(lineSample(color, ""), text);
      item.dataset.map = name;
      this.legend.appendChild(item);
    }
    this.legend.append(
      legendItem(lineSample("#616161", "3,2"), "smallest σ (σ_min where the spectrum is whole, else the k-th largest)"),
      legendItem(lineSample("#43a047", "4,3"), `isometry σ = 1 (band: ×/÷ ${ISOMETRY_FACTOR})`),
    );
    this.element.dataset.drawn = "true";
    this.element.dataset.maps = String(lines.length);
  }
}

export class StepSpectrumChart {
  readonly element = el("div");
  private readonly svg: SVGSVGElement;
  private readonly legend = el("div", "ds-chart-legend");

  constructor() {
    this.element.dataset.testid = "jacobian-spectrum-chart";
    const { plot, svg } = plotSvg("Jacobian singular values by rank at a step, log–log");
    this.svg = svg;
    this.element.append(plot, this.legend);
  }

  draw(map: MapSpectrum, step: number, width: number): void {
    const plotW = Math.max(80, Math.floor(width - MARGIN.left - MARGIN.right));
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    const svg = clearPlot(this.svg, width, HEIGHT);
    const samples = map.singularValues;
    const mean = meanByRank(samples);
    const n = Math.max(2, mean.length);
    const [lo, hi] = logRange(samples.flat());
    const x = scaleLog().domain([1, n]).range([0, plotW]);
    const y = scaleLog().domain([lo / 1.2, hi * 1.2]).range([plotH, 0]).nice();
    const g = svg.append("g").attr("transform", `translate(${MARGIN.left},${MARGIN.top})`);
    logRankAxis(g, x, plotW, plotH);
    logValueAxis(g, y, plotW, formatSigma);
    axisTitles(
      g,
      plotW,
      plotH,
      { text: "rank i (1 = largest; log scale)", below: plotH + 34 },
      { text: "singular value σ_i (log scale)", left: -MARGIN.left + 14 },
    );
    isometry(g, y, plotW);
    const ok = (v: number) => v > 0 && v < Infinity;
    samples.forEach((row, s) => {
      const path = line<number>()
        .defined((i) => ok(row[i]))
        .x((i) => x(i + 1))
        .y((i) => y(row[i]));
      g.append("path")
        .attr("class", "ds-jac-sample")
        .attr("data-sample", String(s))
        .attr("d", path(row.map((_, i) => i)) ?? "")
        .attr("fill", "none")
        .attr("stroke", "#1976d2")
        .attr("stroke-opacity", 0.3)
        .attr("stroke-width", 1);
    });
    const meanPath = line<number>()
      .defined((i) => ok(mean[i]))
      .x((i) => x(i + 1))
      .y((i) => y(mean[i]));
    g.append("path")
      .attr("class", "ds-jac-mean")
      .attr("d", meanPath(mean.map((_, i) => i)) ?? "")
      .attr("fill", "none")
      .attr("stroke", "#0d47a1")
      .attr("stroke-width", 2);
    const { dots, showAt } = hoverLayer(g, plotW, plotH, [{ color: "#0d47a1" }], 4, (event, px) => {
      if (!mean.length) return;
      const rank = Math.min(mean.length, Math.max(1, Math.round(x.invert(px))));
      showAt(x(rank));
      const v = mean[rank - 1];
      dots.attr("visibility", ok(v) ? "visible" : "hidden").attr("cx", x(rank)).attr("cy", ok(v) ? y(v) : 0);
      showTooltip(
        [
          { label: "rank", field: "rank", value: String(rank), strong: true },
          { label: "mean σ over samples", field: "sigma", value: formatSigma(v) },
        ],
        event.clientX,
        event.clientY,
      );
    });
    this.legend.replaceChildren(
      legendItem(lineSample("#0d47a1", ""), `${mapLabel(map.name)} at step ${step}: mean over ${samples.length} probe samples`),
      legendItem(lineSample("#1976d2", ""), "each sample"),
      legendItem(lineSample("#43a047", "4,3"), `isometry σ = 1 (band: ×/÷ ${ISOMETRY_FACTOR})`),
      el(
        "span",
        "ds-legend-item",
        map.full
          ? `the whole spectrum (${mean.length} values)`
          : `the top ${mean.length} of ${Math.min(map.inputDim, map.outputDim)} (block Lanczos)`,
      ),
    );
    this.element.dataset.drawn = "true";
    this.element.dataset.map = map.name;
    this.element.dataset.step = String(step);
    this.element.dataset.samples = String(samples.length);
  }
}
