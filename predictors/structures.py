"""Drug structures for the structure-aware predictors: SMILES read from the sets' obs `smiles` and
Morgan fingerprints of the drugs whose SMILES RDKit reads (a SMILES it cannot read counts as missing)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from bench.data.combinations import is_combination
from bench.data.drugs import drug_smiles
from bench.errors import BenchError, DataUnsuitable
from predictors.base import Task


def task_smiles(task: Task, bulk: bool = True) -> dict[str, str]:
    """drug -> SMILES from obs `smiles` of the bulk set (held-out drugs are read there: the training
    cells hold none of their rows) and of the single-cell training set, whose spelling wins."""
    table: dict[str, str] = {}
    for adata in ([task.bulk] if bulk and task.bulk is not None else []) + [task.train]:
        table.update({d: s.strip() for d, s in drug_smiles(adata, task.control).items()
                      if s.strip() and s.strip().lower() != "nan"})
    return table


def readable(smiles: str) -> bool:
    """Whether RDKit reads `smiles` as a molecule with at least one atom."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    return mol is not None and mol.GetNumAtoms() > 0


def listed(drugs: Sequence[str]) -> str:
    """The first five names, and how many more."""
    return ", ".join(drugs[:5]) + (f" and {len(drugs) - 5} more" if len(drugs) > 5 else "")


def held_out_drugs(task: Task) -> set[str]:
    """The single drugs of the task's test and validation conditions (combinations have no SMILES)."""
    return {c.drug for c in task.test_conditions + task.val_conditions if not is_combination(c.drug)}


def smiles_problem(task: Task) -> str | None:
    """Why a structure predictor cannot run on `task` (a held-out drug no set gives a SMILES), or None."""
    missing = sorted(held_out_drugs(task) - set(task_smiles(task)))
    if not missing:
        return None
    where = "" if task.bulk is not None else " (no bulk set: a drug without training cells has its SMILES only there)"
    return f"needs a SMILES of every held-out drug in obs 'smiles' of the training cells or the bulk set; none for {listed(missing)}{where}"


class Fingerprints:
    """Morgan fingerprints (`radius`, `n_bits`) of the drugs that have a readable SMILES, one float32
    0/1 row each, by drug name."""

    def __init__(self, smiles: dict[str, str], drugs: Iterable[str], radius: int = 2, n_bits: int = 2048) -> None:
        from bench.data.molecules import morgan_fingerprints

        self.drugs = pd.Index(sorted(d for d in set(drugs) if d in smiles and readable(smiles[d])))
        self.bits = morgan_fingerprints([smiles[d] for d in self.drugs], radius=radius, n_bits=n_bits) if len(self.drugs) \
            else np.zeros((0, n_bits), dtype=np.float32)
        self.n_bits = n_bits

    def __contains__(self, drug: object) -> bool:
        return drug in self.drugs

    def rows(self, drugs: Sequence[str]) -> np.ndarray:
        """The fingerprints of `drugs`, in their order; a drug without one is an error."""
        index = self.drugs.get_indexer(list(drugs))
        if (index < 0).any():
            raise BenchError(f"no fingerprint of drug '{drugs[int(np.flatnonzero(index < 0)[0])]}': no readable SMILES")
        return self.bits[index]

    def require(self, drugs: Iterable[str], name: str) -> None:
        """Raise DataUnsuitable naming the held-out drugs without a readable SMILES."""
        missing = sorted({d for d in drugs if d not in self})
        if missing:
            raise DataUnsuitable(f"{name}: no readable SMILES for held-out drug(s) {listed(missing)} "
                                 "(obs 'smiles' of the single-cell or bulk set)")
