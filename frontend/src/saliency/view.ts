// Saliency: one card per run. A method selector (the run's saliency tags), sign mode,
// percentile clipping, a step slider and a compare mode (two steps side by side); then a
// grid with one row per probe sample: source, map, overlay (and for baseline-subtracted
// methods the baseline and its map), with the label and the prediction. A token series
// (a text model) is drawn as rows of coloured tokens instead (./tokens).

import { cssGradient } from "../colormap";
import { el, swatch } from "../dom";
import { StepSlider } from "../slider";
import { addStyles } from "../style";
import { hideTooltip, showTooltip, type TooltipRow } from "../tooltip";
import { CardListView } from "../views/card_list";
import type { ViewContext, ViewEntry } from "../views/kind_view";
import {
  fetchSaliencyMaps,
  fetchSaliencySteps,
  type NdArray,
  type SaliencyMaps,
  type SaliencySteps,
} from "./api";
import {
  SIGN_MODES,
  clipValue,
  formatValue,
  geometry,
  imageRgb,
  legendColor,
  mapRgb,
  overlayRgb,
  paint,
  reduceMap,
  valueRange,
  type Geometry,
  type SignMode,
} from "./render";
import { signedReduction, tokenLabel, tokenRow } from "./tokens";

/** Samples per page of the grid (one request). */
const PAGE = 8;
/** Target size of a panel, CSS px. */
const PANEL_PX = 112;
const CLIP_CHOICES: readonly number[] = [100, 99.9, 99, 95];
const DEFAULT_CLIP = 99;

/** What a map's values are, by method (deepscope's names; others: "as logged"). */
const METHOD_UNITS: Record<string, string> = {
  gradient: "∂score/∂input (score per input unit)",
  gradient_x_input: "input × ∂score/∂input (score units)",
  guided_backprop: "guided ∂score/∂input (score per input unit)",
  baseline_delta: "∂score/∂input at the input minus at the baseline (score per input unit)",
  baseline_delta_x_input:
    "input × (∂score/∂input at the input minus at the baseline) (score units)",
  smoothgrad: "∂score/∂input averaged over noisy copies (score per input unit)",
  integrated_gradients: "attribution (score units; they sum to f(x) − f(baseline))",
  occlusion: "score drop when the window is occluded (score units)",
};

addStyles(`
.ds-sal-controls { display: flex; align-items: center; gap: 8px 16px; flex-wrap: wrap; margin: 4px 0 8px; font-size: 12px; }
.ds-sal-controls label { display: inline-flex; align-items: center; gap: 6px; color: #616161; }
.ds-sal-sliders { display: flex; flex-direction: column; gap: 4px; margin-bottom: 6px; }
.ds-sal-legend { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; font-size: 11px; color: #424242; margin: 4px 0 8px; }
.ds-sal-bar { width: 140px; height: 10px; border-radius: 1px; border: 1px solid rgba(0,0,0,.1); }
.ds-sal-grid { display: grid; justify-content: start; gap: 6px 12px; align-items: start; overflow-x: auto; padding-bottom: 4px; }
.ds-sal-colhead { font-size: 11px; color: #616161; font-weight: 500; white-space: nowrap; }
.ds-sal-rowhead { font-size: 12px; line-height: 1.5; min-width: 92px; }
.ds-sal-rowhead .ds-sal-idx { font-weight: 500; }
.ds-sal-wrong { color: #c62828; font-weight: 500; }
.ds-sal-right { color: #2e7d32; }
.ds-sal-panel { display: block; image-rendering: pixelated; cursor: crosshair; border: 1px solid #e0e0e0; }
.ds-sal-bad { display: flex; align-items: center; justify-content: center; text-align: center; font-size: 11px;
  color: #b71c1c; background: #ffebee; border: 1px dashed #ef9a9a; padding: 4px; }
.ds-sal-pager { display: inline-flex; align-items: center; gap: 4px; }
.ds-sal-pager[hidden] { display: none; }
.ds-sal-pager button { border: 1px solid #c6c6c6; background: #fff; border-radius: 3px; cursor: pointer; padding: 0 6px; }
.ds-sal-pager button:disabled { opacity: .4; cursor: default; }
`);

export class SaliencyView extends CardListView<RunCard> {
  constructor(ctx: ViewContext) {
    super({
      key: (entry) => entry.run,
      create: (run, entries) => new RunCard(run, entries[0].color, ctx),
      fits: (card, entries) => card.color === entries[0].color,
    });
  }
}

