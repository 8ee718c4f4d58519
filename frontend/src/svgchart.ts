// What the tab's SVG charts share: the plot box, axis titles, decade ticks, the hover
// focus (a vertical rule and a dot per series) and the hover box of the heatmaps.

import { axisBottom, axisLeft } from "d3-axis";
import type { ScaleLogarithmic } from "d3-scale";
import { select, type Selection } from "d3-selection";
import { hideTooltip } from "./tooltip";

const SVG_NS = "http://www.w3.org/2000/svg";

type Group = Selection<SVGGElement, unknown, null, undefined>;
type Svg = Selection<SVGSVGElement, unknown, null, undefined>;

/** A `.ds-plot` box holding an empty SVG chart described by `ariaLabel`. */
export function plotSvg(ariaLabel: string): { plot: HTMLDivElement; svg: SVGSVGElement } {
  const plot = document.createElement("div");
  plot.className = "ds-plot";
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", ariaLabel);
  plot.appendChild(svg);
  return { plot, svg };
}

/** Size the chart and its plot box to width x height px and empty it for a redraw. */
export function clearPlot(svgElement: SVGSVGElement, width: number, height: number): Svg {
  const plot = svgElement.parentElement as HTMLDivElement;
  plot.style.width = `${width}px`;
  plot.style.height = `${height}px`;
  const svg = select(svgElement).attr("width", width).attr("height", height);
  svg.selectAll("*").remove();
  return svg;
}

/** Axis titles: x centred `below` px under the plot's top, y rotated at `left` px (< 0). */
export function axisTitles(
  g: Group,
  plotW: number,
  plotH: number,
  x: { text: string; below: number },
  y: { text: string; left: number },
): void {
  g.append("text")
    .attr("class", "ds-axis-label")
    .attr("x", plotW / 2)
    .attr("y", x.below)
    .attr("text-anchor", "middle")
    .text(x.text);
  g.append("text")
    .attr("class", "ds-axis-label")
    .attr("transform", `translate(${y.left},${plotH / 2}) rotate(-90)`)
    .attr("text-anchor", "middle")
    .text(y.text);
}

/** The ticks of a log scale that are powers of ten. */
export function decadeTicks(scale: ScaleLogarithmic<number, number>): number[] {
  return scale.ticks().filter((t) => Math.abs(Math.log10(t) - Math.round(Math.log10(t))) < 1e-9);
}

/**
 * A log value axis on the left with its grid across the plot: ticks at the decades (4
 * ticks when the range spans fewer than two), labelled by `format`.
 */
export function logValueAxis(
  g: Group,
  y: ScaleLogarithmic<number, number>,
  plotW: number,
  format: (value: number) => string,
): void {
  const decades = decadeTicks(y);
  const ticks = decades.length >= 2 ? decades : y.ticks(4);
  g.append("g")
    .attr("class", "ds-grid")
    .call(axisLeft(y).tickValues(ticks).tickSize(-plotW).tickFormat(() => ""));
  g.append("g")
    .attr("class", "ds-axis")
    .call(axisLeft(y).tickValues(ticks).tickFormat((v) => format(Number(v))).tickSizeOuter(0));
}

/** A log rank axis (1 = largest) under the plot, labelled at the decades and at 1–5. */
export function logRankAxis(
  g: Group,
  x: ScaleLogarithmic<number, number>,
  plotW: number,
  plotH: number,
): void {
  g.append("g")
    .attr("class", "ds-axis")
    .attr("transform", `translate(0,${plotH})`)
    .call(
      axisBottom(x)
        .ticks(Math.max(2, Math.floor(plotW / 80)))
        .tickFormat((v) => {
          const k = Number(v);
          return Number.isInteger(Math.log10(k)) || k <= 5 ? String(k) : "";
        })
        .tickSizeOuter(0),
    );
}

/**
 * The hover layer of a chart over steps or ranks: a hidden focus group (a vertical rule and
 * a dot of `radius` per series, in its colour) and a transparent hit area over the plot
 * that hides them and the tooltip when the pointer leaves. `onMove` gets the event and the
 * pointer's x in the plot, px.
 */
export function hoverLayer<T extends { color: string }>(
  g: Group,
  plotW: number,
  plotH: number,
  series: readonly T[],
  radius: number,
  onMove: (event: MouseEvent, px: number) => void,
) {
  const focus = g.append("g").attr("visibility", "hidden");
  focus.append("line").attr("y1", 0).attr("y2", plotH).attr("stroke", "#9e9e9e");
  const dots = focus
    .selectAll("circle")
    .data(series)
    .join("circle")
    .attr("r", radius)
    .attr("fill", (s) => s.color)
    .attr("stroke", "#fff");
  const hit = g
    .append("rect")
    .attr("class", "ds-hit")
    .attr("width", plotW)
    .attr("height", plotH)
    .attr("fill", "transparent")
    .on("mousemove", (event: MouseEvent) => {
      const rect = (event.currentTarget as SVGRectElement).getBoundingClientRect();
      onMove(event, event.clientX - rect.left);
    })
    .on("mouseleave", () => {
      focus.attr("visibility", "hidden");
      hideTooltip();
    });
  /** Show the focus with its rule at x px. */
  const showAt = (x: number) => {
    focus.attr("visibility", "visible");
    focus.select("line").attr("x1", x).attr("x2", x);
  };
  return { dots, hit, showAt };
}

/** The heatmaps' outline of the cell under the pointer (hidden until moved there). */
export function appendHoverBox(svg: Svg): void {
  svg
    .append("rect")
    .attr("class", "ds-hover")
    .attr("fill", "none")
    .attr("stroke", "#000")
    .attr("stroke-width", 1.5)
    .attr("visibility", "hidden");
}

/** Show the SVG's `rect.${className}` (the hover box, a zoom rectangle) at `box`. */
export function showRect(
  svg: SVGSVGElement,
  className: string,
  box: { x: number; y: number; width: number; height: number },
): void {
  select(svg)
    .select(`rect.${className}`)
    .attr("x", box.x)
    .attr("y", box.y)
    .attr("width", box.width)
    .attr("height", box.height)
    .attr("visibility", "visible");
}

/** Hide the hover box and the tooltip: the pointer left the cell. */
export function hideHover(svg: SVGSVGElement): void {
  hideTooltip();
  select(svg).select("rect.ds-hover").attr("visibility", "hidden");
}
