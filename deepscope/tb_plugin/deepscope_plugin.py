"""The deepscope TensorBoard plugin: routes under /data/plugin/deepscope/.

The route table is `/index.js`, `/tags`, `/kinds` and each kind's own routes,
from the kind registry (`deepscope.kinds.KINDS`). Every route is documented in
docs/http_api.md. Responses go through `http_util.Respond`; bad arguments raise
`errors.InvalidArgumentError` (400), unknown runs, tags and parameters
`errors.NotFoundError` (404), each with a message a person can act on, which
TensorBoard sends as plain text. Any other exception (damaged data, a bug) is
caught by the plugin's safety net and answered 422 in plain text naming the
route, run, tag and step, never with TensorBoard's opaque HTML 500.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import werkzeug
from tensorboard import errors, plugin_util
from tensorboard.backend import json_util
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins import base_plugin

from deepscope import kinds, metadata
from deepscope.tb_plugin import responses, series
from deepscope.tb_plugin.findings_routes import FindingsRoutes
from deepscope.tb_plugin.route_context import RouteContext

logger = logging.getLogger(__name__)

_STATIC = Path(__file__).parent / "static"
# The status of an answer to an unexpected exception: the request was understood, but the
# data behind it could not be processed (damaged, or a case deepscope gets wrong).
UNEXPECTED_ERROR_STATUS = 422
# Query parameters an unexpected error's message names, in this order.
_NAMED_ARGS = ("run", "tag", "step")
_DATA_CLASS_NAMES = {
    summary_pb2.DATA_CLASS_TENSOR: "tensor",
    summary_pb2.DATA_CLASS_BLOB_SEQUENCE: "blob_sequence",
}


class DeepscopePlugin(base_plugin.TBPlugin):
    """Serves deepscope's series and its dashboard."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._catalog = series.SeriesCatalog(context.data_provider)
        downsample = (context.sampling_hints or {}).get(metadata.PLUGIN_NAME)
        route_context = RouteContext(context.data_provider, self._catalog, downsample)
        # Each kind's routes, in registry order.
        self._kind_routes = [kind.load_routes()(route_context) for kind in kinds.KINDS]
        # Findings read through the kinds' routes (and so share their caches).
        self.findings = FindingsRoutes(
            route_context, {kind.name: r for kind, r in zip(kinds.KINDS, self._kind_routes)}
        )

    def get_plugin_apps(self):
        apps = {
            "/index.js": self._serve_index_js,
            "/tags": self._serve_tags,
            "/kinds": self._serve_kinds,
            **self.findings.apps(),
        }
        for kind, routes in zip(kinds.KINDS, self._kind_routes):
            for route, app in routes.apps().items():
                if route in apps:
                    raise ValueError(f"kind {kind.name} serves {route}, which is already served")
                apps[route] = app
        return {route: _safety_net(route, app) for route, app in apps.items()}

    def is_active(self) -> bool:
        # Listed through data_provider.list_plugins(); nothing slow here.
        return False

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="deepscope")

    @werkzeug.wrappers.Request.application
    def _serve_index_js(self, request):
        bundle = _STATIC / "index.js"
        if not bundle.exists():
            raise errors.NotFoundError(
                "the dashboard bundle is missing from this install of deepscope; reinstall it"
            )
        return responses.respond_with_etag(request, bundle.read_bytes(), "text/javascript")

    @werkzeug.wrappers.Request.application
    def _serve_tags(self, request):
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        listing = self._catalog.list(ctx, experiment)
        body = {
            run: {tag: info.to_json() for tag, info in sorted(tags.items())}
            for run, tags in sorted(listing.items())
        }
        return responses.respond_json(request, json_util.Cleanse(body))

    @werkzeug.wrappers.Request.application
    def _serve_kinds(self, request):
        return responses.respond_json(request, kinds_json())


def kinds_json() -> list[dict]:
    """The `/kinds` body: each kind's name, title, subtitle and data class, in registry order."""
    return [
        {
            "name": kind.name,
            "title": kind.title,
            "subtitle": kind.subtitle,
            "data_class": _DATA_CLASS_NAMES[kind.data_class],
        }
        for kind in kinds.KINDS
    ]


def _safety_net(route: str, app):
    """`app`, answering any unexpected exception 422 in plain text instead of an HTML 500.

    `tensorboard.errors` pass through: TensorBoard answers them with their own
    status (400, 404) in plain text. Anything else is logged with its traceback
    and answered with a message naming the route, the run, tag and step asked
    for, and the exception.
    """

    def safe_app(environ, start_response):
        try:
            return app(environ, start_response)
        except errors.PublicError:
            raise
        except Exception as error:
            request = werkzeug.wrappers.Request(environ)
            message = unexpected_error_message(route, request.args, error)
            logger.exception("deepscope: %s", message)
            response = responses.respond_text_error(request, message, UNEXPECTED_ERROR_STATUS)
            return response(environ, start_response)

    return safe_app


def unexpected_error_message(route: str, args, error: BaseException) -> str:
    """What went wrong, for the person who asked: route, run, tag and step, the exception
    and where it was raised (for a bug report)."""
    asked = [f"{name} {responses.echo(args.get(name))}" for name in _NAMED_ARGS if name in args]
    where = f" ({', '.join(asked)})" if asked else ""
    frames = traceback.extract_tb(error.__traceback__)
    raised = f" (raised at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return (
        f"deepscope could not answer {route.lstrip('/')}{where}: "
        f"{type(error).__name__}: {responses.cap(str(error))}{raised}. The data may be "
        "damaged, or this is a bug in deepscope: TensorBoard's log has the traceback; "
        "please report it."
    )
