"""Your own files as a Benchmark: a single-cell h5ad and an optional bulk set, read and validated
as `bench run` and `bench check` read them, SMILES tables attached and drug names matched across the
sets; what reading changed (normalisation, merged genes, drug names matched) is said on stderr."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd

from bench.data.benchmark import Benchmark
from bench.data.drugs import align_drug_names, attach_smiles, read_smiles_table
from bench.data.loaders import LOAD_UNS_KEY, ObsKeys, load_bulk, load_notes, load_single_cell, reading_notes
from bench.data.validate import check_shared_genes
from bench.schema import DRUG


def load_files(sc: Path, bulk: Path | None = None, *, keys: ObsKeys, normalize: str = "auto",
               smiles: Sequence[Path] = ()) -> Benchmark:
    """The single-cell file `sc` (columns and control label by `keys`) and the bulk file `bulk`,
    with the `smiles` tables' molecules attached by drug name; one-line errors for bad input."""
    control = keys.control
    cells = load_single_cell(sc, keys, normalize=normalize)
    profiles = load_bulk(bulk, ObsKeys(control=control)) if bulk is not None else None
    notes = load_notes(cells)
    if profiles is not None and bulk is not None:
        notes += [f"{bulk.name}: {line}" for line in reading_notes(profiles)]
    for line in notes:  # once both files are read: a file that cannot be read is the only line printed
        _say(f"note: {line}")
    if smiles:
        table = {k: v for path in smiles for k, v in read_smiles_table(path).items()}
        for role, adata in (("single-cell", cells), ("bulk", profiles)):
            if adata is not None:
                _say(f"smiles: {attach_smiles(adata, table, control)} {role} drug(s) without a SMILES")
    if profiles is not None:
        assert bulk is not None  # the profiles were read from it
        _match_bulk(cells, profiles, sc, bulk, control)
    name = sc.name + (f" + {bulk.name}" if bulk is not None else "")
    return Benchmark(sc=cells, bulk=profiles, name=name, control=control, meta={"sc": str(sc), "bulk": str(bulk)})


def _match_bulk(cells: ad.AnnData, profiles: ad.AnnData, sc: Path, bulk: Path, control: str) -> None:
    """Check the shared genes and respell the bulk drug names as the single-cell set writes them
    (recorded in the bulk set's load record), saying how many drugs found bulk profiles."""
    shared = check_shared_genes(cells, profiles, str(sc), str(bulk))
    level = "warning: few" if shared < 100 else "shared"
    _say(f"genes: {shared} {level} gene symbols between {sc.name} ({cells.n_vars}) and {bulk.name} ({profiles.n_vars})")
    found = align_drug_names(cells, profiles, control)
    profiles.uns[LOAD_UNS_KEY]["drug_matches"] = {d: list(m) for d, m in found.items()}
    n_drugs = len(set(cells.obs[DRUG].astype(str)) - {control})
    ways = pd.Series([how for _, how in found.values()]).value_counts()
    how = ", ".join(f"{n} by {w}" for w, n in ways.items())
    _say(f"drugs: {len(found)} of {n_drugs} single-cell drugs have bulk profiles in {bulk.name}"
         + (f" (matched {how})" if how else "") + "; only these are held out by the unseen-drug splits")


def _say(line: str) -> None:
    print(line, file=sys.stderr)
