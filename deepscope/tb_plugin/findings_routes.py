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
from tensorboard.data import provider

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
        """run → tag → SeriesInfo (with its version: newest step and wall time) of every
        deepscope series (of `runs`). The listing `tags` made for the same refresh is
        reused when at most `LISTING_SECONDS` old: on the Python loader a listing reads
        every kept event of every series (about 1 s for 400 series × 1,000 steps)."""
        if runs is None:
            return self._context.catalog.recent(ctx, experiment, blob_steps.LISTING_SECONDS)
        known = self._context.catalog.recent_or_none(experiment, blob_steps.LISTING_SECONDS)
        if known is not None and all(run in known for run in runs):
            return {run: known[run] for run in runs}
        return series.list_series(
            self._context.data_provider, ctx, experiment, provider.RunTagFilter(runs=runs)
        )

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
            versions = ((tag, i.max_step, i.max_wall_time) for tag, i in tags.items())
            key = (experiment, run, tuple(sorted(versions)), settings.key())
            result = self._results.get(key)
            if result is None:
                evidence = findings_evidence.gather(self._routes, ctx, experiment, run, tags)
                result = engine.run_rules(evidence, settings)
                if not evidence.warnings:  # a read that failed is tried again next time
                    self._results.put(key, result)
            findings.extend(result.findings)
            checked[run] = list(result.checked)
            warnings.extend({"run": run, "message": message} for message in result.warnings)
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
