// Token series (text models): one row of tokens per probe sample, each token's background
// coloured by its map value. Signed maps (sums over the embedding dim, occlusion drops) use
// the diverging map, white at zero; non-negative ones (L2 norms) the sequential map faded
// from white, so that text stays readable on weak tokens.

// Its CSS is in ./styles.

import { el } from "../dom";
import { mapColor, type SignMode } from "./render";

/** Whether a token series' maps are signed, by the reduction the writer recorded. */
export function signedReduction(tokenReduction: string): boolean {
  return !/L2 norm/i.test(tokenReduction);
}

/** A token's background (CSS rgb) and whether its text should be light. */
export function tokenColor(value: number, clip: number, mode: SignMode): [string, boolean] {
  if (!Number.isFinite(value)) return ["rgb(255, 235, 238)", false];
  const [r, g, b, t] = mapColor(value, clip, mode);
  const blend = (c: number) => (mode === "signed" ? c : Math.round(255 * (1 - t) + c * t));
  const [R, G, B] = [blend(r), blend(g), blend(b)];
  const luminance = 0.299 * R + 0.587 * G + 0.114 * B;
  return [`rgb(${R}, ${G}, ${B})`, luminance < 140];
}

/** What a token shows: its text (whitespace kept, empty as ∅), or #id without texts. */
export function tokenLabel(text: string | undefined, id: number): string {
  if (text === undefined) return `#${id}`;
  return text === "" ? "∅" : text;
}

export interface TokenRowData {
  ids: readonly number[];
  texts: readonly string[] | null;
  reduced: Float64Array;
  clip: number;
  mode: SignMode;
  sample: number;
  step: number;
  onHover: (e: MouseEvent, position: number) => void;
  onLeave: () => void;
}

/** One sample's tokens as coloured spans in a wrapping row. */
export function tokenRow(d: TokenRowData): HTMLElement {
  const row = el("div", "ds-sal-tokens");
  row.dataset.testid = "saliency-token-row";
  row.dataset.sample = String(d.sample);
  row.dataset.step = String(d.step);
  row.dataset.clipValue = String(d.clip);
  row.setAttribute("role", "group");
  row.setAttribute("aria-label", `tokens of sample ${d.sample} at step ${d.step}`);
  for (let position = 0; position < d.ids.length; position++) {
    const value = d.reduced[position];
    const span = el("span", "ds-sal-token", tokenLabel(d.texts?.[position], d.ids[position]));
    const [background, light] = tokenColor(value, d.clip, d.mode);
    span.style.background = background;
    span.style.color = light ? "#fff" : "#212121";
    if (!Number.isFinite(value)) span.classList.add("ds-sal-token-bad");
    span.dataset.testid = "saliency-token";
    span.dataset.position = String(position);
    span.dataset.id = String(d.ids[position]);
    span.dataset.value = String(value);
    span.addEventListener("mousemove", (e) => d.onHover(e, position));
    span.addEventListener("mouseleave", d.onLeave);
    row.appendChild(span);
  }
  return row;
}
