// Channel correlations: one card per tag. Each selected run gets a heatmap of its Pearson
// matrix at the chosen step (diverging colours fixed to [-1, 1]), with an order toggle
// (original / clustered / matched), drag-to-zoom and dead-channel marks; cross-network tags
// (deepscope.compare) also get the sorted matched-correlation curves of semi- and bipartite
// matching side by side, runs overlaid in their colours, and beside them Li et al.'s table
// (./regression_table: each channel's least-squares and L1 error, the L1 channel count, the
// layer means and the pair's CKA). Each run's panel: ./run_panel.

import { cssGradient } from "../colormap";
import { cardHead, el } from "../dom";
import { dashFor } from "../palette";
import { StepSlider } from "../slider";
import { addStyles } from "../style";
import { ReloadWhenVisible } from "../reload_when_visible";
import { CardListView } from "../views/card_list";
import type { RevealTarget, ViewContext, ViewEntry } from "../views/kind_view";
import {
  fetchMatching,
  fetchRegression,
  fetchSteps,
  type BlockReduction,
  type ChannelOrder,
  type CorrelationSteps,
} from "./api";
import { DEAD_COLOR, rhoRamp } from "./heatmap";
import { MatchingChart, type MatchingLine } from "./matching_chart";
import { RegressionTable, type RegressionEntry } from "./regression_table";
import { RunPanel, type PanelHost } from "./run_panel";

const MAX_SIDE = 420;

addStyles(`
.ds-corr-controls { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; margin: 4px 0 8px; }
.ds-corr-order { display: inline-flex; border: 1px solid #c6c6c6; border-radius: 4px; overflow: hidden; }
.ds-corr-order button { border: 0; background: #fff; padding: 3px 10px; cursor: pointer; font-size: 12px; }
.ds-corr-order button + button { border-left: 1px solid #c6c6c6; }
.ds-corr-order button[aria-pressed="true"] { background: #fff3e0; color: #e65100; font-weight: 500; }
.ds-corr-order button:disabled { color: #bdbdbd; cursor: default; }
.ds-corr-facts { font-size: 11px; color: #616161; }
.ds-corr-panels { display: flex; flex-wrap: wrap; gap: 12px 24px; }
.ds-corr-panel { min-width: 260px; }
.ds-corr-panel-head { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; font-size: 12px; margin-bottom: 2px; }
.ds-corr-range text { font: 10px Roboto, sans-serif; fill: #9e9e9e; }
.ds-corr-curves { display: flex; flex-wrap: wrap; gap: 12px 24px; margin-top: 12px; border-top: 1px solid #eee; padding-top: 10px; }
.ds-corr-curve { flex: 1; min-width: 260px; }
.ds-corr-legend { display: flex; align-items: center; gap: 6px; font-size: 11px; color: #424242; }
.ds-corr-legend .ds-colorbar-bar { width: 160px; }
.ds-corr-ticks { display: flex; justify-content: space-between; width: 160px; font-size: 10px; color: #616161; }
.ds-corr-panel [hidden], .ds-corr-curves[hidden] { display: none; }
.ds-corr-panel .ds-error { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 520px; }
.ds-corr-regression { flex-basis: 100%; }
.ds-corr-reg-run { margin: 4px 0 10px; }
.ds-corr-reg-head { display: flex; align-items: center; gap: 8px; font-size: 12px; margin-bottom: 4px; }
.ds-corr-reg-means, .ds-corr-reg-table { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; }
.ds-corr-reg-means th { text-align: left; font-weight: 400; color: #616161; padding: 1px 12px 1px 0; }
.ds-corr-reg-table th { text-align: right; font-weight: 500; color: #616161; padding: 2px 10px; border-bottom: 1px solid #e0e0e0; position: sticky; top: 0; background: #fff; }
.ds-corr-reg-table td { text-align: right; padding: 2px 10px; border-bottom: 1px solid #f0f0f0; }
.ds-corr-reg-scroll { overflow-y: auto; display: inline-block; margin-top: 6px; }
.ds-corr-regression[hidden] { display: none; }
.ds-dead-box { display: inline-block; width: 10px; height: 10px; background: ${DEAD_COLOR}; }
`);

