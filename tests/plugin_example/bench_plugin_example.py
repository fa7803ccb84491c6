"""`dose_shift`: an example predictor from another package. It learns, per cell type, one effect
vector scaled by log-dose, by gradient descent on the training drugs' mean effects, and reports
each epoch to the harness; a prediction is the control cells plus the effect at that dose."""

from __future__ import annotations

import numpy as np

from bench.schema import Condition
from predictors.base import Predictor, Task


class DoseShift(Predictor):
    """Controls shifted by a learned per-cell-type effect scaled by log10(dose) (example plug-in)."""

    trainable = True
    defaults = {"epochs": 8, "lr": 0.5}

    def fit(self, task: Task) -> None:
        rng = np.random.default_rng(self.seed)
        effects: dict[str, list[tuple[float, np.ndarray]]] = {}
        for cond in task.training_conditions():
            change = task.cells(cond.cell_type, cond.drug, cond.dose).mean(axis=0) - task.controls(cond.cell_type).mean(axis=0)
            effects.setdefault(cond.cell_type, []).append((np.log10(1.0 + cond.dose), change))
        n_genes = len(task.genes)
        self._weights = {ct: rng.normal(0.0, 0.01, n_genes) for ct in effects}
        for epoch in range(1, task.epochs(self.config["epochs"]) + 1):
            losses = []
            for ct, pairs in effects.items():
                scale = np.array([s for s, _ in pairs])
                target = np.vstack([e for _, e in pairs])
                residual = scale[:, None] * self._weights[ct][None, :] - target
                grad = (scale[:, None] * residual).mean(axis=0) / np.mean(scale**2)
                self._weights[ct] -= self.config["lr"] * grad
                losses.append(float((residual**2).mean()))
            task.report_epoch(epoch, loss=float(np.mean(losses)))

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        weights = self._weights.get(condition.cell_type, np.zeros(controls.shape[1]))
        return controls + (np.log10(1.0 + condition.dose) * weights)[None, :].astype(controls.dtype)
