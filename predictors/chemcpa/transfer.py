"""`chemCPA_transfer`: chemCPA pre-trained on the bulk set, then fine-tuned on single cells, as
chemCPA pre-trains on LINCS L1000 before sci-Plex3.

Bulk rows: the controls and every drug with a readable SMILES (not only the single-cell drugs: the
networks learn from structure), in the single-cell cell lines (`bulk_lines='single_cell'`, as
CPA_transfer) or in every bulk line (`'all'`: a bulk-only line gets an embedding of its own); with
`bulk_held_out=False` the held-out drugs' bulk profiles are left out too. Genes: the model is the
single-cell one; a bulk row carries the genes both sets measure, rescaled per gene so that the bulk
controls have the single-cell controls' mean and standard deviation; its other inputs are zero and
their outputs are left out of the likelihood, so single-cell-only genes start fine-tuning untrained.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bench.errors import BenchError, DataUnsuitable
from bench.schema import CELL_TYPE, DOSE, DRUG
from predictors.base import Task, dense
from predictors.chemcpa.predictor import ChemCPA
from predictors.chemcpa.training import Rows, Trainer

BULK_LINES = ("single_cell", "all")


class ChemCPATransfer(ChemCPA):
    """`chemCPA_transfer`: chemCPA pre-trained on the bulk profiles, then fine-tuned on single cells."""

    label = "chemCPA_transfer"
    needs = ("bulk",)
    defaults = {**ChemCPA.defaults, "bulk_epochs": 20, "bulk_lines": "single_cell", "bulk_held_out": True}

    def __init__(self, seed: int = 0, **config) -> None:
        super().__init__(seed, **config)
        if self.config["bulk_lines"] not in BULK_LINES:
            raise BenchError(f"chemCPA_transfer: bulk_lines '{self.config['bulk_lines']}': expected one of {', '.join(BULK_LINES)}")

    def _structure_drugs(self, task: Task, drugs: set[str]) -> set[str]:
        assert task.bulk is not None  # needs = ("bulk",)
        return drugs | (set(task.bulk.obs[DRUG].astype(str)) - {task.control})

    def _cell_type_names(self, task: Task) -> list[str]:
        names = super()._cell_type_names(task)
        if self.config["bulk_lines"] == "all":
            assert task.bulk is not None  # needs = ("bulk",)
            names += sorted(set(task.bulk.obs[CELL_TYPE].astype(str)) - set(names))
        return names

    def _before_single_cell(self, task: Task) -> None:
        rows, n_classes = self._bulk_rows(task)
        trainer = Trainer(self.module, self.structures.fingerprints, n_classes, len(self._cell_types), self.config, self.seed)
        self.bulk_stats = [trainer.epoch(rows) for _ in range(self.config["bulk_epochs"])]

    def _bulk_rows(self, task: Task) -> tuple[Rows, int]:
        """The pre-training rows on the single-cell genes (shared ones rescaled, the rest masked) and
        the number of the adversary's drug classes."""
        assert task.bulk is not None  # needs = ("bulk",)
        bulk, control = task.bulk, task.control
        obs = bulk.obs
        drugs, lines = obs[DRUG].astype(str).to_numpy(), obs[CELL_TYPE].astype(str).to_numpy()
        keep = np.isin(lines, self._cell_types) & ((drugs == control) | np.isin(drugs, self.structures.drugs))
        if not self.config["bulk_held_out"]:
            keep &= ~np.isin(drugs, [c.drug for c in task.test_conditions + task.val_conditions])
        if not (keep & (drugs != control)).any():
            raise DataUnsuitable("chemCPA_transfer: the bulk set has no profile of a drug with a readable SMILES "
                                 "in the single-cell cell lines")
        genes = np.asarray(task.genes)
        shared = np.flatnonzero(np.isin(genes, np.asarray(bulk.var_names)))
        if shared.size == 0:
            raise DataUnsuitable("chemCPA_transfer: the bulk set shares no gene with the single-cell set")
        rows = np.flatnonzero(keep)
        xb = dense(bulk.X[rows])[:, pd.Index(bulk.var_names).get_indexer(genes[shared])]
        reference = xb[drugs[rows] == control] if (drugs[rows] == control).any() else xb
        sc_controls = np.vstack([task.controls(ct) for ct in sorted(set(task.train.obs[CELL_TYPE].astype(str)))])[:, shared]
        x = np.zeros((len(rows), len(genes)), dtype=np.float32)
        x[:, shared] = rescale(xb, reference, sc_controls)
        mask = torch.zeros(len(genes))
        mask[torch.as_tensor(shared)] = 1.0
        classes = pd.Index([control, *sorted(set(drugs[rows]) - {control})])
        return self.encode(x, drugs[rows], lines[rows], obs[DOSE].astype(float).to_numpy()[rows], classes, mask), len(classes)


def rescale(x: np.ndarray, reference: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`x` moved per gene (column) so that `reference` rows would get `target`'s mean and standard
    deviation; a constant gene is only shifted."""
    ref_sd, target_sd = reference.std(axis=0), target.std(axis=0)
    factor = np.where(ref_sd > 1e-8, target_sd / np.where(ref_sd > 1e-8, ref_sd, 1.0), 1.0)
    return ((x - reference.mean(axis=0)) * factor + target.mean(axis=0)).astype(np.float32)
