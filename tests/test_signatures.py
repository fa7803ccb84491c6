"""Drug signatures without cell-line confounding: bulk lines differ in baseline, drugs sit in
different lines, and a drug's signature must come from its own lines' controls only."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG
from predictors.base import Task
from predictors.cvae import bulk_signatures
from predictors.knn_bulk import KnnBulk
from predictors.pertbert.predictor import PertBERT
from predictors.pertbert.pretrain import untrained

GENES = 40


def confounded_bulk(seed: int = 0, far_line_shift: float = 5.0) -> tuple[ad.AnnData, np.ndarray]:
    """Lines L1, L2, L3 whose baselines differ by several units; drug A only in L1, drug B only in
    L2, both with the same true shift; C in every line. Returns the set and the true shift."""
    rng = np.random.default_rng(seed)
    base = {"L1": np.zeros(GENES), "L2": np.full(GENES, 3.0), "L3": np.full(GENES, far_line_shift)}
    shift = rng.normal(0, 1, GENES)
    rows, x = [], []
    for line, b in base.items():
        for drug, lines in ((CONTROL, "L1 L2 L3"), ("A", "L1"), ("B", "L2"), ("C", "L1 L2 L3")):
            if line in lines.split():
                for _ in range(6):
                    rows.append((drug, line, 0.0 if drug == CONTROL else 1000.0))
                    x.append(b + (shift if drug in "AB" else 0.5 if drug == "C" else 0) + rng.normal(0, 0.01, GENES))
    obs = pd.DataFrame(rows, columns=[DRUG, CELL_TYPE, DOSE], index=[f"p{i}" for i in range(len(rows))])
    return ad.AnnData(np.array(x, dtype=np.float32), obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(GENES)])), shift


def test_knn_fallback_signature_is_the_in_line_shift(smoke):
    bulk, shift = confounded_bulk()
    knn = KnnBulk()
    knn.fit(Task(train=smoke.sc, bulk=bulk, test_conditions=[], val_conditions=[]))
    for drug in ("A", "B"):
        np.testing.assert_allclose(knn._signature(drug, None), shift, atol=0.02)  # pooled: lines never mixed
    np.testing.assert_allclose(knn._signature("A", "L1"), shift, atol=0.02)
    assert knn._signature("A", "L2") is None


def test_cvae_signatures_do_not_encode_which_lines_measured_a_drug():
    bulk, shift = confounded_bulk()
    sig = bulk_signatures(bulk, ["A", "B"], CONTROL)
    np.testing.assert_allclose(sig[0], sig[1], atol=0.05)


@pytest.mark.parametrize("far_line_shift", [-20.0, 20.0])
def test_pertbert_representation_ignores_controls_of_lines_the_drug_was_not_measured_in(far_line_shift):
    """Moving line L3 (which never measured A or B) moves neither drug's representation."""
    reference, _ = confounded_bulk()
    moved, _ = confounded_bulk(far_line_shift=far_line_shift)
    pre = untrained(reference, {"patch": 10, "width": 16, "layers": 1}, seed=0, control=CONTROL)
    model = PertBERT()
    a = model.drug_representations(pre, reference, ["A", "B", "C"], CONTROL)
    b = model.drug_representations(pre, moved, ["A", "B", "C"], CONTROL)
    for drug in ("A", "B"):
        np.testing.assert_allclose(a[drug], b[drug], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a["C"], b["C"], atol=1e-4)  # C was measured in L3: its representation moves
