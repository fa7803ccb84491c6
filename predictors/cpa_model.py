"""`CPA` and `CPA_transfer`: the real cpa-tools 0.8.8 model (Lotfollahi et al.), wrapped for the harness.

CPA learns one embedding per drug from the cells treated with it. An unseen drug has no such cells,
so plain `CPA` predicts it from an embedding that received no training signal (cpa-tools' decay of
unused rows pulls it towards zero): it carries no information about that drug. `CPA_transfer` first
trains the same model on the bulk set restricted to the single-cell cell lines and drugs (held-out
drugs included), then copies the module weights into the single-cell model and fine-tunes it, so an
unseen drug is represented by its bulk-learned embedding.

Both return cells drawn from CPA's own predictive distribution (its Gaussian likelihood: per gene, the
decoder's mean and variance at the counterfactual latent state of each control cell); option
`sample=False` returns the decoder's means instead. See docs/baselines.md.
"""

from __future__ import annotations

import copy
import importlib.util
import tempfile
import warnings
from collections.abc import Callable, Iterable

import anndata as ad
import numpy as np
import pandas as pd
import torch

from bench.errors import BenchError, DataUnsuitable
from bench.schema import CELL_TYPE, DOSE, DRUG, Condition
from predictors.base import PREDICT_ROWS, Predictor, Task, by_cell_type, dense, gaussian_cells, row_chunks
from predictors.cpa_metrics import fast_r2

PAD = "<PAD>"
DOSE_KEY, SPLIT_KEY = "cpa_dose", "cpa_split"
INSTALL_HINT = "missing package cpa (cpa-tools 0.8.8 and its pinned stack): run install.sh"
# Warnings cpa-tools raises every epoch about its own bookkeeping (empty metric lists, one-cell groups).
TRAINING_NOISE = ("Mean of empty slice", "invalid value encountered in scalar divide", "var\\(\\): degrees of freedom",
                  "The number of training batches")


def vocabulary(task: Task) -> dict[str, int]:
    """CPA's drug vocabulary: padding, control, then every single-cell drug, held-out ones included."""
    drugs = {c.drug for c in task.training_conditions() + task.test_conditions + task.val_conditions}
    return {name: i for i, name in enumerate([PAD, task.control, *sorted(drugs)])}


def frame(x: np.ndarray, obs: pd.DataFrame, genes, drugs: list[str], cell_types: list[str], dose_scale: float,
          split: np.ndarray) -> ad.AnnData:
    """An AnnData in the layout CPA is set up with; category lists are fixed so codes agree across frames."""
    o = pd.DataFrame(index=[f"r{i}" for i in range(len(obs))])
    o[DRUG] = pd.Categorical(obs[DRUG].astype(str).to_numpy(), categories=drugs)
    o[CELL_TYPE] = pd.Categorical(obs[CELL_TYPE].astype(str).to_numpy(), categories=cell_types)
    o[DOSE_KEY] = obs[DOSE].astype(float).to_numpy() / dose_scale
    o[SPLIT_KEY] = split
    o[DRUG] = o[DRUG].cat.remove_unused_categories()
    return ad.AnnData(np.asarray(x, dtype=np.float32), obs=o, var=pd.DataFrame(index=np.asarray(genes, dtype=str)))


def epoch_reporter(report):
    """A lightning callback that evaluates (module in eval mode) after every epoch and keeps the last
    weights, because cpa-tools restores its best-validation state at the end: the initial one here."""
    from pytorch_lightning import Callback

    class EpochReporter(Callback):
        def __init__(self) -> None:
            self.last_state = None

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            stats = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("recon", "adv_loss", "r2_mean")}
            pl_module.module.eval()
            try:
                with torch.no_grad():
                    report(trainer.current_epoch + 1, **stats)
            finally:
                pl_module.module.train()

        def on_train_end(self, trainer, pl_module) -> None:
            self.last_state = copy.deepcopy(pl_module.module.state_dict())

    return EpochReporter()


