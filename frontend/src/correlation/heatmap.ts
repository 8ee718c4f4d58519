// One run's correlation matrix at one step: a canvas with one pixel per served cell, scaled
// up to the plot (so a 16-channel layer shows 16 x 16 squares and a 2048-channel overview
// 256 x 256 block means), an SVG layer for the frame, dead-channel ticks, the hover box and
// the zoom rectangle. Drag a rectangle to zoom: the view asks the server for that window.

import { interpolateRdBu } from "d3-scale-chromatic";
import { select } from "d3-selection";
import { buildLut } from "../colormap";
import { appendHoverBox, hideHover, showRect } from "../svgchart";
import { showTooltip, type TooltipRow } from "../tooltip";
import type { CorrelationMatrix, MatrixWindow } from "./api";

const SVG_NS = "http://www.w3.org/2000/svg";
/** Grey of dead-channel ticks and of cells that are not finite. */
export const DEAD_COLOR = "#9e9e9e";
const MARGIN = { left: 40, top: 34, right: 10, bottom: 10 };
const TICK = 6; // px of a dead-channel tick

/** ρ in [-1, 1] → colour: RdBu reversed, so +1 is red, 0 white, -1 blue. */
export function rhoColor(rho: number): string {
  const t = Math.max(-1, Math.min(1, rho));
  return interpolateRdBu((1 - t) / 2);
}

const LUT_SIZE = 511;
/** rhoColor over t in [0, 1] (ρ = 2t - 1), for gradients and lookup tables. */
export const rhoRamp = (t: number): string => rhoColor(-1 + 2 * t);

let lut: Uint8Array | null = null;
function lookup(): Uint8Array {
  lut ??= buildLut(rhoRamp, LUT_SIZE);
  return lut;
}

/** ρ as the tab prints it: 4 decimals, ASCII minus. */
export function formatRho(rho: number): string {
  if (!Number.isFinite(rho)) return String(rho);
  const text = rho.toFixed(4);
  return text === "-0.0000" ? "0.0000" : text;
}

export interface HeatmapOptions {
  run: string;
  tag: string;
  runColor: string;
  onZoom: (window: MatrixWindow) => void;
}

export class CorrelationHeatmap {
  readonly element: HTMLDivElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly svg: SVGSVGElement;
  private data: CorrelationMatrix | null = null;
  private plot = { w: 0, h: 0 };
  private drag: { i: number; j: number } | null = null;
  private readonly upListener = (e: MouseEvent) => this.onUp(e);

