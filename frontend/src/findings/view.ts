// The Findings section, at the top of the tab: one line per finding of the selected runs
// (severity in colour and word, the run's swatch and name, the layer, the sentence with its
// numbers and steps, what to try), most severe first; each line opens the view holding its
// evidence at its step (the tab's `reveal`). Info findings fold behind a toggle when there
// are many. With none it says what was checked. It reloads with the tab's refresh.

import { Visibility, el, swatch } from "../dom";
import { plural } from "../format";
import { errorText } from "../json";
import { ReloadWhenVisible } from "../reload_when_visible";
import { fetchFindings, type Finding, type FindingsReport, type Severity } from "./api";
import {
  type Checked,
  checkedIn,
  checkedText,
  countBySeverity,
  countsText,
  findingsOf,
  layerText,
  layout,
  stepsText,
  whereText,
} from "./digest";
import "./styles";

/** Past this many selected runs (or with all of them) the report is asked for every run. */
const RUNS_IN_QUERY = 64;

export interface FindingsHost {
  visibility: Visibility;
  /** The tab's refresh generation. */
  generation: () => number;
  /** A kind's section title ("Update ratios"), from the `kinds` route. */
  kindTitle: (kind: string) => string;
  /** Open the view holding a finding's evidence. */
  reveal: (finding: Finding) => void;
}

/** A selected run and its colour. */
export interface FindingsRun {
  run: string;
  color: string;
}

export class FindingsView {
  readonly element = el("details", "ds-kind ds-findings");
  private readonly counts = el("span", "ds-fd-counts");
  private readonly body = el("div", "ds-fd-body");
  private readonly reload: ReloadWhenVisible;
  private runs: FindingsRun[] = [];
  private runsKey = "";
  private allRuns = false;
  private report: FindingsReport | null = null;
  private error: string | null = null;
  private token = 0;
  private moreOpen = false;
  private infoOpen = false;
  /** The line last clicked, by its finding's identity. */
  private active: string | null = null;

  constructor(private readonly host: FindingsHost) {
    const e = this.element;
    e.open = true;
    e.dataset.kind = "findings";
    e.dataset.testid = "section-findings";
    const head = el("summary", "ds-kind-head");
    this.counts.dataset.testid = "findings-counts";
    head.append(
      el("h2", "ds-kind-title", "Findings"),
      this.counts,
      el("span", "ds-kind-sub", "What the rules see in the selected runs, most severe first; click one to see its evidence."),
    );
    e.append(head, this.body);
    e.hidden = true;
    this.reload = new ReloadWhenVisible({ reload: () => this.load(), generation: host.generation });
    this.reload.watch(host.visibility, e);
  }

  /** The selected runs, in the sidebar's order with its colours; `all`: every run is selected. */
  update(runs: readonly FindingsRun[], all: boolean): void {
    const key = JSON.stringify(runs.map((r) => [r.run, r.color]));
    if (key === this.runsKey && all === this.allRuns) return;
    this.runsKey = key;
    this.runs = [...runs];
    this.allRuns = all;
    this.element.hidden = runs.length === 0;
    // A report of more runs (e.g. all of them) serves any of its runs until the next refresh.
    const held = new Set(this.report?.runs ?? []);
    if (runs.length > 0 && !runs.every((r) => held.has(r.run))) this.reload.invalidate();
    this.render();
  }

  /** A refresh of the tab: ask again (now, or once the section is in view). */
  refresh(): void {
    this.reload.refresh();
  }

  private load(): void {
    if (this.runs.length === 0) return;
    const token = ++this.token;
    const wanted = this.allRuns || this.runs.length > RUNS_IN_QUERY ? null : this.runs.map((r) => r.run);
    fetchFindings(wanted).then(
      (report) => {
        if (token !== this.token || (report === this.report && this.error === null)) return;
        this.report = report;
        this.error = null;
        this.render();
      },
      (error: unknown) => {
        if (token !== this.token) return;
        this.error = errorText(error);
        this.render();
      },
    );
  }

