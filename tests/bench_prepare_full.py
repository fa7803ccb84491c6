"""Full-shape measurement of `bench prepare` (not a test: pytest does not collect this file).

Writes a file in scPerturb's sci-Plex3 layout at the published shape (tests/layouts.py,
`scperturb_sciplex3_full`: 800,000 cells x 110,983 genes of raw counts) under /tmp, runs
`bench prepare` on it under /usr/bin/time -v with the real L1000 plate of ../shared/data as bulk
(`--bulk plate`) or a GCTX of GSE92742's Level 5 shape with its GEO side-cars (`--bulk level5`:
473,647 signatures x 12,328 genes float32, 23 GB), then `bench check` on the output, and prints
wall times, peak resident memory and the machine's load (other jobs sharing the cores slow it
down). The generated files are deleted afterwards.

    python tests/bench_prepare_full.py [--cells 800000] [--genes 110983] [--bulk plate|level5] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
N_DRUGS = 188


def drug_names() -> list[str]:
    """188 sci-Plex3 names: the vendor spellings of tests/layouts.py, then chemCPA's table's names."""
    from layouts import ALIAS_ONLY, NOT_ON_PLATE, PLATE_DRUGS

    table = pd.read_csv(SHARED / "drugs" / "trapnell_drugs_smiles.csv", header=None, dtype=str)[0].str.strip()
    vendor = [n for n in table if n.casefold() not in ("control", "dmso")]
    names = list(dict.fromkeys(PLATE_DRUGS + ALIAS_ONLY + NOT_ON_PLATE + vendor))
    return names[:N_DRUGS]


def level5_gctx(folder: Path, plate: Path, n_sigs: int = 473_647, n_genes: int = 12_328, n_compounds: int = 20_000,
                block: int = 16_384, seed: int = 0) -> Path:
    """GSE92742's Level 5 as GEO ships it: a GCTX whose rows are Entrez ids and columns sig ids
    (float32 z-scores, written in blocks of signatures), a gene_info side-car flagging 978 landmarks
    (the plate's symbols) and a sig_info side-car: ~2% DMSO signatures, the rest compounds (the
    plate's, then made-up ones) at six doses in 70 cell lines."""
    from bench.data.loaders import load_bulk
    from layouts import geo_gene_info

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    real = load_bulk(plate)
    landmarks = list(real.var_names)
    entrez = np.arange(1, n_genes + 1)
    is_lm = np.zeros(n_genes, dtype=int)
    lm_rows = np.sort(rng.choice(n_genes, len(landmarks), replace=False))
    is_lm[lm_rows] = 1
    symbols = np.array([f"BING{i}" for i in range(n_genes)], dtype=object)
    symbols[lm_rows] = landmarks
    geo_gene_info(folder / "GSE92742_Broad_LINCS_gene_info.txt", list(entrez), list(symbols), list(is_lm))
    plate_cpds = real.obs.loc[real.obs["pert_type"] == "trt_cp", ["pert_id", "pert_iname"]].drop_duplicates("pert_id")
    ids = np.r_[plate_cpds["pert_id"].to_numpy(str), [f"BRD-K{i:08d}" for i in range(n_compounds - len(plate_cpds))]]
    inames = np.r_[plate_cpds["pert_iname"].to_numpy(str), [f"compound-{i}" for i in range(n_compounds - len(plate_cpds))]]
    vehicle = rng.random(n_sigs) < 0.02
    cpd = rng.integers(0, n_compounds, n_sigs)
    doses = np.array(["0.04", "0.12", "0.37", "1.11", "3.33", "10"])[rng.integers(0, 6, n_sigs)]
    sig_ids = np.array([f"CPC{i // 384:04d}_L{i % 70}_24H:{i}" for i in range(n_sigs)], dtype=object)
    pd.DataFrame({"sig_id": sig_ids, "pert_id": np.where(vehicle, "DMSO", ids[cpd]),
                  "pert_iname": np.where(vehicle, "DMSO", inames[cpd]),
                  "pert_type": np.where(vehicle, "ctl_vehicle", "trt_cp"), "cell_id": [f"L{i % 70}" for i in range(n_sigs)],
                  "pert_dose": np.where(vehicle, "-666", doses), "pert_dose_unit": np.where(vehicle, "-666", "\u00b5M"),
                  "pert_idose": np.where(vehicle, "-666", np.char.add(doses.astype(str), " \u00b5M")), "pert_itime": "24 h",
                  "distil_id": "x"}).to_csv(folder / "GSE92742_Broad_LINCS_sig_info.txt", sep="\t", index=False)
    path = folder / f"GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n{n_sigs}x{n_genes}.gctx"
    with h5py.File(path, "w") as fh:
        matrix = fh.create_dataset("0/DATA/0/matrix", (n_sigs, n_genes), dtype=np.float32, chunks=(256, n_genes))
        for start in range(0, n_sigs, block):
            stop = min(start + block, n_sigs)
            matrix[start:stop] = rng.standard_normal((stop - start, n_genes), dtype=np.float32)
        fh["0/META/ROW/id"] = entrez.astype(str).astype("S")
        fh["0/META/COL/id"] = sig_ids.astype("S")
    return path


def timed(argv: list[str]) -> dict:
    """Run `argv` under /usr/bin/time -v: wall seconds, peak RSS (GiB), CPU seconds, last stdout line."""
    started, load = time.perf_counter(), os.getloadavg()
    done = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:2])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    field = {k.strip(): v.strip() for k, v in re.findall(r"^\s*([^:\n]+):\s*(.+)$", done.stderr, re.M)}
    cpu = float(field["User time (seconds)"]) + float(field["System time (seconds)"])
    return {"wall_s": round(wall, 1), "peak_rss_gib": round(int(field["Maximum resident set size (kbytes)"]) / 2**20, 2),
            "cpu_s": round(cpu, 1), "load_before": [round(v, 2) for v in load],
            "load_after": [round(v, 2) for v in os.getloadavg()], "summary": done.stdout.strip().splitlines()[-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=800_000)
    p.add_argument("--genes", type=int, default=110_983)
    p.add_argument("--bulk", choices=("plate", "level5"), default="plate")
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench-prepare-full"))
    p.add_argument("--keep", action="store_true", help="keep the generated file and the output")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    from bench.data.loaders import load_bulk
    from layouts import scperturb_sciplex3_full

    plate = bulk = SHARED / "l1000" / "test_l1000.gct"
    args.dir.mkdir(parents=True, exist_ok=True)
    sc, out = args.dir / "SrivatsanTrapnell2020_sciplex3_full.h5ad", args.dir / "prepared"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    report: dict = {"machine": {"cores": os.cpu_count(), "memory_gib": round(memory, 1)}}
    try:
        load, started = os.getloadavg(), time.perf_counter()
        shape = scperturb_sciplex3_full(sc, list(load_bulk(plate).var_names), drug_names(), n_cells=args.cells, n_genes=args.genes)
        report["generate"] = {**shape, "wall_s": round(time.perf_counter() - started, 1), "file_gib": round(sc.stat().st_size / 2**30, 2),
                              "load_before": [round(v, 2) for v in load], "load_after": [round(v, 2) for v in os.getloadavg()]}
        if args.bulk == "level5":
            started = time.perf_counter()
            bulk = level5_gctx(args.dir / "level5", plate)
            report["generate_level5"] = {"wall_s": round(time.perf_counter() - started, 1), "file_gib": round(bulk.stat().st_size / 2**30, 2)}
        print(json.dumps(report, indent=2), flush=True)
        smiles = [a for t in ("trapnell_drugs_smiles.csv", "lincs_drugs_smiles.csv") for a in ("--smiles", str(SHARED / "drugs" / t))]
        report["prepare"] = timed(["bench", "prepare", "--sc", str(sc), "--bulk", str(bulk), "--out", str(out), *smiles])
        with h5py.File(out / "sc.h5ad", "r") as fh:
            report["prepare"]["out"] = {"gib": round((out / "sc.h5ad").stat().st_size / 2**30, 2), "shape": fh["X"].attrs["shape"].tolist(),
                                        "nnz": int(fh["X/indptr"][-1]), "de_lists": len(fh["uns/rank_genes_groups_cov"])}
        report["check"] = timed(["bench", "check", "--sc", str(out / "sc.h5ad"), "--bulk", str(out / "bulk.h5ad")])
        print(json.dumps(report, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
