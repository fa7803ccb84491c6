"""Full-shape measurement of `bench prepare` (not a test: pytest does not collect this file).

Writes a file in scPerturb's sci-Plex3 layout at the published shape (tests/layouts.py,
`scperturb_sciplex3_full`: 800,000 cells x 110,983 genes of raw counts) under /tmp, runs
`bench prepare` on it with the real L1000 plate of ../shared/data as bulk under /usr/bin/time -v,
then `bench check` on the output, and prints wall times, peak resident memory and the machine's
load (other jobs sharing the cores slow it down). The big file is deleted afterwards.

    python tests/bench_prepare_full.py [--cells 800000] [--genes 110983] [--dir /tmp/bench-prepare-full] [--keep]
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
import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
N_DRUGS = 188


def drug_names() -> list[str]:
    """188 sci-Plex3 names: the vendor spellings of tests/layouts.py, then chemCPA's table's names."""
    from layouts import ALIAS_ONLY, NOT_ON_PLATE, PLATE_DRUGS

    table = pd.read_csv(SHARED / "drugs" / "trapnell_drugs_smiles.csv", header=None, dtype=str)[0].str.strip()
    names = list(dict.fromkeys(PLATE_DRUGS + ALIAS_ONLY + NOT_ON_PLATE + [n for n in table if n.casefold() not in ("control", "dmso")]))
    return names[:N_DRUGS]


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
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench-prepare-full"))
    p.add_argument("--keep", action="store_true", help="keep the generated file and the output")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    from bench.data.loaders import load_bulk
    from layouts import scperturb_sciplex3_full

    plate = SHARED / "l1000" / "test_l1000.gct"
    args.dir.mkdir(parents=True, exist_ok=True)
    sc, out = args.dir / "SrivatsanTrapnell2020_sciplex3_full.h5ad", args.dir / "prepared"
    report: dict = {"machine": {"cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}}
    try:
        load, started = os.getloadavg(), time.perf_counter()
        shape = scperturb_sciplex3_full(sc, list(load_bulk(plate).var_names), drug_names(), n_cells=args.cells, n_genes=args.genes)
        report["generate"] = {**shape, "wall_s": round(time.perf_counter() - started, 1), "file_gib": round(sc.stat().st_size / 2**30, 2),
                              "load_before": [round(v, 2) for v in load], "load_after": [round(v, 2) for v in os.getloadavg()]}
        print(json.dumps(report, indent=2), flush=True)
        smiles = [a for t in ("trapnell_drugs_smiles.csv", "lincs_drugs_smiles.csv") for a in ("--smiles", str(SHARED / "drugs" / t))]
        report["prepare"] = timed(["bench", "prepare", "--sc", str(sc), "--bulk", str(plate), "--out", str(out), *smiles])
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
