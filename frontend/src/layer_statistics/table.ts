// Every statistic of every row at the selected step, as a table one can read at 200 layers:
// dead and saturated fractions above a threshold flagged in colour (a red or orange cell
// and a badge), repeated blocks collapsed (blocks.0–11.mlp.fc1 one row), a module-path
// filter, and a sort by any column (click its header).

import { el } from "../dom";
import { formatInt } from "../format";
import { addStyles } from "../style";
import { ZERO_WEIGHT_TEXT } from "../update_ratios/format";
import { ZERO_WEIGHT_COLOR } from "../update_ratios/heatmap";
import { paramFilter } from "../update_ratios/param_groups";
import { NON_FINITE_COLOR } from "../palette";
import { activationValue, parameterValue, type StepTable } from "./api";
import {
  collapseBlocks,
  flagsOf,
  singleRows,
  sortRows,
  type CollapsedRow,
  type Summary,
} from "./blocks";
import { cellState, cellText, columnTitle, NO_GRADIENT_TEXT, summarizeCell, unitsNote, type CellState } from "./cells";
import { statisticInfo, type Part } from "./statistics";

addStyles(`
.ds-ls-tools { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; margin: 4px 0 6px; font-size: 12px; }
.ds-ls-tools label { display: inline-flex; align-items: center; gap: 4px; color: #616161; }
.ds-ls-tools label[hidden] { display: none; }
.ds-ls-tools input[type=number] { width: 64px; padding: 2px 4px; border: 1px solid #c6c6c6; border-radius: 4px; }
.ds-ls-table-wrap { max-height: 420px; overflow: auto; border: 1px solid #eeeeee; border-radius: 4px; }
.ds-ls-table { border-collapse: collapse; font-size: 12px; width: 100%; font-variant-numeric: tabular-nums; }
.ds-ls-table th { position: sticky; top: 0; background: #fafafa; z-index: 1; font-weight: 500; color: #424242;
  text-align: right; padding: 4px 8px; border-bottom: 1px solid #e0e0e0; white-space: nowrap; cursor: pointer; user-select: none; }
.ds-ls-table th:first-child, .ds-ls-table td:first-child, .ds-ls-table th.ds-ls-text, .ds-ls-table td.ds-ls-text { text-align: left; }
.ds-ls-table th[aria-sort=descending]::after { content: " ▼"; color: #f57c00; }
.ds-ls-table th[aria-sort=ascending]::after { content: " ▲"; color: #f57c00; }
.ds-ls-table td { padding: 3px 8px; border-bottom: 1px solid #f5f5f5; text-align: right; white-space: nowrap; }
.ds-ls-table td:first-child { max-width: 360px; overflow: hidden; text-overflow: ellipsis; }
.ds-ls-table tr:hover td { background: #fff8e1; }
.ds-ls-table tr.ds-ls-revealed td:first-child { box-shadow: inset 3px 0 0 #f57c00; color: #e65100; font-weight: 500; }
.ds-ls-table td.ds-ls-dead { background: #ffcdd2; color: #b71c1c; font-weight: 500; }
.ds-ls-table td.ds-ls-saturated { background: #ffe0b2; color: #e65100; font-weight: 500; }
.ds-ls-badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; line-height: 16px; margin-left: 4px; }
.ds-ls-badge-dead { background: #ffcdd2; color: #b71c1c; }
.ds-ls-badge-saturated { background: #ffe0b2; color: #e65100; }
.ds-ls-count { color: #9e9e9e; margin-left: 4px; }
.ds-ls-table td.ds-ls-no-gradient { color: #9e9e9e; font-style: italic; }
.ds-ls-table td.ds-ls-zero-weight { background: ${ZERO_WEIGHT_COLOR}; color: #37474f; }
.ds-ls-table td.ds-ls-non-finite { color: ${NON_FINITE_COLOR}; font-weight: 500; }
`);

