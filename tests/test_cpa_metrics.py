"""The grouped R² that replaces cpa-tools' per-group loop during CPA training logs the values cpa-tools
would log, and the model learns exactly the same with it (same loss curve at a fixed seed)."""

from __future__ import annotations

import importlib.util
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from predictors import registry
from predictors.base import Task
from predictors.cpa_metrics import fast_r2, grouped_r2
from splits import get_split
from splits.base import TEST, TRAIN, VAL

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cpa") is None, reason="cpa-tools is not installed (install.sh)")


@pytest.fixture(scope="module")
def task(smoke) -> Task:
    split = get_split("unseen_drugs", smoke.sc, seed=0)
    obs = smoke.sc.obs
    return Task(train=smoke.sc[split.mask(TRAIN)].copy(), bulk=None, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), max_epochs=2)


def _fit(task: Task, fast: bool, monkeypatch: pytest.MonkeyPatch):
    """CPA fitted for two epochs on one thread (multi-threaded reductions may differ in the last bits
    from run to run under load); `fast=False` keeps cpa-tools' own R² loop."""
    import predictors.cpa_model as cpa_model

    if not fast:
        monkeypatch.setattr(cpa_model, "fast_r2", lambda module: nullcontext())
    predictor = registry.create("CPA", sample=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor.fit(task)
    finally:
        torch.set_num_threads(threads)
        monkeypatch.undo()
    return predictor


@pytest.fixture(scope="module")
def fitted(task):
    """CPA fitted with the grouped R², which counts its calls (`r2_calls`)."""
    import predictors.cpa_metrics as cpa_metrics

    calls = []
    real = cpa_metrics.grouped_r2
    with pytest.MonkeyPatch.context() as counting:
        counting.setattr(cpa_metrics, "grouped_r2", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
        with pytest.MonkeyPatch.context() as monkeypatch:
            predictor = _fit(task, fast=True, monkeypatch=monkeypatch)
    predictor.r2_calls = len(calls)
    return predictor


def _outputs(predictor, rows: np.ndarray) -> tuple[dict, dict, dict]:
    """The batch cpa-tools' data loader yields for these rows of the model's AnnData (no mixup), and
    the module's inference and generative outputs on it."""
    module = predictor.model.module
    loader = predictor.model._make_data_loader(adata=predictor.model.adata, indices=rows, batch_size=len(rows), shuffle=False)
    batch, _ = module.mixup_data(next(iter(loader)), alpha=0.0)
    with torch.no_grad():
        inference, generative = module.forward(batch, compute_loss=False)
    return batch, inference, generative


def test_grouped_r2_equals_cpa_tools_loop(fitted):
    module = fitted.model.module
    module.eval()
    rng = np.random.default_rng(0)
    n = fitted.model.adata.n_obs
    for rows in (rng.choice(n, 256, replace=False), np.arange(0, 40), np.array([0, 1, 2, n - 1])):
        batch, inference, generative = _outputs(fitted, np.sort(rows))
        expected = type(module).r2_metric(module, batch, inference, generative, mode="direct")
        got = grouped_r2(module, batch, inference, generative, mode="direct")
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_grouped_r2_counts_a_one_cell_group_as_zero_variance_score(fitted):
    """A group of one cell has no variance: cpa-tools' NaN becomes 0 and still counts as a group."""
    module = fitted.model.module
    codes = fitted.model.adata.obs[fitted.model.adata.obs.columns[fitted.model.adata.obs.columns.str.endswith("_cat")][0]]
    single = np.flatnonzero(codes.to_numpy() == codes.iloc[0])[:1]
    other = np.flatnonzero(codes.to_numpy() != codes.iloc[0])[:30]
    batch, inference, generative = _outputs(fitted, np.sort(np.concatenate([single, other])))
    expected = type(module).r2_metric(module, batch, inference, generative, mode="direct")
    np.testing.assert_allclose(grouped_r2(module, batch, inference, generative), expected, rtol=1e-5, atol=1e-6)


def test_fast_r2_is_removed_after_training(fitted):
    module = fitted.model.module
    assert "r2_metric" not in vars(module)
    with fast_r2(module):
        assert "r2_metric" in vars(module)
    assert "r2_metric" not in vars(module)


def test_training_learns_the_same_with_the_grouped_r2(task, fitted, monkeypatch):
    """Same seed, same data: the loss curve and the weights are those of cpa-tools' own loop."""
    steps = len(fitted.model.adata) // fitted.config["batch_size"]
    assert fitted.r2_calls >= 2 * steps  # every training step of both epochs went through grouped_r2
    slow = _fit(task, fast=False, monkeypatch=monkeypatch)
    fast_history, slow_history = fitted.model.epoch_history, slow.model.epoch_history
    for key in ("recon_loss", "adv_loss", "r2_mean", "r2_var"):
        np.testing.assert_allclose(fast_history[key], slow_history[key], rtol=1e-6, atol=1e-6, err_msg=key)
    fast_state, slow_state = fitted.model.module.state_dict(), slow.model.module.state_dict()
    for name, value in slow_state.items():
        torch.testing.assert_close(fast_state[name], value, rtol=0, atol=1e-6, msg=name)
