// One layer's spectrum at one step, as a rank plot on log–log axes: singular value σ_i
// against its rank i (1 = largest), a line per run in its colour. Drawn over it, per run:
// the Marchenko–Pastur bulk edge (a horizontal dashed line: σ above it is structure beyond
// random noise) and the fitted power-law tail of the eigenvalues λ = σ² (dotted: p(λ) ∝ λ^-α
// for λ ≥ x_min, which on a rank plot is the straight line σ(i) = √x_min · (i/n_tail)^(-1/(2(α-1))),
// n_tail the number of eigenvalues ≥ x_min).
//
// A rank plot reads the same for a 10-value layer as for a 4,096-value one (a histogram of
// ten values says little), and every point is one singular value one can hover and read.
//
// These are the singular values of the weight's im2col matrix. For a conv layer whose step
// carries its operator spectrum, the operator norm (σ_max of the map the layer applies, for
// circular padding) is drawn as a dotted horizontal line in the run's colour; the operator's
// whole spectrum, when logged, has its own plot (operator_chart.ts). A step holding the top
// k values only (a big matrix) says so in the legend.

import { scaleLog } from "d3-scale";
import { line } from "d3-shape";
import { el } from "../dom";
import { legendItem, lineSample } from "../legend";
import { axisTitles, clearPlot, hoverLayer, logRankAxis, logValueAxis, plotSvg } from "../svgchart";
import { showTooltip, type TooltipRow } from "../tooltip";
import type { StepSpectrum } from "./api";
import { formatMetric } from "./format";
import { coverageNote, IM2COL_LABEL, normRatio, operatorLabel } from "./operator";

const HEIGHT = 300;
const MARGIN = { top: 14, right: 16, bottom: 40, left: 64 };
/** Draw a marker per singular value up to this many values. */
const MAX_MARKERS = 48;

export interface ChartSeries {
  run: string;
  color: string;
  spectrum: StepSpectrum;
}

/** The fitted tail as a rank-plot segment [[rank, σ], [rank, σ]], or null without a fit. */
export function powerLawSegment(s: StepSpectrum): [[number, number], [number, number]] | null {
  const alpha = s.metrics.alpha;
  const xmin = s.metrics.alpha_xmin;
  if (!(alpha > 1) || !Number.isFinite(alpha) || !(xmin > 0) || !Number.isFinite(xmin)) return null;
  let nTail = 0;
  for (const v of s.values) if (v * v >= xmin * (1 - 1e-6)) nTail++;
  if (nTail < 2) return null;
  const sigmaAt = (rank: number) => Math.sqrt(xmin) * Math.pow(rank / nTail, -1 / (2 * (alpha - 1)));
  return [
    [1, sigmaAt(1)],
    [nTail, sigmaAt(nTail)],
  ];
}

export class SpectrumChart {
  readonly element: HTMLDivElement;
  private readonly svg: SVGSVGElement;
  private readonly legend: HTMLDivElement;

  constructor() {
    this.element = el("div");
    this.element.dataset.testid = "spectrum-chart";
    const { plot, svg } = plotSvg("Singular values by rank, log–log");
    this.svg = svg;
    this.legend = el("div", "ds-chart-legend");
    this.element.append(plot, this.legend);
  }

