"""`chemCPA`: the predictor around chemCPA's networks: single-cell training with epoch reports, and
counterfactual prediction of any drug with a structure, seen in training or not."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from bench.errors import BenchError
from bench.schema import CELL_TYPE, DOSE, DRUG, Condition
from predictors.base import PREDICT_ROWS, Predictor, Task, by_cell_type, dense, gaussian_cells, row_chunks
from predictors.chemcpa.model import ChemCPAModule
from predictors.chemcpa.structures import DoseFeature, Structures, left_out
from predictors.chemcpa.training import Rows, Trainer
from predictors.structures import task_smiles

log = logging.getLogger(__name__)


class ChemCPA(Predictor):
    """`chemCPA`: CPA whose drug embedding and dose response come from the drug's Morgan fingerprint.

    An unseen drug is embedded and dose-scaled by the networks trained on the training drugs'
    structures. Predicted cells are drawn from the decoder's Gaussian (`sample=False`: its means)."""

    label = "chemCPA"
    trainable = True
    packages = ("rdkit",)
    combinations = False
    defaults = {"epochs": 30, "n_latent": 32, "n_hidden": 256, "n_layers": 2, "drug_layers": 0, "drug_hidden": 128,
                "doser_hidden": 64, "batch_size": 256, "lr": 1e-3, "reg_adversary": 1.0, "penalty_adversary": 1.0,
                "sample": True}
    search_space = {"lr": [1e-3, 3e-4], "reg_adversary": [1.0, 5.0]}

    def fit(self, task: Task) -> None:
        torch.manual_seed(self.seed)
        self._task = task
        held_out = {c.drug for c in task.test_conditions + task.val_conditions}
        train_drugs = {c.drug for c in task.training_conditions()}
        self.structures = Structures(task_smiles(task), self._structure_drugs(task, train_drugs | held_out))
        self.structures.require(held_out, self.label)
        self.left_out = left_out(train_drugs, self.structures)
        if self.left_out:
            log.warning("%s: training drug(s) without a readable SMILES left out of training: %s", self.label,
                        ", ".join(self.left_out))
        self._cell_types = pd.Index(self._cell_type_names(task))
        self._dose = DoseFeature(task.train.obs[DOSE].astype(float).to_numpy())
        c = self.config
        self.module = ChemCPAModule(task.train.n_vars, self.structures.n_bits, len(self._cell_types), c["n_latent"],
                                    c["n_hidden"], c["n_layers"], c["drug_hidden"], c["drug_layers"],
                                    c["doser_hidden"])
        self._before_single_cell(task)
        rows, n_classes = self._rows(task)
        trainer = Trainer(self.module, self.structures.fingerprints, n_classes, len(self._cell_types), c, self.seed)
        for epoch in range(1, task.epochs(c["epochs"]) + 1):
            stats = trainer.epoch(rows)
            task.report_epoch(epoch, **stats)

    def _structure_drugs(self, task: Task, drugs: set[str]) -> set[str]:
        """The drugs to fingerprint (chemCPA_transfer adds the bulk drugs)."""
        return drugs

    def _cell_type_names(self, task: Task) -> list[str]:
        """The cell-type vocabulary (chemCPA_transfer may add bulk-only lines)."""
        return sorted(set(task.train.obs[CELL_TYPE].astype(str)))

    def _before_single_cell(self, task: Task) -> None:
        """Hook for chemCPA_transfer: pre-train the module before the single-cell phase."""

    def _rows(self, task: Task) -> tuple[Rows, int]:
        """The single-cell training rows (drugs without a structure left out) and the number of the
        adversary's drug classes (the control, then each training drug)."""
        obs = task.train.obs
        drugs = obs[DRUG].astype(str).to_numpy()
        keep = np.flatnonzero(~np.isin(drugs, self.left_out))
        classes = pd.Index([task.control, *sorted(set(drugs[keep]) - {task.control})])
        rows = self.encode(dense(task.train.X[keep]), drugs[keep], obs[CELL_TYPE].astype(str).to_numpy()[keep],
                           obs[DOSE].astype(float).to_numpy()[keep], classes)
        return rows, len(classes)

    def encode(self, x: np.ndarray, drugs: np.ndarray, cell_types: np.ndarray, doses: np.ndarray, classes: pd.Index,
               genes: torch.Tensor | None = None) -> Rows:
        """Rows of expression `x` labelled with drugs, cell types and doses, as the trainer takes them."""
        cells = self._cell_types.get_indexer(cell_types)
        if (cells < 0).any():
            raise BenchError(f"{self.label}: cell type '{cell_types[np.flatnonzero(cells < 0)[0]]}' is not in the vocabulary")
        return Rows(x=torch.as_tensor(x, dtype=torch.float32), drug=self.structures.index(drugs, self._task.control),
                    dose=self._dose(np.where(drugs == self._task.control, 0.0, doses)),
                    cell=torch.as_tensor(cells, dtype=torch.long),
                    drug_class=torch.as_tensor(classes.get_indexer(drugs), dtype=torch.long), genes=genes)

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return self.predict_many([condition], lambda ct: controls)[condition]

    def predict_many(self, conditions: Iterable[Condition], controls: Callable[[str], np.ndarray]) -> dict[Condition, np.ndarray]:
        """With `sample` (default), one draw per control cell from the predicted Gaussian, seeded by
        the predictor seed and the condition (the same cells alone or batched); else the means."""
        return gaussian_cells(self.distribution(conditions, controls), self.seed, self.config["sample"])

    def distribution(self, conditions: Iterable[Condition],
                     controls: Callable[[str], np.ndarray]) -> dict[Condition, tuple[np.ndarray, np.ndarray]]:
        """Per condition, the predictive mean and standard deviation (cells x genes): each control cell
        of the cell type encoded once, shifted by the condition's drug at its dose and the cell type."""
        out: dict[Condition, tuple[np.ndarray, np.ndarray]] = {}
        self.module.eval()
        with torch.no_grad():
            for ct, conds in by_cell_type(conditions).items():
                x = torch.as_tensor(np.asarray(controls(ct), dtype=np.float32))
                n = x.shape[0]
                basal = self.module.encoder(x)
                cell = self._cell_types.get_indexer([ct])
                if cell[0] < 0:
                    raise BenchError(f"{self.label}: cell type '{ct}' was not in the training set")
                for chunk in row_chunks(conds, lambda c: n, PREDICT_ROWS):
                    drug = self.structures.index(np.repeat([c.drug for c in chunk], n), self._task.control)
                    dose = self._dose(np.repeat([c.dose for c in chunk], n))
                    shift = self.module.shift(self.structures.fingerprints, drug, dose,
                                              torch.full((len(drug),), int(cell[0]), dtype=torch.long))
                    mean, var = self.module.decode(basal.repeat(len(chunk), 1) + shift)
                    means = mean.view(len(chunk), n, -1).numpy().astype(np.float32)
                    stds = var.sqrt().view(len(chunk), n, -1).numpy().astype(np.float32)
                    out.update(zip(chunk, zip(means, stds)))
        return out
