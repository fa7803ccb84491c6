"""Generator presets: `easy` at structure_weight 0 is the model the published leaderboard was
computed on, bit for bit; `realistic` has the sci-Plex3 and L1000 statistics of the presets table
in docs/data.md, each within the bounds stated there, and each of its knobs does what it says."""

from __future__ import annotations

import hashlib
import json

import anndata as ad
import numpy as np
import pytest

from bench.cli import main
from bench.data import load_default
from bench.data.synthetic import default_preset, generate
from bench.data.synthetic_model import SC_DOSES, expected_shift, responder_fraction, simulate_cells
from bench.data.synthetic_realistic import KNOBS, SHAPES, STANDARD_DOSE, bulk_effects
from bench.data.synthetic_stats import bulk_doses_per_pair, cells_per_condition, summary, zero_fraction
from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition

# Hashes of X, gene names, cell names and the cell_type/drug/dose columns of both sets, computed
# with the generator as it was before presets existed (the code of the published leaderboard) and
# before drugs had molecules: the easy preset at structure_weight 0.
EASY_FINGERPRINTS = {
    ("smoke", 0): ("2a6b222fb818c906", "079b60c222290384"),
    ("smoke", 3): ("1fa7dafce6307db4", "6afe82df26fd5641"),
    ("default", 0): ("0169168c7560e17c", "85c371629f0c7bbf"),
}

# docs/data.md, "Generated data: presets": the realistic preset's statistics at the default size.
REALISTIC_BOUNDS = {
    "zero_fraction": (0.75, 0.95),  # 400 genes at ~240 UMIs per cell: fewer zeros than a 2,000-gene matrix
    "cells_per_condition_cv": (0.7, 1.5),
    "conditions_under_5_cells": (0.02, 0.35),
    "controls_over_median_condition": (20.0, 100.0),
    "inert_fraction": (0.24, 0.5),  # 40 drugs: seeds 0-3 give 0.25-0.48; easy 0.23
    "dose_shape_changed": (0.15, 0.6),
    "bulk_replicate_cc_q75_median": (0.0, 0.2),
    "bulk_replicate_cc_q75_over_0.2": (0.15, 0.55),
    "bulk_plate_variance_share": (0.15, 0.6),
    "bulk_sc_agreement_median": (0.05, 0.35),
    "bulk_visible_agreement_median": (0.4, 0.85),
    "bulk_pairs_with_1_or_2_doses": (0.75, 0.95),
    "bulk_sc_pair_coverage": (0.4, 0.8),
}