export class CorrelationView extends CardListView<CorrelationCard> {
  constructor(ctx: ViewContext) {
    super({ key: (entry) => entry.tag, create: (tag) => new CorrelationCard(tag, ctx) });
  }
}

function legend(): HTMLElement {
  const box = el("div", "ds-corr-legend");
  box.dataset.testid = "correlation-legend";
  const bar = el("div", "ds-colorbar-bar");
  bar.style.background = cssGradient(rhoRamp);
  const ticks = el("div", "ds-corr-ticks");
  for (const t of ["-1", "-0.5", "0", "0.5", "1"]) ticks.appendChild(el("span", "", t));
  const scale = el("div");
  scale.append(bar, ticks);
  const dead = el("span", "ds-legend-item");
  dead.append(el("span", "ds-dead-box"), "dead channel");
  box.append(el("span", "ds-legend-title", "Pearson ρ"), scale, dead);
  return box;
}

class CorrelationCard implements PanelHost {
  readonly element: HTMLElement;
  private readonly sub = el("div", "ds-card-sub");
  private readonly orderBox = el("div", "ds-corr-order");
  private readonly orderButtons = new Map<ChannelOrder, HTMLButtonElement>();
  private readonly reduceBox = el("div", "ds-corr-order");
  private readonly reduceButtons = new Map<BlockReduction, HTMLButtonElement>();
  private reduce: BlockReduction = "mean";
  private readonly slider: StepSlider;
  private readonly panelsEl = el("div", "ds-corr-panels");
  private readonly curvesEl = el("div", "ds-corr-curves");
  private readonly semi = new MatchingChart(
    "semi",
    "Semi-matching: each channel of A to its best channel of B",
  );
  private readonly bipartite = new MatchingChart("bipartite", "Bipartite matching: one-to-one");
  private readonly regressionTable = new RegressionTable();
  private regressions = new Map<string, RegressionEntry>();
  private readonly panels = new Map<string, RunPanel>();
  private entries: ViewEntry[] = [];
  private steps = new Map<string, CorrelationSteps>();
  private order: ChannelOrder = "original";
  private cross = false;
  private readonly reload: ReloadWhenVisible;
  private matchings = new Map<string, MatchingLine>();
  /** The step `reveal` asked for, until the steps are known. */
  private pendingStep: number | null = null;

  constructor(
    readonly tag: string,
    ctx: ViewContext,
  ) {
    this.element = el("section", "ds-card");
    this.element.dataset.tag = tag;
    this.element.dataset.testid = "correlation-card";
    const head = cardHead(tag, this.sub, legend());
    this.orderBox.dataset.testid = "order-toggle";
    this.orderBox.setAttribute("role", "group");
    this.orderBox.setAttribute("aria-label", "Channel order");
    const titlesOf: Record<ChannelOrder, string> = {
      original: "channels as numbered in the layer",
      clustered:
        "hierarchical clustering (average linkage on 1 − |ρ|): similar channels side by side",
      matched: "columns permuted by the bipartite matching: matched pairs on the diagonal",
    };
    for (const order of ["original", "clustered", "matched"] as ChannelOrder[]) {
      const b = el("button", "", order);
      b.type = "button";
      b.dataset.order = order;
      b.title = titlesOf[order];
      b.setAttribute("aria-pressed", String(order === this.order));
      b.addEventListener("click", () => this.setOrder(order));
      this.orderButtons.set(order, b);
      this.orderBox.appendChild(b);
    }
    this.reduceBox.dataset.testid = "reduce-toggle";
    this.reduceBox.setAttribute("role", "group");
    this.reduceBox.setAttribute("aria-label", "Overview cells");
    const reduceLabels: Record<BlockReduction, [string, string]> = {
      mean: ["mean", "each overview cell is the mean ρ of its block of channel pairs"],
      max_abs: [
        "max |ρ|",
        "each overview cell is the ρ of largest magnitude in its block: a lone strong pair stays visible",
      ],
    };
    for (const reduce of ["mean", "max_abs"] as BlockReduction[]) {
      const [label, title] = reduceLabels[reduce];
      const b = el("button", "", label);
      b.type = "button";
      b.dataset.reduce = reduce;
      b.title = title;
      b.setAttribute("aria-pressed", String(reduce === this.reduce));
      b.addEventListener("click", () => this.setReduce(reduce));
      this.reduceButtons.set(reduce, b);
      this.reduceBox.appendChild(b);
    }
    this.slider = new StepSlider((step) => this.showStep(step));
    const controls = el("div", "ds-corr-controls");
    controls.append(
      el("span", "ds-muted", "Order"),
      this.orderBox,
      el("span", "ds-muted", "Cells"),
      this.reduceBox,
      this.slider.element,
    );
    this.curvesEl.dataset.testid = "matching-curves";
    this.curvesEl.append(this.semi.element, this.bipartite.element, this.regressionTable.element);
    this.regressionTable.element.hidden = true;
    this.curvesEl.hidden = true;
    this.element.append(head, controls, this.panelsEl, this.curvesEl);
    this.reload = new ReloadWhenVisible({
      generation: ctx.generation,
      reload: () => void this.loadSteps(),
    });
    this.reload.watch(ctx.visibility, this.element);
  }

