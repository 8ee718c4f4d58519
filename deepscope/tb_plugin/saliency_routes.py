"""The saliency routes: the steps of a saliency series, and one step's maps.

A saliency series (one tag per attribution method, e.g. "saliency/gradient")
holds, at each logged step, the maps of a fixed set of probe inputs. Each step
is a blob sequence whose first blob is a `SaliencyStep`: inputs and maps as
float16 [N, ...input_shape], labels and predictions, for baseline-subtracted
methods the baseline and its maps, for integrated gradients the completeness
error. Arrays travel to the browser as the stored bytes (float16, or float32
where the writer kept it) in base64, so a step of 16 MNIST digits costs about
70 kB. Token series (text models: `SaliencyInfo.input_kind` "tokens") store
token ids INT64 [N, L] and one map value per token; the ids and the token
texts travel as JSON lists. Documented in docs/http_api.md.

Arguments, the steps listing, decoding and caching (by blob key) and the
damaged-step policy come from `blob_kind.BlobKindRoutes`. A step is validated
when decoded (`decode_saliency_step`); one that fails is answered with 200 and
its `error`, and `saliency_steps` lists the newest step's in `errors`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tensorboard import errors

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import blob_kind, blob_steps, responses
from deepscope.tb_plugin.blob_kind import Base64Json, Damaged, Query, Series, Step, StepError

KIND = "saliency"
# Samples sent when the request names none.
DEFAULT_SAMPLES = 16
# Bounds of one response: at most this many samples, and this many bytes of float16 arrays.
MAX_SAMPLES = 64
MAX_ARRAY_BYTES = 16 * 2**20
# Decoded steps remembered (blob keys are immutable, so a cached step never goes stale).
CACHED_STEPS = 32


@dataclasses.dataclass(frozen=True)
class DecodedSaliency:
    """A decoded, validated `SaliencyStep`: N probe samples.

    `inputs` and `maps` are [N, ...input_shape] (float16 or float32 as stored),
    token series' inputs int64 token ids [N, L]; `labels`, `predictions` int64
    [N], `completeness_error` [N]; `baseline` and `baseline_maps` [1 or N, ...];
    each None when not logged.
    """

    inputs: np.ndarray
    maps: np.ndarray
    tokens: bool
    token_texts: list[str] | None
    labels: np.ndarray | None
    predictions: np.ndarray | None
    completeness_error: np.ndarray | None
    baseline: np.ndarray | None
    baseline_maps: np.ndarray | None
    non_finite: int

    @property
    def num_samples(self) -> int:
        return int(self.maps.shape[0])


def decode_saliency_step(data: bytes, info: pb.SaliencyInfo) -> DecodedSaliency:
    """Decode and validate a `SaliencyStep` blob.

    Raises:
      StepError: not a SaliencyStep; no maps or inputs, 0-d ones, or shapes that
        differ from each other or from the series' `input_shape`; token ids not
        [N, L], token texts that do not match them; labels, predictions or
        completeness errors not one per sample, negative class indices; a
        baseline that does not fit.
    """
    try:
        message = pb.SaliencyStep.FromString(data)
    except Exception as error:  # a DecodeError: the blob is not a SaliencyStep
        raise StepError(
            f"not a readable saliency step ({responses.cap(str(error))}); was it written by "
            "deepscope's add_saliency?"
        ) from None
    maps = _decode(message.maps, "maps")
    inputs = _decode(message.inputs, "inputs")
    if maps is None or inputs is None:
        raise StepError("the step holds no maps or no inputs")
    if maps.ndim == 0 or inputs.ndim == 0:
        raise StepError(
            f"maps of shape {list(maps.shape)} and inputs of shape {list(inputs.shape)}: "
            "both must be [samples, ...]"
        )
    if maps.shape != inputs.shape:
        raise StepError(
            f"maps of shape {list(maps.shape)} do not match inputs of shape {list(inputs.shape)}"
        )
    input_shape = [int(n) for n in info.input_shape]
    if input_shape and list(maps.shape[1:]) != input_shape:
        raise StepError(
            f"maps of shape {list(maps.shape)}, but the series' samples are {input_shape} "
            "(a restarted run with another probe? log it under a new tag)"
        )
    count = maps.shape[0]
    tokens = message.inputs.dtype in (pb.INT64, pb.INT32)
    token_texts = None
    if tokens:
        if inputs.ndim != 2:
            raise StepError(f"token ids must be [N, L], got shape {list(inputs.shape)}")
        inputs = inputs.astype(np.int64)
        if message.token_texts:
            if len(message.token_texts) != inputs.size:
                raise StepError(
                    f"{len(message.token_texts)} token texts for "
                    f"{inputs.shape[0]} × {inputs.shape[1]} token ids"
                )
            token_texts = list(message.token_texts)
    elif message.token_texts:
        raise StepError(f"token texts stored with {inputs.dtype} inputs, which are not token ids")
    per_sample = {}
    for name in ("labels", "predictions", "completeness_error"):
        values = _decode(getattr(message, name), name)
        if values is not None and values.size != count:
            raise StepError(f"{name} holds {values.size} values for {count} samples")
        if values is not None and name != "completeness_error":
            if not np.issubdtype(values.dtype, np.integer):
                raise StepError(f"{name} are {values.dtype}, not class indices")
            values = values.reshape(-1).astype(np.int64)
            if values.size and values.min() < 0:
                raise StepError(f"{name} hold negative class indices ({int(values.min())})")
        per_sample[name] = None if values is None else values.reshape(-1)
    extras = {}
    for name in ("baseline", "baseline_maps"):
        array = _decode(getattr(message, name), name)
        if array is not None and (
            array.ndim != maps.ndim
            or array.shape[1:] != maps.shape[1:]
            or array.shape[0] not in (1, count)
        ):
            raise StepError(
                f"{name} of shape {list(array.shape)} does not fit inputs of "
                f"shape {list(maps.shape)} (expected [1 or {count}, ...])"
            )
        extras[name] = array
    return DecodedSaliency(
        inputs=inputs,
        maps=maps,
        tokens=tokens,
        token_texts=token_texts,
        labels=per_sample["labels"],
        predictions=per_sample["predictions"],
        completeness_error=per_sample["completeness_error"],
        baseline=extras["baseline"],
        baseline_maps=extras["baseline_maps"],
        non_finite=int(message.non_finite),
    )


class SaliencyRoutes(blob_kind.BlobKindRoutes):
    """Routes serving saliency series: `/saliency_steps` and `/saliency`."""

    KIND = KIND
    CACHE_CAPACITY = CACHED_STEPS

    def decode(self, data: bytes, info: pb.SaliencyInfo) -> DecodedSaliency:
        return decode_saliency_step(data, info)

    def series_facts(self, series: Series) -> dict:
        info = series.info
        return {
            "method": info.method,
            "input_shape": [int(n) for n in info.input_shape],
            "input_kind": info.input_kind,
            "token_reduction": info.token_reduction,
        }

    def example(self, route: str) -> str:
        if route == "saliency":
            return "saliency?run=RUN&tag=TAG&step=STEP&samples=0-7"
        return super().example(route)

    def steps_extra(self, series: Series, steps: list[blob_steps.BlobStep]) -> dict:
        """The probe's size and labels, from the newest step (the probe is fixed over a run)."""
        extra: dict = {"num_samples": 0, "labels": None, "errors": []}
        if steps:
            newest = self.read(series, steps[-1])
            if isinstance(newest, Damaged):
                extra["errors"] = [[steps[-1].step, newest.error]]
            else:
                extra["num_samples"] = newest.num_samples
                labels = newest.labels
                extra["labels"] = labels.tolist() if labels is not None else None
        return extra

    def step_routes(self) -> dict:
        return {"saliency": self.maps}

    def maps(self, series: Series, step: Step, query: Query) -> Base64Json:
        """One step's inputs and maps for the chosen samples (`saliency`)."""
        head, data = saliency_body(step.decoded, query.args.get("samples"))
        info = series.info
        body = {
            "method": info.method,
            "input_kind": info.input_kind,
            "token_reduction": info.token_reduction,
            **head,
        }
        return Base64Json(body, data)


