"""Damaged data through every route of every kind, in process (issue 10 §3).

tests/damaged_logs.py writes, for every kind of the registry, series with good
steps around damaged ones and series with damaged metadata; the plugin serves
them from TensorBoard's multiplexer data provider through TensorBoard's own
WSGI application (which answers `tensorboard.errors` as TensorBoard does),
called with werkzeug's test client: no server, many cases. What each answer
must be is tests/damaged_fuzz.py's: never a 5xx nor the safety net's 422,
never HTML, a damaged step's error at its step, the good steps' values as
written, damaged metadata an error. The same fuzz runs through real
tensorboard processes in tests/integration/test_damaged_data.py.
"""

from __future__ import annotations

import pytest

from deepscope import kinds
from tests import damaged_fuzz as fuzz
from tests import kind_cases
from tests.damaged_logs import covered_kinds, metadata_plan, series_plan

_KIND_NAMES = [kind.name for kind in kinds.KINDS]
_ROUTES = [*fuzz.STEP_ROUTES, *fuzz.SERIES_ROUTES]


def _routes_of(kind: str) -> list[str]:
    return [r for r in _ROUTES if fuzz.kind_of_route(r, _KIND_NAMES) == kind]


_PAYLOAD_CASES = [
    pytest.param(planned.tag, route, id=f"{planned.tag}-{route}")
    for planned in series_plan()
    for route in _routes_of(planned.kind)
]
_METADATA_CASES = [
    pytest.param(case.tag, route, id=f"{case.tag}-{route}")
    for case in metadata_plan()
    for route in _routes_of(case.kind)
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(DamagedLog, plugin, fetch): the damaged log served in process."""
    from tensorboard.backend import application
    from tensorboard.plugins import base_plugin
    from werkzeug.test import Client

    from deepscope import metadata
    from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
    from tests.damaged_logs import write_damaged_log
    from tests.route_helpers import multiplexer_provider

    log = write_damaged_log(tmp_path_factory.mktemp("damaged"))
    _, provider = multiplexer_provider(log.logdir)
    context = base_plugin.TBContext(
        data_provider=provider, logdir=str(log.logdir), sampling_hints={metadata.PLUGIN_NAME: 0}
    )
    plugin = DeepscopePlugin(context)
    client = Client(application.TensorBoardWSGI([plugin], data_provider=provider))

    def fetch(route: str, params: dict) -> fuzz.Answer:
        query = {
            k: [str(v) for v in v] if isinstance(v, list) else str(v) for k, v in params.items()
        }
        response = client.get(f"/data/plugin/deepscope/{route}", query_string=query)
        headers = {k.lower(): v for k, v in response.headers.items()}
        return fuzz.Answer(response.status_code, headers, response.get_data())

    return log, plugin, fetch


def _safety_net_status() -> int:
    from deepscope.tb_plugin import deepscope_plugin

    return deepscope_plugin.UNEXPECTED_ERROR_STATUS


def test_every_kind_has_damaged_data():
    missing = sorted({kind.name for kind in kinds.KINDS} - covered_kinds())
    assert not missing, (
        f"tests/damaged_logs.py writes no damaged data of the kinds {missing}: "
        + "; ".join(kind_cases.problems().values())
    )


def test_every_route_of_the_plugin_is_fuzzed(served):
    _, plugin, _ = served
    routes = [route.lstrip("/") for route in plugin.get_plugin_apps()]
    assert not fuzz.unlisted_routes(routes), (
        f"routes without query arguments (STEP_ROUTES or SERIES_ROUTES of their kind's "
        f"tests/kind_cases/<kind>.py): {fuzz.unlisted_routes(routes)}"
    )
    for route in routes:
        if route not in fuzz.GENERAL_ROUTES:
            assert fuzz.kind_of_route(route, _KIND_NAMES) is not None, route
    tabled = [r for r in _ROUTES if fuzz.kind_of_route(r, _KIND_NAMES) is not None]
    assert sorted(tabled) == sorted(r for r in routes if r not in fuzz.GENERAL_ROUTES)


def test_tags_list_every_series_and_each_damaged_metadata_with_its_error(served):
    log, _, fetch = served
    answer = fetch("tags", {})
    assert answer.status == 200, answer.head()
    problems = fuzz.check_tags(log, answer.json())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("tag", "route"), _PAYLOAD_CASES)
def test_damaged_payloads(served, tag, route):
    log, _, fetch = served
    (series,) = [s for s in log.series if s.tag == tag]
    problems = []
    for request in fuzz.requests_of(series, log.run, route):
        answer = fetch(request.route, request.params)
        problems += fuzz.check_general(request, answer, _safety_net_status())
        if route in fuzz.STEP_ROUTES:
            problems += fuzz.check_step_answer(series, request, answer)
        else:
            problems += fuzz.check_series_answer(series, request, answer)
    assert not problems, f"{series.kind} {series.damage}:\n" + "\n".join(problems)


@pytest.mark.parametrize(("tag", "route"), _METADATA_CASES)
def test_damaged_metadata(served, tag, route):
    log, _, fetch = served
    (case,) = [c for c in log.metadata if c.tag == tag]
    problems = []
    for request in fuzz.metadata_requests(case, log.run, route):
        answer = fetch(request.route, request.params)
        problems += fuzz.check_general(request, answer, _safety_net_status())
        problems += fuzz.check_broken_metadata(case, request, answer)
    assert not problems, f"{case.kind} metadata {case.damage}:\n" + "\n".join(problems)


# Long enough that echoing it whole would be unmistakable (letters, or an integer of
# 60,000 digits); how much of it an error may echo.
_LONG = {"letters": "x" * 60_000, "digits": "9" * 60_000}
_ECHO_LIMIT = 4_000


@pytest.mark.parametrize("route", [r for r in _ROUTES if fuzz.kind_of_route(r, _KIND_NAMES)])
@pytest.mark.parametrize("argument", ["run", "tag", "step", "order", "samples", "format", "name"])
@pytest.mark.parametrize("value", sorted(_LONG))
def test_errors_do_not_echo_a_long_argument_whole(served, route, argument, value):
    log, _, fetch = served
    (series,) = [s for s in log.series if s.kind == fuzz.kind_of_route(route, _KIND_NAMES)][:1]
    params = {"run": log.run, "tag": series.tag, argument: _LONG[value]}
    answer = fetch(route, params)
    problems = fuzz.check_general(
        fuzz.Request(route, {argument: "x" * 20 + "…"}, None, ""), answer, _safety_net_status()
    )
    assert not problems, "\n".join(problems)
    if answer.status != 200:
        assert len(answer.body) < _ECHO_LIMIT, (
            f"{route} with a 60 kB {argument} answers {answer.status} with {len(answer.body):,} "
            f"bytes: {answer.head(200)}"
        )


def test_findings_over_damaged_data_answer_with_the_rest_checked(served):
    log, _, fetch = served
    answer = fetch("findings", {})
    assert answer.status == 200, answer.head()
    body = answer.json()
    assert log.run in body["runs"]
    # Damaged steps and series are left out (their kinds' routes say why), not a failure:
    # every rule that had something to read ran, and none failed.
    assert "non_finite" in body["checked"][log.run]
    assert not [w for w in body["warnings"] if "could not check" in w["message"]], body
    assert all(w["run"] == log.run for w in body["warnings"])
    for finding in body["findings"]:
        assert finding["run"] == log.run
        assert finding["severity"] in ("error", "warning", "info")
