"""Every module sits in one room of the one-way layers contract (pyproject.toml, checked by
`lint-imports` in .ci/run), so no new module escapes it."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def contract() -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["type"] == "layers")


def rooms() -> list[set[str]]:
    return [{m.strip() for m in layer.replace("|", ":").split(":")} for layer in contract()["layers"]]


def covered(module: str, named: set[str]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in named)


def test_every_module_is_in_a_layer():
    named = set().union(*rooms())
    modules = [f"bench.{p.stem}" for p in (REPO / "bench").glob("*.py") if p.stem != "__init__"]
    modules += [f"bench.{p.parent.name}" for p in (REPO / "bench").glob("*/__init__.py")]
    modules += ["predictors", "metrics", "splits"]
    assert [m for m in modules if not covered(m, named)] == []


def test_layers_name_existing_modules_once():
    named = [m for room in rooms() for m in room]
    assert len(named) == len(set(named))
    for module in named:
        path = REPO.joinpath(*module.split("."))
        assert path.with_suffix(".py").exists() or (path / "__init__.py").exists(), module
