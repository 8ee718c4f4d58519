"""Reading logged update ratios back from event files, block rows unrolled."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from deepscope import metadata
from deepscope.proto import arrays
from deepscope.writer.update_ratios import ZERO_WEIGHT


@dataclasses.dataclass
class UpdateRatioLog:
    """One update-ratio series as written: one row per measured step, in write order."""

    names: list[str]  # from the series' metadata
    rows: list[tuple[int, dict]]  # (global step, {name: float ratio, None or ZERO_WEIGHT})
    raw: np.ndarray  # [rows, names], the ratios as stored (marks not applied)
    files: list[Path]  # the event file of each row


def read_update_ratios(
    read_values, logdir, tag: str = "update_ratios", *, strict: bool = False
) -> UpdateRatioLog:
    """The series `tag` under `logdir`, read with the `read_values` fixture.

    `None` marks no update, `ZERO_WEIGHT` a zero weight. `strict` also asserts
    how watch() writes: metadata on the first value, no per-step names, one step
    and wall time per block row, the event filed under its last row's step, no
    cell marked twice, and NaN stored under each zero-weight mark.
    """
    written = read_values(logdir, tag)
    if not written:
        return UpdateRatioLog([], [], np.empty((0, 0), np.float32), [])
    if strict:
        assert written[0].has_metadata
    names = list(
        metadata.parse_plugin_data(
            written[0].value.metadata.plugin_data.content
        ).update_ratios.names
    )
    rows, blocks, files = [], [], []
    for value in written:
        step = value.update_ratios_step()
        ratios = arrays.decode_array(step.ratios)
        rows_steps = list(step.steps) or [value.step]
        no_update, zero_weight = set(step.no_update), set(step.zero_weight)
        if strict:
            assert list(step.names) == []  # watch() logs the same names every step
            assert ratios.shape == (len(rows_steps), len(names))
            assert len(step.wall_times) == len(step.steps)
            assert value.step == rows_steps[-1]  # the event is filed under its last step
            assert not no_update & zero_weight
        ratios = ratios.reshape(-1, len(names))
        blocks.append(ratios)
        for k, global_step in enumerate(rows_steps):
            row = {}
            for j, name in enumerate(names):
                flat = k * len(names) + j
                if flat in no_update:
                    row[name] = None
                elif flat in zero_weight:
                    if strict:
                        assert np.isnan(ratios[k, j])
                    row[name] = ZERO_WEIGHT
                else:
                    row[name] = float(ratios[k, j])
            rows.append((global_step, row))
            files.append(value.file)
    return UpdateRatioLog(names, rows, np.concatenate(blocks), files)
