"""Predictors: one `Predictor` interface, one file per predictor, one registration line each.

BUILTIN maps a name to "module:Class" and the options that name passes to the class; a name
registered by an installed package under the `bench.predictors` entry point group joins them.
"""

from predictors.base import Predictor, Task

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

__all__ = ["BUILTIN", "OPT_IN", "Predictor", "Task"]
