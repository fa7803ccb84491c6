"""`knn_structure`: `knn` with molecules in place of bulk responses. The training drugs whose
structures are most similar to the test drug's (Tanimoto similarity of Morgan fingerprints) lend
their real single-cell responses at the same cell type and dose. SMILES come from obs `smiles` of
the training cells and of the bulk set (predictors/structures.py); no bulk expression is used."""

from __future__ import annotations

import numpy as np

from bench.data.molecules import tanimoto
from bench.schema import Condition
from predictors.base import Predictor, Task
from predictors.neighbours import TrainingNeighbours
from predictors.structures import Fingerprints, held_out_drugs, smiles_problem, task_smiles


class KnnStructure(Predictor):
    """`knn_structure`: the cells of the k training drugs whose molecules are nearest the test drug's.

    Nearest by Tanimoto similarity of Morgan fingerprints (`radius`, `n_bits`); their real training
    cells at the condition's cell type and dose are the prediction."""

    combinations = False
    defaults = {"k": 5, "radius": 2, "n_bits": 2048}
    search_space = {"k": [1, 3, 5, 10]}

    @classmethod
    def unavailable(cls, task: Task) -> str | None:
        return super().unavailable(task) or smiles_problem(task)

    def fit(self, task: Task) -> None:
        held = held_out_drugs(task)
        drugs = {c.drug for c in task.training_conditions()} | held
        self._fingerprints = Fingerprints(task_smiles(task), drugs, self.config["radius"], self.config["n_bits"])
        self._fingerprints.require(held, "knn_structure")
        self._neighbours = TrainingNeighbours(task, self.config["k"], "knn_structure")

    def neighbours(self, condition: Condition) -> list[str]:
        """The k training drugs most similar in structure to the condition's drug, best first; a
        training drug without a readable SMILES is never one."""
        fingerprints = self._fingerprints
        names = self._neighbours.candidates(condition, fingerprints.__contains__, "has a readable SMILES")
        similarity = tanimoto(fingerprints.rows([condition.drug]), fingerprints.rows(names))[0]
        return self._neighbours.nearest(names, similarity)

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return self._neighbours.cells(condition, self.neighbours(condition))
