// A conv layer's operator spectrum at one step, beside its im2col matrix's (chart.ts): the
// singular values of the map the layer applies to its input (circular padding, on the input
// size it saw) as a rank plot on log–log axes, a line per run in its colour. The largest
// values are drawn as they are (a marker each); past them, the whole spectrum's quantiles
// stand at their ranks (rank 1 + (1 − q)·(n − 1) of n), so the curve spans all n values
// without storing them. A step that holds the norm alone has no curve: it is said so.

import { scaleLog } from "d3-scale";
import { line } from "d3-shape";
import { el } from "../dom";
import { legendItem, lineSample } from "../legend";
import { axisTitles, clearPlot, logRankAxis, logValueAxis, plotSvg } from "../svgchart";
import type { ChartSeries } from "./chart";
import { formatMetric } from "./format";
import { operatorLabel, operatorRankPoints, PADDING_CAVEAT, sizeText } from "./operator";

const HEIGHT = 240;
const MARGIN = { top: 12, right: 16, bottom: 40, left: 64 };

/** The series whose step carries a measured whole operator spectrum. */
export function fullOperators(series: readonly ChartSeries[]): ChartSeries[] {
  return series.filter(
    (s) => s.spectrum.operator !== null && s.spectrum.operator.error === null && !s.spectrum.operator.normOnly,
  );
}

export class OperatorChart {
  readonly element: HTMLDivElement;
  private readonly title = el("div", "ds-sp-optitle");
  private readonly svg: SVGSVGElement;
  private readonly plot: HTMLDivElement;
  private readonly legend: HTMLDivElement;
  private readonly note = el("div", "ds-muted ds-sp-caveat");

  constructor() {
    this.element = el("div", "ds-sp-operator");
    this.element.dataset.testid = "spectrum-operator";
    const { plot, svg } = plotSvg("Operator singular values by rank, log–log");
    this.svg = svg;
    this.plot = plot;
    this.legend = el("div", "ds-chart-legend");
    this.note.dataset.testid = "spectrum-operator-caveat";
    this.note.textContent = PADDING_CAVEAT;
    this.element.append(this.title, plot, this.legend, this.note);
  }

  /** Draws the operators of `series` (hidden when no step carries one). */
  draw(series: readonly ChartSeries[], width: number): void {
    const withOperator = series.filter((s) => s.spectrum.operator !== null);
    this.element.hidden = withOperator.length === 0;
    if (this.element.hidden) return;
    const full = fullOperators(series);
    const first = withOperator[0].spectrum.operator!;
    this.title.textContent = `${operatorLabel(first)}: singular values by rank`;
    this.element.dataset.runs = String(full.length);
    this.legend.replaceChildren();
    for (const s of withOperator) {
      const op = s.spectrum.operator!;
      const who = withOperator.length > 1 ? `${s.run}: ` : "";
      let text: string;
      if (op.error !== null) text = `${who}step ${s.spectrum.step}: operator not measured: ${op.error}`;
      else if (op.normOnly) {
        text =
          `${who}norm only at step ${s.spectrum.step}: σ_max ${formatMetric(op.operatorNorm)} ` +
          `(frequency grid ${sizeText(op.gridSize)}); log spectra_options={"operator": "full"} for the whole spectrum`;
      } else {
        text =
          `${who}${op.count} singular values at step ${s.spectrum.step}: σ_max ${formatMetric(op.operatorNorm)}, ` +
          `stable rank ${formatMetric(op.stableRank)}; top ${op.topValues.length} drawn, the rest by ${op.quantileLevels.length} quantiles`;
      }
      const entry = legendItem(lineSample(s.color, ""), text);
      entry.style.whiteSpace = "normal";
      entry.style.overflowWrap = "anywhere";
      entry.dataset.run = s.run;
      entry.dataset.normOnly = String(op.normOnly);
      this.legend.appendChild(entry);
    }
    this.plot.hidden = full.length === 0;
    if (full.length === 0) return;
    this.drawPlot(full, width);
  }

  private drawPlot(series: readonly ChartSeries[], width: number): void {
    const plotW = Math.max(80, Math.floor(width - MARGIN.left - MARGIN.right));
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    const svg = clearPlot(this.svg, width, HEIGHT);
    const points = series.map((s) => operatorRankPoints(s.spectrum.operator!));
    let n = 2;
    let lo = Infinity;
    let hi = -Infinity;
    series.forEach((s, i) => {
      n = Math.max(n, s.spectrum.operator!.count);
      for (const p of points[i]) {
        if (p.value > 0 && p.value < Infinity) {
          lo = Math.min(lo, p.value);
          hi = Math.max(hi, p.value);
        }
      }
    });
    if (!(hi >= lo)) {
      lo = 0.1;
      hi = 10;
    }
    const x = scaleLog().domain([1, n]).range([0, plotW]);
    const y = scaleLog()
      .domain([lo / 1.3, hi * 1.3])
      .range([plotH, 0])
      .nice();
    const g = svg.append("g").attr("transform", `translate(${MARGIN.left},${MARGIN.top})`);
    logRankAxis(g, x, plotW, plotH);
    logValueAxis(g, y, plotW, formatMetric);
    axisTitles(
      g,
      plotW,
      plotH,
      { text: "rank i of the operator's n singular values (log scale)", below: plotH + 34 },
      { text: "operator σ_i (log scale)", left: -MARGIN.left + 14 },
    );
    series.forEach((s, i) => {
      const ok = points[i].filter((p) => p.value > 0 && p.value < Infinity);
      const path = line<{ rank: number; value: number }>()
        .x((p) => x(p.rank))
        .y((p) => y(p.value));
      g.append("path")
        .attr("class", "ds-sp-opline")
        .attr("data-run", s.run)
        .attr("data-step", String(s.spectrum.step))
        .attr("d", path(ok) ?? "")
        .attr("fill", "none")
        .attr("stroke", s.color)
        .attr("stroke-width", 1.75)
        .attr("stroke-dasharray", "5,2");
      const top = s.spectrum.operator!.topValues;
      g.selectAll(null)
        .data(Array.from(top, (value, rank) => ({ value, rank: rank + 1 })).filter((p) => p.value > 0))
        .join("circle")
        .attr("class", "ds-sp-optop")
        .attr("data-run", s.run)
        .attr("data-value", (p) => String(p.value))
        .attr("cx", (p) => x(p.rank))
        .attr("cy", (p) => y(p.value))
        .attr("r", 2)
        .attr("fill", s.color)
        .append("title")
        .text((p) => `${s.run}: operator σ_${p.rank} = ${formatMetric(p.value)}`);
    });
  }
}
