"""`biolord`: the real biolord 0.0.3 model (Piran et al., Nature Biotechnology 2024), wrapped for the
harness, with drugs given as their molecules so that a drug no training cell was treated with can
be predicted.

biolord decomposes a cell into known attributes, each with an embedding of its own, and an unknown
rest, one learned latent code per training cell; a decoder maps their concatenation to a Gaussian
per gene. As in its authors' sci-Plex3 set-up, the cell type is a categorical attribute and the drug
an ordered one: a vector of the drug's molecular features with the dose (divided by the largest
training dose) appended, passed through a trained network. Here the molecular features are the Morgan
fingerprint of its SMILES (predictors/structures.py); a control cell has an all-zero fingerprint
and dose 0. A held-out drug is its fingerprint through the same network.

A counterfactual keeps a control cell's latent code and cell type and swaps its drug vector for the
target drug's at the target dose, as the authors' sci-Plex3 evaluation does. The harness hands over
real training controls, whose latent codes were learned; a control cell that is not a training row
borrows the code of its nearest training control. See docs/baselines.md (biolord).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable, Iterable

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from bench.errors import BenchError, DataUnsuitable
from bench.schema import CELL_TYPE, DOSE, DRUG, Condition
from predictors.base import PREDICT_ROWS, Predictor, Task, by_cell_type, dense, gaussian_cells, row_chunks
from predictors.structures import Fingerprints, held_out_drugs, smiles_problem, task_smiles

log = logging.getLogger(__name__)
INSTALL_HINT = "missing package biolord (biolord 0.0.3 on the CPA stack's scvi-tools 0.20.3): run install.sh"
DRUG_KEY = "drug_dose"  # the ordered attribute: fingerprint bits, then the scaled dose
# Warnings biolord raises every epoch about its own bookkeeping.
TRAINING_NOISE = ("The number of training batches", "Mean of empty slice")

# The authors' sci-Plex3 settings (nitzanlab/biolord_reproducibility, utils/parameters_sciplex3.py and
# notebooks/perturbations/sciplex3/2_perturbations_sciplex3_evaluation.ipynb) that bench keeps as
# they are; the sizes are options (docs/baselines.md gives both).
MODULE_FIXED = {"use_batch_norm": False, "use_layer_norm": False, "gene_likelihood": "normal", "attribute_dropout_rate": 0.1}
PLAN_FIXED = {"n_epochs_warmup": 0, "latent_lr": 1e-4, "latent_wd": 1e-4, "decoder_lr": 1e-4, "decoder_wd": 1e-4,
              "attribute_nn_wd": 4e-8, "step_size_lr": 45, "cosine_scheduler": True, "scheduler_final_lr": 1e-5}


def drug_features(fingerprints: Fingerprints, drugs: np.ndarray, doses: np.ndarray, control: str, dose_scale: float) -> sp.csr_matrix:
    """One row per cell: the drug's fingerprint bits (zeros for the control) and dose / `dose_scale`."""
    rows = np.zeros((len(drugs), fingerprints.n_bits), dtype=np.float32)
    treated = drugs != control
    if treated.any():
        rows[treated] = fingerprints.rows(list(drugs[treated]))
    scaled = np.asarray(doses, dtype=np.float32)[:, None] / np.float32(dose_scale)
    return sp.csr_matrix(np.hstack([rows, np.where(treated[:, None], scaled, 0.0).astype(np.float32)]))


class ControlCodes:
    """Which learned latent code each handed control cell carries: the training row it is a copy of
    (exact float32 bytes), else the nearest training control of its cell type (Euclidean)."""

    def __init__(self, x, cell_types: np.ndarray, is_control: np.ndarray) -> None:
        self._rows: dict[str, np.ndarray] = {}
        self._cells: dict[str, np.ndarray] = {}
        self._index: dict[str, dict[bytes, int]] = {}
        for ct in np.unique(cell_types[is_control]):
            rows = np.flatnonzero(is_control & (cell_types == ct))
            cells = dense(x[rows])
            self._rows[ct], self._cells[ct] = rows, cells
            self._index[ct] = {cell.tobytes(): int(r) for cell, r in zip(cells, rows)}

    def __call__(self, cell_type: str, controls: np.ndarray) -> np.ndarray:
        if cell_type not in self._index:
            raise BenchError(f"biolord: no training control of cell type '{cell_type}'")
        controls = np.ascontiguousarray(controls, dtype=np.float32)
        index = self._index[cell_type]
        codes = np.array([index.get(cell.tobytes(), -1) for cell in controls], dtype=np.int64)
        missing = np.flatnonzero(codes < 0)
        if missing.size:
            known = self._cells[cell_type]
            distance = (controls[missing] ** 2).sum(1)[:, None] - 2 * controls[missing] @ known.T + (known ** 2).sum(1)[None, :]
            codes[missing] = self._rows[cell_type][distance.argmin(axis=1)]
        return codes