  constructor(private readonly opts: HeatmapOptions) {
    this.element = document.createElement("div");
    this.element.className = "ds-plot ds-corr-plot";
    this.canvas = document.createElement("canvas");
    this.canvas.dataset.testid = "correlation-heatmap";
    this.canvas.dataset.run = opts.run;
    this.canvas.dataset.tag = opts.tag;
    this.canvas.setAttribute("role", "img");
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.element.append(this.canvas, this.svg);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.onLeave());
    this.canvas.addEventListener("mousedown", (e) => this.onDown(e));
    window.addEventListener("mouseup", this.upListener);
  }

  /** Width of the drawn plot with its margins, px. */
  get width(): number {
    return MARGIN.left + this.plot.w + MARGIN.right;
  }

  /** Draw `data` in a plot at most `maxSide` px on its longer side. */
  draw(data: CorrelationMatrix, maxSide: number): void {
    this.data = data;
    this.onLeave(); // what was under the pointer has moved
    // Whole pixels per cell where they fit (crisp squares), else fractional.
    const fit = maxSide / Math.max(data.rows, data.cols);
    const cell = fit >= 1 ? Math.floor(fit) : fit;
    this.plot = {
      w: Math.max(1, Math.round(cell * data.cols)),
      h: Math.max(1, Math.round(cell * data.rows)),
    };
    this.drawCanvas();
    this.drawSvg();
    const c = this.canvas.dataset;
    c.step = String(data.step);
    c.order = data.order;
    c.rows = String(data.rows);
    c.cols = String(data.cols);
    c.reduction = data.reduction;
    const w = data.window;
    c.window = `${w.rowStart},${w.rowEnd},${w.colStart},${w.colEnd}`;
    c.rowOrder = data.rowOrder.join(",");
    c.colOrder = data.colOrder.join(",");
    c.drawn = "true";
    this.canvas.setAttribute(
      "aria-label",
      `Channel correlations of run ${data.run}, tag ${data.tag}, step ${data.step}: ` +
        `Pearson ρ from -1 (blue) to +1 (red)`,
    );
  }

  private drawCanvas(): void {
    const d = this.data;
    if (!d) return;
    const canvas = this.canvas;
    canvas.width = d.cols;
    canvas.height = d.rows;
    canvas.style.left = `${MARGIN.left}px`;
    canvas.style.top = `${MARGIN.top}px`;
    canvas.style.width = `${this.plot.w}px`;
    canvas.style.height = `${this.plot.h}px`;
    this.element.style.width = `${MARGIN.left + this.plot.w + MARGIN.right}px`;
    this.element.style.height = `${MARGIN.top + this.plot.h + MARGIN.bottom}px`;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const img = ctx.createImageData(d.cols, d.rows);
    const table = lookup();
    // At full resolution a dead channel's row and column are grey: its ρ is undefined
    // (stored as 0). A block mean may mix dead and live channels, so it keeps its colour.
    const deadRow = new Uint8Array(d.rows);
    const deadCol = new Uint8Array(d.cols);
    if (d.reduction === "none") {
      const rowDead = new Set(d.rowDead);
      const colDead = new Set(d.colDead);
      for (let i = 0; i < d.rows; i++) deadRow[i] = rowDead.has(d.rowOrder[d.rowEdges[i]]) ? 1 : 0;
      for (let j = 0; j < d.cols; j++) deadCol[j] = colDead.has(d.colOrder[d.colEdges[j]]) ? 1 : 0;
    }
    for (let k = 0; k < d.values.length; k++) {
      const v = d.values[k];
      const o = k * 4;
      if (deadRow[Math.floor(k / d.cols)] || deadCol[k % d.cols]) {
        img.data[o] = img.data[o + 1] = img.data[o + 2] = 0xd0;
      } else if (!Number.isFinite(v)) {
        img.data[o] = img.data[o + 1] = img.data[o + 2] = 0x9e;
      } else {
        const t = Math.round(((Math.max(-1, Math.min(1, v)) + 1) / 2) * (LUT_SIZE - 1)) * 3;
        img.data[o] = table[t];
        img.data[o + 1] = table[t + 1];
        img.data[o + 2] = table[t + 2];
      }
      img.data[o + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  private drawSvg(): void {
    const d = this.data;
    if (!d) return;
    const W = MARGIN.left + this.plot.w + MARGIN.right;
    const H = MARGIN.top + this.plot.h + MARGIN.bottom;
    const svg = select(this.svg).attr("width", W).attr("height", H);
    svg.selectAll("*").remove();
    const rowLabel = d.cross ? `channels of ${d.rowName || "network A"}` : "channel";
    const colLabel = d.cross ? `channels of ${d.colName || "network B"}` : "channel";
    const orderNote = d.order === "original" ? "" : ` (${d.order} order)`;
    svg
      .append("text")
      .attr("class", "ds-axis-label")
      .attr("x", MARGIN.left)
      .attr("y", 11)
      .text(`${colLabel}${orderNote} →`);
    svg
      .append("text")
      .attr("class", "ds-axis-label")
      .attr("transform", `translate(12,${MARGIN.top}) rotate(90)`)
      .text(`${rowLabel} →`);
    // The window's first and last position, so a zoom says where it is.
    const w = d.window;
    const corner = svg.append("g").attr("class", "ds-corr-range");
    corner
      .append("text")
      .attr("x", MARGIN.left)
      .attr("y", MARGIN.top - 12)
      .text(w.colStart);
    corner
      .append("text")
      .attr("x", MARGIN.left + this.plot.w)
      .attr("y", MARGIN.top - 12)
      .attr("text-anchor", "end")
      .text(w.colEnd - 1);
    corner
      .append("text")
      .attr("x", MARGIN.left - 4)
      .attr("y", MARGIN.top + 8)
      .attr("text-anchor", "end")
      .text(w.rowStart);
    corner
      .append("text")
      .attr("x", MARGIN.left - 4)
      .attr("y", MARGIN.top + this.plot.h)
      .attr("text-anchor", "end")
      .text(w.rowEnd - 1);

    // Dead channels: grey ticks beside the rows and above the columns that show them.
    const ticks = svg.append("g").attr("data-testid", "dead-ticks");
    const mark = (dead: number[], order: number[], start: number, end: number, rows: boolean) => {
      if (dead.length === 0) return;
      const position = new Map<number, number>();
      order.forEach((channel, p) => position.set(channel, p));
      const span = end - start;
      const length = rows ? this.plot.h : this.plot.w;
      for (const channel of dead) {
        const p = position.get(channel);
        if (p === undefined || p < start || p >= end) continue;
        const a = ((p - start) / span) * length;
        const size = Math.max(2, length / span);
        const rect = ticks
          .append("rect")
          .attr("class", "ds-dead-tick")
          .attr("fill", DEAD_COLOR)
          .attr("data-channel", channel);
        if (rows) {
          rect.attr("x", MARGIN.left - TICK - 1).attr("y", MARGIN.top + a);
          rect.attr("width", TICK).attr("height", size);
        } else {
          rect.attr("x", MARGIN.left + a).attr("y", MARGIN.top - TICK - 1);
          rect.attr("width", size).attr("height", TICK);
        }
      }
    };
    mark(d.rowDead, d.rowOrder, w.rowStart, w.rowEnd, true);
    mark(d.colDead, d.colOrder, w.colStart, w.colEnd, false);

    svg
      .append("rect")
      .attr("x", MARGIN.left - 0.5)
      .attr("y", MARGIN.top - 0.5)
      .attr("width", this.plot.w + 1)
      .attr("height", this.plot.h + 1)
      .attr("fill", "none")
      .attr("stroke", "#bdbdbd");
    appendHoverBox(svg);
    svg
      .append("rect")
      .attr("class", "ds-zoom-rect")
      .attr("fill", "rgba(245,124,0,.12)")
      .attr("stroke", "#f57c00")
      .attr("visibility", "hidden");
  }

  private cellAt(e: MouseEvent): { i: number; j: number } | null {
    const d = this.data;
    if (!d) return null;
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const y = e.clientY - rect.top;
    if (x < 0 || y < 0 || x >= rect.width || y >= rect.height) return null;
    return {
      i: Math.min(d.rows - 1, Math.floor((y / rect.height) * d.rows)),
      j: Math.min(d.cols - 1, Math.floor((x / rect.width) * d.cols)),
    };
  }

  private cellBox(i0: number, j0: number, i1: number, j1: number) {
    const d = this.data as CorrelationMatrix;
    const ch = this.plot.h / d.rows;
    const cw = this.plot.w / d.cols;
    return {
      x: MARGIN.left + Math.min(j0, j1) * cw,
      y: MARGIN.top + Math.min(i0, i1) * ch,
      width: (Math.abs(j1 - j0) + 1) * cw,
      height: (Math.abs(i1 - i0) + 1) * ch,
    };
  }

  private describe(edges: number[], order: number[], k: number): string {
    const a = edges[k];
    const b = edges[k + 1];
    if (b - a === 1) return String(order[a]);
    const shown = order.slice(a, Math.min(b, a + 4)).join(", ");
    return `${b - a} channels: ${shown}${b - a > 4 ? ", …" : ""}`;
  }

  private onMove(e: MouseEvent): void {
    const d = this.data;
    const hit = this.cellAt(e);
    if (!d || !hit) return this.onLeave();
    const { i, j } = hit;
    const block = d.reduction !== "none";
    const rows: TooltipRow[] = [
      {
        label: d.cross ? "row (A)" : "row",
        field: "row",
        value: this.describe(d.rowEdges, d.rowOrder, i),
      },
      {
        label: d.cross ? "column (B)" : "column",
        field: "col",
        value: this.describe(d.colEdges, d.colOrder, j),
      },
      {
        label: !block ? "ρ" : d.reduction === "max_abs" ? "ρ of largest |ρ|" : "mean ρ",
        field: "rho",
        value: formatRho(d.values[i * d.cols + j]),
        strong: true,
      },
      { label: "step", field: "step", value: String(d.step) },
      { label: "run", field: "run", value: this.opts.run, color: this.opts.runColor },
    ];
    if (!block) {
      const deadRow = d.rowDead.includes(d.rowOrder[d.rowEdges[i]]);
      const deadCol = d.colDead.includes(d.colOrder[d.colEdges[j]]);
      if (deadRow || deadCol) {
        const which =
          deadRow && deadCol
            ? "both channels are"
            : deadRow
              ? "the row channel is"
              : "the column channel is";
        rows.splice(3, 0, { field: "dead", value: `${which} dead (zero variance): ρ undefined` });
      }
    }
    showTooltip(rows, e.clientX, e.clientY);
    const box = this.cellBox(i, j, i, j);
    showRect(this.svg, "ds-hover", {
      x: box.x,
      y: box.y,
      width: Math.max(2, box.width),
      height: Math.max(2, box.height),
    });
    if (this.drag) {
      const z = this.cellBox(this.drag.i, this.drag.j, i, j);
      showRect(this.svg, "ds-zoom-rect", z);
    }
  }

  private onLeave(): void {
    hideHover(this.svg);
  }

  private onDown(e: MouseEvent): void {
    const hit = this.cellAt(e);
    if (!hit || e.button !== 0) return;
    e.preventDefault();
    this.drag = hit;
  }

  private onUp(e: MouseEvent): void {
    const start = this.drag;
    this.drag = null;
    select(this.svg).select("rect.ds-zoom-rect").attr("visibility", "hidden");
    const d = this.data;
    if (!start || !d) return;
    const end = this.cellAt(e) ?? start;
    const i0 = Math.min(start.i, end.i);
    const i1 = Math.max(start.i, end.i);
    const j0 = Math.min(start.j, end.j);
    const j1 = Math.max(start.j, end.j);
    if (i1 === i0 && j1 === j0) return; // a click, not a drag
    this.opts.onZoom({
      rowStart: d.rowEdges[i0],
      rowEnd: d.rowEdges[i1 + 1],
      colStart: d.colEdges[j0],
      colEnd: d.colEdges[j1 + 1],
    });
  }

  dispose(): void {
    window.removeEventListener("mouseup", this.upListener);
    this.onLeave();
  }
}
