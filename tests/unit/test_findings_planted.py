"""Planted faults (tests/findings_data.py: small real training runs) are each the top
finding of their run, with the right layer and steps; the demo's healthy runs have no
finding above "info"; `deepscope diagnose` says the same as `deepscope.diagnose`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import deepscope
from deepscope import cli
from deepscope.diagnosis import LogDirError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def planted_report(planted_logdir):
    logdir, truths = planted_logdir
    return logdir, truths, deepscope.diagnose(logdir)


@pytest.mark.parametrize(
    "run",
    [
        "lr-too-high",
        "dead-relu",
        "nan-at-step",
        "frozen-layer",
        "exploding-init",
        "duplicated-channels",
    ],
)
def test_each_planted_fault_is_its_runs_top_finding(planted_report, run):
    _, truths, report = planted_report
    truth = truths[run]
    found = [f for f in report["findings"] if f["run"] == run]
    assert found, f"{run}: no finding"
    top = found[0]
    assert top["rule"] == truth.rule, [(f["rule"], f["layer"]) for f in found]
    if truth.layer:
        assert top["layer"].split(".")[0] == truth.layer.split(".")[0], top
    else:  # exploding activations: one of the layers that explode (not the first)
        assert top["layer"] in {"fc2", "fc3", "fc4", "fc5", "fc6"}, top
    # The finding's steps lie inside the fault's.
    assert truth.first_step <= top["first_step"] <= top["last_step"] <= truth.last_step, top
    assert top["evidence"]["step"] in range(truth.first_step, truth.last_step + 1)
    # It says so in words, with numbers.
    assert top["layer"].split(".")[0] in top["message"] and any(c.isdigit() for c in top["message"])


def test_the_nan_is_found_at_the_step_it_was_planted(planted_report):
    from tests.findings_data import NAN_STEP

    _, _, report = planted_report
    (finding,) = [f for f in report["findings"] if f["rule"] == "non_finite"]
    assert finding["run"] == "nan-at-step" and finding["severity"] == "error"
    assert finding["first_step"] == NAN_STEP  # measured every 5 steps: 60 is measured
    assert finding["layer"] == "fc2.weight"  # poisoned: where it started, not fc1 it reached


def test_only_the_planted_runs_have_findings_above_info_except_symptoms_of_the_nan(planted_report):
    _, _, report = planted_report
    serious = [f for f in report["findings"] if f["severity"] != "info"]
    for finding in serious:
        assert finding["run"] != "nan-at-step" or finding["last_step"] >= 60


def test_the_demos_healthy_runs_have_no_finding_above_info(demo_logdir):
    report = deepscope.diagnose(demo_logdir)
    assert sorted(report["runs"]) == [
        "adamw-lr1e-3",
        "adamw-lr1e-3-seed1",
        "compare-seed0-vs-seed1",
        "sgd-lr0.01",
    ]
    above_info = [
        (f["run"], f["rule"], f["layer"]) for f in report["findings"] if f["severity"] != "info"
    ]
    assert above_info == []
    # Every rule had something to read in the training runs but the cross-network one,
    # which reads the comparison's correlations (and only them).
    rules = [rule["name"] for rule in report["rules"]]
    assert report["checked"]["adamw-lr1e-3"] == [r for r in rules if r != "seeds_disagree"]
    assert report["checked"]["compare-seed0-vs-seed1"] == ["non_finite", "seeds_disagree"]


def test_cli_json_is_the_python_report_and_the_exit_status_gates(planted_logdir, capsys):
    logdir, _ = planted_logdir
    assert cli.main(["diagnose", str(logdir), "--json", "--fail-on", "never"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(deepscope.diagnose(logdir)))
    # The NaN run has an error: --fail-on error fails; the frozen layer's run alone does not.
    assert cli.main(["diagnose", str(logdir), "--fail-on", "error"]) == cli.EXIT_FOUND
    assert cli.main(["diagnose", str(logdir), "--run", "frozen-layer", "--fail-on", "error"]) == 0
    assert (
        cli.main(["diagnose", str(logdir), "--run", "frozen-layer", "--fail-on", "warning"])
        == cli.EXIT_FOUND
    )
    table = capsys.readouterr().out
    assert "WARNING  frozen-layer  fc2  steps 0–1000  [random_spectrum]" in table
    assert "Try: Check that the layer is trained" in table


def test_cli_settings_change_the_findings(planted_logdir, capsys):
    logdir, _ = planted_logdir
    args = ["diagnose", str(logdir), "--run", "dead-relu", "--json", "--fail-on", "never"]
    cli.main(args)
    assert "dead_units" in {f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]}
    cli.main([*args, "--off", "dead_units"])
    assert "dead_units" not in {f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]}
    cli.main([*args, "--set", "dead_units.severity=error"])
    body = json.loads(capsys.readouterr().out)
    assert body["findings"][0]["rule"] == "dead_units" and body["counts"]["error"] >= 1


def test_cli_bad_input_exits_2_with_a_message_saying_what_to_do(tmp_path, planted_logdir, capsys):
    logdir, _ = planted_logdir
    assert cli.main(["diagnose", str(tmp_path / "missing")]) == cli.EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["diagnose", str(tmp_path)]) == cli.EXIT_USAGE
    assert "holds no deepscope data" in capsys.readouterr().err
    assert cli.main(["diagnose", str(logdir), "--run", "nope"]) == cli.EXIT_USAGE
    assert "no run named 'nope'" in capsys.readouterr().err
    assert cli.main(["diagnose", str(logdir), "--set", "dead_units.fractoin=1"]) == cli.EXIT_USAGE
    assert "its settings: fraction, recent, most, severity" in capsys.readouterr().err
    with pytest.raises(LogDirError):
        deepscope.diagnose(tmp_path / "missing")


def test_the_command_is_installed_and_imports_no_torch(planted_logdir):
    logdir, _ = planted_logdir
    script = (
        "import sys\n"
        "from deepscope.cli import main\n"
        f"status = main(['diagnose', {str(logdir)!r}, '--json', '--fail-on', 'never'])\n"
        "assert 'torch' not in sys.modules, 'the read side imported torch'\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["counts"]["error"] == 1
    installed = Path(sys.executable).with_name("deepscope")
    done = subprocess.run([str(installed), "diagnose", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--fail-on" in done.stdout
