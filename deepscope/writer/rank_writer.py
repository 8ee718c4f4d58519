"""The writer of a rank that does not write: every `add_*` builds, nothing reaches a file.

Under torch.distributed, rank 0 alone writes. Measurers that must run on
every rank (a forward pass or a gathered weight is a collective under FSDP2)
are handed this writer on the other ranks, so their code needs no rank
checks: it is a `deepscope.SummaryWriter` whose file writer drops every
event, and it creates no directory and no event file.
"""

from __future__ import annotations

from deepscope.writer.summary_writer import SummaryWriter


class _NoFile:
    """A FileWriter that writes nothing."""

    def add_summary(self, *args, **kwargs) -> None:
        pass

    def add_event(self, *args, **kwargs) -> None:
        pass

    def add_graph(self, *args, **kwargs) -> None:
        pass

    def add_onnx_graph(self, *args, **kwargs) -> None:
        pass

    def get_logdir(self) -> str:
        return ""

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass


class RankWriter(SummaryWriter):
    """A deepscope.SummaryWriter for a rank other than 0: writes nothing, makes no file."""

    def __init__(self, rank: int):
        self.rank = rank
        super().__init__(log_dir=f"<rank {rank}: not written>")

    def add_embedding(self, *args, **kwargs) -> None:
        """Nothing: torch's add_embedding writes its files itself, not through the file writer."""

    def _get_file_writer(self) -> _NoFile:
        if self.file_writer is None:
            self.file_writer = _NoFile()
            self.all_writers = {}
        return self.file_writer
