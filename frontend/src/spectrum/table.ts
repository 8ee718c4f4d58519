// The metrics table: one row per layer (tag), the runs inside the row: a column per health
// metric with its value at the selected step (one line per run, in run colours; past
// MAX_RUN_LINES runs the worst run's value and the range over runs) and a sparkline over
// steps (a line per run). Clicking a column header sorts by it, worst first on the first
// click (each metric declares which end is bad); clicking a row selects that layer for the
// charts. Ranks are shown as fractions of the layer's k = groups · min(rows, cols), so that
// layers of different sizes compare. A condition number beyond float32's resolution is a
// lower bound ("> 1.1e4"): it sorts after the measured ones, never as the worst.
// Conv layers also show their operator's σ_max and stable rank (the map the layer applies,
// for circular padding) beside the im2col matrix's; other layers show "–" there.
//
// Rows are built in chunks of 8-24 rows (about CHUNK_MS), a task each (74 layers x 8 metrics with their
// sparklines took ~200-1,000 ms in one task): a redraw replaces the shown rows in place, so
// the table never empties meanwhile, and a newer draw cancels an unfinished one.
// `data-complete="true"` on the table says every row is built.

import { el, swatch } from "../dom";
import { NON_FINITE_COLOR } from "../palette";
import { nearestStepIndex } from "../stats";
import type { LayerMetrics } from "./api";
import { formatMetric } from "./format";
import { IM2COL_LABEL, normRatio, operatorLabel } from "./operator";

export interface MetricColumn {
  name: string;
  label: string;
  title: string;
  /** Which end is bad: "high" sorts largest first on the first click, "low" smallest first. */
  worst: "high" | "low";
  /** Sparkline on a log axis (ratios spanning decades). */
  log?: boolean;
  /** Shown and sorted as a fraction of k = groups · min(rows, cols) (ranks), or of the
   * operator's count for an operator column. */
  normalise?: boolean;
  /** A conv operator's number (`LayerMetrics.operator`), "–" for other layers. */
  operator?: boolean;
}

/** Runs listed one line each in a cell; more are summarised (worst run, range). */
export const MAX_RUN_LINES = 6;

const BOUND_FLAG = "condition_number_is_bound";

export const COLUMNS: readonly MetricColumn[] = [
  {
    name: "spectral_norm",
    label: "σ_max",
    title:
      `spectral norm ‖W‖₂: the largest singular value (for a conv: of its ${IM2COL_LABEL}, not ` +
      "the layer's Lipschitz constant; large: exploding; worst first = largest)",
    worst: "high",
    log: true,
  },
  {
    name: "operator_norm",
    label: "σ_max operator",
    title:
      "conv layers: the operator norm, σ_max of the map the layer applies to its input (its " +
      "Lipschitz constant), for circular padding on the input size it saw (an approximation " +
      `for zero padding); between 1 and √(kh·kw) times the ${IM2COL_LABEL}'s σ_max ` +
      "(worst first = largest)",
    worst: "high",
    log: true,
    operator: true,
  },
  {
    name: "condition_number",
    label: "condition κ",
    title:
      "condition number σ_max / σ_min (worst first = largest; \"> x\": σ_min is below float32's " +
      "resolution σ_max·max(rows, cols)·eps, so κ is at least x; such layers sort after the measured)",
    worst: "high",
    log: true,
  },
  {
    name: "stable_rank",
    label: "stable rank / k",
    title: "stable rank ‖W‖²_F / ‖W‖²₂ over k = min(rows, cols) (low: a few directions dominate; worst first = smallest)",
    worst: "low",
    normalise: true,
  },
  {
    name: "operator_stable_rank",
    label: "op. stable rank / n",
    title:
      "conv layers: the operator's stable rank ‖A‖²_F / ‖A‖²₂ over n, its number of singular " +
      "values (circular padding; worst first = smallest)",
    worst: "low",
    normalise: true,
    operator: true,
  },
  {
    name: "effective_rank",
    label: "effective rank / k",
    title:
      "effective rank (Roy & Vetterli: exp of the entropy of the normalised singular values) over " +
      "k = min(rows, cols) (low: rank collapse; worst first = smallest)",
    worst: "low",
    normalise: true,
  },
  {
    name: "numerical_rank",
    label: "rank / k",
    title: "numerical rank (singular values above the rank tolerance) over k = min(rows, cols) (worst first = smallest)",
    worst: "low",
    normalise: true,
  },
  {
    name: "num_above_mp_edge",
    label: "> MP edge",
    title:
      "singular values above the Marchenko–Pastur bulk edge: structure beyond random noise " +
      "(0: still random; worst first = fewest)",
    worst: "low",
  },
  {
    name: "alpha",
    label: "tail α",
    title:
      "power-law exponent α of the eigenvalue density p(λ) ∝ λ^-α, λ = σ² (heavy tail: α ≲ 4; " +
      "α < 2: very heavy, over-trained in Martin & Mahoney's reading; worst first = smallest)",
    worst: "low",
  },
  {
    name: "alpha_ks_distance",
    label: "KS dist.",
    title: "Kolmogorov–Smirnov distance of the power-law fit (large: a poor fit; worst first = largest)",
    worst: "high",
  },
];