def predictive_distribution(module, batch: dict[str, torch.Tensor]) -> torch.distributions.Normal:
    """CPA's predictive distribution of every row of `batch` under the Gaussian likelihood: a Normal per
    gene whose mean and variance the decoder outputs at the row's latent state (basal + drug + cell
    type). The same forward pass as cpa-tools' `CPAModule.get_expression`, which keeps only the mean."""
    tensors, _ = module.mixup_data(batch, alpha=0.0)
    _, generative = module.forward(tensors, inference_kwargs={"n_samples": 1, "covars_to_add": None},
                                   get_generative_input_kwargs={"latent": "z"}, compute_loss=False)
    return generative["px"]


class CpaPredictor(Predictor):
    """`CPA`: cpa-tools' CPA on the single-cell training set; it knows nothing about an unseen drug.

    Gaussian loss on log-normalised data. An unseen drug's embedding row is used by no training cell,
    so it is untrained (only weight decay moves it): the model has no information about that drug.
    Predicted cells are sampled from the model's Gaussian (`sample=False`: the decoder's means)."""

    trainable = True
    packages = ("cpa",)
    defaults = {"epochs": 50, "n_latent": 64, "n_hidden": 256, "n_layers": 2, "batch_size": 128, "sample": True}
    search_space = {"n_latent": [32, 64], "n_hidden": [128, 256]}

    @classmethod
    def unavailable(cls, task: Task) -> str | None:
        if importlib.util.find_spec("cpa") is None:
            return INSTALL_HINT
        return super().unavailable(task)

    def fit(self, task: Task) -> None:
        from predictors.cpa_compat import load_cpa

        self._cpa = load_cpa()
        self._task = task
        self._vocab = vocabulary(task)
        self._cell_types = sorted(set(task.train.obs[CELL_TYPE].astype(str)))
        doses = task.train.obs[DOSE].astype(float)
        self._dose_scale = float(doses.max()) if doses.max() > 0 else 1.0
        self.model = self._model(self._single_cell_frame(task))
        self._before_single_cell(task)
        self._train(self.model, task.epochs(self.config["epochs"]), task.report_epoch, self._single_cell_plan())

    def _before_single_cell(self, task: Task) -> None:
        """Hook for CPA_transfer: initialise the single-cell model before it trains."""

    def _single_cell_plan(self) -> dict:
        """Training-plan options of the single-cell phase: cpa-tools' defaults."""
        return {}

    def _single_cell_frame(self, task: Task) -> ad.AnnData:
        """Training cells plus one placeholder row per held-out (cell type, drug, dose): CPA must meet
        every drug at setup, and those rows (a control profile, split 'ood') are never trained on."""
        train = task.train
        held_out = sorted(set(task.test_conditions) | set(task.val_conditions))
        first_control = {ct: task.controls(ct)[0] for ct in {c.cell_type for c in held_out}}
        x = np.vstack([dense(train.X)] + [first_control[c.cell_type][None, :] for c in held_out])
        extra = pd.DataFrame([(c.drug, c.cell_type, c.dose) for c in held_out], columns=[DRUG, CELL_TYPE, DOSE])
        obs = pd.concat([train.obs[[DRUG, CELL_TYPE, DOSE]].astype({DRUG: str, CELL_TYPE: str}), extra], ignore_index=True)
        split = np.array(["train"] * train.n_obs + ["ood"] * len(held_out))
        return frame(x, obs, task.genes, list(self._vocab)[1:], self._cell_types, self._dose_scale, split)

    def _model(self, adata: ad.AnnData):
        """Set up `adata` with this model's own vocabularies (CPA keeps them on the class) and build CPA."""
        CPA = self._cpa.CPA
        CPA.pert_encoder, CPA.covars_encoder, CPA.pert_smiles_map = dict(self._vocab), None, None
        CPA.setup_anndata(adata, perturbation_key=DRUG, control_group=self._task.control, dosage_key=DOSE_KEY,
                          categorical_covariate_keys=[CELL_TYPE], is_count_data=False, max_comb_len=1,
                          **self._setup_options())
        perts = adata.obsm["perts"][:, 0]
        silent = (perts == self._vocab[PAD]) | ((perts == self._vocab[self._task.control]) & (adata.obs[DRUG] != self._task.control).to_numpy())
        if silent.any():
            raise BenchError(f"CPA: drug '{adata.obs[DRUG].iloc[int(np.flatnonzero(silent)[0])]}' fell out of the vocabulary")
        c = self.config
        return CPA(adata, split_key=SPLIT_KEY, recon_loss="gauss", doser_type="logsigm", n_latent=c["n_latent"],
                   n_hidden_encoder=c["n_hidden"], n_layers_encoder=c["n_layers"], n_hidden_decoder=c["n_hidden"],
                   n_layers_decoder=c["n_layers"], seed=self.seed, **self._model_options())

    def _setup_options(self) -> dict:
        """Extra `CPA.setup_anndata` keywords (CPA_smiles: the SMILES column); none for CPA."""
        return {}

    def _model_options(self) -> dict:
        """Extra `CPA(...)` keywords (CPA_smiles: `use_rdkit_embeddings`); none for CPA."""
        return {}

    def _train(self, model, epochs: int, report, plan: dict) -> None:
        reporter = epoch_reporter(report)
        with tempfile.TemporaryDirectory(prefix="bench-cpa-") as tmp, warnings.catch_warnings(), fast_r2(model.module):
            for message in TRAINING_NOISE:
                warnings.filterwarnings("ignore", message=message)
            model.train(max_epochs=epochs, batch_size=self.config["batch_size"], plan_kwargs=plan, save_path=False,
                        early_stopping_patience=epochs + 1, callbacks=[reporter], enable_progress_bar=False,
                        default_root_dir=tmp, enable_model_summary=False)
        model.module.load_state_dict(reporter.last_state)
        model.module.eval()

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return self.predict_many([condition], lambda ct: controls)[condition]

    def predict_many(self, conditions: Iterable[Condition], controls: Callable[[str], np.ndarray]) -> dict[Condition, np.ndarray]:
        """Counterfactual cells: with `sample` (default), one draw per control cell from CPA's Gaussian
        (unclipped, as the model defines it), seeded by the predictor seed and the condition so a
        condition gets the same cells alone or batched; without, the decoder's means."""
        return gaussian_cells(self.distribution(conditions, controls), self.seed, self.config["sample"])

    def distribution(self, conditions: Iterable[Condition],
                     controls: Callable[[str], np.ndarray]) -> dict[Condition, tuple[np.ndarray, np.ndarray]]:
        """Per condition, the predictive mean and standard deviation (cells x genes) of each of that
        cell type's control cells, encoded, with the target drug and dose added; many conditions' rows
        go through the module at once (rows are independent in eval mode)."""
        module = self.model.module
        was_training = module.training
        module.eval()
        conditions = list(conditions)
        given = {ct: controls(ct) for ct in by_cell_type(conditions)}  # one copy per cell type
        out: dict[Condition, tuple[np.ndarray, np.ndarray]] = {}
        try:
            with torch.no_grad():
                for chunk in row_chunks(conditions, lambda c: len(given[c.cell_type]), PREDICT_ROWS):
                    parts = [self._tensors(c, given[c.cell_type]) for c in chunk]
                    px = predictive_distribution(module, {key: torch.cat([p[key] for p in parts]) for key in parts[0]})
                    sizes = np.cumsum([len(given[c.cell_type]) for c in chunk])[:-1]
                    means = np.split(px.loc.cpu().numpy().astype(np.float32), sizes)
                    stds = np.split(px.scale.cpu().numpy().astype(np.float32), sizes)
                    out.update(zip(chunk, zip(means, stds)))
        finally:
            module.train(was_training)
        return out

    def _tensors(self, condition: Condition, controls: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch CPA's data loader would yield for these cells relabelled with `condition`."""
        from cpa._utils import CPA_REGISTRY_KEYS as KEYS

        if condition.drug not in self._vocab:
            raise BenchError(f"CPA: drug '{condition.drug}' was not among the task's conditions at fit time")
        n = controls.shape[0]
        manager = self.model.adata_manager

        def code(key: str, value: str) -> float:
            mapping = list(manager.get_state_registry(key)["categorical_mapping"])
            if value not in mapping:
                raise BenchError(f"CPA: {key} '{value}' was not set up with the model")
            return float(mapping.index(value))

        def column(value: float) -> torch.Tensor:
            return torch.full((n, 1), value, dtype=torch.float32, device=self.model.device)

        return {
            KEYS.X_KEY: torch.as_tensor(np.asarray(controls, dtype=np.float32), device=self.model.device),
            KEYS.PERTURBATIONS: column(float(self._vocab[condition.drug])),
            KEYS.PERTURBATIONS_DOSAGES: column(condition.dose / self._dose_scale),
            KEYS.PERTURBATION_KEY: column(code(DRUG, condition.drug)),
            CELL_TYPE: column(code(CELL_TYPE, condition.cell_type)),
        }

    def drug_embeddings(self, model=None) -> dict[str, np.ndarray]:
        """The learned embedding row of every vocabulary drug (padding excluded)."""
        weight = (model or self.model).module.pert_network.pert_embedding.weight.detach().cpu().numpy()
        return {name: weight[i].copy() for name, i in self._vocab.items() if name != PAD}


class CpaTransfer(CpaPredictor):
    """`CPA_transfer` (paper baseline): CPA pre-trained on bulk, then fine-tuned on single cells.

    Bulk pre-training uses the profiles of the single-cell cell lines and drugs (held-out drugs
    included, so they get trained embeddings).

    Genes: the bulk model works on the genes both sets measure, in single-cell order; its gene-indexed
    weights (first encoder layer, decoder outputs) are copied into those genes' slots of the single-cell
    model, whose single-cell-only genes start from initialisation. Fine-tuning uses no weight decay by
    default: with Adam, a decay-only gradient moves an embedding row that no cell uses by about the
    learning rate per step, which would erase the held-out drugs' bulk embeddings."""

    needs = ("bulk",)
    defaults = {**CpaPredictor.defaults, "bulk_epochs": 50, "finetune_weight_decay": 0.0}

    def _before_single_cell(self, task: Task) -> None:
        assert task.bulk is not None  # needs = ("bulk",)
        shared = np.flatnonzero(np.isin(task.genes, np.asarray(task.bulk.var_names)))
        if shared.size == 0:
            raise BenchError("CPA_transfer: the bulk set shares no gene with the single-cell set")
        bulk = self.bulk_model = self._model(self._bulk_frame(task, task.genes[shared]))
        self._train(bulk, self.config["bulk_epochs"], lambda epoch, **stats: None, {})
        self.bulk_embeddings = self.drug_embeddings(bulk)
        copy_gene_indexed(bulk.module, self.model.module, shared)
        self.model.module.train()

    def _single_cell_plan(self) -> dict:
        decay = self.config["finetune_weight_decay"]
        return {"wd": decay, "doser_wd": decay}

    def _bulk_frame(self, task: Task, genes: np.ndarray) -> ad.AnnData:
        bulk = task.bulk
        assert bulk is not None  # needs = ("bulk",)
        obs = bulk.obs
        keep = obs[CELL_TYPE].astype(str).isin(self._cell_types).to_numpy() & obs[DRUG].astype(str).isin(list(self._vocab)).to_numpy()
        if not keep.any():
            raise DataUnsuitable("CPA_transfer: the bulk set has no profile of the single-cell cell lines and drugs")
        cols = pd.Index(bulk.var_names).get_indexer(genes)
        x = dense(bulk.X[np.flatnonzero(keep)])[:, cols]
        return frame(x, obs.loc[keep], genes, list(self._vocab)[1:], self._cell_types, self._dose_scale,
                     np.array(["train"] * int(keep.sum())))


def copy_gene_indexed(source: torch.nn.Module, target: torch.nn.Module, positions: np.ndarray) -> None:
    """Copy every weight of `source` into `target`; along a gene axis (source: len(positions) genes,
    target: more) the source values go to `positions` and the other target genes keep their values."""
    src, state = source.state_dict(), target.state_dict()
    index = torch.as_tensor(positions, dtype=torch.long)
    for key, t in state.items():
        s = src[key]
        if s.shape == t.shape:
            t.copy_(s)
            continue
        axes = [a for a in range(t.dim()) if s.shape[a] == len(positions) and t.shape[a] != s.shape[a]]
        others_match = all(s.shape[a] == t.shape[a] for a in range(t.dim()) if a not in axes)
        if len(axes) != 1 or s.dim() != t.dim() or not others_match:
            raise BenchError(f"CPA_transfer: cannot map weight '{key}' {tuple(s.shape)} onto {tuple(t.shape)}")
        t.index_copy_(axes[0], index, s)
    target.load_state_dict(state)
