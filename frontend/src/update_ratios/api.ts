// The `update_ratios` route (docs/http_api.md): one tag's ‖ΔW‖/‖W‖ per parameter and step.

import { getJson } from "../json";
import { parseLayerGrid, type LayerGrid, type Quantity } from "./grid";

/** One run's update ratios: a grid of ‖ΔW‖/‖W‖ by step and parameter. */
export type UpdateRatios = LayerGrid;

/** The rule of thumb the tab draws a band around. */
export const TARGET_RATIO = 1e-3;
export const BAND: readonly [number, number] = [3e-4, 3e-3];

/** What update ratios are, as the card shows them. */
export const UPDATE_RATIO: Quantity = {
  label: "‖ΔW‖/‖W‖",
  unit: "",
  scale: "log",
  target: { value: TARGET_RATIO, band: BAND, text: "rule of thumb ≈ 1e-3" },
  missingText: "no update",
};

export async function fetchUpdateRatios(run: string, tag: string): Promise<UpdateRatios> {
  const params = new URLSearchParams({ run, tag, format: "base64" });
  return parseUpdateRatios(await getJson(`./update_ratios?${params.toString()}`));
}

/**
 * Validate a response of `update_ratios` (either format) into typed arrays. The same JSON
 * object (a reload answered 304 Not Modified) gives the same result, so nothing redraws.
 */
export function parseUpdateRatios(raw: unknown): UpdateRatios {
  return parseLayerGrid(raw, "update_ratios", () => UPDATE_RATIO);
}
