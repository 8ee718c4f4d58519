"""The deepscope TensorBoard plugin: routes under /data/plugin/deepscope/.

Every route is documented in docs/http_api.md. Responses go through
`http_util.Respond`; bad arguments raise `errors.InvalidArgumentError` (400),
unknown runs, tags and parameters `errors.NotFoundError` (404), each with a
message a person can act on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import werkzeug
from tensorboard import errors, plugin_util
from tensorboard.backend import json_util
from tensorboard.plugins import base_plugin

from deepscope import metadata
from deepscope.tb_plugin import blob_steps, responses, series
from deepscope.tb_plugin.correlation_routes import CorrelationRoutes
from deepscope.tb_plugin.route_context import RouteContext
from deepscope.tb_plugin.saliency_routes import SaliencyRoutes
from deepscope.tb_plugin.spectrum_routes import SpectrumRoutes

_STATIC = Path(__file__).parent / "static"
_FORMATS = ("json", "base64")
_EXAMPLE = "update_ratios?run=RUN&tag=TAG"
# Decoded update-ratio series and whole update_ratios responses remembered, by the
# series' version (its listing's max step and wall time): a 10,000-step x 201-parameter
# series is 8 MB decoded and 11 MB as base64 JSON.
_SERIES_BYTES = 64 * 1024 * 1024
_BODY_BYTES = 64 * 1024 * 1024


class DeepscopePlugin(base_plugin.TBPlugin):
    """Serves deepscope's series and its dashboard."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._data_provider = context.data_provider
        self._catalog = series.SeriesCatalog(context.data_provider)
        self._downsample = (context.sampling_hints or {}).get(metadata.PLUGIN_NAME)
        route_context = RouteContext(context.data_provider, self._catalog, self._downsample)
        self._kind_routes = [
            SpectrumRoutes(route_context),
            CorrelationRoutes(route_context),
            SaliencyRoutes(route_context),
        ]
        self._update_ratios = blob_steps.LRUCache(_SERIES_BYTES, weigh=lambda r: r.nbytes)
        self._update_ratio_bodies = blob_steps.LRUCache(_BODY_BYTES, weigh=lambda b: b.nbytes)

    def get_plugin_apps(self):
        apps = {
            "/index.js": self._serve_index_js,
            "/tags": self._serve_tags,
            "/update_ratios": self._serve_update_ratios,
        }
        for routes in self._kind_routes:
            apps.update(routes.apps())
        return apps

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
    def _serve_update_ratios(self, request):
        run = responses.required_arg(request, "run", _EXAMPLE)
        tag = responses.required_arg(request, "tag", _EXAMPLE)
        fmt = request.args.get("format", "json")
        if fmt not in _FORMATS:
            raise errors.InvalidArgumentError(
                f"format must be one of {', '.join(_FORMATS)}, got {fmt!r}"
            )
        wanted = request.args.getlist("name")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        plugin_data = self._catalog.find(ctx, experiment, run, tag, "update_ratios")
        # Remembered by the series' version, listed before reading: steps that arrive
        # meanwhile give a newer version, so nothing older is served under it.
        version = series.tensor_series_version(self._data_provider, ctx, experiment, run, tag)
        key = (experiment, run, tag, version)
        body_key = (key, fmt, tuple(wanted))
        if version is not None:
            body = self._update_ratio_bodies.get(body_key)
            if body is not None:
                return responses.respond_json_text(request, body)
        ratios = self._update_ratios.get(key) if version is not None else None
        if ratios is None:
            ratios = series.read_update_ratios(
                self._data_provider, ctx, experiment, run, tag, plugin_data, self._downsample
            )
            if version is not None and len(ratios.steps):
                self._update_ratios.put(key, ratios)
        if not len(ratios.steps):  # gone since it was remembered? look again
            self._catalog.forget(experiment, run, tag)
            plugin_data = self._catalog.find(ctx, experiment, run, tag, "update_ratios")
        values, no_update, names = ratios.values, ratios.no_update, ratios.names
        zero_weight = ratios.zero_weight
        if wanted:
            index = {name: j for j, name in enumerate(names)}
            missing = [name for name in wanted if name not in index]
            if missing:
                raise errors.NotFoundError(
                    f"tag {tag!r} of run {run!r} has no parameter {missing[0]!r}; "
                    f"its parameters: {', '.join(names[:20])}"
                    + (f" and {len(names) - 20} more" if len(names) > 20 else "")
                )
            columns = [index[name] for name in wanted]
            values, no_update, names = values[:, columns], no_update[:, columns], wanted
            zero_weight = zero_weight[:, columns]
        head = {
            "run": run,
            "tag": tag,
            "steps": ratios.steps.tolist(),
            "wall_times": ratios.wall_times.tolist(),
            "names": names,
            "non_finite": int((~np.isfinite(values) & ~no_update & ~zero_weight).sum()),
            "zero_weight": np.argwhere(zero_weight).tolist(),
            "warnings": ratios.warnings,
        }
        if fmt == "base64":
            head["no_update"] = np.argwhere(no_update).tolist()
            head["values"] = {"dtype": "float32", "shape": list(values.shape), "base64": ""}
            body = responses.prepare_base64_json(head, values.astype("<f4").tobytes())
        else:
            head["values"] = _json_matrix(values, no_update | zero_weight)
            body = responses.prepare_json_text(responses.json_text(head))
        if version is not None and len(ratios.steps):
            self._update_ratio_bodies.put(body_key, body)
        return responses.respond_json_text(request, body)


def _json_matrix(values: np.ndarray, not_measured: np.ndarray) -> list:
    """values as nested lists: numbers, null where not measured, "NaN"/"Infinity"/"-Infinity"."""
    rows = values.tolist()
    bad = np.argwhere(not_measured | ~np.isfinite(values))
    for i, j in bad.tolist():
        if not_measured[i, j]:
            rows[i][j] = None
        else:
            value = values[i, j]
            rows[i][j] = "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return rows