def parse_samples(text: str | None, count: int) -> list[int]:
    """Sample indices from `samples=` ("0,3,5-9"); the first DEFAULT_SAMPLES when absent.

    Raises:
      errors.InvalidArgumentError: malformed, out of range, or more than MAX_SAMPLES.
    """
    if text is None or text.strip() == "":
        return list(range(min(count, DEFAULT_SAMPLES)))
    chosen: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo_text, hi_text = part.split("-", 1)
                lo, hi = int(lo_text), int(hi_text)
                if hi < lo:
                    raise ValueError
                if hi - lo >= MAX_SAMPLES:
                    raise errors.InvalidArgumentError(
                        f"samples {responses.cap(part)} asks for more than {MAX_SAMPLES} "
                        "samples; ask for fewer"
                    )
                indices = range(lo, hi + 1)
            else:
                indices = range(int(part), int(part) + 1)
        except ValueError:
            raise errors.InvalidArgumentError(
                f"samples must be indices and ranges like 0,3,5-9, got {responses.echo(text)}"
            ) from None
        for index in indices:
            if not 0 <= index < count:
                raise errors.InvalidArgumentError(
                    f"sample {responses.cap(str(index))} is out of range: this step has "
                    f"{count} samples (0 to {count - 1})"
                )
            if index not in chosen:
                chosen.append(index)
        if len(chosen) > MAX_SAMPLES:
            raise errors.InvalidArgumentError(
                f"at most {MAX_SAMPLES} samples per request, asked for {len(chosen)}+; "
                "ask for fewer (e.g. samples=0-15)"
            )
    return chosen


