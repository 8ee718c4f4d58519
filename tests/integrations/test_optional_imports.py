"""The integrations are optional: deepscope imports without them, and says what to install.

Each check runs in a fresh interpreter whose import of the framework is
blocked (`sys.modules[name] = None` makes `import name` raise ImportError), as
on a machine where the extra is not installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import deepscope.integrations

BLOCK = {
    "lightning": ["lightning", "lightning.pytorch", "pytorch_lightning"],
    "transformers": ["transformers", "accelerate"],
}


def _run(blocked: list[str], code: str) -> subprocess.CompletedProcess:
    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120
    )


def test_deepscope_imports_without_either_framework_and_the_callbacks_say_what_to_install():
    blocked = BLOCK["lightning"] + BLOCK["transformers"]
    done = _run(
        blocked,
        "import deepscope, deepscope.integrations\n"
        "assert callable(deepscope.watch) and deepscope.SummaryWriter\n"
        "for extra in ('lightning', 'transformers'):\n"
        "    try:\n"
        "        __import__('deepscope.integrations.' + extra)\n"
        "    except ImportError as error:\n"
        "        print(extra, '->', error)\n",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout
    for extra, line in zip(("lightning", "transformers"), lines):
        assert line.startswith(f"{extra} ->") and f"pip install deepscope[{extra}]" in line, line


def test_lightning_needs_only_one_of_its_two_packages(monkeypatch):
    """With lightning.pytorch blocked, the callback derives from pytorch_lightning's Callback."""
    pl = pytest.importorskip("pytorch_lightning")
    for name in ("lightning", "lightning.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)
    # The module's source loaded afresh under another name (the real one stays as it is).
    spec = importlib.util.spec_from_file_location(
        "deepscope_lightning_alone", Path(deepscope.integrations.__file__).with_name("lightning.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.DeepscopeCallback.__mro__[1:] == (pl.Callback, object)
    assert isinstance(module.DeepscopeCallback(), pl.Callback)


@pytest.mark.parametrize(
    ("extra", "wanted"),
    [("lightning", {"lightning"}), ("transformers", {"transformers", "accelerate"})],
)
def test_the_extras_name_the_frameworks_and_not_torch(extra, wanted):
    requires = importlib.metadata.metadata("deepscope").get_all("Requires-Dist") or []
    named = [r for r in requires if f'extra == "{extra}"' in r]
    names = {r.split(";")[0].split(">")[0].split("=")[0].strip() for r in named}
    assert names == wanted, named
    assert not any(r.startswith("torch") for r in named), named
