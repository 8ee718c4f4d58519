"""deepscope.SummaryWriter: what lands in the event file (update ratios), and the core every
kind shares: metadata on a tag's first event, flush hooks, names the fast loader cannot read."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.utils.tensorboard
from tensorboard.compat.proto import summary_pb2

import deepscope
from deepscope import kinds, metadata
from deepscope.writer import summary, update_ratios


def test_is_a_torch_summary_writer(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    try:
        assert isinstance(writer, torch.utils.tensorboard.SummaryWriter)
    finally:
        writer.close()


def test_same_event_file_as_scalars_and_metadata_on_first_event_only(
    tmp_path, read_values, decode_ratios
):
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_scalar("loss", 2.5, global_step=0, walltime=1000.0)
    writer.add_update_ratios("model", {"w": 1e-3, "b": 2e-3}, global_step=0, walltime=1001.0)
    writer.add_update_ratios("model", {"w": 3e-3, "b": None}, global_step=10, walltime=1002.5)
    writer.add_scalar("loss", 1.5, global_step=10, walltime=1003.0)
    writer.add_update_ratios("model", {"w": 4e-3, "b": 5e-3}, global_step=20, walltime=1004.0)
    writer.close()

    files = sorted(tmp_path.glob("events.out.tfevents.*"))
    assert len(files) == 1
    values = read_values(tmp_path)
    assert {v.file for v in values} == set(files)
    assert [(v.tag, v.step, v.wall_time) for v in values] == [
        ("loss", 0, 1000.0),
        ("model", 0, 1001.0),
        ("model", 10, 1002.5),
        ("loss", 10, 1003.0),
        ("model", 20, 1004.0),
    ]

    model = [v for v in values if v.tag == "model"]
    assert [v.has_metadata for v in model] == [True, False, False]
    meta = model[0].value.metadata
    assert meta.plugin_data.plugin_name == "deepscope"
    assert meta.data_class == summary_pb2.DATA_CLASS_TENSOR
    assert list(metadata.parse_plugin_data(meta.plugin_data.content).update_ratios.names) == [
        "w",
        "b",
    ]

    expected = [([1e-3, 2e-3], []), ([3e-3, None], [1]), ([4e-3, 5e-3], [])]
    for written, (numbers, no_update) in zip(model, expected):
        ratios, marks, own_names = decode_ratios(written)
        assert marks == no_update
        assert own_names == []
        for got, want in zip(ratios.tolist(), numbers):
            if want is None:
                assert np.isnan(got)
            else:
                assert got == np.float32(want)


def test_each_tag_gets_its_own_metadata(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    for step in range(3):
        writer.add_update_ratios("a", {"x": 0.1}, global_step=step)
        writer.add_update_ratios("b", {"y": 0.2, "z": 0.3}, global_step=step)
    writer.close()
    for tag, names in (("a", ["x"]), ("b", ["y", "z"])):
        written = read_values(tmp_path, tag)
        assert [v.has_metadata for v in written] == [True, False, False]
        content = written[0].value.metadata.plugin_data.content
        assert list(metadata.parse_plugin_data(content).update_ratios.names) == names


def test_step_with_other_names_carries_its_own(tmp_path, read_values, decode_ratios):
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_update_ratios("m", {"a": 0.1, "b": 0.2}, global_step=0)
    writer.add_update_ratios("m", {"a": 0.3, "c": 0.4}, global_step=1)
    writer.add_update_ratios("m", {"a": 0.5, "b": 0.6}, global_step=2)
    writer.add_update_ratios("m", {"b": 0.7, "a": 0.8}, global_step=3)
    writer.close()
    written = read_values(tmp_path, "m")
    assert [v.has_metadata for v in written] == [True, False, False, False]
    decoded = [decode_ratios(v) for v in written]
    assert [names for _, _, names in decoded] == [[], ["a", "c"], [], ["b", "a"]]
    np.testing.assert_array_equal(decoded[1][0], np.float32([0.3, 0.4]))
    np.testing.assert_array_equal(decoded[3][0], np.float32([0.7, 0.8]))


def test_walltime_defaults_to_now_and_global_step_to_zero(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    before = time.time()
    writer.add_update_ratios("m", {"a": 0.1})
    after = time.time()
    writer.close()
    (written,) = read_values(tmp_path, "m")
    assert before <= written.wall_time <= after
    assert written.step == 0


def test_add_update_ratio_values(tmp_path, read_values, decode_ratios):
    writer = deepscope.SummaryWriter(str(tmp_path))
    values = np.array([0.5, 0.25, 2.0], dtype=np.float64)
    writer._add_update_ratio_values(
        "m", ["p", "q", "r"], values, no_update=[2], global_step=7, walltime=5.0
    )
    writer.close()
    (written,) = read_values(tmp_path, "m")
    assert (written.step, written.wall_time) == (7, 5.0)
    ratios, no_update, _ = decode_ratios(written)
    assert ratios[:2].tolist() == [0.5, 0.25]
    assert np.isnan(ratios[2]) and no_update == [2]


def test_failed_first_call_writes_nothing_and_does_not_claim_the_metadata(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    with pytest.raises(ValueError):
        writer.add_update_ratios("m", {})
    with pytest.raises(ValueError):
        writer._add_update_ratio_values("m", ["a", "a"], np.ones(2))
    with pytest.raises(ValueError):
        writer.add_update_ratios("m", {"a": "not a number"})
    writer.add_update_ratios("m", {"a": 0.1}, global_step=1)
    writer.close()
    written = read_values(tmp_path, "m")
    assert len(written) == 1
    assert written[0].has_metadata
    assert written[0].step == 1


def test_description_lands_in_metadata(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_update_ratios("m", {"a": 0.1}, description="‖ΔW‖/‖W‖ per parameter")
    writer.close()
    (written,) = read_values(tmp_path, "m")
    assert written.value.metadata.summary_description == "‖ΔW‖/‖W‖ per parameter"


def test_zero_weight_through_every_writer_verb(tmp_path, read_values, decode_ratios):
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_update_ratios("m", {"w": 0.5, "b": update_ratios.ZERO_WEIGHT}, global_step=0)
    writer._add_update_ratio_values(
        "m", ["w", "b"], np.array([0.25, 7.0]), global_step=1, zero_weight=[1]
    )
    writer._add_update_ratio_block(
        "m",
        ["w", "b"],
        np.array([[0.125, 1.0], [np.inf, 2.0]]),
        steps=[2, 3],
        wall_times=[1.0, 2.0],
        no_update=np.array([[False, False], [True, False]]),
        zero_weight=np.array([[False, True], [False, False]]),
    )
    writer.close()
    written = read_values(tmp_path, "m")
    steps = [v.update_ratios_step() for v in written]
    assert [list(s.zero_weight) for s in steps] == [[1], [1], [1]]
    assert [list(s.no_update) for s in steps] == [[], [], [2]]
    ratios = [decode_ratios(v)[0] for v in written]
    assert ratios[0][0] == 0.5 and ratios[1][0] == 0.25 and ratios[2][0, 0] == 0.125
    assert np.isnan(ratios[0][1]) and np.isnan(ratios[1][1]) and np.isnan(ratios[2][0, 1])
    assert np.isnan(ratios[2][1, 0]) and ratios[2][1, 1] == 2.0


# -- the core every kind shares: metadata on a tag's first event, in one place ---------

_WRITES = {
    "update_ratios": lambda w, tag, step: w.add_update_ratios(tag, {"a": 0.5}, global_step=step),
    "spectrum": lambda w, tag, step: w.add_singular_values(
        tag, torch.eye(3) * (step + 1), global_step=step
    ),
    "correlation": lambda w, tag, step: w.add_channel_correlation(
        tag, torch.randn(40, 3, generator=torch.Generator().manual_seed(step)), global_step=step
    ),
    "saliency": lambda w, tag, step: w.add_saliency(
        tag, torch.ones(2, 1, 3, 3), torch.full((2, 1, 3, 3), float(step)), global_step=step
    ),
}


@pytest.mark.parametrize("kind", sorted(_WRITES))
def test_every_kind_puts_metadata_on_its_tags_first_event_only(tmp_path, read_values, kind):
    writer = deepscope.SummaryWriter(str(tmp_path))
    for step in range(3):
        _WRITES[kind](writer, "x", step)
        _WRITES[kind](writer, "y", step)
    assert writer._series_plugin_data("x").kind == kinds.by_name(kind).enum
    assert writer._series_plugin_data("never written") is None
    writer.close()
    for tag in ("x", "y"):
        written = read_values(tmp_path, tag)
        assert [v.step for v in written] == [0, 1, 2]
        assert [v.has_metadata for v in written] == [True, False, False]
        content = written[0].value.metadata.plugin_data.content
        assert metadata.parse_plugin_data(content).kind == kinds.by_name(kind).enum


def test_a_tag_holds_one_kind(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_singular_values("layer", torch.eye(3), global_step=0)
    with pytest.raises(summary.SeriesKindError, match="'layer' holds a spectrum series"):
        writer.add_channel_correlation("layer", torch.randn(20, 3), global_step=1)
    with pytest.raises(ValueError, match="log the update_ratios under another tag"):
        writer.add_update_ratios("layer", {"a": 0.1}, global_step=2)
    writer.add_singular_values("layer", torch.eye(3), global_step=3)
    writer.close()
    assert [(v.step, v.has_metadata) for v in read_values(tmp_path, "layer")] == [
        (0, True),
        (3, False),
    ]


def test_first_event_metadata_without_a_writer():
    keeper = summary.FirstEventMetadata()
    first = update_ratios.update_ratios_pb("m", {"a": 0.1})
    assert keeper.keep_first(first).value[0].HasField("metadata")
    again = keeper.keep_first(update_ratios.update_ratios_pb("m", {"a": 0.2}))
    assert not again.value[0].HasField("metadata")
    assert list(keeper.plugin_data("m").update_ratios.names) == ["a"]
    # An event without metadata claims nothing: the next one with metadata is still the first.
    bare = summary.blob_sequence_summary("s", [b""], None)
    assert not keeper.keep_first(bare).value[0].HasField("metadata")
    assert keeper.plugin_data("s") is None


# -- flush hooks -----------------------------------------------------------------------


def test_flush_hooks_run_before_flush_and_close_until_removed(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    calls = []

    def write_held():  # a monitor writing what it holds before the file is flushed
        calls.append(len(calls))
        writer.add_update_ratios("held", {"a": 0.1}, global_step=len(calls))

    handle = writer.register_flush_hook(write_held)
    writer.flush()
    assert calls == [0]
    assert [v.step for v in read_values(tmp_path, "held")] == [1]  # on disk after flush()
    writer.close()
    assert calls == [0, 1]
    assert [v.step for v in read_values(tmp_path, "held")] == [1, 2]  # written, then closed
    writer.close()  # a second close does nothing
    assert calls == [0, 1]
    handle.remove()
    writer.flush()
    assert calls == [0, 1]


def test_a_failing_flush_hook_warns_and_the_flush_goes_on(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    order = []

    def broken():
        order.append("broken")
        raise OSError("disk on fire")

    def reentrant():  # flushing from a hook does not run the hooks again
        order.append("reentrant")
        writer.flush()

    writer.register_flush_hook(broken)
    writer.register_flush_hook(reentrant)
    writer.add_update_ratios("m", {"a": 0.1}, global_step=4)
    with pytest.warns(RuntimeWarning, match="raised OSError: disk on fire; the writer flushes"):
        writer.flush()
    assert order == ["broken", "reentrant"]
    assert [v.step for v in read_values(tmp_path, "m")] == [4]
    with pytest.warns(RuntimeWarning, match="disk on fire"):
        writer.close()
    assert order == ["broken", "reentrant"] * 2
    with pytest.raises(TypeError, match="callback must be callable"):
        writer.register_flush_hook("not a function")


# -- names the fast data server cannot read -------------------------------------------


@pytest.mark.parametrize("char", ['"', "\\", "\n", "\t", "\x01", "\x7f"])
def test_a_blob_tag_the_fast_loader_cannot_read_warns_once(tmp_path, char):
    writer = deepscope.SummaryWriter(str(tmp_path))
    tag = f"layer{char}1"
    with pytest.warns(UserWarning) as caught:
        writer.add_singular_values(tag, torch.eye(3), global_step=0)
        writer.add_singular_values(tag, torch.eye(3), global_step=1)
    messages = [str(w.message) for w in caught if "data server" in str(w.message)]
    assert len(messages) == 1
    assert repr(tag) in messages[0] and repr(char) in messages[0]
    assert "--load_fast=false" in messages[0] and "rename" in messages[0]
    assert caught[0].filename == __file__  # points at the user's line
    writer.close()


def test_readable_names_and_update_ratio_tags_do_not_warn(tmp_path):
    import warnings

    writer = deepscope.SummaryWriter(str(tmp_path / "run-1 é"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        writer.add_singular_values("spectra/conv 1 é", torch.eye(3), global_step=0)
        writer.add_update_ratios('ratios "quoted"', {"a": 0.1})  # tensor series: readable
    writer.close()


def test_a_log_dir_the_fast_loader_cannot_read_warns_once_per_writer(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path / 'run "a"'))
    with pytest.warns(UserWarning, match='log dir .*run "a".* contains \'"\'') as caught:
        writer.add_singular_values("one", torch.eye(3), global_step=0)
        writer.add_singular_values("two", torch.eye(3), global_step=0)
    assert len([w for w in caught if "log dir" in str(w.message)]) == 1
    writer.close()


def _without_timing(value: summary_pb2.Summary.Value) -> bytes:
    """A value's bytes with a spectrum step's `seconds` (its measured duration) cleared."""
    from deepscope.proto import deepscope_pb2 as pb

    copy = summary_pb2.Summary.Value()
    copy.CopyFrom(value)
    if copy.tag.startswith("spectrum"):
        step = pb.SpectrumStep.FromString(copy.tensor.string_val[0])
        step.ClearField("seconds")
        copy.tensor.string_val[0] = step.SerializeToString()
    return copy.SerializeToString(deterministic=True)


def test_each_add_writes_exactly_what_its_public_builder_builds(tmp_path, read_values):
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(3))
    images, maps = torch.ones(2, 1, 3, 3), torch.rand(2, 1, 3, 3, generator=torch.Generator())
    cases = {
        "update_ratios": (
            lambda w: w.add_update_ratios("update_ratios", {"a": 0.5, "b": None}),
            update_ratios.update_ratios_pb("update_ratios", {"a": 0.5, "b": None}),
        ),
        "spectrum": (
            lambda w: w.add_singular_values("spectrum", torch.eye(3) * 2),
            deepscope.spectrum_pb("spectrum", torch.eye(3) * 2),
        ),
        "correlation": (
            lambda w: w.add_channel_correlation("correlation", x, matrix_dtype="uint8"),
            deepscope.channel_correlation_pb("correlation", x, matrix_dtype="uint8"),
        ),
        "saliency": (
            lambda w: w.add_saliency("saliency", images, maps, method="gradient"),
            deepscope.saliency_pb("saliency", images, maps, method="gradient"),
        ),
    }
    writer = deepscope.SummaryWriter(str(tmp_path))
    for add, _ in cases.values():
        add(writer)
    writer.close()
    for tag, (_, built) in cases.items():
        (written,) = read_values(tmp_path, tag)
        assert _without_timing(written.value) == _without_timing(built.value[0]), tag


def test_unreadable_characters_are_quote_backslash_and_control_characters():
    from deepscope.writer import fast_loader_names as names

    assert names.unreadable_character("conv1/weight é ü 中 - _ . : ' ( )") is None
    for char in ['"', "\\", "\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85"]:
        assert names.unreadable_character(f"a{char}b{char}") == char
    assert names.unreadable_character('x\\y"', path_separator="\\") == '"'
    assert names.unreadable_character("C:\\runs\\exp1", path_separator="\\") is None
