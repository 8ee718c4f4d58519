"""The plugin's responses carry an ETag and answer If-None-Match with 304 (idle reloads).

Unit tests on `deepscope.tb_plugin.responses`, then every data route of the plugin
served in-process by TensorBoard's own WSGI app (its security validator included)
from a small log of each kind.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from deepscope.tb_plugin import responses
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin


def _request(headers: dict[str, str] | None = None) -> Request:
    return Request(EnvironBuilder(path="/x", headers=headers or {}).get_environ())


def _send(response, request: Request) -> tuple[int, dict[str, str], bytes]:
    """What goes on the wire: status, headers, body (as werkzeug sends them)."""
    result = werkzeug_test.run_wsgi_app(response, request.environ)
    body_iter, status, headers = result
    return int(status.split()[0]), dict(headers), b"".join(body_iter)


BODY = {"run": "r", "values": [1.5, 2.5], "name": "ü"}


def test_json_response_has_an_etag_and_no_cache():
    request = _request({"Accept-Encoding": "gzip"})
    status, headers, body = _send(responses.respond_json(request, BODY), request)
    assert status == 200
    assert headers["ETag"].startswith('"') and headers["ETag"].endswith('"')
    assert "no-cache" in headers["Cache-Control"]
    assert json.loads(gzip.decompress(body)) == BODY


def test_same_body_same_etag_other_body_other_etag():
    request = _request({"Accept-Encoding": "gzip"})
    first = _send(responses.respond_json(request, BODY), request)[1]["ETag"]
    again = _send(responses.respond_json(request, dict(BODY)), request)[1]["ETag"]
    other = _send(responses.respond_json(request, {**BODY, "values": [1.5, 2.75]}), request)
    assert first == again
    assert other[1]["ETag"] != first


def test_if_none_match_gets_304_with_no_body_through_respond():
    plain = _request({"Accept-Encoding": "gzip"})
    etag = _send(responses.respond_json(plain, BODY), plain)[1]["ETag"]
    request = _request({"Accept-Encoding": "gzip", "If-None-Match": etag})
    status, headers, body = _send(responses.respond_json(request, BODY), request)
    assert status == 304
    assert body == b""
    assert headers["ETag"] == etag
    assert headers["X-Content-Type-Options"] == "nosniff"  # Respond's
    assert "no-cache" in headers["Cache-Control"]
    assert "Content-Encoding" not in headers  # the stored response's encoding stands


@pytest.mark.parametrize(
    "if_none_match",
    ['W/"{tag}"', '"other", "{tag}"', "*"],
    ids=["weak", "among-several", "star"],
)
def test_if_none_match_compares_weakly_and_takes_lists(if_none_match):
    plain = _request({"Accept-Encoding": "gzip"})
    etag = _send(responses.respond_json(plain, BODY), plain)[1]["ETag"].strip('"')
    request = _request({"Accept-Encoding": "gzip", "If-None-Match": if_none_match.format(tag=etag)})
    assert _send(responses.respond_json(request, BODY), request)[0] == 304


def test_a_stale_etag_gets_the_new_body():
    plain = _request({"Accept-Encoding": "gzip"})
    etag = _send(responses.respond_json(plain, BODY), plain)[1]["ETag"]
    request = _request({"Accept-Encoding": "gzip", "If-None-Match": etag})
    changed = {**BODY, "values": [9.0]}
    status, _, body = _send(responses.respond_json(request, changed), request)
    assert status == 200
    assert json.loads(gzip.decompress(body)) == changed


def test_gzip_and_identity_representations_have_different_etags():
    zipped = _request({"Accept-Encoding": "gzip"})
    plain = _request()
    zipped_etag = _send(responses.respond_json(zipped, BODY), zipped)[1]["ETag"]
    status, headers, body = _send(responses.respond_json(plain, BODY), plain)
    assert status == 200 and json.loads(body) == BODY
    assert headers["ETag"] != zipped_etag
    # A client that does not take gzip never gets a 304 for the gzipped body's tag.
    asking = _request({"If-None-Match": zipped_etag})
    assert _send(responses.respond_json(asking, BODY), asking)[0] == 200


def test_base64_json_etag_covers_the_bytes():
    values = np.arange(6, dtype="<f4")
    request = _request()

    def respond(data: bytes):
        body = {"values": {"dtype": "float32", "shape": [6], "base64": ""}}
        return responses.respond_base64_json(request, body, data)

    status, headers, body = _send(respond(values.tobytes()), request)
    assert status == 200
    slot = json.loads(body)["values"]
    assert base64.b64decode(slot["base64"]) == values.tobytes()
    changed = values.copy()
    changed[3] = np.nextafter(changed[3], np.float32(10))  # one ulp: other bytes
    assert _send(respond(changed.tobytes()), request)[1]["ETag"] != headers["ETag"]
    asking = _request({"If-None-Match": headers["ETag"]})
    status, _, body = _send(
        responses.respond_base64_json(
            asking,
            {"values": {"dtype": "float32", "shape": [6], "base64": ""}},
            values.tobytes(),
        ),
        asking,
    )
    assert (status, body) == (304, b"")


TEXT = json.dumps(BODY, separators=(",", ":")).encode("utf-8")


@pytest.mark.parametrize("prepared", [False, True], ids=["text", "prepared"])
@pytest.mark.parametrize("accept", ["gzip", ""], ids=["gzip", "identity"])
def test_json_text_answers_as_respond_json_does(prepared, accept):
    """Serialized JSON (or its prepared response) gets respond_json's body, ETag and 304."""
    headers = {"Accept-Encoding": accept} if accept else {}
    request = _request(headers)
    expected = _send(responses.respond_json(request, BODY), request)
    text = responses.prepare_json_text(TEXT) if prepared else TEXT
    status, got_headers, body = _send(responses.respond_json_text(request, text), request)
    assert status == 200
    assert got_headers["ETag"] == expected[1]["ETag"]
    assert body == expected[2]  # the same bytes on the wire (gzip with mtime 0 is deterministic)
    assert json.loads(gzip.decompress(body) if accept else body) == BODY
    asking = _request({**headers, "If-None-Match": got_headers["ETag"]})
    status, _, body = _send(responses.respond_json_text(asking, text), asking)
    assert (status, body) == (304, b"")
    stale = _request({**headers, "If-None-Match": '"0123"'})
    assert _send(responses.respond_json_text(stale, text), stale)[0] == 200


