// The `layer_values` route: one tag's user-measured value per layer and step (logged with
// `SummaryWriter.add_layer_values`), as the update_ratios route answers plus what the values
// are: `quantity` (e.g. "grad norm"), `unit` and `scale` ("log" or "linear").

import { getJson } from "../json";
import { parseLayerGrid, type LayerGrid, type Quantity, type ValueScale } from "../update_ratios/grid";

/** What layer values are before their data says (a log scale, as add_layer_values' default). */
export const LAYER_VALUE: Quantity = {
  label: "value",
  unit: "",
  scale: "log",
  target: null,
  missingText: "no value",
};

export async function fetchLayerValues(run: string, tag: string): Promise<LayerGrid> {
  const params = new URLSearchParams({ run, tag, format: "base64" });
  return parseLayerValues(await getJson(`./layer_values?${params.toString()}`));
}

/** Validate a response of `layer_values` (either format) into a grid with its quantity. */
export function parseLayerValues(raw: unknown): LayerGrid {
  return parseLayerGrid(raw, "layer_values", quantityOf);
}

/** The quantity a response names: its label (the tag's when empty), unit and scale. */
export function quantityOf(raw: Record<string, unknown>): Quantity {
  const label = typeof raw.quantity === "string" && raw.quantity.trim() !== "" ? raw.quantity : "";
  const scale: ValueScale = raw.scale === "linear" ? "linear" : "log";
  return {
    ...LAYER_VALUE,
    label: label || (typeof raw.tag === "string" && raw.tag !== "" ? raw.tag : LAYER_VALUE.label),
    unit: typeof raw.unit === "string" ? raw.unit : "",
    scale,
  };
}
