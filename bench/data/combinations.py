"""Drug combinations: a drug label `A+B` is one condition of its own, never reduced to its parts.

A label is split at `+` outside brackets (`(+)-JQ1` is one drug); its parts are stripped and
rejoined (`A + B` is `A+B`); a vehicle part of a combination (`A+control`) is no drug and is
dropped with its dose. Its dose is one dose per drug (`1+1`; a single dose means each drug at that
dose); the condition's dose is the total in nM and obs `dose_parts` keeps the doses per drug. A
combination is held out with any of its drugs (splits/unseen_drugs.py), and a predictor is run on
a split holding combinations only when it can take them (`Predictor.combinations`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from bench.data.doses import ONE_DOSE, SEP, describe
from bench.errors import BenchError
from bench.schema import Condition, same_dose

DOSE_PARTS = "dose_parts"  # obs column: a combination's doses per drug in nM ('' for single drugs)
_OPEN, _CLOSE = "([{", ")]}"


def components(label: str) -> tuple[str, ...]:
    """The drugs of a label: `A+B` -> (A, B); a single drug (also `(+)-JQ1`) -> (label,)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(label):
        depth += (ch in _OPEN) - (ch in _CLOSE and depth > 0)
        if ch == SEP and depth == 0:
            parts.append(label[start:i].strip())
            start = i + 1
    parts.append(label[start:].strip())
    return tuple(parts) if len(parts) > 1 and all(parts) else (label.strip(),)


def is_combination(label: str) -> bool:
    return len(components(label)) > 1


def combinations_among(labels: Iterable[str]) -> list[str]:
    """The combination labels among `labels`, sorted."""
    return sorted({str(d) for d in labels if is_combination(str(d))})


def _resolve(label: str, dose: tuple, has_dose: bool, vehicles: set[str], where: str) -> tuple[str, float, str]:
    """(label, total dose, doses per drug) of one treated (label, written dose) pair."""
    drugs = components(label)
    if not has_dose:
        return SEP.join(drugs), ONE_DOSE, ""
    if len(dose) == 1 and len(drugs) > 1:
        dose = dose * len(drugs)
    if len(dose) != len(drugs):
        raise BenchError(f"{where} has dose '{describe(dose)}' nM for '{label}': expected {len(drugs)} dose(s), "
                         "one per drug (such as 1+1 for A+B)")
    keep = [i for i, d in enumerate(drugs) if d not in vehicles] if len(drugs) > 1 else [0]
    if not keep:
        return "", 0.0, ""
    drugs, dose = tuple(drugs[i] for i in keep), tuple(dose[i] for i in keep)
    return SEP.join(drugs), float(sum(dose)), describe(dose) if len(drugs) > 1 else ""


def treated_conditions(drugs: np.ndarray, codes: np.ndarray, table: np.ndarray, has_dose: bool, vehicles: set[str],
                       where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drug label, total dose (nM) and doses per drug of treated rows, from their written labels and
    dose codes into `table` (see bench/data/doses.py). A label '' marks a combination of vehicles only."""
    drug_codes, labels = pd.factorize(np.asarray(drugs, dtype=str))
    missing = np.array([len(t) == 0 for t in table])[codes] & has_dose
    if missing.any():
        names = sorted(set(labels[drug_codes[missing]]))
        raise BenchError(f"{where} is empty for {int(missing.sum())} treated row(s) of drug(s) {', '.join(names[:5])}; "
                         "give every treated row a dose, or read one dose per drug with --dose-key none")
    key = drug_codes.astype(np.int64) * (len(table) + 1) + codes + 1
    _, index, inverse = np.unique(key, return_index=True, return_inverse=True)
    resolved = [_resolve(labels[drug_codes[i]], table[codes[i]], has_dose, vehicles, where) for i in index]
    _check_totals(resolved, where)
    columns = zip(*resolved) if resolved else ((), (), ())
    label, total, parts = (np.array(col, dtype=dtype)[inverse] for col, dtype in zip(columns, (object, float, object)))
    return label, total, parts


def _check_totals(resolved: list[tuple[str, float, str]], where: str) -> None:
    """Conditions are told apart by their total dose (matched by `same_dose`): two splits of one
    total would merge."""
    by_label: dict[str, dict[str, float]] = {}
    for label, total, parts in resolved:
        by_label.setdefault(label, {})[parts] = total
    for label, totals in by_label.items():
        spellings = sorted(totals, key=lambda p: totals[p])
        for a, b in zip(spellings, spellings[1:]):
            if same_dose([totals[a]], totals[b])[0]:
                raise BenchError(f"{where} gives combination '{label}' doses {a} and {b} nM: conditions are told "
                                 "apart by their total dose, so give the two another total")


def combination_problem(predictor: type, conditions: Iterable[Condition]) -> str | None:
    """Why `predictor` (a Predictor class) cannot be run on a split with these `conditions` (training
    ones included), some of them combinations, or None. Its `combinations` attribute decides; when it
    is None, a predictor that needs per-drug inputs (bulk profiles, generating parameters) or hands
    drugs to a package (which may look a combination up by name or split it) cannot."""
    combos = combinations_among(c.drug for c in conditions)
    able = getattr(predictor, "combinations", None)
    if able is None:
        able = not getattr(predictor, "needs", ()) and not getattr(predictor, "packages", ())
    if not combos or able:
        return None
    shown = ", ".join(combos[:3]) + (", ..." if len(combos) > 3 else "")
    return f"cannot predict drug combinations ({len(combos)} in this split: {shown})"