def saliency_body(
    decoded: DecodedSaliency, samples_text: str | None
) -> tuple[dict, dict[str, bytes]]:
    """One step's response: a JSON head and little-endian bytes for each array slot.

    Arrays are cut to the chosen samples (a baseline of one input, shared by all
    samples, is sent once). `non_finite_per_sample[k]` counts NaN/±Inf among the
    maps (and baseline maps) of sample k as stored, so the tab can refuse to draw them.
    Token series (inputs stored as INT64 token ids [N, L]) send the ids as JSON
    `token_ids` [[...]] and the texts as `token_texts` [[...]] (null when not
    logged) instead of an `inputs` array; their maps are [N, L].
    """
    maps, inputs, count = decoded.maps, decoded.inputs, decoded.num_samples
    chosen = parse_samples(samples_text, count)
    take = np.asarray(chosen, dtype=np.int64)
    token_ids = token_texts = None
    if decoded.tokens:
        token_ids = inputs[take].tolist()
        if decoded.token_texts is not None:
            length = inputs.shape[1]
            texts = decoded.token_texts
            token_texts = [texts[k * length : (k + 1) * length] for k in chosen]

    def pick(values: np.ndarray | None) -> list[int] | None:
        return None if values is None else values[take].tolist()

    data: dict[str, bytes] = {}
    head: dict = {
        "input_shape": list(maps.shape[1:]),
        "num_samples": count,
        "samples": chosen,
        "labels": pick(decoded.labels),
        "predictions": pick(decoded.predictions),
        "completeness_error": None,
        "non_finite": decoded.non_finite,
        "token_ids": token_ids,
        "token_texts": token_texts,
    }
    if decoded.completeness_error is not None:
        head["completeness_error"] = responses.json_numbers(decoded.completeness_error[take])
    bad = ~np.isfinite(maps[take].reshape(len(chosen), -1))
    per_sample = bad.sum(axis=1)
    slots = {"maps": maps[take]} if decoded.tokens else {"inputs": inputs[take], "maps": maps[take]}
    if decoded.tokens:
        head["inputs"] = None
    for name in ("baseline", "baseline_maps"):
        array = getattr(decoded, name)
        if array is None:
            head[name] = None
            continue
        slots[name] = array if array.shape[0] == 1 else array[take]
        if name == "baseline_maps":
            extra = ~np.isfinite(slots[name].reshape(slots[name].shape[0], -1))
            per_sample = per_sample + extra.sum(axis=1)  # shape [1] broadcasts
    head["non_finite_per_sample"] = [int(n) for n in np.broadcast_to(per_sample, (len(chosen),))]
    # float16 as stored; a writer keeps float32 where float16 would overflow or underflow.
    slots = {
        name: array if array.dtype == np.float16 else array.astype(np.float32)
        for name, array in slots.items()
    }
    total = sum(a.nbytes for a in slots.values())
    if total > MAX_ARRAY_BYTES:
        raise errors.InvalidArgumentError(
            f"{len(chosen)} samples of shape {list(maps.shape[1:])} make {total / 2**20:.1f} MiB, "
            f"more than one response sends ({MAX_ARRAY_BYTES / 2**20:.0f} MiB): ask for fewer "
            "samples (samples=0-3)"
        )
    for name, array in slots.items():
        little = array.dtype.newbyteorder("<")
        head[name] = {"dtype": str(array.dtype), "shape": list(array.shape), "base64": ""}
        data[name] = np.ascontiguousarray(array, dtype=little).tobytes()
    return head, data


def _decode(array: pb.Array, name: str) -> np.ndarray | None:
    """A stored array as numpy, or None when absent (empty); StepError when malformed."""
    if not array.shape and not array.data:
        return None
    try:
        values = arrays.decode_array(array)
    except ValueError as error:
        raise StepError(f"{name} is malformed ({error})") from None
    if values.size == 0:
        return None
    return values
