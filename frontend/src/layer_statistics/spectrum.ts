// The covariance spectrum of a chosen layer: its channel covariance's eigenvalues by rank
// (log–log) at the selected step with earlier steps faint, and over training its effective
// dimension (participation ratio) and effective rank (channels), and its delve saturation
// (the fraction of eigendirections that explain the variance threshold). Runs overlaid.

import { el } from "../dom";
import { legendItem, lineSample } from "../legend";
import { nearestStepIndex } from "../stats";
import type { LayerSpectrum, SpectrumStep } from "./api";
import { fadedStepIndices, FADED_STEPS } from "./depth";
import { XYChart, formatNumber, type XYSeries } from "./xychart";

export interface SpectrumRun {
  run: string;
  color: string;
  spectrum: LayerSpectrum;
}

/** The index of the spectrum step a run shows for the selected step (nearest; -1: none). */
export function spectrumIndexFor(spectrum: LayerSpectrum, step: number | null): number {
  const steps = spectrum.steps.map((s) => s.step);
  if (steps.length === 0) return -1;
  return step === null ? steps.length - 1 : nearestStepIndex(steps, step);
}

function ranks(s: SpectrumStep): Float64Array {
  return Float64Array.from(s.eigenvalues, (_, k) => k + 1);
}

export class SpectrumPanel {
  readonly element = el("div", "ds-chart-section");
  private readonly picker = el("select", "ds-select");
  private readonly facts = el("div", "ds-muted");
  private readonly placeholder = el("div", "ds-placeholder", "Loading…");
  private readonly charts = el("div", "ds-ls-spectrum-charts");
  private readonly eigen = new XYChart("Covariance eigenvalues by rank, log–log", "ls-eigenvalues");
  private readonly dims = new XYChart("Effective dimension and effective rank over steps", "ls-dimension");
  private readonly saturation = new XYChart("Saturation over steps", "ls-saturation");
  private readonly legend = el("div", "ds-chart-legend");

  /** `onLayer`: the user chose another layer. */
  constructor(onLayer: (layer: string) => void) {
    const head = el("div", "ds-chart-head");
    this.picker.dataset.testid = "ls-spectrum-layer";
    this.picker.setAttribute("aria-label", "Layer whose covariance spectrum to show");
    this.picker.addEventListener("change", () => onLayer(this.picker.value));
    head.append(el("span", "ds-chart-title", "Covariance spectrum of"), this.picker);
    this.charts.style.display = "flex";
    this.charts.style.flexWrap = "wrap";
    this.charts.style.gap = "8px 16px";
    this.charts.append(this.eigen.element, this.dims.element, this.saturation.element);
    this.element.append(head, this.facts, this.placeholder, this.charts, this.legend);
    this.element.dataset.testid = "ls-spectrum";
  }

  /** The layers that have a covariance (in model order) and the one shown. */
  setLayers(layers: readonly string[], chosen: string | null): void {
    const signature = JSON.stringify([layers, chosen]);
    if (this.picker.dataset.signature === signature) return;
    this.picker.dataset.signature = signature;
    this.picker.replaceChildren(
      ...layers.map((name) => {
        const o = el("option", "", name);
        o.value = name;
        o.selected = name === chosen;
        return o;
      }),
    );
  }

  message(text: string): void {
    this.placeholder.hidden = false;
    this.placeholder.textContent = text;
    this.charts.hidden = true;
    this.legend.hidden = true;
    this.facts.textContent = "";
  }

