// One run's update ratios as a heatmap: rows are parameters, columns logged steps, colour
// log10(ratio). Cells are painted into a <canvas> (10,000 steps x 60 parameters is fine);
// axes and row labels are SVG on top of it.

import { axisBottom } from "d3-axis";
import { scaleLinear, type ScaleLinear } from "d3-scale";
import { select } from "d3-selection";
import type { UpdateRatios } from "./api";
import type { ColorScale } from "./colormap";
import { formatInt, formatRatio, formatStepTick, middleEllipsis } from "./format";
import { NO_UPDATE_DARK, NO_UPDATE_LIGHT, NON_FINITE_RGB } from "./palette";
import { stepIndexAt, stepRange } from "./stats";
import { LABEL_FONT } from "./style";
import { appendHoverBox, hideHover, showRect } from "./svgchart";
import { showTooltip, type TooltipRow } from "./tooltip";

const SVG_NS = "http://www.w3.org/2000/svg";
const MAX_LABEL_WIDTH = 220;
const LABEL_LINE = 12; // px a row label needs
/** px between a row label and the plot. */
export const LABEL_GAP = 14;

export interface HeatmapOptions {
  run: string;
  tag: string;
  runColor: string;
  onRowClick: (name: string) => void;
  isSelected: (name: string) => boolean;
}

interface Layout {
  width: number;
  height: number;
  left: number;
  top: number;
  plotW: number;
  plotH: number;
  rowH: number;
  labelEvery: number;
  labels: string[];
  x: ScaleLinear<number, number>;
}

let measureCtx: CanvasRenderingContext2D | null = null;
function textWidth(text: string): number {
  if (!measureCtx) {
    measureCtx = document.createElement("canvas").getContext("2d");
    if (!measureCtx) return text.length * 6.5;
  }
  measureCtx.font = LABEL_FONT;
  return measureCtx.measureText(text).width;
}

/** The label shown for a parameter: the full name when it fits, else its middle cut out. */
function fitLabel(name: string, maxWidth: number): string {
  if (textWidth(name) <= maxWidth) return name;
  let n = name.length - 1;
  while (n > 4 && textWidth(middleEllipsis(name, n)) > maxWidth) n--;
  return middleEllipsis(name, n);
}

/** What the heatmaps and the line chart of one card share, so their step axes line up. */
export interface PlotFrame {
  /** Left edge of the plot area, px (room for the widest parameter label). */
  left: number;
  /** Step axis domain. */
  domain: [number, number];
}

/** Width of the label column for these parameter names. */
export function labelColumnWidth(names: Iterable<string>): number {
  let widest = 0;
  for (const name of names) widest = Math.max(widest, textWidth(name));
  return Math.min(MAX_LABEL_WIDTH, Math.ceil(widest));
}

export class Heatmap {
  readonly element: HTMLDivElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly svg: SVGSVGElement;
  private data: UpdateRatios | null = null;
  private color: ColorScale | null = null;
  private layout: Layout | null = null;
  /** Per device-pixel column of the canvas: the first and last step index it shows. */
  private colStart = new Int32Array(0);
  private colEnd = new Int32Array(0);

