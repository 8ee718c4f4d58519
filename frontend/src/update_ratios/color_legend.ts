// A grid card's legend: the colour bar of its quantity's scale (with the target's mark, e.g.
// update ratios' 1e-3), and the cells that carry no value.

import type { ColorScale } from "../colormap";
import { el } from "../dom";
import { boxItem, colorBarItem } from "../legend";
import { NON_FINITE_COLOR } from "../palette";
import { ZERO_WEIGHT_TEXT } from "./format";
import { quantityTitle, type Quantity } from "./grid";
import { ZERO_WEIGHT_COLOR } from "./heatmap";

/** The legend of a card whose heatmaps use `color` for `quantity`; `zeroWeight`: show "‖W‖ = 0". */
export function colorLegend(color: ColorScale, quantity: Quantity, zeroWeight: boolean): HTMLElement {
  const legend = el("div", "ds-legend");
  legend.dataset.testid = "legend";
  const log = quantity.scale === "log";
  const title = log ? `log10(${quantity.label})` : quantityTitle(quantity);
  const target = quantity.target;
  const scaleItem = colorBarItem(color, title, 180, (svg, x) => {
    if (!target) return;
    const at = log ? Math.log10(target.value) : target.value;
    if (color.lo <= at && at <= color.hi) {
      svg
        .append("path")
        .attr("d", `M${x(at)},0l-4,-6h8z`)
        .attr("fill", "#212121")
        .append("title")
        .text(`${target.value}, the ${target.text}`);
    }
  });
  const missing = el("span", "ds-legend-item");
  missing.append(el("span", "ds-box ds-hatch"), quantity.missingText);
  legend.append(scaleItem, missing);
  if (zeroWeight) legend.append(boxItem(ZERO_WEIGHT_COLOR, ZERO_WEIGHT_TEXT));
  legend.append(boxItem(NON_FINITE_COLOR, "non-finite (NaN, ±Inf)"));
  return legend;
}
