"""The `deepscope` command: `deepscope diagnose LOGDIR` (the findings in the terminal).

    deepscope diagnose runs/demo                  # a table, most severe first
    deepscope diagnose runs/demo --json           # the /findings body
    deepscope diagnose runs/exp --fail-on error   # exit 1 when an error is found (CI, sweeps)

Exit status: 0 when no finding at or above `--fail-on` (default: warning)
exists, 1 when one does, 2 for a usage error or a log dir that cannot be read.
Plugin side only: no torch is imported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence

from deepscope.findings.finding import SEVERITIES
from deepscope.tb_plugin.loader import DEFAULT_SAMPLES

EXIT_FOUND = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepscope", description="deepscope's command line: look inside a trained network."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    diagnose = commands.add_parser(
        "diagnose",
        help="say which layer is the problem: the findings of a log dir",
        description=(
            "The findings of a log dir (the tab's Findings section), most severe first. "
            "Rules and thresholds: docs/findings.md."
        ),
    )
    diagnose.add_argument("logdir", help="the log dir, as given to tensorboard --logdir")
    diagnose.add_argument(
        "--run", action="append", default=None, help="only this run (repeat for more)"
    )
    diagnose.add_argument("--json", action="store_true", help="print the /findings body as JSON")
    diagnose.add_argument(
        "--fail-on",
        choices=[*SEVERITIES, "never"],
        default="warning",
        help="exit 1 when a finding at or above this severity exists (default: warning)",
    )
    diagnose.add_argument(
        "--show",
        choices=SEVERITIES,
        default="info",
        help="the least severe findings the table shows (default: info, all)",
    )
    diagnose.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="RULE.SETTING=VALUE",
        help="change a threshold or a severity, e.g. dead_units.fraction=0.9",
    )
    diagnose.add_argument(
        "--off", action="append", default=[], metavar="RULE", help="turn a rule off"
    )
    diagnose.add_argument(
        "--samples",
        type=_samples,
        default=DEFAULT_SAMPLES,
        help=f"events kept per series, as tensorboard's --samples_per_plugin (default "
        f"{DEFAULT_SAMPLES}, tensorboard's for deepscope; 0: all)",
    )
    return parser


def _samples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give the events to keep per series, 0 for all")
    return value


def exit_status(report: dict, fail_on: str) -> int:
    """1 when a finding at or above `fail_on` exists ("never": 0)."""
    if fail_on == "never":
        return 0
    bar = SEVERITIES.index(fail_on)
    found = any(SEVERITIES.index(f["severity"]) <= bar for f in report["findings"])
    return EXIT_FOUND if found else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from deepscope.diagnosis import LogDirError, diagnose
    from deepscope.findings import thresholds

    try:
        overrides = thresholds.parse_assignments(args.set)
        report = diagnose(
            args.logdir, runs=args.run, overrides=overrides, off=args.off, samples=args.samples
        )
    except (LogDirError, ValueError) as error:
        print(f"deepscope diagnose: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        from deepscope.findings.table import render

        width = shutil.get_terminal_size((100, 24)).columns
        sys.stdout.write(render(report, args.logdir, width=min(width, 120), least=args.show))
    return exit_status(report, args.fail_on)


if __name__ == "__main__":
    sys.exit(main())
