"""The Split record and the split registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from bench.data.combinations import components
from bench.errors import BenchError, closest
from bench.schema import CONTROL, DRUG, Condition, conditions_of

TRAIN, VAL, TEST = "train", "val", "test"


@dataclass
class Split:
    """Per-cell roles of a single-cell set. Controls are always `train`: every predictor may use
    them as input, and the harness hands a cell type's controls to `predict`."""

    name: str
    labels: pd.Series  # index: obs_names; values: train / val / test
    seed: int | None = None
    control: str = CONTROL
    fold: int | None = None  # with `folds`: which of the K folds of the held-out drugs is the test set
    folds: int | None = None

    def mask(self, role: str) -> np.ndarray:
        return (self.labels == role).to_numpy()

    def drugs(self, obs: pd.DataFrame, role: str) -> list[str]:
        sel = obs.loc[self.mask(role), DRUG].astype(str)
        return sorted(set(sel) - {self.control})

    def conditions(self, obs: pd.DataFrame, role: str) -> list[Condition]:
        return conditions_of(obs, self.mask(role), self.control)

    def summary(self, obs: pd.DataFrame) -> dict:
        return {
            "split": self.name,
            "seed": self.seed,
            **({"fold": self.fold, "folds": self.folds} if self.folds else {}),
            **{f"{r}_drugs": len(self.drugs(obs, r)) for r in (TRAIN, VAL, TEST)},
            **{f"{r}_conditions": len(self.conditions(obs, r)) for r in (TRAIN, VAL, TEST)},
            "test_drug_names": self.drugs(obs, TEST),
            "val_drug_names": self.drugs(obs, VAL),
        }

    def validate(self, obs: pd.DataFrame) -> None:
        """Fail loudly on a split that cannot be evaluated."""
        if not self.conditions(obs, TEST):
            raise BenchError(f"split '{self.name}' has no test conditions")
        if not self.conditions(obs, TRAIN):
            raise BenchError(f"split '{self.name}' has no training conditions")
        rule = _SPLITS[self.name][2] if self.name in _SPLITS else None
        leaked = rule(self, obs) if rule is not None else None
        if leaked:
            raise BenchError(f"split '{self.name}': {leaked}")


LeakRule = Callable[[Split, pd.DataFrame], str | None]  # what of the held-out set reached training, or None


def role_of(label: str, held: dict[str, str]) -> str:
    """A drug label's role given the held-out roles in `held` (by label or by drug): test if it or any
    of its drugs is a test drug, else validation if any is one, else training; so a combination is
    held out with any drug it contains."""
    roles = {held.get(d, TRAIN) for d in {label, *components(label)}}
    return TEST if TEST in roles else VAL if VAL in roles else TRAIN


def reached(held: list[str], trained: list[str]) -> list[str]:
    """The held-out drug labels that training reaches: the same label, or a single drug inside a
    training combination (a held-out combination of drugs trained apart is a new combination)."""
    labels = set(trained)
    inside = {d for label in labels for d in components(label)}
    return [label for label in held if label in labels or (len(components(label)) == 1 and label in inside)]


def drug_leaks(split: Split, obs: pd.DataFrame) -> str | None:
    """The unseen-drug rule: no test drug is in training, alone or inside a combination."""
    leaked = reached(split.drugs(obs, TEST), split.drugs(obs, TRAIN))
    return f"test drug(s) also in training: {', '.join(leaked)}" if leaked else None


SplitFn = Callable[..., Split]
_SPLITS: dict[str, tuple[SplitFn, str, LeakRule | None]] = {}


def register_split(name: str, description: str, leaks: LeakRule | None):
    """Register a split function under `name`; `leaks` is the rule `Split.validate` checks its
    hold-out with (None: a split with no rule to check)."""
    def deco(fn: SplitFn) -> SplitFn:
        _SPLITS[name] = (fn, description, leaks)
        return fn

    return deco


def split_names() -> dict[str, str]:
    return {name: desc for name, (_, desc, _) in _SPLITS.items()}


def benchmark_split(bench, name: str, seed: int = 0, split_column: str | None = None,
                    fold: int | None = None, folds: int | None = None) -> Split:
    """The named split of a Benchmark's single-cell set as `bench run` and `bench check` make it:
    the roles stored in `split_column`, or a seeded hold-out of the drugs that have bulk profiles
    (with `folds`: fold `fold` of a K-fold partition of them, so K folds test every drug once)."""
    if split_column and folds:
        raise BenchError(f"--folds {folds} and --split-column '{split_column}': a stored split has its own hold-out")
    options: dict[str, object] = {"split_column": split_column} if split_column else {"eligible": bench.hold_out_candidates()}
    if folds:
        options.update(fold=fold, folds=folds)
    return get_split(name, bench.sc, seed=seed, control=bench.control, **options)


def check_folds(name: str, fold: int | None, folds: int, units: int, what: str = "drugs") -> int:
    """A K-fold request must name its fold and leave every fold a test set and the rest room for
    validation and training. Returns the fold."""
    if fold is None:
        raise BenchError(f"{name}: --folds {folds} needs the fold to run (0..{folds - 1})")
    if folds < 2:
        raise BenchError(f"{name}: --folds {folds}: expected at least 2 folds")
    if folds > units:
        raise BenchError(f"{name}: --folds {folds} is more than the {units} {what} that can be held out")
    if not 0 <= fold < folds:
        raise BenchError(f"{name}: fold {fold} is outside 0..{folds - 1}")
    return fold


def fold_of(sizes: dict[str, int], folds: int, rng: np.random.Generator) -> dict[str, int]:
    """unit -> fold: units (drugs, or families weighted by their drugs) in seeded random order, each
    to the fold holding the fewest drugs so far, so folds are near-equal in drugs."""
    load = np.zeros(folds)
    out = {}
    for unit in rng.permutation(sorted(sizes)):
        k = int(np.argmin(load))
        out[str(unit)] = k
        load[k] += sizes[unit]
    return out


def get_split(name: str, adata: ad.AnnData, seed: int = 0, control: str = CONTROL, **options) -> Split:
    """Build the named split of `adata`; an unknown name is a one-line error."""
    if name not in _SPLITS:
        raise BenchError(f"unknown split '{name}'{closest(name, _SPLITS)}: expected one of {', '.join(_SPLITS)}")
    split = _SPLITS[name][0](adata, seed=seed, control=control, **options)
    split.validate(adata.obs)
    return split
