// Saliency: one card per run. A method selector (the run's saliency tags), sign mode,
// percentile clipping, a step slider and a compare mode (two steps side by side); then a
// grid with one row per probe sample: source, map, overlay (and for baseline-subtracted
// methods the baseline and its map), with the label and the prediction. A token series
// (a text model) is drawn as rows of coloured tokens instead. The pieces: ./controls,
// ./paging, ./maps_cache, ./grid (and its ./hover), ./legend, ./notes, ./styles.

import "./styles";
import { cardHead, el, swatch } from "../dom";
import { ReloadWhenVisible } from "../reload_when_visible";
import { hideTooltip } from "../tooltip";
import { CardListView } from "../views/card_list";
import type { ViewContext, ViewEntry } from "../views/kind_view";
import { fetchSaliencySteps, type SaliencyMaps, type SaliencySteps } from "./api";
import { SaliencyControls } from "./controls";
import { SaliencyGrid } from "./grid";
import { legendItems } from "./legend";
import { MapsCache } from "./maps_cache";
import { PAGE } from "./paging";
import { errorNote, nonFiniteNotes, stepErrorNote } from "./notes";
import { geometry, type Geometry } from "./render";
import { signedReduction } from "./tokens";

export class SaliencyView extends CardListView<RunCard> {
  constructor(ctx: ViewContext) {
    super({
      key: (entry) => entry.run,
      create: (run, entries) => new RunCard(run, entries[0].color, ctx),
      fits: (card, entries) => card.color === entries[0].color,
    });
  }
}

class RunCard {
  readonly element: HTMLElement;
  private readonly controls: SaliencyControls;
  private readonly messages = el("div", "ds-sal-messages");
  private readonly legend = el("div", "ds-sal-legend");
  private readonly grid: SaliencyGrid;
  private readonly cache: MapsCache;
  private readonly reload: ReloadWhenVisible;
  private entries: ViewEntry[] = [];
  private tag = "";
  private steps: SaliencySteps | null = null;
  private mapsA: SaliencyMaps | null = null;
  private mapsB: SaliencyMaps | null = null;
  private token = 0;
  private bSet = false;
  /** The tag whose token sign mode was chosen (signed or absolute, by its reduction). */
  private signChosenFor = "";

  constructor(
    readonly run: string,
    readonly color: string,
    ctx: ViewContext,
  ) {
    this.element = el("section", "ds-card");
    this.element.dataset.testid = "saliency-card";
    this.element.dataset.run = run;
    const sub = el("div", "ds-card-sub", "saliency maps of fixed probe inputs over training");
    const head = cardHead([swatch(color), " ", run], sub);

    this.controls = new SaliencyControls({
      method: (tag) => this.selectTag(tag),
      redraw: () => this.draw(),
      load: () => this.loadMaps(),
    });
    this.cache = new MapsCache(run);
    this.grid = new SaliencyGrid({ run, color, mode: () => this.controls.mode });
    this.element.append(
      head,
      this.controls.element,
      this.controls.sliders,
      this.messages,
      this.legend,
      this.grid.element,
    );
    this.reload = new ReloadWhenVisible({
      generation: ctx.generation,
      reload: () => void this.loadSteps(),
    });
    this.reload.watch(ctx.visibility, this.element);
  }

  dispose(): void {
    this.reload.dispose();
    hideTooltip();
  }

  update(entries: readonly ViewEntry[]): void {
    // Series whose metadata cannot be read are not here: the app gives them their section.
    this.entries = [...entries];
    const readable = this.entries.filter((e) => e.info.error === undefined);
    this.controls.setMethods(readable.map((e) => e.tag));
    if (!readable.some((e) => e.tag === this.tag)) {
      this.selectTag(readable.length ? readable[0].tag : "");
    } else {
      this.controls.method = this.tag;
    }
  }

  refresh(): void {
    this.reload.refresh();
  }

