// Fetched step tables and spectra by key, reloaded once per refresh generation: what an older
// generation answered stays on screen until its replacement arrives. At most `capacity`
// answers are kept (the least recently used go first), so a slider dragged over 1,000
// steps does not keep 1,000 tables.

import { errorText } from "../json";

export interface Result<T> {
  data?: T;
  error?: string;
  gen: number;
}

export class GenerationCache<T> {
  private readonly done = new Map<string, Result<T>>();
  private readonly pending = new Map<string, number>();

  /** `onLoaded`: called after each answer (to redraw). */
  constructor(
    private readonly onLoaded: () => void,
    private readonly capacity = 64,
  ) {}

  /** What `key` has (maybe from an older generation); asks for it when it is older than `gen`. */
  get(key: string, gen: number, fetch: () => Promise<T>): Result<T> | undefined {
    const got = this.done.get(key);
    if (got !== undefined) {
      this.done.delete(key); // most recently used again
      this.done.set(key, got);
    }
    const asked = this.pending.get(key);
    if ((got === undefined || got.gen < gen) && (asked === undefined || asked < gen)) {
      this.pending.set(key, gen);
      fetch()
        .then(
          (data): Result<T> => ({ data, gen }),
          (e: unknown): Result<T> => ({ error: errorText(e), gen }),
        )
        .then((result) => {
          const current = this.done.get(key);
          if (current === undefined || current.gen <= result.gen) {
            this.done.delete(key);
            this.done.set(key, result);
            for (const oldest of this.done.keys()) {
              if (this.done.size <= this.capacity) break;
              this.done.delete(oldest);
            }
          }
          if (this.pending.get(key) === gen) this.pending.delete(key);
          this.onLoaded();
        });
    }
    return got;
  }

  clear(): void {
    this.done.clear();
    this.pending.clear();
  }
}
