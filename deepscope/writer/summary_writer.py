"""`deepscope.SummaryWriter`: torch's SummaryWriter with deepscope's `add_*` verbs.

It writes into the same event files as the user's scalars, so one
`tensorboard --logdir` shows both. The core here is shared by every kind:
each `add_*` (in its kind's mixin) builds its `Summary` with the kind's public
builder and hands it to `_write`, which keeps the metadata on each tag's first
event only (`summary.FirstEventMetadata`), warns about names the fast data
server cannot read, and writes. `register_flush_hook` lets a monitor write
what it holds before the file is flushed or closed.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from collections.abc import Callable

from tensorboard.compat.proto import summary_pb2
from torch.utils.hooks import RemovableHandle
from torch.utils.tensorboard import SummaryWriter as _TorchSummaryWriter

from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer import fast_loader_names
from deepscope.writer.cka import CkaSummaries
from deepscope.writer.confusion import ConfusionSummaries
from deepscope.writer.correlation import CorrelationSummaries
from deepscope.writer.filters import FiltersSummaries
from deepscope.writer.jacobian import JacobianSummaries
from deepscope.writer.layer_statistics import LayerStatisticsSummaries
from deepscope.writer.layer_values import LayerValueSummaries
from deepscope.writer.saliency import SaliencySummaries
from deepscope.writer.spectrum import SpectrumSummaries
from deepscope.writer.summary import FirstEventMetadata
from deepscope.writer.update_ratios import UpdateRatioSummaries
from deepscope.writer.warning_location import stacklevel_outside_deepscope


class SummaryWriter(
    UpdateRatioSummaries,
    SpectrumSummaries,
    CorrelationSummaries,
    CkaSummaries,
    SaliencySummaries,
    LayerValueSummaries,
    LayerStatisticsSummaries,
    JacobianSummaries,
    ConfusionSummaries,
    FiltersSummaries,
    _TorchSummaryWriter,
):
    """A `torch.utils.tensorboard.SummaryWriter` with deepscope's summaries.

    Every `add_*` takes `global_step` and `walltime` (seconds since the epoch)
    as torch's do.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._metadata = FirstEventMetadata()
        # handle id → callback (an OrderedDict: RemovableHandle keeps a weak reference to it)
        self._flush_hooks: OrderedDict[int, Callable[[], object]] = OrderedDict()
        self._running_flush_hooks = False
        self._warned_names: set[tuple[str, str]] = set()

    # -- writing --------------------------------------------------------------

    def _series_plugin_data(self, tag: str) -> pb.PluginData | None:
        """The `PluginData` this writer put in `tag`'s metadata (None before its first event)."""
        return self._metadata.plugin_data(tag)

    def _write(
        self,
        summary_pb: summary_pb2.Summary,
        global_step: int | None,
        walltime: float | None,
    ) -> None:
        """Write a builder's `Summary`; its metadata is kept on each tag's first event only.

        `summary_pb` is changed in place (metadata removed where it repeats).

        Raises:
          summary.SeriesKindError: a tag already holds another kind's series.
        """
        first = [
            value
            for value in summary_pb.value
            if value.HasField("metadata") and self._metadata.plugin_data(value.tag) is None
        ]
        self._metadata.keep_first(summary_pb)
        walltime = time.time() if walltime is None else walltime
        self._get_file_writer().add_summary(summary_pb, global_step, walltime)
        for value in first:  # after the write: a warning turned into an error loses nothing
            if value.metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE:
                self._warn_unreadable_names(value.tag)

    def _warn_unreadable_names(self, tag: str) -> None:
        """Warn, once per name, when the tag or the log dir defeats the fast data server.

        Only blob-sequence series are affected: the fast data server reads
        update ratios (a tensor series) of any name.
        """
        for what, name, char in (
            (
                "log dir",
                str(self.log_dir),
                fast_loader_names.unreadable_log_dir_character(str(self.log_dir)),
            ),
            ("tag", tag, fast_loader_names.unreadable_character(tag)),
        ):
            if char is None or (what, name) in self._warned_names:
                continue
            self._warned_names.add((what, name))
            warnings.warn(
                fast_loader_names.unreadable_name_message(what, name, char),
                UserWarning,
                stacklevel=stacklevel_outside_deepscope(),
            )

    # -- flushing ---------------------------------------------------------------

    def register_flush_hook(self, callback: Callable[[], object]) -> RemovableHandle:
        """Call `callback()` at the start of every `flush()` and `close()`; returns its handle.

        For a monitor that holds measurements (a block of update ratios): it
        writes them before the file is flushed. `handle.remove()` unregisters
        it. An exception in a callback is warned about (RuntimeWarning) and the
        flush goes on; a flush from inside a callback does not call the
        callbacks again.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        handle = RemovableHandle(self._flush_hooks)
        self._flush_hooks[handle.id] = callback
        return handle

    def _run_flush_hooks(self) -> None:
        if self._running_flush_hooks or self.all_writers is None:
            return
        self._running_flush_hooks = True
        try:
            for callback in list(self._flush_hooks.values()):
                try:
                    callback()
                except Exception as error:  # a monitor's failure never stops the flush
                    warnings.warn(
                        f"deepscope: flush hook {callback!r} raised {type(error).__name__}: "
                        f"{error}; the writer flushes anyway",
                        RuntimeWarning,
                        stacklevel=3,
                    )
        finally:
            self._running_flush_hooks = False

    def flush(self) -> None:
        """Run the flush hooks, then flush the event files to disk."""
        self._run_flush_hooks()
        super().flush()

    def close(self) -> None:
        """Run the flush hooks, then flush and close the event files (again: nothing)."""
        self._run_flush_hooks()
        super().close()