/** How panels are drawn: the image geometry, the sign mode, device and CSS px per pixel. */
interface Frame {
  g: Geometry;
  mode: SignMode;
  scale: number;
  cssScale: number;
}

/** The maps shown in one grid cell's panel, for hover. */
interface PanelData {
  kind: "source" | "map" | "overlay" | "baseline" | "baseline-map";
  maps: SaliencyMaps;
  row: number; // index into maps.samples
  reduced: Float64Array | null; // the reduced map whose value hovering shows
  input: NdArray; // the input whose value hovering shows
  inputRow: number; // index into the input's first axis
}

class RunCard {
  readonly element: HTMLElement;
  private readonly methodSelect = el("select", "ds-select");
  private readonly signSelect = el("select", "ds-select");
  private readonly clipSelect = el("select", "ds-select");
  private readonly compareBox = el("input");
  private readonly pagerLabel = el("span", "ds-muted");
  private readonly prev = el("button", "", "‹");
  private readonly next = el("button", "", "›");
  private readonly pager = el("span", "ds-sal-pager");
  private readonly sliderA: StepSlider;
  private readonly sliderB: StepSlider;
  private readonly sliderBBox = el("div");
  private readonly messages = el("div");
  private readonly legend = el("div", "ds-sal-legend");
  private readonly grid = el("div", "ds-sal-grid");
  private entries: ViewEntry[] = [];
  private tag = "";
  private steps: SaliencySteps | null = null;
  private mapsA: SaliencyMaps | null = null;
  private mapsB: SaliencyMaps | null = null;
  private offset = 0;
  private visible = false;
  private stale = true;
  private token = 0;
  private bSet = false;
  /** The tag whose token sign mode was chosen (signed or absolute, by its reduction). */
  private signChosenFor = "";
  private readonly cache = new Map<string, Promise<SaliencyMaps>>();

  constructor(
    readonly run: string,
    readonly color: string,
    private readonly ctx: ViewContext,
  ) {
    this.element = el("section", "ds-card");
    this.element.dataset.testid = "saliency-card";
    this.element.dataset.run = run;
    const head = el("div", "ds-card-head");
    const titles = el("div");
    const title = el("h2", "ds-card-title");
    title.append(swatch(color), " ", run);
    const sub = el("div", "ds-card-sub", "saliency maps of fixed probe inputs over training");
    titles.append(title, sub);
    head.append(titles);

    this.methodSelect.dataset.testid = "saliency-method";
    this.methodSelect.addEventListener("change", () => this.selectTag(this.methodSelect.value));
    for (const mode of SIGN_MODES) this.signSelect.append(option(mode, mode));
    this.signSelect.value = "absolute";
    this.signSelect.dataset.testid = "saliency-sign";
    this.signSelect.addEventListener("change", () => this.draw());
    for (const p of CLIP_CHOICES) {
      this.clipSelect.append(option(String(p), p === 100 ? "none (max)" : `${p}th percentile`));
    }
    this.clipSelect.value = String(DEFAULT_CLIP);
    this.clipSelect.dataset.testid = "saliency-clip";
    this.clipSelect.addEventListener("change", () => this.draw());
    this.compareBox.type = "checkbox";
    this.compareBox.dataset.testid = "saliency-compare";
    this.compareBox.addEventListener("change", () => {
      this.sliderBBox.hidden = !this.compareBox.checked;
      this.loadMaps();
    });
    this.prev.dataset.testid = "saliency-prev";
    this.next.dataset.testid = "saliency-next";
    this.prev.setAttribute("aria-label", "Previous samples");
    this.next.setAttribute("aria-label", "Next samples");
    this.prev.addEventListener("click", () => this.page(-1));
    this.next.addEventListener("click", () => this.page(1));
    this.pagerLabel.dataset.testid = "saliency-pager";
    this.pager.append(this.prev, this.pagerLabel, this.next);

    const controls = el("div", "ds-sal-controls");
    controls.append(
      labelled("Method", this.methodSelect),
      labelled("Sign", this.signSelect),
      labelled("Clip at", this.clipSelect),
      labelled("Compare two steps", this.compareBox),
      this.pager,
    );

    this.sliderA = new StepSlider(() => this.loadMaps(), "Step");
    this.sliderB = new StepSlider(() => this.loadMaps(), "Compare with");
    const sliderABox = el("div");
    sliderABox.dataset.testid = "saliency-slider-a";
    sliderABox.append(this.sliderA.element);
    this.sliderBBox.dataset.testid = "saliency-slider-b";
    this.sliderBBox.append(this.sliderB.element);
    this.sliderBBox.hidden = true;
    const sliders = el("div", "ds-sal-sliders");
    sliders.append(sliderABox, this.sliderBBox);

    this.grid.dataset.testid = "saliency-grid";
    this.element.append(head, controls, sliders, this.messages, this.legend, this.grid);
    ctx.visibility.observe(this.element, (visible) => {
      this.visible = visible;
      if (visible && this.stale) this.refresh();
    });
  }

