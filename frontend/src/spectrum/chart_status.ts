// What the spectrum chart says above its plots for each run's step: the request's error, the
// step's error, "unchanged since", non-finite values, a partial spectrum (top k of a big
// matrix) and a failed operator spectrum; and which runs' spectra it draws.

import { el, runError } from "../dom";
import type { StepSpectrum } from "./api";
import type { ChartSeries } from "./chart";
import { coverageNote } from "./operator";

export interface StatusRun {
  run: string;
  color: string;
}

/** The boxes shown above the charts and the series they draw, for the layer `tag`. */
export function chartStatus(
  runs: readonly StatusRun[],
  spectra: ReadonlyMap<string, StepSpectrum>,
  requestErrors: ReadonlyMap<string, string>,
  tag: string | null,
): { boxes: HTMLElement[]; series: ChartSeries[] } {
  const series: ChartSeries[] = [];
  const boxes: HTMLElement[] = [];
  for (const r of runs) {
    const s = spectra.get(r.run);
    const failed = requestErrors.get(r.run);
    if (failed) {
      boxes.push(errorBox(r, failed)); // the request failed: the route's message
      continue;
    }
    if (!s || s.tag !== tag) continue;
    if (s.error !== null) {
      boxes.push(errorBox(r, `step ${s.step}: ${s.error}`));
    } else if (s.unchangedSince !== null) {
      const note = el(
        "div",
        "ds-muted",
        `${r.run} step ${s.step}: weight unchanged since step ${s.unchangedSince}; its spectrum is shown`,
      );
      note.dataset.testid = "spectrum-unchanged";
      note.dataset.run = r.run;
      note.style.overflowWrap = "anywhere";
      boxes.push(note);
    } else if (s.nonFinite > 0) {
      const warn = el("div", "ds-warn", `${r.run} step ${s.step}: ${s.nonFinite} non-finite singular values`);
      warn.dataset.testid = "spectrum-error";
      warn.dataset.run = r.run;
      boxes.push(warn);
    }
    const shape = s.info.matrixShape;
    const partial = coverageNote(s.coverage, s.perGroup, shape.length === 3 ? Math.min(shape[1], shape[2]) : NaN);
    if (s.error === null && partial !== null) {
      const note = el("div", "ds-muted", `${r.run} step ${s.step}: ${partial}`);
      note.dataset.testid = "spectrum-partial";
      note.dataset.run = r.run;
      boxes.push(note);
    }
    if (s.error === null && s.operator !== null && s.operator.error !== null) {
      const warn = el("div", "ds-warn", `${r.run} step ${s.step}: operator spectrum not measured: ${s.operator.error}`);
      warn.dataset.testid = "spectrum-operator-error";
      warn.dataset.run = r.run;
      boxes.push(warn);
    }
    series.push({ run: r.run, color: r.color, spectrum: s });
  }
  return { boxes, series };
}

function errorBox(r: StatusRun, message: string): HTMLElement {
  const box = runError(r.run, r.color, message);
  box.dataset.run = r.run;
  box.dataset.testid = "spectrum-error";
  return box;
}
