"""The clusters of related drugs that published intervals and tests resample together: drug ->
cluster from the data (`splits.unseen_drug_families.drug_groups`: Bemis-Murcko scaffolds when the
drugs have SMILES, else the obs column `drug_family`; every drug its own cluster when the data have
neither), recorded in run.json by `bench run` and shown by `bench check`."""

from __future__ import annotations

from collections import Counter

from bench.data.benchmark import Benchmark
from bench.errors import BenchError
from bench.schema import DRUG
from bench.stability import CLUSTER_KINDS
from splits.unseen_drug_families import drug_groups

SHOWN = 8  # cluster sizes listed one by one; more are counted per size


def drug_clusters(bench: Benchmark) -> dict[str, str]:
    """drug -> cluster (`scaffold:<SMILES>`, `family:<name>` or `drug:<name>`) of every treated drug."""
    try:
        return drug_groups(bench.sc, bench.control)
    except BenchError:  # neither SMILES nor drug families
        return {d: f"drug:{d}" for d in sorted(set(bench.sc.obs[DRUG].astype(str)) - {bench.control})}


def cluster_line(clusters: dict[str, str]) -> str:
    """One line: how the drugs were clustered, how many clusters and their sizes."""
    sizes = sorted(Counter(clusters.values()).values(), reverse=True)
    kinds = [CLUSTER_KINDS[k] for k in sorted({c.partition(":")[0] for c in clusters.values()}) if k in CLUSTER_KINDS]
    how = "; ".join(kinds) or "one per drug: no SMILES and no drug families"
    shown = (", ".join(map(str, sizes)) if len(sizes) <= SHOWN else
             ", ".join(f"{size} x{n}" for size, n in sorted(Counter(sizes).items(), reverse=True)))
    return f"drug clusters ({how}; intervals resample each as one unit): {len(sizes)} cluster(s) of {len(clusters)} drugs, sizes {shown}"
