"""The embedded default benchmark: a seeded generator of a bulk set and a single-cell set.

Both sets share one causal model, so that bulk pre-training and bulk look-ups have something real
to transfer: a drug moves K low-rank gene programmes through a drug-specific latent vector, scaled
per cell line, along a Hill dose curve. Single cells respond heterogeneously (a drug- and dose-
dependent fraction of cells respond, each with its own strength) on top of cell-state variation,
and are sampled as Poisson counts, then log-normalised. Bulk profiles are population averages on a
log2 scale with measurement noise, over many more cell lines and drugs, on a landmark-like subset
of genes plus a few bulk-only genes. All generating parameters are kept in ``sc.uns['bench_truth']``
so an oracle can simulate fresh cells of any condition and bound what is achievable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition

SC_DOSES = (10.0, 100.0, 1000.0, 10000.0)  # nM, as in sci-Plex3
BULK_DOSES = (40.0, 120.0, 370.0, 1110.0, 3330.0, 10000.0)  # nM, an L1000-like 6-point plate
LOG_SCALE = 1e4  # counts per cell after normalisation, before log1p


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and effect strengths of a generated benchmark."""

    n_genes: int = 1000
    n_programs: int = 12
    n_families: int = 8
    n_sc_cell_lines: int = 3
    n_bulk_cell_lines: int = 12
    n_sc_drugs: int = 40
    n_bulk_drugs: int = 200
    cells_per_condition: int = 25
    controls_per_cell_line: int = 300
    bulk_replicates: int = 2
    bulk_controls_per_cell_line: int = 16
    bulk_pair_fraction: float = 0.5
    bulk_gene_fraction: float = 0.5
    n_bulk_only_genes: int = 20
    library_size: float = 3000.0
    effect_scale: float = 1.0
    seed: int = 0


SIZES: dict[str, SyntheticConfig] = {
    "default": SyntheticConfig(),
    "smoke": SyntheticConfig(
        n_genes=120,
        n_programs=6,
        n_families=4,
        n_bulk_cell_lines=6,
        n_sc_drugs=12,
        n_bulk_drugs=30,
        cells_per_condition=12,
        controls_per_cell_line=60,
        bulk_replicates=1,
        bulk_controls_per_cell_line=6,
        n_bulk_only_genes=8,
    ),
}


def config_for(size: str, seed: int = 0) -> SyntheticConfig:
    if size not in SIZES:
        raise BenchError(f"unknown data size '{size}': expected one of {', '.join(SIZES)}")
    return replace(SIZES[size], seed=seed)


def generate(size: str = "default", seed: int = 0) -> tuple[ad.AnnData, ad.AnnData]:
    """Generate the (single-cell, bulk) pair of the named size, deterministically from `seed`."""
    cfg = config_for(size, seed)
    truth = _draw_truth(cfg)
    rng = np.random.default_rng([cfg.seed, 1])
    sc = _single_cell(cfg, truth, rng)
    bulk = _bulk(cfg, truth, np.random.default_rng([cfg.seed, 2]))
    sc.uns["bench_dataset"] = {"name": f"synthetic-{size}", "seed": cfg.seed, **_plain(asdict(cfg))}
    bulk.uns["bench_dataset"] = dict(sc.uns["bench_dataset"])
    return sc, bulk


def _plain(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, float) else v) for k, v in d.items()}


