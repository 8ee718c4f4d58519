// The metrics table: one row per layer, a column per health metric with its value at the
// selected step (one per run, in run colours) and a sparkline over steps (a line per run).
// Clicking a column header sorts by it (worst first: largest first on the first click);
// clicking a row selects that layer for the charts.

import { el, swatch } from "../dom";
import { NON_FINITE_COLOR } from "../palette";
import { nearestStepIndex } from "../stats";
import type { LayerMetrics } from "./api";
import { formatMetric } from "./format";

export interface MetricColumn {
  name: string;
  label: string;
  title: string;
  /** Sparkline on a log axis (ratios spanning decades). */
  log?: boolean;
}

export const COLUMNS: readonly MetricColumn[] = [
  { name: "spectral_norm", label: "σ_max", title: "spectral norm ‖W‖₂: the largest singular value", log: true },
  {
    name: "condition_number",
    label: "condition κ",
    title: "condition number σ_max / σ_min (∞: numerically singular)",
    log: true,
  },
  { name: "stable_rank", label: "stable rank", title: "stable rank ‖W‖²_F / ‖W‖²₂" },
  {
    name: "effective_rank",
    label: "effective rank",
    title: "effective rank (Roy & Vetterli): exp of the entropy of the normalised singular values",
  },
  { name: "numerical_rank", label: "rank", title: "numerical rank: singular values above the rank tolerance" },
  {
    name: "num_above_mp_edge",
    label: "> MP edge",
    title: "singular values above the Marchenko–Pastur bulk edge (structure beyond random noise)",
  },
  {
    name: "alpha",
    label: "tail α",
    title: "power-law exponent α of the eigenvalue density p(λ) ∝ λ^-α, λ = σ² (heavy tail: α ≲ 4)",
  },
  {
    name: "alpha_ks_distance",
    label: "KS dist.",
    title: "Kolmogorov–Smirnov distance of the power-law fit (smaller: better fit)",
  },
];

export interface TableRun {
  run: string;
  color: string;
  layer: LayerMetrics | undefined;
}

export interface TableRow {
  tag: string;
  runs: TableRun[];
}

const SPARK_W = 64;
const SPARK_H = 18;
const SVG_NS = "http://www.w3.org/2000/svg";

export class MetricsTable {
  readonly element: HTMLDivElement;
  private readonly table: HTMLTableElement;
  private rows: TableRow[] = [];
  private step: number | null = null;
  private selected: string | null = null;
  private sortBy: string | null = null;
  private descending = true;
  private swatches = false;

  constructor(private readonly onSelect: (tag: string) => void) {
    this.element = el("div", "ds-sp-tablewrap");
    this.table = el("table", "ds-sp-table");
    this.table.dataset.testid = "spectrum-table";
    this.element.appendChild(this.table);
  }

  /** Which column sorts the rows and in which direction ("tag": by layer name). */
  get sort(): { by: string | null; descending: boolean } {
    return { by: this.sortBy, descending: this.descending };
  }

  /** @param swatches show run colour swatches (several runs are selected). */
  draw(rows: TableRow[], step: number | null, selected: string | null, swatches: boolean): void {
    this.rows = rows;
    this.swatches = swatches;
    this.step = step;
    this.selected = selected;
    this.render();
  }

  private toggleSort(name: string): void {
    if (this.sortBy === name) this.descending = !this.descending;
    else {
      this.sortBy = name;
      this.descending = name !== "tag";
    }
    this.render();
  }

  /** A row's sort key: the worst run's value at the selected step (NaN: sorts last). */
  private key(row: TableRow, name: string): number {
    let best = NaN;
    for (const r of row.runs) {
      const v = valueAt(r.layer, name, this.step).value;
      if (Number.isNaN(v)) continue;
      if (Number.isNaN(best) || (this.descending ? v > best : v < best)) best = v;
    }
    return best;
  }

