// The saliency legend: what the map's values are (by method), the colour bar of the sign
// mode with its clip ends, and how channels (or a token's embedding) became one value.

import { cssGradient } from "../colormap";
import { el } from "../dom";
import { legendColor, type Geometry, type SignMode } from "./render";

/** What a map's values are, by method (deepscope's names; others: "as logged"). */
export const METHOD_UNITS: Record<string, string> = {
  gradient: "∂score/∂input (score per input unit)",
  gradient_x_input: "input × ∂score/∂input (score units)",
  guided_backprop: "guided ∂score/∂input (score per input unit)",
  baseline_delta: "∂score/∂input at the input minus at the baseline (score per input unit)",
  baseline_delta_x_input:
    "input × (∂score/∂input at the input minus at the baseline) (score units)",
  smoothgrad: "∂score/∂input averaged over noisy copies (score per input unit)",
  integrated_gradients: "attribution (score units; they sum to f(x) − f(baseline))",
  occlusion: "score drop when the window is occluded (score units)",
};

/** The colour bar's end labels for a sign mode clipped at percentile `p` (100: the max). */
export function legendEnds(mode: SignMode, p: number): [string, string] {
  const clip = p === 100 ? "max" : `p${p}`;
  const ends: Record<SignMode, [string, string]> = {
    absolute: ["0", `${clip} of |map|`],
    positive: ["0", `${clip} of positive part`],
    negative: ["0", `${clip} of −(negative part)`],
    signed: [`−${clip} of |map|`, `+${clip}`],
  };
  return ends[mode];
}

/**
 * The legend's children for `method`'s maps drawn in `mode`, clipped at percentile `p`.
 * `tokenReduction` (a token series): how a token's embedding attribution became one value.
 */
export function legendItems(
  method: string,
  mode: SignMode,
  p: number,
  g: Geometry,
  tokenReduction?: string,
): HTMLElement[] {
  const bar = el("div", "ds-sal-bar");
  bar.style.background = cssGradient((t) => legendColor(mode, t));
  const [low, high] = legendEnds(mode, p);
  const reduce =
    g.C === 1
      ? ""
      : mode === "absolute"
        ? ` · ${g.C} channels: max |·|`
        : ` · ${g.C} channels: summed`;
  const units = METHOD_UNITS[method] ?? "as logged";
  const tokens = tokenReduction !== undefined;
  const how = tokens
    ? `one scale per sample row · per token: ${tokenReduction || "as logged"}`
    : `one scale per sample row${reduce} · source scaled min–max`;
  const title = tokens
    ? `${method || "map"} over the input embeddings: ${units.split("input").join("embedding")}`
    : `${method || "map"}: ${units}`;
  return [
    el("span", "ds-legend-title", title),
    el("span", "", low),
    bar,
    el("span", "", high),
    el("span", "ds-muted", how),
  ];
}
