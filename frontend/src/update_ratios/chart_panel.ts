// A grid card's line chart with its controls: a menu to add a row, a chip per plotted row
// (× removes it), the hint shown before anything is plotted. Redraws nothing when the very
// same data, rows, runs and geometry come again (an idle reload).

import { schemeTableau10 } from "d3-scale-chromatic";
import { el } from "../dom";
import { formatPow10 } from "../format";
import { lineSample } from "../legend";
import { dashFor } from "../palette";
import { quantityTitle, type LayerGrid, type Quantity } from "./grid";
import type { PlotFrame } from "./heatmap";
import { LineChart, type LineSeries } from "./linechart";
import { RECENT_STEPS } from "./stats";

/** One run's loaded grid, with the run's colour. */
export interface RunData {
  run: string;
  color: string;
  data: LayerGrid;
}

export interface ChartState {
  /** The rows to plot, in order. */
  rows: readonly string[];
  /** Rows the card chose (not the user): their chips say why. */
  chosenForYou: (name: string) => boolean;
  runs: readonly RunData[];
  quantity: Quantity;
  frame: PlotFrame;
  width: number;
}

export class ChartPanel {
  readonly element = el("div", "ds-chart-section");
  private readonly title = el("span", "ds-chart-title");
  private readonly picker = el("select", "ds-select");
  private readonly chips = el("div", "ds-chips");
  private readonly hint = el("div", "ds-placeholder");
  private readonly chart: LineChart;
  private drawn: { key: string; data: LayerGrid[] } | null = null;

  /**
   * `what`: the chart's subject ("Update ratios"); `rowNoun`: "parameter" or "layer";
   * `onToggle(name, on)`: the user added (menu) or removed (chip) a row.
   */
  constructor(
    what: string,
    private readonly rowNoun: string,
    private readonly onToggle: (name: string, on: boolean) => void,
  ) {
    this.chart = new LineChart(what);
    const head = el("div", "ds-chart-head");
    this.picker.setAttribute("aria-label", `Add a ${rowNoun} to the chart`);
    this.picker.addEventListener("change", () => {
      const name = this.picker.value;
      this.picker.selectedIndex = 0;
      if (name) onToggle(name, true);
    });
    head.append(this.title, this.picker, this.chips);
    this.hint.textContent = this.hintText();
    this.element.append(head, this.hint, this.chart.element);
  }

  /** The chart must redraw at the next draw (the width or the layout changed). */
  invalidate(): void {
    this.drawn = null;
  }

  /** The menu's rows (those the filters let through). */
  setChoices(names: readonly string[]): void {
    const signature = names.join("\u0000");
    if (this.picker.dataset.signature === signature) return;
    this.picker.dataset.signature = signature;
    const first = el("option", "", `Add ${this.rowNoun}…`);
    first.value = "";
    this.picker.replaceChildren(
      first,
      ...names.map((n) => {
        const o = el("option", "", n);
        o.value = n;
        return o;
      }),
    );
  }

  draw(state: ChartState): void {
    const { rows, runs, quantity, frame, width } = state;
    const key = JSON.stringify([
      rows,
      rows.map(state.chosenForYou),
      width,
      frame,
      quantity,
      runs.map((r) => [r.run, r.color]),
    ]);
    const datas = runs.map((r) => r.data);
    const drawn = this.drawn;
    if (drawn && drawn.key === key && drawn.data.length === datas.length && drawn.data.every((d, i) => d === datas[i])) {
      return;
    }
    this.drawn = { key, data: datas };
    this.title.textContent = `${quantityTitle(quantity)} over steps`;
    this.chart.element.dataset.params = JSON.stringify(rows);
    const byRow = runs.length <= 1;
    const series: LineSeries[] = [];
    rows.forEach((name, k) => {
      for (const { run, color, data } of runs) {
        const j = data.names.indexOf(name);
        if (j < 0) continue;
        const S = data.steps.length;
        const P = data.names.length;
        const values = new Float32Array(S);
        const missing = new Uint8Array(S);
        const zeroWeight = new Uint8Array(S);
        for (let i = 0; i < S; i++) {
          values[i] = data.values[i * P + j];
          missing[i] = data.missing[i * P + j];
          zeroWeight[i] = data.zeroWeight[i * P + j];
        }
        series.push({
          run,
          param: name,
          label: byRow ? name : `${run} · ${name}`,
          color: byRow ? schemeTableau10[k % schemeTableau10.length] : color,
          dash: byRow ? "" : dashFor(k),
          steps: data.steps,
          values,
          missing,
          zeroWeight,
        });
      }
    });
    this.drawChips(rows, byRow, state.chosenForYou, quantity);

    const show = series.length > 0;
    this.hint.hidden = show;
    if (rows.length > 0 && runs.length === 0) {
      this.hint.hidden = false;
      this.hint.textContent = "Loading…";
    } else {
      this.hint.textContent = this.hintText();
    }
    this.chart.element.hidden = !show;
    if (show) this.chart.draw(series, width, frame, quantity);
  }

  private drawChips(
    rows: readonly string[],
    byRow: boolean,
    chosenForYou: (name: string) => boolean,
    quantity: Quantity,
  ): void {
    this.chips.replaceChildren();
    rows.forEach((name, k) => {
      const chip = el("span", "ds-chip");
      chip.dataset.param = name;
      const sample = byRow
        ? lineSample(schemeTableau10[k % schemeTableau10.length], "")
        : lineSample("#616161", dashFor(k));
      const remove = el("button", "", "×");
      remove.title = `Remove ${name} from the chart`;
      remove.setAttribute("aria-label", `Remove ${name}`);
      remove.addEventListener("click", () => this.onToggle(name, false));
      if (chosenForYou(name)) {
        const target = quantity.target;
        chip.title = target
          ? `Chosen for you: of the ${this.rowNoun}s shown, the one whose median over its last ` +
            `${RECENT_STEPS} logged steps is farthest from ${formatPow10(target.value)} ` +
            `(${quantity.scale === "log" ? "in decades, " : ""}in any run)`
          : `Chosen for you: of the ${this.rowNoun}s shown, the one whose median over its last ` +
            `${RECENT_STEPS} logged steps is largest (in any run)`;
      }
      chip.append(sample, el("span", "", name), remove);
      this.chips.appendChild(chip);
    });
  }

  private hintText(): string {
    return `Pick a ${this.rowNoun} (click a heatmap row or use the menu) to plot it over steps.`;
  }
}
