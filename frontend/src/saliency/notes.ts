// The notes above the saliency grid: a step's error, non-finite maps, any other error.

import { el } from "../dom";
import { errorText } from "../json";
import type { SaliencyMaps } from "./api";

/** How many of a step's shown maps hold NaN/±Inf, and in how many samples. */
export function nonFiniteSummary(m: SaliencyMaps): string | null {
  const samples = m.nonFinitePerSample.filter((n) => n > 0).length;
  if (m.nonFinite <= 0 && samples === 0) return null;
  const total = m.nonFinitePerSample.reduce((a, b) => a + b, 0);
  return (
    `step ${m.step}: ${total} non-finite map value${total === 1 ? "" : "s"} (NaN/±Inf) ` +
    `in ${samples} of the ${m.samples.length} samples shown ` +
    `(${m.nonFinite} in the whole step); those maps are not drawn.`
  );
}

/** The non-finite summaries of the steps drawn (A, and B when comparing). */
export function nonFiniteNotes(steps: readonly SaliencyMaps[]): HTMLElement[] {
  const notes: HTMLElement[] = [];
  for (const m of steps) {
    const text = nonFiniteSummary(m);
    if (text === null) continue;
    const box = el("div", "ds-warn", text);
    box.dataset.testid = "saliency-non-finite-summary";
    box.dataset.count = String(m.nonFinitePerSample.reduce((a, b) => a + b, 0));
    notes.push(box);
  }
  return notes;
}

/** A step that could not be read: its error, marked with the step (the other steps show). */
export function stepErrorNote(m: SaliencyMaps): HTMLElement {
  const box = el("div", "ds-error", `step ${m.step} cannot be shown: ${m.error ?? ""}`);
  box.dataset.testid = "saliency-step-error";
  box.dataset.step = String(m.step);
  return box;
}

/** Any other error (a request that failed): its message as plain text. */
export function errorNote(error: unknown): HTMLElement {
  const box = el("div", "ds-error", errorText(error));
  box.dataset.testid = "saliency-error";
  return box;
}
