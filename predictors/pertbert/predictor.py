"""The PertBERT predictor: a (pre-trained) bulk encoder fine-tuned on single cells.

Fine-tuning maps a control cell and a condition to a treated cell: the encoder embeds the control
cell (its values on the bulk genes), the condition encoder embeds (drug, cell type, dose), their
sum is decoded into a change of every single-cell gene, added to the control cell. Training matches,
per training condition, the set of transformed controls to the set of real treated cells (squared
error of the means plus the energy distance between the two sets), so predictions keep the
single-cell heterogeneity instead of collapsing to the mean.

Unseen drugs: a drug is represented by what the encoder makes of its bulk profiles: the mean
[CLS] embedding of the drug's bulk profiles minus that of the bulk controls, computed once with
the encoder as pre-training left it (the untrained encoder for `BERT`). Held-out drugs are in the
bulk set, so their representation is the pre-trained one, never an untrained vector.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from bench.errors import BenchError
from bench.schema import CELL_TYPE, DOSE, DRUG, Condition, same_dose
from predictors.base import Predictor, Task, dense
from predictors.pertbert.model import FineTuneModel
from predictors.pertbert.pretrain import VARIANT_SETTINGS, Pretrained, log_dose, pretrained, untrained


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Energy distance between sets a (B, n, g) and b (B, m, g), averaged over the batch."""
    ab = torch.cdist(a, b).mean(dim=(1, 2))
    aa = torch.cdist(a, a).mean(dim=(1, 2))
    bb = torch.cdist(b, b).mean(dim=(1, 2))
    return (2 * ab - aa - bb).mean()


