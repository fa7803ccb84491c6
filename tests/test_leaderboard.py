"""`bench leaderboard` on real smoke runs: overview and split pages, table order and best marks,
robust metric columns, plots, failures, several run folders, and re-rendering."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.headline import headline
from bench.publish import MANIFEST, RESULTS, best_values, load_boards, pooled_conditions, ranking, render_split_page
from bench.schema import PAPER_METRICS
from metrics import METRICS
from metrics.registry import Metric
from predictors import BUILTIN

CHEAP = ["random", "knn", "control_mean", "train_mean", "oracle"]
PLUGIN_DIR = Path(__file__).parent / "plugin_example"


def _run(out: Path, predictors: list[str], *extra: str) -> Path:
    """A real smoke run; `dose_shift` (the example plug-in, trainable) and `bad` (cannot be
    imported) are registered for its duration."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(PLUGIN_DIR))
        mp.setitem(BUILTIN, "dose_shift", ("bench_plugin_example:DoseShift", {}))
        mp.setitem(BUILTIN, "bad", ("no_such_module_for_bench:Thing", {}))
        argv = ["run", "--data", "smoke", "--predictors", ",".join(predictors), "--out", str(out), *extra]
        assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("run"), [*CHEAP, "dose_shift", "bad"], "--seeds", "0,1", "--epochs", "3")