  private sortedRows(): TableRow[] {
    const rows = [...this.rows];
    const by = this.sortBy;
    if (by === null) return rows;
    const sign = this.descending ? -1 : 1;
    if (by === "tag") {
      rows.sort((a, b) => sign * a.tag.localeCompare(b.tag, undefined, { numeric: true }));
      return rows;
    }
    const keys = new Map(rows.map((r) => [r.tag, this.key(r, by)]));
    rows.sort((a, b) => {
      const ka = keys.get(a.tag) ?? NaN;
      const kb = keys.get(b.tag) ?? NaN;
      if (Number.isNaN(ka) || Number.isNaN(kb)) {
        return Number.isNaN(ka) === Number.isNaN(kb) ? 0 : Number.isNaN(ka) ? 1 : -1;
      }
      if (ka === kb) return 0;
      return sign * (ka < kb ? -1 : 1);
    });
    return rows;
  }

  private render(): void {
    const head = el("thead");
    const hr = el("tr");
    const header = (name: string, label: string, title: string) => {
      const th = el("th", "ds-sp-sortable");
      th.dataset.metric = name;
      th.title = `${title}. Click to sort.`;
      th.append(label);
      if (this.sortBy === name) {
        th.append(el("span", "ds-sp-arrow", this.descending ? " ▼" : " ▲"));
        th.dataset.sorted = this.descending ? "descending" : "ascending";
      }
      th.addEventListener("click", () => this.toggleSort(name));
      hr.appendChild(th);
    };
    header("tag", "layer", "layer (tag) and its weight's shape");
    for (const c of COLUMNS) header(c.name, c.label, c.title);
    head.appendChild(hr);

    const body = el("tbody");
    for (const row of this.sortedRows()) {
      const tr = el("tr");
      tr.dataset.tag = row.tag;
      if (row.tag === this.selected) {
        tr.className = "ds-sp-selected";
        tr.setAttribute("aria-selected", "true");
      }
      tr.addEventListener("click", () => this.onSelect(row.tag));
      const name = el("td", "ds-sp-layer");
      const info = row.runs.find((r) => r.layer)?.layer?.info;
      name.append(el("div", "ds-sp-tag", row.tag));
      if (info) {
        const shape = info.weightShape.join("×");
        const groups = info.matrixShape[0] > 1 ? ` · ${info.matrixShape[0]} groups` : "";
        name.append(el("div", "ds-muted", `${info.layerKind || "weight"} ${shape}${groups}`));
      }
      tr.appendChild(name);
      for (const c of COLUMNS) tr.appendChild(this.cell(row, c));
      body.appendChild(tr);
    }
    this.table.replaceChildren(head, body);
    this.table.dataset.rows = String(this.rows.length);
    this.table.dataset.step = this.step === null ? "" : String(this.step);
  }

  private cell(row: TableRow, column: MetricColumn): HTMLTableCellElement {
    const td = el("td", "ds-sp-cell");
    td.dataset.metric = column.name;
    const values = el("div", "ds-sp-values");
    const multi = this.swatches || row.runs.length > 1;
    for (const r of row.runs) {
      const at = valueAt(r.layer, column.name, this.step);
      const line = el("div", "ds-sp-value");
      line.dataset.run = r.run;
      if (multi) line.append(swatch(r.color), " ");
      let text: HTMLElement;
      if (!r.layer) {
        text = el("span", "ds-muted", "–");
      } else if (at.error !== undefined) {
        text = el("span", "ds-badge ds-badge-bad", "error");
        text.title = `step ${at.step}: ${at.error}`;
        line.dataset.error = "true";
      } else {
        text = el("span", Number.isFinite(at.value) ? "" : "ds-sp-bad", formatMetric(at.value));
        line.dataset.value = String(at.value);
      }
      if (at.step !== undefined) line.dataset.step = String(at.step);
      line.appendChild(text);
      values.appendChild(line);
    }
    td.append(values, sparkline(row.runs, column, this.step));
    return td;
  }
}