def _draw_truth(cfg: SyntheticConfig) -> dict:
    """Draw every generating parameter; the dict is what `simulate_cells` needs."""
    rng = np.random.default_rng([cfg.seed, 0])
    g, k = cfg.n_genes, cfg.n_programs
    # Sparse gene programmes: each touches ~8% of genes with signed loadings.
    programs = rng.normal(0.0, 1.0, (k, g)) * (rng.random((k, g)) < 0.08)
    # Drugs come in families (shared mechanism) with individual deviations and potencies.
    centroids = rng.normal(0.0, 1.0, (cfg.n_families, k)) * (rng.random((cfg.n_families, k)) < 0.5)
    family = rng.integers(0, cfg.n_families, cfg.n_bulk_drugs)
    potency = np.where(rng.random(cfg.n_bulk_drugs) < 0.15, 0.1, rng.lognormal(0.0, 0.35, cfg.n_bulk_drugs))
    latent = (centroids[family] + 0.4 * rng.normal(0.0, 1.0, (cfg.n_bulk_drugs, k))) * potency[:, None]
    latent *= cfg.effect_scale
    ec50 = 10.0 ** rng.uniform(1.3, 3.7, cfg.n_bulk_drugs)  # nM
    hill = rng.uniform(0.8, 2.5, cfg.n_bulk_drugs)
    max_responders = rng.uniform(0.5, 1.0, cfg.n_bulk_drugs)
    # Cell lines: baseline log-rates and per-programme sensitivity.
    n_lines = cfg.n_bulk_cell_lines
    base = rng.normal(0.0, 1.3, g)
    line_base = base[None, :] + rng.normal(0.0, 0.4, (n_lines, g))
    sensitivity = rng.lognormal(0.0, 0.4, (n_lines, k))
    # Cell-state programmes (cycle-like) make controls heterogeneous too.
    states = rng.normal(0.0, 0.35, (2, g)) * (rng.random((2, g)) < 0.15)
    genes = np.array([f"G{i:04d}" for i in range(g)])
    return {
        "genes": genes,
        "cell_lines": np.array([f"CL{i:02d}" for i in range(n_lines)]),
        "drugs": np.array([f"D{i:03d}" for i in range(cfg.n_bulk_drugs)]),
        "programs": programs,
        "drug_family": family,
        "drug_latent": latent,
        "ec50": ec50,
        "hill": hill,
        "max_responders": max_responders,
        "line_base": line_base,
        "line_sensitivity": sensitivity,
        "state_programs": states,
        "library_size": float(cfg.library_size),
    }


def _index(names: np.ndarray, name: str) -> int:
    hits = np.flatnonzero(names == name)
    if hits.size == 0:
        raise BenchError(f"'{name}' is not part of the generated truth")
    return int(hits[0])


def dose_response(truth: dict, drug: str, dose: float) -> float:
    """Hill activation in [0, 1) of `drug` at `dose` (nM)."""
    d = _index(np.asarray(truth["drugs"]), drug)
    x = (dose / truth["ec50"][d]) ** truth["hill"][d]
    return float(x / (1.0 + x))


def expected_shift(truth: dict, cond: Condition) -> np.ndarray:
    """The true log-rate shift of a fully responding cell in condition `cond` (genes,)."""
    c = _index(np.asarray(truth["cell_lines"]), cond.cell_type)
    d = _index(np.asarray(truth["drugs"]), cond.drug)
    programme_effect = (truth["line_sensitivity"][c] * truth["drug_latent"][d]) @ truth["programs"]
    return dose_response(truth, cond.drug, cond.dose) * programme_effect


def responder_fraction(truth: dict, cond: Condition) -> float:
    d = _index(np.asarray(truth["drugs"]), cond.drug)
    return float(truth["max_responders"][d] * (0.3 + 0.7 * dose_response(truth, cond.drug, cond.dose)))


