"""The causal model both generator presets share (bench/data/synthetic.py dispatches by preset).

A drug moves K low-rank gene programmes through a drug-specific latent vector, scaled per cell line,
along a Hill dose curve; a share `structure_weight` of its latent effect follows from its molecule's
fingerprint (`bench.data.molecules`). Single cells respond heterogeneously (a drug- and dose-
dependent fraction of cells respond, each with its own strength) on top of cell-state variation,
and are sampled as Poisson counts, then log-normalised. The truth dict that `draw_truth` returns is
kept in ``sc.uns['bench_truth']``, so an oracle can simulate fresh cells of any condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.data.drugs import SMILES
from bench.data.molecules import fingerprint_bits, generated_molecules, structure_basis, structure_coefficients
from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, FAMILY, Condition

SC_DOSES = (10.0, 100.0, 1000.0, 10000.0)  # nM, as in sci-Plex3
BULK_DOSES = (40.0, 120.0, 370.0, 1110.0, 3330.0, 10000.0)  # nM, an L1000-like 6-point plate
LOG_SCALE = 1e4  # counts per cell after normalisation, before log1p
MOLECULE_STREAM, STRUCTURE_STREAM = 4, 5  # random streams (seed, stream) of the drugs' molecules and structure maps
CELL_BLOCK = 4096  # cells simulated at once: bounds the dense intermediates of large conditions


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
    # Share of each drug's latent effect (its variance) that is a smooth function of its molecule's
    # Morgan fingerprint (bench.data.molecules); the rest is its family's mechanism plus its own
    # deviation. 0: effects ignore structure (the data of the generator before drugs had molecules).
    structure_weight: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.structure_weight <= 1.0:
            raise BenchError(f"structure_weight {self.structure_weight}: expected a share between 0 and 1")


@lru_cache(maxsize=2)
def _structure(smiles: tuple[str, ...], n_programs: int) -> tuple[sp.csr_matrix, tuple[np.ndarray, np.ndarray]]:
    """The drugs' Morgan fingerprints and principal scores, computed once per truth (every latent
    component of the realistic preset reads them)."""
    bits = fingerprint_bits(smiles)
    return bits, structure_basis(bits, n_programs)


def with_structure(mechanism: np.ndarray, smiles: Sequence[str], cfg: SyntheticConfig, part: int) -> np.ndarray:
    """Latent coefficients (drugs, programmes) of which a share `cfg.structure_weight` of the variance
    comes from the drugs' molecules: sqrt(w) * structure map + sqrt(1 - w) * `mechanism`, the map
    scaled to the mechanism's spread; `part` numbers the latent component (each its own rotation)."""
    w = cfg.structure_weight
    if w == 0.0:
        return mechanism
    bits, basis = _structure(tuple(map(str, smiles)), mechanism.shape[1])
    structure = structure_coefficients(bits, mechanism.shape[1], [cfg.seed, STRUCTURE_STREAM, part], basis)
    spread = structure.std()
    structure *= mechanism.std() / spread if spread > 0 else 0.0
    return np.sqrt(w) * structure + np.sqrt(1.0 - w) * mechanism


