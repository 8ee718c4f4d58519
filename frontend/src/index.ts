// Entry point: TensorBoard imports this module in the tab's iframe and calls render().

import { App } from "./app";
import { injectStyles } from "./style";

let started = false;

export function render(): void {
  if (started) return;
  started = true;
  injectStyles();
  new App(document.body).start();
}
