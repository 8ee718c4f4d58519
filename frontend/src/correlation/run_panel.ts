// One run's panel of a correlation card: its heatmap at the card's step (in the card's
// order and overview reduction, zoomed by dragging), what the step's channels are (dim,
// samples, too few samples), and their health: dead (zero-variance) channels, non-finite
// values and channels without statistics (./channel_facts). A step's error replaces its
// heatmap; a failed request shows its message.

import { el, swatch } from "../dom";
import { errorText } from "../json";
import {
  StepError,
  fetchChannels,
  fetchMatrix,
  type BlockReduction,
  type ChannelOrder,
  type CorrelationChannels,
  type CorrelationMatrix,
  type MatrixWindow,
} from "./api";
import { channelHealth, channelsText, deadText, nonFiniteText } from "./channel_facts";
import { CorrelationHeatmap } from "./heatmap";

/** Cells per axis asked for: a 2048-channel layer is shown as 256 x 256 block means. */
const OVERVIEW_SIZE = 256;

/** What a panel asks of its card. */
export interface PanelHost {
  tagName(): string;
  orderFor(): ChannelOrder;
  reduceFor(): BlockReduction;
  /** The kept step of `run` nearest the card's step `step`, or null. */
  runStep(run: string, step: number): number | null;
  /** The heatmap's side, CSS px. */
  panelSide(): number;
}

export class RunPanel {
  readonly element = el("div", "ds-corr-panel");
  private readonly heatmap: CorrelationHeatmap;
  private readonly info = el("span", "ds-muted");
  private readonly facts = el("div", "ds-corr-facts");
  private readonly fewSamples = el("div", "ds-warn");
  private readonly dead = el("span", "ds-badge");
  private readonly nonFinite = el("span", "ds-badge");
  private readonly resetButton = el("button", "ds-link", "reset zoom");
  private readonly error = el("div", "ds-error");
  private zoom: MatrixWindow | null = null;
  private step: number | null = null;
  private request = 0;
  private last: CorrelationMatrix | null = null;
  /** The channel statistics of the steps asked for (what the non-finite count comes from). */
  private readonly channels = new Map<number, Promise<CorrelationChannels | null>>();

  constructor(
    private readonly card: PanelHost,
    readonly run: string,
    readonly color: string,
  ) {
    this.element.dataset.run = run;
    this.heatmap = new CorrelationHeatmap({
      run,
      tag: card.tagName(),
      runColor: color,
      onZoom: (w) => {
        this.zoom = w;
        if (this.step !== null) this.load(this.step);
      },
    });
    const head = el("div", "ds-corr-panel-head");
    const name = el("strong", "", run);
    name.style.color = color;
    this.dead.dataset.testid = "dead-count";
    this.dead.hidden = true;
    this.nonFinite.dataset.testid = "non-finite-count";
    this.nonFinite.className = "ds-badge ds-badge-bad";
    this.nonFinite.hidden = true;
    this.nonFinite.title =
      "NaN/±Inf activations are left out of the statistics: a channel with no finite value " +
      "has no mean, spread or correlation (not dead: unknown)";
    this.resetButton.type = "button";
    this.resetButton.dataset.testid = "reset-zoom";
    this.resetButton.hidden = true;
    this.resetButton.addEventListener("click", () => this.resetZoom(true));
    head.append(swatch(color), name, this.info, this.dead, this.nonFinite, this.resetButton);
    this.error.hidden = true;
    this.facts.dataset.testid = "channel-facts";
    this.fewSamples.dataset.testid = "few-samples";
    this.fewSamples.setAttribute("role", "status");
    this.fewSamples.hidden = true;
    this.element.append(head, this.facts, this.fewSamples, this.error, this.heatmap.element);
  }

  /** An error of this run's panel, as plain text; a step's own error replaces its picture. */
  showError(error: unknown): void {
    const message = errorText(error);
    this.error.hidden = false;
    this.error.textContent = message;
    this.error.dataset.testid = error instanceof StepError ? "step-error" : "panel-error";
    if (error instanceof StepError) {
      this.error.dataset.step = String(error.step);
      this.last = null;
      this.heatmap.element.hidden = true;
      this.info.textContent = `step ${error.step}`;
      this.facts.textContent = "";
      this.fewSamples.hidden = true;
      this.dead.hidden = true;
      this.nonFinite.hidden = true;
    }
  }