  private selectTag(tag: string): void {
    this.tag = tag;
    this.controls.method = tag;
    this.token++; // maps still on their way are of the tag before: never drawn
    this.steps = null;
    this.mapsA = this.mapsB = null;
    this.controls.pager.reset();
    this.bSet = false;
    this.element.dataset.tag = tag;
    this.grid.clear();
    this.messages.replaceChildren();
    this.legend.replaceChildren();
    this.reload.invalidate();
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
        this.controls.mode = signedReduction(steps.tokenReduction) ? "signed" : "absolute";
      }
      this.controls.pager.setSamples(steps.numSamples);
      const { sliderA, sliderB } = this.controls;
      sliderA.setSteps(steps.steps);
      sliderB.setSteps(steps.steps);
      if (!this.bSet && steps.steps.length > 0) {
        this.bSet = true;
        sliderB.select(steps.steps[0]); // by default: what training changed since the start
      }
      this.loadMaps();
    } catch (error) {
      this.showError(error);
    }
  }

  private loadMaps(): void {
    const a = this.controls.sliderA.value;
    if (!this.steps || a === null) return;
    const b = this.controls.comparing ? this.controls.sliderB.value : null;
    const samples = this.controls.pager.samples();
    const token = ++this.token;
    this.grid.loading();
    Promise.all([
      this.cache.get(this.tag, a, samples),
      b === null ? null : this.cache.get(this.tag, b, samples),
    ])
      .then(([mapsA, mapsB]) => {
        if (token !== this.token) return;
        const pager = this.controls.pager;
        if (mapsA.error === null && pager.learnSamples(mapsA.numSamples)) {
          if (mapsA.samples.length > PAGE) return this.loadMaps(); // now one page of them
        }
        const same = mapsA === this.mapsA && mapsB === this.mapsB && this.grid.hasDrawing;
        this.mapsA = mapsA;
        this.mapsB = mapsB;
        if (same) this.grid.keep(); // a reload that changed nothing: keep it
        else this.draw();
      })
      .catch((error: unknown) => {
        if (token === this.token) this.showError(error);
      });
  }

  private showError(error: unknown): void {
    this.messages.replaceChildren(errorNote(error));
  }

  private draw(): void {
    const A = this.mapsA;
    const B = this.mapsB;
    if (!A) return;
    const mode = this.controls.mode;
    const p = this.controls.clip;
    const drawn = B ? [A, B] : [A];
    const notes = [
      ...drawn.filter((m) => m.error !== null).map(stepErrorNote),
      ...nonFiniteNotes(drawn.filter((m) => m.error === null)),
    ];
    if (A.error !== null) {
      // Step A cannot be read: its error in place of the picture; the other steps still show.
      this.messages.replaceChildren(...notes);
      this.legend.replaceChildren();
      this.grid.drawNothing(A, B, mode, p);
      return;
    }
    if (A.inputKind === "tokens") {
      this.messages.replaceChildren(...notes);
      const g: Geometry = { C: 1, H: 1, W: A.inputShape[0] ?? 0, color: "grey" };
      this.showLegend(A.method, g, A.tokenReduction);
      this.grid.drawTokens(A, B, mode, p);
      return;
    }
    const g = geometry(A.inputShape);
    if (!g) {
      const shape = A.inputShape.join(", ");
      this.showError(`cannot draw inputs of shape [${shape}]: expected [C, H, W], [H, W] or [L]`);
      return;
    }
    if (!A.inputs) {
      this.showError("saliency: the step holds no inputs");
      return;
    }
    this.messages.replaceChildren(...notes);
    this.showLegend(A.method, g);
    this.grid.drawImages(A, B, g, mode, p);
  }

  private showLegend(method: string, g: Geometry, tokenReduction?: string): void {
    const { mode, clip } = this.controls;
    this.legend.replaceChildren(...legendItems(method, mode, clip, g, tokenReduction));
    this.legend.dataset.testid = "saliency-legend";
  }
}
