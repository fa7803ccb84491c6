"""Test files in the layouts their publishers write, built from the publishers' documented columns,
types and quirks (never through bench's own writer):

- scPerturb's sci-Plex3 (`SrivatsanTrapnell2020_sciplex3.h5ad`): raw integer UMI counts in X (CSR),
  categorical obs `perturbation` (vehicle `control`; vendor names with aliases and salts),
  `dose_value` (float, 0 for the vehicle) with `dose_unit` (`nM`), `cell_line`, `celltype`,
  `perturbation_type`, `ncounts`, `ngenes`, `nperts`; var indexed by gene symbol with duplicates
  beside an `ensembl_id` column.
- cmapR's Level 5 example GCTX (`modzs_n25x50.gctx`): float64 matrix stored samples x genes,
  fixed-length byte strings, int32 flags, probe-id rows with `pr_gene_id` (Entrez, int32),
  `pr_gene_symbol` and `is_lm`, signature columns with `pert_idose` written `10 <b5>M` (R's escape
  of the Latin-1 micro byte), `distil_*` fields, no vehicle signatures.
- GEO's GSE92742 side-car `gene_info`: `pr_gene_id, pr_gene_symbol, pr_gene_title, pr_is_lm,
  pr_is_bing` with 0/1 flags.
- chemCPA's LINCS h5ad (GSE92742 Level 3 with inst_info as obs): categorical obs throughout
  (`pert_dose` and `pert_dose_unit` `um` included), chemCPA's `condition`, `dose_val`, `control`.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

# Plate drugs (tests/../shared/data/l1000, lower case there) as a vendor catalogue spells them.
PLATE_DRUGS = ["Crizotinib (PF-02341066)", "Dasatinib", "Trametinib (GSK1120212)", "Ruxolitinib (INCB018424)",
               "Tozasertib (VX-680, MK-0457)", "Nilotinib (AMN-107)", "Pelitinib (EKB-569)", "Roscovitine (Seliciclib,CYC202)",
               "Barasertib (AZD1152-HQPA)", "Enzastaurin (LY317615)", "TGX-221"]
ALIAS_ONLY = ["Momelotinib (CYT387)", "Fedratinib (SAR302503, TG101348)"]  # the plate says CYT387, TG-101348
NOT_ON_PLATE = ["Andarine", "Avagacestat", "Glesatinib?(MGCD265)", "Flavopiridol HCl", "Quisinostat (JNJ-26481585) 2HCl",
                "Belinostat (PXD101)", "Alvespimycin (17-DMAG) HCl", "Divalproex Sodium", "Ellagic acid",
                "Abexinostat (PCI-24781)", "AICAR", "Aminoglutethimide", "Amisulpride", "Azacitidine", "Busulfan",
                "Capecitabine"]
SCIPLEX_DOSES = (10.0, 100.0, 1000.0, 10000.0)
LINES = {"A549": "lung adenocarcinoma", "K562": "chronic myelogenous leukemia", "MCF7": "mammary adenocarcinoma"}


def scperturb_sciplex3(path: Path, genes: list[str], drugs: list[str], cells_per_condition: int = 6,
                       controls_per_line: int = 60, duplicated: int = 4, dtype=np.float32, seed: int = 0) -> Path:
    """An h5ad in scPerturb's sci-Plex3 layout over `genes` (the first `duplicated` symbols listed a
    second time under another Ensembl id). Each drug shifts a few genes with dose, so doses differ."""
    rng = np.random.default_rng(seed)
    symbols = list(genes) + list(genes[:duplicated])
    n_genes = len(symbols)
    rows = []
    for line in LINES:
        rows += [(line, "control", 0.0)] * controls_per_line
        rows += [(line, d, dose) for d in drugs for dose in SCIPLEX_DOSES for _ in range(cells_per_condition)]
    line, drug, dose = (np.array(c) for c in zip(*rows))
    base = rng.gamma(0.6, 0.4, n_genes)
    rate = np.tile(base, (len(rows), 1))
    for i, d in enumerate(drugs):
        genes_hit = rng.choice(n_genes, 8, replace=False)
        for dose_i, x in enumerate(SCIPLEX_DOSES):
            sel = (drug == d) & (dose == x)
            rate[np.ix_(sel, genes_hit)] *= 1 + (i % 5 + 1) * (dose_i + 1) / 4
    counts = sp.csr_matrix(rng.poisson(rate * rng.uniform(2, 6, (len(rows), 1))).astype(dtype))
    ncounts = np.asarray(counts.sum(axis=1)).ravel()
    obs = pd.DataFrame({
        "cell_line": pd.Categorical(line),
        "celltype": pd.Categorical([LINES[c] for c in line]),
        "perturbation": pd.Categorical(drug),
        "dose_value": dose,
        "dose_unit": pd.Categorical(["nM"] * len(rows)),
        "perturbation_type": pd.Categorical(["drug"] * len(rows)),
        "time": np.full(len(rows), 24.0),
        "ncounts": ncounts,
        "ngenes": np.diff(counts.indptr),
        "nperts": np.where(drug == "control", 0, 1),
    }, index=[f"A01_F10_RT_BC_{i}_Lig_BC_{i % 97}" for i in range(len(rows))])
    var = pd.DataFrame({"ensembl_id": [f"ENSG{100000 + i:011d}" for i in range(n_genes)]}, index=symbols)
    adata = ad.AnnData(counts, obs=obs, var=var)
    adata.write_h5ad(path)
    return path


def cmapr_level5_gctx(path: Path, symbols: list[str], entrez: list[int], signatures: list[tuple[str, str, str, str]],
                      values: np.ndarray, landmark: list[int] | None = None) -> Path:
    """A Level 5 GCTX as cmapR writes it. `signatures`: (pert_id, pert_iname, cell_id, pert_idose)
    per column, doses as written (e.g. '10 <b5>M'); `values`: samples x genes."""
    landmark = landmark if landmark is not None else [1] * len(symbols)
    with h5py.File(path, "w") as fh:
        fh["0/DATA/0/matrix"] = np.asarray(values, dtype=np.float64)
        row = fh.create_group("0/META/ROW")
        row["id"] = np.array([f"{200000 + i}_at" for i in range(len(symbols))], dtype="S")
        row["pr_gene_id"] = np.array(entrez, dtype=np.int32)
        row["pr_gene_symbol"] = np.array(symbols, dtype="S")
        row["is_lm"] = np.array(landmark, dtype=np.int32)
        row["is_bing"] = np.ones(len(symbols), dtype=np.int32)
        col = fh.create_group("0/META/COL")
        pert_id, iname, cell, idose = (list(c) for c in zip(*signatures))
        col["id"] = np.array([f"CPC006_{c}_24H:{p}-001-01-8:{i}" for i, (p, c) in enumerate(zip(pert_id, cell))], dtype="S")
        col["pert_id"] = np.array(pert_id, dtype="S")
        col["pert_iname"] = np.array(iname, dtype="S")
        col["cell_id"] = np.array(cell, dtype="S")
        col["pert_idose"] = np.array(idose, dtype="S")
        col["pert_itime"] = np.array(["24 h"] * len(cell), dtype="S")
        col["pert_type"] = np.array(["trt_cp"] * len(cell), dtype="S")
        col["distil_cc_q75"] = np.linspace(0.05, 0.6, len(cell))
        col["distil_nsample"] = np.full(len(cell), 3, dtype=np.int32)
        col["is_gold"] = np.zeros(len(cell), dtype=np.int32)
    return path


def geo_gene_info(path: Path, entrez: list[int], symbols: list[str], landmark: list[int]) -> Path:
    """GSE92742's gene_info side-car: tab-separated, 0/1 landmark flags in pr_is_lm."""
    pd.DataFrame({"pr_gene_id": entrez, "pr_gene_symbol": symbols, "pr_gene_title": [f"{s} title" for s in symbols],
                  "pr_is_lm": landmark, "pr_is_bing": 1}).to_csv(path, sep="\t", index=False)
    return path


