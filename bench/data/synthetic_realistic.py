"""Preset `realistic`: the embedded model with what real sci-Plex3 and L1000 data add.

On top of the shared model (`bench.data.synthetic_model`): part of a drug's single-cell response has no
bulk counterpart and bulk sees the rest through per-gene platform gains and offsets, plus a
bulk-only part; bulk profiles are L1000-like (noisy replicates on different plates, additive plate
effects, most drugs in a few cell lines at one or two doses); single cells are sparse counts in
uneven numbers per condition (fewer where a toxic drug kills cells) next to thousands of controls;
many drugs are near-inert; and some drugs switch on a second programme at high dose, so the
direction of their response changes with dose. Every knob is a field of `RealisticKnobs`; the
statistics they produce are tabulated in docs/data.md and checked by tests/test_presets.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import anndata as ad
import numpy as np
import pandas as pd

from bench.data.drugs import SMILES
from bench.data.synthetic_model import (
    BULK_DOSES,
    CELL_BLOCK,
    SC_DOSES,
    SyntheticConfig,
    dose_response,
    draw_truth,
    hill,
    responders,
    simulate_groups,
    smiles_column,
    smiles_names,
    with_structure,
)
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition

STANDARD_DOSE = 10000.0  # nM: L1000's most common compound dose (10 uM)
PLATE = "plate"


@dataclass(frozen=True)
class RealisticKnobs:
    """The realistic preset's departures from the easy model (see docs/data.md for sources)."""

    sc_specific_scale: float = 1.3  # single-cell-only response, relative to the bulk-visible one
    bulk_specific_scale: float = 0.5  # bulk-only response (other assay time and culture)
    platform_gain_sd: float = 0.5  # log-sd of per-gene gains of bulk effects over single-cell ones
    platform_offset_sd: float = 0.5  # sd of per-gene bulk baseline offsets (log2)
    bulk_noise_sd: float = 0.45  # per-profile measurement noise (log2)
    plate_sd: float = 0.3  # sd of per-gene additive plate effects (log2)
    plate_wells: int = 96  # treated profiles per plate
    plate_controls: int = 8  # vehicle profiles per plate
    bulk_replicates: int = 3  # replicate plates per condition (L1000 runs triplicates)
    replicate_dropout: float = 0.15  # chance that a replicate profile is missing (one always kept)
    core_lines: int = 4  # bulk cell lines measured for most drugs (the single-cell lines among them)
    core_coverage: float = 0.6  # chance that a drug is measured in a core line
    other_coverage: tuple[float, float] = (0.02, 0.2)  # range of that chance in the other lines
    dose_counts: tuple[int, ...] = (1, 2, 3, 6)  # doses per (drug, cell line) ...
    dose_count_probs: tuple[float, ...] = (0.6, 0.25, 0.1, 0.05)  # ... and their probabilities
    standard_dose_share: float = 0.7  # chance that a drug's doses include 10 uM
    umis_per_gene: float = 0.25  # mean counts per cell per gene (library = this x genes)
    base_sd: float = 1.8  # spread of genes' baseline log-rates (a few high, most rarely seen)
    control_ratio: float = 40.0  # controls per cell line / mean cells per condition
    cell_count_shape: float = 1.2  # gamma shape of cells per condition (1/CV^2)
    min_cells: int = 2  # fewest cells of a condition
    toxic_fraction: float = 0.25  # drugs that kill cells at high dose ...
    toxicity: tuple[float, float] = (0.5, 0.95)  # ... losing this share of cells at full activation
    inert_fraction: float = 0.4  # near-inert drugs ...
    inert_potency: float = 0.03  # ... with this fraction of a typical drug's effect
    late_fraction: float = 0.5  # drugs with a second programme that switches on at high dose ...
    late_ec50: tuple[float, float] = (2.0, 8000.0)  # ... its EC50 log-uniform from this times the first EC50 to this nM ...
    late_scale: float = 3.0  # ... and this strong relative to the first