  dispose(): void {
    this.ctx.visibility.unobserve(this.element);
    hideTooltip();
  }

  update(entries: readonly ViewEntry[]): void {
    this.entries = [...entries];
    const readable = this.entries.filter((e) => e.info.error === undefined);
    this.methodSelect.replaceChildren(...readable.map((e) => option(e.tag, e.tag)));
    const errors = this.entries.filter((e) => e.info.error !== undefined);
    this.element.querySelectorAll("[data-testid=tag-error]").forEach((n) => n.remove());
    for (const e of errors) {
      const box = el("div", "ds-error", `cannot show ${e.tag}: ${e.info.error}`);
      box.dataset.testid = "tag-error";
      this.messages.before(box);
    }
    if (!readable.some((e) => e.tag === this.tag)) {
      this.selectTag(readable.length ? readable[0].tag : "");
    } else {
      this.methodSelect.value = this.tag;
    }
  }

  refresh(): void {
    if (!this.visible) {
      this.stale = true;
      return;
    }
    this.stale = false;
    void this.loadSteps();
  }

  private selectTag(tag: string): void {
    this.tag = tag;
    this.methodSelect.value = tag;
    this.steps = null;
    this.mapsA = this.mapsB = null;
    this.offset = 0;
    this.bSet = false;
    this.element.dataset.tag = tag;
    this.grid.replaceChildren();
    this.grid.dataset.drawn = "false";
    this.messages.replaceChildren();
    this.legend.replaceChildren();
    this.refresh();
  }

  private async loadSteps(): Promise<void> {
    const tag = this.tag;
    if (!tag) return;
    try {
      const steps = await fetchSaliencySteps(this.run, tag);
      if (tag !== this.tag) return;
      this.steps = steps;
      if (steps.inputKind === "tokens" && this.signChosenFor !== tag) {
        this.signChosenFor = tag;
        this.signSelect.value = signedReduction(steps.tokenReduction) ? "signed" : "absolute";
      }
      this.renderPager();
      this.sliderA.setSteps(steps.steps);
      this.sliderB.setSteps(steps.steps);
      if (!this.bSet && steps.steps.length > 0) {
        this.bSet = true;
        this.sliderB.select(steps.steps[0]); // by default: what training changed since the start
      }
      this.loadMaps();
    } catch (error) {
      this.showError(error);
    }
  }

  private page(direction: number): void {
    if (!this.steps) return;
    const next = this.offset + direction * PAGE;
    if (next < 0 || next >= this.steps.numSamples) return;
    this.offset = next;
    this.renderPager();
    this.loadMaps();
  }

  private renderPager(): void {
    const n = this.steps?.numSamples ?? 0;
    this.pager.hidden = n <= PAGE;
    const hi = Math.min(n, this.offset + PAGE);
    this.pagerLabel.textContent = `samples ${this.offset + 1}–${hi} of ${n}`;
    this.prev.disabled = this.offset === 0;
    this.next.disabled = hi >= n;
  }

  private fetchMaps(step: number): Promise<SaliencyMaps> {
    const n = this.steps?.numSamples ?? PAGE;
    const samples = `${this.offset}-${Math.max(this.offset, Math.min(n, this.offset + PAGE) - 1)}`;
    const key = `${this.tag}\n${step}\n${samples}`;
    let pending = this.cache.get(key);
    if (!pending) {
      pending = fetchSaliencyMaps(this.run, this.tag, step, samples);
      pending.catch(() => this.cache.delete(key));
      this.cache.set(key, pending);
      if (this.cache.size > 24) this.cache.delete(this.cache.keys().next().value as string);
    }
    return pending;
  }

