"""What every blob kind's routes share (`blob_kind.BlobKindRoutes`), tested once for all kinds.

Each blob kind of `deepscope.kinds.KINDS` gets a hand-written series: good
steps 0, 5, 10, a damaged step 15 (bytes that are no `*Step`), a step 20 with
no blob at all, and step 25 good again; plus an update-ratio tag (another kind)
and a series whose tag the fast data server cannot read. A kind's good step is
its tests/kind_cases/<kind>.py's `example()`. The plugin is served
in-process through TensorBoard's own WSGI app with the production sampling.
Kind-specific behaviour stays in each kind's test file.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from tensorboard import errors
from tensorboard.compat.proto import summary_pb2

from deepscope import kinds
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import blob_kind, blob_steps, series
from deepscope.tb_plugin.route_context import RouteContext
from tests import kind_cases
from tests.route_helpers import CountingProvider
from tests.unit import test_plugin_routes as plugin_routes

BLOB_KINDS = [k for k in kinds.KINDS if k.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE]
GOOD_STEPS = (0, 5, 10, 25)
DAMAGED_STEP = 15
EMPTY_STEP = 20
ALL_STEPS = [0, 5, 10, DAMAGED_STEP, EMPTY_STEP, 25]
# A tag tensorboard-data-server 0.7.2 cannot parse back from its blob keys.
FAST_LOADER_TAG = 'say "hi"'


def _example(kind: kinds.Kind):
    """A good step of a blob kind, (its *Info, its *Step): its tests/kind_cases/<kind>.py's
    `example()` (`kind_cases.MissingCases` naming the module or attribute when missing)."""
    return kind_cases.attribute(kind.name, "example")()


def _plugin_data(kind: kinds.Kind, info) -> pb.PluginData:
    plugin_data = pb.PluginData(kind=kind.enum)
    getattr(plugin_data, kind.details).CopyFrom(info)
    return plugin_data


def write_blob_log(logdir):
    """Run "alpha": each blob kind's good, damaged and blob-less steps (see the module
    docstring), the same under a tag the fast data server cannot read, and an update-ratio
    tag; run "flip": a correlation step whose ρ[0, 1] has a flipped exponent bit (32768)."""
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    from deepscope.writer import summary, update_ratios

    writer = TorchWriter(str(logdir / "alpha"))
    for kind in BLOB_KINDS:
        info, step = _example(kind)
        good = step.SerializeToString()
        for tag in (kind.name, f"{kind.name}/{FAST_LOADER_TAG}"):
            for number in ALL_STEPS:
                blobs = {DAMAGED_STEP: [b"\xff\x00 not a step"], EMPTY_STEP: []}.get(number, [good])
                plugin_data = _plugin_data(kind, info) if number == 0 else None
                event = summary.blob_sequence_summary(tag, blobs, plugin_data)
                writer.file_writer.add_summary(event, number, 1000.0 + number)
    writer.file_writer.add_summary(update_ratios.update_ratios_pb("ratios", {"w": 1e-3}), 0, 1.0)
    writer.close()
    writer = TorchWriter(str(logdir / "flip"))
    info, step = _example(kinds.by_name("correlation"))
    flipped = pb.CorrelationStep()
    flipped.CopyFrom(step)
    data = bytearray(flipped.matrix.data)
    data[3] ^= 0x40  # ρ[0, 1] = 0.5 is float16 0x3800: now 0x7800 = 32768
    flipped.matrix.data = bytes(data)
    for number, message in ((0, step), (1, flipped)):
        plugin_data = _plugin_data(kinds.by_name("correlation"), info) if number == 0 else None
        event = summary.blob_sequence_summary("c", [message.SerializeToString()], plugin_data)
        writer.file_writer.add_summary(event, number, 1000.0 + number)
    writer.close()
    writer = TorchWriter(str(logdir / "fuzz"))
    for kind in BLOB_KINDS:
        info, _ = _example(kind)
        for number, payload in enumerate(fuzzed_payloads(kind)):
            plugin_data = _plugin_data(kind, info) if number == 0 else None
            event = summary.blob_sequence_summary(kind.name, [payload], plugin_data)
            writer.file_writer.add_summary(event, number, 1000.0 + number)
    writer.close()


FUZZ_SEED, FUZZ_MUTATIONS = 10, 40


def fuzzed_payloads(kind: kinds.Kind) -> list[bytes]:
    """Damaged versions of a good step of `kind`: random byte flips, truncations, a tail of
    garbage, and the other kinds' good steps (a payload of the wrong message). Seeded."""
    rng = np.random.default_rng(FUZZ_SEED + kind.enum)
    good = _example(kind)[1].SerializeToString()
    payloads = [good]
    for _ in range(FUZZ_MUTATIONS):
        data = bytearray(good)
        how = rng.integers(3)
        if how == 0:  # flip 1 to 3 random bits
            for position in rng.integers(len(data), size=rng.integers(1, 4)):
                data[position] ^= 1 << int(rng.integers(8))
        elif how == 1:
            data = data[: rng.integers(len(data))]
        else:
            data += rng.integers(256, size=rng.integers(1, 16)).astype(np.uint8).tobytes()
        payloads.append(bytes(data))
    others = [_example(k)[1].SerializeToString() for k in BLOB_KINDS if k is not kind]
    return payloads + others


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("blob-steps")
    write_blob_log(logdir)
    return logdir


