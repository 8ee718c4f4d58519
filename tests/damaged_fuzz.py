"""The damaged-data fuzz: which requests to make of tests/damaged_logs.py's log, and what each
answer must be. Shared by the in-process test (werkzeug, tests/unit/test_damaged_routes.py)
and the one through real tensorboard processes (tests/integration/test_damaged_data.py).

Every route of every kind is asked, with a table of query arguments per route
(`STEP_ROUTES`: routes reading one step, asked at each step and at the newest;
`SERIES_ROUTES`: the others), the union of the kinds' own tables in their
tests/kind_cases/<kind>.py, found by the kind's name. A route the plugin
serves that neither table lists fails `unlisted_routes`, so a new route joins
the fuzz. The checks every route gets are here; a kind's module adds its own
(`possible_numbers`, `good_values`, `check_series`; a tensor kind's table of
rows is `check_rows`).

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

from tests import kind_cases
from tests.damaged_logs import (
    GOOD_STEPS,
    DamagedLog,
    DamagedMetadata,
    DamagedSeries,
)

# Routes that are not a kind's.
GENERAL_ROUTES = frozenset({"index.js", "tags", "kinds", "findings"})


def _union(name: str) -> dict:
    """The union of the `name` tables of the kinds' tests/kind_cases/<kind>.py modules."""
    found: dict = {}
    for kind in kind_cases.covered():
        found.update(kind_cases.attribute(kind, name))
    return found


# Route → variant label → extra query arguments. Asked at each kept step and without `step`.
# Each kind's `STEP_ROUTES` (tests/kind_cases/<kind>.py).
STEP_ROUTES: dict[str, dict[str, dict]] = _union("STEP_ROUTES")
# Route → variant label → function(series) → query arguments besides run (tag included).
# Each kind's `SERIES_ROUTES`.
SERIES_ROUTES: dict[str, dict[str, Callable[[DamagedSeries], dict]]] = _union("SERIES_ROUTES")

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


def slot(value: dict) -> np.ndarray:
    """An array slot of a response ({"dtype", "shape", "base64"}), decoded with numpy alone."""
    dtype = {"float16": "<f2", "float32": "<f4"}[value["dtype"]]
    return np.frombuffer(base64.b64decode(value["base64"]), dtype=dtype).reshape(value["shape"])


def number(value) -> float:
    if value is None:
        return math.nan
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, value)


def close(got, want, atol: float) -> str | None:
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
    """Numbers served without an error that cannot be right (|ρ| > 1, σ < 0, ...): the
    kind's `possible_numbers` (tests/kind_cases/<kind>.py), if it has one."""
    check = kind_cases.optional(kind, "possible_numbers")
    return [] if check is None else check(route, body)


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
    """A good step's values against the reference written (base variants only): the
    kind's `good_values` (tests/kind_cases/<kind>.py), if it has one."""
    check = kind_cases.optional(series.kind, "good_values")
    return [] if check is None else check(series, route, step, body)


def check_series_answer(series: DamagedSeries, request: Request, answer: Answer) -> list[str]:
    """A multi-step route's answer about a damaged series (general checks apart)."""
    where = f"{request.describe()} → {answer.status}"
    if series.whole_series:
        return []  # no step is good: the general checks are all there is
    if request.variant == "name" and not series.names:
        return []  # update ratios' one-name request of a series without names
    if answer.status != 200:
        return [
            f"{where}: expected 200 (the good steps, the damaged ones named); body {answer.head()}"
        ]
    body = answer.json()
    route = request.route
    written = sorted({*series.good, *series.damaged})
    problems: list[str] = []

    def problem(text: str) -> None:
        problems.append(f"{where}: {text}")

    if route.endswith("_steps"):
        if body.get("steps") != written:
            problem(f"lists steps {body.get('steps')}, written {written}")
    else:
        check = kind_cases.optional(series.kind, "check_series")
        if check is not None:  # the kind's own check (tests/kind_cases/<kind>.py)
            check(series, request, body, problem)
    return problems


def check_rows(series: DamagedSeries, request: Request, body: dict, problem) -> None:
    """A tensor kind's layers × steps table (`steps`, `names`, `values`, `warnings`): the
    good steps served with their values, each damaged step named by a warning."""
    route = request.route
    good = sorted(series.good)
    if body["steps"] != good:
        problem(
            f"steps {body['steps']}, the good ones are {good} (damaged: {list(series.damaged)})"
        )
    said = " ".join(body.get("warnings", []))
    for step in series.damaged:
        if not _names_step(said, step):
            problem(f"no warning names the damaged step {step}: warnings {body.get('warnings')}")
    for found in _possible_numbers(series.kind, route, body):
        problem(found)
    if body["steps"] == good:
        values = body["values"]
        if isinstance(values, dict):
            matrix = slot(values)
        else:
            matrix = np.array([[number(v) for v in row] for row in values], dtype=np.float64)
        names = list(series.names)
        want = np.array([series.good[s] for s in good], dtype=np.float64)
        if request.variant == "name":
            want, names = want[:, :1], names[:1]
        if body["names"] != names:
            problem(f"names {body['names']}, written {names}")
        else:
            found = close(matrix, want, 4 * FLOAT32_EPS * float(np.max(want)))
            if found:
                problem(found)


def errors_by_step(entries) -> dict[int, str]:
    """A route's `errors` ([step, message] pairs) by step."""
    return {int(step): message for step, message in entries}


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