KNOBS = RealisticKnobs()

# Per size, what the realistic preset changes in the size's shape and knobs. The default size gets
# sci-Plex3-like cells per condition (a median of 100-200 there; ~55 here, against ~15 at the easy
# shape), paid for with fewer genes at the same ~240 UMIs per cell and fewer controls per condition
# (docs/data.md, "The default shape").
SHAPES: dict[str, tuple[dict, dict]] = {
    "default": ({"cells_per_condition": 80, "n_genes": 400}, {"umis_per_gene": 0.6, "control_ratio": 25.0}),
}


def realistic_setup(size: str, cfg: SyntheticConfig) -> tuple[SyntheticConfig, RealisticKnobs]:
    """The configuration and knobs the realistic preset generates `size` with."""
    shape, knobs = SHAPES.get(size, ({}, {}))
    return replace(cfg, **shape), replace(KNOBS, **knobs)


def generate_realistic(cfg: SyntheticConfig, knobs: RealisticKnobs = KNOBS) -> tuple[ad.AnnData, ad.AnnData]:
    """The (single-cell, bulk) pair of the realistic preset at the shape of `cfg`."""
    truth = draw_realistic_truth(cfg, knobs)
    sc = _single_cell(cfg, knobs, truth, np.random.default_rng([cfg.seed, 1]))
    bulk = _bulk(cfg, knobs, truth, np.random.default_rng([cfg.seed, 2]))
    return sc, bulk


def draw_realistic_truth(cfg: SyntheticConfig, knobs: RealisticKnobs = KNOBS) -> dict:
    """The easy truth with sparse counts, many inert drugs, a single-cell-only response, a bulk-only
    response, platform gains and offsets, a high-dose programme and cell-killing drugs."""
    sparse = replace(cfg, library_size=knobs.umis_per_gene * cfg.n_genes)
    truth, potency = draw_truth(sparse, knobs.base_sd, knobs.inert_fraction, knobs.inert_potency)
    rng = np.random.default_rng([cfg.seed, 3])
    n, k, g = cfg.n_bulk_drugs, cfg.n_programs, cfg.n_genes
    family = truth["drug_family"]
    scale = potency[:, None] * cfg.effect_scale

    def family_latent(size: float, part: int) -> np.ndarray:
        """One latent component: fresh family centroids and deviations, mixed with its structure map."""
        centroids = rng.normal(0.0, 1.0, (cfg.n_families, k)) * (rng.random((cfg.n_families, k)) < 0.5)
        mechanism = centroids[family] + 0.4 * rng.normal(0.0, 1.0, (n, k))
        return size * with_structure(mechanism, truth["smiles"], cfg, part) * scale

    truth["sc_programs"] = rng.normal(0.0, 1.0, (k, g)) * (rng.random((k, g)) < 0.08)
    truth["sc_latent"] = family_latent(knobs.sc_specific_scale, 1)
    truth["bulk_latent"] = family_latent(knobs.bulk_specific_scale, 2)
    late = rng.random(n) < knobs.late_fraction
    truth["late_latent"] = family_latent(knobs.late_scale, 3) * late[:, None]
    low = np.log10(knobs.late_ec50[0] * truth["ec50"])
    truth["late_ec50"] = 10.0 ** rng.uniform(low, np.maximum(low, np.log10(knobs.late_ec50[1])))
    truth["platform_gain"] = rng.lognormal(0.0, knobs.platform_gain_sd, g)
    truth["platform_offset"] = rng.normal(0.0, knobs.platform_offset_sd, g)
    truth["toxicity"] = (rng.random(n) < knobs.toxic_fraction) * rng.uniform(*knobs.toxicity, n)
    return truth


