// A grid card's toolbar: the row filter box, how many rows pass, the group summary (median
// or max) and "expand all"; what it shows comes from the card's RowSet.

import { el } from "../dom";
import { formatInt } from "../format";
import { addStyles } from "../style";
import type { GroupSummary } from "./heatmap";
import { paramFilter } from "./param_groups";
import { FLAT_MAX, type RowSet } from "./rows";

addStyles(`
.ds-ur-tools { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; margin: 4px 0 6px; font-size: 12px; }
.ds-ur-filter { width: 260px; max-width: 100%; padding: 3px 8px; border: 1px solid #c6c6c6; border-radius: 4px; background: #fff; }
.ds-ur-filter:focus { outline: none; border-color: #f57c00; box-shadow: 0 0 0 1px #f57c00; }
.ds-ur-filter.ds-invalid { border-color: #c62828; }
.ds-ur-tools .ds-filter-error { color: #c62828; }
.ds-ur-tools label { display: inline-flex; align-items: center; gap: 4px; color: #616161; }
`);

export interface ToolsEvents {
  /** The filter box's text changed (debounced). */
  onFilter: (text: string) => void;
  onSummary: (summary: GroupSummary) => void;
  onExpandAll: () => void;
}

export class CardTools {
  readonly element = el("div", "ds-ur-tools");
  private readonly filterInput = el("input", "ds-ur-filter");
  private readonly filterNote = el("span", "ds-filter-error");
  private readonly countNote = el("span", "ds-muted");
  private readonly summaryLabel = el("label", "", "groups show the");
  private readonly summaryPicker = el("select", "ds-select");
  private readonly expandAll = el("button", "ds-link");

  /** `rowNoun`: what a row is, "parameter" or "layer". */
  constructor(
    tag: string,
    private readonly rowNoun: string,
    events: ToolsEvents,
  ) {
    const input = this.filterInput;
    input.type = "search";
    input.placeholder = `Filter ${rowNoun}s (regex or text)`;
    input.autocomplete = "off";
    input.spellcheck = false;
    input.dataset.testid = "param-filter";
    input.setAttribute("aria-label", `Filter the ${rowNoun}s of ${tag} (regex or text)`);
    let debounce: number | undefined;
    input.addEventListener("input", () => {
      window.clearTimeout(debounce);
      debounce = window.setTimeout(() => events.onFilter(input.value), 120);
    });
    this.countNote.dataset.testid = "param-count";
    this.filterNote.hidden = true;
    this.summaryPicker.dataset.testid = "group-summary";
    for (const how of ["median", "max"] as const) {
      const o = el("option", "", how);
      o.value = how;
      this.summaryPicker.appendChild(o);
    }
    this.summaryPicker.addEventListener("change", () =>
      events.onSummary(this.summaryPicker.value === "max" ? "max" : "median"),
    );
    this.summaryLabel.append(this.summaryPicker, `of their ${rowNoun}s per step`);
    this.expandAll.type = "button";
    this.expandAll.dataset.testid = "expand-all";
    this.expandAll.addEventListener("click", () => events.onExpandAll());
    this.element.append(input, this.countNote, this.filterNote, this.summaryLabel, this.expandAll);
  }

  /** Empty the filter box (the card cleared its filter). */
  clearFilter(): void {
    this.filterInput.value = "";
  }

  /** Show the counts, the filter's error, and the group controls for `rowSet`. */
  render(rowSet: RowSet, filterText: string, sidebarFilter: RegExp | null): void {
    const { shown, total } = rowSet;
    const noun = this.rowNoun;
    const groups = rowSet.rows.filter((r) => r.kind === "group").length;
    this.countNote.textContent =
      shown.length === total
        ? `${formatInt(total)} ${noun}s`
        : `${formatInt(shown.length)} of ${formatInt(total)} ${noun}s` +
          (sidebarFilter ? ` (sidebar filter /${sidebarFilter.source}/)` : "");
    const box = paramFilter(filterText);
    this.filterInput.classList.toggle("ds-invalid", box.error !== undefined);
    this.filterNote.hidden = box.error === undefined;
    this.filterNote.textContent = box.error ?? "";
    const grouped = shown.length > FLAT_MAX;
    this.summaryLabel.hidden = !grouped;
    this.expandAll.hidden = !grouped;
    const anyClosed = rowSet.rows.some((r) => r.kind === "group" && !r.expanded);
    this.expandAll.textContent = anyClosed || groups === 0 ? "expand all" : "collapse all";
  }
}