/** Colours of the flags (the cells' backgrounds), for tests and the legend. */
export const DEAD_BACKGROUND = "#ffcdd2";
export const SATURATED_BACKGROUND = "#ffe0b2";
/** A zero weight's undefined ‖g‖/‖W‖: update ratios' neutral "‖W‖ = 0" colour. */
export const ZERO_WEIGHT_BACKGROUND = ZERO_WEIGHT_COLOR;

/** Rows beyond which repeated blocks start collapsed. */
export const COLLAPSE_FROM = 40;

interface RowValues {
  row: CollapsedRow;
  /** column name -> the row's value (a group's summary). */
  values: Map<string, number>;
  /** column name -> what the value is (a number, non-finite, no gradient, a zero weight). */
  states: Map<string, CellState>;
  /** column name -> members left out of a group's summary (no gradient, a zero weight). */
  excluded: Map<string, number>;
  /** Members flagged dead / saturated. */
  dead: number;
  saturated: number;
}

export class LayerTable {
  readonly element = el("div", "ds-chart-section");
  private readonly title = el("span", "ds-chart-title");
  private readonly note = el("span", "ds-muted");
  private readonly filterInput = el("input", "ds-ur-filter");
  private readonly filterError = el("span", "ds-filter-error");
  private readonly collapse = el("input");
  private readonly summary = el("select", "ds-select");
  private readonly threshold = el("input");
  private readonly flaggedOnly = el("input");
  private readonly count = el("span", "ds-muted");
  private readonly wrap = el("div", "ds-ls-table-wrap");
  private readonly placeholder = el("div", "ds-placeholder", "Loading…");
  private readonly units = el("div", "ds-muted");
  /** The flag controls, hidden for parameters (which have no dead or saturated units). */
  private flagTools: HTMLElement[] = [];
  private table: StepTable | null = null;
  private part: Part = "activations";
  private sidebar: RegExp | null = null;
  /** The user's collapse choice; null until they make one (then the default by row count). */
  private collapseChoice: boolean | null = null;
  private sortColumn: string | null = null;
  private descending = true;
  /** The row a finding pointed at (`highlight`), and whether the rows still scroll to it. */
  private revealed: string | null = null;
  private scrollDue = false;

  /** `onLayer`: a layer's name was clicked; `onFilter`: the module-path filter or the threshold changed. */
  constructor(
    private readonly onLayer: (name: string) => void,
    private readonly onFilter: () => void,
  ) {
    const head = el("div", "ds-chart-head");
    head.append(this.title, this.note);
    const tools = el("div", "ds-ls-tools");
    this.filterInput.type = "search";
    this.filterInput.placeholder = "Filter by module path (regex or text)";
    this.filterInput.dataset.testid = "ls-filter";
    this.filterInput.setAttribute("aria-label", "Filter the rows by module path (regex or text)");
    let debounce: number | undefined;
    this.filterInput.addEventListener("input", () => {
      window.clearTimeout(debounce);
      debounce = window.setTimeout(() => {
        this.render();
        this.onFilter();
      }, 120);
    });
    this.filterError.hidden = true;
    const check = (input: HTMLInputElement, testid: string, text: string, onChange: () => void) => {
      input.type = "checkbox";
      input.dataset.testid = testid;
      input.addEventListener("change", onChange);
      const label = el("label");
      label.append(input, text);
      return label;
    };
    const collapseLabel = check(this.collapse, "ls-collapse", "collapse repeated blocks", () => {
      this.collapseChoice = this.collapse.checked;
      this.render();
    });
    for (const how of ["median", "max", "min"] as const) {
      const o = el("option", "", how);
      o.value = how;
      this.summary.appendChild(o);
    }
    this.summary.dataset.testid = "ls-summary";
    this.summary.addEventListener("change", () => this.render());
    const summaryLabel = el("label", "", "groups show the");
    summaryLabel.append(this.summary, "of their rows");
    this.threshold.type = "number";
    this.threshold.min = "0";
    this.threshold.max = "100";
    this.threshold.step = "1";
    this.threshold.value = "10";
    this.threshold.dataset.testid = "ls-threshold";
    this.threshold.addEventListener("change", () => {
      this.render();
      this.onFilter();
    });
    const thresholdLabel = el("label", "", "flag dead or saturated above");
    thresholdLabel.append(this.threshold, "%");
    const flaggedLabel = check(this.flaggedOnly, "ls-flagged-only", "flagged only", () => this.render());
    this.flagTools = [thresholdLabel, flaggedLabel];
    this.count.dataset.testid = "ls-count";
    tools.append(this.filterInput, this.filterError, collapseLabel, summaryLabel, thresholdLabel, flaggedLabel, this.count);
    this.units.dataset.testid = "ls-units";
    this.element.append(head, tools, this.placeholder, this.wrap, this.units);
    this.element.dataset.testid = "ls-table";
  }

