"""Clusters of related drugs: computed from the data as `bench run` records them in run.json, and
shown by `bench check`."""

from __future__ import annotations

from bench.cli import main
from bench.commands.clusters import cluster_line, drug_clusters
from bench.data.benchmark import Benchmark
from bench.schema import DRUG


def test_generated_drugs_cluster_by_scaffold(smoke):
    clusters = drug_clusters(smoke)
    assert sorted(clusters) == sorted(set(smoke.sc.obs[DRUG].astype(str)) - {smoke.control})
    assert all(c.startswith("scaffold:") for c in clusters.values()) and len(set(clusters.values())) == 4
    line = cluster_line(clusters)
    assert line.startswith("drug clusters (Bemis-Murcko scaffolds; intervals resample each as one unit): 4 cluster(s) of 12 drugs")
    assert line.endswith("sizes 4, 3, 3, 2")


def test_without_smiles_the_families_and_without_either_one_cluster_per_drug(smoke):
    sc = smoke.sc.copy()
    sc.obs = sc.obs.drop(columns=["smiles"])
    families = drug_clusters(Benchmark(sc=sc, bulk=None, name="no smiles"))
    assert all(c.startswith("family:") for c in families.values()) and len(set(families.values())) == 4
    assert "drug families (obs `drug_family`)" in cluster_line(families)
    sc.obs = sc.obs.drop(columns=["drug_family"])
    each = drug_clusters(Benchmark(sc=sc, bulk=None, name="bare"))
    assert each == {d: f"drug:{d}" for d in each} and len(each) == 12
    many = cluster_line(each)
    assert "one per drug: no SMILES and no drug families" in many and many.endswith("12 cluster(s) of 12 drugs, sizes 1 x12")


def test_check_prints_the_clusters(smoke, tmp_path, capsys):
    sc = smoke.sc.copy()
    sc.uns.pop("bench_truth", None)
    sc.write_h5ad(tmp_path / "sc.h5ad")
    assert main(["check", "--sc", str(tmp_path / "sc.h5ad")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("drug clusters")] == [cluster_line(drug_clusters(smoke))]