  draw(series: readonly ChartSeries[], width: number): void {
    const plotW = Math.max(80, Math.floor(width - MARGIN.left - MARGIN.right));
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    const svg = clearPlot(this.svg, width, HEIGHT);

    const usable = series.filter((s) => s.spectrum.error === null || hasPositive(s.spectrum));
    let n = 1;
    let lo = Infinity;
    let hi = -Infinity;
    for (const { spectrum } of usable) {
      n = Math.max(n, spectrum.values.length);
      for (const v of spectrum.values) {
        if (v > 0 && v < Infinity) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
      const edge = spectrum.metrics.mp_bulk_edge;
      if (edge > 0 && edge < Infinity) {
        lo = Math.min(lo, edge);
        hi = Math.max(hi, edge);
      }
      const opNorm = operatorNorm(spectrum);
      if (opNorm > 0) {
        lo = Math.min(lo, opNorm);
        hi = Math.max(hi, opNorm);
      }
    }
    if (!(hi >= lo)) {
      lo = 0.1;
      hi = 10;
    }
    const x = scaleLog().domain([1, Math.max(2, n)]).range([0, plotW]);
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
      { text: "rank i (1 = largest; log scale)", below: plotH + 34 },
      { text: "singular value σ_i (log scale)", left: -MARGIN.left + 14 },
    );

    const clip = `ds-sp-clip-${Math.random().toString(36).slice(2)}`;
    g.append("clipPath").attr("id", clip).append("rect").attr("width", plotW).attr("height", plotH);
    const layer = g.append("g").attr("clip-path", `url(#${clip})`);
    for (const s of usable) {
      const { spectrum, color, run } = s;
      const edge = spectrum.metrics.mp_bulk_edge;
      if (edge > 0 && edge < Infinity) {
        layer
          .append("line")
          .attr("class", "ds-sp-mp")
          .attr("data-run", run)
          .attr("data-value", String(edge))
          .attr("x1", 0)
          .attr("x2", plotW)
          .attr("y1", y(edge))
          .attr("y2", y(edge))
          .attr("stroke", color)
          .attr("stroke-width", 1)
          .attr("stroke-dasharray", "6,3");
      }
      const opNorm = operatorNorm(spectrum);
      if (opNorm > 0) {
        layer
          .append("line")
          .attr("class", "ds-sp-opnorm")
          .attr("data-run", run)
          .attr("data-value", String(opNorm))
          .attr("x1", 0)
          .attr("x2", plotW)
          .attr("y1", y(opNorm))
          .attr("y2", y(opNorm))
          .attr("stroke", color)
          .attr("stroke-width", 2)
          .attr("stroke-dasharray", "1,3");
      }
      const fit = powerLawSegment(spectrum);
      if (fit) {
        layer
          .append("line")
          .attr("class", "ds-sp-fit")
          .attr("data-run", run)
          .attr("x1", x(fit[0][0]))
          .attr("y1", y(fit[0][1]))
          .attr("x2", x(fit[1][0]))
          .attr("y2", y(fit[1][1]))
          .attr("stroke", color)
          .attr("stroke-width", 2)
          .attr("stroke-opacity", 0.55)
          .attr("stroke-dasharray", "2,3");
      }
      const idx = Array.from(spectrum.values, (_, i) => i);
      const ok = (i: number) => spectrum.values[i] > 0 && spectrum.values[i] < Infinity;
      const path = line<number>()
        .defined(ok)
        .x((i) => x(i + 1))
        .y((i) => y(spectrum.values[i]));
      layer
        .append("path")
        .attr("class", "ds-sp-line")
        .attr("data-run", run)
        .attr("data-step", String(spectrum.step))
        .attr("d", path(idx) ?? "")
        .attr("fill", "none")
        .attr("stroke", color)
        .attr("stroke-width", 1.75);
      if (spectrum.values.length <= MAX_MARKERS) {
        layer
          .selectAll(null)
          .data(idx.filter(ok))
          .join("circle")
          .attr("cx", (i) => x(i + 1))
          .attr("cy", (i) => y(spectrum.values[i]))
          .attr("r", 2.25)
          .attr("fill", color);
      }
    }

    // Hover: the singular value at the rank under the pointer, for each run.
    const { dots, hit, showAt } = hoverLayer(g, plotW, plotH, usable, 4, (event, px) => {
      if (usable.length === 0) return;
      const rank = Math.min(n, Math.max(1, Math.round(x.invert(px))));
      showAt(x(rank));
      const value = (s: ChartSeries) => s.spectrum.values[rank - 1];
      dots
        .attr("visibility", (s) => (value(s) > 0 && value(s) < Infinity ? "visible" : "hidden"))
        .attr("cx", x(rank))
        .attr("cy", (s) => (value(s) > 0 && value(s) < Infinity ? y(value(s)) : 0));
      const rows: TooltipRow[] = [
        { label: "rank", field: "rank", value: String(rank), strong: true },
      ];
      for (const s of usable) {
        const v = value(s);
        const label = usable.length > 1 ? `${s.run} (step ${s.spectrum.step}) σ` : "σ";
        rows.push({
          label,
          color: s.color,
          field: `sigma:${s.run}`,
          value: v === undefined ? "–" : formatMetric(v),
        });
        if (v !== undefined && usable.length === 1) {
          rows.push({ label: "λ = σ²", field: `lambda:${s.run}`, value: formatMetric(v * v) });
        }
      }
      showTooltip(rows, event.clientX, event.clientY);
    });
    hit.attr("data-testid", "spectrum-hit");

    this.element.dataset.drawn = "true";
    this.element.dataset.runs = String(usable.length);
    this.element.dataset.steps = JSON.stringify(Object.fromEntries(series.map((s) => [s.run, s.spectrum.step])));
    this.drawLegend(series);
  }

