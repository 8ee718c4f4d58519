// The saliency card's CSS (controls, legend, grid, panels, pager, token rows).

import { addStyles } from "../style";

addStyles(`
.ds-sal-controls { display: flex; align-items: center; gap: 8px 16px; flex-wrap: wrap; margin: 4px 0 8px; font-size: 12px; }
.ds-sal-controls label { display: inline-flex; align-items: center; gap: 6px; color: #616161; }
.ds-sal-sliders { display: flex; flex-direction: column; gap: 4px; margin-bottom: 6px; }
.ds-sal-legend { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; font-size: 11px; color: #424242; margin: 4px 0 8px; }
.ds-sal-bar { width: 140px; height: 10px; border-radius: 1px; border: 1px solid rgba(0,0,0,.1); }
.ds-sal-grid { display: grid; justify-content: start; gap: 6px 12px; align-items: start; overflow-x: auto; padding-bottom: 4px; }
.ds-sal-colhead { font-size: 11px; color: #616161; font-weight: 500; white-space: nowrap; }
.ds-sal-rowhead { font-size: 12px; line-height: 1.5; min-width: 92px; }
.ds-sal-rowhead .ds-sal-idx { font-weight: 500; }
.ds-sal-wrong { color: #c62828; font-weight: 500; }
.ds-sal-right { color: #2e7d32; }
.ds-sal-panel { display: block; image-rendering: pixelated; cursor: crosshair; border: 1px solid #e0e0e0; }
.ds-sal-bad { display: flex; align-items: center; justify-content: center; text-align: center; font-size: 11px;
  color: #b71c1c; background: #ffebee; border: 1px dashed #ef9a9a; padding: 4px; overflow-wrap: anywhere; }
.ds-sal-pager { display: inline-flex; align-items: center; gap: 4px; }
.ds-sal-pager[hidden] { display: none; }
.ds-sal-pager button { border: 1px solid #c6c6c6; background: #fff; border-radius: 3px; cursor: pointer; padding: 0 6px; }
.ds-sal-pager button:disabled { opacity: .4; cursor: default; }
.ds-sal-tokens { display: flex; flex-wrap: wrap; gap: 2px; max-width: 720px; font: 13px/1.6 ui-monospace, SFMono-Regular, Menlo, monospace; }
.ds-sal-token { white-space: pre; padding: 0 3px; border-radius: 2px; border: 1px solid rgba(0,0,0,.08); cursor: default; }
.ds-sal-token-bad { outline: 1px dashed #c62828; }
.ds-sal-messages .ds-error, .ds-sal-messages .ds-warn { white-space: pre-wrap; overflow-wrap: anywhere; }
`);
