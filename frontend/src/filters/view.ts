// Filters and feature maps: one card per (run, tag).
//   - a grid of tiles at a step (a step slider): a conv weight's filters (one RGB tile per
//     out-channel for a 3-channel input, else one grayscale tile per (out, in) pair), or a
//     layer's output channels on the probe sample;
//   - "compare": a second grid with its own slider, side by side (two steps of training);
//   - the colour scale per tile or shared by every tile of the step, diverging
//     (blue-white-red) for signed values, black-to-white otherwise; non-finite values magenta;
//   - pages of tiles past the page size; hover names the tile (out, in / channel) and the
//     value(s) under the pointer and the tile's range.

import { cardHead, el, nameCard, runError } from "../dom";
import { errorText } from "../json";
import { StepSlider } from "../slider";
import { addStyles } from "../style";
import { hideTooltip, showTooltip, type TooltipRow } from "../tooltip";
import { CardListView } from "../views/card_list";
import type { ViewContext, ViewEntry } from "../views/kind_view";
import { fetchPage, fetchSeries, type FiltersPage, type FiltersScale, type FiltersSeries } from "./api";
import { cellSize, pixelValues, tileIndex, tileLabel, tilePixels, tileScale } from "./render";

addStyles(`
.ds-fl-toolbar { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; margin: 8px 0 4px; font-size: 12px; }
.ds-fl-grids { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.ds-fl-grid { display: flex; flex-direction: column; gap: 4px; }
.ds-fl-grid[hidden] { display: none; }
.ds-fl-canvas { display: block; cursor: crosshair; background: #fff; }
.ds-fl-note { font-size: 12px; color: #616161; margin: 2px 0; }
.ds-fl-error { color: #c62828; font-size: 12px; }
.ds-fl-pager button { font-size: 12px; }
`);

const GAP = 2;
const PAGE_SIZES = [64, 256, 1024];

function fmt(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const a = Math.abs(value);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? value.toExponential(3) : value.toPrecision(4);
}

/** One grid: a step slider and the current page of tiles at that step. */
class StepGrid {
  readonly element = el("div", "ds-fl-grid");
  readonly slider: StepSlider;
  private readonly canvas = el("canvas", "ds-fl-canvas");
  private readonly note = el("div", "ds-fl-note");
  private readonly status = el("div");
  page: FiltersPage | null = null;
  private token = 0;
  private geometry = { cols: 1, cellH: 1, cellW: 1 };

  constructor(
    private readonly card: FiltersCard,
    title: string,
    testid: string,
  ) {
    this.slider = new StepSlider(() => void this.load(), title);
    this.element.dataset.testid = testid;
    this.canvas.dataset.testid = "filters-canvas";
    this.element.append(this.slider.element, this.note, this.status, this.canvas);
    this.canvas.addEventListener("mousemove", (event) => this.hover(event));
    this.canvas.addEventListener("mouseleave", () => hideTooltip());
  }

  async load(): Promise<void> {
    const step = this.slider.value;
    if (step === null) return;
    const token = ++this.token;
    try {
      const page = await fetchPage(this.card.run, this.card.tag, step, this.card.offset, this.card.pageSize);
      if (token !== this.token) return;
      this.page = page;
      this.status.replaceChildren();
      this.draw();
      this.card.pageLoaded();
    } catch (error) {
      if (token !== this.token) return;
      this.page = null;
      this.status.replaceChildren(el("div", "ds-fl-error", errorText(error)));
      this.canvas.width = 0;
    }
  }