/** k = groups · min(rows, cols): the number of singular values of a layer. */
export function singularValueCount(layer: LayerMetrics | undefined): number {
  const shape = layer?.info.matrixShape ?? [];
  if (shape.length !== 3) return NaN;
  return shape[0] * Math.min(shape[1], shape[2]);
}

/** What a column's normalised values are fractions of: k, or the operator's count. */
export function columnDenominator(layer: LayerMetrics | undefined, column: MetricColumn): number {
  if (column.operator) return layer?.operator?.count ? layer.operator.count : NaN;
  return singularValueCount(layer);
}

/** A metric as the table shows and sorts it: normalised ranks, the condition bound flagged. */
export function shownValue(
  layer: LayerMetrics | undefined,
  column: MetricColumn,
  step: number | null,
): { value: number; raw: number; bound: boolean; step?: number; error?: string; unchangedSince?: number } {
  const at = valueAt(layer, column.name, step);
  const bound = column.name === "condition_number" && valueAt(layer, BOUND_FLAG, step).value === 1;
  const unchangedSince = at.step === undefined ? undefined : layer?.unchanged.get(at.step);
  const value = column.normalise ? at.value / columnDenominator(layer, column) : at.value;
  return { ...at, value, raw: at.value, bound, unchangedSince };
}

/** Sort classes: measured values, then lower bounds, then nothing (NaN, errors). */
interface SortKey {
  cls: 0 | 1 | 2;
  value: number;
}

export interface TableRun {
  run: string;
  color: string;
  layer: LayerMetrics | undefined;
}

export interface TableRow {
  tag: string;
  runs: TableRun[];
}

/** Rows built per chunk: at least CHUNK_ROWS, then until CHUNK_MS passed, at most MAX_CHUNK_ROWS. */
const CHUNK_ROWS = 8;
const MAX_CHUNK_ROWS = 24;
const CHUNK_MS = 40;

const SPARK_W = 64;
const SPARK_H = 18;
const SVG_NS = "http://www.w3.org/2000/svg";

export class MetricsTable {
  readonly element: HTMLDivElement;
  private readonly table: HTMLTableElement;
  private readonly head = el("thead");
  private readonly body = el("tbody");
  /** Counts draws: a chunk of an older one stops. */
  private drawToken = 0;
  private rows: TableRow[] = [];
  private step: number | null = null;
  private selected: string | null = null;
  private sortBy: string | null = null;
  /** The rows' order: the sorted metric's bad end first (true), or its good end. */
  private worstFirst = true;
  private swatches = false;
  /** The selected row should scroll into the table's view once drawn (`scrollToSelected`). */
  private scrollDue = false;

  constructor(private readonly onSelect: (tag: string) => void) {
    this.element = el("div", "ds-sp-tablewrap");
    this.table = el("table", "ds-sp-table");
    this.table.dataset.testid = "spectrum-table";
    this.table.append(this.head, this.body);
    this.element.appendChild(this.table);
  }

  /** Which column sorts the rows and in which direction ("tag": by layer name). */
  get sort(): { by: string | null; descending: boolean } {
    return { by: this.sortBy, descending: this.descending };
  }

  /** Whether the sorted column runs from its largest value down. */
  private get descending(): boolean {
    const column = COLUMNS.find((c) => c.name === this.sortBy);
    if (!column) return !this.worstFirst; // by name: A→Z first
    return (column.worst === "high") === this.worstFirst;
  }

  /** Scroll the selected row into the table's own view once it is drawn (the page stays put). */
  scrollToSelected(): void {
    this.scrollDue = true;
    if (this.table.dataset.complete === "true") this.scrollToRow();
  }

  private scrollToRow(): void {
    const row = this.body.querySelector<HTMLElement>("tr.ds-sp-selected");
    if (!this.scrollDue || !row) return;
    this.scrollDue = false;
    const wrap = this.element.getBoundingClientRect();
    const box = row.getBoundingClientRect();
    const header = this.head.getBoundingClientRect().height;
    if (box.top < wrap.top + header || box.bottom > wrap.bottom) {
      this.element.scrollTop += box.top - wrap.top - header - 8;
    }
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
    if (this.sortBy === name) this.worstFirst = !this.worstFirst;
    else {
      this.sortBy = name;
      this.worstFirst = true;
    }
    this.render();
  }

