// findings/api.ts and findings/digest.ts: the `findings` route's answer validated, and what
// the Findings section makes of it (the selected runs' findings, which lines show at first,
// the counts, what was checked, where a line leads); the reveal helpers of the grid cards
// (update_ratios/param_groups.ts's groupsAbove, update_ratios/mark.ts's markBox).

import assert from "node:assert/strict";
import { test } from "node:test";
import { parseFindings, type Finding } from "../src/findings/api";
import {
  COMPACT,
  PRIMARY_SHOWN,
  checkedIn,
  checkedText,
  countBySeverity,
  countsText,
  findingsOf,
  layerText,
  layout,
  stepsText,
  whereText,
} from "../src/findings/digest";
import type { HeatRow } from "../src/update_ratios/heatmap";
import { markBox } from "../src/update_ratios/mark";
import { buildTree, groupsAbove } from "../src/update_ratios/param_groups";

function finding(run: string, severity: string, extra: Record<string, unknown> = {}) {
  return {
    rule: "dead_units",
    severity,
    run,
    layer: "relu1",
    message: "relu1: 100% of this ReLU's channels are dead (steps 250–290).",
    advice: "Lower the learning rate.",
    first_step: 250,
    last_step: 290,
    evidence: { kind: "layer_statistics", tag: "layer_statistics/activations", step: 290, name: "relu1", statistic: "dead_fraction", part: "activations" },
    numbers: { fraction: 1.0, ratio: "Infinity" },
    ...extra,
  };
}

const RULES = [
  { name: "non_finite", title: "Non-finite values", severity: "error", off: false, reads: ["update_ratios", "layer_statistics"], source: "", thresholds: {} },
  { name: "dead_units", title: "Dead units", severity: "warning", off: false, reads: ["layer_statistics"], source: "", thresholds: {} },
  { name: "redundant_channels", title: "Redundant channels", severity: "warning", off: false, reads: ["correlation"], source: "", thresholds: {} },
  { name: "alpha_range", title: "Power-law exponent", severity: "info", off: true, reads: ["spectrum"], source: "", thresholds: {} },
];

const REPORT = {
  runs: ["a", "b"],
  findings: [
    finding("a", "error", { rule: "non_finite", layer: "", evidence: { kind: "update_ratios", tag: "update_ratios", step: 60, name: "fc1.weight" } }),
    finding("b", "warning"),
    finding("a", "info"),
    "not a finding",
    { severity: "error" },
  ],
  counts: { error: 1, warning: 1, info: 1 },
  checked: { a: ["non_finite", "dead_units"], b: ["non_finite"] },
  rules: RULES,
  warnings: [{ run: "b", message: "run 'b', tag 'x' was not checked: damaged" }],
};

test("a report parses: findings with their evidence, numbers spelled out, malformed ones left out", () => {
  const report = parseFindings(REPORT);
  assert.deepEqual(report.runs, ["a", "b"]);
  assert.equal(report.findings.length, 3);
  const [error, warning] = report.findings;
  assert.equal(error.severity, "error");
  assert.equal(error.layer, "");
  assert.deepEqual(error.evidence, { kind: "update_ratios", tag: "update_ratios", step: 60, name: "fc1.weight" });
  assert.deepEqual(warning.evidence, {
    kind: "layer_statistics",
    tag: "layer_statistics/activations",
    step: 290,
    name: "relu1",
    statistic: "dead_fraction",
    part: "activations",
  });
  assert.equal(warning.firstStep, 250);
  assert.equal(warning.lastStep, 290);
  assert.equal(warning.numbers.get("ratio"), Infinity);
  assert.deepEqual(report.checked.get("b"), ["non_finite"]);
  assert.equal(report.rules[3].off, true);
  assert.deepEqual(report.warnings, REPORT.warnings);
  // The same JSON object (a 304) gives the same report.
  assert.equal(parseFindings(REPORT), report);
  assert.throws(() => parseFindings([]), /expected an object/);
});

test("the selected runs' findings, counted by severity", () => {
  const report = parseFindings(REPORT);
  const ofA = findingsOf(report, new Set(["a"]));
  assert.deepEqual(ofA.map((f) => f.severity), ["error", "info"]);
  assert.deepEqual(countBySeverity(ofA), { error: 1, warning: 0, info: 1 });
  assert.equal(countsText({ error: 1, warning: 3, info: 12 }), "1 error · 3 warnings · 12 info");
  assert.equal(countsText({ error: 0, warning: 1, info: 0 }), "1 warning");
  assert.equal(countsText({ error: 0, warning: 0, info: 0 }), "");
});

function many(severity: string, n: number): Finding[] {
  const raw = { ...REPORT, findings: Array.from({ length: n }, (_, k) => finding(`r${k}`, severity)) };
  return parseFindings(raw).findings;
}

