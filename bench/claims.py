"""The seed paper's claims, tested on published results: each claim, the comparisons that test it
at the drug level (paired over held-out drugs, two-sided Wilcoxon signed-rank at 5%), and a verdict
of supported, contradicted or not separated, with the numbers behind it. Built from run folders
only, so the page changes when the results do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from bench.board import Board, across, higher_is_better
from bench.schema import DRUG

PAPER_SIX = ["mean", "mean_DE50", "mean_DE10", "dis", "dis_DE50", "dis_DE10"]
DISTRIBUTION = ["dis", "dis_DE50", "dis_DE10"]
NO_PRETRAIN = "BERT"
PRETRAINED = ["BERT_transfer", "BERT_whole", "BERT_subset"]
BASELINES = ["random", "knn", "CPA", "CPA_transfer", "cVAE"]
ALPHA = 0.05
PAPER_SPEEDUP = 4.41 / 0.38  # CPA 4.41 min per epoch, PertBERT 0.38 min (the paper's section 4)

SUPPORTED, CONTRADICTED, NOT_SEPARATED, MISSING = "supported", "contradicted", "not separated", "not run"


@dataclass
class Verdict:
    """One claim on one data set: the verdict and the numbers behind it."""

    verdict: str
    evidence: str


def drug_difference(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> tuple[float, float, int]:
    """Mean per-drug difference of `metric` between two predictors' per-condition frames (signed
    so that positive favours `a`), its two-sided Wilcoxon p value, and the number of drugs."""
    keys = ["cell_type", DRUG, "dose"]
    merged = a[keys + [metric]].merge(b[keys + [metric]], on=keys, suffixes=("_a", "_b")).dropna()
    per_drug = merged.groupby(DRUG)[[f"{metric}_a", f"{metric}_b"]].mean()
    sign = 1.0 if higher_is_better(metric) is not False else -1.0
    diff = sign * (per_drug[f"{metric}_a"] - per_drug[f"{metric}_b"]).to_numpy()
    if len(diff) < 2 or not np.any(diff):
        return float(np.mean(diff)) if len(diff) else float("nan"), 1.0, len(diff)
    return float(diff.mean()), float(stats.wilcoxon(diff).pvalue), len(diff)


def tally(frames: dict[str, pd.DataFrame], pairs: list[tuple[str, str]], metrics: list[str]) -> tuple[int, int, int, int]:
    """Over every (a, b) pair and metric: comparisons where `a` is significantly better, where it
    is significantly worse, all comparisons made, and the fewest drugs any one rested on."""
    better = worse = total = 0
    drugs = []
    for a, b in pairs:
        for m in metrics:
            if m not in frames[a] or m not in frames[b]:
                continue
            diff, p, n = drug_difference(frames[a], frames[b], m)
            total += 1
            drugs.append(n)
            better += p < ALPHA and diff > 0
            worse += p < ALPHA and diff < 0
    return better, worse, total, min(drugs, default=0)


def majority(better: int, worse: int, total: int) -> str:
    """Supported when most comparisons favour the claim significantly, contradicted when most go
    significantly against it, otherwise not separated."""
    if total == 0:
        return MISSING
    return SUPPORTED if better > total / 2 else CONTRADICTED if worse > total / 2 else NOT_SEPARATED


def counted(better: int, worse: int, total: int, drugs: int) -> str:
    return f"significantly better in {better}/{total}, worse in {worse}/{total} comparisons ({drugs} drugs each)"


def pretraining(frames: dict[str, pd.DataFrame]) -> Verdict:
    pairs = [(p + s, NO_PRETRAIN + s) for s in ("", "_mlp") for p in PRETRAINED if p + s in frames and NO_PRETRAIN + s in frames]
    b, w, t, n = tally(frames, pairs, PAPER_SIX)
    return Verdict(majority(b, w, t), f"{len(pairs)} pre-trained vs not pre-trained pairs (same decoder) x the six metrics: "
                   + counted(b, w, t, n))


def distribution(frames: dict[str, pd.DataFrame]) -> Verdict:
    ours = [p for p in PRETRAINED if p in frames]
    baselines = [b for b in BASELINES if b in frames]
    if not ours or not baselines:
        return Verdict(MISSING, "needs a pre-trained BERT variant and the baselines")
    per, verdicts = [], []
    for base in baselines:
        b, w, t, _ = tally(frames, [(p, base) for p in ours], DISTRIBUTION)
        verdicts.append(majority(b, w, t))
        per.append(f"{base} {b}+/{w}-/{t}")
    verdict = (SUPPORTED if all(v == SUPPORTED for v in verdicts)
               else CONTRADICTED if any(v == CONTRADICTED for v in verdicts) else NOT_SEPARATED)
    return Verdict(verdict, f"{', '.join(ours)} vs each baseline on {', '.join(DISTRIBUTION)} "
                   f"(significantly better+/worse-/comparisons): {'; '.join(per)}")


def decoder(frames: dict[str, pd.DataFrame]) -> Verdict:
    pairs = [(p, p + "_mlp") for p in [NO_PRETRAIN, *PRETRAINED] if p in frames and p + "_mlp" in frames]
    b, w, t, n = tally(frames, pairs, PAPER_SIX)
    return Verdict(majority(b, w, t), f"{len(pairs)} LSTM vs MLP pairs x the six metrics: " + counted(b, w, t, n))


def paired_runs(boards: list[Board], a: list[str], b: str, key: str) -> np.ndarray:
    """(value of each `a` run, value of the `b` run) pairs of result field `key`, matched by board and seed."""
    pairs = []
    for board in boards:
        runs = {(r["predictor"], r["seed"]): r.get(key) for r in board.ok()}
        for (name, seed), value in runs.items():
            other = runs.get((b, seed))
            if name in a and value is not None and other is not None:
                pairs.append((float(value), float(other)))
    return np.array(pairs, dtype=float).reshape(-1, 2)


def convergence(boards: list[Board]) -> Verdict:
    epochs = paired_runs(boards, PRETRAINED, NO_PRETRAIN, "val_epoch")
    if len(epochs) < 2:
        return Verdict(MISSING, "needs BERT and pre-trained BERT runs")
    diff = epochs[:, 1] - epochs[:, 0]  # positive: the pre-trained run selected an earlier epoch
    p = float(stats.wilcoxon(diff).pvalue) if np.any(diff) else 1.0
    verdict = NOT_SEPARATED if p >= ALPHA else SUPPORTED if diff.mean() > 0 else CONTRADICTED
    return Verdict(verdict, f"validation-selected epoch, pre-trained (LSTM) {epochs[:, 0].mean():.1f} vs not pre-trained "
                   f"{epochs[:, 1].mean():.1f} over {len(epochs)} paired runs (Wilcoxon p = {p:.3g})")


def speed(boards: list[Board]) -> Verdict:
    times = paired_runs(boards, [NO_PRETRAIN, *PRETRAINED], "CPA", "seconds_per_epoch")
    if len(times) < 2:
        return Verdict(MISSING, "needs CPA and BERT runs")
    ratio = times[:, 1] / times[:, 0]
    p = float(stats.wilcoxon(np.log(ratio)).pvalue) if np.any(ratio != 1) else 1.0
    verdict = NOT_SEPARATED if p >= ALPHA else SUPPORTED if np.median(ratio) > 1 else CONTRADICTED
    return Verdict(verdict, f"CPA / BERT seconds per epoch: median {np.median(ratio):.1f}x (range {ratio.min():.1f}-"
                   f"{ratio.max():.1f}x) over {len(ratio)} paired runs, Wilcoxon p = {p:.3g}; the paper: {PAPER_SPEEDUP:.1f}x")


CLAIMS: list[tuple[str, Callable[..., Verdict], str]] = [  # (claim, its test, what the test reads)
    ("Pre-trained models are better than the model without pre-training on most metrics (Table 2)", pretraining, "frames"),
    ("PertBERT is better than every baseline on the distribution metrics (Table 2)", distribution, "frames"),
    ("The LSTM decoder outperforms the MLP decoder (Table 3)", decoder, "frames"),
    ("Pre-trained models converge faster (fewer epochs to their best validation score)", convergence, "boards"),
    ("PertBERT is faster per epoch than CPA (0.38 vs 4.41 min per epoch, 11.6x)", speed, "boards"),
]


def judge(boards: list[Board]) -> list[Verdict]:
    """Every claim's verdict on one group of boards (a data set's folds or split seeds, pooled)."""
    names = list(dict.fromkeys(n for b in boards for n in b.predictors))
    frames = {n: f for n in names if not (f := across(boards, n)).empty}
    return [test(frames) if needs == "frames" else test(boards) for _, test, needs in CLAIMS]


def render_claims(groups: dict[str, list[Board]]) -> str:
    """The claims page: one row per claim, one verdict column per data set and split."""
    verdicts = {base: judge(group) for base, group in groups.items()}
    head = ["claim", *(f"`{base}`" for base in verdicts)]
    lines = ["# The seed paper's claims, tested", "",
             "Each claim of the seed paper is tested on the published runs of each data set at the drug level: "
             "per-drug means over held-out drugs (every fold pooled), compared in pairs with a two-sided Wilcoxon "
             "signed-rank test at the 5% level, validation-selected epochs. A claim over several comparisons is "
             "*supported* when most of them favour it significantly, *contradicted* when most go significantly "
             "against it, and *not separated* otherwise (no correction for multiple comparisons: read the counts). "
             "Generated from the results by `bench leaderboard`; never edited by hand.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, (claim, _, _) in enumerate(CLAIMS):
        cells = [f"**{v[i].verdict}**: {v[i].evidence}" for v in verdicts.values()]
        lines.append(f"| {claim} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
