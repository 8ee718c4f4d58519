// The rows of the update-ratio card at 200 parameters: parameter names grouped by module
// path into a collapsible tree, numbered blocks (encoder.layer.0 … 11) under one row, the
// common prefix dropped, and labels that keep what tells parameters apart (the block
// indices and the leaf) when a name is too long to show whole.

/** A parameter: one heatmap row. */
export interface ParamLeaf {
  kind: "param";
  /** Unique among the tree's nodes: "p:" + the full name. */
  key: string;
  /** The full parameter name, as logged. */
  name: string;
  /** Its path without the tree's common prefix, split at dots. */
  segments: string[];
}

/** A module: a row summarising every parameter under it, expandable into its children. */
export interface GroupNode {
  kind: "group";
  /** Unique among the tree's nodes: "g:" + its path without the common prefix. */
  key: string;
  /** Its path without the common prefix, split at dots (e.g. ["encoder", "layer"]). */
  segments: string[];
  /** Every parameter under it, in logged order. */
  names: string[];
  children: TreeNode[];
  /** Its children are numbered blocks (encoder.layer.0, encoder.layer.1, …). */
  blocks: boolean;
}

export type TreeNode = ParamLeaf | GroupNode;

export interface ParamTree {
  /** The dot-separated head every name shares, dropped from labels ("" when none). */
  prefix: string;
  /** The top-level rows are its children. */
  root: GroupNode;
}

/** One visible row of the heatmap. */
export interface TreeRow {
  node: TreeNode;
  /** Nesting depth (0 = top level), for the label's indent. */
  depth: number;
  /** For a group: whether its children are shown below it. */
  expanded: boolean;
}

const INDEX = /^\d+$/;

interface Trie {
  children: Map<string, Trie>;
  name?: string;
}

/**
 * Segments every name in `names` starts with, leaving at least two segments of each (so a
 * label never shrinks to a bare "weight"). None for a single name: it is shown whole.
 */
export function commonPrefix(names: readonly string[]): string[] {
  if (names.length < 2) return [];
  const split = names.map((n) => n.split("."));
  let k = 0;
  const limit = Math.min(...split.map((s) => s.length - 2));
  while (k < limit && split.every((s) => s[k] === split[0][k])) k++;
  return split[0].slice(0, k);
}

/**
 * Group `names` by module path. `prefixFrom` (default `names`) decides the common prefix,
 * so a filtered tree keeps the labels of the whole one.
 */
export function buildTree(names: readonly string[], prefixFrom: readonly string[] = names): ParamTree {
  const prefix = commonPrefix(prefixFrom);
  const root: Trie = { children: new Map() };
  for (const name of names) {
    let segments = name.split(".");
    if (prefix.length > 0 && prefix.every((p, k) => segments[k] === p)) {
      segments = segments.slice(prefix.length);
    }
    let node = root;
    for (const seg of segments) {
      let child = node.children.get(seg);
      if (!child) {
        child = { children: new Map() };
        node.children.set(seg, child);
      }
      node = child;
    }
    if (node.name === undefined) node.name = name;
  }
  const top = toGroup(root, []);
  return { prefix: prefix.length ? prefix.join(".") + "." : "", root: top };
}

function toNode(trie: Trie, segments: string[]): TreeNode {
  // A module with one child and no parameter of its own is merged into it ("encoder.layer").
  if (trie.name !== undefined && trie.children.size === 0) {
    return { kind: "param", key: `p:${trie.name}`, name: trie.name, segments };
  }
  if (trie.name === undefined && trie.children.size === 1) {
    const [[seg, child]] = [...trie.children];
    return toNode(child, [...segments, seg]);
  }
  return toGroup(trie, segments);
}

function toGroup(trie: Trie, segments: string[]): GroupNode {
  const children: TreeNode[] = [];
  if (trie.name !== undefined) {
    children.push({ kind: "param", key: `p:${trie.name}`, name: trie.name, segments });
  }
  for (const [seg, child] of trie.children) children.push(toNode(child, [...segments, seg]));
  const names: string[] = [];
  for (const c of children) {
    if (c.kind === "param") names.push(c.name);
    else names.push(...c.names);
  }
  // Numbered blocks: every child is a module whose path goes on with a number here.
  const L = segments.length;
  const blocks =
    children.length >= 2 &&
    children.every((c) => c.kind === "group" && c.segments.length > L && INDEX.test(c.segments[L]));
  return { kind: "group", key: `g:${segments.join(".")}`, segments, names, children, blocks };
}

/** Every parameter of the tree as a row of its own, in order (no groups). */
export function flatRows(tree: ParamTree): TreeRow[] {
  const rows: TreeRow[] = [];
  const walk = (node: TreeNode) => {
    if (node.kind === "param") rows.push({ node, depth: 0, expanded: false });
    else node.children.forEach(walk);
  };
  walk(tree.root);
  return rows;
}

/** The rows shown: the top level, and the children of each expanded group below it. */
export function visibleRows(tree: ParamTree, expanded: ReadonlySet<string>): TreeRow[] {
  const rows: TreeRow[] = [];
  const walk = (node: TreeNode, depth: number) => {
    const open = node.kind === "group" && expanded.has(node.key);
    rows.push({ node, depth, expanded: open });
    if (node.kind === "group" && open) for (const c of node.children) walk(c, depth + 1);
  };
  for (const c of tree.root.children) walk(c, 0);
  return rows;
}