  private loadMaps(): void {
    const a = this.sliderA.value;
    if (!this.steps || a === null) return;
    const b = this.compareBox.checked ? this.sliderB.value : null;
    const token = ++this.token;
    this.grid.dataset.drawn = "false";
    Promise.all([this.fetchMaps(a), b === null ? null : this.fetchMaps(b)])
      .then(([mapsA, mapsB]) => {
        if (token !== this.token) return;
        const same = mapsA === this.mapsA && mapsB === this.mapsB && this.grid.childElementCount;
        this.mapsA = mapsA;
        this.mapsB = mapsB;
        if (same) this.grid.dataset.drawn = "true"; // a reload that changed nothing: keep it
        else this.draw();
      })
      .catch((error: unknown) => {
        if (token === this.token) this.showError(error);
      });
  }

  private showError(error: unknown): void {
    const box = el("div", "ds-error", error instanceof Error ? error.message : String(error));
    box.dataset.testid = "saliency-error";
    this.messages.replaceChildren(box);
  }

  private draw(): void {
    const A = this.mapsA;
    const B = this.mapsB;
    if (!A) return;
    const mode = this.signSelect.value as SignMode;
    const p = Number(this.clipSelect.value);
    if (A.inputKind === "tokens") {
      this.drawTokens(A, B, mode, p);
      return;
    }
    const g = geometry(A.inputShape);
    this.messages.replaceChildren();
    if (!g) {
      const shape = A.inputShape.join(", ");
      this.showError(`cannot draw inputs of shape [${shape}]: expected [C, H, W], [H, W] or [L]`);
      return;
    }
    this.renderMessages(A, B);
    this.renderLegend(A.method, mode, p, g);
    const side = Math.max(g.H, g.W);
    const scale = Math.max(1, Math.round(PANEL_PX / side));
    const f: Frame = { g, mode, scale, cssScale: Math.min(scale, (1.5 * PANEL_PX) / side) };
    const hasBaseline = !B && A.baseline !== null && A.baselineMaps !== null;
    const columns: string[] = ["sample", "source"];
    if (hasBaseline) columns.push("baseline", "baseline map");
    if (B) {
      columns.push(`map · step ${A.step}`, `overlay · step ${A.step}`);
      columns.push(`map · step ${B.step}`, `overlay · step ${B.step}`);
    } else {
      columns.push(hasBaseline ? "map (delta)" : "map", "overlay");
    }
    this.grid.style.gridTemplateColumns = `repeat(${columns.length}, max-content)`;
    const cells: HTMLElement[] = columns.map((c) => el("div", "ds-sal-colhead", c));
    const finite = (m: SaliencyMaps, r: number) => (m.nonFinitePerSample[r] ?? 0) === 0;

    const inputsA = A.inputs;
    if (!inputsA) return this.showError("saliency: the step holds no inputs");
    for (let row = 0; row < A.samples.length; row++) {
      cells.push(this.rowHead(A, row));
      const range = valueRange(inputsA.values, row, g);
      const source = imageRgb(inputsA.values, row, g, range);
      const at = { maps: A, row, input: inputsA, inputRow: row };
      cells.push(this.panel({ ...at, kind: "source", reduced: null }, source, f, NaN));

      // Every map of the row shares one clip value, so the row compares at a glance.
      const rowB = B ? B.samples.indexOf(A.samples[row]) : -1;
      const reducedA = finite(A, row) ? reduceMap(A.maps.values, row, g, mode) : null;
      const reducedB =
        B && rowB >= 0 && finite(B, rowB) ? reduceMap(B.maps.values, rowB, g, mode) : null;
      const baseMaps = hasBaseline ? A.baselineMaps : null;
      const reducedBase =
        baseMaps && reducedA
          ? reduceMap(baseMaps.values, baseMaps.shape[0] > 1 ? row : 0, g, mode)
          : null;
      const drawn = [reducedA, reducedBase, reducedB].filter((r): r is Float64Array => r !== null);
      const clip = clipValue(drawn, mode, p);

      if (hasBaseline && A.baseline) {
        const baseline = A.baseline;
        const bRow = baseline.shape[0] > 1 ? row : 0;
        const atBase = { maps: A, row, input: baseline, inputRow: bRow };
        const image = imageRgb(baseline.values, bRow, g, range); // on the source's scale
        cells.push(this.panel({ ...atBase, kind: "baseline", reduced: null }, image, f, NaN));
        cells.push(
          reducedBase
            ? this.panel(
                { ...atBase, kind: "baseline-map", reduced: reducedBase },
                mapRgb(reducedBase, clip, mode).rgb,
                f,
                clip,
              )
            : this.badPanel(A, row, f),
        );
      }
      cells.push(...this.mapPanels(A, row, reducedA, source, clip, f));
      if (B && rowB < 0) {
        cells.push(this.badPanel(B, -1, f), this.badPanel(B, -1, f));
      } else if (B && B.inputs) {
        const inputsB = B.inputs.values;
        const sourceB = imageRgb(inputsB, rowB, g, valueRange(inputsB, rowB, g));
        cells.push(...this.mapPanels(B, rowB, reducedB, sourceB, clip, f));
      }
    }
    this.showGrid(cells, A, B, mode, p);
  }