def draw_truth(cfg: SyntheticConfig, base_sd: float = 1.3, inert_fraction: float = 0.15,
               inert_potency: float = 0.1) -> tuple[dict, np.ndarray]:
    """Draw every generating parameter (the dict is what `simulate_cells` needs) and each drug's
    potency. The keywords are the spread of baseline log-rates and the share and potency of weak
    drugs; their defaults are the easy preset's."""
    rng = np.random.default_rng([cfg.seed, 0])
    g, k = cfg.n_genes, cfg.n_programs
    # Sparse gene programmes: each touches ~8% of genes with signed loadings.
    programs = rng.normal(0.0, 1.0, (k, g)) * (rng.random((k, g)) < 0.08)
    # Drugs come in families (shared mechanism) with individual deviations and potencies.
    centroids = rng.normal(0.0, 1.0, (cfg.n_families, k)) * (rng.random((cfg.n_families, k)) < 0.5)
    family = rng.integers(0, cfg.n_families, cfg.n_bulk_drugs)
    n = cfg.n_bulk_drugs
    smiles = generated_molecules(n, family, [cfg.seed, MOLECULE_STREAM])
    potency = np.where(rng.random(n) < inert_fraction, inert_potency, rng.lognormal(0.0, 0.35, n))
    mechanism = centroids[family] + 0.4 * rng.normal(0.0, 1.0, (cfg.n_bulk_drugs, k))
    latent = with_structure(mechanism, smiles, cfg, 0) * potency[:, None]
    latent *= cfg.effect_scale
    ec50 = 10.0 ** rng.uniform(1.3, 3.7, cfg.n_bulk_drugs)  # nM
    hill = rng.uniform(0.8, 2.5, cfg.n_bulk_drugs)
    max_responders = rng.uniform(0.5, 1.0, cfg.n_bulk_drugs)
    # Cell lines: baseline log-rates and per-programme sensitivity.
    n_lines = cfg.n_bulk_cell_lines
    base = rng.normal(0.0, base_sd, g)
    line_base = base[None, :] + rng.normal(0.0, 0.4, (n_lines, g))
    sensitivity = rng.lognormal(0.0, 0.4, (n_lines, k))
    # Cell-state programmes (cycle-like) make controls heterogeneous too.
    states = rng.normal(0.0, 0.35, (2, g)) * (rng.random((2, g)) < 0.15)
    genes = np.array([f"G{i:04d}" for i in range(g)])
    return {
        "genes": genes,
        "cell_lines": np.array([f"CL{i:02d}" for i in range(n_lines)]),
        "drugs": np.array([f"D{i:03d}" for i in range(cfg.n_bulk_drugs)]),
        "smiles": np.array(smiles),
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
    }, potency


def _index(names: np.ndarray, name: str) -> int:
    hits = np.flatnonzero(names == name)
    if hits.size == 0:
        raise BenchError(f"'{name}' is not part of the generated truth")
    return int(hits[0])


def hill(dose, ec50, slope):
    """Hill activation in [0, 1) at `dose` (scalars or arrays alike)."""
    x = (dose / ec50) ** slope
    return x / (1.0 + x)


def responders(max_responders, activation):
    """Fraction of cells that respond, from a drug's maximum and its activation (arrays alike)."""
    return max_responders * (0.3 + 0.7 * activation)


def dose_response(truth: dict, drug: str, dose: float) -> float:
    """Hill activation in [0, 1) of `drug`'s main programme at `dose` (nM)."""
    d = _index(np.asarray(truth["drugs"]), drug)
    return float(hill(dose, truth["ec50"][d], truth["hill"][d]))


def late_response(truth: dict, drug: str, dose: float) -> float:
    """Activation of `drug`'s high-dose programme (0 for a truth without one: the easy preset)."""
    if "late_ec50" not in truth:
        return 0.0
    d = _index(np.asarray(truth["drugs"]), drug)
    return float(hill(dose, truth["late_ec50"][d], truth["hill"][d]))


def expected_shift(truth: dict, cond: Condition) -> np.ndarray:
    """The true log-rate shift of a fully responding cell in condition `cond` (genes,): the main
    programme, plus (realistic truth only) a high-dose programme and a single-cell-only part."""
    c = _index(np.asarray(truth["cell_lines"]), cond.cell_type)
    d = _index(np.asarray(truth["drugs"]), cond.drug)
    sens = truth["line_sensitivity"][c]
    act = dose_response(truth, cond.drug, cond.dose)
    shift = act * ((sens * truth["drug_latent"][d]) @ truth["programs"])
    if "late_latent" in truth:
        shift = shift + late_response(truth, cond.drug, cond.dose) * ((sens * truth["late_latent"][d]) @ truth["programs"])
    if "sc_latent" in truth:
        shift = shift + act * ((sens * truth["sc_latent"][d]) @ truth["sc_programs"])
    return shift


