// The tab: a sidebar (tag filter, runs, refresh), the Findings of the selected runs
// (findings/view.ts: a line opens its evidence through the views' `reveal`), and a section
// per kind of series, in the order (and with the titles) of the plugin's `kinds` route, each
// drawn by its own view (views/registry.ts); then a section of the series it cannot draw.

import { fetchKinds, fetchTagMap, type KindInfo, type TagMap } from "./api";
import { Visibility, el, swatch } from "./dom";
import { formatTime } from "./format";
import type { Finding } from "./findings/api";
import { FindingsView } from "./findings/view";
import { errorText, requestsSettled } from "./json";
import { runColor } from "./palette";
import { ReloadWhenVisible } from "./reload_when_visible";
import { scrollIntoViewSettled } from "./scroll_into_view";
import { listenToTensorBoard } from "./tbhost";
import type { KindView, KindViewFactory, RevealTarget, ViewEntry } from "./views/kind_view";
import { NoticeView, noViewNotice, unreadableNotice } from "./views/notice_view";
import { KIND_VIEWS } from "./views/registry";

/** TensorBoard's own reload period. */
export const RELOAD_MS = 30_000;

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/** Height kept for a section whose view is not built yet (it is built near the viewport). */
const SECTION_PLACEHOLDER_PX = 360;
/** A section below the first waits this long at most for the requests before it to end. */
const SECTION_WAIT_MS = 3000;

/** The key of the section of series the tab cannot draw (no kind is named so: it starts with a NUL). */
const UNREADABLE = "\u0000unreadable";

/** What a section shows: a kind (or the unreadable series), its heading, and how to build its view. */
interface SectionSpec {
  readonly key: string;
  /** data-kind and data-testid ("section-<name>") of its element. */
  readonly name: string;
  readonly title: string;
  readonly subtitle: string;
  readonly factory: KindViewFactory;
}

/**
 * A kind's section. Its view is built (and so fetches and draws) only once the section
 * comes near the viewport; until then a placeholder keeps its place.
 */
interface Section {
  /** Its SectionSpec's key: a kind's name, or UNREADABLE. */
  readonly key: string;
  readonly factory: KindViewFactory;
  readonly element: HTMLDetailsElement;
  readonly placeholder: HTMLElement;
  view: KindView | null;
  entries: ViewEntry[];
  /** Waiting for earlier sections' requests before being built. */
  waiting: boolean;
}

export class App {
  private tags: TagMap = new Map();
  private tagsLoaded = false;
  private tagsError: string | null = null;
  /** The plugin's kinds in section order (from the `kinds` route); null until it answered. */
  private kinds: KindInfo[] | null = null;
  private kindsError: string | null = null;
  private runs: string[] = [];
  private readonly runChecked = new Map<string, boolean>();
  private filterText = "";
  private generation = 0;
  private readonly visibility = new Visibility();
  /** Refreshes when the page is shown again and the last refresh is older than RELOAD_MS. */
  private readonly pageReload = new ReloadWhenVisible({
    reload: () => void this.refresh(),
    stale: () => this.stale(),
  });
  private readonly sections = new Map<string, Section>();
  /** The sidebar's tag filter as views see it (null when empty or invalid). */
  private tagRegex: RegExp | null = null;
  private refreshing: Promise<void> | null = null;
  private timer: number | undefined;
  private lastWidth = 0;

  private readonly progress = el("div", "ds-progress");
  private readonly main = el("main", "ds-main");
  private readonly runList = el("ul", "ds-runs");
  private readonly filterInput = el("input", "ds-filter");
  private readonly filterError = el("div", "ds-filter-error");
  private readonly refreshButton = el("button", "ds-button");
  private readonly refreshStatus = el("div", "ds-muted");
  private readonly toggleAll = el("button", "ds-link");
  private readonly banner = el("div");
  private readonly cardsEl = el("div");
  private readonly message = el("div");
  private readonly findings = new FindingsView({
    visibility: this.visibility,
    generation: () => this.generation,
    kindTitle: (kind) => this.kinds?.find((k) => k.name === kind)?.title ?? kind,
    reveal: (finding) => this.reveal(finding),
  });

