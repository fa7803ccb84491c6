"""Which obs columns of a file hold the drug, the cell type and the dose, and how they become the
canonical drug / cell_type / dose (nM) columns. Works on obs alone, so a large file's metadata can be
mapped before any of its matrix is read.

Nothing is reinterpreted silently: a row without a drug or cell type label is an error; a CPA
`control` flag that disagrees with the drug label is an error; rows read as controls under another
label than the control label, and two recognised columns of one field that disagree, are said in
notes (uns['bench_load']['notes'], printed by `bench run` and `bench check`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.data.combinations import DOSE_PARTS, treated_conditions
from bench.data.doses import NM_PER_UNIT, parse_doses, written_with_unit
from bench.data.drugs import SMILES, file_smiles
from bench.data.validate import require_columns
from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG

# Column names tried, in order, when no explicit option is given.
DRUG_COLUMNS = ("drug", "condition", "pert_iname", "perturbation")
CELL_COLUMNS = ("cell_type", "cell_line", "cell_id")
DOSE_COLUMNS = ("dose", "pert_dose", "dose_val", "dose_value")
# A dose column's unit column, where the layout keeps the unit apart (scPerturb: dose_value in dose_unit).
UNIT_COLUMNS = {"dose_value": "dose_unit", "dose": "dose_unit", "pert_dose": "pert_dose_unit"}
CONTROL_NAMES = ("control", "ctrl", "DMSO", "dmso", "vehicle", "Vehicle")
# nM per plain number of a dose column: CPA's sci-Plex3 dose_val is the dose in nM / 10,000, L1000's pert_dose is µM.
COLUMN_NM_PER_UNIT: dict[str | None, float] = {"dose_val": 10_000.0, "pert_dose": NM_PER_UNIT["uM"]}
NO_DOSE = "none"  # --dose-key none: ignore any dose column, one dose per drug
FLAG = "control"  # CPA's 0/1 control flag column
MISSING_LABELS = ("", "nan", "none")
SHOWN = 3  # values named in a message


@dataclass(frozen=True)
class ObsKeys:
    """Which obs columns hold the drug, cell type and dose (None: detect; dose 'none': no dose),
    the control label, and the unit of plain dose numbers (None: nM, or the layout's own)."""

    drug: str | None = None
    cell_type: str | None = None
    dose: str | None = None
    control: str = CONTROL
    dose_unit: str | None = None


DEFAULT_KEYS = ObsKeys()  # every column detected, control label 'control'


def _shown(values) -> str:
    values = list(values)
    return ", ".join(repr(str(v)) for v in values[:SHOWN]) + (", ..." if len(values) > SHOWN else "")


def _pick(obs: pd.DataFrame, given: str | None, candidates: tuple[str, ...], option: str, source: str) -> str:
    if given is not None:
        require_columns(obs, {option: given}, source)
        return given
    for c in candidates:
        if c in obs.columns:
            return c
    raise BenchError(f"{source}: no {option.removeprefix('--').replace('-key', '').replace('-', ' ')} column found "
                     f"(tried {', '.join(candidates)}); name it with {option}")


def _dose_column(obs: pd.DataFrame, given: str | None, source: str) -> str | None:
    """The dose column: the one named, else the first of DOSE_COLUMNS; None for one dose per drug
    (`--dose-key none`, or no dose column at all)."""
    if given is not None and given.lower() == NO_DOSE:
        return None
    if given is None and not any(c in obs.columns for c in DOSE_COLUMNS):
        return None
    return _pick(obs, given, DOSE_COLUMNS, "--dose-key", source)


def labels(obs: pd.DataFrame, column: str, what: str, source: str) -> np.ndarray:
    """A label column as strings; a row without a label (NaN, empty) is a one-line error, never a
    drug or cell type named 'nan'."""
    values = obs[column]
    text = values.astype(object).where(values.notna(), "").astype(str)
    missing = text.str.strip().str.lower().isin(MISSING_LABELS).to_numpy()
    if missing.any():
        raise BenchError(f"{source}: {what} column '{column}' is empty for {int(missing.sum()):,} row(s) (e.g. row "
                         f"{str(obs.index[np.argmax(missing)])!r}): expected a {what} on every row (the control label on controls)")
    return text.to_numpy()


def control_flag(obs: pd.DataFrame, drug_col: str) -> np.ndarray | None:
    """CPA's `control` column as a boolean mask when it is a 0/1 flag, else None (not read)."""
    if FLAG not in obs.columns or drug_col == FLAG:
        return None
    values = pd.to_numeric(obs[FLAG].astype(object), errors="coerce")
    if values.isna().any() or not values.isin([0, 1]).all():
        return None
    return (values == 1).to_numpy()


def control_rows(obs: pd.DataFrame, written: np.ndarray, drug_col: str, keys: ObsKeys, source: str) -> np.ndarray:
    """Control rows: the control label, or CPA's `control` flag where it agrees with the label (a
    flag on a drug's rows, or a control-like label the flag leaves unflagged, is an error); with
    neither, a vehicle name (CONTROL_NAMES)."""
    like = np.isin(written, [keys.control, *CONTROL_NAMES])
    flag = control_flag(obs, drug_col)
    if flag is not None and (flag & ~like).any():
        rows = flag & ~like
        raise BenchError(f"{source}: column '{FLAG}' flags {int(rows.sum()):,} row(s) as controls that column "
                         f"'{drug_col}' labels as drug(s) {_shown(sorted(set(written[rows])))}; expected the flag on "
                         f"control rows only (label '{keys.control}'); fix one of the two columns")
    if flag is not None and flag.any() and (like & ~flag).any():
        rows = like & ~flag
        raise BenchError(f"{source}: column '{drug_col}' labels {int(rows.sum()):,} row(s) {_shown(sorted(set(written[rows])))} "
                         f"but column '{FLAG}' does not flag them as controls (0); expected the two columns to agree")
    is_ctrl = written == keys.control
    if flag is not None:
        is_ctrl |= flag
    return is_ctrl if is_ctrl.any() else np.isin(written, CONTROL_NAMES)


def _written_doses(obs: pd.DataFrame, column: str, rows: np.ndarray, keys: ObsKeys) -> tuple[pd.Series, float]:
    """A dose column's treated values as written (joined with their unit column unless --dose-unit
    says the unit) and nM per plain number."""
    nm_per_unit = NM_PER_UNIT[keys.dose_unit] if keys.dose_unit else COLUMN_NM_PER_UNIT.get(column, 1.0)
    written = obs.loc[rows, column].astype(object)
    unit = UNIT_COLUMNS.get(column)
    if keys.dose_unit is None and unit in obs.columns:
        written = written_with_unit(written, obs.loc[rows, unit].astype(object))
    return written, nm_per_unit


def _doses(obs: pd.DataFrame, drug: np.ndarray, treated: np.ndarray, column: str | None, keys: ObsKeys,
           source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Drug label, dose (nM) and doses per drug of the treated rows, and nM per plain number. A unit
    column beside the dose column (UNIT_COLUMNS) gives each row's unit unless --dose-unit is set."""
    nm_per_unit = 1.0
    codes, table = np.full(int(treated.sum()), -1), np.array([()], dtype=object)
    if column is not None:
        written, nm_per_unit = _written_doses(obs, column, treated, keys)
        codes, table, bad = parse_doses(written, nm_per_unit)
        if bad:
            raise BenchError(f"{source}: dose column '{column}' holds {_shown(bad)}: expected a number (in --dose-unit, "
                             "default nM; finite, at most 1 M) or a number with a unit (M, mM, uM/µM, nM), one per drug "
                             "for a combination (1+1)")
    vehicles = {keys.control, *CONTROL_NAMES}
    label, total, parts = treated_conditions(drug[treated], codes, table, column is not None, vehicles,
                                             f"{source}: dose column '{column}'")
    return label, total, parts, nm_per_unit


def _totals(obs: pd.DataFrame, column: str, rows: np.ndarray, keys: ObsKeys) -> np.ndarray:
    """Each row's total dose in nM as `column` gives it (NaN where missing or not a dose)."""
    written, nm_per_unit = _written_doses(obs, column, rows, keys)
    codes, table, _ = parse_doses(written, nm_per_unit)
    per_value = np.array([sum(d) if d else np.nan for d in table], dtype=float)
    return per_value[codes]


def _disagreement(obs: pd.DataFrame, chosen: str, candidates: tuple[str, ...], field: str, option: str,
                  values) -> str | None:
    """A note when another recognised column of the same field disagrees with the one read: which
    is read and why. `values(column)` gives the comparable values of a column (NaN: not compared)."""
    ours = values(chosen)
    for other in candidates:
        if other == chosen or other not in obs.columns:
            continue
        theirs = values(other)
        if ours.dtype.kind == "f":
            both = ~(np.isnan(ours) | np.isnan(theirs))
            differ = both & ~np.isclose(ours, theirs, rtol=1e-6, atol=0.0)
        else:
            differ = ours != theirs
        if differ.any():
            i = int(np.argmax(differ))
            a, b = (f"{v[i]:g}" if v.dtype.kind == "f" else repr(str(v[i])) for v in (ours, theirs))
            return (f"{field} columns '{chosen}' and '{other}' disagree on {int(differ.sum()):,} row(s) (e.g. {a} "
                    f"vs {b}); '{chosen}' is read, the first of {', '.join(candidates)} present; name "
                    f"another with {option}")
    return None


def canonical_obs(obs: pd.DataFrame, keys: ObsKeys, source: str) -> tuple[pd.DataFrame, dict]:
    """A copy of `obs` with canonical drug / cell_type / dose (nM) columns added, and how they were
    read (columns, nM per plain number, the unit column, notes) for uns['bench_load']."""
    obs = obs.copy()
    drug_col = _pick(obs, keys.drug, DRUG_COLUMNS, "--drug-key", source)
    cell_col = _pick(obs, keys.cell_type, CELL_COLUMNS, "--cell-type-key", source)
    dose_col = _dose_column(obs, keys.dose, source)
    written = labels(obs, drug_col, "drug", source)
    cells = labels(obs, cell_col, "cell type", source)
    is_ctrl = control_rows(obs, written, drug_col, keys, source)
    label, total, parts, nm_per_unit = _doses(obs, written, ~is_ctrl, dose_col, keys, source)
    real = label != ""  # not a combination of vehicles only
    rows = np.flatnonzero(~is_ctrl)[real]
    drug, dose = np.full(len(written), keys.control, dtype=object), np.zeros(len(written))
    drug[rows], dose[rows] = label[real], total[real]
    notes = _notes(obs, written, drug, drug_col, dose_col, keys)
    obs[DRUG] = pd.Categorical(drug)
    obs[CELL_TYPE] = pd.Categorical(cells)
    obs[DOSE] = dose
    carried = file_smiles(obs)  # chemCPA's sci-Plex3 writes SMILES, its LINCS canonical_smiles
    if carried is not None:
        obs[SMILES] = pd.Categorical(carried.where(drug != keys.control))
    if (parts != "").any():
        obs[DOSE_PARTS] = ""
        obs.iloc[rows, obs.columns.get_loc(DOSE_PARTS)] = parts[real]
    unit_col = UNIT_COLUMNS.get(dose_col or "", "") if keys.dose_unit is None else ""
    info = {"drug_column": drug_col, "dose_column": dose_col or "", "nm_per_unit": nm_per_unit,
            "dose_unit_column": unit_col if unit_col in obs.columns else "", "notes": notes}
    if unit_col == "dose_unit" and unit_col in obs.columns:  # read: keep it, but not beside the nM `dose`
        obs = obs.rename(columns={unit_col: f"published_{unit_col}"})
    return obs, info


def _notes(obs: pd.DataFrame, written: np.ndarray, drug: np.ndarray, drug_col: str, dose_col: str | None,
           keys: ObsKeys) -> list[str]:
    """What reading chose that the file did not say outright: controls under another label, and
    recognised columns of one field that disagree."""
    notes: list[str | None] = []
    renamed = sorted(set(written[drug == keys.control]) - {keys.control})
    if renamed:
        flagged = f" (flagged 1 in column '{FLAG}')" if control_flag(obs, drug_col) is not None else ""
        notes.append(f"rows labelled {_shown(renamed)} in column '{drug_col}'{flagged} are read as controls (label "
                     f"'{keys.control}'); --control names the control label")
    if keys.drug is None:
        vehicles = [keys.control, *CONTROL_NAMES]

        def drug_values(column: str) -> np.ndarray:
            text = obs[column].astype(object).where(obs[column].notna(), "").astype(str).to_numpy()
            return np.where(np.isin(text, vehicles), keys.control, text)

        notes.append(_disagreement(obs, drug_col, DRUG_COLUMNS, "drug", "--drug-key", drug_values))
    if keys.dose is None and dose_col is not None:
        treated = (drug != keys.control)
        notes.append(_disagreement(obs, dose_col, DOSE_COLUMNS, "dose (nM)", "--dose-key",
                                   lambda column: _totals(obs, column, treated, keys)))
    return [n for n in notes if n]
