"""The damaged-data fuzz: which requests to make of tests/damaged_logs.py's log, and what each
answer must be. Shared by the in-process test (werkzeug, tests/unit/test_damaged_routes.py)
and the one through real tensorboard processes (tests/integration/test_damaged_data.py).

Every route of every kind is asked, with a table of query arguments per route
(`STEP_ROUTES`: routes reading one step, asked at each step and at the newest;
`SERIES_ROUTES`: the others). A route the plugin serves that neither table
lists fails `unlisted_routes`, so a new route joins the fuzz.

What every answer must be (`check_answer`): no status ≥ 500 and no answer of the
plugin's safety net (an unexpected exception, `UNEXPECTED_ERROR_STATUS`); JSON
or plain text, never HTML; an error's body says something. Then per request:
a good step is served with the values written (compared with numpy's
reference within the stored dtype's precision) and `"error": null`; a damaged
step answers 200 with its `error`; multi-step routes serve the good steps and
name the damaged ones; a series with damaged metadata is an error (4xx) on
every route and listed in `/tags` with its error. Wherever numbers are served
without an error they must be possible (|ρ| ≤ 1, singular values ≥ 0 and
descending, ratios ≥ 0, indices in range).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import math
import re
from collections.abc import Callable, Sequence

import numpy as np

from tests.damaged_logs import (
    GOOD_STEPS,
    DamagedLog,
    DamagedMetadata,
    DamagedSeries,
)

# Routes that are not a kind's.
GENERAL_ROUTES = frozenset({"index.js", "tags", "kinds"})

# Route → variant label → extra query arguments. Asked at each kept step and without `step`.
STEP_ROUTES: dict[str, dict[str, dict]] = {
    "spectrum": {"": {}},
    "correlation_matrix": {
        "": {"size": 256},
        "clustered": {"order": "clustered"},
        "matched": {"order": "matched"},
        "max_abs": {"reduce": "max_abs", "size": 2},
        "window": {"row_start": 1, "row_end": 3, "col_start": 0, "col_end": 2},
    },
    "correlation_matching": {"": {}},
    "correlation_channels": {"": {}},
    "saliency": {"": {}, "two": {"samples": "0-1"}, "last": {"samples": "2"}},
}
# Route → variant label → function(series) → query arguments besides run (tag included).
SERIES_ROUTES: dict[str, dict[str, Callable[[DamagedSeries], dict]]] = {
    "update_ratios": {
        "": lambda s: {"tag": s.tag},
        "base64": lambda s: {"tag": s.tag, "format": "base64"},
        "name": lambda s: {"tag": s.tag, "name": s.names[0] if s.names else "x"},
    },
    "layer_values": {
        "": lambda s: {"tag": s.tag},
        "base64": lambda s: {"tag": s.tag, "format": "base64"},
    },
    "spectrum_steps": {"": lambda s: {"tag": s.tag}},
    "spectrum_metrics": {
        "": lambda s: {"tag": s.tag},
        "max_steps": lambda s: {"tag": s.tag, "max_steps": 2},
        "whole_run": lambda s: {},
    },
    "spectrum_evolution": {
        "": lambda s: {"tag": s.tag},
        "small": lambda s: {"tag": s.tag, "max_steps": 2, "max_values": 2},
    },
    "correlation_steps": {"": lambda s: {"tag": s.tag}},
    "saliency_steps": {"": lambda s: {"tag": s.tag}},
}

FLOAT16_EPS = float(np.finfo(np.float16).eps)
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def kind_of_route(route: str, kind_names: Sequence[str]) -> str | None:
    """The kind a route belongs to: the longest kind name it starts with."""
    found = [k for k in kind_names if route == k or route.startswith(k + "_")]
    return max(found, key=len) if found else None


def unlisted_routes(routes: Sequence[str]) -> list[str]:
    """The plugin's routes the fuzz has no query arguments for."""
    return sorted(
        r
        for r in routes
        if r not in GENERAL_ROUTES and r not in STEP_ROUTES and r not in SERIES_ROUTES
    )


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: dict  # lower-case names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        body = self.body
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return json.loads(body)

    def head(self, chars: int = 300) -> str:
        return repr(self.text()[:chars])


