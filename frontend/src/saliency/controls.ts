// The saliency card's controls: method (the run's saliency tags), sign mode, percentile
// clipping, compare mode, the sample pager, and the step sliders (B only when comparing).

import { el } from "../dom";
import { StepSlider } from "../slider";
import { Pager } from "./paging";
import { SIGN_MODES, type SignMode } from "./render";

export const CLIP_CHOICES: readonly number[] = [100, 99.9, 99, 95];
export const DEFAULT_CLIP = 99;

export interface ControlEvents {
  /** The user chose another method (tag). */
  method: (tag: string) => void;
  /** Sign mode or clipping changed: redraw what is loaded. */
  redraw: () => void;
  /** A step, the compare mode or the page changed: load the maps to draw. */
  load: () => void;
}

export class SaliencyControls {
  /** The row of selects, the compare box and the pager. */
  readonly element = el("div", "ds-sal-controls");
  /** The step sliders, below the row. */
  readonly sliders = el("div", "ds-sal-sliders");
  readonly pager: Pager;
  readonly sliderA: StepSlider;
  readonly sliderB: StepSlider;
  private readonly methodSelect = el("select", "ds-select");
  private readonly signSelect = el("select", "ds-select");
  private readonly clipSelect = el("select", "ds-select");
  private readonly compareBox = el("input");
  private readonly sliderBBox = el("div");

  constructor(events: ControlEvents) {
    this.methodSelect.dataset.testid = "saliency-method";
    this.methodSelect.addEventListener("change", () => events.method(this.methodSelect.value));
    for (const mode of SIGN_MODES) this.signSelect.append(option(mode, mode));
    this.signSelect.value = "absolute";
    this.signSelect.dataset.testid = "saliency-sign";
    this.signSelect.addEventListener("change", () => events.redraw());
    for (const p of CLIP_CHOICES) {
      this.clipSelect.append(option(String(p), p === 100 ? "none (max)" : `${p}th percentile`));
    }
    this.clipSelect.value = String(DEFAULT_CLIP);
    this.clipSelect.dataset.testid = "saliency-clip";
    this.clipSelect.addEventListener("change", () => events.redraw());
    this.compareBox.type = "checkbox";
    this.compareBox.dataset.testid = "saliency-compare";
    this.compareBox.addEventListener("change", () => {
      this.sliderBBox.hidden = !this.compareBox.checked;
      events.load();
    });
    this.pager = new Pager(() => events.load());
    this.element.append(
      labelled("Method", this.methodSelect),
      labelled("Sign", this.signSelect),
      labelled("Clip at", this.clipSelect),
      labelled("Compare two steps", this.compareBox),
      this.pager.element,
    );

    this.sliderA = new StepSlider(() => events.load(), "Step");
    this.sliderB = new StepSlider(() => events.load(), "Compare with");
    const sliderABox = el("div");
    sliderABox.dataset.testid = "saliency-slider-a";
    sliderABox.append(this.sliderA.element);
    this.sliderBBox.dataset.testid = "saliency-slider-b";
    this.sliderBBox.append(this.sliderB.element);
    this.sliderBBox.hidden = true;
    this.sliders.append(sliderABox, this.sliderBBox);
  }

  /** The methods (tags) to choose from, and the one chosen. */
  setMethods(tags: readonly string[]): void {
    this.methodSelect.replaceChildren(...tags.map((t) => option(t, t)));
  }

  set method(tag: string) {
    this.methodSelect.value = tag;
  }

  get mode(): SignMode {
    return this.signSelect.value as SignMode;
  }

  set mode(mode: SignMode) {
    this.signSelect.value = mode;
  }

  /** The clipping percentile (100: the max). */
  get clip(): number {
    return Number(this.clipSelect.value);
  }

  get comparing(): boolean {
    return this.compareBox.checked;
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