@pytest.fixture(scope="module")
def provider(logdir):
    guidance = plugin_routes._production_tensor_size_guidance()
    return CountingProvider(plugin_routes._provider(logdir, guidance))


@pytest.fixture(scope="module")
def client(provider):
    return plugin_routes._client(provider, {})


def _routes(kind: kinds.Kind, provider) -> blob_kind.BlobKindRoutes:
    context = RouteContext(provider, series.SeriesCatalog(provider), None)
    return kind.load_routes()(context)


def _one_step_routes(kind: kinds.Kind) -> list[str]:
    return list(_routes(kind, None).step_routes())


# One-step routes that serve cross-network series only (refused before any read for the
# within-layer examples here; the damaged-data fuzz covers them on cross series).
# test_cross_only_routes_are_exactly_these keeps the set true.
CROSS_ONLY_ROUTES = frozenset({"correlation_matching"})


def _params(with_routes: bool, within_layer: bool = False):
    """(kind, route) pairs of every blob kind's one-step routes, or the kinds alone;
    `within_layer` leaves out the routes that serve cross-network series only."""
    if not with_routes:
        return [pytest.param(kind, id=kind.name) for kind in BLOB_KINDS]
    return [
        pytest.param(kind, route, id=route)
        for kind in BLOB_KINDS
        for route in [f"{kind.name}_steps", *_one_step_routes(kind)]
        if not (within_layer and route in CROSS_ONLY_ROUTES)
    ]


def _error(client, route: str, **query) -> tuple[int, str]:
    status, body, _ = plugin_routes.get(client, route, **query)
    return status, body


def _serves(client, route: str, tag: str) -> bool:
    """Whether `route` serves the (within-layer) series `tag` at all: correlation_matching
    serves cross-network series only and refuses others before reading a step."""
    status, body = _error(client, route, run="alpha", tag=tag)
    return not (status == 400 and "cross-network series only" in body)


# --- every route of a series: arguments, catalog ----------------------------------------------


@pytest.mark.parametrize("kind, route", _params(True))
def test_common_errors_say_what_to_do(client, kind, route):
    tag = kind.name
    cases = [
        ({"tag": tag}, 400, "missing query parameter 'run'"),
        ({"run": "alpha"}, 400, "missing query parameter 'tag'"),
        ({"run": "nope", "tag": tag}, 404, "runs with deepscope data: 'alpha', 'flip', 'fuzz'"),
        ({"run": "alpha", "tag": "nope"}, 404, "has no deepscope tag 'nope'; its tags: "),
        ({"run": "alpha", "tag": "nope"}, 404, f"{tag!r}, "),
        ({"run": "alpha", "tag": "ratios"}, 400, f"holds update_ratios data, not {kind.name}"),
    ]
    if not route.endswith("_steps") and _serves(client, route, tag):
        cases += [
            ({"run": "alpha", "tag": tag, "step": "x"}, 400, "step must be an integer"),
            ({"run": "alpha", "tag": tag, "step": 7}, 404, "nearest kept steps: 5, 10"),
        ]
    for query, status, words in cases:
        got, body = _error(client, route, **query)
        assert got == status and words in body, (query, got, body)
        assert "<html" not in body.lower()


@pytest.mark.parametrize("kind", _params(False))
def test_every_series_route_wants_a_run(client, kind):
    routes = _routes(kind, None)
    for route in routes.handlers():
        got, body = _error(client, route)
        assert got == 400 and "missing query parameter 'run'" in body, (route, body)


