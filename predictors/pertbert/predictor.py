"""The PertBERT predictors: a (pre-trained) bulk encoder fine-tuned on single cells, and its ablation
without bulk knowledge.

Fine-tuning maps a control cell and a condition to a treated cell: the encoder embeds the control
cell (its values on the encoder's genes), the condition encoder embeds (drug, cell type, dose), their
sum is decoded into a change of every single-cell gene, added to the control cell. Training matches,
per chunk of a training condition's cells, the set of transformed controls to the set of real
treated cells (squared error of the means plus the energy distance between the two sets), so
predictions keep the single-cell heterogeneity instead of collapsing to the mean. An epoch covers
every treated training cell once (batches.py); a step encodes each cell type's controls once for
all the conditions it serves.

Unseen drugs (`PertBERT`): a drug is represented by what the encoder makes of its bulk profiles: per
cell line, the mean [CLS] embedding of the drug's bulk profiles minus that of the line's controls,
averaged over the lines that measured it, computed once with the encoder as pre-training left it
(the untrained encoder for `BERT`). `PertBERTNoBulk` never reads
the bulk set: one learned vector per training drug, the mean of them for any other drug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import ClassVar

import anndata as ad
import numpy as np
import torch
from torch import nn

from bench.errors import BenchError
from bench.schema import CELL_TYPE, DOSE, DRUG, Condition, same_dose
from predictors.base import PREDICT_ROWS, Predictor, Task, by_cell_type, dense
from predictors.pertbert.batches import EpochPlanner, Step
from predictors.pertbert.device import gpu_request, resolve_device
from predictors.pertbert.model import EncoderConfig, FineTuneModel, FixedDrugs, LearnedDrugs, PatchEncoder
from predictors.pertbert.pretrain import Pretrained, log_dose, pretrained, untrained
from predictors.pertbert.settings import VARIANT_SETTINGS
from predictors.signatures import LineMatchedShifts


def energy_distance(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Energy distance between sets a and b (B, m, genes) whose members carry `weight` (B, m; rows
    sum to 1, 0 marks padding), averaged over the batch. Distances come from Gram matrices (one
    batched product per pair of sets; torch.cdist takes a slow path for sets of 25 rows or fewer)."""
    gram_aa, gram_bb = torch.bmm(a, a.transpose(1, 2)), torch.bmm(b, b.transpose(1, 2))
    sq_a, sq_b = gram_aa.diagonal(dim1=1, dim2=2), gram_bb.diagonal(dim1=1, dim2=2)
    off_diagonal = 1.0 - torch.eye(a.shape[1], device=a.device)  # a member's distance to itself is 0

    def mean_distance(gram: torch.Tensor, sq_x: torch.Tensor, sq_y: torch.Tensor, same: bool) -> torch.Tensor:
        d = (sq_x[:, :, None] + sq_y[:, None, :] - 2 * gram).clamp_min(1e-12).sqrt()
        return torch.einsum("bi,bij,bj->b", weight, d * off_diagonal if same else d, weight)

    ab = mean_distance(torch.bmm(a, b.transpose(1, 2)), sq_a, sq_b, False)
    return (2 * ab - mean_distance(gram_aa, sq_a, sq_a, True) - mean_distance(gram_bb, sq_b, sq_b, True)).mean()


def set_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, energy_weight: float) -> torch.Tensor:
    """Squared error between the weighted set means plus `energy_weight` x their energy distance."""
    mean_error = ((torch.bmm(weight[:, None], pred - target)) ** 2).mean()
    return mean_error + energy_weight * energy_distance(pred, target, weight)