@pytest.fixture(scope="module")
def board_dir(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lb") / "leaderboard"
    assert main(["leaderboard", str(run_dir), "--out", str(out)]) == 0
    return out


def table_after(text: str, heading: str) -> pd.DataFrame:
    """The first markdown table after `heading`, as strings indexed by predictor."""
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return pd.DataFrame(rows[2:], columns=rows[0]).set_index("predictor")


def test_overview_and_page_are_written_with_provenance(board_dir, run_dir):
    overview = (board_dir / "README.md").read_text()
    page = (board_dir / "unseen_drugs.md").read_text()
    assert "[`unseen_drugs`](unseen_drugs.md)" in overview and "## Reproduce" in overview
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["command"] in overview and meta["command"] in page
    assert f"torch {meta['versions']['torch']}" in page
    assert ", ".join(meta["split_summary"]["test_drug_names"]) in page
    top = table_after(overview, "| rank")
    methods = top[top["rank"] != "-"]
    assert "oracle (reference)" in top.index and "oracle" not in methods.index
    assert list(methods["rank"]) == [str(i) for i in range(1, len(methods) + 1)]
    assert methods["headline"].astype(float).is_monotonic_decreasing


def test_tables_follow_registry_order_and_paper_columns_come_first(board_dir, run_dir):
    page = (board_dir / "unseen_drugs.md").read_text()
    assert page.index("Paper protocol") < page.index("Honest: validation-selected epoch")
    paper = table_after(page, "Paper protocol")
    assert list(paper.columns[:7]) == [*PAPER_METRICS, "epoch (best test, per seed)"]
    names = [n.removesuffix(" (reference)") for n in paper.index]
    assert names == [*CHEAP, "dose_shift"]  # `bad` failed: listed below, not in the table
    honest = table_after(page, "Honest: validation-selected epoch")
    assert {"epoch (val, per seed)", "s/epoch", "seeds"} <= set(honest.columns)
    epochs = [json.loads((run_dir / f"runs/dose_shift/seed{s}/result.json").read_text())["val_epoch"] for s in (0, 1)]
    assert honest.loc["dose_shift", "epoch (val, per seed)"] == f"{epochs[0]}, {epochs[1]}"
    assert honest.loc["knn", "epoch (val, per seed)"] == "-" and honest.loc["knn", "seeds"] == "2"
    assert float(honest.loc["dose_shift", "s/epoch"]) >= 0


def test_best_value_is_bold_direction_aware_and_never_a_reference(board_dir):
    results = pd.read_csv(board_dir / RESULTS)
    honest = results[(results["selection"] == "val_selected") & (results["status"] == "ok")]
    means = honest.groupby("predictor")[PAPER_METRICS].mean()
    table = table_after((board_dir / "unseen_drugs.md").read_text(), "Honest: validation-selected epoch")
    assert not any("**" in cell for cell in table.loc["oracle (reference)"])
    for m in PAPER_METRICS:
        winner = means.drop("oracle")[m].idxmax()
        assert table.loc[winner, m].startswith("**"), (m, winner)
        bold = [p for p in table.index if table.loc[p, m].startswith("**")]
        assert all(f"{means.loc[p.removesuffix(' (reference)'), m]:.3f}" == f"{means.loc[winner, m]:.3f}" for p in bold)
        cell = table.loc["random", m].strip("*")
        mean, sd = (float(x) for x in cell.split(" ± "))
        assert mean == pytest.approx(means.loc["random", m], abs=5e-4)
        assert sd == pytest.approx(honest[honest["predictor"] == "random"][m].std(ddof=1), abs=5e-4)


def test_lower_is_better_metric_marks_the_minimum(monkeypatch):
    monkeypatch.setitem(METRICS, "toy_distance", Metric("toy_distance", lambda d: 0.0, 0.0, False, "toy", "toy"))
    frame = pd.DataFrame({"predictor": ["a", "b", "oracle"], "reference": [False, False, True],
                          "toy_distance": [0.5, 0.2, 0.0], "mean": [0.9, 0.8, 1.0], "weird": [1.0, 2.0, 3.0]})
    assert best_values(frame, ["toy_distance", "mean", "weird"]) == {"toy_distance": "0.200", "mean": "0.900"}


def test_missing_and_new_metric_columns_render(run_dir, tmp_path):
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    for path in copy.glob("runs/*/seed*/result.json"):
        result = json.loads(path.read_text())
        if result["status"] != "ok":
            continue
        for sel in ("val_selected", "test_selected"):
            if result["predictor"] == "knn":
                del result[sel]["dis_DE10"]
                result[sel].pop("delta", None)
            else:
                result[sel].update(delta=0.1 * result["seed"], delta_norm=0.5, brand_new=1.0)
        path.write_text(json.dumps(result))
    page = render_split_page(load_boards([copy])["unseen_drugs"])
    honest = table_after(page, "Honest: validation-selected epoch")
    assert honest.loc["knn", "dis_DE10"] == "-"
    beyond = table_after(page, "Beyond the paper")
    assert {"delta", "brand_new"} <= set(beyond.columns) and beyond.loc["knn", "delta"] == "-"
    assert beyond.loc["random", "delta"].strip("*").startswith("0.050 ± 0.071")
    assert not any("**" in c for c in beyond["brand_new"])  # direction unknown: nothing marked
    norm = table_after(page, "Calibrated scores")
    assert "delta_norm" in norm.columns and all(c.endswith("_norm") for c in norm.columns)


def test_plots_are_linked_readable_pngs(board_dir):
    page = (board_dir / "unseen_drugs.md").read_text()
    links = re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", page)
    assert {"plots/unseen_drugs_paper_metrics.png", "plots/unseen_drugs_epochs.png", "plots/unseen_drugs_seconds.png"} <= set(links)
    for link in links:
        image = mpimg.imread(board_dir / link)
        assert image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 0.05  # not blank


def test_failed_predictor_is_listed_with_its_reason(board_dir):
    page = (board_dir / "unseen_drugs.md").read_text()
    failed = page[page.index("## Failed or skipped"):]
    assert "bad (seed 0): failed: ModuleNotFoundError" in failed and "no_such_module_for_bench" in failed
    results = pd.read_csv(board_dir / RESULTS)
    assert set(results.loc[results["predictor"] == "bad", "status"]) == {"failed"}


def test_results_csv_holds_every_run_and_selection(board_dir, run_dir):
    results = pd.read_csv(board_dir / RESULTS, float_precision="round_trip")
    ok = results[results["status"] == "ok"]
    assert len(ok) == 6 * 2 * 2  # predictors x seeds x selections
    row = ok[(ok["predictor"] == "knn") & (ok["seed"] == 1) & (ok["selection"] == "test_selected")].iloc[0]
    result = json.loads((run_dir / "runs/knn/seed1/result.json").read_text())
    assert row["mean_DE10"] == result["test_selected"]["mean_DE10"]  # full precision, not rounded
    manifest = json.loads((board_dir / MANIFEST).read_text())
    assert manifest["splits"]["unseen_drugs"][0]["command"] == json.loads((run_dir / "run.json").read_text())["command"]


def test_two_run_folders_merge_and_other_data_is_refused(run_dir, tmp_path):
    extra = _run(tmp_path / "extra", ["dose_shift"], "--epochs", "2", "--seeds", "0")
    out = tmp_path / "lb"
    assert main(["leaderboard", str(run_dir), str(extra), "--out", str(out)]) == 0
    page = (out / "unseen_drugs.md").read_text()
    honest = table_after(page, "Honest: validation-selected epoch")
    # seed 0 comes from the later folder (2 epochs), seed 1 from the first
    epochs = [json.loads((folder / f"runs/dose_shift/seed{s}/result.json").read_text())["val_epoch"] for folder, s in ((extra, 0), (run_dir, 1))]
    assert honest.loc["dose_shift", "epoch (val, per seed)"] == f"{epochs[0]}, {epochs[1]}"
    assert page.count("- Command: `") == 2
    other = _run(tmp_path / "other", ["control_mean", "train_mean"], "--data-seed", "1")
    both = load_boards([run_dir, other])  # two data sets: published side by side, never merged
    assert sorted(both) == ["synthetic-smoke-easy-seed-0_unseen_drugs", "synthetic-smoke-easy-seed-1_unseen_drugs"]
    assert {r["predictor"] for r in both["synthetic-smoke-easy-seed-1_unseen_drugs"].results} == {"control_mean", "train_mean"}
    copy = Path(shutil.copytree(other, tmp_path / "tampered"))
    meta = json.loads((copy / "run.json").read_text())
    meta["split_summary"]["test_drug_names"] = ["elsewhere"]
    (copy / "run.json").write_text(json.dumps(meta))
    with pytest.raises(BenchError, match="other data or another hold-out"):
        load_boards([other, copy])
    out = tmp_path / "two-data-sets"
    assert main(["leaderboard", str(run_dir), str(other), "--out", str(out)]) == 0
    assert "Mean Kendall tau of the headline ranking between the 2 data sets" in (out / "README.md").read_text()


def test_rerendering_replaces_generated_files_only(run_dir, tmp_path):
    out = tmp_path / "lb"
    assert main(["leaderboard", str(run_dir), "--out", str(out)]) == 0
    (out / "notes.md").write_text("kept")
    assert (out / "plots" / "unseen_drugs_epochs.png").exists()
    cheap_only = Path(shutil.copytree(run_dir, tmp_path / "cheap"))
    shutil.rmtree(cheap_only / "runs" / "dose_shift")
    assert main(["leaderboard", str(cheap_only), "--out", str(out)]) == 0
    assert not (out / "plots" / "unseen_drugs_epochs.png").exists()
    assert "dose_shift" not in table_after((out / "unseen_drugs.md").read_text(), "Honest: validation-selected epoch").index
    assert (out / "notes.md").read_text() == "kept"
    assert not list(out.rglob(".*.png*")) and not list(out.glob(".*.md*"))  # no temporary leftovers


def test_bench_run_still_prints_its_leaderboard(run_dir):
    text = (run_dir / "leaderboard.md").read_text()
    assert "Paper protocol" in text and "| knn |" in text and "95% paired bootstrap interval" in text


def test_pooled_conditions_average_seeds_and_feed_the_headline(run_dir):
    board = load_boards([run_dir])["unseen_drugs"]
    n_test = json.loads((run_dir / "run.json").read_text())["split_summary"]["test_conditions"]
    for name in ("knn", "dose_shift"):
        pooled = pooled_conditions(board, name)
        runs = [r for r in board.ok() if r["predictor"] == name]
        assert len(pooled) == n_test
        expected = sum(r["val_selected"]["mean"] for r in runs) / len(runs)
        assert pooled["mean"].mean() == pytest.approx(expected, abs=1e-9)
    ranked = ranking(board)
    assert list(ranked["predictor"]) == sorted(ranked["predictor"], key=lambda n: -headline(pooled_conditions(board, n)))


def test_table1_tables_are_published_in_the_overview(run_dir, tmp_path):
    table = tmp_path / "table1.csv"
    pd.DataFrame([{"methods": "one-task", "mask_percentage": 15, "dataset": "whole", "cell_acc": None, "drug_acc": None,
                   "dose_rmse": None, "mask_rmse": 0.5661, "profiles": 100, "held_out": 10, "data": "toy data"}]).to_csv(table, index=False)
    out = tmp_path / "lb"
    assert main(["leaderboard", str(run_dir), "--out", str(out), "--table1", str(table)]) == 0
    overview = (out / "README.md").read_text()
    section = overview[overview.index("## Table 1"):overview.index("## Reproduce")]
    assert "Data: toy data" in section and "| one-task | 15 | whole | - | - | - | 0.566 | 100 | 10 |" in section
    assert main(["leaderboard", str(run_dir), "--out", str(out), "--table1", str(tmp_path / "missing.csv")]) == 2
