"""`jacobian_pb`, `jacobian_step` and `add_jacobian_singular_values`: the round trip.

A step written from numpy-made spectra (numpy's SVD of seeded matrices, tests/kind_cases/
jacobian.py) parses back to the same numbers as float32, NaN-padded to the widest map;
a map that failed carries its error; the metadata (the network's output) is on a tag's
first event only; bad input is refused with a message saying what to do, writing nothing.
"""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
from tensorboard.compat.proto import summary_pb2

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.jacobian import jacobian_pb, jacobian_step
from tests import jacobian_data as data
from tests.kind_cases.jacobian import MAPS, SAMPLES, spectra

EPS32 = float(np.finfo(np.float32).eps)


def _parsed(summary) -> pb.JacobianStep:
    return pb.JacobianStep.FromString(summary.value[0].tensor.string_val[0])


def test_round_trip_holds_each_map_as_float32_nan_padded():
    found = spectra("w", 1)
    summary = jacobian_pb("jac", found, output="logits", seconds=0.25)
    step = _parsed(summary)
    assert list(step.maps) == list(MAPS) and list(step.full) == [True, False]
    assert list(step.errors) == ["", ""] and step.seconds == 0.25
    np.testing.assert_array_equal(arrays.decode_array(step.dims), [[8, 3], [16, 16]])
    values = arrays.decode_array(step.singular_values)
    assert values.dtype == np.float32 and values.shape == (2, SAMPLES, 4)
    for i, name in enumerate(MAPS):
        sv = found[name].singular_values
        np.testing.assert_allclose(values[i, :, : sv.shape[1]], sv, rtol=EPS32 / 2, atol=0)
        assert np.all(np.isnan(values[i, :, sv.shape[1] :]))
        np.testing.assert_allclose(
            arrays.decode_array(step.mean_squared)[i], found[name].mean_squared, rtol=EPS32
        )
    log_det = arrays.decode_array(step.log_abs_det)
    assert np.all(np.isnan(log_det[0]))  # 8 → 3: not square
    np.testing.assert_allclose(log_det[1], found["fc1"].log_abs_det, rtol=EPS32)
    info = pb.PluginData.FromString(summary.value[0].metadata.plugin_data.content)
    assert info.kind == pb.JACOBIAN and info.jacobian.output == "logits"
    assert summary.value[0].metadata.data_class == summary_pb2.DATA_CLASS_TENSOR


def test_one_spectrum_is_the_networks_and_seconds_default_to_its_own():
    network = spectra("w", 2)[""]
    step = _parsed(jacobian_pb("jac", network))
    assert list(step.maps) == [""]
    assert step.seconds == pytest.approx(network.seconds)


def test_a_failed_map_carries_its_error_and_nan_values():
    step = jacobian_step({"": spectra("w", 3)[""], "fc1": ValueError("no forward AD")})
    assert list(step.errors) == ["", "ValueError: no forward AD"]
    values = arrays.decode_array(step.singular_values)
    assert np.all(np.isnan(values[1])) and arrays.decode_array(step.dims)[1].tolist() == [0, 0]


def _spectrum(**changes):
    base = dict(
        input_dim=4,
        output_dim=4,
        singular_values=np.ones((2, 3)),
        full=False,
        mean_squared=np.ones(2),
        log_abs_det=np.zeros(2),
    )
    return types.SimpleNamespace(**{**base, **changes})


@pytest.mark.parametrize(
    ("results", "error", "match"),
    [
        ({}, ValueError, "non-empty mapping"),
        ({3: _spectrum()}, ValueError, "map names must be strings"),
        ({"a": 1.5}, TypeError, "must be a JacobianSpectrum"),
        ({"a": _spectrum(singular_values=-np.ones((2, 3)))}, ValueError, "negative"),
        ({"a": _spectrum(singular_values=np.ones((2, 5)))}, ValueError, "at most 4"),
        ({"a": _spectrum(mean_squared=np.ones(3))}, ValueError, "one value per sample"),
        ({"a": _spectrum(input_dim=0)}, ValueError, "must be positive"),
        ({"a": _spectrum(singular_values=np.ones(3))}, ValueError, r"\[samples, values\]"),
    ],
)
def test_bad_results_are_refused(results, error, match):
    with pytest.raises(error, match=match):
        jacobian_step(results)


def test_the_builder_needs_no_torch():
    script = (
        "import sys, types\n"
        "import numpy as np\n"
        "from deepscope.writer.jacobian import jacobian_pb\n"
        "s = types.SimpleNamespace(input_dim=3, output_dim=2, singular_values=np.ones((1, 2)),"
        " full=True, mean_squared=np.ones(1), log_abs_det=np.full(1, np.nan))\n"
        "out = jacobian_pb('x', {'': s})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(len(out.value))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_add_writes_metadata_on_the_first_event_only(tmp_path, read_values):
    with data.writer(tmp_path) as w:
        w.add_jacobian_singular_values("jac", spectra("a", 0), 0, 100.0, output="logits")
        w.add_jacobian_singular_values("jac", spectra("a", 5), 5, 101.0, output="logits")
        with pytest.raises(ValueError, match="non-empty mapping"):
            w.add_jacobian_singular_values("other", {}, 1)
    written = read_values(tmp_path, "jac")
    assert [v.step for v in written] == [0, 5]
    assert [v.has_metadata for v in written] == [True, False]
    assert read_values(tmp_path, "other") == []
    step = pb.JacobianStep.FromString(written[1].value.tensor.string_val[0])
    values = arrays.decode_array(step.singular_values)
    np.testing.assert_allclose(
        values[1], spectra("a", 5)["fc1"].singular_values, rtol=EPS32 / 2, atol=0
    )
