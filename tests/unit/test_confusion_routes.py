"""The `confusion` and `confusion_series` routes, in process through TensorBoard's
multiplexer data provider and its own WSGI app.

Log dirs are written with `add_confusion_matrix` from seeded labels and predictions
(tests/confusion_data.py), damaged events by hand. Every number served is checked against
scikit-learn's confusion_matrix and precision_recall_fscore_support of what was logged
(NaN zero division), or numpy where sklearn has no counterpart (the most-confused pairs).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from deepscope.tb_plugin.confusion_routes import decode_step
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from deepscope.tb_plugin.tensor_kind import MalformedEvent
from tests import confusion_data as data
from tests.kind_cases.confusion import CLASS_NAMES, labels_and_predictions
from tests.route_helpers import multiplexer_provider, number

EPS64 = float(np.finfo(np.float64).eps)


def _run(name: str) -> str:
    return "damaged-" + name.replace(" ", "-")


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("confusion")
    synthetic = data.log_synthetic(logdir)
    labels, predictions = labels_and_predictions("damaged", 0)
    for name, (build, _) in data.DAMAGED.items():
        with data.writer(logdir / _run(name)) as w:
            w.add_confusion_matrix(data.TAG, labels, predictions, list(CLASS_NAMES), 0, 10.0)
            w.file_writer.add_summary(build(data.TAG), 1, 11.0)
            w.add_confusion_matrix(data.TAG, labels, predictions, list(CLASS_NAMES), 2, 12.0)
    with data.writer(logdir / "unnamed") as w:  # no class names; class 2 never seen
        w.add_confusion_matrix("c", [0, 1, 1, 3], [0, 1, 0, 3], num_classes=4, global_step=0)
        w.add_update_ratios("update", {"fc.weight": 1e-3}, global_step=0)
    return logdir, synthetic


@pytest.fixture(scope="module")
def client(logged):
    provider = multiplexer_provider(logged[0])[1]
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    return werkzeug_test.Client(app)


def get(client, route: str, **query):
    response = client.get(f"/data/plugin/deepscope/{route}", query_string=query)
    return response.status_code, response.get_data(as_text=True)


def get_json(client, route: str, **query) -> dict:
    status, body = get(client, route, **query)
    assert status == 200, body
    return json.loads(body)


def _sk(step: int):
    labels, predictions = labels_and_predictions(f"synthetic/{data.TAG}", step)
    every = np.arange(len(CLASS_NAMES))
    return labels, predictions, every


@pytest.mark.parametrize("step", data.SYNTHETIC_STEPS)
def test_one_step_against_sklearn(client, step):
    body = get_json(client, "confusion", run="synthetic", tag=data.TAG, step=step)
    labels, predictions, every = _sk(step)
    np.testing.assert_array_equal(
        body["counts"], skm.confusion_matrix(labels, predictions, labels=every)
    )
    assert body["class_names"] == list(CLASS_NAMES) and body["on"] == "validation"
    assert body["steps"] == list(data.SYNTHETIC_STEPS) and body["error"] is None
    p, r, f, s = skm.precision_recall_fscore_support(
        labels, predictions, labels=every, zero_division=np.nan
    )
    for c, entry in enumerate(body["per_class"]):
        assert entry["name"] == CLASS_NAMES[c] and entry["support"] == s[c]
        for field, want in (("precision", p), ("recall", r), ("f1", f)):
            assert number(entry[field]) == pytest.approx(want[c], abs=8 * EPS64), field
    assert body["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions), abs=4 * EPS64)
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            labels, predictions, labels=every, average=average, zero_division=np.nan
        )
        assert body[average]["f1"] == pytest.approx(f, abs=8 * EPS64)
        assert body[average]["precision"] == pytest.approx(p, abs=8 * EPS64)
        assert body[average]["recall"] == pytest.approx(r, abs=8 * EPS64)
    counts = np.array(body["counts"])
    off = [(counts[i, j], i, j) for i in every for j in every if i != j and counts[i, j]]
    want_pairs = sorted(off, key=lambda t: (-t[0], t[1], t[2]))[:10]
    got = [(p["count"], p["true"], p["predicted"]) for p in body["most_confused"]]
    assert got == [(int(c), int(i), int(j)) for c, i, j in want_pairs]
    for pair in body["most_confused"]:
        row = counts[pair["true"]]
        assert pair["fraction"] == pytest.approx(pair["count"] / row.sum(), abs=4 * EPS64)
        assert pair["true_name"] == CLASS_NAMES[pair["true"]]


def test_newest_step_by_default_and_top_limits_the_pairs(client):
    body = get_json(client, "confusion", run="synthetic", tag=data.TAG, top=2)
    assert body["step"] == data.SYNTHETIC_STEPS[-1] and len(body["most_confused"]) == 2
    status, text = get(client, "confusion", run="synthetic", tag=data.TAG, top=-1)
    assert status == 400 and "top must be in" in text


def test_series_against_sklearn_and_name_selection(client, logged):
    body = get_json(client, "confusion_series", run="synthetic", tag=data.TAG)
    assert body["steps"] == list(data.SYNTHETIC_STEPS) and body["warnings"] == []
    assert body["classes"] == list(CLASS_NAMES)
    for row, step in enumerate(data.SYNTHETIC_STEPS):
        labels, predictions, every = _sk(step)
        assert body["accuracy"][row] == pytest.approx(
            skm.accuracy_score(labels, predictions), abs=4 * EPS64
        )
        f = skm.f1_score(labels, predictions, labels=every, average="macro", zero_division=np.nan)
        assert body["macro_f1"][row] == pytest.approx(f, abs=8 * EPS64)
        r = skm.recall_score(labels, predictions, labels=every, average=None, zero_division=np.nan)
        np.testing.assert_allclose([number(v) for v in body["recall"][row]], r, atol=8 * EPS64)
        assert body["samples"][row] == len(labels)
    picked = get_json(client, "confusion_series", run="synthetic", tag=data.TAG, name="dog")
    assert picked["classes"] == ["dog"]
    assert [row[0] for row in picked["f1"]] == [row[1] for row in body["f1"]]
    status, text = get(client, "confusion_series", run="synthetic", tag=data.TAG, name="cow")
    assert status == 404 and "no class 'cow'" in text and "dog" in text


def test_a_series_without_names_is_served_with_index_names_and_undefined_as_nan(client):
    body = get_json(client, "confusion", run="unnamed", tag="c")
    assert body["class_names"] == ["0", "1", "2", "3"]
    never = body["per_class"][2]
    assert never["support"] == 0 and never["precision"] == "NaN" and never["recall"] == "NaN"
    assert body["per_class"][0]["precision"] == pytest.approx(0.5, abs=EPS64)  # 1 of 2 predicted


@pytest.mark.parametrize("name", list(data.DAMAGED))
def test_a_damaged_step_is_its_own_error_and_the_others_are_served(client, name):
    said = data.DAMAGED[name][1]
    run = _run(name)
    series = get_json(client, "confusion_series", run=run, tag=data.TAG)
    assert series["steps"] == [0, 2]
    assert len(series["warnings"]) == 1 and "step 1" in series["warnings"][0]
    assert said in series["warnings"][0]
    body = get_json(client, "confusion", run=run, tag=data.TAG, step=1)
    assert body["step"] == 1 and said in body["error"] and "counts" not in body
    assert get_json(client, "confusion", run=run, tag=data.TAG, step=2)["error"] is None


def test_errors_for_other_kinds_unknown_tags_and_steps(client):
    status, text = get(client, "confusion", run="unnamed", tag="update")
    assert status == 400 and "update_ratios" in text
    status, text = get(client, "confusion", run="unnamed", tag="nope")
    assert status == 404
    status, text = get(client, "confusion", run="synthetic", tag=data.TAG, step=7)
    assert status == 404 and "its steps: 0, 10, 20" in text
    status, text = get(client, "confusion_series", run="synthetic")
    assert status == 400 and "tag" in text


def test_decode_step_refuses_a_string_vector():
    with pytest.raises(MalformedEvent, match="string tensor of shape"):
        decode_step(np.array([b"a", b"b"], dtype=object), 4)
