"""`bench score`: score any tool's predicted cells against true cells with every registered metric.

Both files are read as `bench run --sc` reads one (bench/data/loaders.py). With `--pert-col` they
are a pair in cell-eval's layout: one perturbation column with a control label, one cell type and
one dose unless their columns are named. A file saved by `bench run --save-predictions` is scored
with a control floor of as many controls as its run handed the predictor: that number comes from the
truth (its conditions that are not scored) or `--input-size`, never from the scored file, which is
read only to warn when it says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import anndata as ad
import numpy as np

from bench.data.columns import NO_DOSE, ObsKeys
from bench.data.hdf5 import read_h5ad_checked
from bench.data.loaders import LOAD_UNS_KEY, canonical, de_lists_from_uns, load_single_cell, resolve_expression
from bench.data.validate import check_controls, check_expression, check_genes, checks_reported_here
from bench.errors import BenchError
from bench.evaluation import Evaluator, input_size_of
from bench.headline import headline, headline_vs_control, interval
from bench.io import atomic_write_csv, check_writable_file
from bench.predictions import UNS_KEY as PREDICTIONS_UNS_KEY
from bench.predictions import provenance
from bench.record import ACTIVE, NORM_SUFFIX, REPLICATE_SUFFIX, replicate_column
from bench.schema import CELL_TYPE, CONTROL, DE_UNS_KEY, DOSE, DRUG, Condition, conditions_of, same_dose
from metrics import get_metrics
from metrics.calibration import BASE, FLOOR, calibrated
from predictors.base import dense

PAIR_CONTROL = "non-targeting"  # cell-eval's default control label
PAIR_CELL_TYPE = "all"  # the one cell type of a pair read with --pert-col and no --cell-type-key
PAIR_CELL_COLUMN = "bench_cell_type"  # the obs column that carries it while reading


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score predicted cells (h5ad) against true cells (h5ad)")
    p.add_argument("--truth", type=Path, required=True, help="true cells, controls included (h5ad)")
    p.add_argument("--pred", type=Path, required=True, help="predicted cells per test condition (h5ad)")
    p.add_argument("--out", type=Path, default=None, help="write one row per condition here (CSV)")
    p.add_argument("--drug-key", default=None, help="obs column of the drug (default: detected as bench run does: drug, "
                                                    "else condition, pert_iname or perturbation)")
    p.add_argument("--cell-type-key", default=None, help="obs column of the cell type (default: cell_type, else cell_line "
                                                         "or cell_id; with --pert-col: one cell type)")
    p.add_argument("--dose-key", default=None, help="obs column of the dose (default: dose, pert_dose, dose_val or dose_value; "
                                                    "with --pert-col: one dose); none: one dose per drug")
    p.add_argument("--pert-col", default=None, metavar="COLUMN",
                   help="read the pair in cell-eval's layout: COLUMN (e.g. target_gene or drug) holds each cell's "
                        "perturbation in both files, controls included; no cell-type or dose column needed")
    p.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="controls per cell type that form the floor (and cap each predicted set): as many as the predictor "
                        "was handed (default: for a file saved by bench run, computed from the truth's conditions that are "
                        "not scored, as the run sized them; else every control)")
    p.add_argument("--training-drugs", default=None, metavar="D1,D2,...",
                   help="the drugs the predictor was trained on: their conditions in the truth form the mean baseline (the "
                        "headline's 0) and size the controls a saved run handed over (default: every treated drug of the "
                        "truth that is not scored); a file saved by bench run names its run's, to pass here")
    p.add_argument("--control", "--control-pert", dest="control", default=None, metavar="LABEL",
                   help=f"label of control cells (default: {CONTROL}, DMSO/vehicle detected; with --pert-col: "
                        f"{PAIR_CONTROL}, cell-eval's)")
    p.set_defaults(func=run)


def obs_keys(args: argparse.Namespace) -> tuple[ObsKeys, bool]:
    """The columns and control label to read both files with, and whether they have one cell type
    (a cell-eval pair without --cell-type-key)."""
    if args.pert_col is None:
        return ObsKeys(args.drug_key, args.cell_type_key, args.dose_key, args.control or CONTROL), False
    if args.drug_key is not None:
        raise BenchError(f"--pert-col {args.pert_col} and --drug-key {args.drug_key} both name the perturbation column: give one")
    one = args.cell_type_key is None
    keys = ObsKeys(args.pert_col, PAIR_CELL_COLUMN if one else args.cell_type_key, args.dose_key or NO_DOSE,
                   args.control or PAIR_CONTROL)
    return keys, one


def read_cells(path: Path, keys: ObsKeys, one_cell_type: bool) -> tuple[ad.AnnData, dict]:
    """A file read with bench's loader (canonical columns, raw counts normalised, merged duplicate
    genes), one cell type added first when asked; returns it and the file's own uns."""
    with checks_reported_here():
        raw = read_h5ad_checked(path)
        if one_cell_type:
            raw.obs[PAIR_CELL_COLUMN] = PAIR_CELL_TYPE
        adata = resolve_expression(canonical(raw, keys, str(path)))
    check_genes(adata, str(path))
    return adata, raw.uns


