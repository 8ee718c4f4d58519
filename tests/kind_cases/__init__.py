"""Each kind's test cases: one module per kind of `deepscope.kinds.KINDS`, named as the kind.

The shared tests find a kind's cases by its name, as the plugin finds its routes:
`tests/kind_cases/<kind>.py` declares

- `good(tag, step, cross=False) -> damaged_logs.Good`: a good step's summary (from the
  kind's public builder) and the values a reader must serve for it, computed
  independently of the writer;
- `MAIN_ARRAY`: the field of the kind's `*Step` holding its main array;
- `damages() -> dict`: the kind's own damages (damage name → function(good) → damaged
  `Summary`), on top of those every kind gets (tests/damaged_logs.py's `damages`);
- `STEP_ROUTES` and `SERIES_ROUTES`: query arguments of each of the kind's routes for
  the damaged-data fuzz (tests/damaged_fuzz.py's tables are their union);
- optionally the fuzz's answer checks: `possible_numbers(route, body)` (numbers served
  without an error that cannot be right), `good_values(series, route, step, body)` (a
  good step against the reference), `check_series(series, request, body, problem)` (a
  multi-step route other than `<kind>_steps`; a tensor kind's table of rows is
  `damaged_fuzz.check_rows`); and `NAMES`, the names its good steps carry;
- for a blob kind, `example() -> (*Info, *Step)`: the good step of
  tests/unit/test_blob_steps.py.

A kind without its module, or a module without one of these, fails the tests that
need it with `MissingCases` naming the file and the attribute.
"""

from __future__ import annotations

import importlib
import types

from deepscope import kinds

# What every kind's module declares (`example` too for a blob kind: test_blob_steps asks).
REQUIRED = ("good", "MAIN_ARRAY", "damages", "STEP_ROUTES", "SERIES_ROUTES")


class MissingCases(LookupError):
    """A kind has no test-case module, or its module lacks an attribute."""


def module(kind: str) -> types.ModuleType:
    """`tests.kind_cases.<kind>`; `MissingCases` naming the file when there is none."""
    name = f"{__name__}.{kind}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        raise MissingCases(
            f"kind {kind!r} has no test cases: add tests/kind_cases/{kind}.py "
            f"(module {name}; see docs/adding_a_kind.md, 'Tests')"
        ) from None


def attribute(kind: str, name: str):
    """`name` of `kind`'s module; `MissingCases` naming the module and attribute otherwise."""
    found = getattr(module(kind), name, None)
    if found is None:
        raise MissingCases(
            f"tests/kind_cases/{kind}.py declares no {name!r} "
            f"(module {__name__}.{kind}; see docs/adding_a_kind.md, 'Tests')"
        )
    return found


def optional(kind: str, name: str, default=None):
    """`name` of `kind`'s module, or `default` when it does not declare it."""
    return getattr(module(kind), name, default)


def problem(kind: str) -> str | None:
    """Why `kind`'s cases are incomplete (its module or a required attribute missing)."""
    try:
        for name in REQUIRED:
            attribute(kind, name)
    except MissingCases as error:
        return str(error)
    return None


def covered() -> list[str]:
    """The kinds of `kinds.KINDS`, in registry order, whose module declares all of `REQUIRED`."""
    return [kind.name for kind in kinds.KINDS if problem(kind.name) is None]


def problems() -> dict[str, str]:
    """Kind → why its cases are incomplete, for every kind of `kinds.KINDS` that is."""
    found = {kind.name: problem(kind.name) for kind in kinds.KINDS}
    return {name: why for name, why in found.items() if why is not None}