def scperturb_sciplex3_full(path: Path, landmarks: list[str], drugs: list[str], n_cells: int = 800_000,
                            n_genes: int = 110_983, duplicated: int = 200, control_fraction: float = 0.02,
                            median_umis: float = 1_100.0, gene_sigma: float = 2.5, landmark_top: int = 6_000,
                            block_cells: int = 20_000, seed: int = 0) -> dict:
    """An h5ad in scPerturb's sci-Plex3 layout at the published shape, written block by block with
    h5py in anndata's on-disk encoding (X a CSR group: float32 counts, int32 indices, int64 indptr;
    obs and var dataframes with categorical columns through `write_elem`), never held whole.

    Genes: `landmarks` and filler symbols up to `n_genes` columns, `duplicated` of them a second
    Ensembl id of an existing symbol, in shuffled order; gene weights are log-normal (sigma
    `gene_sigma`) and the landmarks take random ranks among the `landmark_top` most expressed
    (L1000 chose well-expressed genes). Cells: 3 lines, a
    `control_fraction` of vehicle controls, the rest spread over `drugs` x SCIPLEX_DOSES. Each cell's
    UMIs are a multinomial draw of a log-normal total (median `median_umis`, sigma 0.55) over its
    line's gene weights (each line's a log-normal factor off the common ones), plus
    Poisson extra UMIs on 25 target genes of its drug growing with dose. Returns the shape, nnz,
    and the median UMIs and detected genes per cell."""
    rng = np.random.default_rng(seed)
    n_unique = n_genes - duplicated
    symbols = np.array(list(landmarks) + [f"GENE{i:06d}" for i in range(n_unique - len(landmarks))], dtype=object)
    symbols = np.concatenate([symbols, symbols[rng.choice(n_unique, duplicated, replace=False)]])
    rank = np.empty(n_genes, dtype=np.int64)
    rank[: len(landmarks)] = rng.choice(min(landmark_top, n_genes), len(landmarks), replace=False)
    rank[len(landmarks) :] = rng.permutation(np.setdiff1d(np.arange(n_genes), rank[: len(landmarks)]))
    weight = np.sort(rng.lognormal(0.0, gene_sigma, n_genes))[::-1][rank]
    order = rng.permutation(n_genes)
    symbols, weight = symbols[order], weight[order]
    line_p = [(w := weight * rng.lognormal(0.0, 0.25, n_genes)) / w.sum() for _ in LINES]
    targets = rng.choice(np.argsort(-weight)[:5_000], (len(drugs), 25))
    strength = rng.uniform(0.0, 0.08, len(drugs))

    # Cells: within each block, grouped by line so each line's draws are made at once.
    line = rng.integers(0, len(LINES), n_cells)
    line = np.concatenate([np.sort(line[s : s + block_cells]) for s in range(0, n_cells, block_cells)])
    control = rng.random(n_cells) < control_fraction
    drug = np.where(control, -1, rng.integers(0, len(drugs), n_cells))
    level = np.where(control, 0, rng.integers(1, len(SCIPLEX_DOSES) + 1, n_cells))
    umis = np.maximum(100, np.round(rng.lognormal(np.log(median_umis), 0.55, n_cells))).astype(np.int64)
    ncounts, ngenes = np.zeros(n_cells), np.zeros(n_cells, dtype=np.int64)

    with h5py.File(path, "w") as fh:
        fh.attrs["encoding-type"], fh.attrs["encoding-version"] = "anndata", "0.1.0"
        x = fh.create_group("X")
        x.attrs["encoding-type"], x.attrs["encoding-version"] = "csr_matrix", "0.1.0"
        x.attrs["shape"] = np.array([n_cells, n_genes], dtype=np.int64)
        chunk = 1 << 18
        data = x.create_dataset("data", (0,), dtype=np.float32, maxshape=(None,), chunks=(chunk,))
        indices = x.create_dataset("indices", (0,), dtype=np.int32, maxshape=(None,), chunks=(chunk,))
        indptr = [np.zeros(1, dtype=np.int64)]
        nnz = 0
        for s in range(0, n_cells, block_cells):
            cells = np.arange(s, min(s + block_cells, n_cells))
            keys = []
            for k, p in enumerate(line_p):
                mine = cells[line[cells] == k]
                if not len(mine):
                    continue
                genes = np.repeat(np.arange(n_genes, dtype=np.int64), rng.multinomial(umis[mine].sum(), p))
                rng.shuffle(genes)
                keys.append(np.repeat(mine - s, umis[mine]) * n_genes + genes)
            treated = cells[~control[cells]]
            extra = rng.poisson(umis[treated] * strength[drug[treated]] * level[treated] / len(SCIPLEX_DOSES))
            who = np.repeat(treated, extra)
            keys.append((who - s) * n_genes + targets[drug[who], rng.integers(0, targets.shape[1], len(who))])
            keys = np.concatenate(keys)
            keys.sort()
            first = np.r_[True, keys[1:] != keys[:-1]]
            starts = np.flatnonzero(first)
            count = np.diff(np.r_[starts, len(keys)]).astype(np.float32)
            row, col = np.divmod(keys[starts], n_genes)
            per_row = np.bincount(row, minlength=len(cells))
            ncounts[cells] = np.bincount(row, weights=count, minlength=len(cells))
            ngenes[cells] = per_row
            data.resize((nnz + len(count),))
            indices.resize((nnz + len(count),))
            data[nnz:], indices[nnz:] = count, col.astype(np.int32)
            nnz += len(count)
            indptr.append(nnz - len(count) + np.cumsum(per_row))
        x.create_dataset("indptr", data=np.concatenate(indptr))

        names = np.array(list(LINES))[line]
        perturbation = np.where(control, "control", np.array(drugs, dtype=object)[np.maximum(drug, 0)])
        dose = np.where(control, 0.0, np.array((0.0,) + SCIPLEX_DOSES)[level])
        obs = pd.DataFrame({
            "cell_line": pd.Categorical(names),
            "celltype": pd.Categorical(np.array(list(LINES.values()))[line]),
            "perturbation": pd.Categorical(perturbation),
            "dose_value": dose,
            "dose_unit": pd.Categorical(np.full(n_cells, "nM")),
            "perturbation_type": pd.Categorical(np.full(n_cells, "drug")),
            "time": np.full(n_cells, 24.0),
            "ncounts": ncounts,
            "ngenes": ngenes,
            "nperts": (~control).astype(np.int64),
        }, index=pd.Index([f"sciplex3_cell_{i}" for i in range(n_cells)]))
        var = pd.DataFrame({"ensembl_id": [f"ENSG{i:011d}" for i in range(n_genes)]}, index=pd.Index(symbols.astype(str)))
        ad.io.write_elem(fh, "obs", obs)
        ad.io.write_elem(fh, "var", var)
        for key in ("uns", "obsm", "varm", "obsp", "varp", "layers"):
            ad.io.write_elem(fh, key, {})
    return {"n_cells": n_cells, "n_genes": n_genes, "nnz": int(nnz), "duplicated": duplicated,
            "median_umis": float(np.median(ncounts)), "median_genes": float(np.median(ngenes))}


