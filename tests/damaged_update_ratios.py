"""Hand-written update-ratio events, one damaged event per tag, for unit and served tests.

Each tag of `write_damaged_update_ratios(run_dir)` holds a good event at step 0,
a damaged one at `BAD_STEP`, a good one at step 80 (`GOOD`); `CASES` says, per
tag, what the warning must say about the damaged one. Also: a restarted run with
other names (`restarted`, `restarted_longer`), metadata with no names
(`nameless`), a good and a damaged event at one step (`twice_at_one_step`), and
seven damaged events in a row (`many`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from deepscope.proto import deepscope_pb2 as pb
from tests.event_files import (
    float_tensor,
    ratios_step,
    string_tensor,
    update_ratios_metadata,
    write_events,
)

NAMES = ["w", "b", "c", "d"]
GOOD = {0: [1e-3, 2e-3, 3e-3, 4e-3], 80: [5e-3, 6e-3, 7e-3, 8e-3]}
BAD_STEP = 40


def _good(step: int) -> bytes:
    return ratios_step(GOOD[step], crc_names=NAMES).SerializeToString()


def _array(dtype: int, data: bytes, shape: list[int]) -> pb.Array:
    return pb.Array(dtype=dtype, data=data, shape=shape)


def _step(ratios: pb.Array, **fields) -> bytes:
    return pb.UpdateRatiosStep(ratios=ratios, **fields).SerializeToString()


FOUR = np.float32([0.1, 0.2, 0.3, 0.4]).tobytes()
# tag: (the damaged event's tensor, what its warning must say after "step 40: ")
CASES = {
    "garbage": (string_tensor(b"\xff\xff\xff not a message"), "the payload does not parse"),
    "float_tensor": (
        float_tensor([0.1, 0.2, 0.3, 0.4]),
        "the payload is a float32 tensor of shape [4], not a serialized UpdateRatiosStep",
    ),
    "string_vector": (
        string_tensor(_good(0), _good(0)),
        "the payload is a string tensor of shape [2], not one serialized UpdateRatiosStep",
    ),
    "short_payload": (
        string_tensor(ratios_step([0.1, 0.2, 0.3], crc_names=NAMES).SerializeToString()),
        "12 bytes of ratios for 4 parameters × 1 step (expected 16)",
    ),
    "short_payload_without_crc": (
        string_tensor(ratios_step([0.1, 0.2, 0.3]).SerializeToString()),
        "12 bytes of ratios for 4 parameters × 1 step (expected 16)",
    ),
    "short_block": (
        string_tensor(
            ratios_step(
                np.zeros((2, 3)), crc_names=NAMES, steps=[39, 40], wall_times=[1.0, 2.0]
            ).SerializeToString()
        ),
        "24 bytes of ratios for 4 parameters × 2 steps (expected 32)",
    ),
    "own_names_short": (
        string_tensor(ratios_step([0.1, 0.2, 0.3], names=["x", "y"]).SerializeToString()),
        "12 bytes of ratios for 2 parameters × 1 step (expected 8)",
    ),
    "shape_disagrees": (
        string_tensor(_step(_array(pb.FLOAT32, FOUR, [2, 3]))),
        "ratios of shape [2, 3] for 4 parameters × 1 step",
    ),
    "float64": (
        string_tensor(_step(_array(pb.FLOAT64, FOUR * 2, [4]))),
        "ratios of dtype FLOAT64, not FLOAT32",
    ),
    "unknown_dtype": (
        string_tensor(_step(_array(42, FOUR, [4]))),
        "ratios of dtype unknown dtype 42, not FLOAT32",
    ),
    "no_update_out_of_range": (
        string_tensor(_step(_array(pb.FLOAT32, FOUR, [4]), no_update=[9])),
        "no-update mark 9 outside the event's 4 values",
    ),
    "zero_weight_out_of_range": (
        string_tensor(_step(_array(pb.FLOAT32, FOUR, [4]), zero_weight=[1, 4])),
        "zero-weight mark 4 outside the event's 4 values",
    ),
    "marked_twice": (
        string_tensor(_step(_array(pb.FLOAT32, FOUR, [4]), no_update=[1], zero_weight=[1])),
        "value 1 is marked both no-update and zero-weight",
    ),
    "steps_without_wall_times": (
        string_tensor(
            ratios_step(np.zeros((2, 4)), steps=[39, 40], wall_times=[1.0]).SerializeToString()
        ),
        "2 steps but 1 wall time",
    ),
    "nan_wall_time": (
        string_tensor(
            ratios_step(np.zeros((1, 4)), steps=[40], wall_times=[math.nan]).SerializeToString()
        ),
        "wall time nan is not a number of seconds",
    ),
    "negative": (
        string_tensor(ratios_step([0.1, -0.2, 0.3, 0.4], crc_names=NAMES).SerializeToString()),
        "ratio -0.2 of parameter 'b' is negative",
    ),
    "negative_in_a_block": (  # the whole block goes: its rows are one event
        string_tensor(
            ratios_step(
                [[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, -3e-3, 0.4]],
                crc_names=NAMES,
                steps=[39, 40],
                wall_times=[139.0, 140.0],
            ).SerializeToString()
        ),
        "ratio -0.003 of parameter 'c' is negative",
    ),
    "names_twice": (
        string_tensor(ratios_step([0.1, 0.2], names=["x", "x"]).SerializeToString()),
        "parameter name 'x' appears twice",
    ),
}


def write_damaged_update_ratios(run_dir: Path) -> None:
    """Write every tag described above to one event file in `run_dir`."""
    events = []
    for tag, (tensor, _) in CASES.items():
        events += [
            (tag, 0, 100.0, string_tensor(_good(0)), update_ratios_metadata(NAMES)),
            (tag, BAD_STEP, 140.0, tensor, None),
            (tag, 80, 180.0, string_tensor(_good(80)), None),
        ]
    # A restarted run with other names (the names' CRC differs): the names warning.
    restarted = ratios_step([0.1, 0.2, 0.3, 0.4], crc_names=["w", "b", "c", "e"])
    restarted_longer = ratios_step([0.1, 0.2, 0.3, 0.4, 0.5], crc_names=["w", "b", "c", "d", "e"])
    for tag, step in (("restarted", restarted), ("restarted_longer", restarted_longer)):
        events += [
            (tag, 0, 100.0, string_tensor(_good(0)), update_ratios_metadata(NAMES)),
            (tag, BAD_STEP, 140.0, string_tensor(step.SerializeToString()), None),
            (tag, 80, 180.0, string_tensor(_good(80)), None),
        ]
    # Metadata listing no names, and an event that names none either.
    named = ratios_step([0.5], names=["x"]).SerializeToString()
    events += [
        ("nameless", 0, 100.0, string_tensor(named), update_ratios_metadata([])),
        ("nameless", BAD_STEP, 140.0, string_tensor(ratios_step([]).SerializeToString()), None),
        ("nameless", 80, 180.0, string_tensor(named), None),
    ]
    # Two events at step 40 (a restarted writer's), one with a negative ratio: only it goes.
    tag = "twice_at_one_step"
    events += [
        (tag, 0, 100.0, string_tensor(_good(0)), update_ratios_metadata(NAMES)),
        (tag, BAD_STEP, 140.0, string_tensor(_good(80)), None),
        (tag, BAD_STEP, 141.0, CASES["negative"][0], None),
    ]
    # Seven damaged events in a row: the warning spells out five and counts the rest.
    events.append(("many", 0, 100.0, string_tensor(_good(0)), update_ratios_metadata(NAMES)))
    for k in range(7):
        events.append(("many", 10 + k, 110.0 + k, string_tensor(b"\xff" * (k + 1)), None))
    write_events(run_dir, events)