# A fetch: (route, query arguments; list values repeat) → Answer.
Fetch = Callable[[str, dict], Answer]


@dataclasses.dataclass(frozen=True)
class Request:
    route: str
    params: dict
    step: int | None  # the step asked for; None: the newest, or not a one-step route
    variant: str

    def describe(self) -> str:
        shown = {k: v for k, v in self.params.items() if k != "run"}
        return f"{self.route}?{shown}"


# --------------------------------------------------------------------------- requests


def step_requests(series: DamagedSeries, run: str, route: str, variants=None) -> list[Request]:
    """Requests of a one-step route: at each written step and at the newest, per variant."""
    steps = sorted({*series.good, *series.damaged})
    found = []
    for label, extra in (variants or STEP_ROUTES[route]).items():
        for step in [*steps, None]:
            params = {"run": run, "tag": series.tag, **extra}
            if step is not None:
                params["step"] = step
            found.append(Request(route, params, step, label))
    return found


def series_requests(series: DamagedSeries, run: str, route: str, variants=None) -> list[Request]:
    return [
        Request(route, {"run": run, **make(series)}, None, label)
        for label, make in (variants or SERIES_ROUTES[route]).items()
    ]


def requests_of(series: DamagedSeries, run: str, route: str, base_only: bool = False):
    """Every request of `route` about `series` (`base_only`: the "" variant alone)."""
    if route in STEP_ROUTES:
        variants = STEP_ROUTES[route]
        return step_requests(series, run, route, {"": variants[""]} if base_only else None)
    variants = SERIES_ROUTES[route]
    return series_requests(series, run, route, {"": variants[""]} if base_only else None)


def metadata_requests(case: DamagedMetadata, run: str, route: str) -> list[Request]:
    """Requests of `route` about a series with damaged metadata: at a step, at the newest."""
    if route in STEP_ROUTES:
        base = {"run": run, "tag": case.tag, **STEP_ROUTES[route][""]}
        return [
            Request(route, {**base, "step": GOOD_STEPS[0]}, GOOD_STEPS[0], ""),
            Request(route, base, None, ""),
        ]
    pseudo = DamagedSeries(case.kind, case.tag, case.damage, {}, (), ("x",))
    return series_requests(pseudo, run, route)


# --------------------------------------------------------------------------- the checks


def check_general(request: Request, answer: Answer, safety_net_status: int) -> list[str]:
    """What every answer must be; the problems found (empty: none)."""
    problems = []
    where = f"{request.describe()} → {answer.status}"
    if answer.status >= 500:
        problems.append(f"{where}: a server error; body {answer.head()}")
    if answer.status == safety_net_status:
        problems.append(
            f"{where}: the safety net caught an unexpected exception (a code path that does "
            f"not handle this damage); body {answer.head()}"
        )
    content_type = answer.content_type.lower()
    if "html" in content_type or answer.body.lstrip()[:15].lower().startswith(
        (b"<!doctype", b"<html")
    ):
        problems.append(f"{where}: an HTML body ({content_type}); body {answer.head()}")
    if answer.status == 200:
        if not content_type.startswith("application/json"):
            problems.append(f"{where}: 200 with content type {content_type!r}")
        else:
            try:
                answer.json()
            except ValueError as error:
                problems.append(f"{where}: 200 with a body that is not JSON ({error})")
    elif answer.status != 304:
        if not content_type.startswith(("text/plain", "application/json")):
            problems.append(f"{where}: an error of content type {content_type!r}")
        if not answer.text().strip():
            problems.append(f"{where}: an error with an empty body")
    return problems


def _slot(slot: dict) -> np.ndarray:
    """An array slot of a response ({"dtype", "shape", "base64"}), decoded with numpy alone."""
    dtype = {"float16": "<f2", "float32": "<f4"}[slot["dtype"]]
    return np.frombuffer(base64.b64decode(slot["base64"]), dtype=dtype).reshape(slot["shape"])


def _number(value) -> float:
    if value is None:
        return math.nan
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, value)


