"""`bench check`: read --sc (and --bulk) exactly as `bench run` does and summarise what a run would
see (cells, genes, drugs, doses and controls per cell type, combinations, the overlap with the bulk
set, the unseen-drug hold-out, the clusters of related drugs, predictors that would be skipped), or
stop with the same one-line error."""

from __future__ import annotations

import argparse

import numpy as np

from bench.commands.clusters import cluster_line, drug_clusters
from bench.commands.data import add_data_arguments, load_benchmark
from bench.data.benchmark import Benchmark
from bench.data.combinations import combinations_among
from bench.data.loaders import LOAD_UNS_KEY, load_notes
from bench.errors import BenchError
from bench.runner import skip_reason
from bench.schema import CELL_TYPE, DOSE, DRUG
from predictors import registry
from predictors.base import Task
from splits import Split, benchmark_split
from splits.base import TEST, TRAIN, VAL

SHOWN = 8  # names listed before "..."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="read --sc (and --bulk) as `bench run` would and summarise them")
    p.add_argument("--split-column", default=None, help="use the train/test/ood roles stored in this obs column (CPA files)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the drug hold-out (default: 0)")
    add_data_arguments(p, embedded=False)
    p.set_defaults(func=run)


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f", ... ({len(names)} in all)" if len(names) > SHOWN else "") if names else "none"


def _doses(values: np.ndarray) -> str:
    doses = sorted(set(np.round(values, 6)))
    shown = [f"{d:g}" for d in doses]
    return ", ".join(shown) if len(shown) <= SHOWN else f"{len(shown)} doses, {shown[0]} to {shown[-1]}"


def dose_source(adata) -> str:
    """How the doses of a loaded set were read (uns['bench_load'])."""
    info = adata.uns[LOAD_UNS_KEY]
    column = info["dose_column"]
    if not column:
        return "none read (no dose column, or --dose-key none): one dose per drug, placeholder 1"
    units = f" with each row's unit from '{info['dose_unit_column']}'" if info.get("dose_unit_column") else ""
    return f"column '{column}'{units}, plain numbers x {info['nm_per_unit']:g} nM, written units converted"


def single_cell_lines(bench: Benchmark) -> list[str]:
    sc, control = bench.sc, bench.control
    obs = sc.obs
    drugs = obs[DRUG].astype(str).to_numpy()
    types = obs[CELL_TYPE].astype(str).to_numpy()
    treated = sorted(set(drugs) - {control})
    combos = combinations_among(treated)
    lines = [f"single cell: {bench.meta.get('sc', bench.name)}",
             f"  {sc.n_obs} cells x {sc.n_vars} genes, {len(set(types))} cell type(s), {len(treated)} drug(s) "
             f"({len(combos)} combination(s)); doses: {dose_source(sc)}",
             f"  {'cell type':<16}{'controls':>9}{'drugs':>7}{'conditions':>12}  doses (nM)"]
    for ct in sorted(set(types)):
        rows = types == ct
        rows_treated = rows & (drugs != control)
        n_cond = len(set(zip(drugs[rows_treated], obs[DOSE].to_numpy()[rows_treated])))
        lines.append(f"  {ct:<16}{int((rows & (drugs == control)).sum()):>9}{len(set(drugs[rows_treated])):>7}{n_cond:>12}  "
                     f"{_doses(obs[DOSE].to_numpy()[rows_treated])}")
    lines.append(f"  combinations: {_names(combos)}")
    lines += [f"  note: {note}" for note in load_notes(sc)]
    return lines


def bulk_lines(bench: Benchmark) -> list[str]:
    bulk, control = bench.bulk, bench.control
    if bulk is None:
        return ["bulk: none (predictors that need a bulk set are skipped, see below)"]
    info = bulk.uns.get(LOAD_UNS_KEY, {})
    sc_drugs = sorted(set(bench.sc.obs[DRUG].astype(str)) - {control})
    missing = bench.missing_in_bulk(sc_drugs)
    lines = [f"bulk: {bench.meta.get('bulk', '')}",
             f"  {bulk.n_obs} profiles x {bulk.n_vars} genes, {len(set(bulk.obs[DRUG].astype(str)) - {control})} drug(s), "
             f"{bulk.obs[CELL_TYPE].nunique()} cell line(s); doses: {dose_source(bulk)}"]
    if info.get("l1000_level") == 5:
        lines.append(f"  L1000 Level 5 signatures (changes from control): {info.get('vehicle_signatures_replaced', 0)} "
                     "vehicle signature(s) replaced by one zero control profile per cell line")
    if info.get("non_compound_profiles_dropped"):
        lines.append(f"  {info['non_compound_profiles_dropped']} non-compound profile(s) dropped (shRNA, ORF, ligand, ...)")
    lines.append(f"  shared with single cell: {len(bench.shared_genes)} genes; {len(sc_drugs) - len(missing)} of "
                 f"{len(sc_drugs)} drugs, the ones the unseen-drug splits may hold out (without bulk profiles, kept in "
                 f"training: {_names(missing)})")
    matches = info.get("drug_matches", {})
    shown = [f"{d} = {b} ({how})" for d, (b, how) in sorted(matches.items()) if how != "name"]
    if shown:
        lines.append("  single-cell = bulk names matched: " + "; ".join(shown))
    return lines


def split_lines(bench: Benchmark, split: Split, source: str) -> list[str]:
    obs = bench.sc.obs
    lines = [f"split unseen_drugs ({source}):"]
    for role, word in ((TEST, "test"), (VAL, "validation"), (TRAIN, "training")):
        drugs = split.drugs(obs, role)
        lines.append(f"  {word:<11}{len(drugs):>4} drug(s), {len(split.conditions(obs, role)):>5} condition(s): {_names(drugs)}")
    return lines


def skipped_lines(bench: Benchmark, split: Split) -> list[str]:
    """The predictors a run would skip on this data, and why (the runner's own rule)."""
    obs = bench.sc.obs
    task = Task(train=bench.sc, bulk=bench.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), control=bench.control, truth=bench.truth)
    lines = []
    for name in registry.predictor_names():
        try:
            cls, _ = registry.predictor_class(name)
        except Exception as exc:  # noqa: BLE001  a broken plug-in is listed, not fatal
            lines.append(f"  {name}: cannot be imported ({type(exc).__name__})")
            continue
        reason = skip_reason(cls, task, split.conditions(obs, TRAIN))
        if reason:
            lines.append(f"  {name}: {reason}")
    return ["predictors skipped on this data:"] + (lines or ["  none"])


def run(args: argparse.Namespace) -> int:
    if args.sc is None:
        raise BenchError("bench check needs --sc FILE (and optionally --bulk FILE): it checks your own files")
    bench = load_benchmark(args)
    split = benchmark_split(bench, "unseen_drugs", args.split_seed, args.split_column)
    source = f"stored in column '{args.split_column}'" if args.split_column else f"seed {args.split_seed}"
    print("\n".join(single_cell_lines(bench) + bulk_lines(bench) + split_lines(bench, split, source)
                    + [cluster_line(drug_clusters(bench))] + skipped_lines(bench, split)))
    return 0
