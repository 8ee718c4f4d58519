"""The `/findings` route: every rule over the runs asked for, most severe first.

`findings?[run=R ...][&set=RULE.SETTING=VALUE ...][&off=RULE ...]` (docs/http_api.md):
the findings of each run (all runs with deepscope data by default), the rules in
force with their thresholds and sources, which rules had something to check in
each run, and warnings (series that could not be read, a rule that failed).

A run's findings are remembered by the versions of its series (each one's
newest step and wall time, from the two listings a request makes anyway) and
the settings: a warm request lists, and serves what it remembered; a run that
got new steps is checked again, reading through the kinds' routes, whose
decoded series are remembered too. Numpy only: no torch on this side.
"""

from __future__ import annotations

import werkzeug
from tensorboard import errors, plugin_util
from tensorboard.compat.proto import summary_pb2
from tensorboard.data import provider

from deepscope import metadata
from deepscope.findings import engine, thresholds
from deepscope.findings.finding import SEVERITIES
from deepscope.tb_plugin import blob_steps, findings_evidence, responses, series
from deepscope.tb_plugin.route_context import RouteContext

_RUNS_KEPT = 512


def rules_json(settings: thresholds.Settings) -> list[dict]:
    """The rules table as served: each rule's thresholds in force (and defaults), source."""
    return [
        {
            "name": rule.name,
            "title": rule.title,
            "severity": settings.severities[rule.name],
            "off": rule.name in settings.off,
            "reads": list(rule.reads),
            "checks": rule.checks,
            "source": rule.source,
            "thresholds": {
                key: {
                    "value": settings[rule.name][key],
                    "default": threshold.default,
                    "meaning": threshold.meaning,
                }
                for key, threshold in rule.thresholds.items()
            },
        }
        for rule in thresholds.RULES
    ]


class FindingsRoutes:
    """Serves `/findings` from the kinds' routes (`routes`: kind name → its routes)."""

    def __init__(self, context: RouteContext, routes: dict):
        self._context = context
        self._routes = routes
        self._results = blob_steps.LRUCache(_RUNS_KEPT)

    def apps(self) -> dict:
        return {"/findings": self._serve}

    def settings_of(self, args) -> thresholds.Settings:
        """The settings a request's `set=` and `off=` arguments ask for; 400 when wrong."""
        try:
            overrides = thresholds.parse_assignments(args.getlist("set"))
            return thresholds.resolve(overrides, args.getlist("off"))
        except ValueError as error:
            raise errors.InvalidArgumentError(str(error)) from None

    def listing(self, ctx, experiment: str, runs: list[str] | None):
        """run → tag → (SeriesInfo, version) of every deepscope series (of `runs`)."""
        tag_filter = provider.RunTagFilter(runs=runs) if runs else None
        kwargs = dict(
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=tag_filter,
        )
        data_provider = self._context.data_provider
        result: dict[str, dict[str, tuple]] = {}
        for data_class, found in (
            (summary_pb2.DATA_CLASS_TENSOR, data_provider.list_tensors(ctx, **kwargs)),
            (
                summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
                data_provider.list_blob_sequences(ctx, **kwargs),
            ),
        ):
            for run, tags in found.items():
                for tag, time_series in tags.items():
                    info = series.describe(time_series.plugin_content, data_class)
                    version = (int(time_series.max_step), float(time_series.max_wall_time))
                    result.setdefault(run, {})[tag] = (info, version)
        return result

    def report(self, ctx, experiment: str, runs: list[str] | None, settings) -> dict:
        """The `/findings` body for `runs` (None: every run with deepscope data)."""
        listing = self.listing(ctx, experiment, runs)
        for run in runs or []:
            if run not in listing:
                known = ", ".join(repr(r) for r in sorted(self.listing(ctx, experiment, None)))
                raise errors.NotFoundError(
                    f"no run named {responses.echo(run)} has deepscope data; runs with "
                    f"deepscope data: {responses.cap(known or 'none')}"
                )
        findings, checked, warnings = [], {}, []
        for run in sorted(listing):
            tags = listing[run]
            key = (
                experiment,
                run,
                tuple(sorted((tag, version) for tag, (_, version) in tags.items())),
                settings.key(),
            )
            result = self._results.get(key)
            if result is None:
                infos = {tag: info for tag, (info, _) in tags.items()}
                evidence = findings_evidence.gather(self._routes, ctx, experiment, run, infos)
                result = engine.run_rules(evidence, settings)
                self._results.put(key, result)
            findings.extend(result.findings)
            checked[run] = list(result.checked)
            warnings.extend(result.warnings)
        findings.sort(key=lambda f: f.sort_key())
        counts = {severity: 0 for severity in SEVERITIES}
        for finding in findings:
            counts[finding.severity] += 1
        return {
            "runs": sorted(listing),
            "findings": [finding.to_json() for finding in findings],
            "counts": counts,
            "checked": checked,
            "rules": rules_json(settings),
            "warnings": warnings,
        }

    @werkzeug.wrappers.Request.application
    def _serve(self, request):
        settings = self.settings_of(request.args)
        runs = request.args.getlist("run") or None
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        body = self.report(ctx, experiment, runs, settings)
        return responses.respond_json(request, body)