  draw(): void {
    const page = this.page;
    if (!page) return;
    this.element.dataset.step = String(page.step);
    if (page.error !== null) {
      this.note.textContent = "";
      this.status.replaceChildren(el("div", "ds-fl-error", `step ${page.step}: ${page.error}`));
      this.canvas.width = 0;
      this.canvas.height = 0;
      return;
    }
    const [h, w] = page.rgb ? page.tileShape.slice(1) : page.tileShape;
    const target = page.source === "feature_maps" ? 96 : 40;
    const [cellH, cellW] = cellSize(h, w, target);
    const width = Math.max(320, Math.min(1100, (this.card.element.clientWidth || 900) - 40));
    const columns = this.card.compared ? Math.floor((width - 24) / 2) : width;
    const perRow = page.source === "weights" && !page.rgb ? page.shape[1] : 0;
    let cols = Math.max(1, Math.floor(columns / (cellW + GAP)));
    // Grayscale filters: one row per out-channel when its in-channels fit on a row.
    if (perRow > 0 && perRow <= cols) cols = perRow * Math.max(1, Math.floor(cols / perRow));
    cols = Math.min(cols, page.count);
    const rows = Math.ceil(page.count / cols);
    this.geometry = { cols, cellH, cellW };
    this.canvas.width = cols * (cellW + GAP) - GAP;
    this.canvas.height = rows * (cellH + GAP) - GAP;
    this.canvas.dataset.tiles = String(page.count);
    this.canvas.dataset.offset = String(page.offset);
    const ctx = this.canvas.getContext("2d");
    if (!ctx) return;
    ctx.imageSmoothingEnabled = false;
    const tile = document.createElement("canvas");
    tile.width = w;
    tile.height = h;
    const tileCtx = tile.getContext("2d");
    if (!tileCtx) return;
    const scale = this.card.scale;
    for (let k = 0; k < page.count; k++) {
      tileCtx.putImageData(new ImageData(tilePixels(page, k, scale), w, h), 0, 0);
      const x = (k % cols) * (cellW + GAP);
      const y = Math.floor(k / cols) * (cellH + GAP);
      ctx.drawImage(tile, 0, 0, w, h, x, y, cellW, cellH);
    }
    const shared = page.sharedRange;
    const what = page.source === "feature_maps" ? `channels of sample ${page.sample}` : page.rgb ? "RGB filters" : "filters (out × in)";
    const stored =
      page.kept < page.total
        ? ` · the first ${page.kept} of ${page.total} ${page.source === "feature_maps" ? "channels" : "out-channels"} stored`
        : "";
    const signed = shared !== null && shared[0] < 0 && shared[1] > 0;
    this.note.textContent =
      `step ${page.step} · ${page.tiles} ${what} of ${page.tileShape.join("×")}${stored} · ` +
      `range ${shared ? `${fmt(shared[0])} … ${fmt(shared[1])}` : "none finite"}` +
      ` · ${
        this.card.scale === "shared"
          ? signed
            ? "blue < 0 < red"
            : "black = low, white = high"
          : "signed tiles blue < 0 < red, others black = low, white = high"
      }` +
      (page.nonFinite ? ` · ${page.nonFinite} non-finite (magenta)` : "");
  }

  private hover(event: MouseEvent): void {
    const page = this.page;
    if (!page || page.error !== null) return;
    const rect = this.canvas.getBoundingClientRect();
    const sx = this.canvas.width / Math.max(1, rect.width);
    const sy = this.canvas.height / Math.max(1, rect.height);
    const px = (event.clientX - rect.left) * sx;
    const py = (event.clientY - rect.top) * sy;
    const { cols, cellH, cellW } = this.geometry;
    const col = Math.floor(px / (cellW + GAP));
    const row = Math.floor(py / (cellH + GAP));
    const k = row * cols + col;
    const inX = px - col * (cellW + GAP);
    const inY = py - row * (cellH + GAP);
    if (col >= cols || k >= page.count || inX >= cellW || inY >= cellH) {
      hideTooltip();
      return;
    }
    const [h, w] = page.rgb ? page.tileShape.slice(1) : page.tileShape;
    const y = Math.min(h - 1, Math.floor((inY / cellH) * h));
    const x = Math.min(w - 1, Math.floor((inX / cellW) * w));
    const t = page.offset + k;
    const index = tileIndex(page, t);
    const values = pixelValues(page, k, y, x);
    const range = page.tileRanges[k];
    const s = tileScale(page, k, this.card.scale);
    const rows: TooltipRow[] = [
      { field: "tile", value: tileLabel(index), strong: true },
      { field: "pixel", label: "pixel (y, x)", value: `${y}, ${x}` },
    ];
    if (values.length === 3) {
      ["R (in 0)", "G (in 1)", "B (in 2)"].forEach((label, c) =>
        rows.push({ field: `value${c}`, label, value: fmt(values[c]) }),
      );
    } else {
      rows.push({ field: "value", label: "value", value: fmt(values[0]) });
    }
    rows.push({ field: "range", label: "tile range", value: range ? `${fmt(range[0])} … ${fmt(range[1])}` : "none finite" });
    rows.push({ field: "scale", label: "colour scale", value: `${fmt(s.lo)} … ${fmt(s.hi)}` });
    this.canvas.dataset.hoverTile = String(t);
    showTooltip(rows, event.clientX, event.clientY);
  }
}

class FiltersCard {
  readonly element = el("div", "ds-card");
  private readonly sub = el("div", "ds-card-sub");
  private readonly status = el("div");
  private readonly scaleSelect = el("select");
  private readonly sizeSelect = el("select");
  private readonly compare = el("input");
  private readonly pagerLabel = el("span");
  private readonly prev = el("button", "", "◀ previous");
  private readonly next = el("button", "", "next ▶");
  private readonly grids = el("div", "ds-fl-grids");
  private readonly left: StepGrid;
  private readonly right: StepGrid;
  private series: FiltersSeries | null = null;
  private entry: ViewEntry | null = null;
  private token = 0;
  scale: FiltersScale = "per_tile";
  offset = 0;
  pageSize = 256;
  compared = false;