  /** Put the drawn cells in the grid, with what they show in its data attributes. */
  private showGrid(
    cells: HTMLElement[],
    A: SaliencyMaps,
    B: SaliencyMaps | null,
    mode: SignMode,
    p: number,
  ): void {
    this.grid.replaceChildren(...cells);
    this.grid.dataset.step = String(A.step);
    this.grid.dataset.compareStep = B ? String(B.step) : "";
    this.grid.dataset.mode = mode;
    this.grid.dataset.clip = String(p);
    this.grid.dataset.drawn = "true";
  }

  /** A token series: per sample a row of tokens coloured by their map values. */
  private drawTokens(A: SaliencyMaps, B: SaliencyMaps | null, mode: SignMode, p: number): void {
    this.messages.replaceChildren();
    this.renderMessages(A, B);
    const length = A.inputShape[0] ?? 0;
    const g: Geometry = { C: 1, H: 1, W: length, color: "grey" };
    this.renderLegend(A.method, mode, p, g, A.tokenReduction);
    const columns = ["sample", B ? `tokens · step ${A.step}` : "tokens"];
    if (B) columns.push(`tokens · step ${B.step}`);
    this.grid.style.gridTemplateColumns = `repeat(${columns.length}, max-content)`;
    const cells: HTMLElement[] = columns.map((c) => el("div", "ds-sal-colhead", c));
    const finite = (m: SaliencyMaps, r: number) => (m.nonFinitePerSample[r] ?? 0) === 0;
    for (let row = 0; row < A.samples.length; row++) {
      cells.push(this.rowHead(A, row));
      const rowB = B ? B.samples.indexOf(A.samples[row]) : -1;
      const reducedA = reduceMap(A.maps.values, row, g, mode);
      const reducedB = B && rowB >= 0 ? reduceMap(B.maps.values, rowB, g, mode) : null;
      const drawn = [finite(A, row) ? reducedA : null, B && finite(B, rowB) ? reducedB : null];
      const clip = clipValue(
        drawn.filter((r): r is Float64Array => r !== null),
        mode,
        p,
      );
      cells.push(this.tokens(A, row, reducedA, clip, mode));
      if (B) {
        cells.push(
          reducedB ? this.tokens(B, rowB, reducedB, clip, mode) : this.missingTokens(B),
        );
      }
    }
    this.showGrid(cells, A, B, mode, p);
  }

  private tokens(
    m: SaliencyMaps,
    row: number,
    reduced: Float64Array,
    clip: number,
    mode: SignMode,
  ): HTMLElement {
    const ids = m.tokenIds?.[row] ?? [];
    const texts = m.tokenTexts?.[row] ?? null;
    return tokenRow({
      ids,
      texts,
      reduced,
      clip,
      mode,
      sample: m.samples[row],
      step: m.step,
      onHover: (e, position) => {
        const rows: TooltipRow[] = [
          { field: "token", value: tokenLabel(texts?.[position], ids[position]), strong: true },
          { label: "token id", field: "id", value: String(ids[position]) },
          { label: "position", field: "position", value: String(position) },
          { label: "sample", field: "sample", value: String(m.samples[row]) },
          { label: "step", field: "step", value: String(m.step) },
          { label: "map", field: "value", value: formatValue(reduced[position]) },
          { label: "run", field: "run", value: this.run, color: this.color },
        ];
        showTooltip(rows, e.clientX, e.clientY);
      },
      onLeave: () => hideTooltip(),
    });
  }

  private missingTokens(m: SaliencyMaps): HTMLElement {
    const box = el("div", "ds-sal-bad", `sample not logged at step ${m.step}`);
    box.dataset.testid = "saliency-non-finite";
    box.dataset.count = "0";
    return box;
  }

