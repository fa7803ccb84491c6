"""`cVAE` (paper baseline): a conditional variational autoencoder on log-normalised expression,
conditioned on drug, cell type and dose.

A drug enters as its bulk signature (dose-pooled drug-minus-control profile mean over every bulk
cell line that measured it), mapped by a learned linear projection. Training drugs teach the
projection; an unseen drug is represented by the same projection of its own bulk signature, never
by an untrained vector. A drug without bulk profiles gets a zero signature, i.e. no information.
Prediction is counterfactual: encode the cell type's control cells under the control condition,
decode their latent means under the target condition, and draw each cell from the decoder's Gaussian
(its learned per-gene sd), as every generative predictor returns cells drawn from its model
(`sample=False`: the decoder means).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench.schema import CELL_TYPE, DOSE, DRUG, Condition
from predictors.base import PREDICT_ROWS, Predictor, Task, by_cell_type, dense, gaussian_cells, row_chunks
from predictors.signatures import LineMatchedShifts


def bulk_signatures(bulk, drugs: list[str], control: str) -> np.ndarray:
    """(drugs, bulk genes) dose-pooled drug-minus-control means, averaged over the cell lines that
    measured each drug; rows of drugs without bulk profiles are zero. Scaled to unit overall std."""
    x = dense(bulk.X)
    shifts = LineMatchedShifts(bulk.obs, control, lambda rows: x[rows].mean(axis=0))
    out = np.zeros((len(drugs), x.shape[1]), dtype=np.float32)
    for i, drug in enumerate(drugs):
        shift = shifts.averaged(drug)
        if shift is not None:
            out[i] = shift
    scale = out[np.any(out != 0, axis=1)].std()
    return out / scale if scale > 0 else out


def _mlp(n_in: int, n_hidden: int, n_out: int, layers: int) -> nn.Sequential:
    blocks, width = [], n_in
    for _ in range(layers):
        blocks += [nn.Linear(width, n_hidden), nn.LayerNorm(n_hidden), nn.ReLU()]
        width = n_hidden
    return nn.Sequential(*blocks, nn.Linear(width, n_out))


class ConditionalVAE(nn.Module):
    """Encoder q(z | x, c) and Gaussian decoder p(x | z, c) with a learned per-gene variance; the
    condition c joins the projected drug signature (scaled by dose), a cell-type one-hot and the dose."""

    def __init__(self, n_genes: int, n_signature: int, n_cell_types: int, n_latent: int, n_hidden: int,
                 n_layers: int, n_drug: int) -> None:
        super().__init__()
        self.drug_projection = nn.Linear(n_signature, n_drug)
        n_cond = n_drug + n_cell_types + 1
        self.encoder = _mlp(n_genes + n_cond, n_hidden, 2 * n_latent, n_layers)
        self.decoder = _mlp(n_latent + n_cond, n_hidden, n_genes, n_layers)
        self.log_sigma = nn.Parameter(torch.zeros(n_genes))

    def condition(self, signature: torch.Tensor, cell_type: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.drug_projection(signature) * dose, cell_type, dose], dim=1)

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encoder(torch.cat([x, c], dim=1)).chunk(2, dim=1)
        return mu, log_var.clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, c], dim=1))

    def loss(self, x: torch.Tensor, c: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell negative log-likelihood (up to a constant) and KL divergence, batch means."""
        mu, log_var = self.encode(x, c)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
        nll = (0.5 * ((x - self.decode(z, c)) / self.log_sigma.exp()) ** 2 + self.log_sigma).sum(dim=1).mean()
        kl = (0.5 * (mu**2 + log_var.exp() - 1.0 - log_var)).sum(dim=1).mean()
        return nll, kl


