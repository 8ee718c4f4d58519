import { interpolateViridis } from "d3-scale-chromatic";
import { scaleLinear } from "d3-scale";

/**
 * The heatmap's colour scale: log10(ratio) over [lo, hi] -> viridis. Shared by all runs of
 * a tag so that their heatmaps compare directly.
 */
export class ColorScale {
  readonly lo: number;
  readonly hi: number;
  private readonly lut: Uint8Array;
  static readonly LUT_SIZE = 256;

  constructor(extent: readonly [number, number] | null) {
    let [lo, hi] = extent ?? [-4, -2];
    if (!(hi > lo)) {
      lo -= 0.5;
      hi += 0.5;
    }
    const nice = scaleLinear().domain([lo, hi]).nice(6).domain();
    this.lo = nice[0];
    this.hi = nice[1];
    this.lut = buildLut(interpolateViridis, ColorScale.LUT_SIZE);
  }

  /** RGB of a log10 value, clamped to the domain, packed as 0xRRGGBB. */
  rgb(log10value: number): number {
    let t = (log10value - this.lo) / (this.hi - this.lo);
    if (!(t > 0)) t = 0;
    else if (t > 1) t = 1;
    const k = Math.round(t * (ColorScale.LUT_SIZE - 1)) * 3;
    return (this.lut[k] << 16) | (this.lut[k + 1] << 8) | this.lut[k + 2];
  }

  /** CSS linear-gradient for the legend bar. */
  gradient(): string {
    return cssGradient(interpolateViridis);
  }

  equals(other: ColorScale | null): boolean {
    return other !== null && other.lo === this.lo && other.hi === this.hi;
  }
}

/** A CSS colour as d3's interpolators write it ("#rrggbb" or "rgb(r, g, b)") -> [r, g, b]. */
export function parseColor(color: string): [number, number, number] {
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
  if (hex) return [parseInt(hex[1], 16), parseInt(hex[2], 16), parseInt(hex[3], 16)];
  const rgb = /rgb\((\d+),\s*(\d+),\s*(\d+)\)/.exec(color);
  if (rgb) return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
  return [0, 0, 0];
}

/** `size` colours of `interpolate` over t in [0, 1] (evenly spaced) as r, g, b bytes. */
export function buildLut(interpolate: (t: number) => string, size: number): Uint8Array {
  const lut = new Uint8Array(size * 3);
  for (let k = 0; k < size; k++) {
    const [r, g, b] = parseColor(interpolate(k / (size - 1)));
    lut[3 * k] = r;
    lut[3 * k + 1] = g;
    lut[3 * k + 2] = b;
  }
  return lut;
}

/** A legend bar's CSS background: `interpolate` from left (t = 0) to right (t = 1). */
export function cssGradient(interpolate: (t: number) => string): string {
  const stops: string[] = [];
  for (let k = 0; k <= 10; k++) stops.push(`${interpolate(k / 10)} ${k * 10}%`);
  return `linear-gradient(90deg, ${stops.join(", ")})`;
}