class Biolord(Predictor):
    """`biolord`: biolord 0.0.3, drugs as Morgan fingerprints with the dose (ordered attribute), cell types categorical.

    Trained with biolord's own module and training plan at its authors' sci-Plex3 settings (sizes:
    the package's defaults); counterfactual cells from the control cells' learned latent codes under
    the target drug and dose, sampled from the Gaussian (`sample=False`: the means)."""

    trainable = True
    packages = ("biolord",)
    defaults = {"epochs": 200, "n_latent": 128, "decoder_width": 512, "decoder_depth": 4, "attribute_nn_width": 256,
                "attribute_nn_depth": 2, "n_latent_attribute_ordered": 16, "n_latent_attribute_categorical": 4,
                "reconstruction_penalty": 1e4, "unknown_attribute_penalty": 1e-1, "unknown_attribute_noise_param": 20.0,
                "attribute_nn_lr": 1e-2, "batch_size": 512, "radius": 2, "n_bits": 2048, "sample": True}
    search_space = {"n_latent": [32, 128], "unknown_attribute_noise_param": [0.1, 20.0]}

    @classmethod
    def unavailable(cls, task: Task) -> str | None:
        import importlib.util

        if importlib.util.find_spec("biolord") is None:
            return INSTALL_HINT
        return super().unavailable(task) or smiles_problem(task)

    def fit(self, task: Task) -> None:
        from predictors.scvi_compat import epoch_reporter, load_biolord

        biolord = load_biolord()
        from biolord._train import biolordTrainingPlan
        from scvi.dataloaders import DataSplitter
        from scvi.train import TrainRunner

        c = self.config
        self.control = task.control
        held = held_out_drugs(task)
        drugs = task.train.obs[DRUG].astype(str).to_numpy()
        self._fingerprints = Fingerprints(task_smiles(task), set(drugs) | held, c["radius"], c["n_bits"])
        self._fingerprints.require(held, "biolord")
        keep = (drugs == task.control) | np.isin(drugs, list(self._fingerprints.drugs))
        if not (keep & (drugs != task.control)).any():
            raise DataUnsuitable("biolord: no training drug has a readable SMILES (obs 'smiles')")
        self.left_out = sorted(set(drugs[~keep]))
        if self.left_out:
            log.warning("biolord: %d training drug(s) without a readable SMILES left out: %s", len(self.left_out), ", ".join(self.left_out[:5]))
        obs = task.train.obs.iloc[np.flatnonzero(keep)]
        doses = obs[DOSE].astype(float).to_numpy()
        self._dose_scale = float(doses.max()) if doses.max() > 0 else 1.0
        x = task.train.X[np.flatnonzero(keep)] if not keep.all() else task.train.X
        cell_types = obs[CELL_TYPE].astype(str).to_numpy()
        self._cell_types = sorted(set(cell_types))
        adata = ad.AnnData(x, obs=pd.DataFrame({CELL_TYPE: pd.Categorical(cell_types, categories=self._cell_types)},
                                               index=[f"r{i}" for i in range(len(obs))]),
                           var=pd.DataFrame(index=np.asarray(task.genes, dtype=str)))
        adata.obsm[DRUG_KEY] = drug_features(self._fingerprints, drugs[keep], doses, task.control, self._dose_scale)
        self._codes = ControlCodes(x, cell_types, drugs[keep] == task.control)

        biolord.Biolord.setup_anndata(adata, ordered_attributes_keys=[DRUG_KEY], categorical_attributes_keys=[CELL_TYPE])
        module_params = {**MODULE_FIXED, "seed": self.seed, "decoder_width": c["decoder_width"], "decoder_depth": c["decoder_depth"],
                         "attribute_nn_width": c["attribute_nn_width"], "attribute_nn_depth": c["attribute_nn_depth"],
                         "n_latent_attribute_ordered": c["n_latent_attribute_ordered"],
                         "n_latent_attribute_categorical": c["n_latent_attribute_categorical"],
                         "reconstruction_penalty": c["reconstruction_penalty"], "unknown_attribute_penalty": c["unknown_attribute_penalty"],
                         "unknown_attribute_noise_param": c["unknown_attribute_noise_param"]}
        self.model = biolord.Biolord(adata, n_latent=c["n_latent"], module_params=module_params, train_classifiers=False)
        # biolord 0.0.3's `Biolord.train` builds its trainer with scvi-tools >= 1.0 arguments; on
        # 0.20.3 the same three parts are assembled here: biolord's training plan, a splitter that
        # keeps every cell for training (model selection is the harness's) and scvi's runner.
        plan = biolordTrainingPlan(self.model.module, attribute_nn_lr=c["attribute_nn_lr"], **PLAN_FIXED)
        splitter = DataSplitter(self.model.adata_manager, train_size=1.0, batch_size=c["batch_size"])
        reporter = epoch_reporter(task.report_epoch, lambda out: {"recon": out["reconstruction_loss"],
                                                                  "penalty": out["unknown_attribute_penalty_loss"]})
        with tempfile.TemporaryDirectory(prefix="bench-biolord-") as tmp, warnings.catch_warnings():
            for message in TRAINING_NOISE:
                warnings.filterwarnings("ignore", message=message)
            runner = TrainRunner(self.model, training_plan=plan, data_splitter=splitter, max_epochs=task.epochs(c["epochs"]),
                                 callbacks=[reporter], enable_progress_bar=False, enable_checkpointing=False,
                                 default_root_dir=tmp, enable_model_summary=False, check_val_every_n_epoch=None)
            runner()
        self.model.module.eval()

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return self.predict_many([condition], lambda ct: controls)[condition]

    def predict_many(self, conditions: Iterable[Condition], controls: Callable[[str], np.ndarray]) -> dict[Condition, np.ndarray]:
        """Counterfactual cells: with `sample` (default), one draw per control cell from biolord's
        Gaussian, seeded by the predictor seed and the condition; without, the decoder's means."""
        return gaussian_cells(self.distribution(conditions, controls), self.seed, self.config["sample"])

    def distribution(self, conditions: Iterable[Condition],
                     controls: Callable[[str], np.ndarray]) -> dict[Condition, tuple[np.ndarray, np.ndarray]]:
        """Per condition, biolord's predictive mean and standard deviation (cells x genes) of each
        control cell under the condition's drug and dose (the forward pass of `get_expression`)."""
        from scvi import REGISTRY_KEYS

        module = self.model.module
        was_training = module.training
        module.eval()
        conditions = list(conditions)
        given = {ct: np.asarray(controls(ct), dtype=np.float32) for ct in by_cell_type(conditions)}
        codes = {ct: self._codes(ct, cells) for ct, cells in given.items()}
        device = next(module.parameters()).device
        out: dict[Condition, tuple[np.ndarray, np.ndarray]] = {}
        try:
            with torch.no_grad():
                for chunk in row_chunks(conditions, lambda c: len(given[c.cell_type]), PREDICT_ROWS):
                    n = [len(given[c.cell_type]) for c in chunk]
                    drugs = np.concatenate([np.full(k, c.drug, dtype=object) for c, k in zip(chunk, n)])
                    doses = np.concatenate([np.full(k, c.dose, dtype=np.float64) for c, k in zip(chunk, n)])
                    tensors = {
                        REGISTRY_KEYS.X_KEY: torch.as_tensor(np.vstack([given[c.cell_type] for c in chunk]), device=device),
                        REGISTRY_KEYS.INDICES_KEY: torch.as_tensor(np.concatenate([codes[c.cell_type] for c in chunk])[:, None], device=device),
                        CELL_TYPE: torch.as_tensor(np.concatenate([np.full(k, self._cell_code(c.cell_type), dtype=np.float32)
                                                                    for c, k in zip(chunk, n)])[:, None], device=device),
                        DRUG_KEY: torch.as_tensor(self._drug_rows(drugs, doses), device=device),
                    }
                    mean, variance = module.get_expression(tensors)
                    total = sum(n)
                    mean = mean.reshape(total, -1).cpu().numpy().astype(np.float32)
                    std = np.sqrt(np.clip(variance.reshape(total, -1).cpu().numpy(), 0, None)).astype(np.float32)
                    sizes = np.cumsum(n)[:-1]
                    out.update(zip(chunk, zip(np.split(mean, sizes), np.split(std, sizes))))
        finally:
            module.train(was_training)
        return out

    def _cell_code(self, cell_type: str) -> int:
        if cell_type not in self._cell_types:
            raise BenchError(f"biolord: cell type '{cell_type}' has no training cells")
        return self._cell_types.index(cell_type)

    def _drug_rows(self, drugs: np.ndarray, doses: np.ndarray) -> np.ndarray:
        missing = sorted({d for d in drugs if d != self.control and d not in self._fingerprints})
        if missing:
            raise BenchError(f"biolord: no fingerprint of drug '{missing[0]}' (no readable SMILES at fit time)")
        return drug_features(self._fingerprints, drugs.astype(str), doses, self.control, self._dose_scale).toarray()
