// One tooltip for the whole tab: a box that follows the pointer.

export interface TooltipRow {
  /** data-field attribute, so tests (and people) can find a value without parsing. */
  field?: string;
  label?: string;
  value: string;
  color?: string;
  strong?: boolean;
}

let box: HTMLDivElement | null = null;

function ensureBox(): HTMLDivElement {
  if (box && box.isConnected) return box;
  box = document.createElement("div");
  box.className = "ds-tooltip";
  box.dataset.testid = "tooltip";
  box.setAttribute("role", "tooltip");
  box.hidden = true;
  document.body.appendChild(box);
  return box;
}

export function showTooltip(rows: readonly TooltipRow[], clientX: number, clientY: number): void {
  const el = ensureBox();
  el.replaceChildren();
  for (const row of rows) {
    const line = document.createElement("div");
    line.className = "ds-tooltip-row";
    if (row.color) {
      const sw = document.createElement("span");
      sw.className = "ds-swatch";
      sw.style.background = row.color;
      line.appendChild(sw);
    }
    if (row.label) {
      const label = document.createElement("span");
      label.className = "ds-tooltip-label";
      label.textContent = row.label;
      line.appendChild(label);
    }
    const value = document.createElement("span");
    value.className = row.strong ? "ds-tooltip-value ds-strong" : "ds-tooltip-value";
    if (row.field) value.dataset.field = row.field;
    value.textContent = row.value;
    line.appendChild(value);
    el.appendChild(line);
  }
  el.hidden = false;
  const pad = 14;
  const { innerWidth, innerHeight } = window;
  const rect = el.getBoundingClientRect();
  let x = clientX + pad;
  let y = clientY + pad;
  if (x + rect.width > innerWidth - 4) x = Math.max(4, clientX - pad - rect.width);
  if (y + rect.height > innerHeight - 4) y = Math.max(4, clientY - pad - rect.height);
  el.style.left = `${x}px`;
  el.style.top = `${y}px`;
}

export function hideTooltip(): void {
  if (box) box.hidden = true;
}
