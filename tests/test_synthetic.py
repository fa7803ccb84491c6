"""The embedded generator: deterministic, the promised shape, shared bulk/single-cell structure,
and heterogeneous single-cell responses."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bench.data import synthetic_model
from bench.data.synthetic import generate
from bench.data.synthetic_model import SC_DOSES, expected_shift, responder_fraction, simulate_cells
from bench.errors import BenchError
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG, Condition, same_dose
from metrics.correlation import pearson
from predictors.base import dense


def _mean(adata, cell_type, drug, dose=None):
    obs = adata.obs
    mask = (obs[CELL_TYPE] == cell_type) & (obs[DRUG] == drug)
    if dose is not None:
        mask &= same_dose(obs[DOSE].to_numpy(), dose)
    return dense(adata.X[np.flatnonzero(mask.to_numpy())]).mean(axis=0)


def test_same_seed_same_data_other_seed_other_data():
    sc1, bulk1 = generate("smoke", seed=3)
    sc2, bulk2 = generate("smoke", seed=3)
    sc3, _ = generate("smoke", seed=4)
    assert (sc1.X != sc2.X).nnz == 0
    np.testing.assert_array_equal(bulk1.X, bulk2.X)
    assert sc1.obs.equals(sc2.obs)
    assert sc1.X.shape == sc3.X.shape and (sc1.X != sc3.X).nnz > 0


def test_shape_of_the_benchmark(smoke):
    sc, bulk = smoke.sc, smoke.bulk
    assert sc.X.dtype == np.float32 and bulk.X.dtype == np.float32
    assert sc.obs[CELL_TYPE].nunique() == 3
    treated = sc.obs[sc.obs[DRUG] != CONTROL]
    assert sorted(treated[DOSE].unique()) == list(SC_DOSES)
    for ct in sc.obs[CELL_TYPE].unique():
        assert ((sc.obs[CELL_TYPE] == ct) & (sc.obs[DRUG] == CONTROL)).sum() > 0
    sc_drugs = set(treated[DRUG].astype(str))
    bulk_drugs = set(bulk.obs[DRUG].astype(str))
    assert sc_drugs < bulk_drugs  # every single-cell drug is in bulk, and bulk has more
    assert set(sc.obs[CELL_TYPE].astype(str)) < set(bulk.obs[CELL_TYPE].astype(str))
    assert 0 < len(smoke.shared_genes) < sc.n_vars  # partial gene overlap, aligned by symbol
    assert sc.X.min() >= 0


def test_bulk_and_single_cell_share_drug_effects(smoke):
    """A drug's bulk signature predicts its single-cell mean shift far better than another drug's."""
    sc, bulk, truth = smoke.sc, smoke.bulk, smoke.truth
    genes = list(smoke.shared_genes)
    sc_idx = [sc.var_names.get_loc(g) for g in genes]
    bulk_idx = [bulk.var_names.get_loc(g) for g in genes]
    ct = str(sc.obs[CELL_TYPE].iloc[0])
    drugs = sorted(set(sc.obs[DRUG].astype(str)) - {CONTROL})
    strong = [d for d in drugs if np.abs(expected_shift(truth, Condition(ct, d, 10000.0))).max() > 0.5]
    assert len(strong) >= 4
    sc_ctrl, bulk_ctrl = _mean(sc, ct, CONTROL), _mean(bulk, ct, CONTROL)
    sc_shift = {d: (_mean(sc, ct, d, 10000.0) - sc_ctrl)[sc_idx] for d in strong}
    bulk_shift = {d: (_mean(bulk, ct, d, 10000.0) - bulk_ctrl)[bulk_idx] for d in strong}
    same = np.mean([pearson(sc_shift[d], bulk_shift[d]) for d in strong])
    other = np.mean([pearson(sc_shift[d], bulk_shift[e]) for d in strong for e in strong if d != e])
    assert same > 0.6 and same > other + 0.3


def test_single_cell_responses_are_heterogeneous(smoke):
    """Cells of one condition split into responders and non-responders along the true effect."""
    truth = smoke.truth
    ct = str(truth["cell_lines"][0])
    drug = max(
        (str(d) for d in truth["drugs"][:12]),
        key=lambda d: np.abs(expected_shift(truth, Condition(ct, d, 10000.0))).sum(),
    )
    cond = Condition(ct, drug, 10000.0)
    assert 0.0 < responder_fraction(truth, cond) < 1.0
    rng = np.random.default_rng(0)
    treated = simulate_cells(truth, cond, ct, 400, rng)
    control = simulate_cells(truth, None, ct, 400, rng)
    direction = expected_shift(truth, cond)
    proj_t = (treated - control.mean(axis=0)) @ direction
    proj_c = (control - control.mean(axis=0)) @ direction
    assert proj_t.std() > 2 * proj_c.std()  # the response varies from cell to cell
    assert (proj_t < np.quantile(proj_c, 0.95)).mean() > 0.05  # some cells look unperturbed


def test_unknown_size_is_a_clear_error():
    with pytest.raises(BenchError, match="unknown data size 'huge'"):
        generate("huge")


def test_large_conditions_are_simulated_in_bounded_blocks(smoke, monkeypatch):
    monkeypatch.setattr(synthetic_model, "CELL_BLOCK", 7)
    truth = smoke.truth
    cells = synthetic_model.simulate_block(truth, Condition("CL00", "D001", 1000.0), "CL00", 20, np.random.default_rng(0))
    assert sp.isspmatrix_csr(cells) and cells.shape == (20, truth["genes"].size) and cells.dtype == np.float32
    parts = [cells[:5], cells[5:6], cells[6:]]
    stacked = synthetic_model.stack_rows(iter(parts), cells.shape[1])
    assert stacked.indices.dtype == np.int32 and (stacked != cells).nnz == 0


def test_full_size_has_the_sci_plex3_and_lincs_shape():
    """Checked on the configuration and the bulk plate layout (generating it takes minutes and
    ~3.4 GB: see docs/data.md)."""
    from bench.data.synthetic import config_for
    from bench.data.synthetic_realistic import KNOBS, bulk_layout

    cfg = config_for("full")
    assert (cfg.n_sc_drugs, cfg.n_sc_cell_lines, len(SC_DOSES), cfg.n_genes) == (188, 3, 4, 2000)
    cells = cfg.n_sc_cell_lines * (cfg.controls_per_cell_line + cfg.n_sc_drugs * len(SC_DOSES) * cfg.cells_per_condition)
    assert 600_000 < cells < 700_000 and cfg.controls_per_cell_line >= 1000
    assert round(cfg.bulk_gene_fraction * cfg.n_genes) + cfg.n_bulk_only_genes == 978  # L1000 landmarks
    easy_profiles = cfg.n_bulk_cell_lines * cfg.n_bulk_drugs * cfg.bulk_pair_fraction * 6 * cfg.bulk_replicates
    assert easy_profiles >= 200_000 and len(bulk_layout(cfg, KNOBS, np.random.default_rng(0))) >= 200_000
