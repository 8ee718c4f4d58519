// Scroll an element to the top of the tab and keep it there while the views around it load
// (a card above it draws, charts grow), until the user scrolls themselves.

import { requestsSettled } from "./json";

/** Rounds of "wait for the requests, scroll again": a view loads in steps (steps, then a grid). */
const ROUNDS = 4;
const ROUND_WAIT_MS = 4000;

let current = 0;

/** Bring `element` to the top now, and again as the data around it arrives. */
export function scrollIntoViewSettled(element: HTMLElement): void {
  const mine = ++current;
  let cancelled = false;
  const cancel = () => {
    cancelled = true;
  };
  const events = ["wheel", "touchmove", "keydown", "mousedown"] as const;
  for (const name of events) window.addEventListener(name, cancel, { once: true, passive: true });
  const stop = () => {
    for (const name of events) window.removeEventListener(name, cancel);
  };
  element.scrollIntoView({ block: "start" });
  void (async () => {
    for (let round = 0; round < ROUNDS; round++) {
      await requestsSettled(ROUND_WAIT_MS);
      await nextFrame();
      if (cancelled || mine !== current || !element.isConnected) break;
      if (Math.abs(element.getBoundingClientRect().top - marginTop(element)) > 2) {
        element.scrollIntoView({ block: "start" });
      }
    }
    stop();
  })();
}

function marginTop(element: HTMLElement): number {
  return parseFloat(getComputedStyle(element).scrollMarginTop) || 0;
}

function nextFrame(): Promise<void> {
  return new Promise((resolve) => window.requestAnimationFrame(() => resolve()));
}
