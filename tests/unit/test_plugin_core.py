"""The plugin's core: the route table and `/kinds` from the registry, the safety net for
unexpected exceptions, unreadable series in `/tags`, capped echoes of the request.

Served in-process by TensorBoard's own WSGI app (`TensorBoardWSGI`, which maps
`tensorboard.errors` to their statuses) over TensorBoard's Python loader.
"""

from __future__ import annotations

import json

import pytest
from tensorboard.backend import application
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test
from werkzeug.wrappers import Request, Response

from deepscope import kinds, metadata
from deepscope.tb_plugin import deepscope_plugin, responses, series
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from deepscope.tb_plugin.route_context import RouteContext
from tests.event_files import (
    ratios_step,
    string_tensor,
    update_ratios_metadata,
    write_events,
)
from tests.route_helpers import multiplexer_provider
from tests.unreadable_series import BLOB, UNREADABLE, write_unreadable_series

GOOD = ratios_step([1e-3], crc_names=["w"]).SerializeToString()


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("plugin-core")
    write_events(
        logdir / "alpha",
        [
            ("model", step, 100.0 + step, string_tensor(GOOD), update_ratios_metadata(["w"]))
            for step in range(3)
        ],
    )
    write_unreadable_series(logdir / "unreadable")
    return logdir


def _client(provider) -> werkzeug_test.Client:
    plugin = DeepscopePlugin(
        base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    )
    return werkzeug_test.Client(application.TensorBoardWSGI([plugin], data_provider=provider))


@pytest.fixture(scope="module")
def client(logdir) -> werkzeug_test.Client:
    return _client(multiplexer_provider(logdir)[1])


def _get(client, route: str, **query):
    return client.get(f"/data/plugin/deepscope/{route}", query_string=query)


# --- the route table and /kinds -----------------------------------------------------------------


def test_route_table_is_the_core_routes_and_each_kinds_own():
    plugin = DeepscopePlugin(base_plugin.TBContext(data_provider=None, sampling_hints={}))
    context = RouteContext(None, series.SeriesCatalog(None), None)
    expected = {"/index.js", "/tags", "/kinds", "/findings"}  # findings: over every kind
    for kind in kinds.KINDS:
        routes = kind.load_routes()(context).apps()
        assert routes, kind.name
        assert not expected & set(routes), kind.name  # no kind serves another's route
        expected |= set(routes)
    assert set(plugin.get_plugin_apps()) == expected
    assert "/update_ratios" in expected


def test_kinds_lists_the_registry_in_order(client):
    response = _get(client, "kinds")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = json.loads(response.get_data(as_text=True))
    assert [entry["name"] for entry in body] == [kind.name for kind in kinds.KINDS]
    words = {summary_pb2.DATA_CLASS_TENSOR: "tensor", BLOB: "blob_sequence"}
    for entry, kind in zip(body, kinds.KINDS):
        assert entry == {
            "name": kind.name,
            "title": kind.title,
            "subtitle": kind.subtitle,
            "data_class": words[kind.data_class],
        }
    assert body[0]["data_class"] == "tensor"  # update ratios
    assert {"name": "spectrum"}.items() <= body[1].items() and body[1]["data_class"] == (
        "blob_sequence"
    )


def test_kinds_revalidates_with_304(client):
    first = _get(client, "kinds")
    etag = first.headers["ETag"]
    again = client.get("/data/plugin/deepscope/kinds", headers={"If-None-Match": etag})
    assert (again.status_code, again.get_data()) == (304, b"")


# --- /tags: unreadable series listed with a kind and an error -------------------------------------


@pytest.mark.parametrize("tag", list(UNREADABLE))
def test_tags_list_unreadable_series_with_why_and_what_to_do(client, tag):
    _, _, kind, says = UNREADABLE[tag]
    body = json.loads(_get(client, "tags").get_data(as_text=True))
    entry = body["unreadable"][tag]
    assert entry["kind"] == kind
    assert says in entry["error"]
    assert "names" not in entry


def test_tags_list_readable_series_without_an_error(client):
    entry = json.loads(_get(client, "tags").get_data(as_text=True))["alpha"]["model"]
    assert entry == {"kind": "update_ratios", "version": metadata.SCHEMA_VERSION, "names": ["w"]}


