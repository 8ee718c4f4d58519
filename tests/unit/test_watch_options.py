"""watch() passes each kind's options to its measurer, only when given."""

from __future__ import annotations

import pytest
import torch

import deepscope
from deepscope.writer import watch as watch_module


class Recorder:
    """Stands in for a measurer class: records its keyword arguments."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, name):
        self.name = name

    def __call__(self, **kwargs):
        Recorder.calls.append((self.name, kwargs))
        return deepscope.Measurer(kwargs.get("every", 1), name=self.name)


@pytest.fixture
def recorded(monkeypatch):
    Recorder.calls = []
    for name, cls in (
        ("spectra", "Spectra"),
        ("correlation", "Correlations"),
        ("saliency", "Saliency"),
    ):
        monkeypatch.setattr(watch_module, cls, Recorder(name))
    return Recorder.calls


@pytest.fixture
def setup(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = deepscope.SummaryWriter(str(tmp_path))
    yield model, optimizer, writer
    writer.close()


PROBES = dict(correlation_layers=["0"], probe=torch.ones(5, 3), saliency_probe=torch.ones(2, 3))


def test_nothing_extra_is_passed_when_no_option_is_given(recorded, setup):
    deepscope.watch(*setup, **PROBES).close()
    kwargs = dict(recorded)
    assert set(kwargs["spectra"]) == {"every"}
    assert set(kwargs["correlation"]) == {"layers", "probe", "every"}
    assert set(kwargs["saliency"]) == {"probe", "every", "methods", "method_options"}


def test_each_option_reaches_its_measurer(recorded, setup):
    embeddings = torch.nn.Embedding(10, 3)
    deepscope.watch(
        *setup,
        **PROBES,
        spectra_options={"time_budget": 0.5, "include_frozen": True, "threads": 1},
        correlation_channel_dims={"0": -1},
        correlation_options={"matrix_dtype": "float32", "packing": "upper_triangle"},
        saliency_embeddings=embeddings,
        saliency_tokens=[["a", "b"]],
    ).close()
    kwargs = dict(recorded)
    spectra = {k: v for k, v in kwargs["spectra"].items() if k != "every"}
    assert spectra == {"time_budget": 0.5, "include_frozen": True, "threads": 1}
    assert kwargs["correlation"]["channel_dims"] == {"0": -1}
    assert kwargs["correlation"]["matrix_dtype"] == "float32"
    assert kwargs["correlation"]["packing"] == "upper_triangle"
    assert kwargs["saliency"]["embeddings"] is embeddings
    assert kwargs["saliency"]["tokens"] == [["a", "b"]]


@pytest.mark.parametrize(
    "options, says",
    [
        ({"spectra_options": {"every": 3}}, "spectra_every"),
        ({"correlation_options": {"layers": ["1"]}}, "correlation_layers"),
        ({"correlation_options": {"channel_dims": {}}}, "correlation_channel_dims"),
    ],
)
def test_options_that_watch_sets_itself_are_refused(recorded, setup, options, says):
    with pytest.raises(ValueError, match=says):
        deepscope.watch(*setup, **PROBES, **options)


@pytest.mark.parametrize(
    "options, switch",
    [
        ({"spectra_options": {"threads": 1}, "spectra_every": None}, "spectra_every"),
        ({"correlation_channel_dims": {"0": -1}}, "correlation_layers"),
        ({"correlation_options": {"packing": "full"}}, "correlation_layers"),
        ({"saliency_embeddings": "0"}, "saliency_probe"),
        ({"saliency_tokens": [["a"]]}, "saliency_probe"),
    ],
)
def test_an_option_for_a_kind_that_is_off_raises(recorded, setup, options, switch):
    with pytest.raises(ValueError, match=f"measurement is off: set {switch}"):
        deepscope.watch(*setup, **options)
    assert recorded == []


def test_real_measurers_accept_the_options(setup):
    """Against the real classes: the names forwarded are the ones they take."""
    model, optimizer, writer = setup
    monitor = deepscope.watch(
        model,
        optimizer,
        writer,
        correlation_layers=["0"],
        probe=torch.ones(5, 3),
        spectra_options={"time_budget": None, "include_frozen": False, "threads": 1},
        correlation_channel_dims={"0": -1},
        correlation_options={"matrix_dtype": "float16"},
        layer_statistics_options={"layers": ["0"], "covariance_every": None, "max_samples": 64},
    )
    assert set(monitor.measurers) == {
        "update_ratios",
        "spectra",
        "correlation",
        "parameter_norms",
        "layer_statistics",
    }
    monitor.close()