def _close(got, want, atol: float) -> str | None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"shape {list(got.shape)}, written {list(want.shape)}"
    if not np.allclose(got, want, rtol=0, atol=atol, equal_nan=False):
        worst = float(np.nanmax(np.abs(got - want))) if got.size else 0.0
        return f"values differ from those written by up to {worst:.3g} (tolerance {atol:.3g})"
    return None


def _names_step(text: str, step: int) -> bool:
    return re.search(rf"(?<![\d.]){step}(?![\d.])", text) is not None


def _possible_numbers(kind: str, route: str, body: dict) -> list[str]:
    """Numbers served without an error that cannot be right (|ρ| > 1, σ < 0, ...)."""
    problems = []
    tol = 4 * FLOAT16_EPS
    if route == "correlation_matrix" and "values" in body:
        values = _slot(body["values"]).astype(np.float64)
        if np.any(np.abs(values[np.isfinite(values)]) > 1 + tol):
            problems.append(f"|ρ| up to {np.nanmax(np.abs(values)):.4g} served without an error")
        rows, cols = body.get("shape", [0, 0])
        bad = [i for i in body.get("row_dead", []) if not 0 <= i < rows]
        bad += [i for i in body.get("col_dead", []) if not 0 <= i < cols]
        if bad:
            problems.append(f"dead channels {bad} outside the matrix {rows} x {cols}")
    if route == "correlation_matching" and "semi" in body:
        rows, cols = body.get("shape", [0, 0])
        for side in ("semi", "bipartite"):
            corr = np.array([_number(v) for v in body[side]["corr"]], dtype=np.float64)
            if np.any(np.abs(corr[np.isfinite(corr)]) > 1 + tol):
                problems.append(f"{side} matching |ρ| up to {np.nanmax(np.abs(corr)):.4g}")
            if any(not 0 <= c < cols for c in body[side]["cols"]):
                problems.append(f"{side} matching columns {body[side]['cols']} beyond {cols}")
            if any(not 0 <= r < rows for r in body[side]["rows"]):
                problems.append(f"{side} matching rows {body[side]['rows']} beyond {rows}")
    if route == "correlation_channels" and "rows" in body:
        for side in ("rows", "cols"):
            stats = body.get(side)
            if not stats:
                continue
            channels = stats["channels"]
            if any(not 0 <= i < channels for i in stats["dead"]):
                problems.append(f"{side} dead channels {stats['dead']} beyond {channels}")
            for name in ("mean", "std", "positive_fraction"):
                if stats[name] and len(stats[name]) != channels:
                    problems.append(f"{side} {name} of {len(stats[name])} values for {channels}")
    if route == "spectrum" and "singular_values" in body:
        values = _slot(body["singular_values"]).astype(np.float64)
        finite = values[np.isfinite(values)]
        if np.any(finite < 0):
            problems.append(f"a negative singular value {finite.min():.4g} served without an error")
        if values.ndim == 2 and np.any(np.diff(values, axis=1) > 0):
            problems.append("singular values served without an error are not descending")
    if route in ("update_ratios",) and "values" in body:
        values = body["values"]
        values = (
            _slot(values).astype(np.float64)
            if isinstance(values, dict)
            else np.array([[_number(v) for v in row] for row in values], dtype=np.float64)
        )
        if np.any(values[np.isfinite(values)] < 0):
            problems.append("a negative update ratio ‖ΔW‖/‖W‖ served without a warning")
    if route == "saliency" and "labels" in body and body["labels"] is not None:
        if any(label < 0 for label in body["labels"]):
            problems.append(f"negative class labels {body['labels']} served without an error")
        if len(body["labels"]) != len(body.get("samples", body["labels"])):
            problems.append("labels of another count than the samples served")
    return problems


