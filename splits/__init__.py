"""Splits: which drugs and cells a predictor may train on, select on, and is tested on."""

from splits.base import Split, benchmark_split, get_split, split_names
from splits.unseen_drug_cell_line import unseen_drug_cell_line
from splits.unseen_drug_families import unseen_drug_families
from splits.unseen_drugs import from_obs_column, unseen_drugs

__all__ = ["Split", "benchmark_split", "get_split", "split_names", "unseen_drugs", "unseen_drug_families", "unseen_drug_cell_line",
           "from_obs_column"]