def read_truth(path: Path, keys: ObsKeys, one_cell_type: bool) -> ad.AnnData:
    """The true cells exactly as `bench run --sc` reads them (checked: log-normalised, controls for
    every cell type, CPA DE lists kept)."""
    if not one_cell_type:
        return load_single_cell(path, keys)
    truth, _ = read_cells(path, keys, one_cell_type)
    check_expression(truth, str(path), log_normalised=True)
    check_controls(truth, str(path), keys.control, truth.uns[LOAD_UNS_KEY]["drug_column"])
    de = de_lists_from_uns(truth)
    if de:
        truth.uns[DE_UNS_KEY] = de
    return truth


def recorded_input_size(uns: dict) -> int | None:
    """The controls per cell type a saved run's file says its predictor was handed, else None: read
    only to warn when it disagrees with the floor's size, never to choose it."""
    meta = uns.get(PREDICTIONS_UNS_KEY)
    size = meta.get("input_size") if isinstance(meta, dict) else None
    try:
        return int(size) if size is not None else None
    except (TypeError, ValueError):
        return None


def floor_size(args: argparse.Namespace, truth: ad.AnnData, shared: list[Condition], control: str, made: str | None,
               pred_uns: dict) -> int | None:
    """How many controls per cell type form the floor: --input-size, else for a saved run's file the
    truth's own input size (from its conditions that are not scored; None when it has none), else
    None (every control)."""
    if args.input_size is not None and args.input_size < 1:
        raise BenchError(f"--input-size {args.input_size}: expected a positive number of controls per cell type")
    size = args.input_size
    if size is None and made is not None:
        known = training_conditions(args, truth, shared, control)
        size = input_size_of(truth, known, control) if known else None
    said = recorded_input_size(pred_uns) if made is not None else None
    if said is not None and size is not None and said != size:
        print(f"bench score: warning: {args.pred} says its run handed {said} controls per cell type; the floor uses "
              f"{size} ({'--input-size' if args.input_size else 'from the truth'}); give --input-size to choose",
              file=sys.stderr)
    return size


def training_conditions(args: argparse.Namespace, truth: ad.AnnData, shared: list[Condition], control: str) -> list[Condition]:
    """The truth's conditions of --training-drugs (every unscored treated condition by default)."""
    unscored = sorted(set(conditions_of(truth.obs, control=control)) - set(shared))
    if args.training_drugs is None:
        return unscored
    drugs = {d.strip() for d in args.training_drugs.split(",") if d.strip()}
    unknown = sorted(drugs - {c.drug for c in unscored})
    if unknown:
        raise BenchError(f"--training-drugs: {', '.join(unknown[:3])} not among the truth's unscored treated drugs")
    return [c for c in unscored if c.drug in drugs]


def note_training(args: argparse.Namespace, pred_uns: dict, used: list[Condition]) -> None:
    """Warn when a saved run's file names other training drugs than the mean baseline uses (read only
    to warn, never to choose)."""
    meta = pred_uns.get(PREDICTIONS_UNS_KEY)
    said = meta.get("training_drugs") if isinstance(meta, dict) else None
    if said is not None and {str(d) for d in np.asarray(said).ravel()} != {c.drug for c in used}:
        print(f"bench score: warning: {args.pred} says its run trained on {len(np.asarray(said).ravel())} drug(s); the mean "
              f"baseline uses {len({c.drug for c in used})}: give --training-drugs to reproduce the run", file=sys.stderr)


def returned_counts(uns: dict, conditions: list[Condition]) -> dict[Condition, int] | None:
    """How many cells a saved run's predictor returned per condition (before the cap at the input
    size; uns['bench_predictions'] n_pred per conditions), when recorded for every condition, else None."""
    meta = uns.get(PREDICTIONS_UNS_KEY)
    if not isinstance(meta, dict) or "n_pred" not in meta or "conditions" not in meta:
        return None
    given = dict(zip(map(str, np.asarray(meta["conditions"])), np.asarray(meta["n_pred"]).tolist()))
    if any(c.key not in given for c in conditions):
        return None
    return {c: int(given[c.key]) for c in conditions}