# --- steps listing -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", _params(False))
def test_the_steps_listing_lists_every_kept_step_damaged_ones_too(client, kind):
    body = plugin_routes.get_json(client, f"{kind.name}_steps", run="alpha", tag=kind.name)
    assert body["run"] == "alpha" and body["tag"] == kind.name
    assert body["steps"] == ALL_STEPS
    assert body["wall_times"] == [1000.0 + s for s in ALL_STEPS]


# --- the damaged-step policy -------------------------------------------------------------------


@pytest.mark.parametrize("kind, route", _params(True))
def test_cross_only_routes_are_exactly_these(client, kind, route):
    assert _serves(client, route, kind.name) == (route not in CROSS_ONLY_ROUTES)


@pytest.mark.parametrize(
    "kind, route", [p for p in _params(True, within_layer=True) if "_steps" not in p.id]
)
def test_a_damaged_step_is_that_steps_error_and_the_rest_is_served(client, kind, route):
    for step, words in ((DAMAGED_STEP, "damaged step"), (EMPTY_STEP, "holds no blob")):
        body = plugin_routes.get_json(client, route, run="alpha", tag=kind.name, step=step)
        assert body["step"] == step and words in body["error"], body
        assert body["wall_time"] == 1000.0 + step
    for step in GOOD_STEPS:
        body = plugin_routes.get_json(client, route, run="alpha", tag=kind.name, step=step)
        assert body["step"] == step and body["error"] is None


@pytest.mark.parametrize("kind", _params(False))
def test_handlers_answer_data_without_http(provider, kind):
    routes = _routes(kind, provider)
    route = next(iter(routes.step_routes()))
    damaged = routes.handle(route, {"run": "alpha", "tag": kind.name, "step": DAMAGED_STEP})
    body = damaged.body if isinstance(damaged, blob_kind.Base64Json) else damaged
    assert body["step"] == DAMAGED_STEP and "damaged step" in body["error"]
    good = routes.handle(route, {"run": "alpha", "tag": kind.name, "step": 5})
    body = good.body if isinstance(good, blob_kind.Base64Json) else good
    assert body["step"] == 5 and body["error"] is None
    with pytest.raises(errors.NotFoundError, match="nearest kept steps: 5, 10"):
        routes.handle(route, {"run": "alpha", "tag": kind.name, "step": 6})


@pytest.mark.parametrize("kind", _params(False))
def test_a_damaged_step_is_decoded_once(logdir, kind):
    provider = CountingProvider(plugin_routes._provider(logdir))
    routes = _routes(kind, provider)
    route = next(iter(routes.step_routes()))
    for _ in range(3):
        routes.handle(route, {"run": "alpha", "tag": kind.name, "step": DAMAGED_STEP})
    assert provider.blob_reads == 1  # the damage is cached by blob key like a good step


# --- names the fast data server cannot read ----------------------------------------------------


class FastLoaderNames(CountingProvider):
    """Fails every blob read of a series whose run or tag holds '"', as tensorboard-data-server
    0.7.2 does (its `read_blob` error through TensorBoard's gRPC provider, as seen from a real
    `tensorboard --load_fast=true`)."""

    def read_blob(self, ctx, blob_key):
        # The multiplexer's blob keys: URL-safe base64 of [experiment, plugin, run, tag, step, i].
        padded = blob_key + "=" * (-len(blob_key) % 4)
        _, _, run, tag, _, _ = json.loads(base64.urlsafe_b64decode(padded))
        if '"' in run + tag:
            raise errors.InvalidArgumentError(
                'failed to parse blob key: BadJson(Error("invalid type: string '
                '\\"say \\\\\\"hi\\\\\\"\\", expected a borrowed string", line: 1, column: 18))'
            )
        return super().read_blob(ctx, blob_key=blob_key)


def test_the_fake_provider_fails_only_the_names_the_data_server_cannot_read(logdir):
    provider = FastLoaderNames(plugin_routes._provider(logdir))
    client = plugin_routes._client(provider, {})
    plugin_routes.get_json(client, "spectrum", run="alpha", tag="spectrum", step=5)
    status, _ = _error(client, "spectrum", run="alpha", tag=f"spectrum/{FAST_LOADER_TAG}")
    assert status == 400


