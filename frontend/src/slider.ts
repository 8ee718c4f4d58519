// A step slider, as TensorBoard's image and histogram dashboards have: it moves over the
// steps a series kept (not every integer), follows the newest step until the user picks
// another, and keeps the picked step across reloads.

import { el } from "./dom";
import { nearestStepIndex } from "./stats";

export class StepSlider {
  readonly element: HTMLElement;
  private readonly input = el("input", "ds-slider-input");
  private readonly label = el("span", "ds-slider-label");
  private steps: number[] = [];
  private index = -1;
  /** True until the user moves the slider: new steps then move it to the newest. */
  private followLatest = true;
  private timer: number | undefined;

  /**
   * @param onChange called with the selected step after the user moves the slider
   *   (debounced while dragging) or after `setSteps` moved it.
   */
  constructor(
    private readonly onChange: (step: number) => void,
    title = "Step",
  ) {
    this.element = el("div", "ds-slider");
    this.element.dataset.testid = "step-slider";
    this.input.type = "range";
    this.input.min = "0";
    this.input.step = "1";
    this.input.setAttribute("aria-label", title);
    this.input.addEventListener("input", () => {
      this.followLatest = false;
      this.index = Number(this.input.value);
      this.renderLabel();
      window.clearTimeout(this.timer);
      this.timer = window.setTimeout(() => this.emit(), 60);
    });
    this.input.addEventListener("change", () => {
      window.clearTimeout(this.timer);
      this.emit();
    });
    this.element.append(el("span", "ds-slider-title", title), this.input, this.label);
    this.renderLabel();
  }

  /** The selected step, or null while there are none. */
  get value(): number | null {
    return this.index >= 0 ? this.steps[this.index] : null;
  }

  /** The steps to choose from (ascending). Keeps the selection, or the nearest kept step. */
  setSteps(steps: readonly number[]): void {
    const previous = this.value;
    this.steps = [...steps];
    if (this.steps.length === 0) {
      this.index = -1;
    } else if (this.followLatest || previous === null) {
      this.index = this.steps.length - 1;
    } else {
      this.index = nearestStepIndex(this.steps, previous);
    }
    this.input.max = String(Math.max(0, this.steps.length - 1));
    this.input.value = String(Math.max(0, this.index));
    this.input.disabled = this.steps.length < 2;
    this.renderLabel();
    const now = this.value;
    if (now !== null && now !== previous) this.onChange(now);
  }

  /** Select `step` (or the nearest kept one) as if the user had. */
  select(step: number): void {
    if (this.steps.length === 0) return;
    this.followLatest = false;
    this.index = nearestStepIndex(this.steps, step);
    this.input.value = String(this.index);
    this.renderLabel();
    this.emit();
  }

  private emit(): void {
    const step = this.value;
    if (step !== null) this.onChange(step);
  }

  private renderLabel(): void {
    this.label.textContent =
      this.index < 0
        ? "no steps"
        : `${this.steps[this.index]}  (${this.index + 1} of ${this.steps.length})`;
    this.element.dataset.step = this.index < 0 ? "" : String(this.steps[this.index]);
  }
}
