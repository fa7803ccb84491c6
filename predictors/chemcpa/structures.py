"""Drug structures for chemCPA: the shared Morgan fingerprints (predictors/structures.py) as a frozen
torch table indexed by drug, and the log-dose feature the dose scaler takes."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from bench.errors import BenchError
from predictors.structures import Fingerprints

CONTROL_ROW = -1  # drug index of control rows: no drug shift


class Structures(Fingerprints):
    """Fingerprints of the drugs that have a readable SMILES (radius 2, 2,048 bits by default), as a
    torch table whose rows the model indexes by drug."""

    def __init__(self, smiles: dict[str, str], drugs: Iterable[str], radius: int = 2, n_bits: int = 2048) -> None:
        super().__init__(smiles, drugs, radius, n_bits)
        self.fingerprints = torch.as_tensor(self.bits)

    def index(self, drugs: np.ndarray, control: str) -> torch.Tensor:
        """Fingerprint rows of `drugs` (CONTROL_ROW for the control); an unknown drug is an error."""
        drugs = np.asarray(drugs, dtype=str)
        rows = self.drugs.get_indexer(drugs)
        control_rows = drugs == control
        unknown = (rows < 0) & ~control_rows
        if unknown.any():
            raise BenchError(f"chemCPA: no structure for drug '{drugs[np.flatnonzero(unknown)[0]]}'")
        rows[control_rows] = CONTROL_ROW
        return torch.as_tensor(rows, dtype=torch.long)


def left_out(drugs: Iterable[str], structures: Structures) -> list[str]:
    """The drugs among `drugs` without a structure: left out of training."""
    return sorted({d for d in drugs if d not in structures})


class DoseFeature:
    """log(1 + dose) / log(1 + the largest single-cell training dose): 0 untreated, 1 at that dose."""

    def __init__(self, doses: np.ndarray) -> None:
        top = float(np.max(doses)) if len(doses) else 0.0
        self.scale = float(np.log1p(top)) if top > 0 else 1.0

    def __call__(self, doses) -> torch.Tensor:
        return torch.as_tensor(np.log1p(np.asarray(doses, dtype=np.float64)) / self.scale, dtype=torch.float32)
