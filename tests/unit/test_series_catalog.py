"""SeriesCatalog under request threads: list, find and forget at once, no error, no mix-up."""

from __future__ import annotations

import sys
import threading

import pytest
from tensorboard.context import RequestContext

from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import series
from tests.event_files import update_ratios_metadata

RUNS, TAGS = 4, 100


class _Series:
    def __init__(self, content: bytes):
        self.plugin_content = content


class _ManySeries:
    """A data provider listing RUNS × TAGS update-ratio series, tag t with names [t]."""

    def __init__(self):
        self._listing = {
            f"run{r}": {
                f"tag{t}": _Series(update_ratios_metadata([f"tag{t}"]).plugin_data.content)
                for t in range(TAGS)
            }
            for r in range(RUNS)
        }

    def list_tensors(self, ctx, experiment_id, plugin_name, run_tag_filter=None):
        if run_tag_filter is None:
            return self._listing
        return {
            run: {tag: s for tag, s in tags.items() if tag in run_tag_filter.tags}
            for run, tags in self._listing.items()
            if run in run_tag_filter.runs
        }

    def list_blob_sequences(self, ctx, experiment_id, plugin_name, run_tag_filter=None):
        return {}


@pytest.fixture
def fast_switching():
    """Threads switch every microsecond, so that unguarded dict iteration would collide."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_list_find_and_forget_from_many_threads(fast_switching):
    catalog = series.SeriesCatalog(_ManySeries())
    ctx = RequestContext()
    failures: list[BaseException] = []
    wrong: list[tuple] = []
    start = threading.Barrier(9)

    def lister():
        start.wait()
        for _ in range(30):
            listing = catalog.list(ctx, "")
            if len(listing) != RUNS or any(len(tags) != TAGS for tags in listing.values()):
                wrong.append(("list", len(listing)))

    def finder(seed: int):
        start.wait()
        for i in range(600):
            run, tag = f"run{(seed + i) % RUNS}", f"tag{(seed * 7 + i) % TAGS}"
            plugin_data = catalog.find(ctx, "", run, tag, "update_ratios")
            if list(plugin_data.update_ratios.names) != [tag]:
                wrong.append((run, tag, list(plugin_data.update_ratios.names)))
            if i % 3 == 0:
                catalog.forget("", run, tag)

    def guarded(target, *args):
        try:
            target(*args)
        except BaseException as error:  # noqa: BLE001 - collected and reported below
            failures.append(error)

    threads = [threading.Thread(target=guarded, args=(lister,)) for _ in range(3)]
    threads += [threading.Thread(target=guarded, args=(finder, k)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert wrong == []


def test_find_after_forget_lists_again_and_finds_the_same():
    catalog = series.SeriesCatalog(_ManySeries())
    ctx = RequestContext()
    first = catalog.find(ctx, "", "run1", "tag5", "update_ratios")
    catalog.forget("", "run1", "tag5")
    again = catalog.find(ctx, "", "run1", "tag5", "update_ratios")
    assert again == first and list(again.update_ratios.names) == ["tag5"]
    assert isinstance(again, pb.PluginData)
