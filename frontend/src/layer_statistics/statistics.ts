// What each layer statistic is, as the tab labels and scales it: the column names of the
// `layer_statistics` routes (docs/http_api.md), their words, units and default scales, and
// which part of a series (module outputs or parameters) each belongs to.

import type { Quantity, ValueScale } from "../update_ratios/grid";

/** Which rows a statistic is of: module outputs ("activations") or parameters. */
export type Part = "activations" | "parameters";

export interface StatisticInfo {
  /** The column name the routes use, e.g. "dead_fraction". */
  name: string;
  part: Part;
  /** Short words for selectors and axes, e.g. "dead channels". */
  label: string;
  /** Shorter still, for a table header, e.g. "dead". */
  short: string;
  /** Its unit ("" when it has the layer's own output units, shown as such in `unitText`). */
  unit: string;
  scale: ValueScale;
  /** One line on what it is and why one looks at it. */
  help: string;
}

const ACTIVATION_UNIT = "output units";

const KNOWN: readonly StatisticInfo[] = [
  { name: "mean", short: "mean", part: "activations", label: "mean", unit: ACTIVATION_UNIT, scale: "linear",
    help: "mean of the module's output over every element (finite values)" },
  { name: "std", short: "std", part: "activations", label: "std", unit: ACTIVATION_UNIT, scale: "log",
    help: "standard deviation of the output: should neither vanish nor explode through depth (Glorot & Bengio 2010)" },
  { name: "rms", short: "RMS", part: "activations", label: "RMS", unit: ACTIVATION_UNIT, scale: "log",
    help: "root mean square of the output" },
  { name: "max_abs", short: "max |a|", part: "activations", label: "max |a|", unit: ACTIVATION_UNIT, scale: "log",
    help: "largest absolute output value" },
  { name: "zero_fraction", short: "zero", part: "activations", label: "exactly zero", unit: "fraction of elements", scale: "linear",
    help: "fraction of output elements exactly 0 (a ReLU's inactive units)" },
  { name: "saturated_fraction", short: "saturated", part: "activations", label: "saturated", unit: "fraction of elements", scale: "linear",
    help: "fraction of a bounded activation's outputs (tanh, sigmoid, hardtanh, ReLU6) within the tolerance of a bound; none for other modules" },
  { name: "non_finite_fraction", short: "non-finite", part: "activations", label: "non-finite", unit: "fraction of elements", scale: "linear",
    help: "fraction of output elements that are NaN or ±Inf" },
  { name: "dead_fraction", short: "dead", part: "activations", label: "dead channels", unit: "fraction of channels", scale: "linear",
    help: "fraction of channels zero on every sample of the batch (dead units)" },
  { name: "effective_dimension", short: "eff. dim", part: "activations", label: "effective dimension", unit: "channels", scale: "linear",
    help: "participation ratio (Σλ)²/Σλ² of the channel covariance's eigenvalues" },
  { name: "saturation", short: "delve saturation", part: "activations", label: "saturation (delve)", unit: "fraction of eigendirections", scale: "linear",
    help: "fraction of eigendirections needed to explain the variance threshold (e.g. 99%) of the layer's activations (Shenk et al.)" },
  { name: "effective_rank", short: "eff. rank", part: "activations", label: "effective rank", unit: "channels", scale: "linear",
    help: "exp of the entropy of the normalised eigenvalues (Roy & Vetterli 2007)" },
  { name: "grad_norm", short: "‖g‖", part: "parameters", label: "gradient norm ‖g‖", unit: "L2 norm", scale: "log",
    help: "L2 norm of the parameter's gradient at the optimizer step: spikes come before divergence" },
  { name: "weight_norm", short: "‖W‖", part: "parameters", label: "weight norm ‖W‖", unit: "L2 norm", scale: "log",
    help: "L2 norm of the parameter" },
  { name: "grad_to_weight", short: "‖g‖/‖W‖", part: "parameters", label: "‖g‖/‖W‖", unit: "ratio", scale: "log",
    help: "gradient norm over weight norm" },
];

const BY_NAME = new Map(KNOWN.map((s) => [s.name, s]));

/** Parameter columns the routes name (everything else is a module output's). */
export const PARAMETER_STATISTICS: readonly string[] = KNOWN.filter((s) => s.part === "parameters").map((s) => s.name);

/** The statistic's words, unit and scale; an unknown column gets its own name, no unit, linear. */
export function statisticInfo(name: string): StatisticInfo {
  return (
    BY_NAME.get(name) ?? {
      name,
      part: PARAMETER_STATISTICS.includes(name) ? "parameters" : "activations",
      label: name.replace(/_/g, " "),
      short: name.replace(/_/g, " "),
      unit: "",
      scale: "linear",
      help: name,
    }
  );
}

/** Which statistic a card opens on for a series with these columns: std, else gradient norm, else the first. */
export function defaultStatistic(available: readonly string[], part: Part | null): string | null {
  const wanted = part === "parameters" ? ["grad_norm", "std"] : ["std", "grad_norm"];
  for (const name of wanted) if (available.includes(name)) return name;
  return available[0] ?? null;
}

/** "std (output units)", "dead channels (fraction of channels)". */
export function statisticTitle(name: string): string {
  const s = statisticInfo(name);
  return s.unit ? `${s.label} (${s.unit})` : s.label;
}

/** The grid's quantity for a statistic: the route's unit and scale when it gives them, else ours. */
export function statisticQuantity(name: string, unit?: string, scale?: string): Quantity {
  const s = statisticInfo(name);
  return {
    label: s.label,
    unit: unit !== undefined && unit !== "" ? unit : s.unit,
    scale: scale === "log" || scale === "linear" ? scale : s.scale,
    target: null,
    // A parameter's gradient statistic is not measured where it had no gradient (or the step
    // does not log it).
    missingText: name === "grad_norm" || name === "grad_to_weight" ? "no gradient (not measured)" : "not measured",
  };
}