def _fingerprint(adata: ad.AnnData) -> str:
    h = hashlib.sha256()
    x = adata.X
    for part in (x.indptr, x.indices, x.data) if hasattr(x, "indptr") else (x,):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update("\0".join(adata.var_names).encode())
    h.update("\0".join(adata.obs_names).encode())
    for col in (CELL_TYPE, DRUG, DOSE):
        h.update(col.encode())
        h.update("\0".join(map(str, adata.obs[col].to_numpy())).encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def realistic():
    return generate("default", 0, "realistic")


@pytest.fixture(scope="module")
def realistic_stats(realistic):
    return summary(*realistic)


@pytest.fixture(scope="module")
def easy_stats():
    return summary(*generate("default", 0, "easy"))


@pytest.mark.parametrize("size, seed", sorted(EASY_FINGERPRINTS))
def test_easy_is_the_published_model_bit_for_bit(size, seed):
    sc, bulk = generate(size, seed, "easy", structure_weight=0.0)
    assert (_fingerprint(sc), _fingerprint(bulk)) == EASY_FINGERPRINTS[(size, seed)]


def test_realistic_is_the_default_preset_except_for_test_sized_data():
    assert default_preset("default") == default_preset("full") == "realistic" and default_preset("smoke") == "easy"
    bench = load_default("smoke", 0)
    assert bench.sc.uns["bench_dataset"]["preset"] == "easy" and bench.name == "synthetic-smoke-easy (seed 0)"
    assert load_default("default", 0).name == "synthetic-default-realistic (seed 0)"


@pytest.mark.parametrize("stat", sorted(REALISTIC_BOUNDS))
def test_realistic_statistic_within_its_bounds(stat, realistic_stats):
    low, high = REALISTIC_BOUNDS[stat]
    assert low <= realistic_stats[stat] <= high, f"{stat} = {realistic_stats[stat]:.3f}"


@pytest.mark.parametrize("stat", sorted(REALISTIC_BOUNDS))
def test_easy_statistic_outside_the_realistic_bounds(stat, easy_stats):
    """Each statistic separates the presets: the knob behind it is what makes the difference."""
    low, high = REALISTIC_BOUNDS[stat]
    assert not low <= easy_stats[stat] <= high, f"{stat} = {easy_stats[stat]:.3f}"


def test_presets_are_named_apart_so_runs_never_merge():
    easy, real = load_default("smoke", 0, "easy"), load_default("smoke", 0, "realistic")
    assert real.name == "synthetic-smoke-realistic (seed 0)"
    assert easy.describe()["name"] != real.describe()["name"]
    assert real.sc.uns["bench_dataset"]["preset"] == real.bulk.uns["bench_dataset"]["preset"] == "realistic"
    assert real.sc.uns["bench_dataset"]["inert_fraction"] == KNOBS.inert_fraction
    with pytest.raises(BenchError, match="unknown preset 'hard'"):
        generate("smoke", 0, "hard")


def test_realistic_is_deterministic_in_its_seed():
    a, b, c = (generate("smoke", s, "realistic") for s in (5, 5, 6))
    assert (a[0].X != b[0].X).nnz == 0 and np.array_equal(a[1].X, b[1].X) and a[1].obs.equals(b[1].obs)
    assert a[0].n_obs != c[0].n_obs or (a[0].X != c[0].X).nnz > 0


def test_realistic_keeps_the_size_and_shape_of_its_size(realistic):
    sc, bulk = realistic
    shape, _ = SHAPES["default"]
    cells = 3 * (300 + 40 * len(SC_DOSES) * shape["cells_per_condition"])
    assert abs(sc.n_obs - cells) < 0.1 * cells and sc.n_vars == shape["n_genes"]  # the cell budget of its shape
    easy = 3 * (300 + 40 * len(SC_DOSES) * 25) * 1000
    assert sc.n_obs * sc.n_vars < 1.3 * easy  # the matrix, and so the main job's cost, stays close to easy's
    assert sorted(sc.obs.loc[sc.obs[DRUG] != CONTROL, DOSE].unique()) == list(SC_DOSES)
    assert set(sc.obs[DRUG].astype(str)) - {CONTROL} <= set(bulk.obs[DRUG].astype(str))  # every drug somewhere in bulk
    assert cells_per_condition(sc).min() >= KNOBS.min_cells


def test_bulk_effects_are_the_bulk_visible_part_of_expected_shift(realistic):
    """Without the single-cell-only and bulk-only parts, bulk sees the population average of the
    single-cell shift: the vectorised bulk model and the single-cell model agree."""
    truth = {**realistic[0].uns["bench_truth"]}
    truth["sc_latent"] = np.zeros_like(truth["sc_latent"])
    truth["bulk_latent"] = np.zeros_like(truth["bulk_latent"])
    for d in (3, 17):
        cond = Condition("CL01", f"D{d:03d}", 3330.0)
        bulk = bulk_effects(truth, np.array([[1, d, 3330.0]]), truth["programs"])[0]
        np.testing.assert_allclose(bulk, responder_fraction(truth, cond) / np.log(2.0) * expected_shift(truth, cond), rtol=1e-9, atol=1e-12)


def _vehicle_shift(bulk: ad.AnnData, truth: dict) -> tuple[np.ndarray, list[int]]:
    """Mean CL00 vehicle profile minus the single-cell baseline of its genes on the bulk scale."""
    genes = [g for g in bulk.var_names if g.startswith("G")]
    idx = [int(g[1:]) for g in genes]
    ctrl = ((bulk.obs[DRUG] == CONTROL) & (bulk.obs[CELL_TYPE] == "CL00")).to_numpy()
    return np.asarray(bulk[ctrl, genes].X).mean(axis=0) - (truth["line_base"][0, idx] / np.log(2.0) + 8.0), idx


def test_platform_shift_moves_bulk_baselines_and_scales_effects(realistic):
    sc, bulk = realistic
    truth = sc.uns["bench_truth"]
    shift, idx = _vehicle_shift(bulk, truth)
    assert np.std(shift) > 0.4 and np.std(shift - truth["platform_offset"][idx]) < 0.25
    easy_sc, easy_bulk = generate("default", 0, "easy")
    assert np.std(_vehicle_shift(easy_bulk, easy_sc.uns["bench_truth"])[0]) < 0.1
    assert abs(np.std(np.log(truth["platform_gain"])) - KNOBS.platform_gain_sd) < 0.05


def test_toxic_drugs_leave_fewer_cells_at_high_dose(realistic):
    sc, _ = realistic
    truth = sc.uns["bench_truth"]
    counts = cells_per_condition(sc)
    toxic = {str(d) for d, t in zip(truth["drugs"], truth["toxicity"]) if t > 0}
    top = counts.xs(max(SC_DOSES), level=DOSE)
    is_toxic = np.array([d in toxic for d in top.index.get_level_values(DRUG)])
    assert 0 < is_toxic.mean() < 0.5
    assert top[is_toxic].mean() < 0.7 * top[~is_toxic].mean()


def test_bulk_replicates_sit_on_different_plates_with_their_own_vehicles(realistic):
    bulk = realistic[1]
    obs = bulk.obs
    treated = obs[obs[DRUG] != CONTROL]
    groups = treated.groupby([CELL_TYPE, DRUG, DOSE], observed=True)["plate"]
    assert (groups.nunique() == groups.size()).all()
    assert 0.6 < (groups.size() == KNOBS.bulk_replicates).mean() < 1.0  # some replicates drop out
    per_plate = obs.groupby("plate", observed=True)
    assert (per_plate[CELL_TYPE].nunique() == 1).all()
    assert (obs[obs[DRUG] == CONTROL].groupby("plate", observed=True).size() == KNOBS.plate_controls).all()


def test_bulk_coverage_is_uneven(realistic):
    bulk = realistic[1]
    pairs = bulk_doses_per_pair(bulk).reset_index()
    with_standard = bulk.obs[bulk.obs[DOSE] == STANDARD_DOSE].groupby([DRUG, CELL_TYPE], observed=True).size()
    assert 0.55 < len(with_standard) / len(pairs) < 0.9  # most drugs at L1000's 10 uM
    per_line = pairs.groupby(CELL_TYPE, observed=True).size()
    core = per_line[[f"CL{i:02d}" for i in range(KNOBS.core_lines)]]
    assert core.min() > 2 * per_line.drop(core.index).max()


def test_oracle_cells_of_the_realistic_model_are_sparse(realistic):
    truth = realistic[0].uns["bench_truth"]
    cells = simulate_cells(truth, Condition("CL00", "D005", 1000.0), "CL00", 200, np.random.default_rng(0))
    assert cells.shape == (200, SHAPES["default"][0]["n_genes"]) and (cells == 0).mean() > 0.75


def test_data_command_writes_the_realistic_preset(tmp_path):
    assert main(["data", "--data", "smoke", "--preset", "realistic", "--out", str(tmp_path)]) == 0
    sc, bulk = ad.read_h5ad(tmp_path / "sc.h5ad"), ad.read_h5ad(tmp_path / "bulk.h5ad")
    assert sc.uns["bench_dataset"]["preset"] == "realistic" and "plate" in bulk.obs
    assert zero_fraction(sc) > 0.8  # (the table's bound is for the default size; smoke has 120 genes)


def test_preset_does_not_apply_to_files(tmp_path, capsys):
    assert main(["data", "--sc", str(tmp_path / "x.h5ad"), "--preset", "easy", "--out", str(tmp_path / "o")]) == 2
    assert "--preset chooses the embedded data's model" in capsys.readouterr().err


def test_run_command_records_the_preset(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--data", "smoke", "--preset", "realistic", "--predictors", "control_mean", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["data"]["name"] == "synthetic-smoke-realistic (seed 0)" and "--preset realistic" in meta["command"]
