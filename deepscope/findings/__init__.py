"""Findings: which layer is the problem, in plain words with the numbers.

Rules over what deepscope logged (update ratios, layer statistics, spectra,
correlations), each a small pure function of one run's evidence, with its
thresholds in one table (`thresholds.RULES`). Plugin side: numpy only, never
torch, so findings work on any log dir (`/findings`, `deepscope diagnose`).
"""
