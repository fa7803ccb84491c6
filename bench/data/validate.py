"""Checks on loaded data sets: each failure is one line naming the file and what was expected."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from bench.data.counts import duplicated_symbols, looks_like_counts, stored_values
from bench.errors import BenchError, closest
from bench.schema import CELL_TYPE, DRUG

# anndata's warnings about what these checks report themselves (duplicated names) or fix (str index)
CHECKED_HERE = (r"(Variable|Observation) names are not unique", r"Transforming to str index")


@contextlib.contextmanager
def checks_reported_here() -> Iterator[None]:
    """Silence third-party warnings about problems bench reports in its own one-line errors."""
    with warnings.catch_warnings():
        for message in CHECKED_HERE:
            warnings.filterwarnings("ignore", message=message)
        yield


def unreadable(path: Path | str, kind: str, exc: BaseException, where: str | None = None) -> BenchError:
    """A one-line error for an HDF5 file h5py or anndata cannot read (`where`: the element that
    failed), without their internals."""
    text = str(exc).lower()
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if isinstance(exc, MemoryError):
        why = "not enough memory to read it"
    elif "truncated" in text:
        why = "truncated: the file is shorter than its header says; copy or download it again"
    elif "signature" in text:
        why = "not an HDF5 file"
    elif where and first:
        why = f"its {where} cannot be read: {first[:160]}"
    else:
        why = "corrupt HDF5, or an encoding this reader does not know"
    return BenchError(f"{path}: not a readable {kind} file ({why})")


def require_columns(obs: pd.DataFrame, columns: dict[str, str], source: str) -> None:
    """Every option -> column named must exist in obs; suggest the closest name otherwise."""
    for option, column in columns.items():
        if column not in obs.columns:
            raise BenchError(f"{source}: obs has no column '{column}' ({option}){closest(column, obs.columns)}")


def check_expression(adata: ad.AnnData, source: str, log_normalised: bool) -> None:
    """Finite values; for single-cell data also non-negative and not raw counts."""
    values = stored_values(adata.X)
    if not np.isfinite(values.sum(dtype=np.float64)):  # NaN and inf propagate; no per-value mask in memory
        raise BenchError(f"{source}: expression holds NaN or infinite values")
    if not log_normalised or values.size == 0:
        return
    if values.min() < 0:
        raise BenchError(f"{source}: negative expression values (min {values.min():.3g}); expected log-normalised data (log1p of normalised counts)")
    if looks_like_counts(adata.X):
        raise BenchError(f"{source}: values look like raw counts (all integers, max {values.max():.0f}) and --normalize none "
                         "was given; drop it to normalise them (per cell to 10,000, then log1p), or log-normalise first")


def check_genes(adata: ad.AnnData, source: str) -> None:
    dup = duplicated_symbols(adata.var_names)
    if dup:
        raise BenchError(f"{source}: {len(dup)} duplicated gene symbol(s), e.g. {', '.join(map(str, dup[:3]))}; make them unique or aggregate them")


def check_controls(adata: ad.AnnData, source: str, control: str, column: str | None = None) -> None:
    """Every cell type must have control cells: predictions start from them. `column`: the obs
    column the drug labels were read from, named in the error with a column that holds a
    control-like label."""
    obs = adata.obs
    drugs = obs[DRUG].astype(str)
    if not (drugs == control).any():
        where = f" in column '{column}'" if column else ""
        raise BenchError(f"{source}: no control cells (drug label '{control}'{where}{control_hint(obs, column, control)}); "
                         "set the control label with --control or the drug column with --drug-key")
    with_ctrl = set(obs.loc[drugs == control, CELL_TYPE].astype(str))
    missing = sorted(set(obs[CELL_TYPE].astype(str)) - with_ctrl)
    if missing:
        raise BenchError(f"{source}: no control cells for cell type(s) {', '.join(missing)}")


CONTROL_LIKE = ("control", "ctrl", "dmso", "vehicle", "non-targeting", "untreated")  # compared in lower case


def control_hint(obs: pd.DataFrame, column: str | None, control: str) -> str:
    """'; column X holds 'ctrl'' for the first text column (the drug column first) holding a
    control-like label, or ''."""
    names = [column] if column in obs.columns else []
    names += [c for c in obs.columns if c not in (column, DRUG, CELL_TYPE)
              and (obs[c].dtype.kind in "OSU" or isinstance(obs[c].dtype, pd.CategoricalDtype))]
    for name in names:
        values = pd.unique(obs[name].astype(str))
        found = [v for v in values if v.strip().lower() in (*CONTROL_LIKE, control.lower())]
        if found:
            return f"; column '{name}' holds '{found[0]}'"
    return ""


def check_shared_genes(sc: ad.AnnData, bulk: ad.AnnData, sc_source: str, bulk_source: str) -> int:
    shared = len(set(sc.var_names) & set(bulk.var_names))
    if shared == 0:
        raise BenchError(f"{bulk_source}: no gene symbol in common with {sc_source}; genes are aligned by symbol")
    return shared
