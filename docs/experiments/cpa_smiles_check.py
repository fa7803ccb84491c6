"""What `CPA_smiles` (cpa-tools 0.8.8, `use_rdkit_embeddings=True`) trains, measured.

Trains CPA_smiles on generated data and records: (a) whether the fingerprint projection
(`pert_network.pert_transformation`) is in the optimisers' parameter groups and whether its weights
change; (b) whether a held-out drug's dose-response parameters (`pert_network.dosers.beta`/`.bias`)
change; (c) how much a held-out drug's prediction moves when its SMILES is swapped for another
molecule (same seed), next to the differences between training drugs; (d) seconds per epoch of
CPA_smiles and plain CPA. `tests/test_cpa_smiles.py` asserts the facts on the smoke data; the numbers
in docs/baselines.md (CPA_smiles) come from

    OMP_NUM_THREADS=1 python docs/experiments/cpa_smiles_check.py --data default --epochs 30 --timing-epochs 6

No monkeypatching of cpa-tools: the initial weights are copied through the predictor's
`_before_single_cell` hook, which runs after the model is built and before it trains.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import time

import anndata as ad
import numpy as np
import torch

from bench.data.benchmark import load_default
from bench.data.drugs import SMILES
from bench.schema import DRUG, Condition
from predictors import registry
from predictors.base import Task
from splits import get_split
from splits.base import TEST, TRAIN, VAL

PROJECTION = ("pert_network.pert_transformation.weight", "pert_network.pert_transformation.bias")
EMBEDDING = "pert_network.pert_embedding.weight"
SWAP_SMILES = "CCCCCCCCCCCCCCCC(=O)O"  # palmitic acid: no ring, unlike every generated molecule
FRAGMENTS = ("C", "CC", "O", "N", "F", "Cl", "Br", "C#N", "OC", "C(=O)O", "C(F)(F)F", "S(=O)(=O)N", "N(C)C", "C(=O)N")


def generated_smiles(drugs: list[str]) -> dict[str, str]:
    """A distinct di-substituted benzene per drug (para positions), for data without SMILES."""
    pairs = list(itertools.combinations_with_replacement(FRAGMENTS, 2))
    if len(drugs) > len(pairs):
        raise ValueError(f"only {len(pairs)} generated molecules for {len(drugs)} drugs")
    return {d: f"c1cc({a})ccc1{b}" for d, (a, b) in zip(sorted(drugs), pairs)}


def with_smiles(adata: ad.AnnData, smiles: dict[str, str]) -> ad.AnnData:
    """A copy of `adata` whose treated rows carry obs `smiles` from `smiles` (the others: missing)."""
    out = adata.copy()
    out.obs[SMILES] = out.obs[DRUG].astype(str).map(smiles).astype(object).to_numpy()
    return out


def make_task(sc: ad.AnnData, bulk: ad.AnnData | None, epochs: int, split_seed: int = 0) -> Task:
    split = get_split("unseen_drugs", sc, seed=split_seed)
    return Task(train=sc[split.mask(TRAIN)].copy(), bulk=bulk, test_conditions=split.conditions(sc.obs, TEST),
                val_conditions=split.conditions(sc.obs, VAL), max_epochs=epochs)


def fit(name: str, task: Task, seed: int = 0, **options) -> tuple[object, dict[str, torch.Tensor], list[float]]:
    """The fitted predictor, its module's weights before training, and each epoch's end time."""
    predictor = registry.create(name, seed=seed, sample=False, **options)
    initial: dict[str, torch.Tensor] = {}
    predictor._before_single_cell = lambda _task: initial.update(copy.deepcopy(predictor.model.module.state_dict()))
    stamps: list[float] = []
    task.on_epoch = lambda epoch, stats: stamps.append(time.perf_counter())
    start = time.perf_counter()
    predictor.fit(task)
    return predictor, initial, [start, *stamps]


def mean_profiles(predictor, conditions: list[Condition], task: Task) -> dict[Condition, np.ndarray]:
    """Per condition, the predicted decoder mean averaged over that cell type's control cells."""
    return {c: m.mean(axis=0) for c, (m, _) in predictor.distribution(conditions, task.controls).items()}


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference over genes."""
    return float(np.abs(a - b).mean())


def check(sc: ad.AnnData, bulk: ad.AnnData | None, epochs: int, seed: int = 0) -> dict:
    """Every measured fact as a JSON-ready dict (see the module docstring)."""
    task = make_task(sc, bulk, epochs)
    first, initial, _ = fit("CPA_smiles", task, seed)
    module = first.model.module
    after = module.state_dict()
    named = dict(module.named_parameters())
    optimised = {id(p) for opt in first.model.trainer.optimizers for group in opt.param_groups for p in group["params"]}
    vocab = first._vocab
    held = sorted({c.drug for c in task.test_conditions + task.val_conditions})
    trained = sorted({c.drug for c in task.training_conditions()})
    doser_steps = int(max(s["step"] for s in first.model.trainer.optimizers[1].state.values()))

    def doser_change(key: str, drugs: list[str]) -> float:
        idx = [vocab[d] for d in drugs]
        return float((after[key][0, idx] - initial[key][0, idx]).abs().max())

    facts: dict = {
        "epochs": epochs, "held_out_drugs": held, "n_training_drugs": len(trained),
        "not_optimised": sorted(n for n, p in named.items() if id(p) not in optimised),
        "requires_grad": {n: bool(named[n].requires_grad) for n in (*PROJECTION, EMBEDDING)},
        "projection_norm": {n: float(initial[n].norm()) for n in PROJECTION},
        "projection_change": {n: float((after[n] - initial[n]).norm()) for n in PROJECTION},
        # gradients reach the projection (and pile up: no optimiser zeroes them); only the update is missing
        "projection_grad_norm": {n: float(named[n].grad.norm()) if named[n].grad is not None else 0.0 for n in PROJECTION},
        "encoder_relative_change": float(sum((after[k] - initial[k]).norm() ** 2 for k in after if k.startswith("encoder.")
                                             and after[k].is_floating_point()) ** 0.5
                                         / sum(initial[k].norm() ** 2 for k in after if k.startswith("encoder.")
                                               and initial[k].is_floating_point()) ** 0.5),
        "doser_steps": doser_steps,
        "doser_lr": float(first.model.trainer.optimizers[1].param_groups[0]["lr"]),
        "held_out_beta_max_change": doser_change("pert_network.dosers.beta", held),
        "held_out_bias_max_change": doser_change("pert_network.dosers.bias", held),
        "training_beta_max_change": doser_change("pert_network.dosers.beta", trained),
        "training_bias_max_change": doser_change("pert_network.dosers.bias", trained),
    }

    # (c) the first test drug's SMILES swapped for another molecule (held-out SMILES come from the bulk set)
    drug = sorted({c.drug for c in task.test_conditions})[0]
    swapped_bulk = bulk.copy()
    swapped_bulk.obs[SMILES] = np.where(swapped_bulk.obs[DRUG].astype(str) == drug, SWAP_SMILES,
                                        swapped_bulk.obs[SMILES].astype(object))
    second, _, _ = fit("CPA_smiles", make_task(sc, swapped_bulk, epochs), seed)
    other = second.model.module.state_dict()
    same_training = all(torch.equal(after[k], other[k]) for k in after if k != EMBEDDING)
    rows_differ = [i for i in range(after[EMBEDDING].shape[0]) if not torch.equal(after[EMBEDDING][i], other[EMBEDDING][i])]
    conds = [c for c in task.test_conditions if c.drug == drug]
    mine, theirs = mean_profiles(first, conds, task), mean_profiles(second, conds, task)
    swap = float(np.mean([mad(mine[c], theirs[c]) for c in conds]))
    control = {c: Condition(c.cell_type, task.control, 0.0) for c in conds}
    base = mean_profiles(first, list(dict.fromkeys(control.values())), task)
    effect = float(np.mean([mad(mine[c], base[control[c]]) for c in conds]))
    pair_conds = [Condition(c.cell_type, d, c.dose) for c in conds for d in trained]
    pairs = mean_profiles(first, pair_conds, task)
    between = float(np.mean([mad(pairs[Condition(c.cell_type, a, c.dose)], pairs[Condition(c.cell_type, b, c.dose)])
                             for c in conds for a, b in itertools.combinations(trained, 2)]))
    training_effect = float(np.mean([mad(pairs[Condition(c.cell_type, d, c.dose)], base[control[c]])
                                     for c in conds for d in trained]))
    vectors, swapped_vectors = first.drug_vectors(), second.drug_vectors()
    facts.update({
        "swapped_drug": drug, "swap_smiles": SWAP_SMILES,
        "swap_same_trained_weights": bool(same_training),
        "swap_embedding_rows_differ": [name for name, i in vocab.items() if i in rows_differ],
        "swap_prediction_change": swap,
        "training_drug_pair_difference": between,
        "swap_to_pair_ratio": swap / between if between > 0 else float("nan"),
        "held_out_effect": effect, "training_drug_effect": training_effect,
        "held_out_vector_norm": float(np.linalg.norm(vectors[drug])),
        "held_out_vector_change": float(np.linalg.norm(vectors[drug] - swapped_vectors[drug])),
        "training_vector_norm": float(np.mean([np.linalg.norm(vectors[d]) for d in trained])),
        "control_drug_vector_at_dose_0": float(module.pert_network(torch.tensor([[vocab[task.control]]]),
                                                                    torch.zeros(1, 1)).detach().abs().max()),
    })
    return facts


def seconds_per_epoch(sc: ad.AnnData, bulk: ad.AnnData | None, epochs: int, rounds: int = 2, seed: int = 0) -> dict:
    """Median seconds per training epoch (the first, which includes set-up, left out) of CPA_smiles and
    CPA, fitted alternately `rounds` times each so that a change in machine load hits both alike."""
    times: dict[str, list[float]] = {"CPA_smiles": [], "CPA": []}
    for _ in range(rounds):
        for name in times:
            _, _, stamps = fit(name, make_task(sc, bulk, epochs), seed)
            times[name].extend(np.diff(stamps)[1:].tolist())
    return {name: float(np.median(t)) for name, t in times.items()}


def data_with_smiles(name: str) -> tuple[ad.AnnData, ad.AnnData]:
    """The embedded data set `name`, its single-cell and bulk sets carrying SMILES for every single-cell
    drug (the generated di-substituted benzenes where the data carry none)."""
    bench = load_default(name, seed=0)
    drugs = sorted(set(bench.sc.obs[DRUG].astype(str)) - {"control"})
    have = {}
    if SMILES in bench.sc.obs:
        obs = bench.sc.obs.loc[bench.sc.obs[SMILES].notna(), [DRUG, SMILES]]
        have = dict(zip(obs[DRUG].astype(str), obs[SMILES].astype(str)))
    smiles = have if set(drugs) <= set(have) else generated_smiles(drugs)
    return with_smiles(bench.sc, smiles), with_smiles(bench.bulk, smiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="smoke", choices=["smoke", "default"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-epochs", type=int, default=6, help="epochs per timing fit (0: no timing)")
    parser.add_argument("--rounds", type=int, default=2, help="timing fits per predictor, alternating")
    args = parser.parse_args()
    sc, bulk = data_with_smiles(args.data)
    facts = check(sc, bulk, args.epochs, args.seed)
    if args.timing_epochs:
        facts["seconds_per_epoch"] = seconds_per_epoch(sc, bulk, args.timing_epochs, args.rounds, args.seed)
    print(json.dumps(facts, indent=1))


if __name__ == "__main__":
    main()
