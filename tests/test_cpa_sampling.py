"""CPA's predicted cells are draws from its own Gaussian predictive distribution: they keep the
decoder's mean, spread by the decoder's variance, are reproducible per seed, and `sample=False`
returns the decoder's means exactly as cpa-tools computes them."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from predictors import registry
from test_cpa import task  # noqa: F401  the same smoke task fixture

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cpa") is None, reason="cpa-tools is not installed (install.sh)")


REPEATS = 60  # copies of a cell type's controls: 60 x 60 = 3600 draws per gene


@pytest.fixture(scope="module")
def cpa(task):
    predictor = registry.create("CPA", seed=0)
    predictor.fit(task)
    return predictor


def decoder_variance(predictor, condition, controls: np.ndarray) -> np.ndarray:
    """The per-gene variance cpa-tools' own decoder outputs for these controls moved to `condition`."""
    module = predictor.model.module
    with torch.no_grad():
        z = module.get_expression(predictor._tensors(condition, controls), n_samples=1)["z"]
        return module.decoder(z)[1].cpu().numpy()


def test_sampling_is_the_default_of_both_cpa_predictors():
    assert registry.create("CPA").config["sample"] is True
    assert registry.create("CPA_transfer").config["sample"] is True


def test_sampled_cells_keep_the_models_mean_and_spread_by_its_variance(cpa, task, monkeypatch):
    condition = task.test_conditions[0]
    controls = task.controls(condition.cell_type)
    many = np.tile(controls, (REPEATS, 1))
    sampled = cpa.predict(condition, many)
    monkeypatch.setitem(cpa.config, "sample", False)
    means = cpa.predict(condition, many)
    variance = np.tile(decoder_variance(cpa, condition, controls), (REPEATS, 1))
    n = len(many)
    assert variance.mean() > 1e-2  # the model predicts a real spread, so the checks below can fail

    spread = np.sqrt(variance.mean(axis=0) / n)  # standard error of the per-gene average of draws
    assert np.all(np.abs(sampled.mean(axis=0) - means.mean(axis=0)) < 5 * spread)

    # Draws = means + independent noise: their per-gene variance exceeds the means' by the model's.
    excess = sampled.var(axis=0) - means.var(axis=0)
    error = np.sqrt(2.0 / n) * sampled.var(axis=0) + 2 * np.sqrt(variance.mean(axis=0) * means.var(axis=0) / n)
    assert np.all(np.abs(excess - variance.mean(axis=0)) < 5 * error)
    np.testing.assert_allclose(excess.sum(), variance.mean(axis=0).sum(), rtol=0.05)


def test_the_seed_fixes_the_draws_and_another_seed_draws_other_cells(cpa, task, monkeypatch):
    conditions = task.test_conditions[:4]
    first = cpa.predict_many(conditions, task.controls)
    again = cpa.predict_many(conditions[::-1], task.controls)
    alone = {c: cpa.predict(c, task.controls(c.cell_type)) for c in conditions}
    monkeypatch.setattr(cpa, "seed", 1)
    other = cpa.predict_many(conditions, task.controls)
    for c in conditions:
        np.testing.assert_array_equal(again[c], first[c])
        np.testing.assert_array_equal(alone[c], first[c])
        assert (other[c] != first[c]).any(axis=1).all()  # every cell drawn anew


def test_sample_false_returns_cpa_tools_decoder_means_exactly(cpa, task, monkeypatch):
    """The mean-only output the wrapper gave before sampling: `get_expression` on the batch of all
    conditions' relabelled controls (one chunk here), split per condition."""
    conditions = task.test_conditions[:4]
    sampled = cpa.predict_many(conditions, task.controls)
    monkeypatch.setitem(cpa.config, "sample", False)
    means = cpa.predict_many(conditions, task.controls)
    parts = [cpa._tensors(c, task.controls(c.cell_type)) for c in conditions]
    with torch.no_grad():
        expected = cpa.model.module.get_expression({k: torch.cat([p[k] for p in parts]) for k in parts[0]}, n_samples=1)["px"]
    sizes = np.cumsum([len(task.controls(c.cell_type)) for c in conditions])[:-1]
    for c, rows in zip(conditions, np.split(expected.numpy(), sizes)):
        np.testing.assert_array_equal(means[c], rows)
        assert not np.allclose(sampled[c], rows, atol=1e-3)