  /** Mark the row of `name` (a finding's evidence; null: none), scrolled into view once. */
  highlight(name: string | null): void {
    this.revealed = name;
    this.scrollDue = name !== null;
    this.render();
  }

  /** The fraction above which a row is flagged (the box is in percent). */
  thresholdFraction(): number {
    const v = Number(this.threshold.value);
    return Number.isFinite(v) ? Math.max(0, v) / 100 : 0.1;
  }

  /** Whether a name passes the module-path filter box and the sidebar's filter. */
  passes(): (name: string) => boolean {
    const box = paramFilter(this.filterInput.value);
    const side = this.sidebar;
    return (name) => box.test(name) && (side === null || side.test(name));
  }

  setSidebarFilter(regex: RegExp | null): void {
    this.sidebar = regex;
    this.render();
  }

  /** Whether it shows a step of `run`'s `part` now. */
  shows(run: string, part: Part): boolean {
    return this.table !== null && this.table.run === run && this.part === part;
  }

  /** Show `table` (one run's step), or a message instead. */
  show(table: StepTable | null, part: Part, run: string, message?: string): void {
    // The same step again (a redraw for another panel, an idle reload): nothing to do.
    if (table !== null && table === this.table && part === this.part) return;
    this.table = table;
    this.part = part;
    this.title.textContent = part === "parameters" ? "Parameters at the step" : "Layers at the step";
    for (const tool of this.flagTools) tool.hidden = part === "parameters";
    this.note.textContent = table ? `${run}, step ${table.step}` : "";
    this.placeholder.hidden = table !== null;
    this.placeholder.textContent = message ?? "Loading…";
    this.render();
  }

  private columns(table: StepTable): string[] {
    return this.part === "parameters" ? table.parameterStatistics : table.activationStatistics;
  }