  constructor(
    readonly run: string,
    readonly tag: string,
  ) {
    nameCard(this.element, "filters-card", run, tag);
    const head = cardHead(`${tag} — ${run}`, this.sub);
    for (const [value, text] of [
      ["per_tile", "per filter / channel"],
      ["shared", "shared by the step"],
    ]) {
      const option = el("option", "", text);
      option.value = value;
      this.scaleSelect.append(option);
    }
    this.scaleSelect.dataset.testid = "filters-scale";
    this.scaleSelect.setAttribute("aria-label", "Colour scale");
    this.scaleSelect.addEventListener("change", () => {
      this.scale = this.scaleSelect.value as FiltersScale;
      this.element.dataset.scale = this.scale;
      this.left.draw();
      this.right.draw();
    });
    for (const size of PAGE_SIZES) {
      const option = el("option", "", String(size));
      option.value = String(size);
      this.sizeSelect.append(option);
    }
    this.sizeSelect.value = String(this.pageSize);
    this.sizeSelect.dataset.testid = "filters-page-size";
    this.sizeSelect.addEventListener("change", () => {
      this.pageSize = Number(this.sizeSelect.value);
      this.offset = 0;
      this.reloadGrids();
    });
    this.compare.type = "checkbox";
    this.compare.dataset.testid = "filters-compare";
    this.compare.addEventListener("change", () => this.setCompared(this.compare.checked));
    this.prev.dataset.testid = "filters-prev";
    this.next.dataset.testid = "filters-next";
    this.pagerLabel.dataset.testid = "filters-page";
    this.prev.addEventListener("click", () => this.turn(-1));
    this.next.addEventListener("click", () => this.turn(1));
    const toolbar = el("div", "ds-fl-toolbar");
    const scaleLabel = el("label", "", "colour scale ");
    scaleLabel.append(this.scaleSelect);
    const sizeLabel = el("label", "", "tiles a page ");
    sizeLabel.append(this.sizeSelect);
    const compareLabel = el("label");
    compareLabel.append(this.compare, document.createTextNode(" compare two steps"));
    const pager = el("span", "ds-fl-pager");
    pager.append(this.prev, " ", this.pagerLabel, " ", this.next);
    toolbar.append(scaleLabel, compareLabel, sizeLabel, pager);
    this.left = new StepGrid(this, "Step", "filters-grid");
    this.right = new StepGrid(this, "Compare with step", "filters-grid-compare");
    this.right.element.hidden = true;
    this.grids.append(this.left.element, this.right.element);
    this.element.append(head, this.status, toolbar, this.grids);
  }

  update(entries: readonly ViewEntry[]): void {
    const first = this.entry === null;
    this.entry = entries[0] ?? null;
    if (first) void this.load();
  }

  refresh(): void {
    void this.load();
  }

  resize(): void {
    this.left.draw();
    if (this.compared) this.right.draw();
  }

  dispose(): void {
    this.token++;
    hideTooltip();
  }

  /** Called by a grid when its page arrived: the pager's label and buttons. */
  pageLoaded(): void {
    const page = this.left.page ?? this.right.page;
    const tiles = page && page.error === null ? page.tiles : 0;
    const end = Math.min(tiles, this.offset + this.pageSize);
    this.pagerLabel.textContent = tiles ? `tiles ${this.offset}–${end - 1} of ${tiles}` : "";
    this.prev.disabled = this.offset === 0;
    this.next.disabled = end >= tiles;
  }

  private turn(direction: number): void {
    const page = this.left.page;
    const tiles = page && page.error === null ? page.tiles : 0;
    const offset = this.offset + direction * this.pageSize;
    if (offset < 0 || offset >= tiles) return;
    this.offset = offset;
    this.reloadGrids();
  }

  private reloadGrids(): void {
    void this.left.load();
    if (this.compared) void this.right.load();
  }

  private setCompared(on: boolean): void {
    this.compared = on;
    this.right.element.hidden = !on;
    this.element.dataset.compared = String(on);
    if (on && this.series) {
      const steps = this.series.steps;
      this.right.slider.setSteps(steps);
      if (steps.length) this.right.slider.select(steps[0]);
    }
    this.left.draw();
  }

  private async load(): Promise<void> {
    const token = ++this.token;
    try {
      const series = await fetchSeries(this.run, this.tag);
      if (token !== this.token) return;
      const first = this.series === null;
      this.series = series;
      this.status.replaceChildren();
      if (first) {
        this.scale = series.scale;
        this.scaleSelect.value = series.scale;
        this.element.dataset.scale = series.scale;
      }
      const what = series.source === "feature_maps" ? "feature maps" : "filters";
      this.sub.textContent =
        `${what}${series.layer ? ` of ${series.layer}` : ""} · ${series.steps.length} steps` +
        (series.errors.length ? ` · newest step damaged: ${series.errors[0][1]}` : "");
      this.element.dataset.source = series.source;
      this.left.slider.setSteps(series.steps);
      if (this.compared) this.right.slider.setSteps(series.steps);
      this.reloadGrids();
    } catch (error) {
      if (token !== this.token) return;
      this.status.replaceChildren(runError(this.run, this.entry?.color ?? "#000", errorText(error)));
    }
  }
}

/** One card per run and tag. */
export class FiltersView extends CardListView<FiltersCard> {
  constructor(_ctx: ViewContext) {
    super({
      key: (e) => `${e.run}\u0000${e.tag}`,
      create: (_key, entries) => new FiltersCard(entries[0].run, entries[0].tag),
    });
  }
}
