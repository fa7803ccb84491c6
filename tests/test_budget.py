"""A fit's budget: gradient steps of its main optimisers and the weights they trained, counted from
torch's optimisers, and written into every trained run's result.json."""

from __future__ import annotations

import json

import torch

from bench.budget import counting
from bench.cli import main


def _step(optimizer: torch.optim.Optimizer, module: torch.nn.Module) -> None:
    optimizer.zero_grad()
    module(torch.ones(2, module.in_features)).sum().backward()
    optimizer.step()


def test_one_optimiser_counts_its_steps_and_weights():
    model = torch.nn.Linear(5, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with counting() as budget:
        for _ in range(7):
            _step(optimizer, model)
    assert budget.gradient_steps == 7
    assert budget.n_parameters == 5 * 3 + 3
    _step(optimizer, model)  # outside the block: not counted
    assert budget.gradient_steps == 7


def test_side_optimisers_are_not_steps_and_phases_add_up():
    """A small side optimiser stepping every batch (CPA's adversaries) adds weights but no steps;
    two large optimisers one after the other (bulk, then single cell) add their steps."""
    main_model, side, second = torch.nn.Linear(40, 40), torch.nn.Linear(4, 2), torch.nn.Linear(40, 30)
    main_opt, side_opt = torch.optim.Adam(main_model.parameters()), torch.optim.Adam(side.parameters())
    second_opt = torch.optim.Adam(second.parameters())
    with counting() as budget:
        for _ in range(3):
            _step(main_opt, main_model)
            _step(side_opt, side)
        for _ in range(4):
            _step(second_opt, second)
    assert budget.gradient_steps == 3 + 4
    assert budget.n_parameters == sum(p.numel() for m in (main_model, side, second) for p in m.parameters())


def test_nothing_trained_reports_nothing():
    with counting() as budget:
        pass
    assert budget.gradient_steps is None and budget.n_parameters is None


def test_run_records_hold_the_budget(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--data", "smoke", "--predictors", "cVAE,knn", "--epochs", "2", "--patience", "0", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    cvae = json.loads((out / "runs" / "cVAE" / "seed0" / "result.json").read_text())
    knn = json.loads((out / "runs" / "knn" / "seed0" / "result.json").read_text())
    assert cvae["last_epoch"] == 2 and cvae["gradient_steps"] > 0 and cvae["gradient_steps"] % 2 == 0  # equal epochs
    assert cvae["n_parameters"] > 1000
    assert "gradient_steps" not in knn and "n_parameters" not in knn
    page = (out / "leaderboard.md").read_text().splitlines()
    assert any(line.startswith("| cVAE |") and f"| {cvae['gradient_steps']:,} | {cvae['n_parameters']:,} |" in line for line in page)