  private render(): void {
    const table = this.table;
    if (!table) {
      this.wrap.replaceChildren();
      return;
    }
    const part = this.part;
    const names = part === "parameters" ? table.parameters : table.layers;
    const types = part === "parameters" ? [] : table.types;
    const columns = this.columns(table);
    const box = paramFilter(this.filterInput.value);
    this.filterError.hidden = box.error === undefined;
    this.filterError.textContent = box.error ?? "";
    const passes = this.passes();
    const kept = names.map((_, i) => i).filter((i) => passes(names[i]));
    const collapsed = this.collapseChoice ?? kept.length > COLLAPSE_FROM;
    this.collapse.checked = collapsed;
    const keptNames = kept.map((i) => names[i]);
    const keptTypes = kept.map((i) => types[i] ?? "");
    const base = collapsed ? collapseBlocks(keptNames, keptTypes) : singleRows(keptNames, keptTypes);
    // Members back to indices of the table's rows.
    const rows = base.map((r) => ({ ...r, members: r.members.map((m) => kept[m]) }));
    const how = this.summary.value as Summary;
    const threshold = this.thresholdFraction();
    const parameters = part === "parameters";
    const value = (i: number, name: string) =>
      parameters ? parameterValue(table, i, name) : activationValue(table, i, name);
    const state = (i: number, name: string) =>
      cellState(name, value(i, name), parameters, table.withoutGradient[i] === 1, parameters ? value(i, "weight_norm") : NaN);
    // What the parameters' cells hold, counted once per parameter and column.
    let noGradient = 0;
    let zeroWeight = 0;
    let nonFinite = 0;
    for (const i of kept) {
      if (parameters && table.withoutGradient[i] === 1) noGradient++;
      for (const c of columns) {
        const st = state(i, c);
        if (st === "zero-weight") zeroWeight++;
        else if (st === "non-finite") nonFinite++;
      }
    }
    let computed: RowValues[] = rows.map((row) => {
      const values = new Map<string, number>();
      const states = new Map<string, CellState>();
      const excluded = new Map<string, number>();
      for (const c of columns) {
        const cell = summarizeCell(
          row.members.map((i) => state(i, c)),
          row.members.map((i) => value(i, c)),
          how,
        );
        values.set(c, cell.value);
        states.set(c, cell.state);
        excluded.set(c, cell.excluded);
      }
      let dead = 0;
      let saturated = 0;
      if (part === "activations") {
        for (const i of row.members) {
          const f = flagsOf(value(i, "dead_fraction"), value(i, "saturated_fraction"), threshold);
          if (f.dead) dead++;
          if (f.saturated) saturated++;
        }
      }
      return { row, values, states, excluded, dead, saturated };
    });
    const flaggedRows = computed.filter((r) => r.dead + r.saturated > 0).length;
    if (this.flaggedOnly.checked) computed = computed.filter((r) => r.dead + r.saturated > 0);
    if (this.sortColumn !== null && columns.includes(this.sortColumn)) {
      const c = this.sortColumn;
      computed = sortRows(computed, (r) => r.values.get(c) ?? NaN, this.descending);
    }
    const noun = part === "parameters" ? "parameter" : "layer";
    this.count.textContent =
      `${formatInt(kept.length)} of ${formatInt(names.length)} ${noun}s` +
      (collapsed ? ` in ${formatInt(rows.length)} rows` : "") +
      (part === "activations" ? ` · ${formatInt(flaggedRows)} flagged` : "") +
      (noGradient > 0 ? ` · ${formatInt(noGradient)} without a gradient` : "") +
      (zeroWeight > 0 ? ` · ${formatInt(zeroWeight)} with ‖W‖ = 0` : "") +
      (nonFinite > 0 ? ` · ${formatInt(nonFinite)} non-finite` : "");
    this.element.dataset.rows = String(computed.length);
    this.element.dataset.flagged = String(flaggedRows);
    this.element.dataset.withoutGradient = String(noGradient);
    this.element.dataset.zeroWeight = String(zeroWeight);
    this.element.dataset.nonFinite = String(nonFinite);

    const tableEl = el("table", "ds-ls-table");
    const headRow = el("tr");
    const th = (text: string, column: string | null, cls = "") => {
      const cell = el("th", cls, text);
      if (column !== null) {
        cell.dataset.column = column;
        const info = statisticInfo(column);
        cell.title = `${info.label}${info.unit ? ` (${info.unit})` : ""}: ${info.help}. Click to sort.`;
        if (this.sortColumn === column) cell.setAttribute("aria-sort", this.descending ? "descending" : "ascending");
        cell.addEventListener("click", () => {
          if (this.sortColumn === column) this.descending = !this.descending;
          else {
            this.sortColumn = column;
            this.descending = true;
          }
          this.render();
        });
      }
      return cell;
    };
    headRow.append(th(noun, null, "ds-ls-text"));
    if (part === "activations") headRow.append(th("type", null, "ds-ls-text"), th("flags", null, "ds-ls-text"));
    for (const c of columns) headRow.append(th(columnTitle(c), c));
    const thead = el("thead");
    thead.appendChild(headRow);
    const tbody = el("tbody");
    for (const r of computed) {
      const tr = el("tr");
      tr.dataset.testid = "ls-row";
      tr.dataset.key = r.row.key;
      tr.dataset.label = r.row.label;
      tr.dataset.members = String(r.row.members.length);
      const flags = [r.dead > 0 ? "dead" : "", r.saturated > 0 ? "saturated" : ""].filter(Boolean);
      tr.dataset.flags = flags.join(" ");
      if (this.revealed !== null && r.row.members.some((i) => names[i] === this.revealed)) {
        tr.classList.add("ds-ls-revealed");
        tr.dataset.revealed = "true";
      }
      const nameCell = el("td", "ds-ls-text", r.row.label);
      nameCell.title = r.row.members.map((i) => names[i]).join("\n");
      if (r.row.members.length > 1) nameCell.append(el("span", "ds-ls-count", `×${r.row.members.length}`));
      if (part === "activations" && r.row.members.length === 1) {
        nameCell.style.cursor = "pointer";
        nameCell.addEventListener("click", () => this.onLayer(names[r.row.members[0]]));
      }
      tr.append(nameCell);
      if (part === "activations") {
        tr.append(el("td", "ds-ls-text", r.row.type));
        const td = el("td", "ds-ls-text");
        const n = r.row.members.length;
        if (r.dead > 0) td.append(badge("dead", n > 1 ? `dead ${r.dead}/${n}` : "dead"));
        if (r.saturated > 0) td.append(badge("saturated", n > 1 ? `saturated ${r.saturated}/${n}` : "saturated"));
        tr.append(td);
      }
      for (const c of columns) {
        const v = r.values.get(c) ?? NaN;
        const st = r.states.get(c) ?? "not-measured";
        const td = el("td", "", cellText(c, st, v));
        td.dataset.column = c;
        td.dataset.value = String(v);
        td.dataset.state = st;
        if (st === "no-gradient") {
          td.className = "ds-ls-no-gradient";
          td.title = "No gradient at this step (frozen, or unused by this step's loss): not measured";
        } else if (st === "zero-weight") {
          td.className = "ds-ls-zero-weight";
          td.title = `${ZERO_WEIGHT_TEXT}: the weight is exactly zero (a fresh bias), not a numerical fault`;
        } else if (st === "non-finite") {
          td.className = "ds-ls-non-finite";
          td.title = "A non-finite measurement: numerical trouble";
        }
        const left = r.excluded.get(c) ?? 0;
        if (left > 0 && (st === "value" || st === "non-finite")) {
          td.title = `${left} of ${r.row.members.length} left out (${NO_GRADIENT_TEXT} or ‖W‖ = 0)`;
        }
        if (c === "dead_fraction" && r.row.members.length === 1) {
          // The channels behind the fraction: "50.0% (8/16)".
          const i = r.row.members[0];
          if (table.channels[i] > 0) td.textContent += ` (${table.deadChannels[i]}/${table.channels[i]})`;
        }
        if (c === "dead_fraction" && r.dead > 0) td.className = "ds-ls-dead";
        if (c === "saturated_fraction" && r.saturated > 0) td.className = "ds-ls-saturated";
        tr.append(td);
      }
      tbody.appendChild(tr);
    }
    tableEl.append(thead, tbody);
    this.wrap.replaceChildren(tableEl);
    const revealed = tbody.querySelector<HTMLElement>("tr.ds-ls-revealed");
    if (this.scrollDue && revealed) {
      this.scrollDue = false;
      // Within the table's own scroll (the page stays put), under its sticky header.
      this.wrap.scrollTop = Math.max(0, revealed.offsetTop - thead.offsetHeight - 8);
    }
    this.units.textContent = unitsNote(columns);
    if (computed.length === 0) {
      this.wrap.appendChild(el("div", "ds-placeholder", this.flaggedOnly.checked ? "No row is flagged." : "No row passes the filters."));
    }
  }
}

function badge(kind: "dead" | "saturated", text: string): HTMLSpanElement {
  const b = el("span", `ds-ls-badge ds-ls-badge-${kind}`, text);
  b.dataset.flag = kind;
  return b;
}
