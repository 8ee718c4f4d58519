// A layer's spectrum over training, for one run: columns are (a sample of) the logged
// steps, rows the singular values by rank (1 = largest, at the top), colour log10 σ on a
// scale shared by the runs. Steps that could not be measured are red columns. Clicking a
// column selects its step.

import { axisBottom, axisLeft } from "d3-axis";
import { scaleLinear } from "d3-scale";
import { select } from "d3-selection";
import type { ColorScale } from "../colormap";
import { el, swatch } from "../dom";
import { formatStepTick } from "../format";
import { axisTitles } from "../svgchart";
import { NON_FINITE_RGB } from "../palette";
import { hideTooltip, showTooltip } from "../tooltip";
import type { Evolution } from "./api";
import { formatMetric } from "./format";

const SVG_NS = "http://www.w3.org/2000/svg";
const HEIGHT = 170;
const MARGIN = { top: 6, right: 16, bottom: 34, left: 64 };

export class EvolutionHeatmap {
  readonly element: HTMLDivElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly svg: SVGSVGElement;
  private readonly plot: HTMLDivElement;
  private data: Evolution | null = null;
  private plotW = 0;
  private plotH = 0;

  constructor(
    readonly run: string,
    readonly color: string,
    private readonly onPick: (step: number) => void,
  ) {
    this.element = el("div", "ds-runblock");
    const head = el("div", "ds-runblock-head");
    const name = el("span", "ds-runblock-name", run);
    // A long run name wraps inside the card instead of widening the page.
    name.style.overflowWrap = "anywhere";
    name.style.minWidth = "0";
    this.element.style.minWidth = "0";
    this.element.style.maxWidth = "100%";
    head.append(swatch(color), name);
    this.plot = el("div", "ds-plot");
    this.canvas = el("canvas");
    this.canvas.dataset.testid = "spectrum-evolution";
    this.canvas.dataset.run = run;
    this.canvas.setAttribute("role", "img");
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.plot.append(this.canvas, this.svg);
    this.element.append(head, this.plot);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => hideTooltip());
    this.canvas.addEventListener("click", (e) => {
      const cell = this.cellAt(e);
      if (cell) this.onPick(this.data!.steps[cell.i]);
    });
  }

  draw(data: Evolution, color: ColorScale, width: number, selectedStep: number | null): void {
    this.data = data;
    const S = data.steps.length;
    const K = data.index.length;
    this.plotW = Math.max(60, Math.floor(width - MARGIN.left - MARGIN.right));
    this.plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    this.plot.style.width = `${width}px`;
    this.plot.style.height = `${HEIGHT}px`;
    const c = this.canvas;
    c.style.left = `${MARGIN.left}px`;
    c.style.top = `${MARGIN.top}px`;
    c.style.width = `${this.plotW}px`;
    c.style.height = `${this.plotH}px`;
    c.setAttribute(
      "aria-label",
      `Singular values of ${data.tag}, run ${data.run}, over ${S} steps (log10 σ as colour)`,
    );
    // One canvas pixel per cell, stretched by CSS (image-rendering: pixelated).
    c.width = Math.max(1, S);
    c.height = Math.max(1, K);
    const ctx = c.getContext("2d");
    if (ctx && S > 0 && K > 0) {
      const img = ctx.createImageData(S, K);
      for (let i = 0; i < S; i++) {
        const bad = data.errors.has(data.steps[i]);
        for (let k = 0; k < K; k++) {
          const v = data.values[i * K + k];
          const p = (k * S + i) * 4;
          if (bad || !Number.isFinite(v) || v < 0) {
            img.data[p] = NON_FINITE_RGB[0];
            img.data[p + 1] = NON_FINITE_RGB[1];
            img.data[p + 2] = NON_FINITE_RGB[2];
          } else {
            const rgb = color.rgb(v > 0 ? Math.log10(v) : -Infinity);
            img.data[p] = rgb >> 16;
            img.data[p + 1] = (rgb >> 8) & 0xff;
            img.data[p + 2] = rgb & 0xff;
          }
          img.data[p + 3] = 255;
        }
      }
      ctx.putImageData(img, 0, 0);
    }
    this.drawAxes(selectedStep);
    c.dataset.steps = String(S);
    c.dataset.values = String(K);
    c.dataset.drawn = "true";
  }

  /** Move the marker of the selected step. */
  mark(selectedStep: number | null): void {
    if (this.data) this.drawAxes(selectedStep);
  }

  private drawAxes(selectedStep: number | null): void {
    const data = this.data!;
    const S = data.steps.length;
    const K = data.index.length;
    const svg = select(this.svg)
      .attr("width", this.plotW + MARGIN.left + MARGIN.right)
      .attr("height", HEIGHT);
    svg.selectAll("*").remove();
    const g = svg.append("g").attr("transform", `translate(${MARGIN.left},${MARGIN.top})`);
    const colX = scaleLinear().domain([0, Math.max(1, S)]).range([0, this.plotW]);
    const count = Math.min(S, Math.max(2, Math.floor(this.plotW / 80)));
    const tickCols = S ? Array.from(new Set(Array.from({ length: count }, (_, t) =>
      Math.round((t * (S - 1)) / Math.max(1, count - 1))))) : [];
    g.append("g")
      .attr("class", "ds-axis")
      .attr("transform", `translate(0,${this.plotH})`)
      .call(
        axisBottom(colX)
          .tickValues(tickCols.map((i) => i + 0.5))
          .tickFormat((v) => formatStepTick(data.steps[Math.floor(Number(v))]))
          .tickSizeOuter(0),
      );
    const rowY = scaleLinear().domain([0, Math.max(1, K)]).range([0, this.plotH]);
    const rowTicks = K ? Array.from(new Set([0, Math.floor((K - 1) / 2), K - 1])) : [];
    g.append("g")
      .attr("class", "ds-axis")
      .call(
        axisLeft(rowY)
          .tickValues(rowTicks.map((k) => k + 0.5))
          .tickFormat((v) => String(data.index[Math.floor(Number(v))] + 1))
          .tickSizeOuter(0),
      );
    axisTitles(
      g,
      this.plotW,
      this.plotH,
      {
        text: S < data.totalSteps ? `step (${S} of ${data.totalSteps} logged steps shown)` : "step",
        below: this.plotH + 30,
      },
      {
        text: K < data.totalValues ? `rank i (${K} of ${data.totalValues})` : "rank i",
        left: -MARGIN.left + 14,
      },
    );
    if (selectedStep !== null && S > 0) {
      const i = data.steps.indexOf(selectedStep);
      if (i >= 0) {
        g.append("rect")
          .attr("class", "ds-sp-marker")
          .attr("x", colX(i))
          .attr("width", Math.max(2, colX(i + 1) - colX(i)))
          .attr("height", this.plotH)
          .attr("fill", "none")
          .attr("stroke", "#212121")
          .attr("stroke-width", 1.5);
      }
    }
  }

  private cellAt(e: MouseEvent): { i: number; k: number } | null {
    const data = this.data;
    if (!data || data.steps.length === 0 || data.index.length === 0) return null;
    const rect = this.canvas.getBoundingClientRect();
    const i = Math.floor(((e.clientX - rect.left) / rect.width) * data.steps.length);
    const k = Math.floor(((e.clientY - rect.top) / rect.height) * data.index.length);
    if (i < 0 || k < 0 || i >= data.steps.length || k >= data.index.length) return null;
    return { i, k };
  }

  private onMove(e: MouseEvent): void {
    const cell = this.cellAt(e);
    const data = this.data;
    if (!cell || !data) {
      hideTooltip();
      return;
    }
    const step = data.steps[cell.i];
    const error = data.errors.get(step);
    const v = data.values[cell.i * data.index.length + cell.k];
    showTooltip(
      [
        { label: "run", value: data.run, color: this.color },
        { label: "step", field: "step", value: String(step), strong: true },
        { label: "rank", field: "rank", value: String(data.index[cell.k] + 1) },
        error !== undefined
          ? { label: "error", field: "sigma", value: error }
          : { label: "σ", field: "sigma", value: formatMetric(v) },
        { value: "click: show this step", label: "" },
      ],
      e.clientX,
      e.clientY,
    );
  }
}
