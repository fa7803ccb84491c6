"""Saved predictions (`bench run --save-predictions`): a run's scored test predictions as one h5ad in
the input's layout, so other tools can read them and `bench score` can score them back.

Layout (docs/metrics.md): one row per predicted cell, obs `drug` / `cell_type` (categorical) and
`dose` (float, nM), var = the input's genes, X float32 (dense); then the control cells the predictor
was handed, labelled with the control label at dose 0 (cell-eval's pair layout expects controls in
the prediction too; `bench score` ignores them); uns['bench_predictions'] records where they come from.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.io import atomic_write_h5ad
from bench.schema import CELL_TYPE, DOSE, DRUG, Condition

PREDICTIONS_FILE = "predictions.h5ad"
UNS_KEY = "bench_predictions"
NO_EPOCH = -1  # uns epoch of a predictor without epochs (evaluated once)


def predictions_adata(sets: dict[Condition, np.ndarray], controls: dict[str, np.ndarray], genes: pd.Index,
                      control: str, meta: dict) -> ad.AnnData:
    """The predicted cells of every condition (in condition order), then each cell type's `controls`
    labelled `control` at dose 0, as one AnnData; `meta` goes to uns['bench_predictions']."""
    parts = [(c.cell_type, c.drug, float(c.dose), c.key, sets[c]) for c in sorted(sets)]
    parts += [(ct, control, 0.0, f"{ct}_{control}", controls[ct]) for ct in sorted(controls)]
    sizes = [len(cells) for *_, cells in parts]
    obs = pd.DataFrame(
        {
            DRUG: pd.Categorical(np.repeat([p[1] for p in parts], sizes)),
            CELL_TYPE: pd.Categorical(np.repeat([p[0] for p in parts], sizes)),
            DOSE: np.repeat(np.array([p[2] for p in parts], dtype=np.float64), sizes),
        },
        index=[f"{p[3]}-{i}" for p, n in zip(parts, sizes) for i in range(n)],
    )
    blocks = [np.asarray(cells, dtype=np.float32) for *_, cells in parts]
    x = np.concatenate(blocks) if blocks else np.zeros((0, len(genes)), dtype=np.float32)
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=pd.Index(genes).astype(str)), uns={UNS_KEY: dict(meta)})


def write_predictions(folder: Path, adata: ad.AnnData) -> Path:
    """Write `adata` as FOLDER/predictions.h5ad atomically; returns the path."""
    path = Path(folder) / PREDICTIONS_FILE
    atomic_write_h5ad(path, adata)
    return path


def provenance(uns: dict) -> str | None:
    """A line saying which run a saved prediction file comes from, or None for other files."""
    meta = uns.get(UNS_KEY)
    if not isinstance(meta, dict) or "predictor" not in meta:
        return None
    epoch = int(meta.get("epoch", NO_EPOCH))
    at = f"epoch {epoch} ({meta.get('selection', 'val_selected')})" if epoch != NO_EPOCH else "no epochs"
    return f"{meta['predictor']} seed {meta.get('seed')}, {at}, split {meta.get('split')}, run key {meta.get('run_key', '-')}"
