"""Confusion matrices through a real `tensorboard` process, on both loaders (the Python
multiplexer and the Rust data server).

The log dir is written as a user writes it: an MLP trained on scikit-learn's digits under
`deepscope.watch` with `ConfusionMatrices` on held-out digits once per epoch, plus a run
with damaged events between good ones. The served counts are numpy's count of the final
model's argmax (the last measurement) and scikit-learn's metrics of them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from tests import confusion_data as data
from tests.conftest import get, wait_until
from tests.kind_cases.confusion import CLASS_NAMES, labels_and_predictions
from tests.route_helpers import LOADERS, number

ROUTE = "/data/plugin/deepscope"
EPOCHS = 3
EPS64 = float(np.finfo(np.float64).eps)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("confusion-tb")
    measurer, _, _, vy = data.log_training(logdir, epochs=EPOCHS)
    labels, predictions = labels_and_predictions("damaged", 0)
    with data.writer(logdir / "damaged") as w:
        w.add_confusion_matrix(data.TAG, labels, predictions, list(CLASS_NAMES), 0, 10.0)
        for step, (build, _) in enumerate(data.DAMAGED.values(), start=1):
            w.file_writer.add_summary(build(data.TAG), step, 10.0 + step)
        w.add_confusion_matrix(
            data.TAG, labels, predictions, list(CLASS_NAMES), len(data.DAMAGED) + 1, 20.0
        )
    (logdir / "reference.json").write_text(
        json.dumps({"counts": measurer.last_counts.tolist(), "samples": len(vy)})
    )
    return logdir


@pytest.fixture(scope="module", params=LOADERS)
def served(request, logdir, tensorboard_server):
    base = tensorboard_server(logdir, load_fast=request.param)

    def all_read():
        status, body = get(f"{base}{ROUTE}/confusion_series?run=digits&tag={data.TAG}")
        done = status == 200 and len(json.loads(body)["steps"]) == EPOCHS
        status, body = get(f"{base}{ROUTE}/confusion_series?run=damaged&tag={data.TAG}")
        return done and status == 200 and len(json.loads(body)["steps"]) == 2

    wait_until(all_read, timeout=120, what="every confusion step to be read")
    return base, json.loads((logdir / "reference.json").read_text())


def test_the_newest_matrix_and_its_metrics(served):
    base, reference = served
    status, text = get(f"{base}{ROUTE}/confusion?run=digits&tag={data.TAG}")
    assert status == 200, text
    body = json.loads(text)
    counts = np.array(reference["counts"])
    assert body["counts"] == reference["counts"] and body["samples"] == reference["samples"]
    assert body["class_names"] == list(data.DIGITS)
    # sklearn on samples expanded from the counts: the same metrics by construction.
    labels = np.repeat(np.arange(10), counts.sum(axis=1))
    predictions = np.concatenate([np.repeat(np.arange(10), row) for row in counts])
    p, r, f, s = skm.precision_recall_fscore_support(
        labels, predictions, labels=np.arange(10), zero_division=np.nan
    )
    for c, entry in enumerate(body["per_class"]):
        assert entry["support"] == s[c]
        assert number(entry["f1"]) == pytest.approx(f[c], abs=8 * EPS64, nan_ok=True)
        assert number(entry["recall"]) == pytest.approx(r[c], abs=8 * EPS64, nan_ok=True)
    assert body["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions), abs=4 * EPS64)


def test_damaged_steps_are_their_own_errors(served):
    base, _ = served
    status, text = get(f"{base}{ROUTE}/confusion_series?run=damaged&tag={data.TAG}")
    body = json.loads(text)
    assert status == 200 and body["steps"] == [0, len(data.DAMAGED) + 1]
    assert f"{len(data.DAMAGED)} event(s)" in body["warnings"][0]
    for step, (_, said) in enumerate(data.DAMAGED.values(), start=1):
        status, text = get(f"{base}{ROUTE}/confusion?run=damaged&tag={data.TAG}&step={step}")
        assert status == 200, text
        assert said in json.loads(text)["error"]