def chemcpa_lincs_level3(path: Path, genes: list[str], inames: list[str], cell_line: str = "A", replicates: int = 3) -> Path:
    """chemCPA's LINCS h5ad (`lincs_full.h5ad`, GSE92742 Level 3 with its inst_info as obs), written
    with h5py in anndata's on-disk layout: a dense float32 X (z-scored-like, negative values too),
    every text column of obs categorical as anndata stores strings, `pert_dose` too (written
    '20.0', DMSO '0.1'), `pert_dose_unit` 'um' ('%' for DMSO), chemCPA's added `condition`
    (pert_iname with letters and digits only), `cell_type`, `dose_val` (pert_dose / its maximum),
    `cov_drug_dose_name` and a 0/1 `control` flag on DMSO rows."""
    from hostile_layouts import dataframe

    rows = [("DMSO", "ctl_vehicle", "0.1", "%")] * (2 * replicates)
    rows += [(name, "trt_cp", dose, "um") for name in inames for dose in ("1.0", "20.0") for _ in range(replicates)]
    iname, kind, dose, unit = (list(c) for c in zip(*rows))
    condition = ["".join(ch for ch in n if ch.isalnum()) for n in iname]
    dose_val = [float(d) / 20.0 if u == "um" else 0.005 for d, u in zip(dose, unit)]
    obs = {"cell_id": [cell_line] * len(rows), "pert_iname": iname, "pert_type": kind, "pert_dose": dose,
           "pert_dose_unit": unit, "pert_time": ["24"] * len(rows), "pert_time_unit": ["h"] * len(rows),
           "rna_plate": [f"PLATE{i % 2}" for i in range(len(rows))], "condition": condition, "cell_type": [cell_line] * len(rows),
           "cov_drug_dose_name": [f"{cell_line}_{c}_{v}" for c, v in zip(condition, dose_val)]}
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as fh:
        fh.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        dataframe(fh, "obs", [f"inst{i}" for i in range(len(rows))], obs,
                  {"dose_val": dose_val, "control": [int(c == "DMSO") for c in condition]})
        dataframe(fh, "var", genes)
        x = fh.create_dataset("X", data=rng.normal(0, 1, (len(rows), len(genes))).astype(np.float32))
        x.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
        fh.create_group("uns").attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
    return path
