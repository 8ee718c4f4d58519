// The saliency grid: one row per probe sample. Images: the source, the map and the overlay
// (for baseline-subtracted methods also the baseline and its map; comparing two steps, the
// map and overlay of each). Tokens: the sample's tokens coloured by their map values. Every
// map of a row shares one clip value, so that the row compares at a glance. A map holding
// NaN/±Inf, a sample a step lacks, or a step that cannot be read is drawn as a message.

import { el } from "../dom";
import { hideTooltip } from "../tooltip";
import type { SaliencyMaps } from "./api";
import { hoverPanel, hoverToken, type HoverContext, type PanelData } from "./hover";
import {
  clipValue,
  formatValue,
  imageRgb,
  mapRgb,
  overlayRgb,
  paint,
  reduceMap,
  valueRange,
  type Geometry,
  type SignMode,
} from "./render";
import { tokenRow } from "./tokens";

/** Target size of a panel, CSS px. */
export const PANEL_PX = 112;

/** How panels are drawn: the image geometry, the sign mode, device and CSS px per pixel. */
export interface Frame {
  g: Geometry;
  mode: SignMode;
  scale: number;
  cssScale: number;
}

/** Device px per image pixel (an integer) and CSS px per pixel, for an H x W image. */
export function panelScale(g: Geometry): { scale: number; cssScale: number } {
  const side = Math.max(g.H, g.W);
  const scale = Math.max(1, Math.round(PANEL_PX / side));
  return { scale, cssScale: Math.min(scale, (1.5 * PANEL_PX) / side) };
}

/** The grid's column heads for images, by what is drawn. */
export function imageColumns(A: SaliencyMaps, B: SaliencyMaps | null, hasBaseline: boolean): string[] {
  const columns: string[] = ["sample", "source"];
  if (hasBaseline) columns.push("baseline", "baseline map");
  if (B) {
    columns.push(`map · step ${A.step}`, `overlay · step ${A.step}`);
    columns.push(`map · step ${B.step}`, `overlay · step ${B.step}`);
  } else {
    columns.push(hasBaseline ? "map (delta)" : "map", "overlay");
  }
  return columns;
}

const finite = (m: SaliencyMaps, r: number) => r >= 0 && (m.nonFinitePerSample[r] ?? 0) === 0;

export class SaliencyGrid {
  readonly element = el("div", "ds-sal-grid");

  constructor(private readonly hover: HoverContext) {
    this.element.dataset.testid = "saliency-grid";
  }

  /** Nothing drawn (a new series, or while its first maps load). */
  clear(): void {
    this.element.replaceChildren();
    this.element.dataset.drawn = "false";
  }

  /** Maps are on their way: the grid's data attributes no longer describe a finished drawing. */
  loading(): void {
    this.element.dataset.drawn = "false";
  }

  /** A reload brought the very maps drawn: keep the drawing, and say it is finished. */
  keep(): void {
    this.element.dataset.drawn = "true";
  }

  get hasDrawing(): boolean {
    return this.element.childElementCount > 0;
  }

  /** Step A cannot be read: nothing drawn, and the grid says which step that is (its error is above). */
  drawNothing(A: SaliencyMaps, B: SaliencyMaps | null, mode: SignMode, p: number): void {
    this.show(1, [], A, B, mode, p);
  }

