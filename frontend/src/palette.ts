// Colours. Run colours start with TensorBoard's own default palette (the one its scalar
// dashboard uses), so a run looks the same here as in the Scalars tab, and go on with 43
// more so that 50 runs get 50 colours that stay apart.

import { interpolateSinebow } from "d3-scale-chromatic";

/** TensorBoard's seven run colours. */
export const TENSORBOARD_RUN_COLORS: readonly string[] = [
  "#425066", // slate
  "#12b5cb", // cyan
  "#e52592", // pink
  "#f9ab00", // yellow
  "#9334e6", // purple
  "#7cb342", // light green
  "#e8710a", // orange
];

/**
 * TensorBoard's seven, then 43 picked one at a time as the colour farthest (CIELAB ΔE76)
 * from every colour before it, among sRGB colours of lightness 35–75 and chroma ≥ 30
 * (readable on white, not grey). Any two of the 50 are at least ΔE76 22 apart
 * (tests/unit/test_palette.py checks it).
 */
export const RUN_COLORS: readonly string[] = [
  ...TENSORBOARD_RUN_COLORS,
  "#0087ff", "#f09696", "#785a1e", "#ff1e4b", "#e196f0", "#00d200", "#00693c", "#962d2d",
  "#ff00e1", "#873c78", "#87a5e1", "#00c387", "#d2b45a", "#960096", "#4b00ff", "#ff2d00",
  "#87b487", "#694bb4", "#005aff", "#4b6900", "#005aa5", "#b4b400", "#f05a78", "#b41e00",
  "#d2784b", "#ff78ff", "#b47800", "#b487b4", "#3cd25a", "#f078b4", "#00872d", "#a55a69",
  "#b478ff", "#a51e5a", "#ff694b", "#0078a5", "#009687", "#d200ff", "#78c300", "#3cc3ff",
  "#c39669", "#8787e1", "#877800",
];

/** Stable colour for the run at `index` in the (sorted) run list; past 50, golden-angle hues. */
export function runColor(index: number): string {
  const k = Math.max(0, Math.floor(index));
  if (k < RUN_COLORS.length) return RUN_COLORS[k];
  return interpolateSinebow((k * 0.6180339887498949) % 1);
}

/** TensorBoard's accent. */
export const ACCENT = "#f57c00";

/** Heatmap cells whose value is NaN or ±Inf (absent from viridis, so never confused with data). */
export const NON_FINITE_COLOR = "#e53935";
export const NON_FINITE_RGB: readonly [number, number, number] = [0xe5, 0x39, 0x35];

/** Heatmap cells where the parameter got no update: a light grey hatch. */
export const NO_UPDATE_LIGHT: readonly [number, number, number] = [0xe6, 0xe6, 0xe6];
export const NO_UPDATE_DARK: readonly [number, number, number] = [0xa8, 0xa8, 0xa8];

/** Dash patterns to tell parameters apart when line colour already means "run". */
export const DASHES: readonly string[] = ["", "6,3", "2,2", "10,3,2,3", "1,4", "12,4"];

export function dashFor(index: number): string {
  return DASHES[index % DASHES.length];
}
