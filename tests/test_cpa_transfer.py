"""Parts of the CPA wrappers that need no cpa-tools: the weight copy across gene sets and the
reason `--predictors all` gives when cpa-tools is missing."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bench.errors import BenchError
from predictors.base import Task
from predictors.cpa_model import CpaPredictor, CpaTransfer, copy_gene_indexed


def test_gene_indexed_weights_land_in_the_shared_genes_slots():
    torch.manual_seed(0)
    source = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 3))  # 3 shared genes in, 3 out
    target = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 5))  # 5 single-cell genes
    before = {k: v.clone() for k, v in target.state_dict().items()}
    positions = [0, 2, 4]
    copy_gene_indexed(source, target, positions)
    torch.testing.assert_close(target[0].weight[:, positions], source[0].weight)
    torch.testing.assert_close(target[0].bias, source[0].bias)
    torch.testing.assert_close(target[1].weight[positions], source[1].weight)
    torch.testing.assert_close(target[1].bias[positions], source[1].bias)
    torch.testing.assert_close(target[0].weight[:, [1, 3]], before["0.weight"][:, [1, 3]])  # sc-only genes untouched
    torch.testing.assert_close(target[1].bias[[1, 3]], before["1.bias"][[1, 3]])


def test_weights_that_do_not_map_are_refused():
    with pytest.raises(BenchError, match="cannot map weight"):
        copy_gene_indexed(torch.nn.Linear(3, 4), torch.nn.Linear(5, 6), [0, 1, 2])


@pytest.mark.parametrize("cls", [CpaPredictor, CpaTransfer])
def test_missing_cpa_tools_is_reported_with_how_to_install(cls, smoke, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cpa" else real(name, *a))
    task = Task(train=smoke.sc, bulk=smoke.bulk, test_conditions=[], val_conditions=[])
    reason = cls.unavailable(task)
    assert "cpa" in reason and "install.sh" in reason