  /**
   * A row's sort key: its runs' most extreme value at the selected step in the sort's
   * direction (the worst run when worst first). Lower bounds and missing values sort after.
   */
  private key(row: TableRow, column: MetricColumn): SortKey {
    let best: SortKey = { cls: 2, value: NaN };
    for (const r of row.runs) {
      const at = shownValue(r.layer, column, this.step);
      if (Number.isNaN(at.value) || at.error !== undefined) continue;
      const key: SortKey = { cls: at.bound ? 1 : 0, value: at.value };
      const better = this.descending ? key.value > best.value : key.value < best.value;
      if (key.cls < best.cls || (key.cls === best.cls && better)) best = key;
    }
    return best;
  }

  private sortedRows(): TableRow[] {
    const rows = [...this.rows];
    const by = this.sortBy;
    if (by === null) return rows;
    const sign = this.descending ? -1 : 1;
    const column = COLUMNS.find((c) => c.name === by);
    if (!column) {
      rows.sort((a, b) => sign * a.tag.localeCompare(b.tag, undefined, { numeric: true }));
      return rows;
    }
    const keys = new Map(rows.map((r) => [r.tag, this.key(r, column)]));
    rows.sort((a, b) => {
      const ka = keys.get(a.tag)!;
      const kb = keys.get(b.tag)!;
      if (ka.cls !== kb.cls) return ka.cls - kb.cls;
      if (ka.cls === 2 || ka.value === kb.value) return 0;
      return sign * (ka.value < kb.value ? -1 : 1);
    });
    return rows;
  }