/** A layer's metric at the kept step nearest `step` (the last one when null). */
export function valueAt(
  layer: LayerMetrics | undefined,
  name: string,
  step: number | null,
): { value: number; step?: number; error?: string } {
  if (!layer || layer.steps.length === 0) return { value: NaN };
  const i = step === null ? layer.steps.length - 1 : nearestStepIndex(layer.steps, step);
  const at = layer.steps[i];
  const error = layer.errors.get(at);
  const series = layer.metrics[name];
  return { value: series ? series[i] : NaN, step: at, error };
}

function sparkline(runs: readonly TableRun[], column: MetricColumn, step: number | null): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "ds-sp-spark");
  svg.setAttribute("width", String(SPARK_W));
  svg.setAttribute("height", String(SPARK_H));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${column.label} over steps`);
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  const tf = (v: number) => (column.log ? Math.log10(v) : v);
  const ok = (v: number) => Number.isFinite(v) && (!column.log || v > 0);
  for (const r of runs) {
    const layer = r.layer;
    if (!layer) continue;
    const series = layer.metrics[column.name];
    layer.steps.forEach((s, i) => {
      x0 = Math.min(x0, s);
      x1 = Math.max(x1, s);
      const v = series?.[i];
      if (v !== undefined && ok(v)) {
        y0 = Math.min(y0, tf(v));
        y1 = Math.max(y1, tf(v));
      }
    });
  }
  if (!(x1 >= x0)) return svg;
  if (!(y1 > y0)) {
    y0 -= 1;
    y1 += 1;
  }
  const pad = 2;
  const sx = (s: number) => (x1 > x0 ? pad + ((s - x0) / (x1 - x0)) * (SPARK_W - 2 * pad) : SPARK_W / 2);
  const sy = (v: number) => SPARK_H - pad - ((tf(v) - y0) / (y1 - y0)) * (SPARK_H - 2 * pad);
  for (const r of runs) {
    const layer = r.layer;
    if (!layer) continue;
    const series = layer.metrics[column.name];
    let d = "";
    let pen = false;
    layer.steps.forEach((s, i) => {
      const v = series?.[i] ?? NaN;
      if (!ok(v) || layer.errors.has(s)) {
        pen = false;
        // A step that could not be measured, or a non-finite value: a red tick at the bottom.
        const tick = document.createElementNS(SVG_NS, "path");
        tick.setAttribute("d", `M${sx(s)},${SPARK_H}v-5`);
        tick.setAttribute("stroke", NON_FINITE_COLOR);
        tick.setAttribute("stroke-width", "1.5");
        svg.appendChild(tick);
        return;
      }
      d += `${pen ? "L" : "M"}${sx(s).toFixed(1)},${sy(v).toFixed(1)}`;
      pen = true;
    });
    // A point between gaps draws nothing as a line: mark it.
    const good = layer.steps.map((s, i) => ok(series?.[i] ?? NaN) && !layer.errors.has(s));
    good.forEach((g, i) => {
      if (!g || good[i - 1] || good[i + 1]) return;
      const dot = document.createElementNS(SVG_NS, "circle");
      dot.setAttribute("cx", String(sx(layer.steps[i])));
      dot.setAttribute("cy", String(sy(series![i])));
      dot.setAttribute("r", "1.25");
      dot.setAttribute("fill", r.color);
      svg.appendChild(dot);
    });
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", r.color);
    path.setAttribute("stroke-width", "1.25");
    path.dataset.run = r.run;
    svg.appendChild(path);
    const at = valueAt(layer, column.name, step);
    if (at.step !== undefined && ok(at.value) && at.error === undefined) {
      const dot = document.createElementNS(SVG_NS, "circle");
      dot.setAttribute("cx", String(sx(at.step)));
      dot.setAttribute("cy", String(sy(at.value)));
      dot.setAttribute("r", "2");
      dot.setAttribute("fill", r.color);
      svg.appendChild(dot);
    }
  }
  return svg;
}
