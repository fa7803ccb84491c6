"""Name -> predictor class registry: built-in registrations plus the `bench.predictors` entry point group."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from bench.errors import BenchError, closest
from predictors.base import DEFAULT_MEMORY, Memory, Predictor

ENTRY_POINT_GROUP = "bench.predictors"


def _load(target: str) -> type[Predictor]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def registrations() -> dict[str, tuple[str, dict]]:
    """Every registered name -> ("module:Class", options): built-ins, then installed plug-ins."""
    from predictors import BUILTIN

    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in found:
            found[ep.name] = (ep.value, {})
    return found


def predictor_names() -> list[str]:
    return list(registrations())


def predictor_class(name: str) -> tuple[type[Predictor], dict]:
    """The class and registration options of predictor `name` (imports it lazily)."""
    regs = registrations()
    if name not in regs:
        raise BenchError(f"unknown predictor '{name}'{closest(name, regs)}: see `bench list`")
    target, options = regs[name]
    return _load(target), dict(options)


def memory(name: str) -> Memory:
    """The peak-memory model of one run of predictor `name`: the built-in table `predictors.MEMORY`,
    else its class's `memory`, else DEFAULT_MEMORY (also for a predictor that cannot be loaded: its
    run fails at once, but the estimate stays on the safe side)."""
    from predictors import MEMORY

    if name in MEMORY:
        return MEMORY[name]
    try:
        declared = predictor_class(name)[0].memory
    except Exception:  # noqa: BLE001  a broken plug-in: the runner records why when it runs
        declared = None
    return declared or DEFAULT_MEMORY


def create(name: str, seed: int = 0, **overrides) -> Predictor:
    cls, options = predictor_class(name)
    return cls(seed=seed, **{**options, **overrides})


def resolve(spec: str) -> list[str]:
    """A comma-separated list of names, where 'all' stands for every registered predictor except the
    opt-in ones (`predictors.OPT_IN`) -> validated list of names, each once, in the order given."""
    from predictors import OPT_IN

    names = predictor_names()
    chosen = [s.strip() for s in spec.split(",") if s.strip()]
    if not chosen:
        raise BenchError("--predictors is empty: give 'all' or a comma-separated list of names")
    for n in chosen:
        if n != "all" and n not in names:
            raise BenchError(f"unknown predictor '{n}'{closest(n, names)}: see `bench list`")
    expanded = [m for n in chosen for m in ([m for m in names if m not in OPT_IN] if n == "all" else [n])]
    return list(dict.fromkeys(expanded))