  private render(): void {
    const parts: HTMLElement[] = [];
    if (this.error !== null) {
      const box = el("div", "ds-error", `Could not check the runs for findings: ${this.error}`);
      box.dataset.testid = "findings-error";
      parts.push(box);
    }
    const report = this.report;
    const runs = this.runs.map((r) => r.run);
    const covered = report !== null && runs.every((r) => report.runs.includes(r));
    if (!report || !covered) {
      this.counts.replaceChildren();
      if (this.error === null) parts.push(el("div", "ds-fd-pending", "Checking the selected runs…"));
      this.body.replaceChildren(...parts);
      return;
    }
    const findings = findingsOf(report, new Set(runs));
    this.renderCounts(findings);
    const checked = checkedIn(report, runs);
    if (findings.length === 0) {
      parts.push(this.noFindings(checked, runs.length));
    } else {
      parts.push(...this.lines(findings));
      const line = el("div", "ds-fd-checked ds-muted");
      line.dataset.testid = "findings-checked";
      line.textContent = `Checked in ${plural(runs.length, "run")}: ${checkedText(checked) || "nothing"}.`;
      if (checked.unchecked.length > 0) line.title = uncheckedText(checked.unchecked, this.host.kindTitle);
      parts.push(line);
    }
    // The warnings of the runs shown.
    const shownRuns = new Set(runs);
    const warnings = report.warnings.filter((w) => shownRuns.has(w.run)).map((w) => w.message);
    if (warnings.length > 0) parts.push(warningsBox(warnings));
    this.body.replaceChildren(...parts);
  }

  private renderCounts(findings: readonly Finding[]): void {
    const counts = countBySeverity(findings);
    this.counts.title = countsText(counts) || "no findings";
    if (findings.length === 0) {
      const none = el("span", "ds-fd-count ds-fd-count-none", "✓ none");
      this.counts.replaceChildren(none);
      return;
    }
    const badges = (["error", "warning", "info"] as Severity[])
      .filter((s) => counts[s] > 0)
      .map((s) => {
        const b = el("span", `ds-fd-count ds-fd-sev-${s}`, countsText({ error: 0, warning: 0, info: 0, [s]: counts[s] }));
        b.dataset.severity = s;
        return b;
      });
    this.counts.replaceChildren(...badges);
  }

  private lines(findings: readonly Finding[]): HTMLElement[] {
    const shown = layout(findings, this.moreOpen, this.infoOpen);
    const colors = new Map(this.runs.map((r) => [r.run, r.color]));
    const list = el("ol", "ds-fd-list");
    list.dataset.testid = "findings-list";
    for (const f of shown.lines) list.appendChild(this.line(f, colors.get(f.run) ?? "#9e9e9e"));
    const out: HTMLElement[] = [list];
    const toggles = el("div", "ds-fd-toggles");
    if (shown.morePrimary > 0) {
      toggles.append(this.toggle("findings-more", `show ${shown.morePrimary} more errors and warnings`, () => (this.moreOpen = true)));
    }
    if (shown.infoToggle) {
      const text = shown.infoShown ? "hide the info findings" : `show ${shown.info} info finding${shown.info === 1 ? "" : "s"}`;
      toggles.append(this.toggle("findings-info-toggle", text, () => (this.infoOpen = !this.infoOpen)));
    }
    if (toggles.childElementCount > 0) out.push(toggles);
    return out;
  }

  private toggle(testid: string, text: string, flip: () => void): HTMLButtonElement {
    const b = el("button", "ds-link", text);
    b.type = "button";
    b.dataset.testid = testid;
    b.addEventListener("click", () => {
      flip();
      this.render();
    });
    return b;
  }

