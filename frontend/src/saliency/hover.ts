// Hovering the saliency grid: a panel's pixel (its map value and input values) or a token
// (its text, id, position and map value), shown in the tab's tooltip.

import { hideTooltip, showTooltip, type TooltipRow } from "../tooltip";
import type { NdArray, SaliencyMaps } from "./api";
import { formatValue, type Geometry, type SignMode } from "./render";
import { tokenLabel } from "./tokens";

/** What one panel of the grid shows, for its hover. */
export interface PanelData {
  kind: "source" | "map" | "overlay" | "baseline" | "baseline-map";
  maps: SaliencyMaps;
  /** Index into maps.samples. */
  row: number;
  /** The reduced map whose value hovering shows (null for the source and the baseline). */
  reduced: Float64Array | null;
  /** The input whose values hovering shows, and its row (first axis). */
  input: NdArray;
  inputRow: number;
}

/** Whose tooltip it is: the card's run and colour, and the sign mode drawn. */
export interface HoverContext {
  run: string;
  color: string;
  mode: () => SignMode;
}

/** The pixel (x, y) of `g` under a pointer at (clientX, clientY) over `rect`; null outside. */
export function pixelAt(
  rect: { left: number; top: number; width: number; height: number },
  clientX: number,
  clientY: number,
  g: Geometry,
): [number, number] | null {
  const x = Math.floor(((clientX - rect.left) / rect.width) * g.W);
  const y = Math.floor(((clientY - rect.top) / rect.height) * g.H);
  if (x < 0 || y < 0 || x >= g.W || y >= g.H) return null;
  return [x, y];
}

/** The tooltip rows of pixel (x, y) of a panel. */
export function pixelRows(
  data: PanelData,
  x: number,
  y: number,
  g: Geometry,
  mode: SignMode,
  ctx: HoverContext,
): TooltipRow[] {
  const p = y * g.W + x;
  const plane = g.H * g.W;
  const base = data.inputRow * g.C * plane;
  const inputs: string[] = [];
  for (let c = 0; c < g.C && c < 4; c++) {
    inputs.push(formatValue(data.input.values[base + c * plane + p]));
  }
  if (g.C > 4) inputs.push("…");
  const m = data.maps;
  const rows: TooltipRow[] = [
    { field: "panel", value: data.kind, strong: true },
    { label: "sample", field: "sample", value: String(m.samples[data.row]) },
    { label: "step", field: "step", value: String(m.step) },
    { label: "pixel (x, y)", field: "pixel", value: `${x}, ${y}` },
  ];
  if (data.reduced) {
    const how =
      g.C === 1 ? "" : mode === "absolute" ? " (max |·| over channels)" : " (sum over channels)";
    rows.push({ label: `map${how}`, field: "value", value: formatValue(data.reduced[p]) });
  }
  const ofBaseline = data.kind === "baseline" || data.kind === "baseline-map";
  rows.push({ label: ofBaseline ? "baseline" : "input", field: "input", value: inputs.join(", ") });
  rows.push({ label: "run", field: "run", value: ctx.run, color: ctx.color });
  return rows;
}

/** Show the tooltip of the pixel of `canvas` under the pointer (hide it outside). */
export function hoverPanel(
  e: MouseEvent,
  canvas: HTMLCanvasElement,
  data: PanelData,
  g: Geometry,
  ctx: HoverContext,
): void {
  const at = pixelAt(canvas.getBoundingClientRect(), e.clientX, e.clientY, g);
  if (!at) return hideTooltip();
  showTooltip(pixelRows(data, at[0], at[1], g, ctx.mode(), ctx), e.clientX, e.clientY);
}

/** Show the tooltip of token `position` of sample `row` of `m`. */
export function hoverToken(
  e: MouseEvent,
  m: SaliencyMaps,
  row: number,
  position: number,
  reduced: Float64Array,
  ctx: HoverContext,
): void {
  const ids = m.tokenIds?.[row] ?? [];
  const texts = m.tokenTexts?.[row] ?? null;
  const rows: TooltipRow[] = [
    { field: "token", value: tokenLabel(texts?.[position], ids[position]), strong: true },
    { label: "token id", field: "id", value: String(ids[position]) },
    { label: "position", field: "position", value: String(position) },
    { label: "sample", field: "sample", value: String(m.samples[row]) },
    { label: "step", field: "step", value: String(m.step) },
    { label: "map", field: "value", value: formatValue(reduced[position]) },
    { label: "run", field: "run", value: ctx.run, color: ctx.color },
  ];
  showTooltip(rows, e.clientX, e.clientY);
}
