// The maps of the last few (tag, step, page) asked for, as promises: moving the slider back
// and forth, or comparing two steps, asks the route once per step and page.

import { fetchSaliencyMaps, type SaliencyMaps } from "./api";

/** Requests remembered per card (a failed one is forgotten, so that it is asked again). */
const REMEMBERED = 24;

export class MapsCache {
  private readonly pending = new Map<string, Promise<SaliencyMaps>>();

  constructor(private readonly run: string) {}

  /** The maps of `samples` (e.g. "0-7") of `tag` at `step`. */
  get(tag: string, step: number, samples: string): Promise<SaliencyMaps> {
    const key = `${tag}\n${step}\n${samples}`;
    let maps = this.pending.get(key);
    if (!maps) {
      maps = fetchSaliencyMaps(this.run, tag, step, samples);
      maps.catch(() => this.pending.delete(key));
      this.pending.set(key, maps);
      if (this.pending.size > REMEMBERED) {
        this.pending.delete(this.pending.keys().next().value as string);
      }
    }
    return maps;
  }
}