  private line(f: Finding, color: string): HTMLElement {
    const item = el("li", "ds-fd-item");
    const d = item.dataset;
    d.testid = "finding";
    d.severity = f.severity;
    d.rule = f.rule;
    d.run = f.run;
    d.layer = f.layer;
    d.kind = f.evidence.kind;
    d.tag = f.evidence.tag;
    d.step = String(f.evidence.step);
    if (f.evidence.name !== undefined) d.name = f.evidence.name;
    if (f.evidence.statistic !== undefined) d.statistic = f.evidence.statistic;
    const id = JSON.stringify([f.rule, f.run, f.layer, f.evidence.tag, f.firstStep]);
    const button = el("button", `ds-fd-line ds-fd-line-${f.severity}`);
    button.type = "button";
    if (id === this.active) button.classList.add("ds-fd-active");
    const where = whereText(f, this.host.kindTitle);
    button.title = `Open the evidence: ${where} (${f.run}, ${f.evidence.tag}); the finding covers ${stepsText(f)}`;
    const severity = el("span", `ds-fd-sev ds-fd-sev-${f.severity}`, f.severity);
    severity.dataset.field = "severity";
    const run = el("span", "ds-fd-run");
    run.dataset.field = "run";
    run.append(swatch(color), el("span", "ds-fd-run-name", f.run));
    const layer = el("span", "ds-fd-layer", layerText(f.layer));
    layer.dataset.field = "layer";
    const message = el("span", "ds-fd-message", f.message);
    message.dataset.field = "message";
    const advice = el("span", "ds-fd-advice");
    advice.dataset.field = "advice";
    advice.append(el("span", "ds-fd-try", "Try"), f.advice);
    const text = el("span", "ds-fd-text");
    text.append(message, advice);
    // Its parts wrap between, not inside: "Layer statistics · dead channels" / "· step 290 ›".
    const whereEl = el("span", "ds-fd-where");
    whereEl.dataset.field = "where";
    where.split(" · ").forEach((part, k, all) =>
      whereEl.append(k > 0 ? " " : "", el("span", "", `${k > 0 ? "· " : ""}${part}${k === all.length - 1 ? " ›" : ""}`)),
    );
    const who = el("span", "ds-fd-who");
    who.append(run, layer);
    button.append(severity, who, text, whereEl);
    button.addEventListener("click", () => {
      this.active = id;
      for (const b of this.body.querySelectorAll(".ds-fd-active")) b.classList.remove("ds-fd-active");
      button.classList.add("ds-fd-active");
      this.host.reveal(f);
    });
    item.appendChild(button);
    return item;
  }

  private noFindings(checked: Checked, runs: number): HTMLElement {
    const box = el("div", "ds-fd-none");
    box.dataset.testid = "findings-none";
    const title = el("div", "ds-fd-none-title");
    if (checked.rules.length === 0) {
      title.textContent = `Nothing to check in the selected ${runs === 1 ? "run" : "runs"}: the rules read update ratios, layer statistics, spectra and correlations, and ${runs === 1 ? "it has" : "they have"} none.`;
      box.append(title);
      return box;
    }
    title.textContent = `✓ No findings in ${runs === 1 ? "the selected run" : `the ${runs} selected runs`}.`;
    const what = el("div", "ds-fd-checked");
    what.dataset.testid = "findings-checked";
    what.textContent = `Checked: ${checkedText(checked)}.`;
    box.append(title, what);
    if (checked.unchecked.length > 0) {
      const not = el("div", "ds-fd-checked ds-muted");
      not.dataset.testid = "findings-unchecked";
      not.textContent = uncheckedText(checked.unchecked, this.host.kindTitle);
      box.append(not);
    }
    if (checked.off.length > 0) box.append(el("div", "ds-fd-checked ds-muted", `Turned off: ${checked.off.join(", ")}.`));
    return box;
  }
}

/** "Not checked (none of the series they read): A, B; they read layer statistics and spectra." */
function uncheckedText(unchecked: Checked["unchecked"], kindTitle: (kind: string) => string): string {
  const kinds = [...new Set(unchecked.flatMap((r) => r.reads))].map((k) => kindTitle(k).toLowerCase());
  const reads = kinds.length > 1 ? `${kinds.slice(0, -1).join(", ")} and ${kinds[kinds.length - 1]}` : kinds.join("");
  const titles = unchecked.map((r) => r.title).join(", ");
  return `Not checked (none of the series they read): ${titles}${reads ? `; they read ${reads}` : ""}.`;
}

function warningsBox(warnings: readonly string[]): HTMLElement {
  const box = el("details", "ds-fd-warnings");
  box.dataset.testid = "findings-warnings";
  const summary = el("summary", "", `${plural(warnings.length, "warning")} while checking`);
  const list = el("ul");
  for (const w of warnings) list.appendChild(el("li", "", w));
  box.append(summary, list);
  return box;
}
