// The rows a grid card's heatmaps show: its row names (parameters, layers) narrowed by the
// card's filter box and the sidebar's filter, grouped by module path past FLAT_MAX rows
// (groups open and close, each filter's tree its own way), labels fitted to one column.

import {
  INDENT,
  LABEL_GAP,
  MAX_LABEL_WIDTH,
  fitLabel,
  rowLabelWidth,
  textWidth,
  type GroupSummary,
  type HeatRow,
} from "./heatmap";
import {
  buildTree,
  defaultExpanded,
  flatRows,
  groupSegments,
  groupsAbove,
  labelCandidates,
  paramFilter,
  visibleRows,
  type GroupNode,
  type ParamTree,
  type TreeRow,
} from "./param_groups";

/** At most this many rows (after filtering) show as plain rows, ungrouped. */
export const FLAT_MAX = 40;
/** About this many rows show at first when the rows are grouped. */
export const ROW_BUDGET = 36;
/** Room the line chart's y axis needs on the left. */
export const MIN_LEFT = 64;

/** The card's rows for the filters and expansion in force, and the label column they need. */
export interface RowSet {
  signature: string;
  rows: HeatRow[];
  left: number;
  /** Names that pass the filters, in logged order. */
  shown: string[];
  total: number;
}

/** A card's filters, group summary and open groups, and the rows they give. */
export class RowModel {
  /** The card's filter box (regex or text). */
  filterText = "";
  /** The sidebar's tag filter when it narrows this tag's rows (the tag itself does not match). */
  sidebarFilter: RegExp | null = null;
  summary: GroupSummary = "median";
  /** Open groups, per filter (each filter's tree opens its own way at first). */
  private readonly expanded = new Map<string, Set<string>>();
  private tree: ParamTree | null = null;
  private labelWidth: { key: string; px: number } | null = null;
  private readonly heatRows = new Map<string, HeatRow>();

  /** Whether `name` passes the card's filter box and the sidebar's filter. */
  passes(): (name: string) => boolean {
    const box = paramFilter(this.filterText);
    const side = this.sidebarFilter;
    return (name) => box.test(name) && (side === null || side.test(name));
  }

  /** Whether a filter (box or sidebar) narrows the rows. */
  filtering(): boolean {
    return this.filterText.trim() !== "" || this.sidebarFilter !== null;
  }

  /** The rows of `all` (every name, in logged order); `previous` is returned when unchanged. */
  compute(all: readonly string[], previous: RowSet | null): RowSet {
    const shown = all.filter(this.passes());
    const tree = buildTree(shown, all);
    this.tree = tree;
    const grouped = shown.length > FLAT_MAX;
    const treeRows: TreeRow[] = grouped ? visibleRows(tree, this.openGroups()) : flatRows(tree);
    const signature = JSON.stringify([
      all.join("\u0000"),
      this.filterKey(),
      this.summary,
      treeRows.map((r) => [r.node.key, r.expanded]),
    ]);
    if (previous?.signature === signature) return previous;
    const rows = treeRows.map((r) => this.heatRow(r, tree.prefix));
    // The label column fits every row the tree can show, so opening a group moves nothing.
    const widthKey = JSON.stringify([signature.length, grouped, tree.prefix, shown]);
    if (this.labelWidth?.key !== widthKey) {
      const everyRow = grouped ? visibleRows(tree, allGroups(tree)) : treeRows;
      let widest = 0;
      for (const r of everyRow) widest = Math.max(widest, rowLabelWidth(this.heatRow(r, tree.prefix)));
      this.labelWidth = { key: widthKey, px: widest };
    }
    return {
      signature,
      rows,
      left: Math.max(MIN_LEFT, Math.min(MAX_LABEL_WIDTH, this.labelWidth.px) + LABEL_GAP),
      shown,
      total: all.length,
    };
  }

  /** Open `key`'s group if closed, close it if open. */
  toggleGroup(key: string): void {
    const open = this.openGroups();
    if (open.has(key)) open.delete(key);
    else open.add(key);
  }

  /**
   * Open the groups `name` is under (in the last `compute`'s rows), so that its own row
   * shows; whether those rows have it.
   */
  openTo(name: string): boolean {
    if (!this.tree || !this.tree.root.names.includes(name)) return false;
    const open = this.openGroups();
    for (const key of groupsAbove(this.tree, name)) open.add(key);
    return true;
  }

  /** Open every group when one of `rows` is closed, else close them all. */
  setAllExpanded(rows: readonly HeatRow[]): void {
    const tree = this.tree;
    if (!tree) return;
    const open = this.openGroups();
    const anyClosed = rows.some((r) => r.kind === "group" && !r.expanded);
    open.clear();
    if (anyClosed) for (const key of allGroups(tree)) open.add(key);
  }

  private filterKey(): string {
    return JSON.stringify([this.filterText, this.sidebarFilter?.source ?? null]);
  }

  private openGroups(): Set<string> {
    const key = this.filterKey();
    let open = this.expanded.get(key);
    if (!open) {
      open = this.tree ? defaultExpanded(this.tree, ROW_BUDGET) : new Set<string>();
      // Remembered once there are names to group (the first call may come before any).
      if (this.tree && this.tree.root.names.length > 0) this.expanded.set(key, open);
    }
    return open;
  }

  /** A tree row as a heatmap row, its label fitted to the label column (remembered). */
  private heatRow(row: TreeRow, prefix: string): HeatRow {
    const key = `${prefix}\u0000${row.node.key}\u0000${row.depth}\u0000${row.expanded}`;
    let out = this.heatRows.get(key);
    if (!out) {
      out = heatRow(row, prefix);
      this.heatRows.set(key, out);
    }
    return out;
  }
}

/** The keys of every group of `tree`. */
function allGroups(tree: ParamTree): Set<string> {
  const keys = new Set<string>();
  const walk = (g: GroupNode) => {
    for (const c of g.children) {
      if (c.kind === "group") {
        keys.add(c.key);
        walk(c);
      }
    }
  };
  walk(tree.root);
  return keys;
}

/** A tree row as a heatmap row: its label fitted to the label column. */
function heatRow(row: TreeRow, prefix: string): HeatRow {
  const { node, depth } = row;
  if (node.kind === "param") {
    return {
      key: node.key,
      kind: "param",
      names: [node.name],
      label: fitLabel(labelCandidates(node.segments), MAX_LABEL_WIDTH - depth * INDENT - 14),
      title: node.name,
      depth,
      expanded: false,
    };
  }
  const segments = groupSegments(node);
  const extra = 18 + textWidth(` ${node.names.length}`); // the toggle and the count
  return {
    key: node.key,
    kind: "group",
    names: node.names,
    label: fitLabel(labelCandidates(segments), MAX_LABEL_WIDTH - depth * INDENT - extra),
    title: prefix + segments.join("."),
    depth,
    expanded: row.expanded,
  };
}