  /** Images of geometry `g`: step A's maps, and step B's beside them when comparing. */
  drawImages(A: SaliencyMaps, B: SaliencyMaps | null, g: Geometry, mode: SignMode, p: number): void {
    const f: Frame = { g, mode, ...panelScale(g) };
    const hasBaseline = !B && A.baseline !== null && A.baselineMaps !== null;
    const columns = imageColumns(A, B, hasBaseline);
    const cells = this.heads(columns);
    const inputsA = A.inputs;
    if (!inputsA) return;
    for (let row = 0; row < A.samples.length; row++) {
      cells.push(this.rowHead(A, row));
      const range = valueRange(inputsA.values, row, g);
      const source = imageRgb(inputsA.values, row, g, range);
      const at = { maps: A, row, input: inputsA, inputRow: row };
      cells.push(this.panel({ ...at, kind: "source", reduced: null }, source, f, NaN));

      const rowB = B && B.error === null ? B.samples.indexOf(A.samples[row]) : -1;
      const reducedA = finite(A, row) ? reduceMap(A.maps.values, row, g, mode) : null;
      const reducedB =
        B && rowB >= 0 && finite(B, rowB) ? reduceMap(B.maps.values, rowB, g, mode) : null;
      const baseMaps = hasBaseline ? A.baselineMaps : null;
      const reducedBase =
        baseMaps && reducedA
          ? reduceMap(baseMaps.values, baseMaps.shape[0] > 1 ? row : 0, g, mode)
          : null;
      const drawn = [reducedA, reducedBase, reducedB].filter((r): r is Float64Array => r !== null);
      const clip = clipValue(drawn, mode, p);

      if (hasBaseline && A.baseline) {
        const baseline = A.baseline;
        const bRow = baseline.shape[0] > 1 ? row : 0;
        const atBase = { maps: A, row, input: baseline, inputRow: bRow };
        const image = imageRgb(baseline.values, bRow, g, range); // on the source's scale
        cells.push(this.panel({ ...atBase, kind: "baseline", reduced: null }, image, f, NaN));
        cells.push(
          reducedBase
            ? this.panel(
                { ...atBase, kind: "baseline-map", reduced: reducedBase },
                mapRgb(reducedBase, clip, mode).rgb,
                f,
                clip,
              )
            : this.badPanel(A, row, f),
        );
      }
      cells.push(...this.mapPanels(A, row, reducedA, source, clip, f));
      if (B && (B.error !== null || rowB < 0)) {
        cells.push(this.badPanel(B, -1, f), this.badPanel(B, -1, f));
      } else if (B && B.inputs) {
        const inputsB = B.inputs.values;
        const sourceB = imageRgb(inputsB, rowB, g, valueRange(inputsB, rowB, g));
        cells.push(...this.mapPanels(B, rowB, reducedB, sourceB, clip, f));
      }
    }
    this.show(columns.length, cells, A, B, mode, p);
  }

  /** A token series: per sample a row of tokens coloured by their map values. */
  drawTokens(A: SaliencyMaps, B: SaliencyMaps | null, mode: SignMode, p: number): void {
    const length = A.inputShape[0] ?? 0;
    const g: Geometry = { C: 1, H: 1, W: length, color: "grey" };
    const columns = ["sample", B ? `tokens · step ${A.step}` : "tokens"];
    if (B) columns.push(`tokens · step ${B.step}`);
    const cells = this.heads(columns);
    for (let row = 0; row < A.samples.length; row++) {
      cells.push(this.rowHead(A, row));
      const rowB = B && B.error === null ? B.samples.indexOf(A.samples[row]) : -1;
      const reducedA = reduceMap(A.maps.values, row, g, mode);
      const reducedB = B && rowB >= 0 ? reduceMap(B.maps.values, rowB, g, mode) : null;
      const drawn = [finite(A, row) ? reducedA : null, B && finite(B, rowB) ? reducedB : null];
      const clip = clipValue(
        drawn.filter((r): r is Float64Array => r !== null),
        mode,
        p,
      );
      cells.push(this.tokens(A, row, reducedA, clip, mode));
      if (B) {
        cells.push(reducedB ? this.tokens(B, rowB, reducedB, clip, mode) : this.missingTokens(B));
      }
    }
    this.show(columns.length, cells, A, B, mode, p);
  }

  private heads(columns: readonly string[]): HTMLElement[] {
    return columns.map((c) => el("div", "ds-sal-colhead", c));
  }

  /** Put the drawn cells in the grid, with what they show in its data attributes. */
  private show(
    columns: number,
    cells: HTMLElement[],
    A: SaliencyMaps,
    B: SaliencyMaps | null,
    mode: SignMode,
    p: number,
  ): void {
    this.element.style.gridTemplateColumns = `repeat(${columns}, max-content)`;
    this.element.replaceChildren(...cells);
    const d = this.element.dataset;
    d.step = String(A.step);
    d.compareStep = B ? String(B.step) : "";
    d.mode = mode;
    d.clip = String(p);
    d.drawn = "true";
  }

  private tokens(
    m: SaliencyMaps,
    row: number,
    reduced: Float64Array,
    clip: number,
    mode: SignMode,
  ): HTMLElement {
    return tokenRow({
      ids: m.tokenIds?.[row] ?? [],
      texts: m.tokenTexts?.[row] ?? null,
      reduced,
      clip,
      mode,
      sample: m.samples[row],
      step: m.step,
      onHover: (e, position) => hoverToken(e, m, row, position, reduced, this.hover),
      onLeave: () => hideTooltip(),
    });
  }

  private missingTokens(m: SaliencyMaps): HTMLElement {
    const text =
      m.error !== null
        ? `step ${m.step} cannot be shown (its error is above)`
        : `sample not logged at step ${m.step}`;
    const box = el("div", "ds-sal-bad", text);
    box.dataset.testid = m.error !== null ? "saliency-step-error" : "saliency-non-finite";
    box.dataset.count = "0";
    return box;
  }

