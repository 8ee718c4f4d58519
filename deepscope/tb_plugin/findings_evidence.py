"""One run's evidence for the findings rules, read through the kinds' own routes.

Tensor kinds (update ratios, layer statistics) come whole from their routes'
decoded series, remembered by each series' version, so `/findings` and the
tab's views share one read. Blob kinds are never read whole: of each spectrum
series, the first and the last kept step (and, when the last weight is
non-finite, a bisection over the kept steps for the first such step: a
non-finite weight stays so, about log2(steps) reads); of each correlation
series, the last kept step. All of a run's blob reads of one round go out
together (`read_many`, in parallel). What cannot be read is a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
from tensorboard import errors
from tensorboard.data import provider

from deepscope.findings.evidence import (
    ColumnSeries,
    CorrelationLayer,
    JacobianSeries,
    RunEvidence,
    SpectrumLayer,
    SpectrumSample,
    StatisticsPart,
    StatisticsSeries,
)
from deepscope.tb_plugin import blob_steps, series
from deepscope.tb_plugin.blob_kind import Damaged, Series

SPECTRUM_PREFIX = "spectra/"
CORRELATION_PREFIXES = ("correlation/", "compare/")


def run_series(data_provider, ctx, experiment: str, run: str) -> dict[str, series.SeriesInfo]:
    """Every deepscope series of `run`: tag → SeriesInfo (one listing per data class)."""
    listing = series.list_series(data_provider, ctx, experiment, provider.RunTagFilter(runs=[run]))
    return listing.get(run, {})


def layer_name(tag: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return tag


def gather(routes: dict, ctx, experiment: str, run: str, tags: dict) -> RunEvidence:
    """The evidence of `run`, whose deepscope series are `tags` (tag → SeriesInfo)."""
    evidence = RunEvidence(run)
    by_kind: dict[str, list[str]] = {}
    for tag, info in sorted(tags.items()):
        if info.error:
            evidence.warnings.append(f"run {run!r}, tag {tag!r} was not checked: {info.error}")
            continue
        by_kind.setdefault(info.kind, []).append(tag)
    for tag in by_kind.get("update_ratios", []):
        with _reading(evidence, f"tag {tag!r}"):
            decoded = routes["update_ratios"].update_ratios(ctx, experiment, run, tag)
            evidence.ratios.append(_ratios(decoded, tag))
    for tag in by_kind.get("layer_statistics", []):
        with _reading(evidence, f"tag {tag!r}"):
            decoded = routes["layer_statistics"].layer_statistics(ctx, experiment, run, tag)
            evidence.statistics.append(_statistics(decoded, tag))
    for tag in by_kind.get("layer_values", []):
        with _reading(evidence, f"tag {tag!r}"):
            decoded = routes["layer_values"].layer_values(ctx, experiment, run, tag)
            evidence.layer_values.append(
                ColumnSeries(
                    tag, decoded.steps, list(decoded.names), decoded.values, ~decoded.measured
                )
            )
    for tag in by_kind.get("jacobian", []):
        with _reading(evidence, f"tag {tag!r}"):
            decoded = routes["jacobian"].decoded(ctx, experiment, run, tag)
            evidence.jacobians.append(_jacobian(decoded, tag))
    if by_kind.get("spectrum"):
        with _reading(evidence, "its spectra"):
            found = _spectra(routes["spectrum"], ctx, experiment, run, tags, by_kind["spectrum"])
            evidence.spectra.extend(found)
    if by_kind.get("correlation"):
        with _reading(evidence, "its correlations"):
            names = by_kind["correlation"]
            found = _correlations(routes["correlation"], ctx, experiment, run, tags, names)
            evidence.correlations.extend(found)
    return evidence


@contextlib.contextmanager
def _reading(evidence: RunEvidence, what: str):
    """A read whose failure is a warning (a series that cannot be read is not checked)."""
    try:
        yield
    except errors.PublicError as error:
        evidence.warnings.append(f"run {evidence.run!r}, {what} was not checked: {error}")
    except Exception as error:  # damaged beyond the kinds' own checks
        evidence.warnings.append(
            f"run {evidence.run!r}, {what} was not checked: {type(error).__name__}: {error}"
        )


def _jacobian(decoded, tag: str) -> JacobianSeries:
    """Per step, which maps came out non-finite: an infinite value, or no largest singular
    value (NaN in its first place: the values are NaN-padded past each map's count, never
    there) of a map that did not fail, or a map whose error says its values were not
    finite (the SVD refuses them; other failures carry their error and NaN by design)."""
    flags = []
    for data in decoded.data:
        maps = len(data.maps)
        values = data.singular_values.reshape(maps, -1)
        infinite = np.isinf(values).any(axis=1) | np.isinf(data.mean_squared.reshape(maps, -1)).any(
            axis=1
        )
        first = data.singular_values[:, :, 0] if data.singular_values.shape[-1] else None
        missing = np.isnan(first).any(axis=1) if first is not None else np.zeros(maps, bool)
        failed = np.array([bool(e) for e in data.errors], dtype=bool)
        # A map whose decomposition failed on non-finite values (the measurer's error).
        poisoned = np.array(["non-finite" in e for e in data.errors], dtype=bool)
        flags.append(((infinite | missing) & ~failed) | poisoned)
    return JacobianSeries(tag, decoded.steps, [tuple(d.maps) for d in decoded.data], flags)


def _ratios(decoded, tag: str) -> ColumnSeries:
    return ColumnSeries(
        tag=tag,
        steps=decoded.steps,
        names=list(decoded.names),
        values=decoded.values,
        unmeasured=decoded.no_update | decoded.zero_weight,
    )


def _part(part) -> StatisticsPart:
    return StatisticsPart(
        names=list(part.names),
        types=list(part.types),
        statistics=list(part.statistics),
        values=part.values,
        absent=~part.present,
        no_gradient=part.without_gradient,
    )


def _statistics(decoded, tag: str) -> StatisticsSeries:
    return StatisticsSeries(
        tag=tag,
        steps=decoded.steps,
        activations=_part(decoded.activations),
        parameters=_part(decoded.parameters),
    )


def _is_non_finite(item) -> bool:
    """A spectrum step whose weight (or values) was not finite; damage is not."""
    if item.error:
        return "non-finite" in item.error and not item.error.startswith("damaged step")
    return item.non_finite > 0 or not np.isfinite(item.metrics.get("spectral_norm", 0.0))


def _sample(step: blob_steps.BlobStep, item) -> SpectrumSample:
    operator = item.operator
    norm = None
    if operator is not None and not operator.error:
        norm = float(operator.operator_norm)
    return SpectrumSample(
        step=step.step,
        metrics=dict(item.metrics),
        coverage=item.coverage,
        error=item.error,
        non_finite=item.non_finite,
        unchanged_since=item.unchanged_since,
        operator_norm=norm,
    )


def newest_steps(context, ctx, experiment: str, run: str, tags: list[str]) -> dict:
    """tag → [its newest kept step] of each of `tags`, in one read RPC (downsample 1:
    the data provider keeps the last step; the Rust data server sends nothing more)."""
    return blob_steps.list_steps(context.data_provider, ctx, experiment, run, tags, 1)


def _spectra(spectrum_routes, ctx, experiment: str, run: str, tags: dict, names: list[str]):
    """Each spectrum layer's first and newest steps. The newest comes from a one-step
    listing; the first from its `start` summary (SpectrumStep.start), so that only the
    layers without one (series written before it existed), whose newest step repeats
    another (unchanged) or whose weight went non-finite are listed whole."""
    newest = newest_steps(spectrum_routes._context, ctx, experiment, run, names)
    found = {}
    for tag in names:
        if newest.get(tag):
            info = tags[tag].plugin_data
            found[tag] = Series(run, tag, experiment, ctx, info, info.spectrum)
    lasts = dict(zip(found, spectrum_routes.read_many([(found[t], newest[t][-1]) for t in found])))
    whole = [
        tag
        for tag, item in lasts.items()
        if item.start is None or item.unchanged_since is not None or _is_non_finite(item)
    ]
    listing = spectrum_routes._listings.list_tags(ctx, experiment, run, whole) if whole else {}
    wanted = {}
    for tag in whole:
        kept = listing.get(tag) or newest[tag]
        chosen = (
            [kept[-1]] if lasts[tag].start is not None or len(kept) == 1 else [kept[0], kept[-1]]
        )
        wanted[tag] = (found[tag], chosen)
    items = spectrum_routes._resolved(wanted, listing) if wanted else {}
    bisected = {tag: (wanted[tag][0], [wanted[tag][1][-1]]) for tag in wanted}
    first_bad = _bisect_non_finite(
        spectrum_routes, bisected, {tag: [items[tag][-1]] for tag in items}, listing
    )
    layers = []
    for tag, layer_series in found.items():
        last_step = newest[tag][-1]
        last = items[tag][-1] if tag in items else lasts[tag]
        if last.start is not None:
            start_step, start_metrics, start_coverage = last.start
            first = SpectrumSample(
                start_step, dict(start_metrics), start_coverage, "", 0, None, None
            )
            if last.unchanged_since == start_step and last.error.startswith("unchanged since"):
                # Unchanged since a step TensorBoard did not keep, which is the start: the
                # start's numbers are that step's (a layer frozen from its first spectrum).
                last = dataclasses.replace(
                    last,
                    metrics={**last.metrics, **start_metrics},
                    error="",
                    coverage=start_coverage,
                )
        elif tag in items and len(items[tag]) == 2:
            first = _sample(wanted[tag][1][0], items[tag][0])
        else:  # one step only: it is the first
            first = _sample(last_step, last)
        layers.append(
            SpectrumLayer(
                tag=tag,
                layer=layer_name(tag, (SPECTRUM_PREFIX,)),
                layer_kind=layer_series.info.layer_kind,
                first=first,
                last=_sample(last_step, last),
                first_non_finite=first_bad.get(tag),
            )
        )
    return layers


def _bisect_non_finite(spectrum_routes, wanted, items, listing) -> dict[str, int]:
    """tag → the first kept step with a non-finite weight, for the tags whose newest is
    (`items[tag][-1]`), by bisection over the tag's kept steps in `listing`."""
    bounds = {}
    for tag, tag_items in items.items():
        kept = listing.get(tag, [])
        if not kept or not _is_non_finite(tag_items[-1]):
            continue
        first = spectrum_routes._resolved({tag: (wanted[tag][0], [kept[0]])}, listing)[tag][0]
        bounds[tag] = (0, 0) if _is_non_finite(first) else (0, len(kept) - 1)
    while any(hi - lo > 1 for lo, hi in bounds.values()):
        open_tags = [tag for tag, (lo, hi) in bounds.items() if hi - lo > 1]
        middles = {tag: (bounds[tag][0] + bounds[tag][1]) // 2 for tag in open_tags}
        round_items = spectrum_routes._resolved(
            {tag: (wanted[tag][0], [listing[tag][middles[tag]]]) for tag in open_tags}, listing
        )
        for tag in open_tags:
            lo, hi = bounds[tag]
            bad = _is_non_finite(round_items[tag][0])
            bounds[tag] = (lo, middles[tag]) if bad else (middles[tag], hi)
    return {tag: listing[tag][hi].step for tag, (lo, hi) in bounds.items()}


def _correlations(routes, ctx, experiment: str, run: str, tags: dict, names: list[str]):
    listing = newest_steps(routes._context, ctx, experiment, run, names)
    items = []
    for tag in names:
        kept = listing.get(tag, [])
        if kept:
            info = tags[tag].plugin_data
            items.append((Series(run, tag, experiment, ctx, info, info.correlation), kept[-1]))
    layers = []
    for (found, step), decoded in zip(items, routes.read_many(items)):
        info = found.info
        layer = layer_name(found.tag, CORRELATION_PREFIXES)
        if isinstance(decoded, Damaged):
            layers.append(
                CorrelationLayer(
                    found.tag,
                    layer,
                    info.cross,
                    step.step,
                    None,
                    None,
                    info.row_name,
                    info.col_name,
                    0,
                    decoded.error,
                )
            )
            continue
        non_finite = decoded.row_stats.non_finite + (
            decoded.col_stats.non_finite if decoded.col_stats is not None else 0
        )
        matching = decoded.matching
        layers.append(
            CorrelationLayer(
                tag=found.tag,
                layer=layer,
                cross=info.cross,
                step=step.step,
                matrix=decoded.matrix,
                bipartite_mean=None if matching is None else float(matching.bipartite_mean),
                row_name=info.row_name,
                col_name=info.col_name,
                non_finite=int(non_finite),
            )
        )
    return layers