def check_step_answer(series: DamagedSeries, request: Request, answer: Answer) -> list[str]:
    """A one-step route's answer about a damaged series (general checks apart)."""
    where = f"{request.describe()} → {answer.status}"
    steps = sorted({*series.good, *series.damaged})
    step = steps[-1] if request.step is None else request.step
    damaged = step in series.damaged
    applies = not (
        not series.cross
        and (request.route == "correlation_matching" or request.params.get("order") == "matched")
    )
    if answer.status != 200:
        if not applies and 400 <= answer.status < 500:
            return []  # a request that does not apply to this series: a 4xx is its answer
        expected = "its error" if damaged else "its values"
        return [f"{where}: expected 200 ({expected}); body {answer.head()}"]
    body = answer.json()
    problems = []
    if body.get("step") != step:
        problems.append(f"{where}: served step {body.get('step')}, asked {step}")
    error = body.get("error")
    if damaged:
        if not isinstance(error, str) or not error.strip():
            problems.append(
                f"{where}: the damaged step ({series.damage}) is served without an error: "
                f"error={error!r}"
            )
        return problems
    if error is not None:
        problems.append(f"{where}: a good step served with error {error!r}")
        return problems
    problems += [f"{where}: {p}" for p in _possible_numbers(series.kind, request.route, body)]
    if request.variant == "":
        problems += [f"{where}: {p}" for p in _good_values(series, request.route, step, body)]
    return problems


def _good_values(series: DamagedSeries, route: str, step: int, body: dict) -> list[str]:
    """A good step's values against the reference written (base variants only)."""
    want = series.good[step]
    found = None
    if route == "spectrum":
        found = _close(_slot(body["singular_values"]), want, 64 * FLOAT32_EPS * float(want.max()))
    elif route == "correlation_matrix":
        found = _close(_slot(body["values"]), want, 2 * FLOAT16_EPS)
    elif route == "correlation_matching":
        semi = [_number(v) for v in body["semi"]["corr"]]
        found = _close(semi, want.max(axis=1), 2 * FLOAT16_EPS)
    elif route == "correlation_channels":
        if body["rows"]["channels"] != want.shape[0]:
            found = f"{body['rows']['channels']} row channels, written {want.shape[0]}"
    elif route == "saliency":
        found = _close(
            _slot(body["maps"]),
            want[: len(body["samples"])],
            FLOAT16_EPS * float(np.abs(want).max()),
        )
    return [] if found is None else [found]


def check_series_answer(series: DamagedSeries, request: Request, answer: Answer) -> list[str]:
    """A multi-step route's answer about a damaged series (general checks apart)."""
    where = f"{request.describe()} → {answer.status}"
    if series.whole_series:
        return []  # no step is good: the general checks are all there is
    if request.route == "update_ratios" and request.variant == "name" and not series.names:
        return []
    if answer.status != 200:
        return [
            f"{where}: expected 200 (the good steps, the damaged ones named); body {answer.head()}"
        ]
    body = answer.json()
    route = request.route
    good = sorted(series.good)
    written = sorted({*series.good, *series.damaged})
    problems: list[str] = []

    def problem(text: str) -> None:
        problems.append(f"{where}: {text}")

    if route in ("update_ratios", "layer_values"):
        if body["steps"] != good:
            problem(
                f"steps {body['steps']}, the good ones are {good} (damaged: {list(series.damaged)})"
            )
        said = " ".join(body.get("warnings", []))
        for step in series.damaged:
            if not _names_step(said, step):
                problem(
                    f"no warning names the damaged step {step}: warnings {body.get('warnings')}"
                )
        problems += [f"{where}: {p}" for p in _possible_numbers(series.kind, route, body)]
        if body["steps"] == good:
            values = body["values"]
            if isinstance(values, dict):
                matrix = _slot(values)
            else:
                matrix = np.array([[_number(v) for v in row] for row in values], dtype=np.float64)
            names = list(series.names)
            want = np.array([series.good[s] for s in good], dtype=np.float64)
            if request.variant == "name":
                want, names = want[:, :1], names[:1]
            if body["names"] != names:
                problem(f"names {body['names']}, written {names}")
            else:
                found = _close(matrix, want, 4 * FLOAT32_EPS * float(np.max(want)))
                if found:
                    problem(found)
    elif route.endswith("_steps"):
        if body.get("steps") != written:
            problem(f"lists steps {body.get('steps')}, written {written}")
    elif route == "spectrum_evolution":
        problems += _evolution(series, body, problem)
    elif route == "spectrum_metrics":
        layer = body.get("layers", {}).get(series.tag)
        if layer is None:
            problem(f"the layer {series.tag!r} is missing from the metrics")
        else:
            _metrics(series, layer, request, problem)
    return problems