  private mapPanels(
    m: SaliencyMaps,
    row: number,
    reduced: Float64Array | null,
    source: Uint8ClampedArray,
    clip: number,
    f: Frame,
  ): HTMLElement[] {
    if (!reduced || !m.inputs) return [this.badPanel(m, row, f), this.badPanel(m, row, f)];
    const heat = mapRgb(reduced, clip, f.mode);
    const at = { maps: m, row, reduced, input: m.inputs, inputRow: row };
    return [
      this.panel({ ...at, kind: "map" }, heat.rgb, f, clip),
      this.panel({ ...at, kind: "overlay" }, overlayRgb(source, heat), f, clip),
    ];
  }

  private rowHead(m: SaliencyMaps, row: number): HTMLElement {
    const head = el("div", "ds-sal-rowhead");
    head.dataset.testid = "saliency-rowhead";
    head.dataset.sample = String(m.samples[row]);
    head.append(el("div", "ds-sal-idx", `#${m.samples[row]}`));
    const label = m.labels?.[row];
    const prediction = m.predictions?.[row];
    if (label !== undefined) head.append(el("div", "", `label ${label}`));
    if (prediction !== undefined && label === undefined && m.inputKind === "tokens") {
      // A language model's target: its predicted next token (its text when the row has it).
      const at = m.tokenIds?.[row]?.indexOf(prediction) ?? -1;
      const text = at >= 0 ? m.tokenTexts?.[row]?.[at] : undefined;
      const shown = text === undefined ? `#${prediction}` : `#${prediction} “${text.trim()}”`;
      const line = el("div", "ds-muted", `predicted ${shown}`);
      line.dataset.testid = "saliency-prediction";
      line.dataset.wrong = "false";
      line.title = "the predicted class or next token (no label was logged)";
      head.append(line);
    } else if (prediction !== undefined) {
      const wrong = label !== undefined && prediction !== label;
      const text = `${wrong ? "✗" : "✓"} predicted ${prediction}`;
      const line = el("div", wrong ? "ds-sal-wrong" : "ds-sal-right", text);
      line.dataset.testid = "saliency-prediction";
      line.dataset.wrong = String(wrong);
      if (wrong) line.title = "the prediction differs from the label";
      head.append(line);
    }
    const error = m.completenessError?.[row];
    if (error !== undefined) {
      const line = el("div", "ds-muted", `completeness error ${formatValue(error)}`);
      line.title =
        "Σ attributions − (f(x) − f(baseline)): near 0 when integrated gradients took enough steps";
      head.append(line);
    }
    return head;
  }

  private panel(data: PanelData, rgb: Uint8ClampedArray, f: Frame, clip: number): HTMLElement {
    const canvas = el("canvas", "ds-sal-panel");
    paint(canvas, rgb, f.g, f.scale);
    canvas.style.width = `${f.g.W * f.cssScale}px`;
    canvas.style.height = `${f.g.H * f.cssScale}px`;
    const d = canvas.dataset;
    d.testid = "saliency-panel";
    d.panel = data.kind;
    d.sample = String(data.maps.samples[data.row]);
    d.step = String(data.maps.step);
    if (Number.isFinite(clip)) d.clipValue = String(clip);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${data.kind} of sample ${d.sample} at step ${d.step}`);
    canvas.addEventListener("mousemove", (e) => hoverPanel(e, canvas, data, f.g, this.hover));
    canvas.addEventListener("mouseleave", () => hideTooltip());
    return canvas;
  }

  /**
   * In place of a map that holds NaN/±Inf, of a sample the step lacks (`row` < 0), or of the
   * maps of a step that cannot be read: a message.
   */
  private badPanel(m: SaliencyMaps, row: number, f: Frame): HTMLElement {
    const count = row >= 0 ? (m.nonFinitePerSample[row] ?? 0) : 0;
    let text: string;
    if (m.error !== null) text = `step ${m.step} cannot be shown (its error is above)`;
    else if (row < 0) text = `sample not logged at step ${m.step}`;
    else text = `not drawn: ${count} non-finite value${count === 1 ? "" : "s"} (NaN/±Inf) in this map`;
    const box = el("div", "ds-sal-bad", text);
    box.dataset.testid = m.error !== null ? "saliency-step-error" : "saliency-non-finite";
    box.dataset.count = String(count);
    box.style.width = `${f.g.W * f.cssScale}px`;
    box.style.height = `${f.g.H * f.cssScale}px`;
    return box;
  }
}
