"""chemCPA's training: per mini-batch, one adversary step on the detached basal latent (cross-entropy
plus gradient penalty), then one model step on the Gaussian likelihood minus the weighted adversary
loss, as CPA and chemCPA alternate them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from predictors.chemcpa.model import Adversaries, ChemCPAModule, gaussian_nll

ADV_HIDDEN = 128
ADV_LR, ADV_WEIGHT_DECAY = 3e-4, 1e-4  # chemCPA's adversary defaults
# chemCPA's autoencoder weight decay (1e-6) is left out: with Adam a decay-only gradient moves a weight
# that gets no other gradient (a single-cell-only gene's during bulk pre-training) by about the
# learning rate per step, while on the others it is negligible.


@dataclass
class Rows:
    """Training rows as tensors: expression, drug (a fingerprint row; negative: control), dose
    feature, cell-type code and the adversary's drug class; `genes` marks the genes the set
    measures (None: every gene)."""

    x: torch.Tensor
    drug: torch.Tensor
    dose: torch.Tensor
    cell: torch.Tensor
    drug_class: torch.Tensor
    genes: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]


class Trainer:
    """Optimisers and adversaries of one training phase (bulk pre-training or single cells)."""

    def __init__(self, module: ChemCPAModule, fingerprints: torch.Tensor, n_drug_classes: int, n_cell_types: int,
                 config: dict, seed: int) -> None:
        self.module, self.fingerprints, self.config = module, fingerprints, config
        self.adversaries = Adversaries(module.cell_types.embedding_dim, ADV_HIDDEN, max(n_drug_classes, 1), n_cell_types)
        self.model_optimiser = torch.optim.Adam(module.parameters(), lr=config["lr"])
        self.adv_optimiser = torch.optim.Adam(self.adversaries.parameters(), lr=ADV_LR, weight_decay=ADV_WEIGHT_DECAY)
        self.generator = torch.Generator().manual_seed(seed)

    def epoch(self, rows: Rows) -> dict[str, float]:
        """One pass over `rows` in a seeded random order; mean losses per row."""
        c, module = self.config, self.module
        module.train()
        totals = np.zeros(3)
        for batch in torch.randperm(len(rows), generator=self.generator).split(c["batch_size"]):
            x, drug, cell, drug_class = rows.x[batch], rows.drug[batch], rows.cell[batch], rows.drug_class[batch]
            basal = module.encoder(x)
            # Adversary step: classify drug and cell type from the basal latent, which is held fixed.
            detached = basal.detach().requires_grad_(True)
            adv_loss = self.adversaries.loss(detached, drug_class, cell)
            penalty = self.adversaries.penalty(detached) if c["penalty_adversary"] > 0 else detached.new_zeros(())
            self.adv_optimiser.zero_grad()
            (adv_loss + c["penalty_adversary"] * penalty).backward()
            self.adv_optimiser.step()
            # Model step: reconstruct through the counterfactual latent while fooling the adversaries.
            mean, var = module.decode(basal + module.shift(self.fingerprints, drug, rows.dose[batch], cell))
            recon = gaussian_nll(x, mean, var, rows.genes)
            fooled = self.adversaries.loss(basal, drug_class, cell)
            self.model_optimiser.zero_grad()
            (recon - c["reg_adversary"] * fooled).backward()
            self.model_optimiser.step()
            totals += np.array([recon.item(), adv_loss.item(), penalty.item()]) * len(batch)
        module.eval()
        recon, adv, penalty = totals / max(len(rows), 1)
        return {"recon": float(recon), "adv_loss": float(adv), "adv_penalty": float(penalty)}
