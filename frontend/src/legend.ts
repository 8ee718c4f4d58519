// Legend pieces the charts and cards share: a line sample, a labelled item, a colour box,
// and a colour bar with its log10 axis.

import { axisBottom } from "d3-axis";
import { scaleLinear, type ScaleLinear } from "d3-scale";
import { select, type Selection } from "d3-selection";
import type { ColorScale } from "./colormap";
import { el } from "./dom";
import { formatLog10Tick } from "./format";

const SVG_NS = "http://www.w3.org/2000/svg";

/** A short line in a chart's colour and dash, to stand for it in a legend or chip. */
export function lineSample(color: string, dash: string): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "ds-line-sample");
  svg.setAttribute("width", "24");
  svg.setAttribute("height", "8");
  const l = document.createElementNS(SVG_NS, "line");
  l.setAttribute("x1", "0");
  l.setAttribute("x2", "24");
  l.setAttribute("y1", "4");
  l.setAttribute("y2", "4");
  l.setAttribute("stroke", color);
  l.setAttribute("stroke-width", "2");
  if (dash) l.setAttribute("stroke-dasharray", dash);
  svg.appendChild(l);
  return svg;
}

/** A legend entry: a sample (line, box, mark) and its text. */
export function legendItem(sample: Element, text: string): HTMLSpanElement {
  const item = el("span", "ds-legend-item");
  item.append(sample, el("span", "", text));
  return item;
}

/** A legend entry for a flat colour (e.g. non-finite cells). */
export function boxItem(background: string, text: string): HTMLSpanElement {
  const item = el("span", "ds-legend-item");
  const box = el("span", "ds-box");
  box.style.background = background;
  item.append(box, text);
  return item;
}

/**
 * A legend entry for a heatmap's colour scale: its title, then the gradient over
 * [color.lo, color.hi] with a log10 axis under it, `width` px wide. `mark` may draw on the
 * axis (x maps a log10 value to px).
 */
export function colorBarItem(
  color: ColorScale,
  title: string,
  width: number,
  mark?: (
    svg: Selection<SVGSVGElement, unknown, null, undefined>,
    x: ScaleLinear<number, number>,
  ) => void,
): HTMLSpanElement {
  const item = el("span", "ds-legend-item");
  const bar = el("div", "ds-colorbar");
  const fill = el("div", "ds-colorbar-bar");
  fill.style.width = `${width}px`;
  fill.style.background = color.gradient();
  const svg = select(bar).append("svg").attr("width", width).attr("height", 16);
  const x = scaleLinear().domain([color.lo, color.hi]).range([0, width]);
  svg
    .append("g")
    .attr("class", "ds-axis")
    .call(
      axisBottom(x)
        .ticks(5)
        .tickFormat((v) => formatLog10Tick(Number(v)))
        .tickSize(3)
        .tickSizeOuter(0),
    )
    .call((g) => g.select(".domain").remove());
  bar.prepend(fill);
  mark?.(svg, x);
  item.append(el("span", "ds-legend-title", title), bar);
  return item;
}
