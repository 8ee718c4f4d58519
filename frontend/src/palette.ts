// Colours. Run colours are TensorBoard's own default palette (the one its scalar
// dashboard uses), so a run looks the same here as in the Scalars tab.

export const RUN_COLORS: readonly string[] = [
  "#425066", // slate
  "#12b5cb", // cyan
  "#e52592", // pink
  "#f9ab00", // yellow
  "#9334e6", // purple
  "#7cb342", // light green
  "#e8710a", // orange
];

/** Stable colour for the run at `index` in the (sorted) run list. */
export function runColor(index: number): string {
  return RUN_COLORS[((index % RUN_COLORS.length) + RUN_COLORS.length) % RUN_COLORS.length];
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