class PredictedCells(Mapping[Condition, np.ndarray]):
    """The predicted cells of each scored condition, made dense when asked for: the evaluator keeps
    its own validated copy of each set, so the prediction file is never held dense twice."""

    def __init__(self, pred: ad.AnnData, conditions: list[Condition]):
        self.pred, self.conditions = pred, conditions
        self._known = set(conditions)

    def __getitem__(self, c: Condition) -> np.ndarray:
        if c not in self._known:
            raise KeyError(c)
        obs = self.pred.obs
        rows = np.flatnonzero((obs[CELL_TYPE] == c.cell_type).to_numpy() & (obs[DRUG] == c.drug).to_numpy() & same_dose(obs[DOSE].to_numpy(), c.dose))
        return dense(self.pred.X[rows])

    def __contains__(self, c: object) -> bool:
        return c in self._known

    def __iter__(self) -> Iterator[Condition]:
        return iter(self.conditions)

    def __len__(self) -> int:
        return len(self.conditions)


SHOWN = 8  # conditions named in a warning about conditions on one side only


def run(args: argparse.Namespace) -> int:
    keys, one_cell_type = obs_keys(args)
    control = keys.control
    if args.out is not None:
        check_writable_file(args.out)
    truth = read_truth(args.truth, keys, one_cell_type)
    pred, pred_uns = read_cells(args.pred, keys, one_cell_type)
    missing = [g for g in truth.var_names if g not in set(pred.var_names)]
    extra = [g for g in pred.var_names if g not in set(truth.var_names)]
    if missing or extra:
        raise BenchError(
            f"{args.pred}: genes differ from {args.truth}: {len(missing)} missing (e.g. {', '.join(missing[:3]) or '-'}), "
            f"{len(extra)} extra (e.g. {', '.join(extra[:3]) or '-'})"
        )
    if not pred.var_names.equals(truth.var_names):
        pred = pred[:, truth.var_names].copy()  # reordered once: a view would re-index every gene at each condition's read
    true_conds = set(conditions_of(truth.obs, control=control))
    pred_conds = set(conditions_of(pred.obs, control=control))
    missing_ctrl = sorted({c.cell_type for c in pred_conds} - set(truth.obs.loc[truth.obs[DRUG] == control, CELL_TYPE]))
    if missing_ctrl:
        raise BenchError(f"{args.truth}: no control cells (label '{control}') for cell type(s) {', '.join(missing_ctrl)}")
    for side, only in (("truth", true_conds - pred_conds), ("predictions", pred_conds - true_conds)):
        if only:
            names = [c.key for c in sorted(only)]
            more = f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
            print(f"bench score: warning: {len(only)} condition(s) only in the {side}, not scored: "
                  + ", ".join(names[:SHOWN]) + more, file=sys.stderr)
    shared = sorted(true_conds & pred_conds)
    if not shared:
        raise BenchError(f"{args.pred}: no condition (cell type, drug, dose) in common with {args.truth}")
    made = provenance(pred_uns)
    size = floor_size(args, truth, shared, control, made, pred_uns)
    if made is not None:
        print(f"predictions saved by bench run: {made}")
    print(f"floor: {f'{size} controls per cell type (a seeded subset, as a run hands them over)' if size else 'every control'}")
    training = training_conditions(args, truth, shared, control)
    if made is not None:
        note_training(args, pred_uns, training)
    evaluator = Evaluator(truth, shared, control, subset_controls=size is not None, input_size=size, training=training)
    frame = evaluator.score(PredictedCells(pred, shared), counts=returned_counts(pred_uns, shared) if made is not None else None)
    names = [m.name for m in get_metrics()]
    if args.out is not None:
        columns = [CELL_TYPE, DRUG, DOSE, "n_true", "n_pred", ACTIVE]
        columns += [f"{n}{suffix}" for n in names for suffix in ("", BASE, FLOOR, NORM_SUFFIX, REPLICATE_SUFFIX)]
        atomic_write_csv(args.out, frame[columns])
    low, high = interval(frame)
    print(f"scored {len(shared)} condition(s) of {frame[DRUG].nunique()} drug(s), each at the truth's cell count;")
    known = len(evaluator.training)
    print(f"0 = the mean baseline (train_mean) over the truth's {known} unscored treated condition(s)" if known
          else "0 = no change (the truth holds no unscored treated condition to build the mean baseline from)")
    spread = f"{low:.3f} to {high:.3f}" if np.isfinite([low, high]).all() else "n/a (one drug)"
    print(f"headline {headline(frame):.3f} (95% interval over drugs {spread}); against no change {headline_vs_control(frame):.3f}")
    print("mean over conditions where defined; calibrated: 0 = the mean baseline, 1 = best value; replicate: half the truth, calibrated")
    for name in names:
        rep = calibrated(frame.assign(**{name: frame[replicate_column(name)]}), name)
        print(f"  {name:24s} {frame[name].mean():9.4f}   calibrated {calibrated(frame, name):7.3f}   replicate {rep:7.3f}")
    return 0