  constructor(private readonly root: HTMLElement) {}

  start(): void {
    this.root.replaceChildren(this.progress, this.layout());
    this.progress.hidden = true;
    listenToTensorBoard(() => void this.refresh());
    // Shown again (another browser tab was in front) after a reload period: refresh.
    this.pageReload.watchDocument();
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(() => this.onResize()).observe(this.main);
    } else {
      window.addEventListener("resize", () => this.onResize());
    }
    void this.refresh();
  }

  private layout(): HTMLElement {
    const app = el("div", "ds-app");
    const side = el("aside", "ds-sidebar");

    const filterSection = el("div", "ds-section");
    const filterTitle = el("label", "ds-section-title", "Filter tags (regex)");
    filterTitle.htmlFor = "ds-tag-filter";
    this.filterInput.id = "ds-tag-filter";
    this.filterInput.type = "search";
    this.filterInput.placeholder = "regex, e.g. model|fc";
    this.filterInput.autocomplete = "off";
    this.filterInput.spellcheck = false;
    this.filterInput.dataset.testid = "tag-filter";
    let debounce: number | undefined;
    this.filterInput.addEventListener("input", () => {
      window.clearTimeout(debounce);
      debounce = window.setTimeout(() => {
        this.filterText = this.filterInput.value;
        this.renderMain();
      }, 150);
    });
    this.filterError.hidden = true;
    filterSection.append(filterTitle, this.filterInput, this.filterError);

    const runsSection = el("div", "ds-section");
    const runsTitle = el("div", "ds-section-title");
    runsTitle.append(el("span", "", "Runs"), this.toggleAll);
    this.toggleAll.type = "button";
    this.toggleAll.addEventListener("click", () => {
      const allOn = this.runs.every((r) => this.runChecked.get(r) !== false);
      for (const r of this.runs) this.runChecked.set(r, !allOn);
      this.renderRuns();
      this.renderMain();
    });
    this.runList.dataset.testid = "run-selector";
    runsSection.append(runsTitle, this.runList);

    const refreshSection = el("div", "ds-section");
    const row = el("div", "ds-refresh-row");
    this.refreshButton.type = "button";
    this.refreshButton.textContent = "⟳ Refresh";
    this.refreshButton.title = "Reload runs and data now";
    this.refreshButton.dataset.testid = "refresh";
    this.refreshButton.addEventListener("click", () => void this.refresh());
    row.append(this.refreshButton, this.refreshStatus);
    refreshSection.append(
      row,
      el("div", "ds-muted", `Reloads every ${RELOAD_MS / 1000} s and with TensorBoard's reload.`),
    );

    side.append(filterSection, runsSection, refreshSection);
    this.main.append(this.banner, this.message, this.findings.element, this.cardsEl);
    app.append(side, this.main);
    return app;
  }

  private stale(): boolean {
    return this.lastRefresh === null || Date.now() - this.lastRefresh.getTime() > RELOAD_MS;
  }

  private lastRefresh: Date | null = null;

  /** Reload the tag list, then (lazily) every card's data; keeps the user's selections. */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    window.clearTimeout(this.timer);
    this.progress.hidden = false;
    this.refreshButton.disabled = true;
    this.refreshing = (async () => {
      const kinds = this.kinds === null ? fetchKinds() : Promise.resolve(this.kinds);
      try {
        this.tags = await fetchTagMap();
        this.tagsLoaded = true;
        this.tagsError = null;
      } catch (e) {
        this.tagsError = errorText(e);
      }
      try {
        this.kinds = await kinds;
        this.kindsError = null;
      } catch (e) {
        this.kindsError = errorText(e);
      }
      this.generation++;
      this.lastRefresh = new Date();
      this.renderRuns();
      this.renderMain();
      this.findings.refresh();
      for (const section of this.sections.values()) section.view?.refresh();
    })().finally(() => {
      this.refreshing = null;
      this.pageReload.markLoaded();
      this.progress.hidden = true;
      this.refreshButton.disabled = false;
      this.refreshStatus.textContent = this.lastRefresh
        ? `Updated ${formatTime(this.lastRefresh)}`
        : "";
      this.timer = window.setTimeout(() => {
        if (!this.pageReload.visible) return; // refreshed when the tab is shown again
        void this.refresh();
      }, RELOAD_MS);
    });
    return this.refreshing;
  }

  private renderRuns(): void {
    this.runs = [...this.tags.keys()].sort(collator.compare);
    for (const run of this.runs) {
      if (!this.runChecked.has(run)) this.runChecked.set(run, true);
    }
    const items = this.runs.map((run, index) => {
      const color = runColor(index);
      const li = el("li");
      const label = el("label", "ds-run");
      label.dataset.run = run;
      label.title = run;
      const box = el("input");
      box.type = "checkbox";
      box.checked = this.runChecked.get(run) !== false;
      box.style.accentColor = color;
      box.addEventListener("change", () => {
        this.runChecked.set(run, box.checked);
        this.renderToggleAll();
        this.renderMain();
      });
      const sw = swatch(color);
      sw.dataset.color = color;
      label.append(box, sw, el("span", "ds-run-name", run));
      li.appendChild(label);
      return li;
    });
    if (items.length === 0) {
      items.push(el("li", "ds-muted", this.tagsLoaded ? "No runs with deepscope data." : "Loading…"));
    }
    this.runList.replaceChildren(...items);
    this.renderToggleAll();
  }

  private renderToggleAll(): void {
    const allOn = this.runs.every((r) => this.runChecked.get(r) !== false);
    this.toggleAll.textContent = allOn ? "none" : "all";
    this.toggleAll.title = allOn ? "Deselect all runs" : "Select all runs";
    this.toggleAll.hidden = this.runs.length < 2;
  }

  private renderMain(): void {
    this.banner.replaceChildren();
    if (this.tagsError !== null) {
      const box = el("div", "ds-error", `Could not load the list of tags: ${this.tagsError}`);
      box.dataset.testid = "tags-error";
      this.banner.appendChild(box);
    }
    if (this.kindsError !== null) {
      const box = el("div", "ds-error", `Could not load the list of kinds: ${this.kindsError}`);
      box.dataset.testid = "kinds-error";
      this.banner.appendChild(box);
    }
    this.message.replaceChildren();

    const regex = this.compileFilter();
    const colorOf = new Map(this.runs.map((run, i) => [run, runColor(i)]));
    const selectedRuns = this.runs.filter((r) => this.runChecked.get(r) !== false);
    const tagNames = new Set<string>();
    for (const run of selectedRuns) for (const tag of this.tags.get(run)?.keys() ?? []) tagNames.add(tag);
    const totalTags = this.runs.reduce((n, r) => n + (this.tags.get(r)?.size ?? 0), 0);
    this.findings.update(
      selectedRuns.map((run) => ({ run, color: colorOf.get(run) ?? runColor(0) })),
      selectedRuns.length === this.runs.length,
    );

    const sorted = [...tagNames].sort(collator.compare);
    const matching = new Set(sorted.filter((t) => regex !== null && regex.test(t)));
    if (this.tagsLoaded && totalTags === 0) {
      this.message.appendChild(emptyState());
    } else if (this.tagsLoaded && selectedRuns.length === 0) {
      this.message.appendChild(el("div", "ds-placeholder", "No runs selected. Pick one in the sidebar."));
    }

    // A tag the filter does not match still goes to a view that filters inside its tags
    // (e.g. update ratios narrow their parameters) when that view finds something in it.
    // A series whose metadata cannot be read, or of a kind the plugin does not list, goes
    // to the unreadable section.
    const specs = this.sectionSpecs();
    const keyOf = (info: { kind: string; error?: string }) =>
      info.error === undefined && specs.some((spec) => spec.key === info.kind) ? info.kind : UNREADABLE;
    const byKind = new Map<string, ViewEntry[]>();
    for (const tag of sorted) {
      for (const run of selectedRuns) {
        const info = this.tags.get(run)?.get(tag);
        if (info === undefined) continue;
        const entry: ViewEntry = { run, tag, info, color: colorOf.get(run) ?? runColor(0) };
        const key = keyOf(info);
        const inside = key === UNREADABLE ? undefined : KIND_VIEWS.get(key)?.filtersInside;
        if (!matching.has(tag) && !(regex !== null && inside?.(entry, regex))) continue;
        const entries = byKind.get(key) ?? [];
        entries.push(entry);
        byKind.set(key, entries);
      }
    }
    if (this.tagsLoaded && byKind.size === 0 && tagNames.size > 0 && selectedRuns.length > 0) {
      this.message.appendChild(
        el("div", "ds-placeholder", `No tags match /${this.filterText}/ in the selected runs.`),
      );
    }
    let position = 0;
    for (const spec of specs) {
      const entries = byKind.get(spec.key) ?? [];
      let section = this.sections.get(spec.key);
      if (entries.length === 0) {
        if (section) this.dropSection(section);
        continue;
      }
      if (!section) section = this.createSection(spec);
      // Insert a new section, or move one into order; leave one in place alone: moving it
      // out and back would collapse the page for a moment and scroll the frame to the top.
      const there = this.cardsEl.children.item(position);
      if (there !== section.element) this.cardsEl.insertBefore(section.element, there);
      position++;
      section.entries = entries;
      section.view?.update(entries);
    }
  }

  /**
   * The sections in order: the plugin's kinds (each with its view, or a notice that this
   * tab has none), then the unreadable series. Without the kinds route's answer: the kinds
   * this tab has views for, titled by name.
   */
  private sectionSpecs(): SectionSpec[] {
    const kinds: KindInfo[] =
      this.kinds ?? [...KIND_VIEWS.keys()].map((name) => ({ name, title: name, subtitle: "", dataClass: "" }));
    const byName = new Map(kinds.map((k) => [k.name, k]));
    const specs: SectionSpec[] = kinds.map((kind) => {
      const notice = noViewNotice(kind);
      return {
        key: kind.name,
        name: kind.name,
        title: kind.title,
        subtitle: kind.subtitle,
        factory: KIND_VIEWS.get(kind.name) ?? { create: () => new NoticeView(() => notice) },
      };
    });
    specs.push({
      key: UNREADABLE,
      name: "unreadable",
      title: "Unreadable series",
      subtitle: "Series this tab cannot draw: why, and what to do.",
      factory: { create: () => new NoticeView((entry) => unreadableNotice(entry, byName)) },
    });
    return specs;
  }

  private createSection(spec: SectionSpec): Section {
    const { key, factory } = spec;
    const element = el("details", "ds-kind");
    element.open = true;
    element.dataset.kind = spec.name;
    element.dataset.testid = `section-${spec.name}`;
    const head = el("summary", "ds-kind-head");
    head.append(el("h2", "ds-kind-title", spec.title), el("span", "ds-kind-sub", spec.subtitle));
    const placeholder = el("div", "ds-kind-pending", "Loading…");
    placeholder.style.minHeight = `${SECTION_PLACEHOLDER_PX}px`;
    element.append(head, placeholder);
    const section: Section = { key, factory, element, placeholder, view: null, entries: [], waiting: false };
    element.addEventListener("toggle", () => {
      if (element.open) section.view?.resize();
    });
    this.sections.set(key, section);
    this.visibility.observe(element, (visible) => {
      if (!visible || section.view !== null || section.waiting) return;
      const built = [...this.sections.values()].some((s) => s.view !== null);
      if (!built) {
        this.buildView(section);
        return;
      }
      // Not the first: let the requests of the sections built before it end first, so the
      // top of the page draws first (the server and the page's one thread are shared).
      section.waiting = true;
      void requestsSettled(SECTION_WAIT_MS).then(() => {
        section.waiting = false;
        if (section.view === null && this.sections.get(key) === section) this.buildView(section);
      });
    });
    return section;
  }

  /** Build a section's view (it came near the viewport): it fetches and draws its entries. */
  private buildView(section: Section): void {
    this.visibility.unobserve(section.element);
    const view = section.factory.create({
      visibility: this.visibility,
      generation: () => this.generation,
      tagFilter: () => this.tagRegex,
    });
    section.view = view;
    section.placeholder.replaceWith(view.element);
    view.update(section.entries);
    view.refresh();
  }

  /**
   * Open a finding's evidence: its kind's section (opened, its view built now), its card at
   * its step and row (the view's `reveal`), scrolled to the top. A tag filter that hides the
   * series is cleared; the finding's run is selected.
   */
  private reveal(finding: Finding): void {
    const { kind, tag, step, name, statistic } = finding.evidence;
    const target: RevealTarget = { run: finding.run, tag, step, name, statistic };
    if (this.runChecked.get(target.run) === false) {
      this.runChecked.set(target.run, true);
      this.renderRuns();
      this.renderMain();
    }
    const shows = () =>
      this.sections.get(kind)?.entries.some((e) => e.run === target.run && e.tag === tag) ?? false;
    if (!shows() && this.filterText !== "") {
      this.filterText = this.filterInput.value = "";
      this.renderMain();
    }
    const section = this.sections.get(kind);
    if (!section) return;
    section.element.open = true;
    if (section.view === null) this.buildView(section);
    const there = section.view?.reveal?.(target) ?? section.element;
    there.classList.remove("ds-revealed");
    void there.offsetWidth; // restart the highlight's animation
    there.classList.add("ds-revealed");
    scrollIntoViewSettled(there);
  }

  private dropSection(section: Section): void {
    this.visibility.unobserve(section.element);
    section.view?.dispose();
    section.element.remove();
    this.sections.delete(section.key);
  }

  /** The tag filter as TensorBoard reads it: a case-insensitive regex; null if invalid. */
  private compileFilter(): RegExp | null {
    try {
      const re = new RegExp(this.filterText, "i");
      this.filterInput.classList.remove("ds-invalid");
      this.filterError.hidden = true;
      this.tagRegex = this.filterText === "" ? null : re;
      return re;
    } catch (e) {
      this.filterInput.classList.add("ds-invalid");
      this.filterError.hidden = false;
      this.filterError.textContent = `Invalid regular expression: ${errorText(e)}`;
      this.tagRegex = null;
      return null;
    }
  }

  private onResize(): void {
    const width = this.main.clientWidth;
    if (width === this.lastWidth) return;
    this.lastWidth = width;
    window.requestAnimationFrame(() => {
      for (const section of this.sections.values()) section.view?.resize();
    });
  }
}