class CVAE(Predictor):
    """`cVAE`: conditional VAE; unseen drugs are represented through their bulk signatures."""

    trainable = True
    needs = ("bulk",)
    defaults = {"epochs": 30, "n_latent": 32, "n_hidden": 256, "n_layers": 2, "n_drug": 32, "batch_size": 256,
                "lr": 1e-3, "beta": 1.0, "sample": True}
    search_space = {"lr": [1e-3, 3e-4], "beta": [1.0, 0.1]}

    def fit(self, task: Task) -> None:
        c = self.config
        torch.manual_seed(self.seed)
        self._task = task
        held_out = {x.drug for x in task.test_conditions + task.val_conditions}
        self._drugs = pd.Index(sorted({x.drug for x in task.training_conditions()} | held_out))
        self._signatures = torch.as_tensor(bulk_signatures(task.bulk, self._drugs, task.control))
        self._cell_types = pd.Index(sorted(set(task.train.obs[CELL_TYPE].astype(str))))
        doses = task.train.obs[DOSE].astype(float).to_numpy()
        self._log_max_dose = float(np.log1p(doses.max())) or 1.0
        self.model = ConditionalVAE(task.train.n_vars, self._signatures.shape[1], len(self._cell_types), c["n_latent"],
                                    c["n_hidden"], c["n_layers"], c["n_drug"])
        x = torch.as_tensor(dense(task.train.X))
        obs = task.train.obs
        sig, cell, dose = self._conditions(obs[DRUG].astype(str).to_numpy(), obs[CELL_TYPE].astype(str).to_numpy(), doses)
        optimiser = torch.optim.Adam(self.model.parameters(), lr=c["lr"])
        generator = torch.Generator().manual_seed(self.seed)
        for epoch in range(1, task.epochs(c["epochs"]) + 1):
            self.model.train()
            totals = np.zeros(2)
            for batch in torch.randperm(x.shape[0], generator=generator).split(c["batch_size"]):
                cond = self.model.condition(sig[batch], cell[batch], dose[batch])
                nll, kl = self.model.loss(x[batch], cond, c["beta"])
                optimiser.zero_grad()
                (nll + c["beta"] * kl).backward()
                optimiser.step()
                totals += np.array([nll.item(), kl.item()]) * len(batch)
            self.model.eval()
            task.report_epoch(epoch, nll=totals[0] / x.shape[0], kl=totals[1] / x.shape[0])

    def _conditions(self, drugs: np.ndarray, cell_types: np.ndarray, doses: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Signature rows (zero for controls), cell-type one-hots and scaled log doses of cells."""
        index = self._drugs.get_indexer(drugs)
        sig = torch.zeros(len(drugs), self._signatures.shape[1])
        treated = index >= 0
        sig[torch.as_tensor(treated)] = self._signatures[torch.as_tensor(index[treated])]
        cell = torch.zeros(len(drugs), len(self._cell_types))
        cell[torch.arange(len(drugs)), torch.as_tensor(self._cell_types.get_indexer(cell_types))] = 1.0
        dose = torch.as_tensor(np.log1p(np.where(treated, doses, 0.0)) / self._log_max_dose, dtype=torch.float32)[:, None]
        return sig, cell, dose

    def predict(self, condition: Condition, controls: np.ndarray) -> np.ndarray:
        return self.predict_many([condition], lambda ct: controls)[condition]

    def predict_many(self, conditions: Iterable[Condition], controls: Callable[[str], np.ndarray]) -> dict[Condition, np.ndarray]:
        """Encode each cell type's control cells once as controls, then decode their latent means
        under many conditions in one pass; cells drawn from the decoder's Gaussian (seeded by the
        predictor seed and the condition) unless `sample` is off."""
        means: dict[Condition, np.ndarray] = {}
        with torch.no_grad():
            for ct, conds in by_cell_type(conditions).items():
                x = np.asarray(controls(ct), dtype=np.float32)
                n = len(x)
                before = self._conditions(np.full(n, self._task.control), np.full(n, ct), np.zeros(n))
                mu, _ = self.model.encode(torch.as_tensor(x), self.model.condition(*before))
                for chunk in row_chunks(conds, lambda c: n, PREDICT_ROWS):
                    drugs, doses = np.repeat([c.drug for c in chunk], n), np.repeat([c.dose for c in chunk], n)
                    after = self._conditions(drugs, np.full(len(drugs), ct), doses)
                    pred = self.model.decode(mu.repeat(len(chunk), 1), self.model.condition(*after))
                    means.update(zip(chunk, pred.view(len(chunk), n, -1).numpy().astype(np.float32)))
        sd = self.model.log_sigma.detach().exp().numpy().astype(np.float32)
        return gaussian_cells({c: (m, sd) for c, m in means.items()}, self.seed, bool(self.config["sample"]))
