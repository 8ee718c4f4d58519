// Fetched grids (update ratios, layer values) by (run, tag), reloaded per refresh generation.

import { errorText } from "../json";
import type { LayerGrid } from "./grid";
import { scaledExtent, scaledValuesInSlices } from "./stats";

/** Fetches one run's grid of one tag (e.g. fetchUpdateRatios). */
export type FetchGrid = (run: string, tag: string) => Promise<LayerGrid>;

export interface Loaded {
  data?: LayerGrid;
  error?: string;
  /** The refresh generation this result belongs to. */
  gen: number;
}

const MAX_CONCURRENT = 4;

/**
 * Fetched grids by (run, tag), reloaded lazily: a result from an older refresh
 * generation stays on screen until its replacement arrives.
 */
export class DataStore {
  constructor(private readonly fetchGrid: FetchGrid) {}

  private readonly done = new Map<string, Loaded>();
  private readonly pending = new Map<string, { gen: number; promise: Promise<Loaded> }>();
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  private static key(run: string, tag: string): string {
    return JSON.stringify([run, tag]);
  }

  get(run: string, tag: string): Loaded | undefined {
    return this.done.get(DataStore.key(run, tag));
  }

  isFresh(run: string, tag: string, gen: number): boolean {
    const key = DataStore.key(run, tag);
    const got = this.done.get(key);
    const pend = this.pending.get(key);
    return (got !== undefined && got.gen >= gen) || (pend !== undefined && pend.gen >= gen);
  }

  load(run: string, tag: string, gen: number): Promise<Loaded> {
    const key = DataStore.key(run, tag);
    const got = this.done.get(key);
    if (got && got.gen >= gen) return Promise.resolve(got);
    const pend = this.pending.get(key);
    if (pend && pend.gen >= gen) return pend.promise;
    const promise = this.limited(async (): Promise<Loaded> => {
      try {
        const data = await this.fetchGrid(run, tag);
        // The colour extent, then every value on its scale in slices, each in a task of
        // its own, so that no task runs long.
        await nextTask();
        scaledExtent(data);
        await nextTask();
        await scaledValuesInSlices(data, nextTask);
        await nextTask();
        return { data, gen };
      } catch (e) {
        return { error: errorText(e), gen };
      }
    }).then((result) => {
      const current = this.done.get(key);
      if (!current || current.gen <= result.gen) this.done.set(key, result);
      if (this.pending.get(key)?.promise === promise) this.pending.delete(key);
      return this.done.get(key) ?? result;
    });
    this.pending.set(key, { gen, promise });
    return promise;
  }

  private async limited<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= MAX_CONCURRENT) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/** Resolves in a later task, letting the browser draw and handle input in between. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => window.setTimeout(resolve, 0));
}
