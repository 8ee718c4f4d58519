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
texts travel as JSON lists. Documented in docs/http_api.md. Decoded steps are
cached by blob key, and step listings remembered, as `blob_steps` says.
"""

from __future__ import annotations

import numpy as np
import werkzeug
from tensorboard import errors, plugin_util

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import blob_steps, responses
from deepscope.tb_plugin.route_context import RouteContext

KIND = "saliency"
# Samples sent when the request names none.
DEFAULT_SAMPLES = 16
# Bounds of one response: at most this many samples, and this many bytes of float16 arrays.
MAX_SAMPLES = 64
MAX_ARRAY_BYTES = 16 * 2**20
# Decoded steps remembered (blob keys are immutable, so a cached step never goes stale).
CACHED_STEPS = 32

_STEPS_EXAMPLE = "saliency_steps?run=RUN&tag=TAG"
_MAPS_EXAMPLE = "saliency?run=RUN&tag=TAG&step=STEP&samples=0-7"


class SaliencyRoutes:
    """Routes serving saliency series: `/saliency_steps` and `/saliency`."""

    def __init__(self, context: RouteContext):
        self._context = context
        self._cache = blob_steps.LRUCache(CACHED_STEPS)
        self._listings = blob_steps.StepListings(context)

    def apps(self) -> dict:
        return {"/saliency_steps": self._serve_steps, "/saliency": self._serve_maps}

    # ------------------------------------------------------------------ routes

    @werkzeug.wrappers.Request.application
    def _serve_steps(self, request):
        run = responses.required_arg(request, "run", _STEPS_EXAMPLE)
        tag = responses.required_arg(request, "tag", _STEPS_EXAMPLE)
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        info = self._context.catalog.find(ctx, experiment, run, tag, KIND).saliency
        steps = self._listings.list(ctx, experiment, run, tag)
        body = {
            "run": run,
            "tag": tag,
            "method": info.method,
            "input_shape": [int(n) for n in info.input_shape],
            "input_kind": info.input_kind,
            "token_reduction": info.token_reduction,
            "steps": [s.step for s in steps],
            "wall_times": [s.wall_time for s in steps],
            "num_samples": 0,
            "labels": None,
        }
        if steps:
            # The probe is fixed over a run: the newest step tells how many samples it has.
            last = self._read_step(ctx, steps[-1], run, tag)
            body["num_samples"] = _num_samples(last)
            labels = _decode(last.labels, "labels", steps[-1].step)
            body["labels"] = labels.astype(np.int64).tolist() if labels is not None else None
        return responses.respond_json(request, body)

    @werkzeug.wrappers.Request.application
    def _serve_maps(self, request):
        run = responses.required_arg(request, "run", _MAPS_EXAMPLE)
        tag = responses.required_arg(request, "tag", _MAPS_EXAMPLE)
        step_arg = responses.int_arg(request, "step", default=None)
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        info = self._context.catalog.find(ctx, experiment, run, tag, KIND).saliency
        steps = self._listings.list(ctx, experiment, run, tag, want=step_arg)
        chosen = blob_steps.find_step(steps, step_arg, run, tag)
        try:
            message = self._read_step(ctx, chosen, run, tag)
        except errors.PublicError:
            raise
        except Exception:  # gone since it was listed (downsampled, rewritten): list anew
            steps = self._listings.list_tags(ctx, experiment, run, [tag], fresh=True)[tag]
            chosen = blob_steps.find_step(steps, step_arg, run, tag)
            message = self._read_step(ctx, chosen, run, tag)
        body, data = saliency_body(message, request.args.get("samples"), chosen.step)
        body = {
            "run": run,
            "tag": tag,
            "step": chosen.step,
            "wall_time": chosen.wall_time,
            "method": info.method,
            "input_kind": info.input_kind,
            "token_reduction": info.token_reduction,
            **body,
        }
        return responses.respond_base64_json(request, body, data)

    # ------------------------------------------------------------------ reading

    def _read_step(self, ctx, blob_step: blob_steps.BlobStep, run: str, tag: str):
        cached = self._cache.get(blob_step.blob_keys[0]) if blob_step.blob_keys else None
        if cached is not None:
            return cached
        raw = blob_steps.read_blob(self._context.data_provider, ctx, blob_step)
        try:
            message = pb.SaliencyStep.FromString(raw)
        except Exception as error:  # a DecodeError: the blob is not a SaliencyStep
            raise errors.InvalidArgumentError(
                f"step {blob_step.step} of tag {tag!r} of run {run!r} is not a readable "
                f"saliency step ({error}); was it written by deepscope's add_saliency?"
            ) from None
        self._cache.put(blob_step.blob_keys[0], message)
        return message


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
                        f"samples {part} asks for more than {MAX_SAMPLES} samples; ask for fewer"
                    )
                indices = range(lo, hi + 1)
            else:
                indices = range(int(part), int(part) + 1)
        except ValueError:
            raise errors.InvalidArgumentError(
                f"samples must be indices and ranges like 0,3,5-9, got {text!r}"
            ) from None
        for index in indices:
            if not 0 <= index < count:
                raise errors.InvalidArgumentError(
                    f"sample {index} is out of range: this step has {count} samples "
                    f"(0 to {count - 1})"
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
    message: pb.SaliencyStep, samples_text: str | None, step: int
) -> tuple[dict, dict[str, bytes]]:
    """One step's response: a JSON head and little-endian bytes for each array slot.

    Arrays are cut to the chosen samples (a baseline of one input, shared by all
    samples, is sent once). `non_finite_per_sample[k]` counts NaN/±Inf among the
    maps (and baseline maps) of sample k as stored, so the tab can refuse to draw them.
    Token series (inputs stored as INT64 token ids [N, L]) send the ids as JSON
    `token_ids` [[...]] and the texts as `token_texts` [[...]] (null when not
    logged) instead of an `inputs` array; their maps are [N, L].
    """
    maps = _decode(message.maps, "maps", step)
    inputs = _decode(message.inputs, "inputs", step)
    if maps is None or inputs is None:
        raise errors.InvalidArgumentError(f"step {step} holds no maps or no inputs")
    if maps.shape != inputs.shape:
        raise errors.InvalidArgumentError(
            f"step {step}: maps of shape {list(maps.shape)} do not match inputs of shape "
            f"{list(inputs.shape)}"
        )
    count = maps.shape[0]
    chosen = parse_samples(samples_text, count)
    take = np.asarray(chosen, dtype=np.int64)
    tokens = message.inputs.dtype in (pb.INT64, pb.INT32)
    token_ids = token_texts = None
    if tokens:
        if inputs.ndim != 2:
            raise errors.InvalidArgumentError(
                f"step {step}: token ids must be [N, L], got shape {list(inputs.shape)}"
            )
        token_ids = inputs[take].astype(np.int64).tolist()
        if message.token_texts:
            if len(message.token_texts) != inputs.size:
                raise errors.InvalidArgumentError(
                    f"step {step}: {len(message.token_texts)} token texts for "
                    f"{inputs.shape[0]} × {inputs.shape[1]} token ids"
                )
            length = inputs.shape[1]
            texts = list(message.token_texts)
            token_texts = [texts[k * length : (k + 1) * length] for k in chosen]
    elif message.token_texts:
        raise errors.InvalidArgumentError(
            f"step {step}: token texts stored with {inputs.dtype} inputs, which are not token ids"
        )
    labels = _decode(message.labels, "labels", step)
    predictions = _decode(message.predictions, "predictions", step)
    completeness = _decode(message.completeness_error, "completeness_error", step)
    baseline = _decode(message.baseline, "baseline", step)
    baseline_maps = _decode(message.baseline_maps, "baseline_maps", step)

    data: dict[str, bytes] = {}
    head: dict = {
        "input_shape": list(maps.shape[1:]),
        "num_samples": count,
        "samples": chosen,
        "labels": _pick_ints(labels, take, count),
        "predictions": _pick_ints(predictions, take, count),
        "completeness_error": None,
        "non_finite": int(message.non_finite),
        "token_ids": token_ids,
        "token_texts": token_texts,
    }
    if completeness is not None and completeness.size == count:
        head["completeness_error"] = responses.json_numbers(completeness.reshape(-1)[take])
    bad = ~np.isfinite(maps[take].reshape(len(chosen), -1))
    per_sample = bad.sum(axis=1)
    slots = {"maps": maps[take]} if tokens else {"inputs": inputs[take], "maps": maps[take]}
    if tokens:
        head["inputs"] = None
    for name, array in (("baseline", baseline), ("baseline_maps", baseline_maps)):
        if array is None:
            head[name] = None
            continue
        if array.shape[1:] != maps.shape[1:] or array.shape[0] not in (1, count):
            raise errors.InvalidArgumentError(
                f"step {step}: {name} of shape {list(array.shape)} does not fit inputs of "
                f"shape {list(maps.shape)} (expected [1 or {count}, ...])"
            )
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


def _num_samples(message: pb.SaliencyStep) -> int:
    shape = list(message.maps.shape) or list(message.inputs.shape)
    return int(shape[0]) if shape else 0


def _decode(array: pb.Array, name: str, step: int) -> np.ndarray | None:
    """A stored array as float32/int64 numpy, or None when absent (empty)."""
    if not array.shape and not array.data:
        return None
    try:
        values = arrays.decode_array(array)
    except ValueError as error:
        raise errors.InvalidArgumentError(f"step {step}: {name} is malformed ({error})") from None
    if values.size == 0:
        return None
    return values


def _pick_ints(values: np.ndarray | None, take: np.ndarray, count: int) -> list[int] | None:
    if values is None or values.size != count:
        return None
    return values.reshape(-1)[take].astype(np.int64).tolist()
