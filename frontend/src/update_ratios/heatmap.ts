// One run's grid (update ratios, layer values) as a heatmap: rows are the card's rows (a
// parameter or layer, or a module group summarised by the median or the max of its rows),
// columns logged steps, colour the value on its quantity's scale (log10 for update ratios). Cells are painted into a <canvas>; every row is ROW_H px tall and
// labelled (HTML labels beside the canvas); past MAX_BODY_H the rows scroll, with the step
// axis kept below them. A pixel where the run logged nothing stays empty (transparent).

import { axisBottom } from "d3-axis";
import { scaleLinear, type ScaleLinear } from "d3-scale";
import { select } from "d3-selection";
import type { LayerGrid } from "./grid";
import type { ColorScale } from "../colormap";
import { formatInt, formatStepTick } from "../format";
import { formatValue } from "./format";
import { NO_UPDATE_DARK, NO_UPDATE_LIGHT, NON_FINITE_RGB } from "../palette";
import { columnEnds, stepIndexAt, stepRange } from "../stats";
import { scaledExtent, scaledValues } from "./stats";
import { LABEL_FONT, addStyles } from "../style";
import { hideTooltip, showTooltip, type TooltipRow } from "../tooltip";
import { CellMark, type Mark } from "./mark";

const SVG_NS = "http://www.w3.org/2000/svg";
/** px per heatmap row: every row is tall enough for its label. */
export const ROW_H = 16;
/** px of rows shown before the rows scroll. */
export const MAX_BODY_H = 560;
/** px the label column may take at most. */
export const MAX_LABEL_WIDTH = 280;
/** px of indent per level of a row's label. */
export const INDENT = 10;
/** px before a group's label for its ▸/▾ toggle. */
const TOGGLE_W = 12;
/** px between a row label and the plot. */
export const LABEL_GAP = 10;
const AXIS_H = 34;

/** Cells where the weight was exactly zero before the step: ‖ΔW‖/‖W‖ is undefined there. */
export const ZERO_WEIGHT_COLOR = "#b3c7d6";
const ZERO_WEIGHT_RGB: readonly [number, number, number] = [0xb3, 0xc7, 0xd6];

addStyles(`
.ds-ur-heatmap { position: relative; }
.ds-ur-scroll { position: relative; overflow-y: auto; overflow-x: hidden; overscroll-behavior: contain; }
.ds-ur-body { position: relative; }
.ds-ur-body canvas { position: absolute; top: 0; display: block; cursor: crosshair; image-rendering: pixelated; }
.ds-ur-row { position: absolute; left: 0; display: flex; align-items: center; gap: 2px; white-space: nowrap;
  overflow: hidden; font: ${LABEL_FONT}; color: #424242; cursor: pointer; }
.ds-ur-row:hover { color: #000; text-decoration: underline; }
.ds-ur-row.ds-selected { color: #e65100; font-weight: 700; }
.ds-ur-row[data-kind=group] { font-weight: 500; }
.ds-ur-toggle { flex: none; width: ${TOGGLE_W}px; color: #757575; text-align: center; }
.ds-ur-count { color: #9e9e9e; font-weight: 400; margin-left: 4px; }
.ds-ur-hover { position: absolute; pointer-events: none; box-sizing: border-box;
  border: 1.5px solid #212121; outline: 1px solid #fff; }
.ds-ur-mark { position: absolute; pointer-events: none; box-sizing: border-box;
  border: 2px solid #f57c00; outline: 1px solid #fff; box-shadow: 0 0 0 3px rgba(245,124,0,.35); }
.ds-ur-axis { display: block; overflow: visible; }
.ds-ur-axis text { font: ${LABEL_FONT}; fill: #616161; }
`);

/** A row of the card's heatmaps (the same rows in every run's heatmap). */
export interface HeatRow {
  /** Unique among the rows. */
  key: string;
  kind: "param" | "group";
  /** The parameters it shows: one for a parameter row, all under it for a group. */
  names: readonly string[];
  /** Its label, fitted to the label column. */
  label: string;
  /** The whole name: the parameter's, or the module path of a group. */
  title: string;
  depth: number;
  /** For a group: whether its rows are shown below it. */
  expanded: boolean;
}

