"""The Benchmark container: a single-cell set, an optional bulk set, and their shared genes."""

from __future__ import annotations

from dataclasses import dataclass, field

import anndata as ad
import numpy as np

from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG
from bench.schema import FAMILY as FAMILY  # the family column, defined with the other obs columns


@dataclass
class Benchmark:
    """A single-cell set (fine-tuning and evaluation) and a bulk set (pre-training, look-ups)."""

    sc: ad.AnnData
    bulk: ad.AnnData | None
    name: str
    control: str = CONTROL
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for role, adata in (("single-cell", self.sc), ("bulk", self.bulk)):
            if adata is None:
                continue
            missing = [c for c in (DRUG, CELL_TYPE, DOSE) if c not in adata.obs]
            if missing:
                raise BenchError(f"{role} set '{self.name}': obs lacks column(s) {', '.join(missing)}")

    @property
    def truth(self) -> dict | None:
        """Generating parameters, present for generated data only (enables the oracle)."""
        return self.sc.uns.get("bench_truth")

    @property
    def shared_genes(self) -> np.ndarray:
        """Gene symbols measured in both sets, in single-cell order."""
        if self.bulk is None:
            return np.array([], dtype=object)
        bulk_genes = set(self.bulk.var_names)
        return np.array([g for g in self.sc.var_names if g in bulk_genes], dtype=object)

    @property
    def dense_bytes(self) -> int:
        """The data's size as memory estimates count it (`predictors.base.Memory`): the
        single-cell matrix as dense (cells x genes x its itemsize, sparse or not) plus the bulk
        matrix, both of which every pool process holds."""
        sets = [a for a in (self.sc, self.bulk) if a is not None]
        return sum(a.n_obs * a.n_vars * (a.X.dtype.itemsize if a.X is not None else 4) for a in sets)

    def missing_in_bulk(self, drugs: list[str]) -> list[str]:
        """The drugs among `drugs` that the bulk set never measured (all of them without a bulk set)."""
        if self.bulk is None:
            return list(drugs)
        measured = set(self.bulk.obs[DRUG].astype(str))
        return [d for d in drugs if d not in measured]

    def hold_out_candidates(self) -> set[str] | None:
        """The single-cell drugs a split may hold out: those with bulk profiles (a test drug must be
        seen in bulk, as in the paper's setting); None without a bulk set (any drug)."""
        if self.bulk is None:
            return None
        sc_drugs = sorted(set(self.sc.obs[DRUG].astype(str)) - {self.control})
        return set(sc_drugs) - set(self.missing_in_bulk(sc_drugs))

    def describe(self) -> dict:
        sc_drugs = set(self.sc.obs[DRUG].astype(str)) - {self.control}
        out = {
            "name": self.name,
            "sc_cells": int(self.sc.n_obs),
            "sc_genes": int(self.sc.n_vars),
            "sc_drugs": len(sc_drugs),
            "sc_cell_types": int(self.sc.obs[CELL_TYPE].nunique()),
        }
        if self.bulk is not None:
            bulk_drugs = set(self.bulk.obs[DRUG].astype(str)) - {self.control}
            out.update(
                bulk_profiles=int(self.bulk.n_obs),
                bulk_genes=int(self.bulk.n_vars),
                bulk_drugs=len(bulk_drugs),
                bulk_cell_lines=int(self.bulk.obs[CELL_TYPE].nunique()),
                shared_genes=int(len(self.shared_genes)),
                sc_drugs_in_bulk=len(sc_drugs & bulk_drugs),
            )
        return out


def load_default(size: str = "default", seed: int = 0, preset: str | None = None) -> Benchmark:
    """The embedded generated benchmark of the named size (`default`, `smoke` or `full`) and
    preset (`easy` or `realistic`; None: the size's default, `default_preset`)."""
    from bench.data.synthetic import dataset_name, default_preset, generate

    preset = preset or default_preset(size)
    sc, bulk = generate(size, seed, preset)
    return Benchmark(sc=sc, bulk=bulk, name=f"{dataset_name(size, preset)} (seed {seed})",
                     meta={"size": size, "seed": seed, "preset": preset})
