"""`bench list`: the registered predictors, splits and metrics."""

from __future__ import annotations

import argparse

from metrics import get_metrics
from predictors import OPT_IN, registry
from splits import split_names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list predictors, splits and metrics; with a predictor's name, its options")
    p.add_argument("name", nargs="?", default=None, help="a predictor: show its options and their defaults (for `bench run --set`)")
    p.set_defaults(func=run)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def predictor_options(name: str) -> str:
    """A predictor's options with the values its registered name uses (`bench run --set NAME.OPTION=VALUE`)."""
    cls, given = registry.predictor_class(name)
    lines = [f"{name}: {_first_line(cls.__doc__) or _first_line(__import__(cls.__module__, fromlist=['x']).__doc__)}",
             "options (value used; change one with bench run --set NAME.OPTION=VALUE):"]
    lines += [f"  {k} = {v!r}" for k, v in {**cls.defaults, **given}.items()]
    if cls.search_space:
        lines.append(f"search space (--search): {cls.search_space}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.name is not None:
        print(predictor_options(args.name))
        return 0
    print("predictors:")
    for name, (_target, options) in registry.registrations().items():
        try:
            cls, _ = registry.predictor_class(name)
            desc = _first_line(cls.__doc__) or _first_line(__import__(cls.__module__, fromlist=["x"]).__doc__)
        except Exception as exc:  # noqa: BLE001  a broken plug-in is listed, not fatal
            desc = f"(cannot import: {exc})"
        opts = f" {options}" if options else ""
        print(f"  {name:16s} {desc}{opts}" + (" [opt-in: not in `all`]" if name in OPT_IN else ""))
    print("splits:")
    for name, desc in split_names().items():
        print(f"  {name:16s} {desc}")
    print("metrics (best value, chance level where defined):")
    for m in get_metrics():
        levels = f"{m.best:g}" + ("" if m.chance is None else f", chance {m.chance:g}")
        print(f"  {m.name:24s} ({levels}) {m.description}")
    return 0
