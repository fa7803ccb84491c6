"""`CPA_smiles`: cpa-tools' CPA in its structure mode, each drug entering through the Morgan fingerprint
of its SMILES (radius 2, 2,048 bits), set up as its users run it.

`CPA.setup_anndata(..., smiles_key=...)` reads one SMILES per vocabulary drug from obs, and
`CPA(..., use_rdkit_embeddings=True)` replaces the learned drug embedding by a frozen table of the
fingerprints followed by a linear projection to the latent space (`pert_network.pert_transformation`).
cpa-tools 0.8.8 hands that projection to no optimiser, so it keeps its random initial weights: an
unseen drug gets a fixed random projection of its fingerprint. See docs/baselines.md (CPA_smiles).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from collections.abc import Iterator

import anndata as ad
import numpy as np
import torch

from bench.data.drugs import drug_smiles
from bench.errors import BenchError, DataUnsuitable
from bench.schema import DRUG
from predictors.base import Task
from predictors.cpa_model import PAD, CpaPredictor
from predictors.structures import readable

log = logging.getLogger(__name__)
SMILES_KEY = "cpa_smiles"
# The control's molecule: the empty one (an all-zero fingerprint). cpa-tools needs a SMILES for every
# vocabulary entry, the control included; a control cell's dose is 0, so its drug vector is multiplied
# by 0 (logsigm doser: sigmoid(bias) - sigmoid(bias)) and the choice changes nothing.
CONTROL_SMILES = ""


def task_smiles(task: Task) -> dict[str, str]:
    """drug -> readable SMILES from the training cells' obs `smiles`, then the bulk set's (held-out
    drugs: their single cells are not in the task). Raises DataUnsuitable naming held-out drugs without one."""
    found = drug_smiles(task.bulk, task.control) if task.bulk is not None else {}
    found.update(drug_smiles(task.train, task.control))
    found = {d: s for d, s in found.items() if readable(s)}
    held = sorted({c.drug for c in task.test_conditions + task.val_conditions} - set(found))
    if held:
        raise DataUnsuitable(f"CPA_smiles: no readable SMILES (obs 'smiles') for held-out drug(s) {', '.join(held[:5])}"
                             + (f" and {len(held) - 5} more" if len(held) > 5 else ""))
    return found


def spellings(smiles: str) -> Iterator[str]:
    """`smiles` as given, then other spellings of the same molecule (same fingerprint), one per root atom."""
    from rdkit import Chem, rdBase

    yield smiles
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
        for atom in range(mol.GetNumAtoms()):
            yield Chem.MolToSmiles(mol, rootedAtAtom=atom, canonical=False)


def distinct_spellings(smiles: dict[str, str]) -> dict[str, str]:
    """The same molecules spelled so that no two drugs (nor the control) share a string: cpa-tools
    indexes its fingerprint table by SMILES string and fails on a repeated one."""
    used, out = {CONTROL_SMILES}, {}
    for drug, s in sorted(smiles.items()):
        spelling = next((t for t in spellings(s) if t not in used), None)
        if spelling is None:
            raise DataUnsuitable(f"CPA_smiles: cannot spell drug '{drug}' apart from the others sharing its SMILES")
        used.add(spelling)
        out[drug] = spelling
    return out


class CpaSmiles(CpaPredictor):
    """`CPA_smiles`: CPA with `use_rdkit_embeddings=True`; drugs are Morgan fingerprints of their SMILES.

    Training drugs without a readable SMILES are left out of training (cpa-tools needs one for every
    vocabulary drug); a held-out drug without one makes the data unsuitable. Options as for `CPA`."""

    def fit(self, task: Task) -> None:
        smiles = task_smiles(task)
        drugs = task.train.obs[DRUG].astype(str)
        keep = ((drugs == task.control) | drugs.isin(list(smiles))).to_numpy()
        if not (keep & (drugs != task.control).to_numpy()).any():
            raise DataUnsuitable("CPA_smiles: no training drug has a readable SMILES (obs 'smiles')")
        self.left_out = sorted(set(drugs[~keep]))
        if self.left_out:
            log.warning("CPA_smiles: %d training drug(s) without a readable SMILES left out: %s",
                        len(self.left_out), ", ".join(self.left_out[:5]))
            task = dataclasses.replace(task, train=task.train[keep].copy())
        needed = set(drugs[keep]) | {c.drug for c in task.test_conditions + task.val_conditions}
        self.smiles = distinct_spellings({d: s for d, s in smiles.items() if d in needed})
        super().fit(task)

    def _single_cell_frame(self, task: Task) -> ad.AnnData:
        adata = super()._single_cell_frame(task)
        names = adata.obs[DRUG].astype(str)
        adata.obs[SMILES_KEY] = names.map(lambda d: CONTROL_SMILES if d == task.control else self.smiles[d]).to_numpy()
        return adata

    def _setup_options(self) -> dict:
        return {"smiles_key": SMILES_KEY}

    def _model_options(self) -> dict:
        return {"use_rdkit_embeddings": True}

    def _model(self, adata: ad.AnnData):
        """CPA built as the base class builds it, quiet (cpa-tools prints the fingerprint table's shape
        and RDKit warns that its fingerprint call is deprecated), checked to be in fingerprint mode."""
        from rdkit import rdBase

        with contextlib.redirect_stdout(io.StringIO()), rdBase.BlockLogs():
            model = super()._model(adata)
        network = model.module.pert_network
        if not getattr(network, "use_rdkit", False):
            raise BenchError("CPA_smiles: cpa-tools did not switch to fingerprint embeddings (use_rdkit_embeddings)")
        return model

    def fingerprints(self) -> dict[str, np.ndarray]:
        """The frozen fingerprint row of every vocabulary drug (padding excluded), as cpa-tools holds it."""
        return self.drug_embeddings()

    def drug_vectors(self) -> dict[str, np.ndarray]:
        """Each drug's latent direction before dose scaling: the projection of its fingerprint."""
        network = self.model.module.pert_network
        table = network.pert_embedding.weight.detach()
        with torch.no_grad():
            projected = network.pert_transformation(table).cpu().numpy()
        return {name: projected[i].copy() for name, i in self._vocab.items() if name != PAD}