def test_prepared_base64_json_is_respond_base64_json_kept():
    values = np.linspace(-1, 1, 7, dtype="<f4")

    def body() -> dict:
        return {"run": "r", "values": {"dtype": "float32", "shape": [7], "base64": ""}}

    request = _request({"Accept-Encoding": "gzip"})
    expected = _send(responses.respond_base64_json(request, body(), values.tobytes()), request)
    prepared = responses.prepare_base64_json(body(), values.tobytes())
    status, headers, sent = _send(responses.respond_json_text(request, prepared), request)
    assert (status, headers["ETag"], sent) == (200, expected[1]["ETag"], expected[2])
    assert np.frombuffer(
        base64.b64decode(json.loads(sent)["values"]["base64"]), "<f4"
    ).tolist() == (values.tolist())
    assert "Content-Encoding" not in headers or headers["Content-Encoding"] == "identity"
    asking = _request({"If-None-Match": headers["ETag"]})
    assert _send(responses.respond_json_text(asking, prepared), asking)[:3:2] == (304, b"")


def test_respond_with_etag_for_other_bodies():
    request = _request({"Accept-Encoding": "gzip"})
    status, headers, body = _send(
        responses.respond_with_etag(request, b'{"a":1}', "application/json"), request
    )
    assert status == 200 and json.loads(gzip.decompress(body)) == {"a": 1}
    asking = _request({"Accept-Encoding": "gzip", "If-None-Match": headers["ETag"]})
    status, _, body = _send(
        responses.respond_with_etag(asking, b'{"a":1}', "application/json"), asking
    )
    assert (status, body) == (304, b"")


def test_text_error_is_plain_text_with_nosniff_and_its_status():
    request = _request({"Accept-Encoding": "gzip"})
    status, headers, body = _send(responses.respond_text_error(request, "bad ü", 422), request)
    assert status == 422
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    text = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
    assert text.decode("utf-8") == "bad ü"


# --- every data route, through TensorBoard's WSGI app -------------------------------------


def _write_small_log(logdir: Path) -> None:
    import torch

    import deepscope

    writer = deepscope.SummaryWriter(str(logdir / "run"))
    rng = np.random.default_rng(0)
    for step in range(3):
        writer.add_update_ratios("update_ratios", {"a.weight": 1e-3 * (step + 1)}, step)
        writer.add_singular_values(
            "spectra/fc", torch.from_numpy(rng.standard_normal((6, 4))), step
        )
        acts = torch.from_numpy(rng.standard_normal((32, 5)).astype(np.float32))
        writer.add_channel_correlation("correlation/fc", acts, global_step=step)
        images = torch.from_numpy(rng.random((2, 1, 4, 4)).astype(np.float32))
        writer.add_saliency("saliency/x", images, images - 0.5, global_step=step)
    writer.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> werkzeug_test.Client:
    logdir = tmp_path_factory.mktemp("etag-log")
    _write_small_log(logdir)
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = tb_data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    return werkzeug_test.Client(app)


DATA_ROUTES = [
    ("tags", {}),
    ("kinds", {}),
    ("index.js", {}),
    ("update_ratios", {"run": "run", "tag": "update_ratios"}),
    ("update_ratios", {"run": "run", "tag": "update_ratios", "format": "base64"}),
    ("spectrum_steps", {"run": "run", "tag": "spectra/fc"}),
    ("spectrum", {"run": "run", "tag": "spectra/fc"}),
    ("spectrum_metrics", {"run": "run", "tag": "spectra/fc"}),
    ("spectrum_evolution", {"run": "run", "tag": "spectra/fc"}),
    ("correlation_steps", {"run": "run", "tag": "correlation/fc"}),
    ("correlation_matrix", {"run": "run", "tag": "correlation/fc"}),
    ("saliency_steps", {"run": "run", "tag": "saliency/x"}),
    ("saliency", {"run": "run", "tag": "saliency/x"}),
]


@pytest.mark.parametrize(
    "route, query", DATA_ROUTES, ids=[f"{r}-{q.get('format', '')}" for r, q in DATA_ROUTES]
)
def test_every_data_route_revalidates_with_304(client, route, query, caplog):
    url = f"/data/plugin/deepscope/{route}?{urlencode(query)}"
    first = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert first.status_code == 200, first.get_data(as_text=True)
    etag = first.headers.get("ETag")
    assert etag, f"{route} has no ETag"
    with caplog.at_level(logging.WARNING):
        again = client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag
    # TensorBoard's security validator logs a warning for a response without Content-Type.
    assert not [r for r in caplog.records if "required" in r.getMessage()], caplog.text
