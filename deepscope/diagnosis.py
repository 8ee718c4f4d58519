"""`deepscope.diagnose(logdir)`: the findings of a log dir, as the tab's `/findings` gives them.

Loads the log dir with TensorBoard's own Python loader (the event multiplexer
behind `--load_fast=false`), keeping `samples` events per deepscope series as
`tensorboard` does by default, and asks the plugin's findings route of it: the
same rules, the same reads, the same answer. Numpy only: no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from deepscope import metadata
from deepscope.tb_plugin.loader import DEFAULT_SAMPLES


class LogDirError(ValueError):
    """The log dir cannot be read (missing, not a directory, or without deepscope data)."""


def load_plugin(logdir: str | Path, samples: int = DEFAULT_SAMPLES):
    """The deepscope plugin over `logdir` read once by TensorBoard's Python loader."""
    from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
    from tensorboard.backend.event_processing import data_provider as tb_data_provider
    from tensorboard.plugins import base_plugin

    from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin

    path = Path(logdir)
    if not path.exists():
        raise LogDirError(
            f"log dir {str(path)!r} does not exist: give the --logdir you trained with"
        )
    if not path.is_dir():
        raise LogDirError(f"{str(path)!r} is a file, not a log dir: give the directory of the runs")
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance={
            **data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
            metadata.PLUGIN_NAME: samples,
        },
    )
    multiplexer.AddRunsFromDirectory(str(path))
    multiplexer.Reload()
    provider = tb_data_provider.MultiplexerDataProvider(multiplexer, str(path))
    context = base_plugin.TBContext(
        data_provider=provider, sampling_hints={metadata.PLUGIN_NAME: samples}, logdir=str(path)
    )
    return DeepscopePlugin(context)


def diagnose(
    logdir: str | Path,
    runs: Sequence[str] | None = None,
    overrides: Mapping[str, Mapping[str, object]] | None = None,
    off: Iterable[str] = (),
    samples: int = DEFAULT_SAMPLES,
) -> dict:
    """The findings of `logdir` (of `runs` only, when given): the `/findings` body.

    overrides: rule → {threshold or "severity": value}, e.g. {"dead_units":
    {"fraction": 0.8}}; off: rules not to run (docs/findings.md lists both).
    Returns {"runs", "findings" (most severe first), "counts", "checked",
    "rules", "warnings"} as docs/http_api.md describes.

    Raises:
      LogDirError: the log dir is missing, or holds no deepscope data (or not `runs`).
      ValueError: an unknown rule or threshold, a value out of its range, or samples < 0.
      TypeError: `runs` or `off` given as one string, an override that is no mapping.
    """
    from tensorboard import context as tb_context
    from tensorboard import errors

    from deepscope.findings import thresholds

    if isinstance(runs, str):
        raise TypeError(f"runs: give a list of run names, e.g. [{runs!r}], not one string")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ValueError(f"samples={samples!r}: give the events to keep per series, 0 for all")
    settings = thresholds.resolve(overrides, off)
    plugin = load_plugin(logdir, samples)
    ctx = tb_context.RequestContext()
    try:
        report = plugin.findings.report(ctx, "", list(runs) if runs else None, settings)
    except errors.NotFoundError as error:
        raise LogDirError(str(error).removeprefix("Not found: ")) from None
    if not report["runs"]:
        raise LogDirError(
            f"log dir {str(logdir)!r} holds no deepscope data: log with deepscope.watch() or "
            "deepscope.SummaryWriter, and point at the directory above the runs"
        )
    return report