class PertBERT(Predictor):
    trainable = True
    needs = ("bulk",)
    defaults = {
        "pretrain": None,  # None (BERT), "transfer", "whole" or "subset"
        "decoder": "lstm",  # or "mlp"
        "epochs": 10,
        "lr": 3e-3,
        "cells_per_condition": 32,
        "conditions_per_batch": 4,
        "energy_weight": 0.05,
        "patch": 10,
        "width": 64,
        "layers": 2,
        "pretrain_epochs": 12,
    }

    # -- set-up -------------------------------------------------------------------------------
    def _encoder(self, task: Task) -> Pretrained:
        cfg = {"patch": self.config["patch"], "width": self.config["width"], "layers": self.config["layers"]}
        if self.config["pretrain"] is None:
            return untrained(task.bulk, cfg, self.seed, task.control)
        if self.config["pretrain"] not in VARIANT_SETTINGS:
            raise BenchError(f"PertBERT: unknown pretrain '{self.config['pretrain']}': expected one of {', '.join(VARIANT_SETTINGS)}")
        setting = replace(VARIANT_SETTINGS[self.config["pretrain"]], epochs=self.config["pretrain_epochs"])
        cell_types = sorted(set(task.train.obs[CELL_TYPE].astype(str)))
        drugs = sorted({c.drug for c in task.training_conditions() + task.test_conditions + task.val_conditions})
        return pretrained(task.cache_dir, task.bulk, setting, cell_types, drugs, cfg, task.control)

    def drug_representations(self, pre: Pretrained, bulk, drugs: list[str], control: str) -> dict[str, np.ndarray]:
        """Mean encoder embedding of each drug's bulk profiles minus that of the bulk controls."""
        names = bulk.obs[DRUG].astype(str).to_numpy()
        x = torch.from_numpy(pre.standardise(dense(bulk.X)))
        pre.encoder.eval()

        def mean_embedding(rows: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return torch.cat([pre.encoder.embed(x[rows[i : i + 512]]) for i in range(0, len(rows), 512)]).mean(0).numpy()

        base = mean_embedding(np.flatnonzero(names == control))
        reps = {}
        for d in drugs:
            rows = np.flatnonzero(names == d)
            if rows.size == 0:
                raise BenchError(f"PertBERT: drug '{d}' has no bulk profiles, so it has no representation")
            reps[d] = mean_embedding(rows) - base
        return reps

    def fit(self, task: Task) -> None:
        torch.manual_seed(self.seed)
        self._control = task.control
        pre = self._encoder(task)
        self.pretrain_metrics = pre.metrics
        train = task.train
        sc_genes = list(train.var_names)
        pos = {g: i for i, g in enumerate(sc_genes)}
        self._enc_src = np.array([pos.get(g, -1) for g in pre.genes])  # sc column feeding each encoder gene
        if (self._enc_src < 0).all():
            raise BenchError("PertBERT: no gene is shared between the bulk and single-cell sets")
        x = dense(train.X)
        self._mean, self._std = x.mean(axis=0), x.std(axis=0) + 1e-3
        self._cell_types = sorted(set(train.obs[CELL_TYPE].astype(str)))
        drugs = sorted({c.drug for c in task.training_conditions() + task.test_conditions + task.val_conditions})
        reps = self.drug_representations(pre, task.bulk, drugs, task.control)
        self.drug_scale = float(np.std(np.stack(list(reps.values()))) + 1e-6)
        self.drug_reps = {d: (v / self.drug_scale).astype(np.float32) for d, v in reps.items()}
        self.model = FineTuneModel(pre.encoder, pre.encoder.cfg.width, len(self._cell_types), len(sc_genes), self.config["decoder"])
        self._train_loop(task, self._standardise(x))

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self._mean) / self._std).astype(np.float32)

    def _encoder_input(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised sc cells -> encoder genes (bulk-only genes are 0, the bulk mean)."""
        src = torch.from_numpy(self._enc_src)
        out = z[:, src.clamp(min=0)]
        return out * (src >= 0).float()

    def _condition_tensors(self, conds: list[Condition]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        drug = torch.from_numpy(np.stack([self.drug_reps[c.drug] for c in conds]))
        onehot = torch.zeros(len(conds), len(self._cell_types))
        for i, c in enumerate(conds):
            if c.cell_type not in self._cell_types:
                raise BenchError(f"PertBERT: cell type '{c.cell_type}' was not in training")
            onehot[i, self._cell_types.index(c.cell_type)] = 1.0
        dose = torch.from_numpy(log_dose(np.array([c.dose for c in conds])))
        return drug, onehot, dose

    # -- training -----------------------------------------------------------------------------
    def _train_loop(self, task: Task, z: np.ndarray) -> None:
        obs = task.train.obs
        cts = obs[CELL_TYPE].astype(str).to_numpy()
        drugs = obs[DRUG].astype(str).to_numpy()
        doses = obs[DOSE].astype(float).to_numpy()
        conds = task.training_conditions()
        cond_rows = [np.flatnonzero((cts == c.cell_type) & (drugs == c.drug) & same_dose(doses, c.dose)) for c in conds]
        ctrl_rows = {ct: np.flatnonzero((cts == ct) & (drugs == task.control)) for ct in self._cell_types}
        zt = torch.from_numpy(z)
        k, per_batch = self.config["cells_per_condition"], self.config["conditions_per_batch"]
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.config["lr"], weight_decay=0.01)
        rng = np.random.default_rng(self.seed)
        for epoch in range(1, task.epochs(self.config["epochs"]) + 1):
            self.model.train()
            losses = []
            order = rng.permutation(len(conds))
            for start in range(0, len(conds), per_batch):
                batch = order[start : start + per_batch]
                chosen = [conds[i] for i in batch]
                true = np.stack([rng.choice(cond_rows[i], k, replace=len(cond_rows[i]) < k) for i in batch])
                ctrl = np.stack([rng.choice(ctrl_rows[c.cell_type], k, replace=len(ctrl_rows[c.cell_type]) < k) for c in chosen])
                x_ctrl = zt[ctrl.ravel()]
                drug, onehot, dose = (t.repeat_interleave(k, dim=0) for t in self._condition_tensors(chosen))
                pred = (x_ctrl + self.model(self._encoder_input(x_ctrl), drug, onehot, dose)).view(len(batch), k, -1)
                target = zt[true.ravel()].view(len(batch), k, -1)
                loss = ((pred.mean(1) - target.mean(1)) ** 2).mean() + self.config["energy_weight"] * energy_distance(pred, target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
            task.report_epoch(epoch, loss=float(np.mean(losses)))

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return self.predict_many([condition], lambda ct: controls)[condition]

    def predict_many(self, conditions, controls) -> dict[Condition, np.ndarray]:
        """Encode each cell type's controls once, then decode every condition of that cell type."""
        self.model.eval()
        out: dict[Condition, np.ndarray] = {}
        by_type: dict[str, list[Condition]] = {}
        for c in conditions:
            by_type.setdefault(c.cell_type, []).append(c)
        with torch.no_grad():
            for ct, conds in by_type.items():
                z = torch.from_numpy(self._standardise(controls(ct)))
                emb = self.model.encoder.embed(self._encoder_input(z))
                cond_emb = self.model.condition(*self._condition_tensors(conds))
                for c, e in zip(conds, cond_emb):
                    pred = (z + self.model.decoder(emb + e)).numpy() * self._std + self._mean
                    out[c] = np.clip(pred, 0.0, None).astype(np.float32)
        return out
