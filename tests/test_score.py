"""`bench score`: any tool's predictions scored against true cells, with clear errors."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.cli import main
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG
from metrics.calibration import FLOOR, calibrated


@pytest.fixture(scope="module")
def files(smoke, tmp_path_factory):
    """Truth (renamed columns, as another tool would write it) and predictions for two drugs."""
    folder = tmp_path_factory.mktemp("score")
    truth = smoke.sc.copy()
    truth.obs = truth.obs.rename(columns={DRUG: "condition", CELL_TYPE: "cell_line", DOSE: "dose_nM"})
    truth.obs["condition"] = truth.obs["condition"].astype(str).replace({CONTROL: "DMSO"})
    del truth.uns["bench_truth"]
    truth.write_h5ad(folder / "truth.h5ad")
    obs = truth.obs
    picked = obs[obs["condition"].isin(["D000", "D001"])]
    pred = truth[picked.index].copy()
    pred.X = sp.csr_matrix(pred.X.toarray()[::-1].copy())  # real cells, shuffled across conditions
    pred.write_h5ad(folder / "pred.h5ad")
    return folder


KEYS = ["--drug-key", "condition", "--cell-type-key", "cell_line", "--dose-key", "dose_nM", "--control", "DMSO"]


def test_scores_every_shared_condition_and_warns_about_the_rest(files, capsys):
    out = files / "metrics.csv"
    assert main(["score", "--truth", str(files / "truth.h5ad"), "--pred", str(files / "pred.h5ad"), "--out", str(out), *KEYS]) == 0
    captured = capsys.readouterr()
    frame = pd.read_csv(out)
    assert set(frame[DRUG]) == {"D000", "D001"} and len(frame) == 2 * 3 * 4
    assert {"mean", "dis_DE10", "delta", "energy_DE50", "delta_norm", "energy_DE50_norm"} <= set(frame.columns)
    assert frame[["mean", "dis", "delta"]].notna().all().all()
    assert "only in the truth, not scored" in captured.err and "D002" in captured.err
    assert "mean_DE50" in captured.out


def test_identical_cells_score_perfectly(files, tmp_path, capsys):
    truth = ad.read_h5ad(files / "truth.h5ad")
    same = truth[truth.obs["condition"] == "D003"].copy()
    same.write_h5ad(tmp_path / "same.h5ad")
    out = tmp_path / "m.csv"
    assert main(["score", "--truth", str(files / "truth.h5ad"), "--pred", str(tmp_path / "same.h5ad"), "--out", str(out), *KEYS]) == 0
    frame = pd.read_csv(out)
    np.testing.assert_allclose(frame[["mean", "dis", "delta", "cov"]].to_numpy(), 1.0, atol=1e-6)


def _score(files, pred: ad.AnnData, tmp_path, name: str) -> pd.DataFrame:
    pred.write_h5ad(tmp_path / f"{name}.h5ad")
    out = tmp_path / f"{name}.csv"
    assert main(["score", "--truth", str(files / "truth.h5ad"), "--pred", str(tmp_path / f"{name}.h5ad"), "--out", str(out), *KEYS]) == 0
    return pd.read_csv(out)


def test_controls_as_prediction_score_zero_calibrated_and_nothing_is_nan_or_above_one(files, tmp_path, capsys):
    """The real controls relabelled as each condition: every calibrated score 0, printed and written."""
    truth = ad.read_h5ad(files / "truth.h5ad")
    obs = truth.obs
    blocks = []
    for (line, drug, dose), _ in obs[obs["condition"].isin(["D000", "D001"])].groupby(["cell_line", "condition", "dose_nM"], observed=True):
        ctrl = truth[(obs["cell_line"] == line).to_numpy() & (obs["condition"] == "DMSO").to_numpy()].copy()
        ctrl.obs["condition"], ctrl.obs["dose_nM"] = drug, dose
        ctrl.obs_names = [f"{n}-{drug}-{dose}" for n in ctrl.obs_names]
        blocks.append(ctrl)
    frame = _score(files, ad.concat(blocks), tmp_path, "controls")
    metrics = [c.removesuffix("_norm") for c in frame.columns if c.endswith("_norm")]
    for m in metrics:  # against "no change" every score is 0; against the mean baseline it is whatever it is
        assert calibrated(frame, m, FLOOR) == pytest.approx(0.0, abs=1e-12), m
    printed = capsys.readouterr().out
    assert "against no change 0.000" in printed and "0 = the mean baseline (train_mean)" in printed
    shuffled = _score(files, ad.read_h5ad(files / "pred.h5ad"), tmp_path, "shuffled")
    values = shuffled[[c for c in shuffled.columns if c.endswith("_norm")]].to_numpy()
    assert (values[np.isfinite(values)] <= 1.0).all()
    assert np.isfinite(values).any(axis=0).all()  # NaN only where a DE-set metric meets an inert condition


def test_control_cells_in_the_prediction_file_change_nothing(files, tmp_path):
    """bench takes the controls from the truth: altered controls in a prediction file are ignored."""
    truth = ad.read_h5ad(files / "truth.h5ad")
    pred = ad.read_h5ad(files / "pred.h5ad")
    ctrl = truth[(truth.obs["condition"] == "DMSO").to_numpy()].copy()
    ctrl.X = sp.csr_matrix(ctrl.X.toarray() * 3.0 + 1.0)  # controls a tool might have altered
    with_controls = ad.concat([pred, ctrl])
    pd.testing.assert_frame_equal(_score(files, with_controls, tmp_path, "with_controls"), _score(files, pred, tmp_path, "plain"))


def test_genes_in_another_order_score_the_same(files, tmp_path):
    """A prediction file whose genes come in another order is read in the truth's order."""
    pred = ad.read_h5ad(files / "pred.h5ad")
    reordered = pred[:, pred.var_names[::-1]].copy()
    pd.testing.assert_frame_equal(_score(files, reordered, tmp_path, "reordered"), _score(files, pred, tmp_path, "ordered"))


