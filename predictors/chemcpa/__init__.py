"""`chemCPA` and `chemCPA_transfer` (Hetzel et al., NeurIPS 2022), written here in torch.

CPA's autoencoder (basal latent + drug shift + cell-type embedding, Gaussian decoder, adversaries
that keep drug and cell type out of the basal latent), with the drug shift computed from the drug's
structure: a frozen Morgan fingerprint goes through a trained perturbation network (the embedding)
and a dose scaler shared by every drug, so a drug never seen in single cells still gets an embedding
and a dose response. `chemCPA_transfer` first trains on the bulk set. See docs/baselines.md.
"""

from predictors.chemcpa.predictor import ChemCPA
from predictors.chemcpa.transfer import ChemCPATransfer

__all__ = ["ChemCPA", "ChemCPATransfer"]
