"""Drug structures for chemCPA: SMILES read from the sets' obs `smiles`, frozen Morgan fingerprints
(radius 2, 2,048 bits) and the log-dose feature the dose scaler takes."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from bench.data.drugs import drug_smiles
from bench.errors import BenchError, DataUnsuitable
from predictors.base import Task

CONTROL_ROW = -1  # drug index of control rows: no drug shift


def task_smiles(task: Task, bulk: bool = True) -> dict[str, str]:
    """drug -> SMILES from obs `smiles` of the bulk set (held-out drugs are read there: the training
    cells hold none of their rows) and of the single-cell training set, whose spelling wins."""
    table: dict[str, str] = {}
    for adata in ([task.bulk] if bulk and task.bulk is not None else []) + [task.train]:
        table.update({d: s.strip() for d, s in drug_smiles(adata, task.control).items()
                      if s.strip() and s.strip().lower() != "nan"})
    return table


def _listed(drugs: list[str]) -> str:
    return ", ".join(drugs[:5]) + (f" and {len(drugs) - 5} more" if len(drugs) > 5 else "")


def readable(smiles: str) -> bool:
    """Whether RDKit reads `smiles` as a molecule with at least one atom."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    return mol is not None and mol.GetNumAtoms() > 0


class Structures:
    """Fingerprints of the drugs that have a readable SMILES, one row each, by drug name."""

    def __init__(self, smiles: dict[str, str], drugs: Iterable[str], radius: int = 2, n_bits: int = 2048) -> None:
        from bench.data.molecules import morgan_fingerprints

        self.drugs = pd.Index(sorted(d for d in set(drugs) if d in smiles and readable(smiles[d])))
        fp = morgan_fingerprints([smiles[d] for d in self.drugs], radius=radius, n_bits=n_bits) if len(self.drugs) \
            else np.zeros((0, n_bits))
        self.fingerprints = torch.as_tensor(np.asarray(fp, dtype=np.float32))
        self.n_bits = n_bits

    def __contains__(self, drug: str) -> bool:
        return drug in self.drugs

    def index(self, drugs: np.ndarray, control: str) -> torch.Tensor:
        """Fingerprint rows of `drugs` (CONTROL_ROW for the control); an unknown drug is an error."""
        drugs = np.asarray(drugs, dtype=str)
        rows = self.drugs.get_indexer(drugs)
        control_rows = drugs == control
        unknown = (rows < 0) & ~control_rows
        if unknown.any():
            raise BenchError(f"chemCPA: no structure for drug '{drugs[np.flatnonzero(unknown)[0]]}'")
        rows[control_rows] = CONTROL_ROW
        return torch.as_tensor(rows, dtype=torch.long)

    def require(self, drugs: Iterable[str], name: str) -> None:
        """Raise DataUnsuitable naming the held-out drugs without a readable SMILES."""
        missing = sorted({d for d in drugs if d not in self})
        if missing:
            raise DataUnsuitable(f"{name}: no readable SMILES for held-out drug(s) {_listed(missing)} "
                                 "(obs 'smiles' of the single-cell or bulk set)")


def left_out(drugs: Iterable[str], structures: Structures) -> list[str]:
    """The drugs among `drugs` without a structure: left out of training."""
    return sorted({d for d in drugs if d not in structures})


class DoseFeature:
    """log(1 + dose) / log(1 + the largest single-cell training dose): 0 untreated, 1 at that dose."""

    def __init__(self, doses: np.ndarray) -> None:
        top = float(np.max(doses)) if len(doses) else 0.0
        self.scale = float(np.log1p(top)) if top > 0 else 1.0

    def __call__(self, doses) -> torch.Tensor:
        return torch.as_tensor(np.log1p(np.asarray(doses, dtype=np.float64)) / self.scale, dtype=torch.float32)
