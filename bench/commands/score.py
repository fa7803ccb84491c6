"""`bench score`: score any tool's predicted cells against true cells with every registered metric."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.errors import BenchError, closest
from bench.evaluation import Evaluator, calibrated
from bench.headline import headline, interval
from bench.io import atomic_write_csv
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, conditions_of, same_dose
from metrics import get_metrics
from predictors.base import dense


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score predicted cells (h5ad) against true cells (h5ad)")
    p.add_argument("--truth", type=Path, required=True, help="true cells, controls included (h5ad)")
    p.add_argument("--pred", type=Path, required=True, help="predicted cells per test condition (h5ad)")
    p.add_argument("--out", type=Path, default=None, help="write one row per condition here (CSV)")
    p.add_argument("--drug-key", default=DRUG, help=f"obs column of the drug (default: {DRUG})")
    p.add_argument("--cell-type-key", default=CELL_TYPE, help=f"obs column of the cell type (default: {CELL_TYPE})")
    p.add_argument("--dose-key", default=DOSE, help=f"obs column of the dose (default: {DOSE})")
    p.add_argument("--control", default=CONTROL, help=f"drug label of control cells (default: {CONTROL})")
    p.set_defaults(func=run)


def read_canonical(path: Path, keys: dict[str, str]) -> ad.AnnData:
    """Read an h5ad and rename its condition columns to the canonical drug/cell_type/dose."""
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    try:
        adata = ad.read_h5ad(path)
    except Exception as exc:  # noqa: BLE001  h5py/anndata raise many types for a bad file
        raise BenchError(f"{path}: not a readable h5ad file ({type(exc).__name__})") from None
    for canonical, column in keys.items():
        if column not in adata.obs:
            raise BenchError(f"{path}: obs has no column '{column}'{closest(column, adata.obs.columns)}")
    obs = pd.DataFrame({canonical: adata.obs[column].to_numpy() for canonical, column in keys.items()}, index=adata.obs_names)
    obs[DRUG] = obs[DRUG].astype(str)
    obs[CELL_TYPE] = obs[CELL_TYPE].astype(str)
    try:
        obs[DOSE] = obs[DOSE].astype(float)
    except ValueError:
        raise BenchError(f"{path}: dose column '{keys[DOSE]}' is not numeric") from None
    return ad.AnnData(adata.X, obs=obs, var=pd.DataFrame(index=adata.var_names.astype(str)))


def run(args: argparse.Namespace) -> int:
    keys = {DRUG: args.drug_key, CELL_TYPE: args.cell_type_key, DOSE: args.dose_key}
    truth, pred = read_canonical(args.truth, keys), read_canonical(args.pred, keys)
    missing = [g for g in truth.var_names if g not in set(pred.var_names)]
    extra = [g for g in pred.var_names if g not in set(truth.var_names)]
    if missing or extra:
        raise BenchError(
            f"{args.pred}: genes differ from {args.truth}: {len(missing)} missing (e.g. {', '.join(missing[:3]) or '-'}), "
            f"{len(extra)} extra (e.g. {', '.join(extra[:3]) or '-'})"
        )
    pred = pred[:, truth.var_names]
    true_conds = set(conditions_of(truth.obs, control=args.control))
    pred_conds = set(conditions_of(pred.obs, control=args.control))
    missing_ctrl = sorted({c.cell_type for c in pred_conds} - set(truth.obs.loc[truth.obs[DRUG] == args.control, CELL_TYPE]))
    if missing_ctrl:
        raise BenchError(f"{args.truth}: no control cells (label '{args.control}') for cell type(s) {', '.join(missing_ctrl)}")
    for side, only in (("truth", true_conds - pred_conds), ("predictions", pred_conds - true_conds)):
        if only:
            print(f"bench score: warning: {len(only)} condition(s) only in the {side}, not scored: "
                  + ", ".join(c.key for c in sorted(only)), file=sys.stderr)
    shared = sorted(true_conds & pred_conds)
    if not shared:
        raise BenchError(f"{args.pred}: no condition (cell type, drug, dose) in common with {args.truth}")
    evaluator = Evaluator(truth, shared, args.control, subset_controls=False)
    obs = pred.obs
    predictions = {}
    for c in shared:
        rows = np.flatnonzero((obs[CELL_TYPE] == c.cell_type).to_numpy() & (obs[DRUG] == c.drug).to_numpy() & same_dose(obs[DOSE].to_numpy(), c.dose))
        predictions[c] = dense(pred.X[rows])
    frame = evaluator.score(predictions)
    names = [m.name for m in get_metrics()]
    if args.out is not None:
        columns = [CELL_TYPE, DRUG, DOSE, "n_true", "n_pred"]
        columns += [f"{n}{suffix}" for n in names for suffix in ("", "_floor", "_norm", "_replicate")]
        atomic_write_csv(args.out, frame[columns])
    low, high = interval(frame)
    print(f"scored {len(shared)} condition(s) of {frame[DRUG].nunique()} drug(s), each at the truth's cell count;")
    print(f"headline {headline(frame):.3f} (95% interval over drugs {low:.3f} to {high:.3f})")
    print("mean over conditions; calibrated: 0 = the real controls, 1 = best value; replicate: half the truth, calibrated")
    for name in names:
        rep = calibrated(frame.assign(**{name: frame[f"{name}_replicate"]}), name)
        print(f"  {name:24s} {frame[name].mean():9.4f}   calibrated {calibrated(frame, name):7.3f}   replicate {rep:7.3f}")
    return 0
