"""`scGen`: the real scgen 2.1.0 model (Lotfollahi, Wolf and Theis, Nature Methods 2019), wrapped for
the harness.

scGen is a VAE trained on all training cells, unconditioned. It predicts a perturbation in a cell
type where it was not measured by latent-space arithmetic: the perturbation's shift, the mean latent
state of perturbed cells minus that of control cells in the cell types where it was measured, is
added to the latent states of the target cell type's controls, which are then decoded.

A drug is therefore represented only by its own training cells. Under `unseen_drugs` a held-out drug
has none, so the predictor is unavailable there (skipped with the reason); under
`unseen_drug_cell_line` the drug was measured in other cell lines and its shift at the condition's
dose is carried to the target cell line. See docs/baselines.md (scGen).
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from collections.abc import Callable, Iterable

import anndata as ad
import numpy as np
import pandas as pd
import torch

from bench.data.combinations import is_combination
from bench.errors import BenchError, DataUnsuitable
from bench.schema import CELL_TYPE, DOSE, DRUG, Condition
from predictors.base import PREDICT_ROWS, Predictor, Task, by_cell_type, dense, row_chunks
from predictors.structures import listed

INSTALL_HINT = "missing package scgen (scgen 2.1.0 on the CPA stack's scvi-tools 0.20.3): run install.sh"
CONDITION_KEY = "scgen_condition"  # scGen's `batch_key`: the drug label (the control included)
TRAINING_NOISE = ("The number of training batches",)
ENCODE_ROWS = 8192  # training cells encoded at once when the shifts are computed


def unseen_drugs(task: Task) -> list[str]:
    """The held-out drugs (test and validation) that no training cell was treated with, sorted."""
    trained = set(task.train.obs[DRUG].astype(str))
    return sorted({c.drug for c in task.test_conditions + task.val_conditions if not is_combination(c.drug)} - trained)


def nearest_dose(dose: float, seen: Iterable[float]) -> float:
    """The seen dose closest to `dose` on a log scale (ties: the lower one)."""
    return min(sorted(seen), key=lambda d: abs(np.log1p(d) - np.log1p(dose)))


class ScGen(Predictor):
    """`scGen`: scgen 2.1.0's VAE with its latent arithmetic; a drug's shift comes from its training cells in other cell types.

    Cannot represent a drug that no training cell was treated with (unavailable under `unseen_drugs`);
    under `unseen_drug_cell_line` it carries the drug's latent shift at the condition's dose, averaged
    over the cell types where it was measured, to the target cell type's controls and decodes them."""

    trainable = True
    packages = ("scgen",)
    defaults = {"epochs": 100, "n_hidden": 800, "n_latent": 100, "n_layers": 2, "dropout_rate": 0.2, "kl_weight": 5e-5,
                "batch_size": 32, "lr": 1e-3}

    @classmethod
    def unavailable(cls, task: Task) -> str | None:
        if importlib.util.find_spec("scgen") is None:
            return INSTALL_HINT
        return super().unavailable(task) or cls._unrepresented(task)

    @staticmethod
    def _unrepresented(task: Task) -> str | None:
        missing = unseen_drugs(task)
        if not missing:
            return None
        return (f"scGen represents a drug only by its single-cell training cells (its latent shift in the cell types where "
                f"it was measured); held-out drug(s) {listed(missing)} have none, as under the split unseen_drugs: "
                "it runs under --split unseen_drug_cell_line")

    def fit(self, task: Task) -> None:
        from predictors.scvi_compat import epoch_reporter, load_scgen

        scgen = load_scgen()
        reason = self._unrepresented(task)
        if reason:
            raise DataUnsuitable(reason)
        c = self.config
        self.control = task.control
        obs = task.train.obs
        self._train_x = task.train.X
        self._cell_types = obs[CELL_TYPE].astype(str).to_numpy()
        self._drugs = obs[DRUG].astype(str).to_numpy()
        self._doses = obs[DOSE].astype(float).to_numpy()
        adata = ad.AnnData(task.train.X, obs=pd.DataFrame({CONDITION_KEY: pd.Categorical(self._drugs), CELL_TYPE: pd.Categorical(self._cell_types)},
                                                          index=[f"r{i}" for i in range(task.train.n_obs)]),
                           var=pd.DataFrame(index=np.asarray(task.genes, dtype=str)))
        scgen.SCGEN.setup_anndata(adata, batch_key=CONDITION_KEY, labels_key=CELL_TYPE)
        self.model = scgen.SCGEN(adata, n_hidden=c["n_hidden"], n_latent=c["n_latent"], n_layers=c["n_layers"],
                                 dropout_rate=c["dropout_rate"], kl_weight=c["kl_weight"])
        self._shifts: dict[tuple[str, float], np.ndarray] | None = None

        def report(epoch: int, **stats: float) -> None:
            self._shifts = None  # the latent space moved: recompute the shifts for this epoch's predictions
            task.report_epoch(epoch, **stats)

        reporter = epoch_reporter(report, lambda out: {"loss": out["loss"]})
        with tempfile.TemporaryDirectory(prefix="bench-scgen-") as tmp, warnings.catch_warnings():
            for message in TRAINING_NOISE:
                warnings.filterwarnings("ignore", message=message)
            # train_size=1: every training cell trains (scvi's default holds out 10% for its own
            # validation; model selection is the harness's); no early stopping of scvi's own.
            self.model.train(max_epochs=task.epochs(c["epochs"]), batch_size=c["batch_size"], train_size=1.0, early_stopping=False,
                             plan_kwargs={"lr": c["lr"]}, callbacks=[reporter], enable_progress_bar=False,
                             default_root_dir=tmp, enable_model_summary=False)
        self._shifts = None
        self.model.module.eval()

    @torch.no_grad()
    def _encode(self, x) -> np.ndarray:
        """Latent means (scGen's latent representation) of the rows of `x`, in batches."""
        module = self.model.module
        device = next(module.parameters()).device
        parts = []
        for start in range(0, x.shape[0], ENCODE_ROWS):
            block = torch.as_tensor(dense(x[start:start + ENCODE_ROWS]), device=device)
            parts.append(module.inference(block)["qz_m"].cpu().numpy())
        return np.vstack(parts) if parts else np.zeros((0, module.n_latent), dtype=np.float32)

    def shifts(self) -> dict[tuple[str, float], np.ndarray]:
        """(drug, dose) -> its latent shift: over the cell types where it was measured, the mean of
        (mean latent state of its cells - mean latent state of that cell type's controls)."""
        if self._shifts is None:
            z = self._encode(self._train_x)
            frame = pd.DataFrame({"ct": self._cell_types, "drug": self._drugs, "dose": self._doses})
            means = {key: z[rows].mean(axis=0) for key, rows in frame.groupby(["ct", "drug", "dose"], sort=False).indices.items()}
            control = {ct: z[rows].mean(axis=0) for (ct, drug), rows in frame.groupby(["ct", "drug"], sort=False).indices.items()
                       if drug == self.control}
            per_condition: dict[tuple[str, float], list[np.ndarray]] = {}
            for (ct, drug, dose), mean in means.items():
                if drug != self.control and ct in control:
                    per_condition.setdefault((drug, float(dose)), []).append(mean - control[ct])
            self._shifts = {key: np.mean(parts, axis=0) for key, parts in per_condition.items()}
        return self._shifts

    def shift(self, drug: str, dose: float) -> np.ndarray:
        """The latent shift of `drug` at `dose`, or at its nearest measured dose when that dose was never measured."""
        shifts = self.shifts()
        if (drug, float(dose)) in shifts:
            return shifts[(drug, float(dose))]
        seen = [d for (name, d) in shifts if name == drug]
        if not seen:
            raise BenchError(f"scGen: drug '{drug}' has no training cells, so no latent shift")
        return shifts[(drug, nearest_dose(float(dose), seen))]

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return self.predict_many([condition], lambda ct: controls)[condition]

    def predict_many(self, conditions: Iterable[Condition], controls: Callable[[str], np.ndarray]) -> dict[Condition, np.ndarray]:
        """Each control cell's latent mean plus the condition's shift, decoded (scGen's `predict`, with
        the shift from the cell types where the drug was measured)."""
        module = self.model.module
        was_training = module.training
        module.eval()
        conditions = list(conditions)
        out: dict[Condition, np.ndarray] = {}
        try:
            with torch.no_grad():
                latent = {ct: self._encode(np.asarray(controls(ct), dtype=np.float32)) for ct in by_cell_type(conditions)}
                device = next(module.parameters()).device
                for chunk in row_chunks(conditions, lambda c: len(latent[c.cell_type]), PREDICT_ROWS):
                    z = np.vstack([latent[c.cell_type] + self.shift(c.drug, c.dose)[None, :] for c in chunk]).astype(np.float32)
                    decoded = module.generative(torch.as_tensor(z, device=device))["px"].cpu().numpy().astype(np.float32)
                    out.update(zip(chunk, np.split(decoded, np.cumsum([len(latent[c.cell_type]) for c in chunk])[:-1])))
        finally:
            module.train(was_training)
        return out
