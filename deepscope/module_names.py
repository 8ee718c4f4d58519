"""Module and parameter names as users know them, whatever wraps the model.

`torch.compile(model)` returns an `OptimizedModule` whose submodules and
parameters are all named `_orig_mod.<name>`, and compiling a submodule puts
`_orig_mod.` in the middle of a name ("blocks.0._orig_mod.attn"). Names shown
to users, written as tags, or accepted as `layers=` never carry it: every
name here has each `_orig_mod.` segment removed, and a layer may be asked for
by either spelling.

Measurements that run the model on a probe (correlations, saliency) run the
wrapped eager module (`eager_module`): forward hooks registered after
compilation are not always called by a compiled graph, and the probe's cost
does not matter next to a recompilation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

COMPILE_PREFIX = "_orig_mod"


def strip_compile_prefix(name: str) -> str:
    """`name` without any `_orig_mod` segment: "_orig_mod.fc1.weight" -> "fc1.weight"."""
    if COMPILE_PREFIX not in name:
        return name
    return ".".join(part for part in name.split(".") if part != COMPILE_PREFIX)


def eager_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module `torch.compile` wrapped (repeatedly unwrapped), or `model` itself."""
    while isinstance(getattr(model, COMPILE_PREFIX, None), torch.nn.Module):
        model = getattr(model, COMPILE_PREFIX)
    return model


def is_compiled(model: torch.nn.Module) -> bool:
    """Whether `model` or any of its submodules was wrapped by `torch.compile`."""
    return any(
        name == COMPILE_PREFIX or name.endswith("." + COMPILE_PREFIX)
        for name, _ in model.named_modules()
    )


def named_modules(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
    """`model.named_modules()` with user-facing names; each module once.

    A compiled wrapper and the module it wraps get the same user name; only
    the wrapped (eager) module is yielded.
    """
    seen: set[str] = set()
    for name, module in eager_module(model).named_modules():
        if isinstance(getattr(module, COMPILE_PREFIX, None), torch.nn.Module):
            continue  # the wrapper of a compiled submodule: its _orig_mod comes next
        user_name = strip_compile_prefix(name)
        if user_name in seen:
            continue
        seen.add(user_name)
        yield user_name, module


def named_parameters(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """`model.named_parameters()` with user-facing names."""
    for name, param in eager_module(model).named_parameters():
        yield strip_compile_prefix(name), param


_NAMES_LISTED = 20


def module_name_error(model: torch.nn.Module, names: Sequence[str], what: str) -> ValueError:
    """A ValueError naming the unknown `names` and listing the model's (user) module names."""
    known = [name for name, _ in named_modules(model) if name]
    listed = ", ".join(known[:_NAMES_LISTED])
    if len(known) > _NAMES_LISTED:
        listed += f", ... and {len(known) - _NAMES_LISTED} more"
    return ValueError(
        f"{what}: no module named {', '.join(repr(n) for n in names)}; names are as in "
        f"model.named_modules(): {listed or '(the model has no submodules)'}"
    )


def find_modules(model: torch.nn.Module, names: Sequence[str], what: str) -> list[torch.nn.Module]:
    """The modules called `names`: user names, or raw names with `_orig_mod.`.

    Raises ValueError (prefixed by `what`, e.g. "correlation_layers") naming
    the unknown ones and listing what the model has.
    """
    modules = dict(named_modules(model))
    missing = [name for name in names if strip_compile_prefix(name) not in modules]
    if missing:
        raise module_name_error(model, missing, what)
    return [modules[strip_compile_prefix(name)] for name in names]


def class_name(module: torch.nn.Module) -> str:
    """The module's class name as the user wrote it: FSDP2's `fully_shard` swaps a module's
    class for a generated subclass (`FSDPLinear`); this names the class it wraps (`Linear`)."""
    cls = type(module)
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch without distributed
        return cls.__name__
    if not issubclass(cls, FSDPModule):
        return cls.__name__
    for base in cls.__mro__[1:]:
        if not issubclass(base, FSDPModule):
            return base.__name__
    return cls.__name__