  private render(): void {
    const hr = el("tr");
    const header = (name: string, label: string, title: string) => {
      const th = el("th", "ds-sp-sortable");
      th.dataset.metric = name;
      th.title = `${title}. Click to sort (worst first, again to reverse).`;
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
    this.head.replaceChildren(hr);
    this.table.dataset.rows = String(this.rows.length);
    this.table.dataset.step = this.step === null ? "" : String(this.step);
    this.table.dataset.complete = "false";

    const token = ++this.drawToken;
    const rows = this.sortedRows();
    const shown = [...this.body.children];
    let next = 0;
    const buildChunk = (): void => {
      if (token !== this.drawToken) return; // a newer draw took over
      const started = performance.now();
      const first = next;
      while (
        next < rows.length &&
        next - first < MAX_CHUNK_ROWS &&
        (next - first < CHUNK_ROWS || performance.now() - started < CHUNK_MS)
      ) {
        const tr = this.rowElement(rows[next]);
        const old = shown[next];
        if (old) this.body.replaceChild(tr, old);
        else this.body.appendChild(tr);
        next++;
      }
      if (next < rows.length) {
        window.setTimeout(buildChunk, 0);
        return;
      }
      for (const old of shown.slice(rows.length)) old.remove();
      this.table.dataset.complete = "true";
      this.scrollToRow();
    };
    buildChunk();
  }

  private rowElement(row: TableRow): HTMLTableRowElement {
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
    return tr;
  }

  private cell(row: TableRow, column: MetricColumn): HTMLTableCellElement {
    const td = el("td", "ds-sp-cell");
    td.dataset.metric = column.name;
    const values = el("div", "ds-sp-values");
    const multi = this.swatches || row.runs.length > 1;
    if (row.runs.length > MAX_RUN_LINES) {
      values.append(...this.summary(row, column));
    } else {
      for (const r of row.runs) values.appendChild(this.valueLine(r, column, multi));
    }
    // An operator column of a layer without an operator (not a conv): no sparkline of NaNs.
    const drawn = column.operator ? row.runs.filter((r) => r.layer?.operator) : row.runs;
    td.append(values, sparkline(drawn, column, this.step));
    return td;
  }

  /** One run's value in a cell. */
  private valueLine(r: TableRun, column: MetricColumn, withSwatch: boolean): HTMLElement {
    const at = shownValue(r.layer, column, this.step);
    const line = el("div", "ds-sp-value");
    line.dataset.run = r.run;
    if (withSwatch) line.append(swatch(r.color), " ");
    let text: HTMLElement;
    if (!r.layer) {
      text = el("span", "ds-muted", "–");
    } else if (column.operator && (!r.layer.operator || (Number.isNaN(at.raw) && at.error === undefined))) {
      text = el("span", "ds-muted", "–");
      text.title = r.layer.operator
        ? `no operator spectrum at step ${at.step ?? "–"} (its error or no input seen yet)`
        : "no operator spectrum: not a Conv1d/2d/3d layer";
      line.dataset.operator = "none";
    } else if (at.error !== undefined) {
      text = el("span", "ds-badge ds-badge-bad", "error");
      text.title = `step ${at.step}: ${at.error}`;
      line.dataset.error = "true";
    } else {
      text = el("span", "", formatShown(at.value, at.raw, column, at.bound, singularValueCount(r.layer)));
      if (!Number.isFinite(at.value)) text.className = "ds-sp-bad";
      if (at.bound) {
        text.className = "ds-sp-bound";
        text.title =
          "σ_min is below float32's resolution (the rank tolerance σ_max·max(rows, cols)·eps): " +
          "the condition number is at least this";
        line.dataset.bound = "true";
      } else if (column.operator) {
        text.title = operatorTitle(r.layer, column, at.raw, at.step);
      } else if (column.normalise) {
        text.title = `${formatMetric(at.raw)} of k = ${singularValueCount(r.layer)}`;
      }
      line.dataset.value = String(at.value);
    }
    if (at.unchangedSince !== undefined) {
      line.dataset.unchangedSince = String(at.unchangedSince);
      line.title = `${r.run}: weight unchanged since step ${at.unchangedSince} (its spectrum)`;
      line.append(text, el("span", "ds-muted", " ="));
    } else {
      line.title = r.run;
      line.appendChild(text);
    }
    if (at.step !== undefined) line.dataset.step = String(at.step);
    return line;
  }

  /** Many runs: the worst run's value (its swatch and name on hover) and the range over runs. */
  private summary(row: TableRow, column: MetricColumn): HTMLElement[] {
    let worst: { run: TableRun; value: number } | null = null;
    let lo = Infinity;
    let hi = -Infinity;
    let measured = 0;
    let bounded: TableRun | null = null;
    for (const r of row.runs) {
      const at = shownValue(r.layer, column, this.step);
      if (at.bound && at.error === undefined) bounded = bounded ?? r;
      if (Number.isNaN(at.value) || at.error !== undefined || at.bound) continue;
      measured++;
      lo = Math.min(lo, at.value);
      hi = Math.max(hi, at.value);
      const worse = column.worst === "high" ? at.value > (worst?.value ?? -Infinity) : at.value < (worst?.value ?? Infinity);
      if (worst === null || worse) worst = { run: r, value: at.value };
    }
    const out: HTMLElement[] = [];
    if (worst) {
      const line = this.valueLine(worst.run, column, true);
      line.dataset.worst = "true";
      line.title = `worst of ${row.runs.length} runs: ${worst.run.run}`;
      out.push(line);
    } else if (bounded) {
      out.push(this.valueLine(bounded, column, true)); // only lower bounds: show one
    }
    const range = el("div", "ds-muted ds-sp-range", measured ? `${formatMetric(lo)} – ${formatMetric(hi)}` : "–");
    range.title = `range over the ${measured} of ${row.runs.length} runs measured at this step`;
    range.dataset.testid = "spectrum-range";
    out.push(range);
    return out;
  }
}

/** An operator cell's hover text: what it is, and the norm against the im2col matrix's. */
function operatorTitle(layer: LayerMetrics, column: MetricColumn, raw: number, step?: number): string {
  const op = layer.operator!;
  const what = operatorLabel(op);
  if (column.name === "operator_stable_rank") return `${what}: stable rank ${formatMetric(raw)} of n = ${op.count}`;
  const im2col = valueAt(layer, "spectral_norm", step ?? null).value;
  const ratio = normRatio(raw, im2col);
  return (
    `${what}: σ_max ${formatMetric(raw)}` +
    (Number.isFinite(ratio) ? `, ${formatMetric(ratio)}× the ${IM2COL_LABEL}'s σ_max ${formatMetric(im2col)}` : "")
  );
}

/** A lower bound in "1.2e7" style, rounded down (a bound must not claim more than it knows). */
export function formatBound(value: number): string {
  if (!(value > 0) || !Number.isFinite(value)) return formatMetric(value);
  const exponent = Math.floor(Math.log10(value));
  const mantissa = Math.floor((value / Math.pow(10, exponent)) * 10) / 10;
  return `${mantissa.toFixed(1)}e${exponent}`;
}

/** A table value: ranks as fractions of k (the numerical rank as r/k), bounds as "> x". */
function formatShown(value: number, raw: number, column: MetricColumn, bound: boolean, k: number): string {
  if (bound) return `> ${formatBound(raw)}`;
  if (column.name === "numerical_rank" && Number.isFinite(raw) && Number.isFinite(k)) return `${raw}/${k}`;
  return formatMetric(value);
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

/** A column's values over a layer's steps, normalised as the column shows them. */
function columnSeries(layer: LayerMetrics, column: MetricColumn): Float64Array | undefined {
  const series = layer.metrics[column.name];
  if (!series || !column.normalise) return series;
  const k = columnDenominator(layer, column);
  return series.map((v) => v / k);
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
    const series = columnSeries(layer, column);
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
    const series = columnSeries(layer, column);
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
    const at = shownValue(layer, column, step);
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