def responder_fraction(truth: dict, cond: Condition) -> float:
    d = _index(np.asarray(truth["drugs"]), cond.drug)
    return float(responders(truth["max_responders"][d], dose_response(truth, cond.drug, cond.dose)))


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


def simulate_block(truth: dict, cond: Condition | None, cell_type: str, n: int, rng: np.random.Generator) -> sp.csr_matrix:
    """`simulate_cells` as CSR, in blocks of at most CELL_BLOCK cells (bounded memory at any `n`)."""
    parts = [sp.csr_matrix(simulate_cells(truth, cond, cell_type, min(CELL_BLOCK, n - s), rng)) for s in range(0, n, CELL_BLOCK)]
    return parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")


def stack_rows(blocks: Iterable[sp.csr_matrix], n_genes: int) -> sp.csr_matrix:
    """Concatenate CSR row blocks into one CSR matrix (int32 indices, as scipy builds small ones)."""
    data, indices, counts = [], [], []
    for b in blocks:
        data.append(b.data)
        indices.append(b.indices.astype(np.int32, copy=False))
        counts.append(np.diff(b.indptr))
    nnz = sum(len(d) for d in data)
    index_type = np.int32 if nnz < np.iinfo(np.int32).max else np.int64
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(index_type)
    data_all = np.concatenate(data)
    del data
    indices_all = np.concatenate(indices).astype(index_type, copy=False)
    del indices
    return sp.csr_matrix((data_all, indices_all, indptr), shape=(len(indptr) - 1, n_genes))


def cell_obs(groups: list[tuple[str, str, float, int]], family: dict[str, str],
             smiles: dict[str, str] | None = None) -> pd.DataFrame:
    """obs of generated cells: (cell line, drug, dose, count) groups expanded row by row, with each
    drug's family and, given `smiles` (drug -> SMILES), its molecule (controls have neither)."""
    counts = np.array([n for *_, n in groups], dtype=np.int64)
    frame = pd.DataFrame({
        CELL_TYPE: pd.Categorical(np.repeat([g[0] for g in groups], counts)),
        DRUG: pd.Categorical(np.repeat([g[1] for g in groups], counts)),
        DOSE: np.repeat(np.array([g[2] for g in groups], dtype=float), counts),
    })
    frame[FAMILY] = pd.Categorical(frame[DRUG].astype(str).map(family))
    if smiles:
        frame[SMILES] = smiles_column(frame[DRUG], smiles)
    frame.index = [f"cell{i:06d}" for i in range(len(frame))]
    return frame


def family_names(truth: dict) -> dict[str, str]:
    """drug -> family label (`F00`, ...) of every generated drug."""
    return {str(d): f"F{int(f):02d}" for d, f in zip(truth["drugs"], truth["drug_family"])}


def smiles_names(truth: dict) -> dict[str, str]:
    """drug -> SMILES of every generated drug (empty for a truth without molecules)."""
    return {str(d): str(s) for d, s in zip(truth["drugs"], truth.get("smiles", ()))}


def smiles_column(drugs: pd.Series, smiles: dict[str, str]) -> pd.Categorical:
    """obs `smiles` of generated rows: each treated drug's SMILES, missing for controls."""
    return pd.Categorical(drugs.astype(str).map(smiles))


def simulate_groups(truth: dict, groups: list[tuple[str, str, float, int]], rng: np.random.Generator) -> ad.AnnData:
    """The single-cell set of (cell line, drug or control, dose, count) groups, simulated in order
    block by block into one CSR matrix, with its obs and the truth."""
    blocks = (simulate_block(truth, None if drug == CONTROL else Condition(line, drug, dose), line, n, rng)
              for line, drug, dose, n in groups)
    x = stack_rows(blocks, len(truth["genes"]))
    obs = cell_obs(groups, family_names(truth), smiles_names(truth))
    adata = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=truth["genes"]))
    adata.uns["bench_truth"] = truth
    return adata
