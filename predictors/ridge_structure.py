"""`ridge_structure`: `linear` with molecules in place of bulk responses. Per (cell type, dose), ridge
regression from a drug's Morgan fingerprint (0/1 bits, unscaled) to its single-cell mean change,
the penalty path walked as epochs (predictors/ridge.py). SMILES come from obs `smiles` of the
training cells and of the bulk set (predictors/structures.py); no bulk expression is used."""

from __future__ import annotations

import numpy as np

from predictors.base import Task
from predictors.ridge import RidgePath
from predictors.structures import Fingerprints, held_out_drugs, smiles_problem, task_smiles


class RidgeStructure(RidgePath):
    """`ridge_structure`: controls shifted by a ridge prediction of the mean change from the drug's fingerprint."""

    defaults = {**RidgePath.defaults, "radius": 2, "n_bits": 2048}

    @classmethod
    def unavailable(cls, task: Task) -> str | None:
        return super().unavailable(task) or smiles_problem(task)

    def features(self, task: Task, drugs: list[str]) -> dict[str, np.ndarray]:
        """Fingerprints of `drugs` that have a readable SMILES (a held-out drug without one: DataUnsuitable);
        a training drug without one is left out of the fits."""
        fingerprints = Fingerprints(task_smiles(task), drugs, self.config["radius"], self.config["n_bits"])
        fingerprints.require(held_out_drugs(task), "ridge_structure")
        return dict(zip(fingerprints.drugs, fingerprints.bits))