/** What a group row's colour shows at each step: the median or the max of its parameters. */
export type GroupSummary = "median" | "max";

export interface HeatmapOptions {
  run: string;
  tag: string;
  runColor: string;
  /** What the grid shows, for the canvas' accessible name, e.g. "Update ratios". */
  what: string;
  /** What a row is: "parameter" or "layer". */
  rowNoun: string;
  onRowClick: (row: HeatRow) => void;
  isSelected: (name: string) => boolean;
}

/** What the heatmaps and the line chart of one card share, so their step axes line up. */
export interface PlotFrame {
  /** Left edge of the plot area, px (room for the widest row label). */
  left: number;
  /** Step axis domain. */
  domain: [number, number];
}

let measureCtx: CanvasRenderingContext2D | null = null;
/** Width in px of `text` in the row labels' font (`bold`: as a selected row shows it). */
export function textWidth(text: string, bold = false): number {
  if (!measureCtx) {
    measureCtx = document.createElement("canvas").getContext("2d");
    if (!measureCtx) return text.length * (bold ? 7 : 6.5);
  }
  measureCtx.font = bold ? `700 ${LABEL_FONT}` : LABEL_FONT;
  return measureCtx.measureText(text).width;
}

/** The first of `candidates` (longest first) within `maxWidth` px, else the last cut from the left. */
export function fitLabel(candidates: readonly string[], maxWidth: number): string {
  for (const c of candidates) if (textWidth(c) <= maxWidth) return c;
  const last = candidates[candidates.length - 1] ?? "";
  let n = last.length - 1;
  while (n > 3 && textWidth(`…${last.slice(last.length - n)}`) > maxWidth) n--;
  return `…${last.slice(last.length - n)}`;
}

/** px a row's label takes: its text (a parameter's in bold), indent and (for groups) toggle and count. */
export function rowLabelWidth(row: Pick<HeatRow, "kind" | "label" | "depth" | "names">): number {
  // A parameter's label is bold while it is in the chart: room for that.
  let w = row.depth * INDENT + TOGGLE_W + 2 + textWidth(row.label, row.kind === "param");
  if (row.kind === "group") w += 4 + textWidth(` ${row.names.length}`);
  return Math.ceil(w);
}

// Per-column states of a cell (or of a group at one pixel column).
const VALUE = 0;
const NON_FINITE = 1;
const NO_UPDATE = 2;
const ZERO_WEIGHT = 3;
const EMPTY = 4;

/** Each row's colour per device-pixel column: the mean scaled value over the steps it shows. */
interface Columns {
  W: number;
  colStart: Int32Array;
  colEnd: Int32Array;
  /** P x W, row-major by row: the mean scaled value (log10 on a log scale) over the column's steps with a value. */
  value: Float32Array;
  /** P x W: VALUE, NON_FINITE, NO_UPDATE, ZERO_WEIGHT or EMPTY. */
  state: Uint8Array;
}

/** Room right of the plot, px. */
const PLOT_RIGHT = 12;

export class Heatmap {
  readonly element: HTMLDivElement;
  private readonly scroll: HTMLDivElement;
  private readonly body: HTMLDivElement;
  private readonly labels: HTMLDivElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly hover: HTMLDivElement;
  private readonly mark = new CellMark();
  private readonly axis: SVGSVGElement;
  private data: LayerGrid | null = null;
  private index = new Map<string, number>();
  private rows: readonly HeatRow[] = [];
  private summary: GroupSummary = "median";
  private color: ColorScale | null = null;
  private x: ScaleLinear<number, number> = scaleLinear();
  private plotW = 0;
  private columns: Columns | null = null;
  private columnsKey = "";
  /** Bumped when new data arrives, so the caches below know. */
  private dataVersion = 0;
  private readonly rowCodes = new Map<string, Int32Array>();
  private columnsFor: Columns | null = null;
  private labelLeft = -1;
  private dpr = 1;
  private scrollTop = 0;
  private paintPending = false;
  private rowCodesKey = "";

