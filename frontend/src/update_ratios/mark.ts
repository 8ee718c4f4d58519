// A heatmap's mark on one cell: a row at a step (where a finding's evidence is), a ring over
// the canvas that stays until another is set. The row is the named parameter's (or the group
// it is in, when closed); without a name, the step's whole column. Its style (.ds-ur-mark)
// is the heatmap's.

import { el } from "../dom";
import { columnEnds, nearestStepIndex } from "../stats";
import type { HeatRow } from "./heatmap";

/** The cell to mark: a row (by its parameter or layer name) at a step. */
export interface Mark {
  step: number;
  name?: string;
}

/** Where the mark goes on the heatmap's body (px), and the logged step it is at. */
export interface MarkBox {
  left: number;
  top: number;
  width: number;
  height: number;
  step: number;
  /** The row it is on; -1 for a whole column. */
  row: number;
}

/** px a mark is wide at least (a step among thousands is a sub-pixel column). */
const MIN_WIDTH = 6;

/**
 * The box of `mark` over `rows` (each `rowH` px) on a step axis `x` over `plotW` px from
 * `left`; null when the heatmap has no steps, or does not show the named row.
 */
export function markBox(
  mark: Mark,
  rows: readonly HeatRow[],
  steps: readonly number[],
  x: (step: number) => number,
  left: number,
  plotW: number,
  rowH: number,
): MarkBox | null {
  if (steps.length === 0 || rows.length === 0) return null;
  let row = -1;
  if (mark.name !== undefined) {
    const name = mark.name;
    row = rows.findIndex((r) => r.kind === "param" && r.names[0] === name);
    if (row < 0) row = rows.findIndex((r) => r.kind === "group" && r.names.includes(name));
    if (row < 0) return null;
  }
  const i = nearestStepIndex(steps, mark.step);
  const x0 = Math.max(0, Math.min(plotW, x(steps[i])));
  // The cell as the heatmap paints it: to the next step, or one typical gap (the last, a gap).
  const x1 = Math.max(x0, Math.min(plotW, x(columnEnds(steps)[i])));
  const width = Math.max(MIN_WIDTH, x1 - x0);
  // A narrow cell's mark is centred on it.
  const start = Math.max(0, Math.min(plotW - width, (x0 + x1) / 2 - width / 2));
  return {
    left: left + start,
    top: row < 0 ? 0 : row * rowH,
    width,
    height: row < 0 ? rows.length * rowH : rowH,
    step: steps[i],
    row,
  };
}

export class CellMark {
  readonly element = el("div", "ds-ur-mark");
  private mark: Mark | null = null;
  /** The rows should scroll to the mark at its next placing (once per `set`). */
  private scrollDue = false;

  constructor() {
    this.element.hidden = true;
    this.element.dataset.testid = "evidence-mark";
  }

  set(mark: Mark | null): void {
    this.mark = mark;
    this.scrollDue = mark !== null;
  }

  get current(): Mark | null {
    return this.mark;
  }

  /**
   * Put the mark on the heatmap drawn now (markBox's arguments); the px its rows should
   * scroll to, once after each `set` (null otherwise).
   */
  place(
    rows: readonly HeatRow[],
    steps: readonly number[],
    x: (step: number) => number,
    left: number,
    plotW: number,
    rowH: number,
  ): number | null {
    const box = this.mark ? markBox(this.mark, rows, steps, x, left, plotW, rowH) : null;
    const e = this.element;
    e.hidden = box === null;
    if (!box) return null;
    e.style.left = `${box.left}px`;
    e.style.top = `${box.top}px`;
    e.style.width = `${box.width}px`;
    e.style.height = `${box.height}px`;
    e.dataset.step = String(box.step);
    e.dataset.name = this.mark?.name ?? "";
    if (!this.scrollDue) return null;
    this.scrollDue = false;
    return box.top;
  }
}