  resetZoom(reload: boolean): void {
    this.zoom = null;
    this.resetButton.hidden = true;
    if (reload && this.step !== null) this.load(this.step);
  }

  /** The channel statistics of `step` (null when they cannot be read: counts stay unknown). */
  private stats(step: number): Promise<CorrelationChannels | null> {
    let pending = this.channels.get(step);
    if (!pending) {
      pending = fetchChannels(this.run, this.card.tagName(), step).catch(() => {
        this.channels.delete(step);
        return null;
      });
      this.channels.set(step, pending);
      if (this.channels.size > 8) this.channels.delete(this.channels.keys().next().value as number);
    }
    return pending;
  }

  load(cardStep: number): void {
    this.step = cardStep;
    const step = this.card.runStep(this.run, cardStep);
    if (step === null) return;
    const id = ++this.request;
    const matrix = fetchMatrix(
      this.run,
      this.card.tagName(),
      step,
      this.card.orderFor(),
      OVERVIEW_SIZE,
      this.zoom,
      this.card.reduceFor(),
    );
    Promise.all([matrix, this.stats(step)])
      .then(([m, channels]) => {
        if (id !== this.request) return; // a newer request is on its way
        this.show(m, channels);
      })
      .catch((error: unknown) => {
        if (id !== this.request) return;
        this.showError(error);
      });
  }

  private show(m: CorrelationMatrix, channels: CorrelationChannels | null): void {
    this.error.hidden = true;
    this.heatmap.element.hidden = false;
    this.resetButton.hidden = this.zoom === null;
    const [R, C] = m.shape;
    const parts = [`step ${m.step}`, `${R} × ${C} channels`];
    if (m.reduction !== "none") {
      const rb = m.rowEdges[1] - m.rowEdges[0];
      const cb = m.colEdges[1] - m.colEdges[0];
      parts.push(
        m.reduction === "max_abs"
          ? `cells: largest |ρ| of ${rb} × ${cb} blocks`
          : `cells: means of ${rb} × ${cb} blocks`,
      );
    }
    if (m.redundantFraction !== null) {
      const percent = (m.redundantFraction * 100).toFixed(1);
      parts.push(`redundant (|ρ| > 0.9 to another): ${percent}%`);
    }
    this.info.textContent = parts.join(" · ");
    const facts = channelsText(m);
    this.facts.textContent = [facts, `${m.samples.toLocaleString()} samples`]
      .filter((t) => t !== "")
      .join(" · ");
    this.facts.dataset.channelDim = String(m.channelDim);
    this.facts.dataset.samples = String(m.samples);
    this.fewSamples.hidden = !m.rankDeficient || m.samples === 0;
    this.fewSamples.textContent = this.fewSamples.hidden
      ? ""
      : `⚠ ${m.samples.toLocaleString()} samples for ${Math.max(R, C).toLocaleString()} ` +
        `channels: the matrix has rank at most ${Math.max(m.samples - 1, 0)}, so its ` +
        `correlations reflect too few samples, not the channels — log more probe inputs`;

    // Dead (zero variance) only where the statistics are known; non-finite is not dead.
    const rows = channelHealth(R, m.rowDead, m.samples, channels?.rows ?? null);
    const cols = m.cross ? channelHealth(C, m.colDead, m.samples, channels?.cols ?? null) : null;
    const dead = rows.dead.length + (cols?.dead.length ?? 0);
    this.dead.hidden = dead === 0;
    this.dead.className = "ds-badge ds-badge-bad";
    this.dead.dataset.count = String(dead);
    this.dead.textContent = deadText(rows, cols);
    const nonFinite = nonFiniteText(rows, cols);
    this.nonFinite.hidden = nonFinite === "";
    this.nonFinite.textContent = nonFinite;
    this.nonFinite.dataset.count = String(rows.nonFinite + (cols?.nonFinite ?? 0));
    this.nonFinite.dataset.unknown = String(rows.unknown.length + (cols?.unknown.length ?? 0));
    this.last = { ...m, rowDead: rows.dead, colDead: m.cross ? (cols?.dead ?? []) : rows.dead };
    this.redraw();
  }

  redraw(): void {
    if (!this.last) return;
    this.heatmap.draw(this.last, this.card.panelSide());
    this.element.style.width = `${Math.max(260, this.heatmap.width)}px`;
  }

  dispose(): void {
    this.request++;
    this.heatmap.dispose();
  }
}