  private mapPanels(
    m: SaliencyMaps,
    row: number,
    reduced: Float64Array | null,
    source: Uint8ClampedArray,
    clip: number,
    f: Frame,
  ): HTMLElement[] {
    if (!reduced || !m.inputs) return [this.badPanel(m, row, f), this.badPanel(m, row, f)];
    const heat = mapRgb(reduced, clip, f.mode);
    const at = { maps: m, row, reduced, input: m.inputs, inputRow: row };
    return [
      this.panel({ ...at, kind: "map" }, heat.rgb, f, clip),
      this.panel({ ...at, kind: "overlay" }, overlayRgb(source, heat), f, clip),
    ];
  }

  private rowHead(m: SaliencyMaps, row: number): HTMLElement {
    const head = el("div", "ds-sal-rowhead");
    head.dataset.testid = "saliency-rowhead";
    head.dataset.sample = String(m.samples[row]);
    head.append(el("div", "ds-sal-idx", `#${m.samples[row]}`));
    const label = m.labels?.[row];
    const prediction = m.predictions?.[row];
    if (label !== undefined) head.append(el("div", "", `label ${label}`));
    if (prediction !== undefined && label === undefined && m.inputKind === "tokens") {
      // A language model's target: its predicted next token (its text when the row has it).
      const at = m.tokenIds?.[row]?.indexOf(prediction) ?? -1;
      const text = at >= 0 ? m.tokenTexts?.[row]?.[at] : undefined;
      const shown = text === undefined ? `#${prediction}` : `#${prediction} “${text.trim()}”`;
      const line = el("div", "ds-muted", `predicted ${shown}`);
      line.dataset.testid = "saliency-prediction";
      line.dataset.wrong = "false";
      line.title = "the predicted class or next token (no label was logged)";
      head.append(line);
    } else if (prediction !== undefined) {
      const wrong = label !== undefined && prediction !== label;
      const text = `${wrong ? "✗" : "✓"} predicted ${prediction}`;
      const line = el("div", wrong ? "ds-sal-wrong" : "ds-sal-right", text);
      line.dataset.testid = "saliency-prediction";
      line.dataset.wrong = String(wrong);
      if (wrong) line.title = "the prediction differs from the label";
      head.append(line);
    }
    const error = m.completenessError?.[row];
    if (error !== undefined) {
      const line = el("div", "ds-muted", `completeness error ${formatValue(error)}`);
      line.title =
        "Σ attributions − (f(x) − f(baseline)): near 0 when integrated gradients took enough steps";
      head.append(line);
    }
    return head;
  }

