// The `cka_series` route (docs/http_api.md, "Layer similarity (CKA)"): every kept step's
// layer x layer linear CKA matrix of two networks, rows the layers of A, columns those of B.
// "NaN" (a layer without variance over the probe) is NaN.

import { expectRecord, getJson, jsonNumber } from "../json";

export interface CkaSeries {
  run: string;
  tag: string;
  rowName: string;
  colName: string;
  layersA: string[];
  layersB: string[];
  steps: number[];
  samples: number[];
  /** [step][row][column] */
  matrices: number[][][];
  warnings: string[];
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [];
}

/** A parsed cka_series body; an error when the matrices do not fit the layers. */
export function parseCkaSeries(raw: Record<string, unknown>, run: string, tag: string): CkaSeries {
  const layersA = strings(raw.layers_a);
  const layersB = strings(raw.layers_b);
  const steps = Array.isArray(raw.steps) ? raw.steps.map(Number) : [];
  const matrices = (Array.isArray(raw.matrices) ? raw.matrices : []).map((m) =>
    (Array.isArray(m) ? m : []).map((row) => (Array.isArray(row) ? row.map(jsonNumber) : [])),
  );
  if (matrices.length !== steps.length) {
    throw new Error(`cka_series: ${matrices.length} matrices for ${steps.length} steps`);
  }
  for (const m of matrices) {
    if (m.length !== layersA.length || m.some((row) => row.length !== layersB.length)) {
      throw new Error(
        `cka_series: a matrix does not have ${layersA.length} x ${layersB.length} cells`,
      );
    }
  }
  return {
    run,
    tag,
    rowName: String(raw.row_name ?? ""),
    colName: String(raw.col_name ?? ""),
    layersA,
    layersB,
    steps,
    samples: Array.isArray(raw.samples) ? raw.samples.map(Number) : [],
    matrices,
    warnings: strings(raw.warnings),
  };
}

export async function fetchCkaSeries(run: string, tag: string): Promise<CkaSeries> {
  const url = `./cka_series?${new URLSearchParams({ run, tag })}`;
  return parseCkaSeries(expectRecord(await getJson(url), url), run, tag);
}
