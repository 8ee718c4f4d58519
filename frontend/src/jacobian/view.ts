// Jacobian singular values: one card per (run, tag).
//   - over training, per map (a layer's input → output, and the whole network's), σ_max and
//     the band down to the smallest stored singular value, means over the probe samples,
//     against the isometry line σ = 1;
//   - a step slider and a map picker (the whole network's by default): that map's singular
//     values by rank at the step, per probe sample and their mean;
//   - the table of every map at the step: dims, σ_max (mean ± spread over samples), the RMS
//     singular value √(‖J‖_F²/min(m, n)), log|det J| where square, whether the spectrum is
//     whole or the top k, errors.

import { cardHead, el, nameCard, runError } from "../dom";
import { errorText } from "../json";
import { StepSlider } from "../slider";
import { addStyles } from "../style";
import { CardListView, type Card } from "../views/card_list";
import type { ViewContext, ViewEntry } from "../views/kind_view";
import {
  fetchJacobian,
  fetchStepSpectra,
  mapLabel,
  NETWORK_LABEL,
  type JacobianSeries,
  type StepSpectra,
} from "./api";
import { formatSigma, mapColor, StepSpectrumChart, TrainingChart } from "./chart";

addStyles(`
.ds-jac-toolbar { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; margin: 8px 0 4px; }
.ds-jac-table { border-collapse: collapse; font-size: 12px; margin-top: 8px; }
.ds-jac-table th { text-align: left; font-weight: 500; color: #616161; padding: 3px 8px;
  border-bottom: 1px solid #e0e0e0; }
.ds-jac-table td { padding: 3px 8px; border-bottom: 1px solid #f0f0f0; font-variant-numeric: tabular-nums; }
.ds-jac-table tr.ds-jac-picked td { background: #fff3e0; }
.ds-jac-table tbody tr { cursor: pointer; }
.ds-jac-error { color: #c62828; }
.ds-jac-warning { color: #e65100; font-size: 12px; margin: 4px 0; }
`);

class JacobianCard implements Card {
  readonly element = el("section", "ds-card");
  private readonly sub = el("div", "ds-card-sub");
  private readonly status = el("div", "ds-placeholder", "Loading…");
  private readonly warnings = el("div");
  private readonly training = new TrainingChart();
  private readonly slider = new StepSlider((step) => this.loadStep(step));
  private readonly picker = el("select");
  private readonly stepStatus = el("div");
  private readonly spectrum = new StepSpectrumChart();
  private readonly table = el("table", "ds-jac-table");
  private series: JacobianSeries | null = null;
  private stepData: StepSpectra | null = null;
  private picked: string | null = null;
  private token = 0;
  private entry: ViewEntry | null = null;

  constructor(
    readonly run: string,
    readonly tag: string,
  ) {
    nameCard(this.element, "jacobian-card", run, tag);
    const head = cardHead(`${tag} — ${run}`, this.sub);
    const trainingSection = el("div", "ds-chart-section");
    trainingSection.append(
      el("span", "ds-chart-title", "σ_max and the spectrum's spread over training (means over probe samples)"),
      this.training.element,
    );
    this.picker.setAttribute("aria-label", "Map");
    this.picker.dataset.testid = "jacobian-map";
    this.picker.addEventListener("change", () => {
      this.picked = this.picker.value;
      this.drawStep();
    });
    const toolbar = el("div", "ds-jac-toolbar");
    const pick = el("label", "", "map ");
    pick.append(this.picker);
    toolbar.append(this.slider.element, pick);
    const stepSection = el("div", "ds-chart-section");
    stepSection.append(
      el("span", "ds-chart-title", "Singular values at the step"),
      toolbar,
      this.stepStatus,
      this.spectrum.element,
      this.table,
    );
    this.element.append(head, this.status, this.warnings, trainingSection, stepSection);
    this.training.element.hidden = true;
    this.spectrum.element.hidden = true;
  }

  update(entries: readonly ViewEntry[]): void {
    const first = this.entry === null;
    this.entry = entries[0] ?? null;
    if (first) void this.load();
  }

  refresh(): void {
    void this.load();
  }

  resize(): void {
    this.drawAll();
  }

  dispose(): void {
    this.token++;
  }

  private width(): number {
    return Math.max(320, Math.min(900, (this.element.clientWidth || 700) - 32));
  }

  private async load(): Promise<void> {
    const token = ++this.token;
    try {
      const series = await fetchJacobian(this.run, this.tag);
      if (token !== this.token) return;
      this.series = series;
      this.status.replaceChildren();
      this.status.hidden = true;
      this.sub.textContent =
        `${series.maps.length} maps · ${series.steps.length} steps` +
        (series.output ? ` · the network's map ends at its ${series.output}` : "");
      this.warnings.replaceChildren(
        ...series.warnings.map((w) => el("div", "ds-jac-warning", w)),
        ...series.errors.slice(-5).map(([step, map, message]) =>
          el("div", "ds-jac-warning", `step ${step}, ${mapLabel(map)}: ${message}`),
        ),
      );
      this.fillPicker(series);
      this.drawAll();
      this.slider.setSteps(series.steps);
      const step = this.slider.value;
      if (step !== null && (this.stepData === null || this.stepData.step !== step)) await this.loadStep(step);
    } catch (error) {
      if (token !== this.token) return;
      this.status.hidden = false;
      this.status.replaceChildren(runError(this.run, this.entry?.color ?? "#000", errorText(error)));
    }
  }