  draw(runs: readonly SpectrumRun[], step: number | null, width: number): void {
    const usable = runs.filter((r) => r.spectrum.steps.some((s) => s.error === null && s.eigenvalues.length > 0));
    if (usable.length === 0) {
      this.message(runs.length === 0 ? "Loading…" : "No covariance spectrum of this layer in the selected runs.");
      return;
    }
    this.placeholder.hidden = true;
    this.charts.hidden = false;
    this.legend.hidden = false;
    const wide = width >= 900;
    const third = wide ? Math.floor((width - 32) / 3) : width;
    const eigenSeries: XYSeries[] = [];
    const dimSeries: XYSeries[] = [];
    const satSeries: XYSeries[] = [];
    const facts: string[] = [];
    const shown: Record<string, number> = {};
    for (const r of usable) {
      const steps = r.spectrum.steps;
      const i = spectrumIndexFor(r.spectrum, step);
      const at = steps[i];
      shown[r.run] = at.step;
      for (const [n, f] of fadedStepIndices(i, FADED_STEPS).entries()) {
        const s = steps[f];
        if (s.error !== null) continue;
        eigenSeries.push({
          key: `${r.run}@${s.step}`,
          label: `${r.run} · step ${s.step}`,
          color: r.color,
          x: ranks(s),
          y: s.eigenvalues,
          opacity: 0.12 + (0.3 * (n + 1)) / FADED_STEPS,
          width: 1.25,
          data: { run: r.run, step: String(s.step) },
        });
      }
      if (at.error === null) {
        eigenSeries.push({
          key: `${r.run}@${at.step}`,
          label: r.run,
          color: r.color,
          x: ranks(at),
          y: at.eigenvalues,
          width: 2,
          data: { run: r.run, step: String(at.step), selected: "true" },
        });
      }
      const x = Float64Array.from(steps, (s) => s.step);
      dimSeries.push({
        key: `${r.run}:effective_dimension`,
        label: `${r.run} effective dimension`,
        color: r.color,
        x,
        y: Float64Array.from(steps, (s) => s.effectiveDimension),
        data: { run: r.run, metric: "effective_dimension" },
      });
      dimSeries.push({
        key: `${r.run}:effective_rank`,
        label: `${r.run} effective rank`,
        color: r.color,
        x,
        y: Float64Array.from(steps, (s) => s.effectiveRank),
        dash: "5,3",
        data: { run: r.run, metric: "effective_rank" },
      });
      satSeries.push({
        key: `${r.run}:saturation`,
        label: `${r.run} saturation`,
        color: r.color,
        x,
        y: Float64Array.from(steps, (s) => s.saturation),
        data: { run: r.run, metric: "saturation" },
      });
      const threshold = Number.isFinite(r.spectrum.varianceThreshold)
        ? `${formatNumber(r.spectrum.varianceThreshold * 100)}%`
        : "the threshold";
      facts.push(
        `${usable.length > 1 ? `${r.run}: ` : ""}step ${at.step}: ${at.eigenvalues.length} eigenvalues, ` +
          `effective dimension ${formatNumber(at.effectiveDimension)}, effective rank ${formatNumber(at.effectiveRank)} ` +
          `(channels), saturation ${formatNumber(at.saturation)} (fraction of eigendirections for ${threshold} of the variance), ` +
          `${formatNumber(at.samples)} samples`,
      );
    }
    this.facts.replaceChildren(...facts.map((f) => el("div", "", f)));
    this.facts.dataset.testid = "ls-spectrum-facts";
    this.eigen.draw({
      series: eigenSeries,
      width: third,
      x: { title: "rank i (1 = largest)", log: true, tickFormat: (v) => (Number.isInteger(Math.log10(v)) || v <= 5 ? String(v) : "") },
      y: { title: "eigenvalue λ_i (output units²)", log: true },
      describe: (s, k) => [
        { label: "rank", field: "rank", value: String(k + 1), strong: true },
        { label: s.label, color: s.color, field: "value", value: formatNumber(Number(s.y[k])) },
        { label: "step", field: "step", value: s.data?.step ?? "" },
      ],
    });
    this.eigen.element.dataset.steps = JSON.stringify(shown);
    const describeOverSteps = (unit: string) => (s: XYSeries, k: number) => [
      { label: "step", field: "step", value: String(s.x[k]), strong: true },
      { label: s.label, color: s.color, field: "value", value: `${formatNumber(Number(s.y[k]))} ${unit}`.trim() },
    ];
    this.dims.draw({
      series: dimSeries,
      width: third,
      x: { title: "step", log: false, integer: true },
      y: { title: "effective dimension, rank (channels)", log: false },
      rule: step,
      describe: describeOverSteps("channels"),
    });
    this.saturation.draw({
      series: satSeries,
      width: third,
      x: { title: "step", log: false, integer: true },
      y: { title: "saturation (fraction of eigendirections)", log: false, domain: [0, 1] },
      rule: step,
      describe: describeOverSteps(""),
    });
    this.legend.replaceChildren(
      ...usable.map((r) => legendItem(lineSample(r.color, ""), r.run)),
      legendItem(lineSample("#616161", ""), "effective dimension (Σλ)²/Σλ²"),
      legendItem(lineSample("#616161", "5,3"), "effective rank exp(entropy of λ/Σλ)"),
    );
    const faint = lineSample("#9e9e9e", "");
    faint.style.opacity = "0.45";
    this.legend.appendChild(legendItem(faint, "eigenvalues at earlier steps (fainter the older)"));
  }
}