  constructor(private readonly opts: HeatmapOptions) {
    this.element = document.createElement("div");
    this.element.className = "ds-plot";
    this.canvas = document.createElement("canvas");
    this.canvas.dataset.testid = "heatmap";
    this.canvas.dataset.run = opts.run;
    this.canvas.dataset.tag = opts.tag;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute(
      "aria-label",
      `Update ratios of run ${opts.run}, tag ${opts.tag}: parameters by step`,
    );
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.element.append(this.canvas, this.svg);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.onLeave());
    this.canvas.addEventListener("click", (e) => this.onClick(e));
  }

  draw(data: UpdateRatios, color: ColorScale, width: number, frame: PlotFrame): void {
    this.data = data;
    this.color = color;
    this.layout = this.computeLayout(data, width, frame);
    this.drawSvg();
    this.drawCanvas();
    const c = this.canvas.dataset;
    c.steps = String(data.steps.length);
    c.params = String(data.names.length);
    c.drawn = "true";
  }

  /** Re-style the row labels after the parameter selection changed. */
  updateSelection(): void {
    select(this.svg)
      .selectAll<SVGTextElement, string>("text.ds-rowlabel")
      .classed("ds-selected", (name) => this.opts.isSelected(name));
  }

  private computeLayout(d: UpdateRatios, width: number, frame: PlotFrame): Layout {
    const P = Math.max(1, d.names.length);
    const rowH = Math.max(3, Math.min(16, Math.floor(520 / P)));
    const labelEvery = Math.max(1, Math.ceil(LABEL_LINE / rowH));
    const left = frame.left;
    const labels = d.names.map((name) => fitLabel(name, left - LABEL_GAP));
    const top = 18;
    const right = 12;
    const bottom = 36;
    const plotW = Math.max(40, Math.floor(width - left - right));
    const plotH = rowH * P;
    const x = scaleLinear().domain(frame.domain).range([0, plotW]);
    return {
      width: left + plotW + right,
      height: top + plotH + bottom,
      left,
      top,
      plotW,
      plotH,
      rowH,
      labelEvery,
      labels,
      x,
    };
  }

  private drawSvg(): void {
    const d = this.data;
    const L = this.layout;
    if (!d || !L) return;
    this.element.style.width = `${L.width}px`;
    this.element.style.height = `${L.height}px`;
    const svg = select(this.svg).attr("width", L.width).attr("height", L.height);
    svg.selectAll("*").remove();

    svg
      .append("text")
      .attr("class", "ds-axis-label")
      .attr("x", L.left - 8)
      .attr("y", L.top - 6)
      .attr("text-anchor", "end")
      .text("parameter");

    const rows = svg.append("g").attr("transform", `translate(${L.left - 8},${L.top})`);
    const shown = d.names
      .map((name, j) => ({ name, j }))
      .filter(({ j }) => j % L.labelEvery === 0);
    rows
      .selectAll("text")
      .data(shown.map((r) => r.name))
      .join("text")
      .attr("class", "ds-rowlabel")
      .classed("ds-selected", (name) => this.opts.isSelected(name))
      .attr("x", 0)
      .attr("y", (_, k) => (shown[k].j + 0.5) * L.rowH)
      .attr("dy", "0.35em")
      .attr("text-anchor", "end")
      .text((_, k) => L.labels[shown[k].j])
      .on("click", (_, name) => this.opts.onRowClick(name))
      .append("title")
      .text((name) => `${name}\nclick to plot it below`);

    const ticks = L.x.ticks(Math.max(2, Math.floor(L.plotW / 90))).filter(Number.isInteger);
    const axis = svg
      .append("g")
      .attr("class", "ds-axis")
      .attr("transform", `translate(${L.left},${L.top + L.plotH})`)
      .call(axisBottom(L.x).tickValues(ticks).tickFormat((v) => formatStepTick(Number(v))).tickSizeOuter(0));
    axis.select(".domain").attr("stroke", "#9e9e9e");
    svg
      .append("text")
      .attr("class", "ds-axis-label")
      .attr("x", L.left + L.plotW / 2)
      .attr("y", L.top + L.plotH + 32)
      .attr("text-anchor", "middle")
      .text("step");

    appendHoverBox(svg);
  }

  private drawCanvas(): void {
    const d = this.data;
    const L = this.layout;
    const color = this.color;
    if (!d || !L || !color) return;
    const dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
    const W = Math.max(1, Math.round(L.plotW * dpr));
    const H = Math.max(1, Math.round(L.plotH * dpr));
    const canvas = this.canvas;
    canvas.width = W;
    canvas.height = H;
    canvas.style.left = `${L.left}px`;
    canvas.style.top = `${L.top}px`;
    canvas.style.width = `${L.plotW}px`;
    canvas.style.height = `${L.plotH}px`;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const S = d.steps.length;
    const P = d.names.length;
    if (S === 0 || P === 0) {
      ctx.clearRect(0, 0, W, H);
      return;
    }

    // Which steps each device-pixel column shows. With more steps than pixels a column
    // summarises several: any non-finite value wins (so a NaN is never hidden), else the
    // mean of log10 over the updated steps, else "no update".
    this.colStart = new Int32Array(W);
    this.colEnd = new Int32Array(W);
    for (let px = 0; px < W; px++) {
      const [i0, i1] = stepRange(d.steps, L.x.invert(px / dpr), L.x.invert((px + 1) / dpr));
      this.colStart[px] = i0;
      this.colEnd[px] = i1;
    }
    const NON_FINITE = -1;
    const NO_UPDATE = -2;
    const cell = new Int32Array(W * P); // 0xRRGGBB, or NON_FINITE / NO_UPDATE
    const lo = color.lo;
    for (let j = 0; j < P; j++) {
      for (let px = 0; px < W; px++) {
        let sum = 0;
        let n = 0;
        let bad = false;
        for (let i = this.colStart[px]; i <= this.colEnd[px]; i++) {
          const k = i * P + j;
          if (d.noUpdate[k]) continue;
          const v = d.values[k];
          if (Number.isNaN(v) || v === Infinity || v === -Infinity) {
            bad = true;
            break;
          }
          sum += v > 0 ? Math.log10(v) : lo; // a zero ratio sits at the bottom of the scale
          n++;
        }
        cell[j * W + px] = bad ? NON_FINITE : n > 0 ? color.rgb(sum / n) : NO_UPDATE;
      }
    }

    // A NaN among thousands of steps would be a sub-pixel sliver: widen non-finite marks
    // to at least 2 CSS px so they are seen at a glance.
    const minBad = Math.max(1, Math.round(2 * dpr));
    if (minBad > 1) {
      for (let j = 0; j < P; j++) {
        const row = j * W;
        let px = 0;
        while (px < W) {
          if (cell[row + px] !== NON_FINITE) {
            px++;
            continue;
          }
          let end = px;
          while (end < W && cell[row + end] === NON_FINITE) end++;
          for (let q = end; q < Math.min(W, px + minBad); q++) cell[row + q] = NON_FINITE;
          px = Math.max(end, px + minBad);
        }
      }
    }

    const img = ctx.createImageData(W, H);
    const px32 = new Uint32Array(img.data.buffer);
    const pack = (r: number, g: number, b: number) => (0xff << 24) | (b << 16) | (g << 8) | r;
    const nonFinite = pack(...NON_FINITE_RGB);
    const hatchLight = pack(...NO_UPDATE_LIGHT);
    const hatchDark = pack(...NO_UPDATE_DARK);
    const white = pack(255, 255, 255);
    const period = Math.max(4, Math.round(5 * dpr));
    const stroke = Math.max(1, Math.round(1.5 * dpr));
    const rowPx = L.rowH * dpr;
    const gap = L.rowH >= 12 ? 1 : 0; // a hairline between rows when rows are tall
    for (let py = 0; py < H; py++) {
      const j = Math.min(P - 1, Math.floor(py / rowPx));
      const inGap = gap > 0 && py >= Math.round((j + 1) * rowPx) - gap;
      const base = py * W;
      const rowBase = j * W;
      for (let px = 0; px < W; px++) {
        let out: number;
        if (inGap) out = white;
        else {
          const c = cell[rowBase + px];
          if (c === NON_FINITE) out = nonFinite;
          else if (c === NO_UPDATE) out = (px + py) % period < stroke ? hatchDark : hatchLight;
          else out = pack((c >> 16) & 0xff, (c >> 8) & 0xff, c & 0xff);
        }
        px32[base + px] = out;
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  private cellAt(e: MouseEvent): { i: number; j: number; px: number } | null {
    const d = this.data;
    const L = this.layout;
    if (!d || !L || d.steps.length === 0 || d.names.length === 0) return null;
    const rect = this.canvas.getBoundingClientRect();
    const mx = e.clientX - rect.left;
    const my = e.clientY - rect.top;
    if (mx < 0 || my < 0 || mx >= L.plotW || my >= L.plotH) return null;
    const j = Math.min(d.names.length - 1, Math.floor(my / L.rowH));
    const dpr = this.canvas.width / L.plotW;
    const px = Math.min(this.colStart.length - 1, Math.floor(mx * dpr));
    // The step under the pointer, kept among those the pixel's colour shows.
    const under = stepIndexAt(d.steps, L.x.invert(mx));
    const i = Math.min(this.colEnd[px], Math.max(this.colStart[px], under));
    return { i, j, px };
  }

  private onMove(e: MouseEvent): void {
    const hit = this.cellAt(e);
    const d = this.data;
    const L = this.layout;
    if (!hit || !d || !L) return this.onLeave();
    const { i, j, px } = hit;
    const P = d.names.length;
    const k = i * P + j;
    const rows: TooltipRow[] = [
      { field: "name", value: d.names[j], strong: true },
      { label: "step", field: "step", value: String(d.steps[i]) },
      { label: "‖ΔW‖/‖W‖", field: "value", value: formatRatio(d.values[k], d.noUpdate[k] === 1) },
      { label: "run", field: "run", value: this.opts.run, color: this.opts.runColor },
    ];
    const i0 = this.colStart[px];
    const i1 = this.colEnd[px];
    if (px >= 0 && i1 > i0) {
      rows.push({
        label: "colour",
        value: `summarises steps ${d.steps[i0]}–${d.steps[i1]} (${formatInt(i1 - i0 + 1)} logged)`,
      });
    }
    showTooltip(rows, e.clientX, e.clientY);

    const x0 = L.x(d.steps[i]);
    const x1 = i + 1 < d.steps.length ? L.x(d.steps[i + 1]) : L.plotW;
    const w = Math.max(2, x1 - x0);
    showRect(this.svg, "ds-hover", {
      x: L.left + Math.min(x0, L.plotW - w),
      y: L.top + j * L.rowH,
      width: w,
      height: Math.max(2, L.rowH),
    });
  }

  private onLeave(): void {
    hideHover(this.svg);
  }

  private onClick(e: MouseEvent): void {
    const hit = this.cellAt(e);
    if (hit && this.data) this.opts.onRowClick(this.data.names[hit.j]);
  }
}