def test_errors_are_one_line(files, tmp_path, capsys):
    truth, pred = str(files / "truth.h5ad"), str(files / "pred.h5ad")
    cases = [
        (["--pred", str(tmp_path / "nope.h5ad")], "file not found"),
        (["--pred", pred, "--drug-key", "conditon"], "did you mean 'condition'"),
    ]
    bad = ad.read_h5ad(files / "pred.h5ad")
    bad.var_names = [f"X{i}" for i in range(bad.n_vars)]
    bad.write_h5ad(tmp_path / "genes.h5ad")
    cases.append((["--pred", str(tmp_path / "genes.h5ad")], "genes differ"))
    no_ctrl = ad.read_h5ad(files / "truth.h5ad")
    no_ctrl = no_ctrl[no_ctrl.obs["condition"] != "DMSO"].copy()
    no_ctrl.write_h5ad(tmp_path / "noctrl.h5ad")
    cases.append((["--pred", pred, "--truth", str(tmp_path / "noctrl.h5ad")], "no control cells"))
    (tmp_path / "text.h5ad").write_text("not hdf5")
    cases.append((["--pred", str(tmp_path / "text.h5ad")], "not a readable h5ad"))
    for extra, message in cases:
        argv = ["score", "--truth", truth, *KEYS, *extra]
        assert main(argv) == 2, message
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_bench_data_output_is_a_truth_file(tmp_path, capsys):
    """`bench data` writes sc.h5ad in the harness layout: score it with default columns, the
    control_mean prediction (real controls labelled as each condition) at the "no change" reference."""
    assert main(["data", "--data", "smoke", "--out", str(tmp_path)]) == 0
    truth = ad.read_h5ad(tmp_path / "sc.h5ad")
    obs = truth.obs
    ctrl = truth[(obs[DRUG] == CONTROL).to_numpy()]
    wanted = obs.loc[obs[DRUG].isin(["D004"]), [CELL_TYPE, DRUG, DOSE]].drop_duplicates()
    parts = []
    for _, cond in wanted.iterrows():
        part = ctrl[(ctrl.obs[CELL_TYPE] == cond[CELL_TYPE]).to_numpy()].copy()
        part.obs[DRUG], part.obs[DOSE] = cond[DRUG], cond[DOSE]
        parts.append(part)
    ad.concat(parts, index_unique="-").write_h5ad(tmp_path / "pred.h5ad")
    out = tmp_path / "m.csv"
    assert main(["score", "--truth", str(tmp_path / "sc.h5ad"), "--pred", str(tmp_path / "pred.h5ad"), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == len(wanted) and set(frame[DRUG]) == {"D004"}
    for name in ("delta", "delta_DE50", "de_sign"):  # "no change" is the second reference: 0 against it
        assert frame[name].notna().any() and calibrated(frame, name, FLOOR) == pytest.approx(0.0, abs=1e-9), name
    assert "not scored" in capsys.readouterr().err


def r_or_zero(a: np.ndarray, b: np.ndarray) -> float:
    """scipy's Pearson r, 0 where it is undefined (fewer than two genes or a constant side), as bench defines it."""
    from scipy import stats

    return 0.0 if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0 else float(stats.pearsonr(a, b).statistic)


def test_the_papers_six_are_the_papers_definitions_on_every_predicted_cell(smoke, tmp_path):
    """mean / dis on all genes and the top-50 / top-10 DE genes (section 3.3 and Table 2 of the
    seed paper), computed here independently with scipy over every predicted cell, for predicted
    sets of other sizes than the truth: `bench score` matches to 1e-4."""
    from scipy import stats

    truth = smoke.sc.copy()
    del truth.uns["bench_truth"]
    truth.write_h5ad(tmp_path / "truth.h5ad")
    rng = np.random.default_rng(3)
    obs = truth.obs
    parts = []
    for (ct, drug, dose), rows in obs[obs[DRUG] != CONTROL].groupby([CELL_TYPE, DRUG, DOSE], observed=True).groups.items():
        if drug not in ("D000", "D003") or ct != "CL00":
            continue
        ctrl = truth.X[np.flatnonzero((obs[CELL_TYPE] == ct).to_numpy() & (obs[DRUG] == CONTROL).to_numpy())].toarray()
        n = len(rows) * (3 if drug == "D000" else 1) + 1  # larger and other-sized predicted sets
        cells = ctrl[rng.integers(0, len(ctrl), n)] + rng.normal(0, 0.3, (n, truth.n_vars)).astype(np.float32)
        parts.append(ad.AnnData(sp.csr_matrix(cells), var=truth.var, obs=pd.DataFrame(
            {DRUG: drug, CELL_TYPE: ct, DOSE: dose}, index=[f"{drug}-{ct}-{dose}-{i}" for i in range(n)])))
    ad.concat(parts).write_h5ad(tmp_path / "pred.h5ad")
    out = tmp_path / "metrics.csv"
    assert main(["score", "--truth", str(tmp_path / "truth.h5ad"), "--pred", str(tmp_path / "pred.h5ad"), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    pred = ad.read_h5ad(tmp_path / "pred.h5ad")
    x = truth.X.toarray()
    checked = 0
    for row in frame.itertuples(index=False):
        at = lambda o: ((o[CELL_TYPE] == row.cell_type) & (o[DRUG] == row.drug) & np.isclose(o[DOSE], row.dose)).to_numpy()  # noqa: E731
        true = x[at(obs)]
        p = np.maximum(pred.X.toarray()[at(pred.obs)], 0.0)  # every prediction is clipped at 0
        ctrl = x[((obs[CELL_TYPE] == row.cell_type) & (obs[DRUG] == CONTROL)).to_numpy()]
        # the condition's DE genes: a z-test on the controls' variance, BH FDR < 0.05, by |change| / sd
        sd = ctrl.std(axis=0, ddof=1)
        change = (true.mean(axis=0) - ctrl.mean(axis=0)) / sd
        fdr = stats.false_discovery_control(2 * stats.norm.sf(np.abs(change) / np.sqrt(1 / len(true) + 1 / len(ctrl))))
        significant = np.flatnonzero(fdr < 0.05)
        order = significant[np.argsort(-np.abs(change[significant]), kind="stable")]
        if len(order) == 0:  # inert: the DE-set metrics are not scored
            assert np.isnan(row.mean_DE50) and np.isnan(row.dis_DE10)
            checked += 2
            order = np.arange(x.shape[1])
        for suffix, genes in (("", slice(None)), ("_DE50", order[:50]), ("_DE10", order[:10]))[: 1 if len(order) == x.shape[1] else 3]:
            mean = r_or_zero(true[:, genes].mean(axis=0), p[:, genes].mean(axis=0))
            r = np.array([[r_or_zero(a, b) for b in p[:, genes]] for a in true[:, genes]])
            assert getattr(row, "mean" + suffix) == pytest.approx(mean, abs=1e-4)
            assert getattr(row, "dis" + suffix) == pytest.approx(np.nanmax(r, axis=1).mean(), abs=1e-4)
            checked += 1
    assert len(frame) == 8 and checked == 3 * len(frame)  # 2 drugs x 4 doses, 3 gene sets each


# ---------------------------------------------------------------- cell-eval's pair layout


def _pair(folder, pert_col: str = "target_gene", control: str = "non-targeting"):
    """(real, predicted) h5ad files as cell-eval reads them: one perturbation column, the control
    cells in both, CSR float32 X, string obs and var names (as `cell-eval prep` writes them)."""
    from test_peer_metrics import make_fixture

    ctrl, true, pred = make_fixture()
    drugs = list(true)

    def write(cells: dict, name: str) -> str:
        labels = [control] * len(ctrl) + [d for d in drugs for _ in range(len(cells[d]))]
        x = sp.csr_matrix(np.concatenate([ctrl] + [cells[d] for d in drugs]).astype(np.float32))
        obs = pd.DataFrame({pert_col: labels}, index=np.arange(len(labels)).astype(str))
        ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"gene{j}" for j in range(ctrl.shape[1])])).write_h5ad(folder / name)
        return str(folder / name)

    return write(true, "real.h5ad"), write(pred, "pred.h5ad"), drugs


def test_a_cell_eval_pair_scores_as_it_is_and_agrees_with_cell_eval(tmp_path, capsys):
    """A Virtual Cell Challenge-style pair (target_gene, non-targeting, no cell-type or dose column)
    scored by `bench score --pert-col`, next to cell-eval itself on the same two files."""
    pytest.importorskip("cell_eval")
    from cell_eval import MetricsEvaluator
    from cell_eval._pipeline import MetricPipeline

    from test_peer_metrics import CONDITION_METRICS, DE_METRICS

    real, pred, drugs = _pair(tmp_path)
    out = tmp_path / "m.csv"
    assert main(["score", "--truth", real, "--pred", pred, "--pert-col", "target_gene", "--out", str(out)]) == 0
    ours = pd.read_csv(out).set_index(DRUG).reindex(drugs)
    assert ours[CELL_TYPE].nunique() == 1 and ours[DOSE].nunique() == 1 and ours["n_true"].gt(0).all()
    evaluator = MetricsEvaluator(pred, real, control_pert="non-targeting", pert_col="target_gene", num_threads=1,
                                 outdir=str(tmp_path / "cell_eval"))
    pipeline = MetricPipeline(profile=None)
    # pearson_edistance departs on purpose (unbiased energy distances: tests/test_peer_metrics.py)
    names = CONDITION_METRICS + ["discrimination_score_l1"]
    pipeline.add_metrics(names)
    pipeline.compute_de_metrics(evaluator.de_comparison)
    pipeline.compute_anndata_metrics(evaluator.anndata_pair)
    theirs = pipeline.get_results().to_pandas().set_index("perturbation").reindex(drugs)
    for name in names:
        both = theirs[name].notna().to_numpy()
        if name in DE_METRICS:  # bench: NaN where the truth has no significant gene (cell-eval: 0 for some)
            assert np.isnan(ours.loc["inert", name]), name
            both &= ours.index != "inert"
        assert both.sum() >= len(drugs) - 1, name  # the inert drug: no true DE gene
        np.testing.assert_allclose(ours[name].to_numpy()[both], theirs[name].to_numpy()[both], rtol=0, atol=1e-6, err_msg=name)


def test_cell_evals_documented_example_pair_scores(tmp_path, capsys):
    """cell-eval's README example: `build_random_anndata` (perturbation column, control label
    'control', float64 log-normalised X, a cell-type column it ignores) and half its cells as the
    prediction; `--control-pert` names the label."""
    pytest.importorskip("cell_eval")
    from cell_eval.data import build_random_anndata, downsample_cells

    real = build_random_anndata(n_cells=600, n_genes=60, n_perts=5)
    pred = downsample_cells(real, fraction=0.5)
    real.write_h5ad(tmp_path / "real.h5ad")
    pred.write_h5ad(tmp_path / "pred.h5ad")
    out = tmp_path / "m.csv"
    argv = ["score", "--truth", str(tmp_path / "real.h5ad"), "--pred", str(tmp_path / "pred.h5ad"), "--out", str(out),
            "--pert-col", "perturbation", "--control-pert", "control"]
    assert main(argv) == 0
    frame = pd.read_csv(out)
    assert sorted(frame[DRUG]) == [f"pert_{i}" for i in range(5)] and frame[CELL_TYPE].nunique() == 1
    assert frame[["mse", "discrimination_score_l1"]].notna().all().all()
    # random data: where the truth has no significant gene, DE recovery is not scored (NaN), else it is
    assert (frame["de_recall"].isna() == ~frame["active"]).all() and frame["overlap_at_N"].dropna().between(0, 1).all()
    assert main([*argv, "--cell-type-key", "celltype"]) == 0  # cell-eval's --celltype-col: one row per cell type
    assert len(pd.read_csv(out)) == 5 * 3


def test_pair_errors_are_one_line(tmp_path, capsys):
    real, pred, _ = _pair(tmp_path)
    cases = [
        (["--pert-col", "target"], "obs has no column 'target'"),
        (["--pert-col", "target_gene", "--drug-key", "target_gene"], "both name the perturbation column"),
        (["--pert-col", "target_gene", "--control-pert", "NTC"], "no control cells (drug label 'NTC' in column 'target_gene'; column 'target_gene' holds 'non-targeting')"),
    ]
    for extra, message in cases:
        assert main(["score", "--truth", real, "--pred", pred, *extra]) == 2, message
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