  private panel(data: PanelData, rgb: Uint8ClampedArray, f: Frame, clip: number): HTMLElement {
    const canvas = el("canvas", "ds-sal-panel");
    paint(canvas, rgb, f.g, f.scale);
    canvas.style.width = `${f.g.W * f.cssScale}px`;
    canvas.style.height = `${f.g.H * f.cssScale}px`;
    const d = canvas.dataset;
    d.testid = "saliency-panel";
    d.panel = data.kind;
    d.sample = String(data.maps.samples[data.row]);
    d.step = String(data.maps.step);
    if (Number.isFinite(clip)) d.clipValue = String(clip);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${data.kind} of sample ${d.sample} at step ${d.step}`);
    canvas.addEventListener("mousemove", (e) => this.hover(e, canvas, data, f.g));
    canvas.addEventListener("mouseleave", () => hideTooltip());
    return canvas;
  }

  /** In place of a map that holds NaN/±Inf (or a sample the step lacks): a message. */
  private badPanel(m: SaliencyMaps, row: number, f: Frame): HTMLElement {
    const count = row >= 0 ? (m.nonFinitePerSample[row] ?? 0) : 0;
    const text =
      row < 0
        ? `sample not logged at step ${m.step}`
        : `not drawn: ${count} non-finite value${count === 1 ? "" : "s"} (NaN/±Inf) in this map`;
    const box = el("div", "ds-sal-bad", text);
    box.dataset.testid = "saliency-non-finite";
    box.dataset.count = String(count);
    box.style.width = `${f.g.W * f.cssScale}px`;
    box.style.height = `${f.g.H * f.cssScale}px`;
    return box;
  }

  private hover(e: MouseEvent, canvas: HTMLCanvasElement, data: PanelData, g: Geometry): void {
    const rect = canvas.getBoundingClientRect();
    const x = Math.floor(((e.clientX - rect.left) / rect.width) * g.W);
    const y = Math.floor(((e.clientY - rect.top) / rect.height) * g.H);
    if (x < 0 || y < 0 || x >= g.W || y >= g.H) return hideTooltip();
    const p = y * g.W + x;
    const plane = g.H * g.W;
    const base = data.inputRow * g.C * plane;
    const inputs: string[] = [];
    for (let c = 0; c < g.C && c < 4; c++) {
      inputs.push(formatValue(data.input.values[base + c * plane + p]));
    }
    if (g.C > 4) inputs.push("…");
    const m = data.maps;
    const rows: TooltipRow[] = [
      { field: "panel", value: data.kind, strong: true },
      { label: "sample", field: "sample", value: String(m.samples[data.row]) },
      { label: "step", field: "step", value: String(m.step) },
      { label: "pixel (x, y)", field: "pixel", value: `${x}, ${y}` },
    ];
    if (data.reduced) {
      const mode = this.signSelect.value as SignMode;
      const how =
        g.C === 1 ? "" : mode === "absolute" ? " (max |·| over channels)" : " (sum over channels)";
      rows.push({ label: `map${how}`, field: "value", value: formatValue(data.reduced[p]) });
    }
    const ofBaseline = data.kind === "baseline" || data.kind === "baseline-map";
    const label = ofBaseline ? "baseline" : "input";
    rows.push({ label, field: "input", value: inputs.join(", ") });
    rows.push({ label: "run", field: "run", value: this.run, color: this.color });
    showTooltip(rows, e.clientX, e.clientY);
  }

  private renderMessages(A: SaliencyMaps, B: SaliencyMaps | null): void {
    for (const m of B ? [A, B] : [A]) {
      const samples = m.nonFinitePerSample.filter((n) => n > 0).length;
      if (m.nonFinite > 0 || samples > 0) {
        const total = m.nonFinitePerSample.reduce((a, b) => a + b, 0);
        const box = el(
          "div",
          "ds-warn",
          `step ${m.step}: ${total} non-finite map value${total === 1 ? "" : "s"} (NaN/±Inf) ` +
            `in ${samples} of the ${m.samples.length} samples shown ` +
            `(${m.nonFinite} in the whole step); those maps are not drawn.`,
        );
        box.dataset.testid = "saliency-non-finite-summary";
        box.dataset.count = String(total);
        this.messages.append(box);
      }
    }
  }

  private renderLegend(
    method: string,
    mode: SignMode,
    p: number,
    g: Geometry,
    tokenReduction?: string,
  ): void {
    const bar = el("div", "ds-sal-bar");
    bar.style.background = cssGradient((t) => legendColor(mode, t));
    const clip = p === 100 ? "max" : `p${p}`;
    const ends: Record<SignMode, [string, string]> = {
      absolute: ["0", `${clip} of |map|`],
      positive: ["0", `${clip} of positive part`],
      negative: ["0", `${clip} of −(negative part)`],
      signed: [`−${clip} of |map|`, `+${clip}`],
    };
    const reduce =
      g.C === 1
        ? ""
        : mode === "absolute"
          ? ` · ${g.C} channels: max |·|`
          : ` · ${g.C} channels: summed`;
    const units = METHOD_UNITS[method] ?? "as logged";
    const tokens = tokenReduction !== undefined;
    const how = tokens
      ? `one scale per sample row · per token: ${tokenReduction || "as logged"}`
      : `one scale per sample row${reduce} · source scaled min–max`;
    const title = tokens
      ? `${method || "map"} over the input embeddings: ${units.split("input").join("embedding")}`
      : `${method || "map"}: ${units}`;
    this.legend.replaceChildren(
      el("span", "ds-legend-title", title),
      el("span", "", ends[mode][0]),
      bar,
      el("span", "", ends[mode][1]),
      el("span", "ds-muted", how),
    );
    this.legend.dataset.testid = "saliency-legend";
  }
}

function option(value: string, text: string): HTMLOptionElement {
  const o = el("option", "", text);
  o.value = value;
  return o;
}

function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  const label = el("label");
  const checkbox = control instanceof HTMLInputElement && control.type === "checkbox";
  if (checkbox) label.append(control, text);
  else label.append(text, control);
  return label;
}
