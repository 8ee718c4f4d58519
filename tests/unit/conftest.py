"""Helpers shared by the unit tests: reading back what a writer put in its event files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest


@dataclasses.dataclass
class WrittenValue:
    """One summary value as it lies in an event file (no TensorBoard migration applied)."""

    step: int
    wall_time: float
    tag: str
    value: object  # summary_pb2.Summary.Value
    file: Path

    @property
    def has_metadata(self) -> bool:
        return self.value.HasField("metadata")

    def update_ratios_step(self):
        from deepscope.proto import deepscope_pb2 as pb

        return pb.UpdateRatiosStep.FromString(self.value.tensor.string_val[0])


def _read_values(logdir) -> list[WrittenValue]:
    """Every summary value of every event file under `logdir`, in file then write order."""
    from tensorboard.backend.event_processing import event_file_loader

    found = []
    for path in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        for event in event_file_loader.LegacyEventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                found.append(WrittenValue(event.step, event.wall_time, value.tag, value, path))
    return found


@pytest.fixture
def read_values():
    """read_values(logdir, tag=None) → [WrittenValue], optionally only those of one tag."""

    def read(logdir, tag: str | None = None) -> list[WrittenValue]:
        values = _read_values(logdir)
        return values if tag is None else [v for v in values if v.tag == tag]

    return read


@pytest.fixture
def decode_ratios():
    """decode_ratios(WrittenValue) → (float32 ratios, no_update indices, step's own names)."""
    from deepscope.proto import arrays

    def decode(written: WrittenValue):
        step = written.update_ratios_step()
        return arrays.decode_array(step.ratios), list(step.no_update), list(step.names)

    return decode
