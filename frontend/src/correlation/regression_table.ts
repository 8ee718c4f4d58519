// Li et al.'s table beside the matching curves of a cross-network card: for each run, the
// layer means (squared error with all of B's channels, with the L1 fit, and the L1 fit's
// mean channel count) and the pair's CKA, then one row per channel of A: its least-squares
// error, its L1 error and how many of B's channels the L1 fit uses. Errors are 1 − R² of a
// normalised channel: 0 = an exact linear copy, 1 = no linear relation.

import { el, swatch } from "../dom";
import type { CorrelationRegression } from "./api";

/** How many channels a run's table lists before it scrolls. */
export const ROWS_SHOWN = 12;

export function formatError(value: number): string {
  return Number.isFinite(value) ? value.toFixed(3) : "—";
}

export function formatCount(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "—";
}

export interface RegressionEntry {
  run: string;
  color: string;
  data: CorrelationRegression;
}

export class RegressionTable {
  readonly element = el("div", "ds-corr-curve ds-corr-regression");
  private readonly body = el("div");

  constructor() {
    this.element.dataset.testid = "regression-table";
    const head = el(
      "div",
      "ds-chart-title",
      "Each channel of A predicted from all of B's (Li et al.): error = 1 − R²",
    );
    this.element.append(head, this.body);
  }

  draw(entries: readonly RegressionEntry[]): void {
    const shown = entries.filter((e) => e.data.available);
    this.element.hidden = shown.length === 0;
    this.body.replaceChildren(...shown.map((e) => this.runBlock(e)));
  }

  private runBlock({ run, color, data }: RegressionEntry): HTMLElement {
    const block = el("div", "ds-corr-reg-run");
    block.dataset.run = run;
    block.dataset.step = String(data.step);
    const title = el("div", "ds-corr-reg-head");
    const name = el("strong", "", run);
    name.style.color = color;
    const cka = el("span", "ds-badge", `CKA ${formatError(data.cka)}`);
    cka.dataset.testid = "pair-cka";
    cka.dataset.value = String(data.cka);
    cka.title =
      "linear CKA of the two layers (Kornblith et al. 2019), channels as features and every " +
      "input position a sample: 1 = the same representation up to a rotation and a scale";
    title.append(swatch(color), name, el("span", "ds-muted", `step ${data.step}`), cka);
    block.append(title);
    if (!data.regression) {
      block.append(el("div", "ds-muted", "logged without the regression (regression=False)"));
      return block;
    }
    const means = el("table", "ds-corr-reg-means");
    means.dataset.testid = "regression-means";
    const row = (label: string, value: string, field: string, raw: number) => {
      const tr = el("tr");
      const td = el("td", "", value);
      td.dataset.field = field;
      td.dataset.value = String(raw);
      tr.append(el("th", "", label), td);
      return tr;
    };
    means.append(
      row(
        `mean squared error, all ${data.predictors} channels`,
        formatError(data.meanLeastSquaresError),
        "mean_least_squares_error",
        data.meanLeastSquaresError,
      ),
      row("mean squared error, L1", formatError(data.meanL1Error), "mean_l1_error", data.meanL1Error),
      row(
        "mean channels the L1 fit uses",
        formatCount(data.meanL1Channels),
        "mean_l1_channels",
        data.meanL1Channels,
      ),
    );
    const table = el("table", "ds-corr-reg-table");
    table.dataset.testid = "regression-channels";
    const head = el("tr");
    for (const [text, tip] of [
      ["channel", "channel of A (the matrix's row)"],
      ["least squares", "1 − R² with every usable channel of B"],
      ["L1", `1 − R² of the L1 fit (α: the largest keeping ${formatCount(100 * data.keep, 0)}% of the least-squares R²)`],
      ["L1 channels", "channels of B the L1 fit uses"],
    ]) {
      const th = el("th", "", text);
      th.title = tip;
      head.append(th);
    }
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    data.leastSquaresError.forEach((ls, i) => {
      const tr = el("tr");
      tr.dataset.channel = String(i);
      // A channel with no fit (dead, overflowed) uses no channel of B: "—", not "0".
      const channels = Number.isFinite(data.l1Error[i]) ? formatCount(data.l1Channels[i], 0) : "—";
      const cells: [string, string, number][] = [
        ["channel", String(i), i],
        ["least_squares_error", formatError(ls), ls],
        ["l1_error", formatError(data.l1Error[i]), data.l1Error[i]],
        ["l1_channels", channels, data.l1Channels[i]],
      ];
      for (const [field, text, raw] of cells) {
        const td = el("td", "", text);
        td.dataset.field = field;
        td.dataset.value = String(raw);
        tr.append(td);
      }
      tbody.append(tr);
    });
    table.append(thead, tbody);
    const scroll = el("div", "ds-corr-reg-scroll");
    scroll.style.maxHeight = `${24 * (ROWS_SHOWN + 1)}px`;
    scroll.append(table);
    block.append(means, scroll);
    return block;
  }
}