  constructor(private readonly opts: HeatmapOptions) {
    this.element = document.createElement("div");
    this.element.className = "ds-ur-heatmap";
    this.scroll = document.createElement("div");
    this.scroll.className = "ds-ur-scroll";
    this.scroll.style.maxHeight = `${MAX_BODY_H}px`;
    this.scroll.dataset.testid = "heatmap-rows";
    this.body = document.createElement("div");
    this.body.className = "ds-ur-body";
    this.labels = document.createElement("div");
    this.canvas = document.createElement("canvas");
    this.canvas.dataset.testid = "heatmap";
    this.canvas.dataset.run = opts.run;
    this.canvas.dataset.tag = opts.tag;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute(
      "aria-label",
      `${opts.what} of run ${opts.run}, tag ${opts.tag}: ${opts.rowNoun}s by step`,
    );
    this.hover = document.createElement("div");
    this.hover.className = "ds-ur-hover";
    this.hover.hidden = true;
    this.body.append(this.labels, this.canvas, this.mark.element, this.hover);
    this.scroll.appendChild(this.body);
    this.axis = document.createElementNS(SVG_NS, "svg");
    this.axis.setAttribute("class", "ds-ur-axis");
    this.element.append(this.scroll, this.axis);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => this.onLeave());
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.scroll.addEventListener("scroll", () => this.onScroll(), { passive: true });
    // One listener for every row label: which row is in its data-row.
    const rowOf = (e: Event) => {
      const label = (e.target as Element | null)?.closest<HTMLElement>(".ds-ur-row");
      return label ? this.rows[Number(label.dataset.row)] : undefined;
    };
    this.labels.addEventListener("click", (e) => {
      const row = rowOf(e);
      if (row) this.opts.onRowClick(row);
    });
    this.labels.addEventListener("keydown", (e) => {
      const row = rowOf(e);
      if (row?.kind === "group" && (e.key === "Enter" || e.key === " ")) {
        e.preventDefault();
        this.opts.onRowClick(row);
      }
    });
  }

  draw(
    data: LayerGrid,
    rows: readonly HeatRow[],
    summary: GroupSummary,
    color: ColorScale,
    width: number,
    frame: PlotFrame,
  ): void {
    if (data !== this.data) {
      this.index = new Map(data.names.map((n, j) => [n, j]));
      this.dataVersion++;
    }
    // The same rows in the same column keep their labels (a reload does not replace them).
    const relabel = rows !== this.rows || frame.left !== this.labelLeft || summary !== this.summary;
    this.data = data;
    this.rows = rows;
    this.summary = summary;
    this.color = color;
    const right = PLOT_RIGHT;
    this.plotW = plotWidth(width, frame);
    this.x = scaleLinear().domain(frame.domain).range([0, this.plotW]);
    const fullW = frame.left + this.plotW + right;
    this.element.style.width = `${fullW}px`;
    this.body.style.height = `${rows.length * ROW_H}px`;
    if (relabel) this.drawLabels(frame.left);
    this.labelLeft = frame.left;
    this.drawAxis(frame.left, fullW);
    this.drawCanvas(frame);
    this.placeMark();
    const c = this.canvas.dataset;
    c.steps = String(data.steps.length);
    c.params = String(data.names.length);
    c.rows = String(rows.length);
    c.draws = String(Number(c.draws ?? "0") + 1); // how many times it was drawn, for tests
    c.drawn = "true";
  }

  /** Mark a cell (a row at a step; null: none), its rows scrolled to it at the next draw. */
  setMark(mark: Mark | null): void {
    this.mark.set(mark);
    if (this.data) this.placeMark();
  }

  /** The mark on the rows and steps drawn now; the rows scroll to it once after setMark. */
  private placeMark(): void {
    const d = this.data;
    if (!d) return;
    const top = this.mark.place(this.rows, d.steps, (s) => this.x(s), this.labelLeft, this.plotW, ROW_H);
    if (top !== null && this.rows.length * ROW_H > MAX_BODY_H) {
      this.scroll.scrollTop = Math.max(0, top - MAX_BODY_H / 2);
    }
  }

  /** Re-style the row labels after the parameter selection changed. */
  updateSelection(): void {
    for (const label of this.labels.children) {
      const el = label as HTMLElement;
      const name = el.dataset.name;
      el.classList.toggle("ds-selected", name !== undefined && this.opts.isSelected(name));
    }
  }

  private drawLabels(left: number): void {
    const width = left - LABEL_GAP;
    const nodes = this.rows.map((row, r) => {
      const div = document.createElement("div");
      div.className = "ds-ur-row";
      div.dataset.key = row.key;
      div.dataset.kind = row.kind;
      div.dataset.row = String(r);
      div.dataset.title = row.title;
      div.dataset.depth = String(row.depth);
      div.style.top = `${r * ROW_H}px`;
      div.style.height = `${ROW_H}px`;
      div.style.width = `${width}px`;
      // A parameter's text lines up with its sibling groups' (after their toggle).
      div.style.paddingLeft = `${row.depth * INDENT + (row.kind === "param" ? TOGGLE_W + 2 : 0)}px`;
      if (row.kind === "param") {
        div.dataset.name = row.names[0];
        div.title = `${row.title}\nclick to plot it below`;
        div.textContent = row.label;
        if (this.opts.isSelected(row.names[0])) div.classList.add("ds-selected");
      } else {
        div.dataset.expanded = String(row.expanded);
        div.setAttribute("role", "button");
        div.setAttribute("aria-expanded", String(row.expanded));
        div.tabIndex = 0;
        div.title = `${row.title}: ${row.names.length} parameters, the ${this.summary} of them per step\nclick to ${row.expanded ? "collapse" : "expand"}`;
        const toggle = document.createElement("span");
        toggle.className = "ds-ur-toggle";
        toggle.textContent = row.expanded ? "▾" : "▸";
        const text = document.createElement("span");
        text.className = "ds-ur-label-text";
        text.textContent = row.label;
        const count = document.createElement("span");
        count.className = "ds-ur-count";
        count.textContent = String(row.names.length);
        div.append(toggle, text, count);
      }
      return div;
    });
    this.labels.replaceChildren(...nodes);
  }

  private drawAxis(left: number, fullW: number): void {
    const svg = select(this.axis).attr("width", fullW).attr("height", AXIS_H);
    svg.selectAll("*").remove();
    const ticks = this.x.ticks(Math.max(2, Math.floor(this.plotW / 90))).filter(Number.isInteger);
    const axis = svg
      .append("g")
      .attr("class", "ds-axis")
      .attr("transform", `translate(${left},0)`)
      .call(
        axisBottom(this.x)
          .tickValues(ticks)
          .tickFormat((v) => formatStepTick(Number(v)))
          .tickSizeOuter(0),
      );
    axis.select(".domain").attr("stroke", "#9e9e9e");
    svg
      .append("text")
      .attr("class", "ds-axis-label")
      .attr("x", left + this.plotW / 2)
      .attr("y", 30)
      .attr("text-anchor", "middle")
      .text("step");
  }

  /**
   * Each parameter's per-column colour for `width` and `frame`, remembered per data object
   * (so a second draw of the same data, or Heatmap.prepare before it, costs nothing).
   */
  static prepare(data: LayerGrid, width: number, frame: PlotFrame): void {
    if (data.steps.length === 0) return;
    const plotW = plotWidth(width, frame);
    const dpr = devicePixelRatioNow();
    computeColumns(data, Math.max(1, Math.round(plotW * dpr)), dpr, frame, plotW);
  }

  private computeColumns(W: number, dpr: number, frame: PlotFrame): Columns {
    const d = this.data as LayerGrid;
    const cols = computeColumns(d, W, dpr, frame, this.plotW);
    this.columns = cols;
    this.columnsKey = `${this.dataVersion}:${columnsKeyOf(W, dpr, frame, this.plotW)}`;
    return cols;
  }

  private drawCanvas(frame: PlotFrame): void {
    const d = this.data;
    const color = this.color;
    if (!d || !color) return;
    this.dpr = devicePixelRatioNow();
    this.canvas.style.left = `${frame.left}px`;
    this.canvas.style.width = `${this.plotW}px`;
    const W = Math.max(1, Math.round(this.plotW * this.dpr));
    this.columnsFor = d.steps.length > 0 && this.rows.length > 0 ? this.computeColumns(W, this.dpr, frame) : null;
    this.scrollTop = this.scroll.scrollTop;
    this.paintVisible();
  }

  /** Rows in view scrolled: move the canvas along and paint the rows now in view. */
  private onScroll(): void {
    this.onLeave();
    this.scrollTop = this.scroll.scrollTop;
    if (this.paintPending) return;
    this.paintPending = true;
    window.requestAnimationFrame(() => {
      this.paintPending = false;
      this.paintVisible();
    });
  }

  /**
   * Paint the rows in view (the canvas covers only them, from a row's top edge), so that
   * opening every group of 200 parameters paints and computes a screenful, not all rows.
   */
  private paintVisible(): void {
    const d = this.data;
    const color = this.color;
    const cols = this.columnsFor;
    const canvas = this.canvas;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const viewH = Math.min(this.rows.length * ROW_H, MAX_BODY_H);
    const first = Math.max(0, Math.min(this.rows.length - 1, Math.floor(this.scrollTop / ROW_H)));
    const last = Math.min(this.rows.length, Math.ceil((this.scrollTop + viewH) / ROW_H));
    const R = Math.max(0, last - first);
    const dpr = this.dpr;
    const W = Math.max(1, Math.round(this.plotW * dpr));
    const H = Math.max(1, Math.round(R * ROW_H * dpr));
    if (canvas.width !== W) canvas.width = W;
    if (canvas.height !== H) canvas.height = H;
    canvas.style.top = `${first * ROW_H}px`;
    canvas.style.height = `${R * ROW_H}px`;
    canvas.dataset.firstRow = String(first);
    if (!d || !color || !cols || R === 0) {
      ctx.clearRect(0, 0, W, H);
      return;
    }

    // Each row's colour code per pixel column (0xRRGGBB, or a negative state code),
    // remembered per row while the columns, colours and summary stay the same: scrolling
    // or opening a group computes only the rows that newly come into view.
    const codesKey = `${this.columnsKey}|${color.lo}:${color.hi}|${this.summary}`;
    if (codesKey !== this.rowCodesKey) {
      this.rowCodes.clear();
      this.rowCodesKey = codesKey;
    }
    const codes = this.rows.slice(first, last).map((row) => {
      let c = this.rowCodes.get(row.key);
      if (!c) {
        c = this.rowCode(row, cols, color);
        this.rowCodes.set(row.key, c);
      }
      return c;
    });

    const img = ctx.createImageData(W, H);
    const px32 = new Uint32Array(img.data.buffer);
    const pack = (r: number, g: number, b: number) => ((0xff << 24) | (b << 16) | (g << 8) | r) >>> 0;
    const nonFinite = pack(...NON_FINITE_RGB);
    const zero = pack(...ZERO_WEIGHT_RGB);
    const hatchLight = pack(...NO_UPDATE_LIGHT);
    const hatchDark = pack(...NO_UPDATE_DARK);
    const white = pack(255, 255, 255);
    const period = Math.max(4, Math.round(5 * dpr));
    const stroke = Math.max(1, Math.round(1.5 * dpr));
    const rowPx = ROW_H * dpr;
    const line = new Uint32Array(W);
    const gapLine = new Uint32Array(W);
    for (let r = 0; r < R; r++) {
      const code = codes[r];
      let hatched = false;
      for (let px = 0; px < W; px++) {
        const c = code[px];
        let out: number;
        if (c >= 0) out = pack((c >> 16) & 0xff, (c >> 8) & 0xff, c & 0xff);
        else if (c === -EMPTY) out = 0;
        else if (c === -NON_FINITE) out = nonFinite;
        else if (c === -ZERO_WEIGHT) out = zero;
        else {
          out = hatchLight;
          hatched = true;
        }
        line[px] = out;
        gapLine[px] = c === -EMPTY ? 0 : white; // a hairline between rows
      }
      const y0 = Math.round(r * rowPx);
      const y1 = Math.min(H, Math.round((r + 1) * rowPx));
      for (let py = y0; py < y1; py++) {
        const base = py * W;
        if (py === y1 - 1) {
          px32.set(gapLine, base);
          continue;
        }
        px32.set(line, base);
        if (!hatched) continue;
        for (let px = 0; px < W; px++) {
          if (code[px] === -NO_UPDATE && (px + py) % period < stroke) px32[base + px] = hatchDark;
        }
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  /** A row's colour code per pixel column: a parameter's own, or its group's median or max. */
  private rowCode(row: HeatRow, cols: Columns, color: ColorScale): Int32Array {
    const W = cols.W;
    const members: number[] = [];
    for (const name of row.names) {
      const j = this.index.get(name);
      if (j !== undefined) members.push(j);
    }
    const code = new Int32Array(W);
    const scratch = new Float64Array(members.length);
    for (let px = 0; px < W; px++) {
      let n = 0;
      let flags = 0;
      for (const j of members) {
        const at = j * W + px;
        const s = cols.state[at];
        if (s === VALUE) scratch[n++] = cols.value[at];
        else if (s === NON_FINITE) flags |= 1;
        else if (s === ZERO_WEIGHT) flags |= 4;
        else if (s === NO_UPDATE) flags |= 2;
      }
      let c: number;
      if (flags & 1) c = -NON_FINITE;
      else if (n > 0) c = color.rgb(n === 1 ? scratch[0] : summarise(scratch, n, this.summary));
      else if (flags & 4) c = -ZERO_WEIGHT;
      else if (flags & 2) c = -NO_UPDATE;
      else c = -EMPTY;
      code[px] = c;
    }
    // A NaN among thousands of steps would be a sub-pixel sliver: widen non-finite marks
    // to at least 2 CSS px so they are seen at a glance.
    const minBad = Math.max(1, Math.round((2 * W) / Math.max(1, this.plotW)));
    let px = 0;
    while (px < W) {
      if (code[px] !== -NON_FINITE) {
        px++;
        continue;
      }
      let end = px;
      while (end < W && code[end] === -NON_FINITE) end++;
      for (let q = end; q < Math.min(W, px + minBad); q++) {
        if (code[q] !== -EMPTY) code[q] = -NON_FINITE;
      }
      px = Math.max(end, px + minBad);
    }
    return code;
  }

  /** The row, step index and pixel column under the pointer; null off the data. */
  private cellAt(e: MouseEvent): { r: number; i: number; px: number } | null {
    const d = this.data;
    const cols = this.columns;
    if (!d || !cols || cols !== this.columnsFor || d.steps.length === 0 || this.rows.length === 0) {
      return null;
    }
    const rect = this.canvas.getBoundingClientRect();
    const mx = e.clientX - rect.left;
    const my = e.clientY - this.body.getBoundingClientRect().top; // in rows from the first
    if (mx < 0 || my < 0 || mx >= this.plotW || my >= this.rows.length * ROW_H) return null;
    const r = Math.min(this.rows.length - 1, Math.floor(my / ROW_H));
    const px = Math.min(cols.W - 1, Math.floor((mx * cols.W) / this.plotW));
    if (cols.colStart[px] < 0) return null; // the run logged nothing here
    // The step under the pointer, kept among those the pixel's colour shows.
    const under = stepIndexAt(d.steps, this.x.invert(mx));
    const i = Math.min(cols.colEnd[px], Math.max(cols.colStart[px], under));
    return { r, i, px };
  }

  private onMove(e: MouseEvent): void {
    const hit = this.cellAt(e);
    const d = this.data;
    const cols = this.columns;
    if (!hit || !d || !cols) return this.onLeave();
    const { r, i, px } = hit;
    const row = this.rows[r];
    const P = d.names.length;
    const rows: TooltipRow[] = [{ field: "name", value: row.title, strong: true }];
    rows.push({ label: "step", field: "step", value: String(d.steps[i]) });
    if (row.kind === "param") {
      const j = this.index.get(row.names[0]);
      const k = j === undefined ? -1 : i * P + j;
      rows.push({
        label: d.quantity.label,
        field: "value",
        value:
          k < 0
            ? "not logged in this run"
            : formatValue(d.quantity, d.values[k], d.missing[k] === 1, d.zeroWeight[k] === 1),
      });
    } else {
      rows.push(...groupAt(d, this.index, row.names, i));
    }
    rows.push({ label: "run", field: "run", value: this.opts.run, color: this.opts.runColor });
    const i0 = cols.colStart[px];
    const i1 = cols.colEnd[px];
    if (i1 > i0) {
      rows.push({
        label: "colour",
        value: `summarises steps ${d.steps[i0]}–${d.steps[i1]} (${formatInt(i1 - i0 + 1)} logged)`,
      });
    }
    showTooltip(rows, e.clientX, e.clientY);

    const x0 = this.x(d.steps[i]);
    const x1 = i + 1 < d.steps.length ? this.x(d.steps[i + 1]) : this.plotW;
    const w = Math.max(3, Math.min(x1 - x0, this.plotW));
    const box = this.hover;
    box.hidden = false;
    box.style.left = `${parseFloat(this.canvas.style.left) + Math.max(0, Math.min(x0, this.plotW - w))}px`;
    box.style.top = `${r * ROW_H}px`;
    box.style.width = `${w}px`;
    box.style.height = `${ROW_H}px`;
  }

  private onLeave(): void {
    this.hover.hidden = true;
    hideTooltip();
  }

  private onClick(e: MouseEvent): void {
    const hit = this.cellAt(e);
    if (hit) this.opts.onRowClick(this.rows[hit.r]);
  }
}

const columnCache = new WeakMap<LayerGrid, { key: string; cols: Columns }>();

function columnsKeyOf(W: number, dpr: number, frame: PlotFrame, plotW: number): string {
  return `${W}:${dpr}:${plotW}:${frame.domain[0]}:${frame.domain[1]}`;
}

function plotWidth(width: number, frame: PlotFrame): number {
  return Math.max(40, Math.floor(width - frame.left - PLOT_RIGHT));
}

function devicePixelRatioNow(): number {
  return Math.max(1, Math.min(3, window.devicePixelRatio || 1));
}

/** Each parameter's per-column summary of `d` at W device px (remembered per data object). */
function computeColumns(
  d: LayerGrid,
  W: number,
  dpr: number,
  frame: PlotFrame,
  plotW: number,
): Columns {
  const key = columnsKeyOf(W, dpr, frame, plotW);
  const known = columnCache.get(d);
  if (known && known.key === key) return known.cols;
  const x = scaleLinear().domain(frame.domain).range([0, plotW]);
  const S = d.steps.length;
  const P = d.names.length;
  const ends = columnEnds(d.steps);
  const colStart = new Int32Array(W);
  const colEnd = new Int32Array(W);
  for (let px = 0; px < W; px++) {
    const [i0, i1] =
      S === 0 ? [-1, -1] : stepRange(d.steps, ends, x.invert(px / dpr), x.invert((px + 1) / dpr));
    colStart[px] = i0;
    colEnd[px] = i1;
  }
  // With more steps than pixels a column summarises several: any non-finite value wins
  // (so a NaN is never hidden), else the mean scaled value over the steps with one (a value
  // below a log scale, e.g. a zero ratio, counts as the smallest logged one), else
  // "‖W‖ = 0", else "no value" (update ratios: no update).
  const zeroLog = scaledExtent(d)?.[0] ?? -12;
  const value = new Float32Array(P * W);
  const state = new Uint8Array(P * W).fill(EMPTY);
  const sum = new Float64Array(P);
  const count = new Int32Array(P);
  const flags = new Uint8Array(P); // bit 1: non-finite, 2: no update, 4: zero weight
  const { missing, zeroWeight } = d;
  const logs = scaledValues(d);
  for (let px = 0; px < W; px++) {
    const i0 = colStart[px];
    if (i0 < 0) continue;
    sum.fill(0);
    count.fill(0);
    flags.fill(0);
    for (let i = i0; i <= colEnd[px]; i++) {
      const base = i * P;
      for (let j = 0; j < P; j++) {
        const k = base + j;
        const l = logs[k];
        if (l > -Infinity) {
          sum[j] += l;
          count[j]++;
        } else if (l === -Infinity) {
          sum[j] += zeroLog;
          count[j]++;
        } else if (missing[k]) flags[j] |= 2;
        else if (zeroWeight[k]) flags[j] |= 4;
        else flags[j] |= 1;
      }
    }
    for (let j = 0; j < P; j++) {
      const at = j * W + px;
      const f = flags[j];
      if (f & 1) state[at] = NON_FINITE;
      else if (count[j] > 0) {
        state[at] = VALUE;
        value[at] = sum[j] / count[j];
      } else if (f & 4) state[at] = ZERO_WEIGHT;
      else if (f & 2) state[at] = NO_UPDATE;
    }
  }
  const cols = { W, colStart, colEnd, value, state };
  columnCache.set(d, { key, cols });
  return cols;
}

/** The median or the max of scratch[0..n) (reorders it). */
function summarise(scratch: Float64Array, n: number, how: GroupSummary): number {
  if (how === "max") {
    let m = -Infinity;
    for (let k = 0; k < n; k++) if (scratch[k] > m) m = scratch[k];
    return m;
  }
  const hi = select_k(scratch, n, n >> 1);
  if (n % 2) return hi;
  let lo = -Infinity; // the largest below the upper middle: the lower middle
  for (let k = 0; k < n >> 1; k++) if (scratch[k] > lo) lo = scratch[k];
  return (lo + hi) / 2;
}

/** The k-th smallest of xs[0..n) (Hoare's quickselect; leaves smaller ones before k). */
function select_k(xs: Float64Array, n: number, k: number): number {
  let left = 0;
  let right = n - 1;
  while (right > left) {
    const pivot = xs[(left + right) >> 1];
    let i = left;
    let j = right;
    while (i <= j) {
      while (xs[i] < pivot) i++;
      while (xs[j] > pivot) j--;
      if (i <= j) {
        const t = xs[i];
        xs[i] = xs[j];
        xs[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) right = j;
    else if (k >= i) left = i;
    else break;
  }
  return xs[k];
}

/** Tooltip rows of a group at step i: the median and the max of its parameters, and which. */
function groupAt(
  d: LayerGrid,
  index: ReadonlyMap<string, number>,
  names: readonly string[],
  i: number,
): TooltipRow[] {
  const P = d.names.length;
  const finite: Array<{ v: number; name: string }> = [];
  let nonFinite = 0;
  let missing = 0;
  let zeroWeight = 0;
  for (const name of names) {
    const j = index.get(name);
    if (j === undefined) continue;
    const k = i * P + j;
    const v = d.values[k];
    if (d.missing[k]) missing++;
    else if (d.zeroWeight[k]) zeroWeight++;
    else if (Number.isFinite(v)) finite.push({ v, name });
    else nonFinite++;
  }
  const out: TooltipRow[] = [{ label: "parameters", field: "count", value: formatInt(names.length) }];
  if (finite.length > 0) {
    finite.sort((a, b) => a.v - b.v);
    const n = finite.length;
    const med = n % 2 ? finite[(n - 1) >> 1].v : (finite[n / 2 - 1].v + finite[n / 2].v) / 2;
    const top = finite[n - 1];
    out.push({ label: "median", field: "median", value: formatValue(d.quantity, med, false) });
    out.push({ label: "max", field: "max", value: formatValue(d.quantity, top.v, false) });
    out.push({ label: "max at", field: "max_name", value: top.name });
  }
  if (nonFinite > 0) out.push({ label: "non-finite", field: "non_finite", value: formatInt(nonFinite) });
  if (zeroWeight > 0) {
    out.push({ label: "‖W‖ = 0", field: "zero_weight", value: `${formatInt(zeroWeight)} (ratio undefined)` });
  }
  if (missing > 0) out.push({ label: d.quantity.missingText, field: "no_update", value: formatInt(missing) });
  return out;
}