class PertBERT(Predictor):
    """`BERT*` variants: the paper's encoder (pre-trained or not) + condition encoder + LSTM/MLP decoder."""

    trainable = True
    search_space = {"lr": [3e-3, 1e-3], "energy_weight": [0.05, 0.2]}
    needs: ClassVar[tuple[str, ...]] = ("bulk",)
    resources: ClassVar[dict] = gpu_request()
    defaults = {
        "pretrain": None,  # None (BERT), "transfer", "whole" or "subset"
        "decoder": "lstm",  # or "mlp"
        "epochs": 10,
        "lr": 3e-3,
        "cells_per_condition": 32,  # largest chunk of one condition's cells matched as a set
        "conditions_per_batch": 32,  # chunks per optimiser step
        "energy_weight": 0.05,
        "patch": 40,
        "width": 64,
        "layers": 2,
        "decoder_steps": 8,
        "decoder_hidden": 64,
        "pretrain_epochs": 12,
        "pretrain_stages": 1,  # 2: masking alone for half the pre-training epochs, then the four tasks
        "device": "auto",  # cuda when available, else cpu
    }

    # -- set-up -------------------------------------------------------------------------------
    def _encoder_config(self) -> dict:
        return {"patch": self.config["patch"], "width": self.config["width"], "layers": self.config["layers"]}

    def _encoder(self, task: Task) -> Pretrained:
        if self.config["pretrain"] is None:
            return untrained(task.bulk, self._encoder_config(), self.seed, task.control)
        if self.config["pretrain"] not in VARIANT_SETTINGS:
            raise BenchError(f"PertBERT: unknown pretrain '{self.config['pretrain']}': expected one of {', '.join(VARIANT_SETTINGS)}")
        setting = replace(VARIANT_SETTINGS[self.config["pretrain"]], epochs=self.config["pretrain_epochs"])
        setting = setting.with_stages(self.config["pretrain_stages"])
        cell_types = sorted(set(task.train.obs[CELL_TYPE].astype(str)))
        return pretrained(task.cache_dir, task.bulk, setting, cell_types, task_drugs(task), self._encoder_config(),
                          task.control, device=self.device)

    def drug_representations(self, pre: Pretrained, bulk: ad.AnnData, drugs: list[str], control: str) -> dict[str, np.ndarray]:
        """What the encoder makes of each drug's bulk profiles: per cell line, the mean embedding of
        the drug's profiles minus that of the line's controls, averaged over the lines that measured
        the drug (predictors/signatures.py: never a drug in one line against controls of another).
        Drugs without bulk profiles get none (they cannot be represented, so they are not fine-tuned on)."""
        device = next(pre.encoder.parameters()).device
        x = torch.from_numpy(pre.standardise(dense(bulk.X))).to(device)
        pre.encoder.eval()

        def mean_embedding(rows: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                parts = [pre.encoder.embed(x[rows[i : i + 1024]]) for i in range(0, len(rows), 1024)]
                return torch.cat(parts).mean(0).cpu().numpy()

        shifts = LineMatchedShifts(bulk.obs, control, mean_embedding)
        reps = {d: shifts.averaged(d) for d in drugs}
        return {d: v for d, v in reps.items() if v is not None}

    def _inputs(self, task: Task) -> tuple[PatchEncoder, np.ndarray, nn.Module]:
        """The encoder, the single-cell column feeding each encoder gene (-1: none) and the drug input."""
        pre = self._encoder(task)
        self.pretrain_metrics = pre.metrics
        pos = {g: i for i, g in enumerate(task.train.var_names)}
        source = np.array([pos.get(g, -1) for g in pre.genes])
        reps = self.drug_representations(pre.to(self.device), task.bulk, task_drugs(task), task.control)
        drugs = sorted(reps)
        self.unrepresented = sorted(set(task_drugs(task)) - set(reps))  # training drugs without bulk profiles
        self.drug_scale = float(np.std(np.stack(list(reps.values()))) + 1e-6)
        self.drug_reps = {d: (v / self.drug_scale).astype(np.float32) for d, v in reps.items()}
        self._drug_rows = {d: i for i, d in enumerate(drugs)}
        return pre.encoder, source, FixedDrugs(torch.from_numpy(np.stack([self.drug_reps[d] for d in drugs])))

    def _drug_row(self, drug: str) -> int:
        if drug not in self._drug_rows:
            raise BenchError(f"PertBERT: drug '{drug}' has no representation (no bulk profiles, or not among the "
                             "task's conditions at fit time)")
        return self._drug_rows[drug]

    def drug_vectors(self, drugs: list[str]) -> np.ndarray:
        """The drug input the condition encoder receives for each of `drugs` (one row each)."""
        rows = torch.tensor([self._drug_row(d) for d in drugs], device=self.device)
        with torch.inference_mode():
            return self.model.drugs(rows).cpu().numpy()

    def fit(self, task: Task) -> None:
        self.device = resolve_device(self.config["device"])
        train = task.train
        x = dense(train.X)
        self._mean, self._std = x.mean(axis=0), x.std(axis=0) + 1e-3
        self._cell_types = sorted(set(train.obs[CELL_TYPE].astype(str)))
        with torch.random.fork_rng(devices=[]):  # weights from the seed alone, not from the global stream's state
            torch.default_generator.manual_seed(self.seed)
            encoder, source, drugs = self._inputs(task)
        if (source < 0).all():
            raise BenchError("PertBERT: no gene is shared between the encoder's and the single-cell genes")
        self._source = torch.from_numpy(source).to(self.device)
        with torch.random.fork_rng(devices=[]):  # own stream: a cache hit or miss above cannot shift it
            torch.default_generator.manual_seed(int(np.random.default_rng(self.seed).integers(2**62)))
            self.model = FineTuneModel(encoder, drugs, encoder.cfg.width, len(self._cell_types), train.n_vars,
                                       self.config["decoder"], self.config["decoder_steps"],
                                       self.config["decoder_hidden"]).to(self.device)
        self._train_loop(task, torch.from_numpy(self._standardise(x)).to(self.device))

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self._mean) / self._std).astype(np.float32)

    def _encoder_input(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised sc cells -> encoder genes (genes the single-cell set lacks are 0, the mean)."""
        return z[:, self._source.clamp(min=0)] * (self._source >= 0)

    def _condition_tensors(self, conds: list[Condition]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Drug rows, cell-type one-hots and log10 doses of `conds`, on the model's device."""
        types = {t: i for i, t in enumerate(self._cell_types)}
        for c in conds:
            if c.cell_type not in types:
                raise BenchError(f"PertBERT: cell type '{c.cell_type}' was not in training")
        drug = torch.tensor([self._drug_row(c.drug) for c in conds], dtype=torch.long)
        onehot = nn.functional.one_hot(torch.tensor([types[c.cell_type] for c in conds]), len(types)).float()
        dose = torch.from_numpy(log_dose(np.array([c.dose for c in conds])))
        return drug.to(self.device), onehot.to(self.device), dose.to(self.device)

    # -- training -----------------------------------------------------------------------------
    def _train_loop(self, task: Task, z: torch.Tensor) -> None:
        obs = task.train.obs
        cts = obs[CELL_TYPE].astype(str).to_numpy()
        drugs = obs[DRUG].astype(str).to_numpy()
        doses = obs[DOSE].astype(float).to_numpy()
        conds = [c for c in task.training_conditions() if c.drug in self._drug_rows]  # drugs with a representation
        condition_of = np.full(len(obs), -1)
        for i, c in enumerate(conds):
            condition_of[(cts == c.cell_type) & (drugs == c.drug) & same_dose(doses, c.dose)] = i
        treated = np.flatnonzero(condition_of >= 0)
        control_rows = np.flatnonzero(drugs == task.control)
        type_of = {t: i for i, t in enumerate(self._cell_types)}
        planner = EpochPlanner(condition_of[treated], np.array([type_of[c.cell_type] for c in conds]),
                               [np.flatnonzero(cts[control_rows] == t) for t in self._cell_types],
                               self.config["cells_per_condition"], self.config["conditions_per_batch"])
        rows = torch.from_numpy(control_rows).to(self.device)
        sets = _TrainingSets(z[torch.from_numpy(treated).to(self.device)], z[rows], self._encoder_input(z[rows]),
                             self._condition_tensors(conds))
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.config["lr"], weight_decay=0.01, foreach=True)
        rng = np.random.default_rng(self.seed)
        for epoch in range(1, task.epochs(self.config["epochs"]) + 1):
            self.model.train()
            plan = planner.epoch(rng)
            losses = []
            for step in plan.steps:
                loss = self._step_loss(sets, step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            task.report_epoch(epoch, loss=float(torch.stack(losses).mean()), cells=plan.cells)

    def _step_loss(self, sets: _TrainingSets, step: Step) -> torch.Tensor:
        """Encode the step's control pool once, decode one predicted cell per target, match the sets."""
        dev = self.device
        pool = torch.from_numpy(step.pool).to(dev)
        cells = self.model.encoder.embed(sets.control_input[pool])
        chunk = torch.from_numpy(step.chunk_condition).to(dev)
        conditions = self.model.conditions(*(t[chunk] for t in sets.conditions))
        valid = torch.from_numpy(step.valid).to(dev)
        b, j = np.nonzero(step.valid)
        b_t, src = torch.from_numpy(b).to(dev), pool.new_tensor(step.sources[b, j])
        flat = sets.controls[pool[src]] + self.model.decode(cells[src], conditions[b_t])
        if step.valid.all():  # no chunk of this step is short: no padding to lay out
            pred = flat.view(*step.valid.shape, -1)
        else:
            pred = flat.new_zeros(*step.valid.shape, flat.shape[1])
            pred[valid] = flat
        target = sets.treated[torch.from_numpy(step.targets).to(dev)]
        weight = valid.float() / valid.sum(1, keepdim=True)
        return set_loss(pred, target, weight, self.config["energy_weight"])

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return self.predict_many([condition], lambda ct: controls)[condition]

    def predict_many(self, conditions: Iterable[Condition], controls: Callable[[str], np.ndarray]) -> dict[Condition, np.ndarray]:
        """Encode each cell type's controls once, then decode its conditions many at a time."""
        self.model.eval()
        std = torch.from_numpy(self._std.astype(np.float32)).to(self.device)
        out: dict[Condition, np.ndarray] = {}
        with torch.inference_mode():
            for ct, conds in by_cell_type(conditions).items():
                x = np.asarray(controls(ct), dtype=np.float32)
                z = torch.from_numpy(self._standardise(x)).to(self.device)
                cells = self.model.encoder.embed(self._encoder_input(z))
                embedded = self.model.conditions(*self._condition_tensors(conds))
                base = torch.from_numpy(x).to(self.device)  # = z * std + mean: the control cells themselves
                per_chunk = max(1, PREDICT_ROWS // len(z))
                for start in range(0, len(conds), per_chunk):
                    part = embedded[start : start + per_chunk]
                    change = self.model.decode(cells.repeat(len(part), 1), part.repeat_interleave(len(z), dim=0))
                    # (control + change) in standardised units, back to the data's: x + change * std.
                    pred = torch.addcmul(base, change.view(len(part), len(z), -1), std)  # clipped at 0 by the harness
                    out.update(zip(conds[start : start + per_chunk], pred.cpu().numpy()))
        return out


class PertBERTNoBulk(PertBERT):
    """`BERT_nobulk` (ablation): PertBERT with no bulk knowledge at all. The encoder (untrained) reads
    the single-cell genes; a drug is a learned vector per training drug, and every drug without
    training cells gets the mean of those vectors. The bulk set is never read."""

    needs = ()
    defaults = {k: v for k, v in PertBERT.defaults.items() if k not in ("pretrain", "pretrain_epochs", "pretrain_stages")}

    def _inputs(self, task: Task) -> tuple[PatchEncoder, np.ndarray, nn.Module]:
        self.pretrain_metrics = {}
        encoder = PatchEncoder(EncoderConfig(n_genes=task.train.n_vars, **self._encoder_config()))
        trained = sorted({c.drug for c in task.training_conditions()})
        self._drug_rows = {d: i for i, d in enumerate(trained)}
        return encoder, np.arange(task.train.n_vars), LearnedDrugs(len(trained), encoder.cfg.width)

    def _drug_row(self, drug: str) -> int:
        return self._drug_rows.get(drug, len(self._drug_rows))


@dataclass(frozen=True)
class _TrainingSets:
    """Fine-tuning tensors built once: standardised treated and control cells, the controls' encoder
    input, and the training conditions' (drug row, cell-type one-hot, log dose)."""

    treated: torch.Tensor
    controls: torch.Tensor
    control_input: torch.Tensor
    conditions: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def task_drugs(task: Task) -> list[str]:
    """Every drug of the task's training, test and validation conditions, sorted."""
    return sorted({c.drug for c in task.training_conditions() + task.test_conditions + task.val_conditions})