  update(entries: readonly ViewEntry[]): void {
    const changed = entries.map((e) => `${e.run}:${e.color}`).join("|") !==
      this.entries.map((e) => `${e.run}:${e.color}`).join("|");
    // Series whose metadata cannot be read are not here: the app gives them their section.
    this.entries = entries.filter((e) => e.info.error === undefined);
    const keep = new Set(this.entries.map((e) => e.run));
    for (const [run, panel] of this.panels) {
      if (!keep.has(run)) {
        panel.dispose();
        panel.element.remove();
        this.panels.delete(run);
        this.matchings.delete(run);
        this.regressions.delete(run);
      }
    }
    for (const e of this.entries) {
      let panel = this.panels.get(e.run);
      if (!panel || panel.color !== e.color) {
        panel?.dispose();
        panel?.element.remove();
        panel = new RunPanel(this, e.run, e.color);
        this.panels.set(e.run, panel);
      }
      this.panelsEl.appendChild(panel.element); // keeps run order
    }
    if (changed) this.reload.invalidate();
  }

  refresh(): void {
    this.reload.refresh();
  }

  /** Move the slider to `target`'s step (once the steps are known). */
  reveal(target: RevealTarget): HTMLElement {
    if (this.slider.value !== null) this.slider.select(target.step);
    else this.pendingStep = target.step;
    return this.element;
  }

  resize(): void {
    for (const panel of this.panels.values()) panel.redraw();
    this.drawCurves();
  }

  dispose(): void {
    this.reload.dispose();
    for (const panel of this.panels.values()) panel.dispose();
    this.panels.clear();
  }

  panelSide(): number {
    const width = this.panelsEl.clientWidth || this.element.clientWidth || 800;
    const perRun = width / Math.max(1, Math.min(3, this.panels.size)) - 74;
    return Math.max(200, Math.min(MAX_SIDE, Math.floor(perRun)));
  }

  private setOrder(order: ChannelOrder): void {
    if (order === this.order || (order === "matched" && !this.cross)) return;
    this.order = order;
    for (const [o, b] of this.orderButtons) b.setAttribute("aria-pressed", String(o === order));
    for (const panel of this.panels.values()) panel.resetZoom(false);
    const step = this.slider.value;
    if (step !== null) this.showStep(step);
  }

  private setReduce(reduce: BlockReduction): void {
    if (reduce === this.reduce) return;
    this.reduce = reduce;
    for (const [r, b] of this.reduceButtons) b.setAttribute("aria-pressed", String(r === reduce));
    const step = this.slider.value;
    if (step !== null) for (const panel of this.panels.values()) panel.load(step);
  }

  reduceFor(): BlockReduction {
    return this.reduce;
  }

