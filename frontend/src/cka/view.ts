// Layer x layer CKA (deepscope.compare_cka): one card per (run, tag). A step slider over the
// logged steps; the step's matrix as a heatmap with network A's layers down the side and
// network B's along the top, cells coloured on [0, 1] with the confusion matrices' white →
// blue scale and printed to two decimals; hover names both layers and the value. Each row's
// most similar layer of B is outlined.

import { cssGradient } from "../colormap";
import { cellColor } from "../confusion/view";
import { cardHead, el, nameCard, runError } from "../dom";
import { errorText } from "../json";
import { StepSlider } from "../slider";
import { addStyles } from "../style";
import { hideTooltip, showTooltip } from "../tooltip";
import { CardListView, type Card } from "../views/card_list";
import type { ViewContext, ViewEntry } from "../views/kind_view";
import { fetchCkaSeries, type CkaSeries } from "./api";

addStyles(`
.ds-cka-toolbar { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; margin: 8px 0 4px; }
.ds-cka-grid td.ds-cka-best { outline: 2px solid #e65100; outline-offset: -2px; }
.ds-cka-legend { display: flex; align-items: center; gap: 6px; font-size: 11px; color: #424242; }
.ds-cka-legend .ds-colorbar-bar { width: 140px; height: 10px; }
.ds-cka-warning { color: #e65100; font-size: 12px; margin: 4px 0; }
`);

function fmt(value: number): string {
  return Number.isFinite(value) ? value.toFixed(2) : "—";
}

function legend(): HTMLElement {
  const box = el("div", "ds-cka-legend");
  box.dataset.testid = "cka-legend";
  const bar = el("div", "ds-colorbar-bar");
  bar.style.background = cssGradient((t) => cellColor(t));
  box.append(el("span", "", "CKA 0"), bar, el("span", "", "1"));
  return box;
}

class CkaCard implements Card {
  readonly element = el("section", "ds-card");
  private readonly sub = el("div", "ds-card-sub");
  private readonly status = el("div", "ds-placeholder", "Loading…");
  private readonly warnings = el("div");
  private readonly slider = new StepSlider((step) => this.draw(step));
  private readonly grid = el("table", "ds-cm-grid ds-cka-grid");
  private readonly caption = el("div", "ds-cm-axis");
  private series: CkaSeries | null = null;
  private token = 0;
  private entry: ViewEntry | null = null;

  constructor(
    readonly run: string,
    readonly tag: string,
  ) {
    nameCard(this.element, "cka-card", run, tag);
    const head = cardHead(`${tag} — ${run}`, this.sub, legend());
    const toolbar = el("div", "ds-cka-toolbar");
    toolbar.append(this.slider.element);
    this.grid.dataset.testid = "cka-matrix";
    this.element.append(head, this.status, this.warnings, toolbar, this.caption, this.grid);
  }

  update(entries: readonly ViewEntry[]): void {
    const first = this.entry === null;
    this.entry = entries[0] ?? null;
    if (first) void this.load();
  }

  refresh(): void {
    void this.load();
  }

  dispose(): void {
    this.token++;
    hideTooltip();
  }

  private async load(): Promise<void> {
    const token = ++this.token;
    try {
      const series = await fetchCkaSeries(this.run, this.tag);
      if (token !== this.token) return;
      this.series = series;
      this.status.hidden = true;
      this.status.replaceChildren();
      const a = series.rowName || "network A";
      const b = series.colName || "network B";
      this.sub.textContent =
        `linear CKA between the layers of ${a} (rows) and ${b} (columns) on the same probe ` +
        `inputs · ${series.steps.length} steps`;
      this.warnings.replaceChildren(...series.warnings.map((w) => el("div", "ds-cka-warning", w)));
      const before = this.slider.value;
      this.slider.setSteps(series.steps);
      const now = this.slider.value;
      if (now !== null && now === before) this.draw(now);
      if (!series.steps.length) this.grid.replaceChildren();
    } catch (error) {
      if (token !== this.token) return;
      this.status.hidden = false;
      this.status.replaceChildren(runError(this.run, this.entry?.color ?? "#000", errorText(error)));
    }
  }

  private draw(step: number): void {
    const series = this.series;
    if (!series) return;
    const k = series.steps.indexOf(step);
    if (k < 0) return;
    const matrix = series.matrices[k];
    this.caption.textContent =
      `step ${step} · ${series.samples[k] ?? 0} probe inputs · rows: ${series.rowName || "A"} · ` +
      `columns: ${series.colName || "B"} · outlined: each row's most similar layer`;
    const head = el("tr");
    head.append(el("th", "ds-cm-axis", `${series.rowName || "A"} \\ ${series.colName || "B"}`));
    for (const name of series.layersB) head.append(el("th", "ds-cm-col", name));
    const rows = matrix.map((row, i) => {
      const tr = el("tr");
      tr.append(el("th", "", series.layersA[i]));
      let best = -1;
      row.forEach((v, j) => {
        if (Number.isFinite(v) && (best < 0 || v > row[best])) best = j;
      });
      row.forEach((value, j) => {
        const td = el("td", "ds-cm-cell", fmt(value));
        if (j === best) td.classList.add("ds-cka-best");
        td.style.background = cellColor(value);
        td.style.color = value > 0.55 ? "#fff" : "#212121";
        td.dataset.row = String(i);
        td.dataset.col = String(j);
        td.dataset.value = String(value);
        td.addEventListener("mousemove", (event) =>
          showTooltip(
            [
              { label: series.rowName || "A", value: series.layersA[i], strong: true },
              { label: series.colName || "B", value: series.layersB[j], strong: true },
              { field: "cka", label: "CKA", value: Number.isFinite(value) ? value.toFixed(4) : "undefined (no variance)" },
            ],
            event.clientX,
            event.clientY,
          ),
        );
        td.addEventListener("mouseleave", () => hideTooltip());
        tr.append(td);
      });
      return tr;
    });
    this.grid.replaceChildren(head, ...rows);
    this.grid.dataset.step = String(step);
  }
}

/** One card per run and tag. */
export class CkaView extends CardListView<CkaCard> {
  constructor(_ctx: ViewContext) {
    super({
      key: (e) => `${e.run}\u0000${e.tag}`,
      create: (_key, entries) => new CkaCard(entries[0].run, entries[0].tag),
    });
  }
}
