"""The embedded benchmark: a seeded generator of a bulk set and a single-cell set, in two presets.

Both sets share one causal model (`bench.data.synthetic_model`), so that bulk pre-training and bulk
look-ups have something real to transfer: a drug moves K low-rank gene programmes through a
drug-specific latent vector, scaled per cell line, along a Hill dose curve; single cells respond
heterogeneously and are sampled as Poisson counts, then log-normalised. Bulk profiles are
population averages on a log2 scale with measurement noise, over many more cell lines and drugs,
on a landmark-like subset of genes plus a few bulk-only genes. All generating parameters are kept
in ``sc.uns['bench_truth']`` so an oracle can simulate fresh cells of any condition and bound what
is achievable. Every drug has a molecule (`bench.data.molecules`: its family's scaffold, its own
substituents), and a share `structure_weight` of its effect follows from the molecule's fingerprint.

Preset ``easy`` (this module) is that model as is: bulk sees exactly the single-cell effect, every
single-cell drug is measured in bulk everywhere at six doses. Preset ``realistic``
(`bench.data.synthetic_realistic`) adds what real sci-Plex3 and L1000 data have and ``easy`` lacks:
single-cell-specific responses, a platform shift, L1000-like noise, plates and coverage, sparse
counts, uneven cell numbers, many inert drugs and dose responses that change shape.
"""

from __future__ import annotations

from dataclasses import asdict, replace

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
    responder_fraction,
    simulate_groups,
    smiles_column,
    smiles_names,
)
from bench.data.synthetic_realistic import generate_realistic, realistic_setup
from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition

PRESETS = ("easy", "realistic")
TEST_SIZES = ("smoke",)  # sizes that exist to exercise the mechanics: always the easy model (signal at few cells)


def default_preset(size: str) -> str:
    """The preset a size gets when none is asked for: `realistic`, except for the test-sized data."""
    return "easy" if size in TEST_SIZES else "realistic"


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
    # sci-Plex3 shape (188 drugs x 4 doses x 3 lines, ~650k cells x 2,000 genes, sparse counts)
    # and a LINCS-like bulk set (>200k profiles x 978 landmark-like genes).
    "full": SyntheticConfig(
        n_genes=2000,
        n_programs=16,
        n_families=24,
        n_bulk_cell_lines=30,
        n_sc_drugs=188,
        n_bulk_drugs=12000,
        cells_per_condition=280,
        controls_per_cell_line=6000,
        bulk_replicates=1,
        bulk_pair_fraction=0.1,
        bulk_gene_fraction=0.45,
        n_bulk_only_genes=78,
        library_size=200.0,
    ),
}


def config_for(size: str, seed: int = 0) -> SyntheticConfig:
    """The configuration of the named size, generated from `seed`."""
    if size not in SIZES:
        raise BenchError(f"unknown data size '{size}': expected one of {', '.join(SIZES)}")
    return replace(SIZES[size], seed=seed)


def dataset_name(size: str, preset: str) -> str:
    """The generated data set's name, its size and preset both named ('synthetic-default-easy'), so runs
    on different presets never mix and a page's name says which preset it shows."""
    return f"synthetic-{size}-{preset}"


def generate(size: str = "default", seed: int = 0, preset: str | None = None,
             structure_weight: float | None = None) -> tuple[ad.AnnData, ad.AnnData]:
    """Generate the (single-cell, bulk) pair of the named size and preset (None: `default_preset`),
    deterministically from `seed`; `structure_weight` overrides the size's (None: keep it)."""
    preset = preset or default_preset(size)
    cfg = config_for(size, seed)
    if structure_weight is not None:
        cfg = replace(cfg, structure_weight=float(structure_weight))
    if preset == "easy":
        truth, _ = draw_truth(cfg)
        sc = _single_cell(cfg, truth, np.random.default_rng([cfg.seed, 1]))
        bulk = _bulk(cfg, truth, np.random.default_rng([cfg.seed, 2]))
        knobs = {}
    elif preset == "realistic":
        cfg, setup = realistic_setup(size, cfg)
        sc, bulk = generate_realistic(cfg, setup)
        knobs = _plain(asdict(setup))
    else:
        raise BenchError(f"unknown preset '{preset}': expected one of {', '.join(PRESETS)}")
    sc.uns["bench_dataset"] = {"name": dataset_name(size, preset), "seed": cfg.seed, "preset": preset,
                               **_plain(asdict(cfg)), **knobs}
    bulk.uns["bench_dataset"] = dict(sc.uns["bench_dataset"])
    return sc, bulk