  private async loadSteps(): Promise<void> {
    const results = await Promise.all(
      this.entries.map(async (e) => {
        try {
          return await fetchSteps(e.run, this.tag);
        } catch (error) {
          this.panels.get(e.run)?.showError(error);
          return null;
        }
      }),
    );
    const all = new Set<number>();
    for (const r of results) {
      if (!r) continue;
      this.steps.set(r.run, r);
      r.steps.forEach((s) => all.add(s));
    }
    this.cross = results.some((r) => r?.cross === true);
    const first = results.find((r) => r !== null);
    this.sub.textContent = !first
      ? ""
      : this.cross
        ? `Pearson ρ between channels of ${first.rowName || "network A"} (rows) and ` +
          `${first.colName || "network B"} (columns), over all probe inputs and positions`
        : `Pearson ρ between the layer's channels, over all probe inputs and positions`;
    const matched = this.orderButtons.get("matched");
    if (matched) {
      matched.disabled = !this.cross;
      matched.title = this.cross
        ? matched.title
        : "for cross-network tags (deepscope.compare) only";
    }
    if (!this.cross && this.order === "matched") this.setOrder("original");
    this.curvesEl.hidden = !this.cross;
    const before = this.slider.value;
    this.slider.setSteps([...all].sort((a, b) => a - b));
    if (this.pendingStep !== null && this.slider.value !== null) {
      this.slider.select(this.pendingStep); // shows that step
      this.pendingStep = null;
      return;
    }
    // setSteps calls back only when the step changed; a refresh reloads the same step.
    const now = this.slider.value;
    if (now !== null && now === before) this.showStep(now);
  }

  /** The step of `run` closest to the slider's step. */
  runStep(run: string, step: number): number | null {
    const steps = this.steps.get(run)?.steps ?? [];
    let best: number | null = null;
    for (const s of steps) {
      if (best === null || Math.abs(s - step) < Math.abs(best - step)) best = s;
    }
    return best;
  }

  private showStep(step: number): void {
    for (const panel of this.panels.values()) panel.load(step);
    if (this.cross) {
      this.entries.forEach((e, k) => {
        const s = this.runStep(e.run, step);
        if (s === null) return;
        fetchMatching(e.run, this.tag, s)
          .then((m) => {
            this.matchings.set(e.run, {
              run: e.run,
              color: e.color,
              dash: dashFor(k),
              step: m.step,
              sorted: m.semi.sorted,
              mean: m.semi.mean,
            });
            this.matchings.set(`${e.run}\u0000b`, {
              run: e.run,
              color: e.color,
              dash: dashFor(k),
              step: m.step,
              sorted: m.bipartite.sorted,
              mean: m.bipartite.mean,
            });
            this.drawCurves();
          })
          .catch((error: unknown) => this.panels.get(e.run)?.showError(error));
        fetchRegression(e.run, this.tag, s)
          .then((data) => {
            this.regressions.set(e.run, { run: e.run, color: e.color, data });
            this.drawRegressions();
          })
          .catch((error: unknown) => this.panels.get(e.run)?.showError(error));
      });
    }
  }

  private drawRegressions(): void {
    const shown: RegressionEntry[] = [];
    for (const e of this.entries) {
      const r = this.regressions.get(e.run);
      if (r) shown.push(r);
    }
    this.regressionTable.draw(shown);
  }

  private drawCurves(): void {
    if (!this.cross) return;
    const semi: MatchingLine[] = [];
    const bip: MatchingLine[] = [];
    for (const e of this.entries) {
      const s = this.matchings.get(e.run);
      const b = this.matchings.get(`${e.run}\u0000b`);
      if (s) semi.push(s);
      if (b) bip.push(b);
    }
    const width = (this.curvesEl.clientWidth || 800) / 2 - 12;
    this.semi.draw(semi, Math.max(260, width));
    this.bipartite.draw(bip, Math.max(260, width));
  }

  orderFor(): ChannelOrder {
    return this.order;
  }

  tagName(): string {
    return this.tag;
  }
}
