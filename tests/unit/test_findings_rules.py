"""The findings rules on evidence built by hand, against brute-force references."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from deepscope.findings import engine, thresholds
from deepscope.findings.evidence import (
    ColumnSeries,
    CorrelationLayer,
    RunEvidence,
    SpectrumLayer,
    SpectrumSample,
    StatisticsPart,
    StatisticsSeries,
)
from deepscope.findings.rules import channels, depth, gradient_spikes

F64 = np.finfo(np.float64).eps
DEFAULTS = thresholds.resolve()


def findings(evidence, **overrides):
    settings = thresholds.resolve(overrides) if overrides else DEFAULTS
    return engine.run_rules(evidence, settings)


def ratio_series(values: dict[str, list[float]], every: int = 5) -> ColumnSeries:
    names = list(values)
    matrix = np.array([values[n] for n in names], dtype=np.float32).T
    return ColumnSeries(
        tag="update_ratios",
        steps=np.arange(matrix.shape[0], dtype=np.int64) * every,
        names=names,
        values=matrix,
        unmeasured=np.zeros(matrix.shape, dtype=bool),
    )


def part(names, types, statistics_, values) -> StatisticsPart:
    values = np.asarray(values, dtype=np.float32)  # [S, R, C]
    return StatisticsPart(
        names=list(names),
        types=list(types),
        statistics=list(statistics_),
        values=values,
        absent=np.zeros(values.shape[:2], dtype=bool),
        no_gradient=np.zeros(values.shape[:2], dtype=bool),
    )


def empty_part() -> StatisticsPart:
    return part([], [], [], np.zeros((0, 0, 0)))


def statistics_series(steps, activations=None, parameters=None) -> StatisticsSeries:
    steps = np.asarray(steps, dtype=np.int64)
    blank = part([], [], [], np.zeros((len(steps), 0, 0)))
    return StatisticsSeries(
        "layer_statistics/activations", steps, activations or blank, parameters or blank
    )


def sample(step, **metrics) -> SpectrumSample:
    base = {"stable_rank": 10.0, "effective_rank": 20.0, "num_above_mp_edge": 3.0, "alpha": 4.0}
    base.update(metrics)
    operator = base.pop("operator_norm", None)
    since = base.pop("unchanged_since", None)
    return SpectrumSample(step, base, "full", "", 0, since, operator)


def spectrum(layer, first, last, kind="Linear") -> SpectrumLayer:
    return SpectrumLayer(f"spectra/{layer}", layer, kind, first, last)


# --------------------------------------------------------------------------- the table


def test_every_rule_has_a_check_and_every_threshold_a_finite_default():
    assert set(engine.RULE_CHECKS) == set(thresholds.BY_NAME)
    for rule in thresholds.RULES:
        assert rule.severity in ("error", "warning", "info"), rule.name
        assert rule.source and rule.checks, rule.name
        for threshold in rule.thresholds.values():
            assert math.isfinite(threshold.default) and threshold.meaning


def test_overrides_are_checked_against_the_table():
    settings = thresholds.resolve({"dead_units": {"fraction": "0.9", "severity": "error"}})
    assert settings["dead_units"]["fraction"] == 0.9
    assert settings.severities["dead_units"] == "error"
    with pytest.raises(ValueError, match="no findings rule named 'dead_unit'.*dead_units"):
        thresholds.resolve({"dead_unit": {"fraction": 1}})
    with pytest.raises(ValueError, match="has no threshold 'fractio'.*fraction, recent, most"):
        thresholds.resolve({"dead_units": {"fractio": 1}})
    with pytest.raises(ValueError, match="give a finite number"):
        thresholds.resolve({"dead_units": {"fraction": "nan"}})
    with pytest.raises(ValueError, match="choose one of error, warning, info"):
        thresholds.resolve({"dead_units": {"severity": "fatal"}})
    with pytest.raises(ValueError, match="no findings rule named 'nope'"):
        thresholds.resolve(off=["nope"])
    assert thresholds.parse_assignments(["a.b=1", " a.c = x "]) == {"a": {"b": "1", "c": "x"}}
    for bad in ("a=1", "a.b", ".b=1", "a.=1", "a.b="):
        with pytest.raises(ValueError, match="RULE.SETTING=VALUE"):
            thresholds.parse_assignments([bad])


# --------------------------------------------------------------------------- learning rate


def test_one_parameter_off_is_named_with_its_median_factor():
    rng = np.random.default_rng(0)
    high = list(3e-2 * np.exp(rng.normal(0, 0.2, 30)))
    evidence = RunEvidence(
        "r",
        ratios=[
            ratio_series(
                {
                    "fc1.weight": [1e-3] * 30,
                    "fc2.weight": high,
                    "fc2.bias": [1.0] * 30,  # biases are not judged by default
                    "fc3.weight": [2e-3] * 30,
                }
            )
        ],
    )
    found = findings(evidence).findings
    assert [(f.rule, f.layer) for f in found] == [("learning_rate_parameter", "fc2.weight")]
    (finding,) = found
    expected = statistics.median(np.float32(high[-20:]).astype(float))
    assert finding.numbers["median_ratio"] == pytest.approx(expected, rel=8 * F64)
    assert finding.numbers["factor"] == pytest.approx(expected / 1e-3, rel=8 * F64)
    assert (finding.first_step, finding.last_step) == (50, 145)  # the last 20 of 30, every 5
    assert finding.evidence.to_json() == {
        "kind": "update_ratios",
        "tag": "update_ratios",
        "step": 145,
        "name": "fc2.weight",
    }
    # With biases judged, the bias's 1.0 (1000x) is a finding too.
    with_biases = findings(evidence, learning_rate_parameter={"biases": 1}).findings
    assert {f.layer for f in with_biases} == {"fc2.weight", "fc2.bias"}
    # A looser factor clears it: 30x is not over 50x.
    assert not findings(evidence, learning_rate_parameter={"factor": 50}).findings


def test_off_in_only_a_few_recent_measurements_is_no_finding():
    values = [1e-3] * 20 + [5e-2] * 9 + [1e-3]  # 9 of the last 20 are high, the last is not
    evidence = RunEvidence(
        "r", ratios=[ratio_series({"a.weight": values, "b.weight": [1e-3] * 30})]
    )
    assert not findings(evidence).findings
    values = [1e-3] * 19 + [5e-2] * 11
    evidence = RunEvidence(
        "r", ratios=[ratio_series({"a.weight": values, "b.weight": [1e-3] * 30})]
    )
    assert [f.layer for f in findings(evidence).findings] == ["a.weight"]


def test_a_whole_network_off_is_one_error_instead_of_a_warning_per_parameter():
    names = {f"fc{i}.weight": [1e-5 * (1 + i / 10)] * 25 for i in range(10)}
    names["fc0.weight"] = [1e-3] * 25  # one of ten is fine: 90% are off
    found = findings(RunEvidence("r", ratios=[ratio_series(names)])).findings
    assert [(f.rule, f.severity, f.layer) for f in found] == [
        ("learning_rate_network", "error", "")
    ]
    (finding,) = found
    medians = sorted(1e-5 * (1 + i / 10) for i in range(1, 10))
    assert finding.numbers["parameters_off"] == 9 and finding.numbers["parameters"] == 10
    assert finding.numbers["median_ratio"] == pytest.approx(statistics.median(medians), rel=1e-6)
    assert "below the rule of thumb" in finding.message
    assert finding.evidence.name == "fc1.weight"  # the farthest off


# --------------------------------------------------------------------------- non-finite


def test_the_first_non_finite_value_names_where_it_started_not_where_it_spread():
    steps = [0, 10, 20, 30]
    order = ["fc1", "relu1", "fc2"]
    nan = math.nan
    # Activations: fc2's output non-finite from step 20; parameters: fc2's weight norm from
    # step 20 (poisoned before the forward), fc1's gradient from step 20 (backward).
    activations = part(
        order,
        ["Linear", "ReLU", "Linear"],
        ["std", "non_finite_fraction"],
        [[[1, 0], [1, 0], [1, 0]]] * 2 + [[[1, 0], [1, 0], [nan, 0.5]]] * 2,
    )
    parameters = part(
        ["fc1.weight", "fc2.weight"],
        ["", ""],
        ["grad_norm", "weight_norm"],
        [[[1, 1], [1, 1]]] * 2 + [[[nan, 1], [1, nan]]] * 2,
    )
    ratios = ratio_series({"fc1.weight": [1e-3, 1e-3, nan, nan], "fc2.weight": [1e-3] * 4}, 10)
    evidence = RunEvidence(
        "r", ratios=[ratios], statistics=[statistics_series(steps, activations, parameters)]
    )
    (finding,) = [f for f in findings(evidence).findings if f.rule == "non_finite"]
    assert (finding.layer, finding.first_step, finding.severity) == ("fc2.weight", 20, "error")
    assert finding.evidence.statistic == "weight_norm" and finding.evidence.step == 20
    assert "output of fc2 from step 20" in finding.message
    assert "gradient norm of fc1.weight from step 20" in finding.message
    # An earlier value anywhere wins: an update ratio at step 10.
    ratios.values[1, 1] = np.inf
    (finding,) = [f for f in findings(evidence).findings if f.rule == "non_finite"]
    assert (finding.layer, finding.first_step) == ("fc2.weight", 10)
    assert finding.evidence.kind == "update_ratios"


def test_unmeasured_values_are_not_non_finite():
    ratios = ratio_series({"a.weight": [math.nan] * 4, "b.weight": [1e-3] * 4})
    ratios.unmeasured[:, 0] = True  # no update: NaN means nothing
    assert not findings(RunEvidence("r", ratios=[ratios])).findings


# --------------------------------------------------------------------------- spikes


def test_rolling_ratio_is_the_value_over_the_median_of_the_previous_window():
    rng = np.random.default_rng(1)
    values = np.exp(rng.normal(0, 0.3, (40, 3)))
    values[7, 1] = np.nan
    got = gradient_spikes.rolling_ratio(values, window=6, min_history=4)
    for i in range(40):
        for j in range(3):
            before = [v for v in values[max(0, i - 6) : i, j] if np.isfinite(v)]
            if len(before) < 4 or not np.isfinite(values[i, j]):
                assert np.isnan(got[i, j])
            else:
                expected = values[i, j] / statistics.median(before)
                assert got[i, j] == pytest.approx(expected, rel=8 * F64)


def test_a_spike_of_the_network_norm_names_the_layer_it_started_in():
    rng = np.random.default_rng(2)
    norms = np.exp(rng.normal(0, 0.1, (50, 3)))
    norms[30, 2] *= 100  # fc3's gradient spikes at the 31st measurement
    parameters = part(
        ["fc1.weight", "fc2.weight", "fc3.weight"], ["", "", ""], ["grad_norm"], norms[:, :, None]
    )
    steps = np.arange(50) * 10
    evidence = RunEvidence("r", statistics=[statistics_series(steps, parameters=parameters)])
    (finding,) = findings(evidence).findings
    assert (finding.rule, finding.layer, finding.first_step) == (
        "gradient_spike",
        "fc3.weight",
        300,
    )
    total = np.sqrt((norms.astype(np.float32).astype(float) ** 2).sum(axis=1))
    expected = total[30] / statistics.median(total[10:30])
    assert finding.numbers["max_ratio"] == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- depth, units


def test_a_geometric_std_profile_has_its_ratio_as_growth():
    stds = 0.5 * 3.0 ** np.arange(6)
    e2e, growth = depth.depth_profile(stds)
    assert e2e == pytest.approx(3.0**5, rel=8 * F64)
    assert growth == pytest.approx(3.0, rel=8 * F64)


def _depth_evidence(stds_per_step, types):
    names = [f"l{i}" for i in range(len(types))]
    values = np.array(stds_per_step, dtype=np.float32)[:, :, None]
    activations = part(names, types, ["std"], values)
    return RunEvidence(
        "r", statistics=[statistics_series(np.arange(len(values)) * 10, activations)]
    )


def test_exploding_activations_name_the_largest_jump():
    types = ["Linear", "ReLU", "Linear", "ReLU", "Linear", "Linear"]
    grow = [1.0, 0.6, 3.0, 2.0, 40.0, 150.0]  # Linear stds 1, 3, 40, 150: ×150 over 4
    found = findings(_depth_evidence([grow, grow], types)).findings
    (finding,) = found
    assert (finding.rule, finding.layer) == ("activation_depth", "l4")  # 3 → 40 is the jump
    assert finding.numbers["end_to_end"] == pytest.approx(150.0, rel=1e-6)
    assert finding.numbers["growth_per_layer"] == pytest.approx(150.0 ** (1 / 3), rel=1e-6)
    vanish = [1 / v for v in grow]
    (finding,) = findings(_depth_evidence([vanish], types)).findings
    assert "vanish" in finding.message and finding.layer == "l4"
    steady = [1.0, 0.6, 1.1, 0.7, 0.9, 1.2]
    assert not findings(_depth_evidence([steady], types)).findings


def test_dead_units_only_in_relu_layers_and_not_for_non_finite_outputs():
    types = ["Linear", "ReLU", "Tanh"]
    dead = np.array([[0.9, 0.9, 0.0]] * 6, dtype=np.float32)
    non_finite = np.zeros_like(dead)
    values = np.stack([dead, non_finite], axis=-1)
    activations = part(
        ["fc1", "relu1", "tanh"], types, ["dead_fraction", "non_finite_fraction"], values
    )
    evidence = RunEvidence("r", statistics=[statistics_series(np.arange(6), activations)])
    assert [(f.rule, f.layer) for f in findings(evidence).findings] == [("dead_units", "relu1")]
    assert not findings(evidence, dead_units={"fraction": 0.95}).findings
    activations.values[:, 1, 1] = 0.5  # relu1's outputs non-finite: that is another rule's
    assert not [f for f in findings(evidence).findings if f.rule == "dead_units"]


# --------------------------------------------------------------------------- spectra


def test_rank_collapse_compares_the_last_effective_rank_with_the_first():
    evidence = RunEvidence(
        "r",
        spectra=[
            spectrum("a", sample(0, effective_rank=40.0), sample(900, effective_rank=8.0)),
            spectrum("b", sample(0, effective_rank=40.0), sample(900, effective_rank=12.0)),
        ],
    )
    (finding,) = findings(evidence).findings
    assert (finding.rule, finding.layer) == ("rank_collapse", "a")
    assert finding.numbers["share"] == pytest.approx(0.2, rel=8 * F64)


def test_random_spectrum_after_many_steps_and_frozen_weights_are_said_so():
    evidence = RunEvidence(
        "r",
        spectra=[
            spectrum("young", sample(0, num_above_mp_edge=0.0), sample(500, num_above_mp_edge=0.0)),
            spectrum(
                "stuck",
                sample(0, num_above_mp_edge=0.0),
                sample(2000, num_above_mp_edge=0.0, unchanged_since=0),
            ),
            spectrum("learnt", sample(0, num_above_mp_edge=0.0), sample(2000)),
        ],
    )
    (finding,) = findings(evidence).findings
    assert (finding.rule, finding.layer) == ("random_spectrum", "stuck")
    assert "has not changed since step 0" in finding.message


def test_alpha_outside_its_range_is_info_and_a_conv_far_above_its_neighbours_a_warning():
    convs = [
        spectrum(f"c{i}", sample(0), sample(100, operator_norm=norm), kind="Conv2d")
        for i, norm in enumerate([2.0, 2.5, 30.0, 3.0, 2.2])
    ]
    convs.append(spectrum("fc", sample(0), sample(100, alpha=7.5)))
    found = findings(RunEvidence("r", spectra=convs)).findings
    assert [(f.rule, f.severity, f.layer) for f in found] == [
        ("operator_norm_outlier", "warning", "c2"),
        ("alpha_range", "info", "fc"),
    ]
    neighbours = statistics.median([2.0, 2.5, 3.0, 2.2])
    assert found[0].numbers["neighbours_median"] == pytest.approx(neighbours, rel=8 * F64)


# --------------------------------------------------------------------------- channels


def test_redundant_channels_match_a_brute_force_count():
    rng = np.random.default_rng(3)
    matrix = rng.uniform(-1, 1, (12, 12))
    matrix = (matrix + matrix.T) / 2
    np.fill_diagonal(matrix, 1.0)
    matrix[4, :] = matrix[:, 4] = np.nan  # a dead channel
    redundant, pairs = channels.redundant_channels(matrix, 0.8)
    brute = [
        (i, j)
        for i in range(12)
        for j in range(12)
        if i != j and np.isfinite(matrix[i, j]) and abs(matrix[i, j]) > 0.8
    ]
    assert redundant == len({i for i, _ in brute})
    assert pairs == len(brute) // 2


def _correlation(layer, matrix=None, cross=False, mean=None, step=100):
    return CorrelationLayer(
        f"compare/{layer}" if cross else f"correlation/{layer}",
        layer,
        cross,
        step,
        matrix,
        mean,
        "a/" + layer,
        "b/" + layer,
        0,
    )


def test_redundant_channels_and_seeds_that_do_not_match_early():
    duplicated = np.kron(np.eye(4), np.ones((4, 4)))  # 4 groups of 4 identical channels
    evidence = RunEvidence(
        "r",
        correlations=[
            _correlation("relu1", duplicated),
            _correlation("conv1", cross=True, mean=0.3),
            _correlation("conv2", cross=True, mean=0.8),
            _correlation("conv3", cross=True, mean=0.2),  # late: not judged
            _correlation("conv4", cross=True, mean=0.2),
        ],
    )
    found = findings(evidence).findings
    assert [(f.rule, f.layer) for f in found] == [
        ("redundant_channels", "relu1"),
        ("seeds_disagree", "conv1"),
    ]
    assert found[0].numbers == {"redundant_channels": 16.0, "channels": 16.0}


# --------------------------------------------------------------------------- the engine


def test_a_failing_rule_is_a_warning_and_the_others_still_run(monkeypatch):
    def broken(evidence, settings, severity):
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(engine.RULE_CHECKS, "alpha_range", broken)
    evidence = RunEvidence(
        "r",
        spectra=[spectrum("a", sample(0, effective_rank=40.0), sample(900, effective_rank=8.0))],
    )
    result = findings(evidence)
    assert [f.rule for f in result.findings] == ["rank_collapse"]
    assert any("rule alpha_range could not check run 'r'" in w for w in result.warnings)


def test_rules_off_and_rules_without_data_are_not_checked():
    evidence = RunEvidence("r", ratios=[ratio_series({"a.weight": [1e-3] * 3})])
    result = engine.run_rules(evidence, thresholds.resolve(off=["learning_rate_network"]))
    assert result.checked == ["non_finite", "learning_rate_parameter"]


def test_one_jump_between_consecutive_weight_layers_is_named_without_a_trend():
    types = ["Linear", "Linear", "Linear", "Linear"]
    stds = [1.0, 1.1, 15.0, 14.0]  # end to end 14x over 3 steps: no trend, one 13.6x jump
    (finding,) = findings(_depth_evidence([stds], types)).findings
    assert (finding.rule, finding.layer) == ("activation_depth", "l2")
    assert finding.numbers["largest_jump"] == pytest.approx(15.0 / 1.1, rel=1e-6)
    assert "l2: its output's std is 14× above l1's" in finding.message
    assert not findings(_depth_evidence([stds], types), activation_depth={"jump": 20}).findings


@pytest.mark.parametrize(
    "name",
    [
        "bert.embeddings.LayerNorm.weight",
        "model.resnet.embedder.embedder.normalization.weight",
        "layer1.0.bn1.weight",
        "transformer.ln_f.weight",
        "blocks.3.norm1.weight",
    ],
)
def test_normalisation_gains_are_not_judged_even_without_their_type(name):
    evidence = RunEvidence(
        "r", ratios=[ratio_series({name: [1e-6] * 20, "fc.weight": [1e-3] * 20})]
    )
    assert not findings(evidence).findings
    judged = findings(evidence, learning_rate_parameter={"biases": 1}).findings
    assert [f.layer for f in judged] == [name]


def test_a_schedule_that_decayed_is_info_not_an_error_nor_a_warning_per_parameter():
    # In range for 40 measurements, then decayed 100x (a cosine schedule's end).
    names = {f"fc{i}.weight": [1e-3] * 40 + [1e-5] * 25 for i in range(5)}
    (finding,) = findings(RunEvidence("r", ratios=[ratio_series(names)])).findings
    assert (finding.rule, finding.severity) == ("learning_rate_network", "info")
    assert "a learning-rate schedule that decayed" in finding.message
    # Never in range: an error, as before.
    low = {f"fc{i}.weight": [1e-5] * 65 for i in range(5)}
    (finding,) = findings(RunEvidence("r", ratios=[ratio_series(low)])).findings
    assert (finding.rule, finding.severity) == ("learning_rate_network", "error")


def test_relu6_and_the_networks_output_are_not_saturated_units():
    types = ["Linear", "ReLU6", "Tanh", "Linear", "Sigmoid"]
    names = ["fc1", "act1", "tanh", "fc2", "out"]
    values = np.full((6, 5, 1), 0.8, dtype=np.float32)  # 80% at a bound everywhere
    activations = part(names, types, ["saturated_fraction"], values)
    evidence = RunEvidence("r", statistics=[statistics_series(np.arange(6), activations)])
    assert {f.layer for f in findings(evidence).findings} == {"fc1", "tanh", "fc2"}


def test_no_jump_across_a_normalisation_layer_nor_into_the_last_weight_layer():
    # Weight layers l0, l2, l3, l4: end to end 30x (no trend: under 100x).
    across = ["Linear", "LayerNorm", "Linear", "Linear", "Linear"]
    stds = [0.05, 1.0, 1.0, 1.1, 1.5]  # 20x from l0 to l2, across the LayerNorm
    assert not findings(_depth_evidence([stds], across)).findings
    plain = ["Linear", "ReLU", "Linear", "Linear", "Linear"]
    (finding,) = findings(_depth_evidence([stds], plain)).findings  # no norm between: 20x
    assert (finding.layer, finding.numbers["largest_jump"]) == ("l2", pytest.approx(20.0))
    into_logits = [1.0, 1.0, 1.1, 1.2, 40.0]  # 33x into the last weight layer only
    assert not findings(_depth_evidence([into_logits], plain)).findings


def test_a_repaired_explosion_is_info_and_says_when_it_was():
    types = ["Linear", "Linear", "Linear", "Linear"]
    grow, steady = [1.0, 10.0, 100.0, 1000.0], [1.0, 1.2, 1.1, 1.3]
    (finding,) = findings(_depth_evidence([grow, grow, steady], types)).findings
    assert finding.severity == "info" and "gone by step 20" in finding.message
    assert (finding.first_step, finding.last_step) == (0, 10)


def test_a_spike_comes_from_the_layer_whose_squared_norm_rose_most():
    norms = np.array([30.0, 1.0, 0.5])  # a big layer tripled, a tiny bias went 100x
    ratios = np.array([3.0, 100.0, 1.0])
    assert gradient_spikes.spike_source(norms, ratios) == 0
    usual = norms / ratios
    assert np.argmax(norms**2 - usual**2) == 0  # the reference: the rise of the sum's terms


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gradient_spike": {"window": 1e7}}, "whole number from 1 to 10000"),
        ({"dead_units": {"recent": 2.5}}, "whole number from 1 to 10000"),
        ({"dead_units": {"fraction": 1.5}}, "fraction from 0 to 1"),
        ({"alpha_range": {"low": 0}}, "a number above 0"),
    ],
)
def test_settings_out_of_their_range_say_what_to_give(overrides, message):
    with pytest.raises(ValueError, match=message):
        thresholds.resolve(overrides)


def test_settings_of_the_wrong_type_say_what_to_pass():
    with pytest.raises(TypeError, match=r"give a mapping of its settings"):
        thresholds.resolve({"dead_units": 0.8})
    with pytest.raises(TypeError, match=r"give a list of rule names, e.g. \['alpha_range'\]"):
        thresholds.resolve(off="alpha_range")