def _errors_by_step(entries) -> dict[int, str]:
    return {int(step): message for step, message in entries}


def _evolution(series: DamagedSeries, body: dict, problem) -> list[str]:
    steps = body["steps"]
    errors = _errors_by_step(body.get("errors", []))
    for step in series.damaged:
        if step in steps and not errors.get(step):
            problem(f"the damaged step {step} carries no error: errors {body.get('errors')}")
    values = _slot(body["values"]).astype(np.float64)
    index = body["index"]
    for row, step in enumerate(steps):
        if step in series.damaged:
            if np.any(np.isfinite(values[row])):
                problem(f"the damaged step {step} is drawn with values {values[row].tolist()}")
        elif step in series.good:
            if errors.get(step):
                problem(f"the good step {step} carries the error {errors[step]!r}")
            want = np.sort(series.good[step].reshape(-1))[::-1][index]
            found = _close(values[row], want, 64 * FLOAT32_EPS * float(want.max()))
            if found:
                problem(f"step {step}: {found}")
    return []


def _metrics(series: DamagedSeries, layer: dict, request: Request, problem) -> None:
    steps = layer["steps"]
    errors = _errors_by_step(layer.get("errors", []))
    norms = layer["metrics"]["spectral_norm"]
    for k, step in enumerate(steps):
        if step in series.damaged:
            if not errors.get(step):
                problem(f"the damaged step {step} carries no error: errors {layer.get('errors')}")
            if math.isfinite(_number(norms[k])):
                problem(f"the damaged step {step} has a spectral norm {norms[k]}")
        elif step in series.good:
            if errors.get(step):
                problem(f"the good step {step} carries the error {errors[step]!r}")
            want = float(series.good[step].max())
            found = _close([_number(norms[k])], [want], 64 * FLOAT32_EPS * want)
            if found:
                problem(f"spectral norm of step {step}: {found}")
    if request.variant == "" and steps != sorted({*series.good, *series.damaged}):
        problem(f"metrics of steps {steps}, written {sorted({*series.good, *series.damaged})}")


def check_broken_metadata(case: DamagedMetadata, request: Request, answer: Answer) -> list[str]:
    """A route asked about a series whose metadata is damaged: a 4xx saying so."""
    where = f"{request.describe()} → {answer.status}"
    if request.params.get("tag") is None:  # a whole-run request: the series is left out
        if answer.status == 200 and case.tag in answer.json().get("layers", {}):
            return [f"{where}: the unreadable series {case.tag!r} is served"]
        return []
    if not 400 <= answer.status < 500:
        return [f"{where}: expected a 4xx naming the damaged metadata; body {answer.head()}"]
    return []


def check_tags(
    log: DamagedLog, tags: dict, unlisted_ok: frozenset | set = frozenset()
) -> list[str]:
    """/tags lists every series: damaged payloads without error, damaged metadata with one.

    `unlisted_ok`: tags a loader drops before the plugin sees them.
    """
    problems = []
    listed = tags.get(log.run, {})
    for series in log.series:
        entry = listed.get(series.tag)
        if entry is None:
            problems.append(f"/tags does not list {series.tag!r}")
        elif entry.get("kind") != series.kind:
            problems.append(f"/tags lists {series.tag!r} as {entry.get('kind')!r}")
        elif entry.get("error") and not series.whole_series:
            problems.append(f"/tags lists {series.tag!r} with error {entry['error']!r}")
    for case in log.metadata:
        entry = listed.get(case.tag)
        if entry is None and case.tag in unlisted_ok:
            continue
        if entry is None:
            problems.append(f"/tags does not list {case.tag!r} (damaged metadata: {case.damage})")
        elif not isinstance(entry.get("error"), str) or not entry["error"].strip():
            problems.append(f"/tags lists {case.tag!r} ({case.damage}) without an error: {entry}")
    return problems
