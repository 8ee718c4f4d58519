// The sorted matched correlations of one matching method (as in Li et al., Convergent
// Learning, ICLR 2016): x = channel rank after sorting by ρ (best first), y = ρ of the
// channel's match. One line per run, in the run's colour.

import { axisBottom, axisLeft } from "d3-axis";
import { scaleLinear } from "d3-scale";
import { line } from "d3-shape";
import { legendItem, lineSample } from "../legend";
import { axisTitles, clearPlot, plotSvg } from "../svgchart";
import { hideTooltip, showTooltip } from "../tooltip";
import { formatRho } from "./heatmap";

const HEIGHT = 220;
const MARGIN = { top: 10, right: 12, bottom: 36, left: 44 };

export interface MatchingLine {
  run: string;
  color: string;
  /** SVG stroke-dasharray ("" solid), so that runs with equal curves stay apart. */
  dash: string;
  step: number;
  /** Matched ρ, sorted from highest to lowest. */
  sorted: readonly number[];
  mean: number | null;
}

export class MatchingChart {
  readonly element: HTMLDivElement;
  private readonly svg: SVGSVGElement;
  private readonly caption: HTMLDivElement;
  private lines: readonly MatchingLine[] = [];

  constructor(
    readonly method: "semi" | "bipartite",
    title: string,
  ) {
    this.element = document.createElement("div");
    this.element.className = "ds-corr-curve";
    this.element.dataset.testid = "matching-curve";
    this.element.dataset.method = method;
    const head = document.createElement("div");
    head.className = "ds-chart-title";
    head.textContent = title;
    const { plot, svg } = plotSvg(`${title}: matched ρ by channel rank`);
    this.svg = svg;
    this.caption = document.createElement("div");
    this.caption.className = "ds-chart-legend";
    this.element.append(head, plot, this.caption);
    this.svg.addEventListener("mousemove", (e) => this.onMove(e));
    this.svg.addEventListener("mouseleave", () => hideTooltip());
  }

  draw(lines: readonly MatchingLine[], width: number): void {
    this.lines = lines;
    const W = Math.max(200, Math.floor(width));
    const svg = clearPlot(this.svg, W, HEIGHT);
    const plotW = W - MARGIN.left - MARGIN.right;
    const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    const n = Math.max(1, ...lines.map((l) => l.sorted.length));
    let lo = 0;
    for (const l of lines) for (const v of l.sorted) lo = Math.min(lo, v);
    const x = scaleLinear().domain([1, Math.max(2, n)]).range([0, plotW]);
    const y = scaleLinear().domain([Math.max(-1, Math.floor(lo * 10) / 10), 1]).range([plotH, 0]);
    const g = svg.append("g").attr("transform", `translate(${MARGIN.left},${MARGIN.top})`);
    g.append("g")
      .attr("class", "ds-axis")
      .attr("transform", `translate(0,${plotH})`)
      .call(
        axisBottom(x)
          .ticks(Math.min(n, Math.max(2, Math.floor(plotW / 60))))
          .tickFormat((v) => String(v))
          .tickSizeOuter(0),
      );
    g.append("g").attr("class", "ds-axis").call(axisLeft(y).ticks(5).tickSizeOuter(0));
    axisTitles(
      g,
      plotW,
      plotH,
      { text: "channel rank (sorted by matched ρ)", below: plotH + 32 },
      { text: "ρ of the match", left: -34 },
    );
    const path = line<number>()
      .x((_, k) => x(k + 1))
      .y((v) => y(v));
    for (const l of lines) {
      g.append("path")
        .attr("fill", "none")
        .attr("stroke", l.color)
        .attr("stroke-width", 1.8)
        .attr("stroke-dasharray", l.dash || null)
        .attr("data-run", l.run)
        .attr("data-points", l.sorted.length)
        .attr("d", path([...l.sorted]) ?? "");
    }
    this.caption.replaceChildren();
    for (const l of lines) {
      const mean = l.mean === null ? "n/a" : formatRho(l.mean);
      const text = `${l.run} (step ${l.step}): mean ρ ${mean}`;
      const item = legendItem(lineSample(l.color, l.dash), text);
      item.dataset.run = l.run;
      this.caption.appendChild(item);
    }
    this.element.dataset.drawn = "true";
  }

  private onMove(e: MouseEvent): void {
    const rect = this.svg.getBoundingClientRect();
    const n = Math.max(1, ...this.lines.map((l) => l.sorted.length));
    const plotW = rect.width - MARGIN.left - MARGIN.right;
    const t = (e.clientX - rect.left - MARGIN.left) / plotW;
    if (t < 0 || t > 1 || this.lines.length === 0) return hideTooltip();
    const rank = Math.round(1 + t * (Math.max(2, n) - 1));
    const rows = [{ label: "rank", field: "rank", value: String(rank), strong: true }];
    for (const l of this.lines) {
      const v = l.sorted[rank - 1];
      if (v === undefined) continue;
      rows.push({ label: l.run, field: `rho-${l.run}`, value: formatRho(v), strong: false });
    }
    showTooltip(rows, e.clientX, e.clientY);
  }
}
