"""Statistics of a benchmark that real sci-Plex3 and L1000 data pin down (the presets table of
docs/data.md): measured on the sets (any data set, `bench data --stats`), or on the generating
truth where a quantity is a property of the model (how inert a drug is, how a response changes
with dose; generated data only)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.data.synthetic_model import SC_DOSES, expected_shift
from bench.data.synthetic_realistic import bulk_effects
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition

TOP_DOSE = max(SC_DOSES)


def dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def zero_fraction(sc: ad.AnnData) -> float:
    """Share of zero entries of the single-cell matrix."""
    nnz = sc.X.nnz if hasattr(sc.X, "nnz") else np.count_nonzero(sc.X)
    return 1.0 - nnz / (sc.n_obs * sc.n_vars)


def cells_per_condition(sc: ad.AnnData, control: str = CONTROL) -> pd.Series:
    """Cells of each treated (cell type, drug, dose) condition."""
    treated = sc.obs[sc.obs[DRUG].astype(str) != control]
    return treated.groupby([CELL_TYPE, DRUG, DOSE], observed=True).size()


def controls_per_line(sc: ad.AnnData, control: str = CONTROL) -> pd.Series:
    """Control cells of each cell type."""
    ctrl = sc.obs[sc.obs[DRUG].astype(str) == control]
    return ctrl.groupby(CELL_TYPE, observed=True).size()


def near_inert(truth: dict, drugs: list[str], lines: list[str], cut: float = 0.15) -> np.ndarray:
    """Which of `drugs` are near-inert: their true top-dose effect (norm, mean over `lines`) is under
    `cut` times the 75th percentile of all of theirs."""
    norms = np.array([np.mean([np.linalg.norm(expected_shift(truth, Condition(c, d, TOP_DOSE))) for c in lines]) for d in drugs])
    return norms < cut * np.quantile(norms, 0.75)


def bulk_visible_agreement(truth: dict, drugs: list[str], line: str, genes: np.ndarray | None = None) -> np.ndarray:
    """Per drug, the noise-free counterpart of `bulk_sc_agreement`: the Pearson correlation of the
    true single-cell top-dose shift and its bulk-visible part (platform gains applied), on `genes`
    (indices; default all). 1 when bulk sees exactly the single-cell response."""
    if "sc_latent" not in truth:
        return np.ones(len(drugs))
    genes = np.arange(len(truth["genes"])) if genes is None else genes
    names = list(map(str, truth["drugs"]))
    c = list(map(str, truth["cell_lines"])).index(line)
    out = []
    for d in drugs:
        sc_shift = expected_shift(truth, Condition(line, d, TOP_DOSE))[genes]
        bulk = truth["platform_gain"][genes] * bulk_effects(truth, np.array([[c, names.index(d), TOP_DOSE]]), truth["programs"][:, genes])[0]
        out.append(np.corrcoef(sc_shift, bulk)[0, 1])
    return np.array(out)


def dose_shape(truth: dict, drugs: list[str], line: str) -> np.ndarray:
    """Per drug, the cosine between its true shift at its EC50 and at the top dose: 1 when the
    response only grows with dose, lower when it changes direction."""
    names = list(map(str, truth["drugs"]))
    out = []
    for d in drugs:
        low = expected_shift(truth, Condition(line, d, float(truth["ec50"][names.index(d)])))
        high = expected_shift(truth, Condition(line, d, TOP_DOSE))
        out.append(low @ high / (np.linalg.norm(low) * np.linalg.norm(high)))
    return np.array(out)


def _group_means(adata: ad.AnnData, keys: list[str]) -> dict[tuple, np.ndarray]:
    x = dense(adata.X)
    codes = adata.obs.groupby(keys, observed=True).indices
    return {k: x[idx].mean(axis=0) for k, idx in codes.items()}


def bulk_signatures(bulk: ad.AnnData, control: str = CONTROL) -> pd.DataFrame:
    """Treated bulk profiles minus the mean vehicle profile of their plate (of their cell line when
    the set has no plates): one row per profile, index aligned with bulk.obs."""
    key = "plate" if "plate" in bulk.obs else CELL_TYPE
    x = dense(bulk.X)
    obs = bulk.obs
    ctrl = obs[DRUG].astype(str).to_numpy() == control
    ctrl_rows = np.flatnonzero(ctrl)
    means = {k: x[ctrl_rows[idx]].mean(axis=0) for k, idx in obs[ctrl].groupby(key, observed=True).indices.items()}
    rows = np.flatnonzero(~ctrl)
    groups = obs[key].to_numpy()
    sig = x[rows] - np.vstack([means[groups[i]] for i in rows])
    return pd.DataFrame(sig, index=obs.index[rows])


def replicate_correlation(bulk: ad.AnnData, control: str = CONTROL) -> np.ndarray:
    """Per treated bulk condition with replicates, the 75th percentile of the Spearman correlations
    between its replicate signatures (CMap's `distil_cc_q75`)."""
    sig = bulk_signatures(bulk, control)
    ranks = np.argsort(np.argsort(sig.to_numpy(), axis=1), axis=1).astype(float)  # ties (clipped zeros) are rare
    ranks = (ranks - ranks.mean(axis=1, keepdims=True)) / ranks.std(axis=1, keepdims=True)
    obs = bulk.obs.loc[sig.index]
    out = []
    for idx in obs.groupby([CELL_TYPE, DRUG, DOSE], observed=True).indices.values():
        if len(idx) > 1:
            rho = ranks[idx] @ ranks[idx].T / ranks.shape[1]
            out.append(np.quantile(rho[np.triu_indices(len(idx), 1)], 0.75))
    return np.array(out)


def plate_variance_share(bulk: ad.AnnData, control: str = CONTROL) -> float:
    """Share of the vehicle profiles' per-gene variance within a cell line that lies between plates
    (0 without plates)."""
    if "plate" not in bulk.obs:
        return 0.0
    obs = bulk.obs
    ctrl = np.flatnonzero(obs[DRUG].astype(str).to_numpy() == control)
    x = dense(bulk.X)[ctrl]
    frame = obs.iloc[ctrl]
    between, total = 0.0, 0.0
    for idx in frame.groupby(CELL_TYPE, observed=True).indices.values():
        lines = x[idx] - x[idx].mean(axis=0)
        plates = frame.iloc[idx].groupby("plate", observed=True).indices.values()
        between += sum(len(p) * (lines[p].mean(axis=0) ** 2).sum() for p in plates)
        total += (lines**2).sum()
    return float(between / total)


def bulk_sc_agreement(sc: ad.AnnData, bulk: ad.AnnData, drugs: list[str]) -> np.ndarray:
    """Per (single-cell line, drug) of `drugs` measured in that line in bulk: the Pearson correlation,
    over shared genes, of the bulk signature (profiles minus vehicle, doses pooled, as the knn
    baseline compares drugs) and the single-cell top-dose mean shift."""
    genes = [g for g in sc.var_names if g in set(bulk.var_names)]
    sc_idx, bulk_idx = sc.var_names.get_indexer(genes), bulk.var_names.get_indexer(genes)
    sc_means = _group_means(sc, [CELL_TYPE, DRUG, DOSE])
    sig = bulk_signatures(bulk)
    obs = bulk.obs.loc[sig.index]
    bulk_means = {k: sig.to_numpy()[idx].mean(axis=0) for k, idx in obs.groupby([CELL_TYPE, DRUG], observed=True).indices.items()}
    out = []
    for line in sc.obs[CELL_TYPE].astype(str).unique():
        ctrl = sc_means[(line, CONTROL, 0.0)][sc_idx]
        for d in drugs:
            if (line, d) in bulk_means and (line, d, TOP_DOSE) in sc_means:
                out.append(np.corrcoef(sc_means[(line, d, TOP_DOSE)][sc_idx] - ctrl, bulk_means[(line, d)][bulk_idx])[0, 1])
    return np.array(out)


def bulk_doses_per_pair(bulk: ad.AnnData, control: str = CONTROL) -> pd.Series:
    """Distinct doses of each measured (drug, cell line) pair of the bulk set."""
    treated = bulk.obs[bulk.obs[DRUG].astype(str) != control]
    return treated.groupby([DRUG, CELL_TYPE], observed=True)[DOSE].nunique()


def bulk_pair_coverage(sc: ad.AnnData, bulk: ad.AnnData, control: str = CONTROL) -> float:
    """Share of single-cell (drug, cell line) pairs that the bulk set measures."""
    sc_pairs = set(map(tuple, sc.obs.loc[sc.obs[DRUG].astype(str) != control, [DRUG, CELL_TYPE]].astype(str).drop_duplicates().to_numpy()))
    measured = set(map(tuple, bulk.obs[[DRUG, CELL_TYPE]].astype(str).drop_duplicates().to_numpy()))
    return len(sc_pairs & measured) / len(sc_pairs)


def summary(sc: ad.AnnData, bulk: ad.AnnData | None = None, control: str = CONTROL) -> dict[str, float]:
    """Every statistic of the presets table that `sc` and `bulk` allow: those measured on the sets,
    the bulk ones with a bulk set, and with a generating truth (generated data) the model's."""
    counts = cells_per_condition(sc, control)
    controls = float(controls_per_line(sc, control).mean())
    out = {
        "zero_fraction": zero_fraction(sc),
        "cells_per_condition_median": float(counts.median()),
        "cells_per_condition_cv": float(counts.std() / counts.mean()),
        "conditions_under_5_cells": float((counts < 5).mean()),
        "controls_per_line": controls,
        "controls_over_median_condition": controls / float(counts.median()),
    }
    if bulk is None:
        return out
    rc = replicate_correlation(bulk, control)
    out.update({
        "bulk_replicate_cc_q75_median": float(np.median(rc)) if rc.size else float("nan"),
        "bulk_replicate_cc_q75_over_0.2": float(np.mean(rc >= 0.2)) if rc.size else float("nan"),
        "bulk_plate_variance_share": plate_variance_share(bulk, control),
        "bulk_pairs_with_1_or_2_doses": float((bulk_doses_per_pair(bulk, control) <= 2).mean()),
        "bulk_sc_pair_coverage": bulk_pair_coverage(sc, bulk, control),
    })
    if "bench_truth" in sc.uns:
        out.update(model_statistics(sc, bulk))
    return out


def model_statistics(sc: ad.AnnData, bulk: ad.AnnData) -> dict[str, float]:
    """The presets table's statistics that need the generating truth: inert drugs, dose shapes and
    how well bulk agrees with single cell on the active drugs."""
    truth = sc.uns["bench_truth"]
    lines = sorted(sc.obs[CELL_TYPE].astype(str).unique())
    drugs = sorted(set(sc.obs[DRUG].astype(str)) - {CONTROL})
    inert = near_inert(truth, drugs, lines)
    active = [d for d, i in zip(drugs, inert) if not i]
    shared = sc.var_names.get_indexer([g for g in bulk.var_names if g in set(sc.var_names)])
    return {
        "inert_fraction": float(inert.mean()),
        "dose_shape_changed": float(np.mean(dose_shape(truth, active, lines[0]) < 0.8)),
        "bulk_sc_agreement_median": float(np.median(bulk_sc_agreement(sc, bulk, active))),
        "bulk_visible_agreement_median": float(np.median(bulk_visible_agreement(truth, active, lines[0], shared))),
    }
