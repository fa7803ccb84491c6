"""`bench list`: the registered predictors, splits and metrics."""

from __future__ import annotations

import argparse

from metrics import get_metrics
from predictors import registry
from splits import split_names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list predictors, splits and metrics")
    p.set_defaults(func=run)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def run(args: argparse.Namespace) -> int:
    print("predictors:")
    for name, (target, options) in registry.registrations().items():
        try:
            cls, _ = registry.predictor_class(name)
            desc = _first_line(cls.__doc__) or _first_line(__import__(cls.__module__, fromlist=["x"]).__doc__)
        except Exception as exc:  # noqa: BLE001  a broken plug-in is listed, not fatal
            desc = f"(cannot import: {exc})"
        opts = f" {options}" if options else ""
        print(f"  {name:16s} {desc}{opts}")
    print("splits:")
    for name, desc in split_names().items():
        print(f"  {name:16s} {desc}")
    print("metrics (best value, chance level where defined):")
    for m in get_metrics():
        levels = f"{m.best:g}" + ("" if m.chance is None else f", chance {m.chance:g}")
        print(f"  {m.name:24s} ({levels}) {m.description}")
    return 0