test("a few findings show whole; many show errors and warnings first, info behind a toggle", () => {
  const few = [...many("warning", 3), ...many("info", COMPACT - 3)];
  const compact = layout(few, false, false);
  assert.equal(compact.lines.length, COMPACT);
  assert.equal(compact.infoToggle, false);
  assert.equal(compact.morePrimary, 0);

  const lots = [...many("error", 2), ...many("warning", PRIMARY_SHOWN + 8), ...many("info", 300)];
  const folded = layout(lots, false, false);
  assert.equal(folded.lines.length, PRIMARY_SHOWN);
  assert.ok(folded.lines.every((f) => f.severity !== "info"));
  assert.equal(folded.lines[0].severity, "error");
  assert.equal(folded.morePrimary, 10);
  assert.equal(folded.info, 300);
  assert.equal(folded.infoToggle, true);
  assert.equal(folded.infoShown, false);

  const open = layout(lots, true, true);
  assert.equal(open.lines.length, lots.length);
  assert.equal(open.morePrimary, 0);
  assert.equal(open.infoShown, true);
  // Only info, many: still behind the toggle.
  assert.equal(layout(many("info", 40), false, false).lines.length, 0);
});

test("what was checked: rules by title in the rules' order, with partial coverage and the unchecked", () => {
  const report = parseFindings(REPORT);
  const both = checkedIn(report, ["a", "b"]);
  assert.deepEqual(both.rules, [
    { title: "Non-finite values", runs: 2 },
    { title: "Dead units", runs: 1 },
  ]);
  assert.equal(checkedText(both), "Non-finite values, Dead units (1 of 2 runs)");
  assert.deepEqual(both.unchecked, [{ title: "Redundant channels", reads: ["correlation"] }]);
  assert.deepEqual(both.off, ["Power-law exponent"]);
  assert.equal(checkedText(checkedIn(report, ["b"])), "Non-finite values");
  assert.equal(checkedIn(report, []).rules.length, 0);
});

test("a line's layer, steps and where it leads", () => {
  const [error, warning] = parseFindings(REPORT).findings;
  const titles = (kind: string) => ({ update_ratios: "Update ratios", layer_statistics: "Layer statistics" })[kind] ?? kind;
  assert.equal(layerText(error.layer), "whole network");
  assert.equal(layerText("fc1"), "fc1");
  assert.equal(whereText(error, titles), "Update ratios · step 60");
  assert.equal(whereText(warning, titles), "Layer statistics · dead channels · step 290");
  assert.equal(stepsText(warning), "steps 250–290");
  assert.equal(stepsText({ ...warning, firstStep: 60, lastStep: 60 }), "step 60");
});

test("the groups above a parameter, outermost first, so that revealing it opens them", () => {
  const names = [
    "encoder.layer.0.attn.weight",
    "encoder.layer.0.mlp.weight",
    "encoder.layer.1.attn.weight",
    "encoder.layer.1.mlp.weight",
    "head.weight",
  ];
  const tree = buildTree(names);
  assert.deepEqual(groupsAbove(tree, "encoder.layer.1.mlp.weight"), ["g:encoder.layer", "g:encoder.layer.1"]);
  assert.deepEqual(groupsAbove(tree, "head.weight"), []);
  assert.deepEqual(groupsAbove(tree, "missing"), []);
});

function row(kind: "param" | "group", names: string[]): HeatRow {
  return { key: names.join(), kind, names, label: names[0], title: names[0], depth: 0, expanded: false };
}

test("a mark sits on its row and the cell of the nearest logged step, at least 6 px wide", () => {
  const rows = [row("param", ["a"]), row("group", ["b.x", "b.y"]), row("param", ["c"])];
  const steps = [0, 10, 20, 30];
  const x = (s: number) => s * 10; // 10 px per step: a cell is 100 px
  const box = markBox({ step: 12, name: "c" }, rows, steps, x, 50, 400, 16);
  assert.deepEqual(box, { left: 150, top: 32, width: 100, height: 16, step: 10, row: 2 });
  // A parameter inside a closed group: the group's row.
  assert.equal(markBox({ step: 30, name: "b.y" }, rows, steps, x, 0, 400, 16)?.row, 1);
  // No name: the step's whole column; the last step covers one typical gap.
  assert.deepEqual(markBox({ step: 99 }, rows, steps, x, 0, 400, 16), {
    left: 300,
    top: 0,
    width: 100,
    height: 48,
    step: 30,
    row: -1,
  });
  // A narrow cell's mark is widened about its centre.
  const dense = markBox({ step: 10, name: "a" }, rows, steps, (s) => s / 10, 0, 400, 16);
  assert.equal(dense?.width, 6);
  assert.equal(dense?.left, 0);
  assert.equal(markBox({ step: 0, name: "nope" }, rows, steps, x, 0, 400, 16), null);
  assert.equal(markBox({ step: 0 }, rows, [], x, 0, 400, 16), null);
});
