"""The `unseen_drug_cell_line` split: (cell line, drug) pairs held out of training while the drug
stays in training in other cell lines, so a predictor has seen the drug's single-cell response
elsewhere and has to carry it to a cell line where it was not measured.

Only single drugs measured in at least two cell lines are held out, and only in cell lines where
the drug is in no combination: a combination (`A+B`) stays in training, so holding out A in a cell
line where A+B is measured would leak A's response there. Every drug keeps at least one training
cell line: the folds never deal all pairs of a drug to one fold, and validation pairs are drawn
only while their drug keeps a training cell line.
"""

from __future__ import annotations

from collections import Counter

import anndata as ad
import numpy as np
import pandas as pd

from bench.data.combinations import components, is_combination
from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DRUG
from splits.base import TEST, TRAIN, VAL, Split, check_folds, reached, register_split

NAME = "unseen_drug_cell_line"
Pair = tuple[str, str]  # (cell type, drug)


def _pairs(obs: pd.DataFrame, control: str, roles: np.ndarray | str = TRAIN) -> pd.DataFrame:
    """The distinct (cell type, drug label, role) rows of the treated cells (`roles`: one per cell)."""
    frame = pd.DataFrame({CELL_TYPE: obs[CELL_TYPE].astype(str).to_numpy(), DRUG: obs[DRUG].astype(str).to_numpy(), "role": roles})
    return frame[frame[DRUG] != control].drop_duplicates()


def pair_leaks(split: Split, obs: pd.DataFrame) -> str | None:
    """The unseen-pair rule: no held-out (test or validation) drug is in training in its own cell
    line, alone or inside a combination."""
    frame = _pairs(obs, split.control, split.labels.to_numpy())
    leaked = [f"{label} in {ct}" for ct, rows in frame.groupby(CELL_TYPE, sort=True)
              for label in reached(sorted(rows.loc[rows["role"] != TRAIN, DRUG]), list(rows.loc[rows["role"] == TRAIN, DRUG]))]
    return f"held-out drug(s) also in training in the same cell line: {', '.join(leaked)}" if leaked else None


def candidates(obs: pd.DataFrame, control: str, eligible: set[str] | None = None) -> tuple[list[Pair], Counter[str]]:
    """The pairs that may be held out, sorted, and the number of cell lines each single drug is
    measured in: pairs of single (`eligible`) drugs measured in at least two cell lines, in a cell
    line where no combination holds the drug."""
    frame = _pairs(obs, control)
    single = frame[~frame[DRUG].map(is_combination)]
    combined = {(ct, d) for ct, label, _ in frame[frame[DRUG].map(is_combination)].itertuples(index=False) for d in components(label)}
    lines = Counter(single[DRUG])
    pairs = sorted((ct, d) for ct, d, _ in single.itertuples(index=False)
                   if lines[d] >= 2 and (ct, d) not in combined and (eligible is None or d in eligible))
    return pairs, lines


def deal(pairs: list[Pair], folds: int, rng: np.random.Generator) -> dict[Pair, int]:
    """pair -> fold: drugs in seeded random order, each drug's pairs (in seeded order) to the fold
    holding the fewest pairs so far among those without a pair of that drug yet (all of them again
    once every fold has one), so folds are near-equal and none holds every pair of a drug."""
    by_drug: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_drug.setdefault(pair[1], []).append(pair)
    load, out = np.zeros(folds), {}
    for drug in rng.permutation(sorted(by_drug)):
        own, taken = by_drug[str(drug)], set[int]()
        for i in rng.permutation(len(own)):
            k = min((k for k in range(folds) if k not in taken), key=lambda k: (load[k], k))
            out[own[i]], taken = k, (taken | {k} if len(taken) + 1 < folds else set[int]())
            load[k] += 1
    return out


def draw(order: list[Pair], n: int, left: Counter[str]) -> list[Pair]:
    """Up to `n` pairs of `order`, passing over a pair whose drug would keep no training cell line;
    `left` (drug -> training cell lines) is updated."""
    out: list[Pair] = []
    for ct, drug in order:
        if len(out) == n:
            break
        if left[drug] > 1:
            left[drug] -= 1
            out.append((ct, drug))
    return out


@register_split(NAME, "(drug, cell line) pairs held out; each drug stays in training in another cell line", leaks=pair_leaks)
def unseen_drug_cell_line(
    adata: ad.AnnData,
    seed: int = 0,
    control: str = CONTROL,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    eligible: set[str] | None = None,
    fold: int | None = None,
    folds: int | None = None,
) -> Split:
    """Hold out a seeded random `test_fraction` of the pairs that may be held out (`candidates`) for
    testing and `val_fraction` for model selection; everything else, and every control, is training.
    With `folds`, the test pairs are fold `fold` of a seeded K-fold partition of those pairs (`deal`;
    K folds test each pair once) and validation pairs, as many as the fold's where their drugs can
    spare them, come from the other folds. Either way each held-out drug keeps a training cell line."""
    pairs, left = candidates(adata.obs, control, eligible)
    if len(pairs) < 3:
        among = "" if eligible is None else " with bulk profiles"
        raise BenchError(f"{NAME} needs at least 3 (drug, cell line) pairs{among} whose drug is measured in another cell line, "
                         f"found {len(pairs)}")
    n_val = max(1, round(val_fraction * len(pairs)))
    if folds:
        fold = check_folds(NAME, fold, folds, len(pairs), "(drug, cell line) pairs")
        assigned = deal(pairs, folds, np.random.default_rng(seed))
        test = [p for p in pairs if assigned[p] == fold]
        left.subtract(d for _, d in test)
        rest = [p for p in pairs if assigned[p] != fold]
        order = [rest[i] for i in np.random.default_rng([seed, fold]).permutation(len(rest))]
        n_val = max(n_val, len(test))
    else:
        order = [pairs[i] for i in np.random.default_rng(seed).permutation(len(pairs))]
        test = draw(order, max(1, round(test_fraction * len(pairs))), left)
    tested = set(test)
    val = draw([p for p in order if p not in tested], n_val, left)
    if not val:
        raise BenchError(f"{NAME}: {len(pairs)} (drug, cell line) pairs are too few for test, validation and training")
    held = {**{p: TEST for p in test}, **{p: VAL for p in val}}
    keys = pd.MultiIndex.from_arrays([adata.obs[CELL_TYPE].astype(str), adata.obs[DRUG].astype(str)])
    roles = pd.Series(list(held.values()), index=pd.MultiIndex.from_tuples(list(held))).reindex(keys).fillna(TRAIN)
    return Split(NAME, pd.Series(roles.to_numpy(), index=adata.obs_names), seed=seed, control=control,
                 fold=fold if folds else None, folds=folds)