@pytest.mark.parametrize("tag", ["garbage", "newer", "unknown_kind"])
def test_data_routes_refuse_unreadable_series_with_its_error(client, tag):
    response = _get(client, "update_ratios", run="unreadable", tag=tag)
    assert response.status_code == 400
    assert UNREADABLE[tag][3] in response.get_data(as_text=True)


# --- the safety net ------------------------------------------------------------------------------


class _FailingReads:
    """A data provider whose reads raise RuntimeError (listings work)."""

    def __init__(self, inner):
        self._inner = inner

    def read_tensors(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    def read_blob_sequences(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_an_unexpected_exception_is_a_422_in_plain_text_naming_run_tag_and_step(logdir, caplog):
    client = _client(_FailingReads(multiplexer_provider(logdir)[1]))
    response = _get(client, "update_ratios", run="alpha", tag="model", step="7")
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    text = response.get_data(as_text=True)
    assert "<" not in text  # no HTML
    assert "update_ratios" in text
    assert "run 'alpha'" in text and "tag 'model'" in text and "step '7'" in text
    assert "RuntimeError: disk on fire" in text
    assert "(raised at test_plugin_core.py:" in text  # where, for a bug report
    assert any("disk on fire" in record.getMessage() for record in caplog.records)


def test_the_safety_net_caps_what_it_echoes():
    def failing(environ, start_response):
        raise ValueError("x" * 5000)

    app = deepscope_plugin._safety_net("/some_route", failing)
    huge = "t" * 60_000
    response = Response.from_app(app, _environ(tag=huge, run="r"))
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert len(text) < 1500
    assert f"…({60_000 - responses.ECHO_CHARS} more characters)" in text
    assert f"…({5000 - responses.ECHO_CHARS} more characters)" in text
    assert "some_route" in text and "run 'r'" in text and "step" not in text.split(":")[0]


def _environ(**query):
    from werkzeug.test import EnvironBuilder

    return EnvironBuilder(path="/x", query_string=query).get_environ()


def test_tensorboard_errors_keep_their_status_and_plain_text(client):
    response = _get(client, "update_ratios", run="alpha")
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response = _get(client, "update_ratios", run="nope", tag="model")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/plain")


def test_the_safety_net_lets_public_errors_through_to_tensorboard():
    from tensorboard import errors

    def not_found(environ, start_response):
        raise errors.NotFoundError("no such thing")

    app = deepscope_plugin._safety_net("/r", not_found)
    with pytest.raises(errors.NotFoundError):
        app(_environ(), lambda *args: None)


# --- capped echoes -------------------------------------------------------------------------------

HUGE = "g" * 60_000


@pytest.mark.parametrize(
    "route, query",
    [
        ("update_ratios", {"run": "alpha", "tag": HUGE}),
        ("update_ratios", {"run": HUGE, "tag": "model"}),
        ("update_ratios", {"run": "alpha", "tag": "model", "format": HUGE}),
        ("update_ratios", {"run": "alpha", "tag": "model", "name": HUGE}),
    ],
    ids=["tag", "run", "format", "name"],
)
def test_a_60kB_value_is_echoed_capped(client, route, query):
    response = _get(client, route, **query)
    assert response.status_code in (400, 404)
    text = response.get_data(as_text=True)
    assert len(text) < 2000, len(text)
    assert f"'{'g' * responses.ECHO_CHARS}'…({60_000 - responses.ECHO_CHARS} more characters)" in (
        text
    )


def _request(**query) -> Request:
    return Request(_environ(**query))


def test_argument_helpers_cap_what_they_echo():
    from tensorboard import errors

    cases = [
        lambda: responses.int_arg(_request(step=HUGE), "step"),
        lambda: responses.choice_arg(_request(format=HUGE), "format", ("json",), "json"),
    ]
    for case in cases:
        with pytest.raises(errors.InvalidArgumentError) as caught:
            case()
        assert len(str(caught.value)) < 500
        assert "more characters)" in str(caught.value)
    with pytest.raises(errors.InvalidArgumentError, match="at least 0, got -1"):
        responses.int_arg(_request(step="-1"), "step", minimum=0)


def test_echo_keeps_short_values_as_repr():
    assert responses.echo("csv") == "'csv'"
    assert responses.echo("a'b") == repr("a'b")
    assert responses.echo(7) == "7"
    long = "é" * (responses.ECHO_CHARS + 1)
    assert responses.echo(long) == repr("é" * responses.ECHO_CHARS) + "…(1 more characters)"
