// The tab's styles, injected as one <style> element (TensorBoard's CSP allows inline
// styles, not inline scripts). Colours and type follow TensorBoard's own dashboards.

export const FONT_FAMILY = 'Roboto, "Helvetica Neue", Helvetica, Arial, sans-serif';
export const LABEL_FONT = `11px ${FONT_FAMILY}`;

const CSS = `
html, body { margin: 0; padding: 0; background: #fff; }
body { color: #212121; font: 13px/1.4 ${FONT_FAMILY}; -webkit-font-smoothing: antialiased; }
* { box-sizing: border-box; }
button, input, select { font: inherit; color: inherit; }

.ds-progress { position: fixed; top: 0; left: 0; right: 0; height: 3px; z-index: 10;
  background: linear-gradient(90deg, transparent, #f57c00, transparent); background-size: 40% 100%;
  background-repeat: no-repeat; animation: ds-slide 1.1s linear infinite; }
.ds-progress[hidden] { display: none; }
@keyframes ds-slide { from { background-position: -40% 0; } to { background-position: 140% 0; } }

.ds-app { display: flex; align-items: flex-start; min-height: 100vh;
  background: linear-gradient(90deg, #f5f5f5 279px, #ebebeb 279px 280px, #fff 280px); }
.ds-sidebar { flex: none; width: 280px; position: sticky; top: 0; height: 100vh; overflow: auto;
  background: #f5f5f5; border-right: 1px solid #ebebeb; padding: 16px 16px 24px; }
@media (max-width: 720px) { .ds-sidebar { width: 200px; } .ds-app { background: #fff; } }
.ds-main { flex: 1; min-width: 0; padding: 16px 24px 48px; }

.ds-section { margin-bottom: 20px; }
.ds-section-title { font-size: 12px; font-weight: 500; color: #616161; text-transform: uppercase;
  letter-spacing: .04em; margin: 0 0 8px; display: flex; align-items: center; justify-content: space-between; }
.ds-filter { width: 100%; padding: 6px 8px; border: 1px solid #c6c6c6; border-radius: 4px; background: #fff; }
.ds-filter:focus { outline: none; border-color: #f57c00; box-shadow: 0 0 0 1px #f57c00; }
.ds-filter.ds-invalid { border-color: #c62828; box-shadow: 0 0 0 1px #c62828; }
.ds-filter-error { color: #c62828; font-size: 12px; margin-top: 4px; }

.ds-button { display: inline-flex; align-items: center; gap: 6px; padding: 6px 12px; border-radius: 4px;
  border: 1px solid #f57c00; background: #fff; color: #e65100; font-weight: 500; cursor: pointer; }
.ds-button:hover { background: #fff3e0; }
.ds-button:disabled { opacity: .6; cursor: default; }
.ds-refresh-row { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
.ds-muted { color: #757575; font-size: 12px; }
.ds-link { border: 0; background: none; color: #e65100; cursor: pointer; padding: 0; font-size: 12px;
  text-transform: none; letter-spacing: 0; }
.ds-link:hover { text-decoration: underline; }

.ds-runs { list-style: none; margin: 0; padding: 0; }
.ds-run { display: flex; align-items: center; gap: 8px; padding: 3px 0; cursor: pointer; user-select: none; }
.ds-run input { margin: 0; width: 15px; height: 15px; cursor: pointer; }
.ds-runs li { min-width: 0; }
.ds-run-name { flex: 1 1 auto; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.ds-swatch { display: inline-block; flex: none; width: 12px; height: 12px; border-radius: 50%;
  vertical-align: middle; }

.ds-header { display: flex; align-items: baseline; gap: 12px; margin: 0 0 12px; }
.ds-header h1 { font-size: 16px; font-weight: 500; margin: 0; }

.ds-card { background: #fff; border: 1px solid #e0e0e0; border-radius: 4px; margin: 0 0 16px;
  padding: 12px 16px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.04); }
.ds-card-head { display: flex; align-items: flex-start; justify-content: space-between; gap: 16px;
  flex-wrap: wrap; margin-bottom: 8px; }
.ds-card-title { font-size: 14px; font-weight: 500; margin: 0; word-break: break-all; min-width: 0; }
.ds-card { min-width: 0; max-width: 100%; }
.ds-card-sub { color: #757575; font-size: 12px; margin-top: 2px; }

.ds-legend { display: flex; align-items: center; gap: 14px; flex-wrap: wrap; font-size: 11px; color: #424242; }
.ds-legend { min-width: 0; max-width: 100%; }
.ds-legend-item { display: inline-flex; align-items: center; gap: 5px; min-width: 0; max-width: 100%;
  white-space: normal; overflow-wrap: anywhere; }
.ds-legend-title { font-weight: 500; }
.ds-colorbar { position: relative; margin: 0 14px 0 10px; }
.ds-colorbar-bar { height: 10px; border-radius: 1px; }
.ds-colorbar svg { display: block; overflow: visible; }
.ds-box { display: inline-block; width: 14px; height: 10px; border: 1px solid rgba(0,0,0,.15); }
.ds-hatch { background: repeating-linear-gradient(135deg, #a8a8a8 0 1.5px, #e6e6e6 1.5px 5px); }

.ds-runblock { margin-top: 10px; }
.ds-runblock-head { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; font-size: 12px; margin-bottom: 2px; }
.ds-runblock-name { font-weight: 500; }
/* Run headers of every kind: a 500-character run name wraps inside its card. */
.ds-runblock, .ds-runblock-head, .ds-corr-panel, .ds-corr-panel-head { min-width: 0; max-width: 100%; }
.ds-runblock-name, .ds-corr-panel-head > strong { min-width: 0; max-width: 100%; overflow-wrap: anywhere; }
.ds-badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; line-height: 16px; }
.ds-badge-bad { background: #ffebee; color: #c62828; }
.ds-warn { color: #8d6e00; background: #fff8e1; border-radius: 3px; padding: 2px 6px; font-size: 12px; margin: 2px 0; }
.ds-error { color: #b71c1c; background: #ffebee; border: 1px solid #ffcdd2; border-radius: 4px;
  padding: 8px 10px; font-size: 12px; white-space: pre-wrap; word-break: break-word;
  overflow-wrap: anywhere; max-width: 100%; margin: 6px 0; }
.ds-note { color: #616161; background: #fafafa; border: 1px dashed #e0e0e0; border-radius: 4px; padding: 8px 10px; font-size: 12px; }
.ds-placeholder { color: #9e9e9e; font-size: 12px; padding: 24px 0; text-align: center; }

.ds-plot { position: relative; }
.ds-plot canvas { position: absolute; display: block; cursor: crosshair; image-rendering: pixelated; }
.ds-plot svg { position: absolute; left: 0; top: 0; overflow: visible; pointer-events: none; }
.ds-plot svg .ds-hit { pointer-events: all; }
.ds-axis text { font: 11px ${FONT_FAMILY}; fill: #616161; }
.ds-axis path, .ds-axis line { stroke: #9e9e9e; }
.ds-axis-label { font: 11px ${FONT_FAMILY}; fill: #616161; }
.ds-grid line { stroke: #eeeeee; }
.ds-grid path { display: none; }

.ds-chart-section { margin-top: 16px; border-top: 1px solid #eeeeee; padding-top: 12px; }
.ds-chart-head { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; margin-bottom: 6px; }
.ds-chart-title { font-size: 13px; font-weight: 500; }
.ds-select { padding: 3px 6px; border: 1px solid #c6c6c6; border-radius: 4px; background: #fff; max-width: 280px; }
.ds-chips { display: flex; flex-wrap: wrap; gap: 6px; }
.ds-chip { display: inline-flex; align-items: center; gap: 6px; border: 1px solid #e0e0e0; border-radius: 12px;
  padding: 1px 4px 1px 8px; font-size: 12px; background: #fafafa; }
.ds-chip button { border: 0; background: none; cursor: pointer; color: #757575; font-size: 14px; line-height: 1; padding: 0 4px; }
.ds-chip button:hover { color: #000; }
.ds-chart-legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 11px; color: #424242; margin-top: 4px; }
.ds-line-sample { display: inline-block; vertical-align: middle; }

.ds-empty { max-width: 760px; margin: 32px auto; padding: 24px 28px; border: 1px solid #e0e0e0; border-radius: 6px; }
.ds-empty h2 { font-size: 18px; font-weight: 500; margin: 0 0 8px; }
.ds-empty p { margin: 8px 0; color: #424242; }
.ds-empty pre { background: #f5f5f5; border-radius: 4px; padding: 10px 12px; overflow-x: auto;
  font: 12px/1.5 "Roboto Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace; }

.ds-tooltip { position: fixed; z-index: 100; pointer-events: none; background: rgba(33,33,33,.94); color: #fff;
  border-radius: 4px; padding: 6px 8px; font-size: 12px; line-height: 1.45; max-width: 420px;
  box-shadow: 0 2px 6px rgba(0,0,0,.25); }
.ds-tooltip[hidden] { display: none; }
.ds-tooltip-row { display: flex; align-items: center; gap: 6px; white-space: nowrap; }
.ds-tooltip-label { color: #bdbdbd; }
.ds-tooltip-value { overflow: hidden; text-overflow: ellipsis; }
.ds-strong { font-weight: 700; }

.ds-kind { margin: 0 0 24px; min-width: 0; }
.ds-kind-body { min-width: 0; }
.ds-kind-pending { color: #9e9e9e; font-size: 12px; padding: 24px 0; text-align: center; }
/* Cards off screen are neither laid out nor painted; they keep their last height (or a guess
   until first drawn), so the page does not jump. Their own overflow stays inside them. */
.ds-kind-body > * { content-visibility: auto; contain-intrinsic-size: auto 480px; }
.ds-kind-head { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; cursor: pointer;
  list-style: none; margin: 0 0 10px; }
.ds-kind-head::-webkit-details-marker { display: none; }
.ds-kind-head::before { content: "▾"; color: #757575; width: 10px; }
.ds-kind:not([open]) > .ds-kind-head::before { content: "▸"; }
.ds-kind-title { font-size: 16px; font-weight: 500; margin: 0; }
.ds-kind-sub { color: #757575; font-size: 12px; }

.ds-slider { display: flex; align-items: center; gap: 8px; font-size: 12px; min-width: 260px; }
.ds-slider-title { color: #616161; font-weight: 500; }
.ds-slider-input { flex: 1; accent-color: #f57c00; min-width: 120px; }
.ds-slider-label { color: #424242; font-variant-numeric: tabular-nums; white-space: pre; min-width: 110px; }
`;

const extraCss: string[] = [];

/** Add a view's own CSS (call at module load, before render()). */
export function addStyles(css: string): void {
  extraCss.push(css);
  const style = document.getElementById("deepscope-style");
  if (style) style.textContent += css;
}

export function injectStyles(doc: Document = document): void {
  if (doc.getElementById("deepscope-style")) return;
  const style = doc.createElement("style");
  style.id = "deepscope-style";
  style.textContent = CSS + extraCss.join("\n");
  doc.head.appendChild(style);
}