function emptyState(): HTMLElement {
  const box = el("div", "ds-empty");
  box.dataset.testid = "empty-state";
  const code = (text: string) => el("pre", "", text);
  box.append(
    el("h2", "", "No deepscope data in this log directory yet"),
    el(
      "p",
      "",
      "This tab looks inside a network while it trains: how far each parameter moves per step " +
        "(update ratios ‖ΔW‖/‖W‖), the singular value spectra of its weights, how its channels " +
        "correlate, and what its saliency maps look at. Log them from your training script:",
    ),
    code(
      [
        "import deepscope",
        "",
        'writer = deepscope.SummaryWriter("runs/exp")',
        "monitor = deepscope.watch(model, optimizer, writer)   # update ratios and spectra",
        "# optional: correlation_layers=[...], probe=x, saliency_probe=(x, y)",
        "# ... train as usual ...",
        "monitor.close()",
      ].join("\n"),
    ),
    el("p", "", "or log what you computed yourself:"),
    code(
      [
        'writer.add_update_ratios("model", {"fc.weight": 1e-3}, global_step=step)',
        'writer.add_singular_values("fc", model.fc.weight, global_step=step)',
        'writer.add_channel_correlation("conv2", activations, global_step=step)',
        'writer.add_saliency("digits", images, maps, global_step=step, labels=y)',
      ].join("\n"),
    ),
    el("p", "", "then point TensorBoard at the log directory and reload this page:"),
    code("tensorboard --logdir runs"),
  );
  return box;
}
