"""What the integrations' tests read back from a real `tensorboard`: tags, update ratios, norms.

`served_series(base, run, expected_steps)` waits until TensorBoard (started by
tests/conftest.py's `tensorboard_server`, `--reload_interval=1`) serves the
run's update ratios at every expected step, then returns the run's `tags`
entry, its update ratios and its parameters' gradient norms as numpy arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np

from tests.conftest import get, wait_until
from tests.route_helpers import number

ROUTES = "/data/plugin/deepscope"
# The kinds a default watch() logs: update ratios, spectra, layer statistics
# (activations and the parameters' gradient/weight norms).
DEFAULT_KINDS = {"update_ratios", "spectrum", "layer_statistics"}


@dataclass
class Served:
    tags: dict  # tag → its entry in /tags
    ratio_steps: list[int]
    ratio_names: list[str]
    ratios: np.ndarray  # [steps, names] float64, NaN where null
    norm_steps: list[int]
    norm_names: list[str]
    grad_norms: np.ndarray  # [steps, names] float64, NaN where null


def _json(base: str, path: str, **params) -> dict:
    status, body = get(f"{base}{ROUTES}/{path}?{urlencode(params, doseq=True)}")
    if status != 200:
        raise ValueError(f"{path}: {status} {body[:300]!r}")
    return json.loads(body)


def _array(values: list[list]) -> np.ndarray:
    return np.array(
        [[np.nan if v is None else number(v) for v in row] for row in values], dtype=np.float64
    )


def served_series(base: str, run: str, expected_steps: list[int], timeout: float = 60) -> Served:
    """The run's tags, update ratios and gradient norms once every expected step is served."""

    def ready():
        tags = _json(base, "tags").get(run, {})
        if "update_ratios" not in tags or "layer_statistics/parameters" not in tags:
            return None
        ratios = _json(base, "update_ratios", run=run, tag="update_ratios")
        norms = _json(
            base,
            "layer_statistics",
            run=run,
            tag="layer_statistics/parameters",
            statistic="grad_norm",
        )
        if ratios["steps"] != expected_steps or norms["steps"] != expected_steps:
            return None
        return tags, ratios, norms

    tags, ratios, norms = wait_until(ready, timeout=timeout, what=f"run {run!r} served")
    return Served(
        tags=tags,
        ratio_steps=ratios["steps"],
        ratio_names=ratios["names"],
        ratios=_array(ratios["values"]),
        norm_steps=norms["steps"],
        norm_names=norms["names"],
        grad_norms=_array(norms["values"]),
    )


def kinds_of(tags: dict) -> set[str]:
    """The kinds of a run's /tags entry, asserting none carries an error."""
    for tag, entry in tags.items():
        assert "error" not in entry, (tag, entry)
    return {entry["kind"] for entry in tags.values()}


def reference_table(reference: dict[int, dict[str, float]], steps, names) -> np.ndarray:
    """[steps, names] float64 of a {step: {name: value}} reference, NaN where missing."""
    return np.array(
        [[reference.get(s, {}).get(n, np.nan) for n in names] for s in steps], dtype=np.float64
    )