@pytest.mark.parametrize("kind, route", _params(True, within_layer=True))
def test_a_name_the_fast_loader_cannot_read_is_a_400_saying_why_and_what_to_do(logdir, kind, route):
    client = plugin_routes._client(FastLoaderNames(plugin_routes._provider(logdir)), {})
    tag = f"{kind.name}/{FAST_LOADER_TAG}"
    status, body = _error(client, route, run="alpha", tag=tag, step=5)
    if route.endswith("_steps") and status == 200:
        return  # a listing that reads no blob lists the steps
    assert status == 400, body
    for words in ("contains '\"'", "--load_fast=false", "Rename the run or tag", "BadJson"):
        assert words in body, (words, body)


def test_a_failed_read_of_a_plain_name_is_not_blamed_on_the_name(logdir):
    class Failing(CountingProvider):
        def read_blob(self, ctx, blob_key):
            raise errors.InvalidArgumentError("the data server is unhappy")

    routes = _routes(kinds.by_name("spectrum"), Failing(plugin_routes._provider(logdir)))
    with pytest.raises(errors.InvalidArgumentError) as caught:
        routes.handle("spectrum", {"run": "alpha", "tag": "spectrum", "step": 5})
    assert "load_fast" not in str(caught.value)


@pytest.mark.parametrize(
    "name, char",
    [('a"b', '"'), ("back\\slash", "\\"), ("new\nline", "\n"), ("tab\tx", "\t"), ("c\x01", "\x01")]
    + [("plain/name é ✓", None), ("spaces and 'quotes'", None)],
)
def test_names_the_fast_data_server_cannot_read(name, char):
    assert blob_kind.unreadable_name_character(name) == char


# --- the shared caches -------------------------------------------------------------------------


def test_cache_drops_least_recently_used_beyond_its_budget():
    from deepscope.tb_plugin import spectrum_routes

    item = spectrum_routes.DecodedSpectrum(np.zeros((1, 100), np.float32), {}, "", 0.0)
    cache = blob_steps.LRUCache(3 * item.nbytes, weigh=lambda value: value.nbytes)
    for key in "abc":
        cache.put(key, item)
    assert cache.get("a") is item  # now most recently used
    cache.put("d", item)
    assert cache.get("b") is None and cache.get("a") is item and len(cache) == 3
    big = spectrum_routes.DecodedSpectrum(np.zeros((1, 1000), np.float32), {}, "", 0.0)
    cache.put("e", big)  # heavier than the budget alone: kept, everything else dropped
    assert cache.get("e") is big and len(cache) == 1
    counted = blob_steps.LRUCache(2)  # bounded by count
    for key in "xyz":
        counted.put(key, key)
    assert counted.get("x") is None and (counted.get("y"), counted.get("z")) == ("y", "z")


def test_a_listing_is_remembered_a_few_seconds_and_a_step_it_lacks_lists_again(logdir):
    from tensorboard import context

    provider = CountingProvider(plugin_routes._provider(logdir))
    now = [100.0]
    catalog = series.SeriesCatalog(provider)
    listings = blob_steps.StepListings(RouteContext(provider, catalog, 0), clock=lambda: now[0])
    ctx, tag = context.RequestContext(), "spectrum"
    assert [s.step for s in listings.list(ctx, "", "alpha", tag)] == ALL_STEPS
    assert provider.listings == 1
    listings.list(ctx, "", "alpha", tag, want=ALL_STEPS[1])
    now[0] += blob_steps.LISTING_SECONDS / 2
    listings.list(ctx, "", "alpha", tag)
    assert provider.listings == 1  # remembered, and it holds the step asked for
    listings.list(ctx, "", "alpha", tag, want=7)
    assert provider.listings == 2  # step 7 is not in it: listed again
    now[0] += blob_steps.LISTING_SECONDS
    listings.list(ctx, "", "alpha", tag)
    assert provider.listings == 3  # too old: listed again
    tags = [kind.name for kind in BLOB_KINDS]
    listing = listings.list_tags(ctx, "", "alpha", tags)  # several tags: one RPC
    assert provider.listings == 4 and all([s.step for s in listing[t]] == ALL_STEPS for t in tags)


# --- multi-step routes: the damaged step's entry carries the error ------------------------------


