"""Which genes `bench prepare` keeps: every L1000 landmark the bulk set shares, then the genes most
variable in the control cells by scanpy's 'seurat' normalised dispersion (so no drug's response
chooses them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.errors import BenchError

DEFAULT_GENES = 2_000  # genes kept, as chemCPA's prepared sci-Plex3
HVG_BINS = 20  # mean bins of the seurat dispersion (scanpy's default n_bins)


def seurat_dispersion(mean: np.ndarray, var: np.ndarray, n_bins: int = HVG_BINS) -> np.ndarray:
    """scanpy's `highly_variable_genes(flavor='seurat')` normalised dispersion from per-gene mean
    and variance of expm1(log-normalised values): log(var/mean) standardised within `n_bins`
    equal-width bins of log1p(mean); a bin holding one gene gives it 1, an unexpressed gene NaN."""
    mean = np.where(mean == 0, 1e-12, mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = var / mean
        dispersion[dispersion == 0] = np.nan
        dispersion = np.log(dispersion)
    frame = pd.DataFrame({"disp": dispersion, "bin": pd.cut(np.log1p(mean), bins=n_bins)})
    stats = frame.groupby("bin", observed=True)["disp"].agg(avg="mean", dev="std")
    alone = stats["dev"].isna()
    stats.loc[alone, "dev"] = stats.loc[alone, "avg"]
    stats.loc[alone, "avg"] = 0.0
    per_gene = stats.loc[frame["bin"]]
    return (dispersion - per_gene["avg"].to_numpy()) / per_gene["dev"].to_numpy()


def check_gene_budget(landmark: np.ndarray, n_genes: int) -> int:
    """The number of landmarks, which `n_genes` must reach: they are what the bulk set measures, and
    dropping some of them would be an arbitrary choice."""
    n_land = int(landmark.sum())
    if n_genes < n_land:
        raise BenchError(f"--genes {n_genes}: fewer than the {n_land} L1000 landmark genes both sets measure, which are "
                         f"all kept; ask for at least {n_land} (default {DEFAULT_GENES})")
    return n_land


def select_genes(landmark: np.ndarray, dispersion: np.ndarray, n_genes: int) -> np.ndarray:
    """Which genes to keep: every landmark, then the highest normalised dispersions (NaN never;
    ties by position) until `n_genes` in all (fewer when fewer genes vary)."""
    n_land = check_gene_budget(landmark, n_genes)
    finite = np.isfinite(dispersion) & ~landmark
    candidates = np.flatnonzero(finite)
    order = candidates[np.argsort(-dispersion[candidates], kind="stable")]
    keep = landmark.copy()
    keep[order[: n_genes - n_land]] = True
    return keep
