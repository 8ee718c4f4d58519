// The Findings section's styles: a line per finding, its severity in colour and in words
// (error red, warning amber, info blue, as TensorBoard's own alerts), a stripe of the same
// colour on its left.

import { addStyles } from "../style";

addStyles(`
.ds-findings .ds-kind-head { align-items: center; }
.ds-fd-counts { display: inline-flex; gap: 6px; }
.ds-fd-count { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; line-height: 18px; font-weight: 500; }
.ds-fd-count-none { color: #2e7d32; background: #e8f5e9; }
.ds-fd-body { border: 1px solid #e0e0e0; border-radius: 4px; background: #fff; padding: 4px 0; }
.ds-fd-pending { color: #9e9e9e; font-size: 12px; padding: 12px 16px; }
.ds-fd-list { list-style: none; margin: 0; padding: 0; }
.ds-fd-item + .ds-fd-item { border-top: 1px solid #f0f0f0; }
.ds-fd-line { display: grid; grid-template-columns: 72px minmax(110px, 190px) minmax(0, 1fr) 190px;
  gap: 2px 14px; align-items: baseline; width: 100%; margin: 0; padding: 7px 12px 7px 10px; border: 0;
  border-left: 3px solid transparent; background: none; text-align: left; cursor: pointer; font-size: 13px; }
.ds-fd-line:hover { background: #fafafa; }
.ds-fd-line:hover .ds-fd-where { text-decoration: underline; }
.ds-fd-line:focus-visible { outline: 2px solid #f57c00; outline-offset: -2px; }
.ds-fd-line.ds-fd-active { background: #fff3e0; }
.ds-fd-line-error { border-left-color: #c62828; }
.ds-fd-line-warning { border-left-color: #f9a825; }
.ds-fd-line-info { border-left-color: #64b5f6; }
.ds-fd-sev { justify-self: start; padding: 0 7px; border-radius: 3px; font-size: 11px; font-weight: 500; line-height: 18px;
  text-transform: uppercase; letter-spacing: .03em; }
.ds-fd-sev-error { color: #b71c1c; background: #ffebee; }
.ds-fd-sev-warning { color: #7a5c00; background: #fff8e1; }
.ds-fd-sev-info { color: #0d47a1; background: #e3f2fd; }
.ds-fd-who { display: flex; flex-direction: column; gap: 1px; min-width: 0; }
.ds-fd-run { display: flex; align-items: center; gap: 6px; min-width: 0; font-weight: 500; color: #424242; }
.ds-fd-run-name, .ds-fd-layer { min-width: 0; overflow-wrap: anywhere; }
.ds-fd-layer { font: 12px "Roboto Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace; color: #212121; }
.ds-fd-text { display: flex; flex-direction: column; gap: 2px; min-width: 0; overflow-wrap: anywhere; }
.ds-fd-message { color: #212121; }
.ds-fd-advice { color: #616161; font-size: 12px; }
.ds-fd-try { font-weight: 500; color: #757575; margin-right: 6px; text-transform: uppercase; font-size: 10px; letter-spacing: .04em; }
.ds-fd-layer { padding-left: 18px; }
.ds-fd-where { color: #e65100; font-size: 12px; text-align: right; }
.ds-fd-where > span { white-space: nowrap; }
@media (max-width: 1000px) {
  .ds-fd-line { grid-template-columns: 72px minmax(0, 1fr); }
  .ds-fd-text, .ds-fd-where { grid-column: 2; }
  .ds-fd-where { text-align: left; }
}
.ds-fd-toggles { display: flex; gap: 16px; padding: 6px 12px 2px 13px; }
.ds-fd-checked { font-size: 12px; color: #424242; padding: 4px 13px; }
.ds-fd-checked.ds-muted { color: #757575; }
.ds-fd-none { padding: 8px 0 4px; }
.ds-fd-none-title { font-size: 13px; font-weight: 500; color: #2e7d32; padding: 2px 13px 4px; }
.ds-fd-warnings { font-size: 12px; color: #757575; padding: 2px 13px 4px; }
.ds-fd-warnings summary { cursor: pointer; }
.ds-fd-warnings ul { margin: 4px 0; padding-left: 18px; }
.ds-revealed { scroll-margin-top: 12px; animation: ds-reveal 1.6s ease-out; }
@keyframes ds-reveal { from { box-shadow: 0 0 0 3px rgba(245,124,0,.6); } to { box-shadow: 0 0 0 3px rgba(245,124,0,0); } }
`);