def cell_counts(cfg: SyntheticConfig, knobs: RealisticKnobs, truth: dict, conditions: list[Condition],
                rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Controls per cell line and cells per condition: the easy size's cell budget, a share
    `control_ratio` / (conditions per line + `control_ratio`) of it to controls, the rest over the
    conditions in proportion to the cells a drug leaves alive, gamma-Poisson scattered."""
    lines = cfg.n_sc_cell_lines
    budget = lines * (cfg.controls_per_cell_line + cfg.n_sc_drugs * len(SC_DOSES) * cfg.cells_per_condition)
    mean = budget / (lines * (cfg.n_sc_drugs * len(SC_DOSES) + knobs.control_ratio))
    controls = int(round(knobs.control_ratio * mean))
    drug_index = {str(d): i for i, d in enumerate(truth["drugs"])}
    alive = np.array([1.0 - truth["toxicity"][drug_index[c.drug]] * dose_response(truth, c.drug, c.dose) for c in conditions])
    expected = (budget - lines * controls) * alive / alive.sum()
    scatter = rng.gamma(knobs.cell_count_shape, 1.0 / knobs.cell_count_shape, len(conditions))
    return controls, np.maximum(knobs.min_cells, rng.poisson(expected * scatter))


def _single_cell(cfg: SyntheticConfig, knobs: RealisticKnobs, truth: dict, rng: np.random.Generator) -> ad.AnnData:
    lines = [str(c) for c in truth["cell_lines"][: cfg.n_sc_cell_lines]]
    conditions = [Condition(line, str(d), dose) for line in lines for d in truth["drugs"][: cfg.n_sc_drugs] for dose in SC_DOSES]
    controls, counts = cell_counts(cfg, knobs, truth, conditions, rng)
    groups = [(line, CONTROL, 0.0, controls) for line in lines]
    groups += [(c.cell_type, c.drug, c.dose, int(n)) for c, n in zip(conditions, counts)]
    return simulate_groups(truth, groups, rng)


def bulk_layout(cfg: SyntheticConfig, knobs: RealisticKnobs, rng: np.random.Generator) -> list[tuple[int, int, float, int]]:
    """Rows (line, drug or -1 for vehicle, dose, plate) of an L1000-like bulk set: each drug in a few
    cell lines (most often the core ones) at one or a few doses, replicates on different plates,
    each plate with its vehicle wells. Every drug is measured somewhere."""
    n_lines, n_drugs = cfg.n_bulk_cell_lines, cfg.n_bulk_drugs
    coverage = np.where(np.arange(n_lines) < knobs.core_lines, knobs.core_coverage, rng.uniform(*knobs.other_coverage, n_lines))
    measured = rng.random((n_drugs, n_lines)) < coverage[None, :]
    lonely = np.flatnonzero(~measured.any(axis=1))
    measured[lonely, rng.choice(n_lines, len(lonely), p=coverage / coverage.sum())] = True
    others = [d for d in BULK_DOSES if d != STANDARD_DOSE]
    wells: dict[int, list[list[tuple[int, float]]]] = {c: [[] for _ in range(knobs.bulk_replicates)] for c in range(n_lines)}
    for d, c in zip(*np.nonzero(measured)):
        k = int(rng.choice(knobs.dose_counts, p=knobs.dose_count_probs))
        if k >= len(BULK_DOSES):
            doses = list(BULK_DOSES)
        elif rng.random() < knobs.standard_dose_share:
            doses = [STANDARD_DOSE] + list(rng.choice(others, k - 1, replace=False))
        else:
            doses = list(rng.choice(others, k, replace=False))
        for dose in doses:
            kept = rng.random(knobs.bulk_replicates) >= knobs.replicate_dropout
            kept[rng.integers(knobs.bulk_replicates)] = True
            for r in np.flatnonzero(kept):
                wells[c][r].append((int(d), float(dose)))
    rows, plate = [], 0
    for c in range(n_lines):
        for batch in wells[c]:  # one replicate batch: its own plates, so replicates never share one
            order = rng.permutation(len(batch))
            for start in range(0, len(order), knobs.plate_wells):
                rows += [(c, -1, 0.0, plate)] * knobs.plate_controls
                rows += [(c, *batch[i], plate) for i in order[start : start + knobs.plate_wells]]
                plate += 1
    return rows


def bulk_effects(truth: dict, rows: np.ndarray, programs: np.ndarray) -> np.ndarray:
    """Population-average log2 shifts of bulk rows (columns line, drug, dose; drug >= 0) on the
    genes loaded by `programs`: the bulk-visible responses (main, high-dose and bulk-only
    programmes) scaled by the responding fraction. Vectorised over rows, unlike `expected_shift`."""
    c, d, dose = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2]
    main = hill(dose, truth["ec50"][d], truth["hill"][d])[:, None]
    late = hill(dose, truth["late_ec50"][d], truth["hill"][d])[:, None]
    coef = truth["line_sensitivity"][c] * (main * (truth["drug_latent"][d] + truth["bulk_latent"][d]) + late * truth["late_latent"][d])
    return responders(truth["max_responders"][d], main[:, 0])[:, None] / np.log(2.0) * (coef @ programs)


def _bulk(cfg: SyntheticConfig, knobs: RealisticKnobs, truth: dict, rng: np.random.Generator) -> ad.AnnData:
    g = cfg.n_genes
    measured = np.sort(rng.choice(g, int(round(cfg.bulk_gene_fraction * g)), replace=False))
    n_extra = cfg.n_bulk_only_genes
    lines, drugs = truth["cell_lines"], truth["drugs"]
    extra_programs = rng.normal(0.0, 1.0, (cfg.n_programs, n_extra)) * (rng.random((cfg.n_programs, n_extra)) < 0.1)
    programs = np.hstack([truth["programs"][:, measured], extra_programs])
    extra_base = rng.normal(0.0, knobs.base_sd, (len(lines), n_extra))
    # Bulk sees single-cell baselines and effects through per-gene platform offsets and gains.
    baseline = np.hstack([truth["line_base"][:, measured], extra_base]) / np.log(2.0) + 8.0
    baseline[:, : len(measured)] += truth["platform_offset"][measured]
    gain = np.concatenate([truth["platform_gain"][measured], np.ones(n_extra)])
    rows = np.array(bulk_layout(cfg, knobs, rng), dtype=float)
    plate = rows[:, 3].astype(int)
    plates = rng.normal(0.0, knobs.plate_sd, (plate[-1] + 1, programs.shape[1]))
    x = np.empty((len(rows), programs.shape[1]), dtype=np.float32)
    for start in range(0, len(rows), CELL_BLOCK):
        block = rows[start : start + CELL_BLOCK]
        profile = baseline[block[:, 0].astype(int)] + plates[plate[start : start + CELL_BLOCK]]
        treated = block[:, 1] >= 0
        profile[treated] += gain * bulk_effects(truth, block[treated], programs)
        x[start : start + len(block)] = np.clip(profile + rng.normal(0.0, knobs.bulk_noise_sd, profile.shape), 0.0, None)
    line_of, drug_of = rows[:, 0].astype(int), rows[:, 1].astype(int)
    frame = pd.DataFrame({
        CELL_TYPE: pd.Categorical(lines[line_of].astype(str)),
        DRUG: pd.Categorical(np.where(drug_of < 0, CONTROL, drugs[np.maximum(drug_of, 0)]).astype(str)),
        DOSE: rows[:, 2],
        PLATE: pd.Categorical([f"P{p:05d}" for p in plate]),
    })
    frame[SMILES] = smiles_column(frame[DRUG], smiles_names(truth))
    frame.index = [f"profile{i:06d}" for i in range(len(frame))]
    genes = np.concatenate([truth["genes"][measured], [f"B{i:03d}" for i in range(n_extra)]])
    return ad.AnnData(x, obs=frame, var=pd.DataFrame(index=genes))