def test_spectrum_metrics_and_evolution_serve_the_rest_around_a_damaged_step(client):
    layers = plugin_routes.get_json(client, "spectrum_metrics", run="alpha")["layers"]
    layer = layers["spectrum"]
    assert layer["steps"] == ALL_STEPS
    assert [step for step, _ in layer["errors"]] == [DAMAGED_STEP, EMPTY_STEP]
    assert "damaged step" in layer["errors"][0][1] and "holds no blob" in layer["errors"][1][1]
    norms = layer["metrics"]["spectral_norm"]
    assert [norms[ALL_STEPS.index(s)] for s in (DAMAGED_STEP, EMPTY_STEP)] == ["NaN", "NaN"]
    assert all(norms[ALL_STEPS.index(s)] == pytest.approx(3.0) for s in GOOD_STEPS)
    evolution = plugin_routes.get_json(client, "spectrum_evolution", run="alpha", tag="spectrum")
    assert [step for step, _ in evolution["errors"]] == [DAMAGED_STEP, EMPTY_STEP]
    from tests.route_helpers import decode

    values = decode(evolution["values"])
    rows = {s: values[ALL_STEPS.index(s)] for s in ALL_STEPS}
    assert np.isnan(rows[DAMAGED_STEP]).all() and np.isnan(rows[EMPTY_STEP]).all()
    for step in GOOD_STEPS:
        np.testing.assert_array_equal(rows[step], [3.0, 2.0, 0.5])


def test_spectrum_metrics_mark_each_step_of_a_name_the_fast_loader_cannot_read(logdir):
    client = plugin_routes._client(FastLoaderNames(plugin_routes._provider(logdir)), {})
    layers = plugin_routes.get_json(client, "spectrum_metrics", run="alpha")["layers"]
    unreadable = layers[f"spectrum/{FAST_LOADER_TAG}"]
    assert [step for step, _ in unreadable["errors"]] == ALL_STEPS  # each step says why
    for step, error in unreadable["errors"]:
        if step != EMPTY_STEP:
            assert error.startswith("cannot read the steps of tag") and "--load_fast=false" in error
    assert [step for step, _ in layers["spectrum"]["errors"]] == [DAMAGED_STEP, EMPTY_STEP]


def test_a_flipped_byte_in_a_correlation_matrix_is_that_steps_error(client):
    body = plugin_routes.get_json(client, "correlation_matrix", run="flip", tag="c", step=1)
    assert "|ρ| = 32768, beyond 1" in body["error"] and "values" not in body
    good = plugin_routes.get_json(client, "correlation_matrix", run="flip", tag="c", step=0)
    assert good["error"] is None


def test_saliency_steps_say_when_the_newest_step_is_damaged(provider):
    routes = _routes(kinds.by_name("saliency"), provider)
    query = blob_kind.Query.of({})
    series_ = routes.find(query, "alpha", "saliency")
    steps = routes.list_steps(series_)
    newest_damaged = [s for s in steps if s.step <= DAMAGED_STEP]
    extra = routes.steps_extra(series_, newest_damaged)
    assert extra["num_samples"] == 0 and extra["labels"] is None
    assert [step for step, _ in extra["errors"]] == [DAMAGED_STEP]
    good = routes.steps_extra(series_, steps)
    assert good == {"num_samples": 2, "labels": [1, 0], "errors": []}


@pytest.mark.parametrize("kind", _params(False))
def test_fuzzed_payloads_never_answer_5xx(client, kind):
    """Every one-step route over every fuzzed step: a 200 (the step or its error) or a 4xx
    about the request, never a 5xx; the multi-step routes serve the whole series."""
    count = len(fuzzed_payloads(kind))
    routes = [*_one_step_routes(kind), f"{kind.name}_steps"]
    for route in routes:
        for step in range(count):
            status, text = _error(client, route, run="fuzz", tag=kind.name, step=step)
            assert status < 500, (route, step, text)
            if status == 200 and not route.endswith("_steps"):
                error = json.loads(text)["error"]
                assert error is None or isinstance(error, str)
            elif status != 200:
                assert "cross-network series only" in text, (route, step, text)
    if kind.name == "spectrum":
        layer = plugin_routes.get_json(client, "spectrum_metrics", run="fuzz")["layers"]["spectrum"]
        assert len(layer["steps"]) == count and layer["errors"]
        evolution = plugin_routes.get_json(client, "spectrum_evolution", run="fuzz", tag="spectrum")
        assert len(evolution["steps"]) == count
