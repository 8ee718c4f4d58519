// reload_when_visible.ts: a reload only while visible, once per refresh generation; a
// refresh while hidden waits for the target to be seen; invalidate() forces one.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ReloadWhenVisible, isStale } from "../src/reload_when_visible";

test("isStale: never loaded, another generation, or the extra test", () => {
  assert.equal(isStale(null, 0, false), true);
  assert.equal(isStale(2, 3, false), true);
  assert.equal(isStale(3, 3, false), false);
  assert.equal(isStale(3, 3, true), true);
});

test("loads when it first becomes visible, and once per generation after", () => {
  let generation = 0;
  let loads = 0;
  const reload = new ReloadWhenVisible({ generation: () => generation, reload: () => loads++ });
  reload.refresh();
  assert.equal(loads, 0, "not visible yet");
  reload.setVisible(true);
  assert.equal(loads, 1);
  reload.setVisible(true);
  reload.refresh();
  assert.equal(loads, 1, "fresh at this generation");
  generation++;
  reload.refresh();
  assert.equal(loads, 2, "a new generation while visible reloads now");
});

test("a refresh while hidden reloads once the target is seen, not before", () => {
  let generation = 0;
  let loads = 0;
  const reload = new ReloadWhenVisible({ generation: () => generation, reload: () => loads++ });
  reload.setVisible(true);
  reload.setVisible(false);
  generation++;
  reload.refresh();
  generation++;
  reload.refresh();
  assert.equal(loads, 1);
  assert.equal(reload.stale, true);
  reload.setVisible(true);
  assert.equal(loads, 2, "one reload for the two refreshes missed");
  assert.equal(reload.stale, false);
});

test("invalidate reloads at the same generation; markLoaded makes it fresh", () => {
  let loads = 0;
  const reload = new ReloadWhenVisible({ reload: () => loads++ });
  reload.markLoaded();
  reload.setVisible(true);
  assert.equal(loads, 0, "the caller loaded already");
  reload.invalidate();
  assert.equal(loads, 1);
  reload.setVisible(false);
  reload.invalidate();
  assert.equal(loads, 1, "hidden: waits");
  reload.setVisible(true);
  assert.equal(loads, 2);
});

test("the extra staleness test (e.g. an age) makes a visible target reload", () => {
  let old = false;
  let loads = 0;
  const reload = new ReloadWhenVisible({ stale: () => old, reload: () => loads++ });
  reload.setVisible(true);
  assert.equal(loads, 1);
  reload.setVisible(true);
  assert.equal(loads, 1);
  old = true;
  reload.setVisible(true);
  assert.equal(loads, 2);
});

test("watch follows an element through a Visibility-like observer, and dispose stops it", () => {
  const callbacks = new Map<unknown, (visible: boolean) => void>();
  const visibility = {
    observe: (target: unknown, callback: (visible: boolean) => void) => callbacks.set(target, callback),
    unobserve: (target: unknown) => callbacks.delete(target),
  };
  const element = {};
  let loads = 0;
  const reload = new ReloadWhenVisible({ reload: () => loads++ });
  reload.watch(visibility as never, element as never);
  callbacks.get(element)?.(true);
  assert.equal(loads, 1);
  assert.equal(reload.visible, true);
  reload.dispose();
  assert.equal(callbacks.size, 0);
});