/** The keys of the groups `name` is under, outermost first ([] when it is not in `tree`). */
export function groupsAbove(tree: ParamTree, name: string): string[] {
  const path: string[] = [];
  const walk = (group: GroupNode): boolean => {
    for (const child of group.children) {
      if (child.kind === "param") {
        if (child.name === name) return true;
      } else if (child.names.includes(name)) {
        path.push(child.key);
        return walk(child);
      }
    }
    return false;
  };
  return walk(tree.root) ? path : [];
}

/**
 * Groups to open at first so that at most about `budget` rows show: level by level, the
 * cheapest first within a level, the numbered blocks of one module all together or not at
 * all (so layer.0 … layer.11 open alike).
 */
export function defaultExpanded(tree: ParamTree, budget: number): Set<string> {
  const expanded = new Set<string>();
  let rows = tree.root.children.length;
  // Units that can open next: a group, or all the blocks of a blocks group at once.
  let frontier = unitsOf(tree.root.children, false, 0);
  while (frontier.length > 0) {
    let best = 0;
    frontier.forEach((u, k) => {
      const b = frontier[best];
      if (u.depth < b.depth || (u.depth === b.depth && u.cost < b.cost)) best = k;
    });
    const unit = frontier[best];
    frontier = frontier.filter((_, k) => k !== best);
    if (rows + unit.cost > budget) continue;
    rows += unit.cost;
    for (const g of unit.groups) {
      expanded.add(g.key);
      frontier.push(...unitsOf(g.children, g.blocks, unit.depth + 1));
    }
  }
  return expanded;
}

interface Unit {
  groups: GroupNode[];
  depth: number;
  /** Rows that opening it adds: the children of its groups (the group rows stay). */
  cost: number;
}

function unitsOf(children: readonly TreeNode[], siblingsAreBlocks: boolean, depth: number): Unit[] {
  const groups = children.filter((c): c is GroupNode => c.kind === "group");
  const unit = (gs: GroupNode[]): Unit => ({
    groups: gs,
    depth,
    cost: gs.reduce((n, g) => n + g.children.length, 0),
  });
  if (groups.length === 0) return [];
  return siblingsAreBlocks ? [unit(groups)] : groups.map((g) => unit([g]));
}

/**
 * A group's own words: "encoder.layer.0–11" for numbered blocks (with what follows the
 * number when all blocks share it: "stages.0–3.layers"), else its path.
 */
export function groupSegments(node: GroupNode): string[] {
  if (!node.blocks) return node.segments;
  const L = node.segments.length;
  const kids = node.children as GroupNode[];
  const first = kids[0].segments;
  const last = kids[kids.length - 1].segments;
  const rest = first.slice(L + 1).join(".");
  const shared = kids.every((c) => c.segments.slice(L + 1).join(".") === rest);
  return [...node.segments, `${first[L]}–${last[L]}`, ...(shared ? first.slice(L + 1) : [])];
}

function isIndex(seg: string): boolean {
  return INDEX.test(seg) || /^\d+–\d+$/.test(seg);
}

/**
 * Labels for a path, longest first, each shorter one keeping what tells it apart: the whole
 * path; without its leading segments; then only the numbered segments with their names
 * ("layer.11") and the last two segments ("key.bias"), the rest cut to "…"; then without
 * the numbered segments from the left, keeping the last. The caller takes the first that fits (and cuts the last from the left).
 */
export function labelCandidates(segments: readonly string[]): string[] {
  const n = segments.length;
  const whole = segments.join(".");
  const out = [whole];
  const essential = segments.map(
    (s, i) => isIndex(s) || (i + 1 < n && isIndex(segments[i + 1])) || i >= n - 2,
  );
  const compose = (keep: readonly boolean[]) => {
    let text = "";
    let cut = false;
    segments.forEach((s, i) => {
      if (!keep[i]) {
        cut = true;
        return;
      }
      if (text === "") text = cut ? `…${s}` : s;
      else text += cut ? ` … ${s}` : `.${s}`;
      cut = false;
    });
    return cut ? `${text} …` : text;
  };
  const firstEssential = essential.indexOf(true);
  out.push(compose(segments.map((_, i) => i >= firstEssential)));
  out.push(compose(essential));
  // Then the numbered segments go from the left, a name and its number at a time
  // (stages.3.layers.2.layer.1 -> layers.2.layer.1 -> layer.1): the rows above say them.
  const keep = [...essential];
  for (let i = 0; i < n - 2; i++) {
    if (!isIndex(segments[i])) continue;
    const later = segments.slice(i + 1, n - 2).some(isIndex);
    if (!later) break;
    keep[i] = false;
    if (i > 0 && !isIndex(segments[i - 1])) keep[i - 1] = false;
    out.push(compose(keep));
  }
  return [...new Set(out)];
}

/** Which parameters a filter lets through; `error` says why a pattern was read as text. */
export interface ParamFilter {
  test(name: string): boolean;
  /** Set when the text is not a valid regex and is matched as plain text instead. */
  error?: string;
  /** Whether it lets every name through (empty text). */
  all: boolean;
}

/** A case-insensitive regex from `text` (like TensorBoard's tag filter); plain text if invalid. */
export function paramFilter(text: string): ParamFilter {
  if (text.trim() === "") return { test: () => true, all: true };
  try {
    const re = new RegExp(text, "i");
    return { test: (name) => re.test(name), all: false };
  } catch (e) {
    const needle = text.toLowerCase();
    return {
      test: (name) => name.toLowerCase().includes(needle),
      all: false,
      error: `not a valid regex (${e instanceof Error ? e.message : String(e)}): matching it as text`,
    };
  }
}
