"""Doses as files write them: units, the micro sign in every encoding, combinations, missing doses,
all converted to nM; and single-cell files with string doses or no dose column, read end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.data.doses import NM_PER_UNIT, ONE_DOSE, parse_dose, parse_doses, written_with_unit
from bench.data.loaders import ObsKeys, load_single_cell
from bench.errors import BenchError
from bench.schema import CONTROL, DOSE, DRUG


@pytest.mark.parametrize("written, nm", [
    ("10 µM", 10_000.0),  # U+00B5, as UTF-8 files and LINCS write it
    ("10 \u03bcM", 10_000.0),  # Greek mu
    (b"10 \xb5M", 10_000.0),  # the Latin-1 byte of older files
    ("10 \u00c2\u00b5M", 10_000.0),  # UTF-8 micro sign read as Latin-1
    ("10 uM", 10_000.0),
    ("10.0 um", 10_000.0),  # GSE92742 pert_idose
    ("500 nM", 500.0),
    ("1 mM", 1e6),
    ("1e-6 M", 1_000.0),
    ("3 umol/L", 3_000.0),
    ("10\u00a0µM", 10_000.0),  # a no-break space
    (".5 uM", 500.0),
])
def test_written_units_become_nanomolar(written, nm):
    assert parse_dose(written) == pytest.approx((nm,))


def test_plain_numbers_take_the_column_unit():
    assert parse_dose(2.5) == (2.5,)
    assert parse_dose(2.5, NM_PER_UNIT["uM"]) == (2_500.0,)
    assert parse_dose("10", NM_PER_UNIT["mM"]) == (1e7,)
    assert parse_dose(np.float32(0.5), 1_000.0) == (500.0,)
    assert parse_dose("10 nM", NM_PER_UNIT["uM"]) == (10.0,)  # a written unit wins over the column's


def test_combination_doses_keep_one_dose_per_drug():
    assert parse_dose("1+1") == (1.0, 1.0)
    assert parse_dose("0.1+1 µM") == pytest.approx((100.0, 1_000.0))  # a unit written once is everyone's
    assert parse_dose("1 µM + 10 nM") == pytest.approx((1_000.0, 10.0))


@pytest.mark.parametrize("written", [None, np.nan, "", "-666", "nan", "NA"])
def test_missing_doses_are_empty(written):
    assert parse_dose(written) == ()


@pytest.mark.parametrize("written", ["ten µM", "10 µL", "0.1 %", "-1", -1.0, "1++1", "µM"])
def test_what_is_not_a_dose_is_none(written):
    assert parse_dose(written) is None


def test_columns_are_parsed_by_distinct_value():
    codes, table, bad = parse_doses(pd.Series(["1 uM", np.nan, "x", 3.0, "1 uM", "1+1"]), 1.0)
    assert [table[c] for c in codes] == [(1_000.0,), (), (), (3.0,), (1_000.0,), (1.0, 1.0)]
    assert bad == ["x"] and codes[0] == codes[4]


def test_numbers_join_their_unit_column():
    written = written_with_unit(pd.Series([10.0, np.nan, 3.33]), pd.Series(["um", np.nan, "-666"]))
    assert written[0] == "10.0 um" and pd.isna(written[1]) and written[2] == 3.33


@pytest.fixture
def sc_file(smoke, tmp_path):
    """Write the smoke single-cell set with its dose column rewritten by `change(obs)`."""

    def write(change) -> tuple:
        sc = smoke.sc.copy()
        sc.uns.pop("bench_truth", None)
        sc.obs = sc.obs.rename(columns={DRUG: "condition"})
        change(sc.obs)
        path = tmp_path / "sc.h5ad"
        sc.write_h5ad(path)
        return path, smoke.sc.obs

    return write


def test_string_doses_with_units_load_as_nanomolar(sc_file):
    def micromolar_strings(obs):
        obs[DOSE] = [f"{d / 1000:g} µM" if d else "" for d in obs[DOSE]]

    path, truth = sc_file(micromolar_strings)
    sc = load_single_cell(path)
    np.testing.assert_allclose(sc.obs[DOSE], truth[DOSE])
    assert sc.uns["bench_load"]["dose_column"] == DOSE


def test_dose_unit_converts_plain_numbers(sc_file):
    path, truth = sc_file(lambda obs: obs.__setitem__(DOSE, obs[DOSE] / 1000))
    sc = load_single_cell(path, ObsKeys(dose_unit="uM"))
    np.testing.assert_allclose(sc.obs[DOSE], truth[DOSE])


@pytest.mark.parametrize("how", ["no dose column", "--dose-key none"])
def test_one_dose_per_drug_without_doses(sc_file, how):
    path, truth = sc_file((lambda obs: obs.drop(columns=DOSE, inplace=True)) if how == "no dose column" else (lambda obs: None))
    sc = load_single_cell(path, ObsKeys(dose="none") if how == "--dose-key none" else ObsKeys())
    treated = (sc.obs[DRUG] != CONTROL).to_numpy()
    assert set(sc.obs.loc[treated, DOSE]) == {ONE_DOSE} and set(sc.obs.loc[~treated, DOSE]) == {0.0}
    assert sc.uns["bench_load"]["dose_column"] == ""


def test_treated_rows_without_a_dose_are_named(sc_file):
    def blank_one_drug(obs):
        obs[DOSE] = np.where(obs["condition"] == "D001", "", obs[DOSE].astype(str))

    path, _ = sc_file(blank_one_drug)
    with pytest.raises(BenchError, match=r"dose column 'dose' is empty for \d+ treated row\(s\) of drug\(s\) D001"):
        load_single_cell(path)


def test_control_rows_may_hold_anything(sc_file):
    def vehicle_percent(obs):
        obs[DOSE] = np.where(obs["condition"] == CONTROL, "0.1 %", obs[DOSE].astype(str))

    path, truth = sc_file(vehicle_percent)
    np.testing.assert_allclose(load_single_cell(path).obs[DOSE], truth[DOSE])


def test_a_condition_column_with_string_doses_runs_end_to_end_without_bulk(sc_file, tmp_path):
    path, _ = sc_file(lambda obs: obs.__setitem__(DOSE, [f"{d:g} nM" for d in obs[DOSE]]))
    out = tmp_path / "run"
    floors, bulk_based = ["control_mean", "train_mean", "random"], ["knn", "cVAE", "CPA_transfer", "BERT_whole"]
    assert main(["run", "--sc", str(path), "--predictors", ",".join(floors + bulk_based), "--out", str(out)]) == 0
    results = {name: json.loads((out / "runs" / name / "seed0" / "result.json").read_text()) for name in floors + bulk_based}
    assert all(results[name]["status"] == "ok" for name in floors)
    for name in bulk_based:  # no bulk set: skipped with the reason, in the results and the leaderboard
        assert (results[name]["status"], results[name]["error"]) == ("skipped", "needs a bulk data set (--bulk)")
        assert f"- {name} (seed 0): skipped: needs a bulk data set (--bulk)" in (out / "leaderboard.md").read_text()