  private drawLegend(series: readonly ChartSeries[]): void {
    this.legend.replaceChildren();
    // Wrap within the card: one item per run (its line, step, MP edge and α), each of which
    // may itself wrap; the shared legend style keeps items on one line (nowrap).
    this.legend.style.minWidth = "0";
    this.legend.style.maxWidth = "100%";
    const item = (sample: Element, text: string, run?: string) => {
      const entry = legendItem(sample, text);
      entry.style.whiteSpace = "normal";
      entry.style.overflowWrap = "anywhere";
      entry.style.minWidth = "0";
      entry.style.maxWidth = "100%";
      if (run !== undefined) entry.dataset.run = run;
      this.legend.appendChild(entry);
    };
    const multi = series.length > 1;
    const grey = "#616161";
    const anyOperator = series.some((s) => operatorNorm(s.spectrum) > 0);
    for (const s of series) {
      const m = s.spectrum.metrics;
      const parts = [`${anyOperator ? `${IM2COL_LABEL} ` : ""}σ_i at step ${s.spectrum.step}`];
      if (s.spectrum.unchangedSince !== null) parts[0] += ` (unchanged since step ${s.spectrum.unchangedSince})`;
      const partial = coverageNote(s.spectrum.coverage, s.spectrum.perGroup, s.spectrum.info.matrixShape.length === 3 ? Math.min(s.spectrum.info.matrixShape[1], s.spectrum.info.matrixShape[2]) : NaN);
      if (partial !== null) parts.push(partial);
      const op = s.spectrum.operator;
      if (op !== null && op.error === null) {
        const ratio = normRatio(op.operatorNorm, m.spectral_norm);
        parts.push(
          `${operatorLabel(op)} norm ${formatMetric(op.operatorNorm)}` +
            (Number.isFinite(ratio) ? ` (${formatMetric(ratio)}× the ${IM2COL_LABEL}'s σ_max)` : ""),
        );
      }
      if (m.mp_bulk_edge > 0) parts.push(`MP edge ${formatMetric(m.mp_bulk_edge)}`);
      if (powerLawSegment(s.spectrum) !== null) {
        parts.push(
          `α = ${formatMetric(m.alpha)} (λ ≥ ${formatMetric(m.alpha_xmin)}, KS ${formatMetric(m.alpha_ks_distance)})`,
        );
      }
      item(lineSample(s.color, ""), `${multi ? `${s.run}: ` : ""}${parts.join(" · ")}`, s.run);
    }
    if (series.some((s) => s.spectrum.metrics.mp_bulk_edge > 0)) {
      item(lineSample(grey, "6,3"), "Marchenko–Pastur bulk edge (σ above it: structure beyond noise)");
    }
    if (series.some((s) => powerLawSegment(s.spectrum) !== null)) {
      item(lineSample(grey, "2,3"), "power-law tail p(λ) ∝ λ^-α, λ = σ²");
    }
    if (anyOperator) {
      item(lineSample(grey, "1,3"), "operator norm: σ_max of the map the conv applies (circular padding), its Lipschitz constant");
    }
  }
}

/** The step's measured operator norm, or NaN (no operator, or a failed one). */
function operatorNorm(s: StepSpectrum): number {
  const op = s.operator;
  return op !== null && op.error === null && op.operatorNorm > 0 && op.operatorNorm < Infinity ? op.operatorNorm : NaN;
}

function hasPositive(s: StepSpectrum): boolean {
  for (const v of s.values) if (v > 0 && v < Infinity) return true;
  return false;
}
