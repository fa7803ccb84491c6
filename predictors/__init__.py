"""Predictors: one `Predictor` interface, one file per predictor, one registration line each.

BUILTIN maps a name to "module:Class" and the options that name passes to the class; a name
registered by an installed package under the `bench.predictors` entry point group joins them.
MEMORY holds each built-in's measured peak memory per run (`Memory`); a plug-in declares its own
as the class attribute `memory`.
"""

from predictors.base import Memory, Predictor, Task

BUILTIN: dict[str, tuple[str, dict]] = {
    "random": ("predictors.random_conditions:RandomConditions", {}),
    "knn": ("predictors.knn_bulk:KnnBulk", {}),
    "control_mean": ("predictors.floors:ControlCells", {}),
    "train_mean": ("predictors.floors:TrainMeanShift", {}),
    "linear": ("predictors.linear:LinearBulk", {}),
    "knn_structure": ("predictors.knn_structure:KnnStructure", {}),
    "ridge_structure": ("predictors.ridge_structure:RidgeStructure", {}),
    "oracle": ("predictors.oracle:Oracle", {}),
    "CPA": ("predictors.cpa_model:CpaPredictor", {}),
    "CPA_transfer": ("predictors.cpa_model:CpaTransfer", {}),
    "CPA_smiles": ("predictors.cpa_smiles:CpaSmiles", {}),
    "cVAE": ("predictors.cvae:CVAE", {}),
    "chemCPA": ("predictors.chemcpa:ChemCPA", {}),
    "chemCPA_transfer": ("predictors.chemcpa:ChemCPATransfer", {}),
    "biolord": ("predictors.biolord_model:Biolord", {}),
    "scGen": ("predictors.scgen_model:ScGen", {}),
    "BERT": ("predictors.pertbert:PertBERT", {"pretrain": None}),
    "BERT_transfer": ("predictors.pertbert:PertBERT", {"pretrain": "transfer"}),
    "BERT_whole": ("predictors.pertbert:PertBERT", {"pretrain": "whole"}),
    "BERT_subset": ("predictors.pertbert:PertBERT", {"pretrain": "subset"}),
    "BERT_mlp": ("predictors.pertbert:PertBERT", {"pretrain": None, "decoder": "mlp"}),
    "BERT_transfer_mlp": ("predictors.pertbert:PertBERT", {"pretrain": "transfer", "decoder": "mlp"}),
    "BERT_whole_mlp": ("predictors.pertbert:PertBERT", {"pretrain": "whole", "decoder": "mlp"}),
    "BERT_subset_mlp": ("predictors.pertbert:PertBERT", {"pretrain": "subset", "decoder": "mlp"}),
    "BERT_nobulk": ("predictors.pertbert:PertBERTNoBulk", {}),
}

# Registered, but left out of `all` (run by name, e.g. `--predictors all,biolord`): at the default
# shape each costs more than the main job's time budget allows (README "Predictors" says how much).
OPT_IN: tuple[str, ...] = ("biolord",)

# One run's peak resident memory in a pool process: base GiB + factor x the data's dense bytes, fitted
# through the peaks measured by tests/bench_worker_memory.py at the default shape and at a fifth of
# the full one, rounded up (docs/statistics.md#memory-and-the-pool).
_BERT, _BERT_MLP = Memory(1.00, 5.05), Memory(0.75, 5.05)  # the most of each decoder's measured variants
MEMORY: dict[str, Memory] = {
    "random": Memory(0.50, 3.10),
    "knn": Memory(0.50, 3.10),
    "control_mean": Memory(0.50, 2.55),
    "train_mean": Memory(0.50, 2.95),
    "linear": Memory(0.55, 3.60),
    "knn_structure": Memory(0.50, 3.15),
    "ridge_structure": Memory(0.55, 4.05),
    "oracle": Memory(0.50, 2.95),
    "CPA": Memory(1.30, 4.80),
    "CPA_transfer": Memory(1.25, 4.85),
    "CPA_smiles": Memory(1.40, 4.75),
    "cVAE": Memory(0.70, 4.05),
    "chemCPA": Memory(0.75, 4.40),
    "chemCPA_transfer": Memory(0.75, 4.45),
    "biolord": Memory(1.60, 4.00),
    "scGen": Memory(1.10, 3.50),  # measured on unseen_drug_cell_line, the split it runs on
    "BERT": _BERT,
    "BERT_transfer": _BERT,
    "BERT_whole": _BERT,
    "BERT_subset": _BERT,
    "BERT_mlp": _BERT_MLP,
    "BERT_transfer_mlp": _BERT_MLP,
    "BERT_whole_mlp": _BERT_MLP,
    "BERT_subset_mlp": _BERT_MLP,
    "BERT_nobulk": Memory(0.95, 5.15),
}

__all__ = ["BUILTIN", "MEMORY", "OPT_IN", "Memory", "Predictor", "Task"]
