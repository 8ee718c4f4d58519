"""Damaged data through real tensorboard processes, with both loaders (issue 10 §3).

The fuzz of tests/unit/test_damaged_routes.py (tests/damaged_fuzz.py over
tests/damaged_logs.py's log), through `tensorboard --load_fast=false` (the
Python loader) and `--load_fast=true` (the Rust data server), each route of
each kind asked with its base arguments: never a 5xx nor the safety net's 422,
never HTML, a damaged step's error at its step, the good steps' values as
written, damaged metadata an error listed in /tags. Also:

- a byte flipped on disk in a record (its checksum left as written): the
  Rust data server serves the payload, whose |ρ| > 1 is that step's error;
  the Python loader stops reading the file there (TensorBoard's own rule);
- runs and tags whose names hold '"', '\\', a newline, a tab or a control
  character: served with the Python loader; with the Rust data server the
  blob kinds' reads answer an error naming the cause and the workaround
  (never a 5xx), the tensor kinds are served.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from tests import damaged_fuzz as fuzz
from tests import kind_cases
from tests.damaged_logs import (
    CRC_RUN,
    DAMAGED_STEP,
    GOOD_STEPS,
    SENTINEL_TAG,
    DamagedSeries,
    metadata_plan,
    series_plan,
)
from tests.route_helpers import LOADERS
from tests.tensorboard_process import get_with_headers, wait_until


def _kind_names() -> list[str]:
    from deepscope import kinds

    return [kind.name for kind in kinds.KINDS]


def _routes_of(kind: str) -> list[str]:
    from deepscope import kinds

    names = [k.name for k in kinds.KINDS]
    return [
        r for r in [*fuzz.STEP_ROUTES, *fuzz.SERIES_ROUTES] if fuzz.kind_of_route(r, names) == kind
    ]


def _safety_net_status() -> int:
    from deepscope.tb_plugin import deepscope_plugin

    return deepscope_plugin.UNEXPECTED_ERROR_STATUS


@pytest.fixture(scope="module")
def damaged_logdir(tmp_path_factory):
    """(logdir, DamagedLog, crc-flipped series, odd-named series), written once."""
    from tests.damaged_logs import write_crc_flipped_log, write_damaged_log, write_odd_name_log

    root = tmp_path_factory.mktemp("damaged-tb")
    log = write_damaged_log(root)
    crc = write_crc_flipped_log(root)
    odd = write_odd_name_log(root)
    return root, log, crc, odd


def _fetcher(base: str):
    def fetch(route: str, params: dict) -> fuzz.Answer:
        query = urlencode({k: str(v) for k, v in params.items()})
        status, body, headers = get_with_headers(f"{base}/data/plugin/deepscope/{route}?{query}")
        return fuzz.Answer(status, headers, body)

    return fetch


@pytest.fixture(scope="module", params=LOADERS)
def served(request, damaged_logdir, tensorboard_server):
    """(load_fast, fetch, logs): one tensorboard over the damaged log dir, fully loaded."""
    root, log, crc, odd = damaged_logdir
    load_fast = request.param
    fetch = _fetcher(tensorboard_server(root, load_fast=load_fast))
    runs = {log.run, *(s.run for s in odd)}

    def sentinel_read(run: str) -> bool:
        answer = fetch("update_ratios", {"run": run, "tag": SENTINEL_TAG})
        return answer.status == 200 and answer.json()["steps"] == list(GOOD_STEPS)

    for run in sorted(runs):
        wait_until(lambda run=run: sentinel_read(run), timeout=120, what=f"run {run!r} read")

    def crc_read() -> bool:
        answer = fetch("correlation_steps", {"run": CRC_RUN, "tag": crc.tag})
        if answer.status != 200:
            return False
        steps = answer.json()["steps"]
        # The Python loader stops at the record whose checksum fails.
        return steps == (
            [*GOOD_STEPS[:1], DAMAGED_STEP, *GOOD_STEPS[1:]] if load_fast else [GOOD_STEPS[0]]
        )

    wait_until(crc_read, timeout=60, what="the crc-flipped run read")
    return load_fast, fetch, (log, crc, odd)


_INTEGRATION_CASES = [pytest.param(planned.tag, id=planned.tag) for planned in series_plan()]


@pytest.mark.parametrize("tag", _INTEGRATION_CASES)
def test_damaged_payloads_through_tensorboard(served, tag):
    _, fetch, (log, _, _) = served
    (series,) = [s for s in log.series if s.tag == tag]
    problems = []
    for route in _routes_of(series.kind):
        for request in fuzz.requests_of(series, log.run, route, base_only=True):
            answer = fetch(request.route, request.params)
            problems += fuzz.check_general(request, answer, _safety_net_status())
            if route in fuzz.STEP_ROUTES:
                problems += fuzz.check_step_answer(series, request, answer)
            else:
                problems += fuzz.check_series_answer(series, request, answer)
    assert not problems, f"{series.kind} {series.damage}:\n" + "\n".join(problems)


def test_damaged_metadata_through_tensorboard(served):
    _, fetch, (log, _, _) = served
    problems = []
    for case in metadata_plan():
        for route in _routes_of(case.kind):
            for request in fuzz.metadata_requests(case, log.run, route)[:1]:
                answer = fetch(request.route, request.params)
                problems += fuzz.check_general(request, answer, _safety_net_status())
                problems += fuzz.check_broken_metadata(case, request, answer)
    assert not problems, "\n".join(problems)


def test_tags_list_every_damaged_series_through_tensorboard(served):
    load_fast, fetch, (log, _, _) = served
    answer = fetch("tags", {})
    assert answer.status == 200, answer.head()
    # The Rust data server drops a scalar tensor marked as a blob sequence before any
    # plugin sees it (a blob sequence is a string vector to it): nothing to list.
    dropped = {
        case.tag
        for case in log.metadata
        if load_fast and case.damage == "other_data_class" and not _is_blob(case.kind)
    }
    problems = fuzz.check_tags(log, answer.json(), unlisted_ok=dropped)
    assert not problems, "\n".join(problems)


def test_a_byte_flipped_on_disk_is_its_steps_error(served):
    load_fast, fetch, (_, crc, _) = served
    # The Python loader stops reading at the damaged record: only the step before it.
    kept = (
        crc
        if load_fast
        else DamagedSeries(
            crc.kind, crc.tag, crc.damage, {GOOD_STEPS[0]: crc.good[GOOD_STEPS[0]]}, (), cross=True
        )
    )
    problems = []
    for route in _routes_of(crc.kind):
        for request in fuzz.requests_of(kept, CRC_RUN, route, base_only=True):
            answer = fetch(request.route, request.params)
            problems += fuzz.check_general(request, answer, _safety_net_status())
            if route in fuzz.STEP_ROUTES:
                problems += fuzz.check_step_answer(kept, request, answer)
            else:
                problems += fuzz.check_series_answer(kept, request, answer)
    assert not problems, "\n".join(problems)


def _is_blob(kind: str) -> bool:
    from tensorboard.compat.proto import summary_pb2

    from deepscope import kinds

    return kinds.by_name(kind).data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE


def _names_the_workaround(text: str) -> bool:
    return "--load_fast=false" in text and "rename" in text.lower()


@pytest.mark.parametrize("where", ["run", "tag"])
def test_odd_names_are_served_or_explained(served, where):
    """'"', '\\', newline, tab, a control character in a run or tag name."""
    load_fast, fetch, (_, _, odd) = served
    problems = []
    for named in odd:
        if (named.run == "plain") != (where == "tag"):
            continue
        names = kind_cases.optional(named.kind, "NAMES", ())
        series = DamagedSeries(
            named.kind, named.tag, "none", named.good, (), names, cross=named.kind == "correlation"
        )
        explained_only = load_fast and _is_blob(named.kind)
        for route in _routes_of(named.kind):
            for request in fuzz.requests_of(series, named.run, route, base_only=True):
                answer = fetch(request.route, request.params)
                label = f"[{named.character} in the {where}] "
                found = fuzz.check_general(request, answer, _safety_net_status())
                if not explained_only:
                    if route in fuzz.STEP_ROUTES:
                        found += fuzz.check_step_answer(series, request, answer)
                    else:
                        found += fuzz.check_series_answer(series, request, answer)
                else:
                    found += _explained(series, request, answer)
                problems += [label + p for p in found]
    assert not problems, "\n".join(problems)


def _explained(series: DamagedSeries, request: fuzz.Request, answer: fuzz.Answer) -> list[str]:
    """With the Rust data server: served right, or an error naming the cause and workaround."""
    where = f"{request.describe()} → {answer.status}"
    if answer.status != 200:
        if 400 <= answer.status < 500 and _names_the_workaround(answer.text()):
            return []
        return [f"{where}: an error that does not explain the name: {answer.head(600)}"]
    body = answer.json()
    messages = []
    if isinstance(body.get("error"), str):
        messages.append(body["error"])
    for entry in body.get("errors", []) or []:
        messages.append(entry[1])
    for layer in (body.get("layers") or {}).values():
        messages += [message for _, message in layer.get("errors", [])]
    if messages:
        bad = [m for m in messages if not _names_the_workaround(m)]
        return [f"{where}: an error that does not explain the name: {m[:300]!r}" for m in bad]
    # Served without an error: it must then be right.
    if request.route in fuzz.STEP_ROUTES:
        return fuzz.check_step_answer(series, request, answer)
    return fuzz.check_series_answer(series, request, answer)


def test_fuzz_covers_the_served_routes(served):
    """Every route the served plugin has is in the fuzz's tables."""
    _, fetch, _ = served
    answer = fetch("kinds", {})
    assert answer.status == 200, answer.head()
    names = [entry["name"] for entry in json.loads(answer.body)]
    assert names == _kind_names()
    for kind in names:
        assert _routes_of(kind), f"the fuzz has no routes of kind {kind}"
