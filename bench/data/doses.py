"""Doses as files write them, converted to nM.

A dose is a number in the column's unit (`--dose-unit`, nM unless the layout says otherwise) or a
string with its own unit as LINCS and GEO write them (`10 µM`, `10.0 um`, `500 nM`, `1 mM`; the µ
as U+00B5 in UTF-8, as the Latin-1 byte 0xB5 of older files, as the Greek mu U+03BC, or as `<b5>`,
R's escape of that Latin-1 byte, which GCTX files written by cmapR carry: `10 <b5>M`). A
combination's dose lists one dose per drug (`1+1`, `0.1+1 µM`; a unit written once applies to
every part). Parsing works on the distinct values of a column, so a million rows cost little.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from bench.schema import dose_text

NM_PER_UNIT = {"M": 1e9, "mM": 1e6, "uM": 1e3, "nM": 1.0}  # the units --dose-unit accepts
_FACTOR = {"m": 1e9, "mm": 1e6, "um": 1e3, "nm": 1.0, "pm": 1e-3}  # written units, lower case, µ as u
_MICRO = ("\u00c2\u00b5", "\u00b5", "\u03bc")  # UTF-8 micro sign read as Latin-1, micro sign, Greek mu
R_MICRO = "<b5>"  # R's escape of the Latin-1 micro byte 0xB5 (cmapR-written GCTX metadata)
MISSING = ("", "nan", "none", "na", "n/a", "-666", "-666.0")
_PART = re.compile(r"^((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)([a-z/]*)$")
SEP = "+"

Dose = tuple[float, ...]  # one dose in nM per drug of the (combination) label
ONE_DOSE = 1.0  # the dose of every treated row when a file gives none: a placeholder, not nM
MAX_NM = 1e9  # 1 M: a larger dose (or inf, or 1e400 read as inf) is a mistake, never a concentration


def text(value: object) -> str:
    """A metadata value as text: bytes are UTF-8, or Latin-1 when they are not (older files); R's
    escape `<b5>` of the Latin-1 micro sign becomes µ."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            assert isinstance(value, bytes)  # the failed decode left it as it was
            value = value.decode("latin-1")
    return str(value).replace(R_MICRO, "\u00b5")


def _unit_factor(unit: str) -> float | None:
    return _FACTOR.get(unit.removesuffix("ol/l"))  # µmol/l is µM


def parse_dose(value: object, nm_per_unit: float = 1.0) -> Dose | None:
    """One written dose as nM per drug: () when it is missing, None when it is not a dose.
    Plain numbers are in the column's unit (`nm_per_unit` nM each)."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ()
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return _plausible((float(value) * nm_per_unit,))
    written = text(value)
    for micro in _MICRO:
        written = written.replace(micro, "u")
    written = written.strip().lower()
    if written in MISSING:
        return ()
    found = [_PART.match(re.sub(r"\s+", "", p)) for p in written.split(SEP)]
    if not all(found):
        return None
    parts = [m for m in found if m is not None]  # all of them (checked above), typed as matches
    factors = [_unit_factor(m.group(2)) if m.group(2) else None for m in parts]
    if any(f is None for f, m in zip(factors, parts) if m.group(2)):
        return None  # a unit we do not know (µL, %, ...)
    shared = factors[-1] if factors[-1] is not None else nm_per_unit  # `1+1 µM`: the last unit is everyone's
    return _plausible(tuple(float(m.group(1)) * (f if f is not None else shared) for m, f in zip(parts, factors)))


def _plausible(dose: Dose) -> Dose | None:
    """`dose` when every part is a finite concentration from 0 to MAX_NM, else None (not a dose)."""
    return dose if all(math.isfinite(d) and 0 <= d <= MAX_NM for d in dose) else None


def parse_doses(values: pd.Series, nm_per_unit: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Codes and table of the distinct doses of a column (row i's dose is `table[codes[i]]`, () where
    missing) and the distinct written values that are not doses."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    parsed = [parse_dose(u, nm_per_unit) for u in uniques]
    bad = [text(u) for u, p in zip(uniques, parsed) if p is None]
    table = np.empty(len(uniques) + 1, dtype=object)
    table[:] = [p if p is not None else () for p in parsed] + [()]  # the last slot: missing (code -1)
    return codes, table, bad


def written_with_unit(doses: pd.Series, units: pd.Series) -> pd.Series:
    """A numeric dose column joined with its unit column (L1000 `pert_dose` + `pert_dose_unit`) as
    written doses such as `10.0 um`; rows without a unit keep the bare number. Either column may be
    categorical, as chemCPA's LINCS files store every obs column."""
    doses, units = doses.astype(object), units.astype(object)
    numbers = pd.to_numeric(doses, errors="coerce")
    unit = units.map(lambda u: text(u).strip() if pd.notna(u) else "").astype(str)
    both = numbers.notna() & (unit != "") & ~unit.isin(MISSING)
    out = doses.astype(object).copy()
    out[both] = numbers[both].astype(str) + " " + unit[both]
    return out


def describe(dose: Dose) -> str:
    """A dose as nM per drug (`1000+1000`; in full where six digits would merge two doses), for
    obs `dose_parts`, messages and summaries."""
    return SEP.join(dose_text(d) for d in dose)
