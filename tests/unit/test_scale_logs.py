"""The generated big logs (tests/scale_logs.py) are what they say they are."""

from __future__ import annotations

import numpy as np

from tests import scale_logs


def test_the_model_has_201_parameters_and_74_layers_with_real_names():
    parameters = scale_logs.scale_parameters()
    names = [p.name for p in parameters]
    assert len(names) == 201 and len(set(names)) == 201
    assert sum(p.is_layer for p in parameters) == 74
    assert "bert.encoder.layer.3.attention.self.key.bias" in names
    assert "model.resnet.encoder.stages.3.layers.1.layer.1.convolution.weight" in names


def test_marchenko_pastur_quantiles_match_a_random_matrix():
    rng = np.random.default_rng(0)
    rows, cols = 300, 600
    measured = np.linalg.svd(rng.standard_normal((rows, cols)), compute_uv=False)
    predicted = scale_logs.marchenko_pastur_singular_values(rows, cols, 1.0)
    assert predicted.shape == measured.shape
    assert np.all(np.diff(predicted) <= 0)
    # Finite-size fluctuations are a few percent at the edges, far less in the bulk.
    relative = np.abs(predicted - measured) / measured
    assert np.median(relative) < 0.01
    assert relative.max() < 0.06


def test_run_names_of_the_50_run_log():
    names = scale_logs.run_names_of_50()
    assert len(names) == 50 and len(set(names)) == 50
    assert {"__proto__", "constructor"} <= set(names)
    long_names = [n for n in names if len(n) == 500]
    assert len(long_names) == 3
    # Each path part fits a file name (NAME_MAX 255).
    assert all(len(part) <= 255 for n in names for part in n.split("/"))


def test_update_ratios_are_deterministic_and_one_parameter_stands_out():
    a = scale_logs.update_ratio_values(10, 200, seed=3, extreme=4)
    b = scale_logs.update_ratio_values(10, 200, seed=3, extreme=4)
    assert a.dtype == np.float32 and a.shape == (200, 10)
    np.testing.assert_array_equal(a, b)  # same seed, same bits
    medians = np.median(a, axis=0)
    assert int(np.argmax(medians)) == 4
