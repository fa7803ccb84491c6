"""chemCPA's networks: an expression autoencoder with a per-gene Gaussian decoder, the drug shift
(perturbation network and shared dose scaler, both fed the frozen fingerprint) and the adversaries
that keep drug and cell type out of the basal latent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_VARIANCE = 1e-4


def mlp(n_in: int, n_hidden: int, n_out: int, layers: int) -> nn.Sequential:
    """`layers` hidden blocks (linear, layer norm, ReLU), then a linear output."""
    blocks: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        blocks += [nn.Linear(width, n_hidden), nn.LayerNorm(n_hidden), nn.ReLU()]
        width = n_hidden
    return nn.Sequential(*blocks, nn.Linear(width, n_out))


class DrugShift(nn.Module):
    """A drug's latent shift at a dose: scale(fingerprint, log dose) x embedding(fingerprint). The
    perturbation network (`layers` hidden layers; 0: linear) gives the embedding; the dose scaler,
    shared by every drug, a scale in (0, 1)."""

    def __init__(self, n_bits: int, n_latent: int, n_hidden: int, layers: int, doser_hidden: int) -> None:
        super().__init__()
        self.embedding = mlp(n_bits, n_hidden, n_latent, layers)
        # The scaler's first layer on [fingerprint, dose], split so the fingerprint part runs once per drug.
        self.doser_fingerprint = nn.Linear(n_bits, doser_hidden)
        self.doser_dose = nn.Linear(1, doser_hidden, bias=False)
        self.doser = nn.Sequential(nn.ReLU(), nn.Linear(doser_hidden, doser_hidden), nn.ReLU(), nn.Linear(doser_hidden, 1))

    def forward(self, fingerprints: torch.Tensor, which: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        """Shifts of rows whose drug is `fingerprints[which]`, at dose features `dose`."""
        hidden = self.doser_fingerprint(fingerprints)[which] + self.doser_dose(dose[:, None])
        return torch.sigmoid(self.doser(hidden)) * self.embedding(fingerprints)[which]


class ChemCPAModule(nn.Module):
    """Encoder to the basal latent; latent = basal + drug shift + cell-type embedding; decoder to a
    per-gene Gaussian mean and variance."""

    def __init__(self, n_genes: int, n_bits: int, n_cell_types: int, n_latent: int, n_hidden: int, n_layers: int,
                 drug_hidden: int, drug_layers: int, doser_hidden: int) -> None:
        super().__init__()
        self.encoder = mlp(n_genes, n_hidden, n_latent, n_layers)
        self.decoder = mlp(n_latent, n_hidden, 2 * n_genes, n_layers)
        self.drug = DrugShift(n_bits, n_latent, drug_hidden, drug_layers, doser_hidden)
        self.cell_types = nn.Embedding(n_cell_types, n_latent)

    def shift(self, fingerprints: torch.Tensor, drug: torch.Tensor, dose: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Latent shift of rows: their drug (a fingerprint row; negative: control, no shift) at their
        dose plus their cell type's embedding. Each distinct drug goes through the networks once."""
        out = self.cell_types(cell)
        treated = torch.nonzero(drug >= 0).squeeze(1)
        if treated.numel() == 0:
            return out
        used, which = torch.unique(drug[treated], return_inverse=True)
        return out.index_add(0, treated, self.drug(fingerprints[used], which, dose[treated]))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-gene mean and variance (softplus, floored) at latent states `z`."""
        mean, raw = self.decoder(z).chunk(2, dim=1)
        return mean, F.softplus(raw) + MIN_VARIANCE


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, genes: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussian negative log-likelihood (no constant), averaged over cells and the measured `genes`."""
    nll = 0.5 * (var.log() + (x - mean) ** 2 / var)
    if genes is None:
        return nll.mean()
    return (nll * genes).sum(dim=1).mean() / genes.sum()


class Adversaries(nn.Module):
    """Classifiers of a cell's drug and cell type from its basal latent state."""

    def __init__(self, n_latent: int, n_hidden: int, n_drugs: int, n_cell_types: int) -> None:
        super().__init__()
        self.drug = mlp(n_latent, n_hidden, n_drugs, 2)
        self.cell_type = mlp(n_latent, n_hidden, n_cell_types, 2)

    def forward(self, basal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.drug(basal), self.cell_type(basal)

    def loss(self, basal: torch.Tensor, drug_class: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy of both classifiers."""
        drug_logits, cell_logits = self(basal)
        return F.cross_entropy(drug_logits, drug_class) + F.cross_entropy(cell_logits, cell)

    def penalty(self, basal: torch.Tensor) -> torch.Tensor:
        """Gradient penalty: mean squared gradient of each classifier's summed logits w.r.t. `basal`
        (which must require grad), summed over the classifiers."""
        total = basal.new_zeros(())
        for logits in self(basal):
            (grad,) = torch.autograd.grad(logits.sum(), basal, create_graph=True)
            total = total + grad.pow(2).mean()
        return total