  private fillPicker(series: JacobianSeries): void {
    if (this.picked === null || !series.maps.includes(this.picked)) {
      this.picked = series.maps.includes("") ? "" : (series.maps[0] ?? null);
    }
    this.picker.replaceChildren(
      ...series.maps.map((name) => {
        const option = el("option", "", name === "" ? `${NETWORK_LABEL} (input → output)` : name);
        option.value = name;
        return option;
      }),
    );
    if (this.picked !== null) this.picker.value = this.picked;
  }

  private async loadStep(step: number): Promise<void> {
    const token = this.token;
    try {
      const data = await fetchStepSpectra(this.run, this.tag, step);
      if (token !== this.token) return;
      this.stepData = data;
      this.drawStep();
    } catch (error) {
      this.stepStatus.replaceChildren(el("div", "ds-jac-error", errorText(error)));
    }
  }

  private drawAll(): void {
    if (this.series && this.series.steps.length) {
      this.training.element.hidden = false;
      this.training.draw(this.series, this.width());
    }
    this.drawStep();
  }

  private drawStep(): void {
    const data = this.stepData;
    if (!data) return;
    this.stepStatus.replaceChildren();
    if (data.error !== null) {
      this.spectrum.element.hidden = true;
      this.table.replaceChildren();
      this.stepStatus.append(el("div", "ds-jac-error", `step ${data.step}: ${data.error}`));
      return;
    }
    const map = data.maps.find((m) => m.name === this.picked) ?? data.maps[0];
    if (map && map.error === null) {
      this.spectrum.element.hidden = false;
      this.spectrum.draw(map, data.step, this.width());
    } else {
      this.spectrum.element.hidden = true;
      if (map) this.stepStatus.append(el("div", "ds-jac-error", `${mapLabel(map.name)}: ${map.error}`));
    }
    this.drawTable(data);
  }

  private drawTable(data: StepSpectra): void {
    const head = el("thead");
    const headRow = el("tr");
    for (const text of ["map", "n → m", "values", "σ_max (mean ± std)", "RMS σ", "log|det J|"]) {
      headRow.append(el("th", "", text));
    }
    head.append(headRow);
    const body = el("tbody");
    data.maps.forEach((m, j) => {
      const row = el("tr");
      row.dataset.map = m.name;
      if (m.name === this.picked) row.className = "ds-jac-picked";
      row.addEventListener("click", () => {
        this.picked = m.name;
        this.picker.value = m.name;
        this.drawStep();
      });
      const name = el("td", "", mapLabel(m.name));
      name.style.color = mapColor(this.series?.maps.indexOf(m.name) ?? j);
      if (m.error !== null) {
        const error = el("td", "ds-jac-error", m.error);
        error.colSpan = 5;
        row.append(name, error);
        body.append(row);
        return;
      }
      const top = m.singularValues.map((s) => s[0]).filter((v) => Number.isFinite(v));
      const mean = top.reduce((a, b) => a + b, 0) / Math.max(1, top.length);
      const spread = Math.sqrt(top.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, top.length));
      const ms = m.meanSquared.filter((v) => Number.isFinite(v));
      const rms = Math.sqrt(ms.reduce((a, b) => a + b, 0) / Math.max(1, ms.length));
      const dets = m.logAbsDet.filter((v) => !Number.isNaN(v));
      const det = dets.length ? dets.reduce((a, b) => a + b, 0) / dets.length : NaN;
      const width = Math.max(0, ...m.singularValues.map((s) => s.length));
      const cells = [
        `${m.inputDim} → ${m.outputDim}`,
        m.full ? `all ${width}` : `top ${width}`,
        `${formatSigma(mean)} ± ${formatSigma(spread)}`,
        formatSigma(rms),
        m.inputDim === m.outputDim ? formatSigma(det) : "not square",
      ];
      row.append(name, ...cells.map((c, i) => {
        const td = el("td", "", c);
        td.dataset.field = ["dims", "values", "sigma_max", "rms", "log_det"][i];
        return td;
      }));
      body.append(row);
    });
    this.table.replaceChildren(head, body);
  }
}

/** One card per run and tag. */
export class JacobianView extends CardListView<JacobianCard> {
  constructor(_ctx: ViewContext) {
    super({
      key: (e) => `${e.run}\u0000${e.tag}`,
      create: (_key, entries) => new JacobianCard(entries[0].run, entries[0].tag),
    });
  }
}