def _plain(d: dict) -> dict:
    """Configuration values as h5ad can store them (floats as float, tuples as arrays)."""
    return {k: float(v) if isinstance(v, float) else np.asarray(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _single_cell(cfg: SyntheticConfig, truth: dict, rng: np.random.Generator) -> ad.AnnData:
    groups = []
    for line in map(str, truth["cell_lines"][: cfg.n_sc_cell_lines]):
        groups.append((line, CONTROL, 0.0, cfg.controls_per_cell_line))
        groups += [(line, str(drug), dose, cfg.cells_per_condition) for drug in truth["drugs"][: cfg.n_sc_drugs] for dose in SC_DOSES]
    return simulate_groups(truth, groups, rng)


def _bulk(cfg: SyntheticConfig, truth: dict, rng: np.random.Generator) -> ad.AnnData:
    g = cfg.n_genes
    measured = np.sort(rng.choice(g, int(round(cfg.bulk_gene_fraction * g)), replace=False))
    n_extra = cfg.n_bulk_only_genes
    lines, drugs = truth["cell_lines"], truth["drugs"]
    # Bulk-only genes follow their own programme loadings (unseen by single cell).
    extra_programs = rng.normal(0.0, 1.0, (cfg.n_programs, n_extra)) * (rng.random((cfg.n_programs, n_extra)) < 0.1)
    extra_base = rng.normal(0.0, 1.3, (len(lines), n_extra))
    # First the plate layout (which line x drug pairs are measured), then the profiles block by
    # block: the noise is drawn row block after row block, the same numbers as one whole draw.
    rows = []
    for c, line in enumerate(lines):
        rows += [(c, -1, 0.0)] * cfg.bulk_controls_per_cell_line
        is_sc_line = c < cfg.n_sc_cell_lines
        for d in range(len(drugs)):
            if not (is_sc_line and d < cfg.n_sc_drugs) and rng.random() >= cfg.bulk_pair_fraction:
                continue
            rows += [(c, d, dose) for dose in BULK_DOSES for _ in range(cfg.bulk_replicates)]
    ln2 = np.log(2.0)
    x = np.empty((len(rows), len(measured) + n_extra), dtype=np.float32)
    for start in range(0, len(rows), CELL_BLOCK):
        profiles = []
        for c, d, dose in rows[start : start + CELL_BLOCK]:
            profile = np.concatenate([truth["line_base"][c, measured], extra_base[c]]) / ln2 + 8.0
            if d >= 0:
                cond = Condition(str(lines[c]), str(drugs[d]), dose)
                programme = truth["line_sensitivity"][c] * truth["drug_latent"][d]
                effect = np.concatenate([programme @ truth["programs"][:, measured], programme @ extra_programs])
                # Population average: the responding fraction times the mean strength (1).
                profile = profile + responder_fraction(truth, cond) * dose_response(truth, str(drugs[d]), dose) / ln2 * effect
            profiles.append(profile)
        block = np.asarray(profiles)
        x[start : start + len(block)] = np.clip(block + rng.normal(0.0, 0.25, block.shape), 0.0, None)
    frame = pd.DataFrame({
        CELL_TYPE: pd.Categorical([str(lines[c]) for c, _, _ in rows]),
        DRUG: pd.Categorical([CONTROL if d < 0 else str(drugs[d]) for _, d, _ in rows]),
        DOSE: [dose for *_, dose in rows],
    })
    frame[SMILES] = smiles_column(frame[DRUG], smiles_names(truth))
    frame.index = [f"profile{i:06d}" for i in range(len(frame))]
    genes = np.concatenate([truth["genes"][measured], [f"B{i:03d}" for i in range(n_extra)]])
    return ad.AnnData(x, obs=frame, var=pd.DataFrame(index=genes))