def simulate_cells(truth: dict, cond: Condition | None, cell_type: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sample `n` log-normalised cells of `cell_type`, treated with `cond` (None: controls)."""
    c = _index(np.asarray(truth["cell_lines"]), cell_type)
    log_rate = np.broadcast_to(truth["line_base"][c], (n, truth["line_base"].shape[1])).copy()
    log_rate += rng.normal(0.0, 1.0, (n, truth["state_programs"].shape[0])) @ truth["state_programs"]
    if cond is not None:
        responds = rng.random(n) < responder_fraction(truth, cond)
        strength = responds * rng.gamma(4.0, 0.25, n)  # mean 1 among responders
        log_rate += strength[:, None] * expected_shift(truth, cond)[None, :]
    rate = np.exp(log_rate - log_rate.max(axis=1, keepdims=True))
    rate /= rate.sum(axis=1, keepdims=True)
    library = truth["library_size"] * rng.lognormal(0.0, 0.25, n)
    counts = rng.poisson(rate * library[:, None])
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return np.log1p(counts / totals * LOG_SCALE).astype(np.float32)


def _single_cell(cfg: SyntheticConfig, truth: dict, rng: np.random.Generator) -> ad.AnnData:
    lines = truth["cell_lines"][: cfg.n_sc_cell_lines]
    drugs = truth["drugs"][: cfg.n_sc_drugs]
    blocks, obs = [], []
    for line in lines:
        blocks.append(simulate_cells(truth, None, line, cfg.controls_per_cell_line, rng))
        obs.append((line, CONTROL, 0.0, cfg.controls_per_cell_line))
        for drug in drugs:
            for dose in SC_DOSES:
                cond = Condition(str(line), str(drug), dose)
                blocks.append(simulate_cells(truth, cond, line, cfg.cells_per_condition, rng))
                obs.append((line, drug, dose, cfg.cells_per_condition))
    frame = pd.DataFrame(
        [(line, drug, dose) for line, drug, dose, n in obs for _ in range(n)], columns=[CELL_TYPE, DRUG, DOSE]
    )
    frame[CELL_TYPE] = frame[CELL_TYPE].astype("category")
    frame[DRUG] = frame[DRUG].astype("category")
    frame.index = [f"cell{i:06d}" for i in range(len(frame))]
    adata = ad.AnnData(sp.csr_matrix(np.vstack(blocks)), obs=frame, var=pd.DataFrame(index=truth["genes"]))
    adata.uns["bench_truth"] = truth
    return adata


def _bulk(cfg: SyntheticConfig, truth: dict, rng: np.random.Generator) -> ad.AnnData:
    g = cfg.n_genes
    measured = np.sort(rng.choice(g, int(round(cfg.bulk_gene_fraction * g)), replace=False))
    n_extra = cfg.n_bulk_only_genes
    lines, drugs = truth["cell_lines"], truth["drugs"]
    # Bulk-only genes follow their own programme loadings (unseen by single cell).
    extra_programs = rng.normal(0.0, 1.0, (cfg.n_programs, n_extra)) * (rng.random((cfg.n_programs, n_extra)) < 0.1)
    extra_base = rng.normal(0.0, 1.3, (len(lines), n_extra))
    rows, profiles = [], []
    ln2 = np.log(2.0)
    for c, line in enumerate(lines):
        baseline = np.concatenate([truth["line_base"][c, measured], extra_base[c]]) / ln2 + 8.0
        for r in range(cfg.bulk_controls_per_cell_line):
            rows.append((line, CONTROL, 0.0))
            profiles.append(baseline)
        is_sc_line = c < cfg.n_sc_cell_lines
        for d, drug in enumerate(drugs):
            if not (is_sc_line and d < cfg.n_sc_drugs) and rng.random() >= cfg.bulk_pair_fraction:
                continue
            programme = truth["line_sensitivity"][c] * truth["drug_latent"][d]
            effect = np.concatenate([programme @ truth["programs"][:, measured], programme @ extra_programs])
            for dose in BULK_DOSES:
                cond = Condition(str(line), str(drug), dose)
                # Population average: the responding fraction times the mean strength (1).
                scale = responder_fraction(truth, cond) * dose_response(truth, str(drug), dose) / ln2
                for _ in range(cfg.bulk_replicates):
                    rows.append((line, drug, dose))
                    profiles.append(baseline + scale * effect)
    x = np.asarray(profiles)
    x = x + rng.normal(0.0, 0.25, x.shape)
    frame = pd.DataFrame(rows, columns=[CELL_TYPE, DRUG, DOSE])
    frame[CELL_TYPE] = frame[CELL_TYPE].astype("category")
    frame[DRUG] = frame[DRUG].astype("category")
    frame.index = [f"profile{i:06d}" for i in range(len(frame))]
    genes = np.concatenate([truth["genes"][measured], [f"B{i:03d}" for i in range(n_extra)]])
    return ad.AnnData(np.clip(x, 0.0, None).astype(np.float32), obs=frame, var=pd.DataFrame(index=genes))
