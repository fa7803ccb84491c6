"""PertBERT pre-training on the bulk set (the paper's Table 1), with checkpoints cached on disk.

Pre-training sets: `whole` (every bulk profile), `subset` (a curated subset: the profiles of the
best-covered half of the bulk cell lines, always including the single-cell ones), `transfer` (bulk
restricted to the single-cell cell lines and drugs, held-out drugs included). Values are
standardised per gene over the whole bulk set. About 10% of the chosen profiles are held out, whole
conditions (cell line, drug, dose) at a time so no replicate of a held-out condition is trained on,
to report cell_acc, drug_acc, dose_rmse (log10 nM+1) and mask_rmse (standardised units).

Four-task pre-training runs in one stage (every task from the first epoch) or, as the paper has it,
two: masked-value regression alone for the first half of the epochs, then all four tasks.

Weights are initialised from local seeds (`local_seed`), never from whatever state torch's global
generator was left in, so a checkpoint read from the cache and one just trained give the same runs.
The settings are predictors/pertbert/settings.py; checkpoints (tensors read with weights_only, a
manifest with their sha256) predictors/pertbert/checkpoint.py: one that fails its check is trained again.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from torch import nn

from bench.errors import BenchError, DataUnsuitable
from bench.fingerprint import adata_fingerprint, config_hash
from bench.io import file_lock
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG
from predictors.base import dense
from predictors.pertbert.checkpoint import CheckpointUnusable, read_checkpoint, write_checkpoint
from predictors.pertbert.model import EncoderConfig, PatchEncoder, PretrainHeads
from predictors.pertbert.settings import DATA_SETS, PretrainSetting, local_seed

HELD_OUT_FRACTION = 0.1


def log_dose(dose: np.ndarray) -> np.ndarray:
    return np.log10(np.asarray(dose, dtype=np.float64) + 1.0).astype(np.float32)


def select_profiles(bulk: ad.AnnData, data: str, sc_cell_types: list[str], sc_drugs: list[str], control: str = CONTROL) -> np.ndarray:
    """Row indices of the bulk profiles in pre-training set `data`."""
    lines = bulk.obs[CELL_TYPE].astype(str).to_numpy()
    drugs = bulk.obs[DRUG].astype(str).to_numpy()
    if data == "whole":
        keep = np.ones(len(lines), dtype=bool)
    elif data == "subset":
        names, counts = np.unique(lines, return_counts=True)
        best = set(names[np.argsort(-counts, kind="stable")[: max(1, len(names) // 2)]]) | set(sc_cell_types)
        keep = np.isin(lines, list(best))
    elif data == "transfer":
        keep = np.isin(lines, sc_cell_types) & np.isin(drugs, list(sc_drugs) + [control])
    else:
        raise BenchError(f"unknown pre-training set '{data}': expected one of {', '.join(DATA_SETS)}")
    rows = np.flatnonzero(keep)
    if rows.size < 20:
        where = " of the single-cell cell lines and drugs" if data == "transfer" else ""
        raise DataUnsuitable(f"pre-training set '{data}' has only {rows.size} bulk profiles{where} (at least 20 needed)")
    return rows


def hold_out_conditions(obs: pd.DataFrame, rows: np.ndarray, seed: int,
                        fraction: float = HELD_OUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Split `rows` of `obs` into (held out, training) by whole conditions (cell line, drug, dose): a
    seeded random order of the conditions is taken until it covers `fraction` of the rows (at least
    10), so every replicate of a condition falls on one side. At least one condition is trained on."""
    keys = obs.iloc[rows][[CELL_TYPE, DRUG, DOSE]].astype({CELL_TYPE: str, DRUG: str, DOSE: float})
    condition = keys.groupby([CELL_TYPE, DRUG, DOSE], sort=True, dropna=False).ngroup().to_numpy()
    sizes = np.bincount(condition)
    if len(sizes) < 2:
        raise DataUnsuitable(f"the {len(rows)} pre-training profiles are all one condition: none can be held out")
    order = np.random.default_rng(seed).permutation(len(sizes))
    target = max(10, round(fraction * len(rows)))
    n_held = min(int(np.searchsorted(np.cumsum(sizes[order]), target)) + 1, len(sizes) - 1)
    held = np.isin(condition, order[:n_held])
    return rows[held], rows[~held]


@dataclass
class Pretrained:
    """A pre-trained encoder with everything needed to reuse it."""

    encoder: PatchEncoder
    heads: PretrainHeads
    genes: np.ndarray  # bulk genes, encoder order
    mean: np.ndarray  # per-gene standardisation over the whole bulk set
    std: np.ndarray
    cell_lines: list[str]
    drugs: list[str]
    metrics: dict
    setting: PretrainSetting | None

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    def to(self, device: torch.device | str) -> Pretrained:
        """Move the encoder and heads to `device` (in place); returns self."""
        self.encoder.to(device)
        self.heads.to(device)
        return self

    def state(self) -> dict:
        return {
            "encoder_config": self.encoder.cfg.to_dict(),
            "encoder": self.encoder.state_dict(),
            "heads": self.heads.state_dict(),
            "genes": list(self.genes),
            "mean": self.mean,
            "std": self.std,
            "cell_lines": self.cell_lines,
            "drugs": self.drugs,
            "metrics": self.metrics,
            "setting": asdict(self.setting) if self.setting else None,
        }

    @classmethod
    def from_state(cls, state: dict) -> Pretrained:
        cfg = EncoderConfig(**state["encoder_config"])
        encoder, heads = PatchEncoder(cfg), PretrainHeads(cfg, len(state["cell_lines"]), len(state["drugs"]))
        encoder.load_state_dict(state["encoder"])
        heads.load_state_dict(state["heads"])
        setting = PretrainSetting(**state["setting"]) if state["setting"] else None
        return cls(encoder, heads, np.array(state["genes"]), np.asarray(state["mean"]), np.asarray(state["std"]),
                   list(state["cell_lines"]), list(state["drugs"]), dict(state["metrics"]), setting)

    def save(self, path: Path) -> None:
        """Write the checkpoint: tensors and a manifest with their sha256 (predictors/pertbert/checkpoint.py)."""
        write_checkpoint(path, self.state())

    @classmethod
    def load(cls, path: Path) -> Pretrained:
        """Read a checkpoint written by `save`; `CheckpointUnusable` with the reason when it cannot be used."""
        state = read_checkpoint(path)
        try:
            return cls.from_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a manifest that does not fit its tensors
            raise CheckpointUnusable(f"its manifest does not fit its tensors ({type(exc).__name__})") from None


def untrained(bulk: ad.AnnData, cfg_overrides: dict, seed: int, control: str = CONTROL) -> Pretrained:
    """A randomly initialised encoder over the bulk genes (the `BERT` variant: no pre-training), its
    weights drawn from `seed` alone."""
    x = dense(bulk.X)
    cfg = EncoderConfig(n_genes=bulk.n_vars, **cfg_overrides)
    lines = sorted(set(bulk.obs[CELL_TYPE].astype(str)))
    drugs = sorted(set(bulk.obs[DRUG].astype(str)))
    with local_seed(seed):
        encoder, heads = PatchEncoder(cfg), PretrainHeads(cfg, len(lines), len(drugs))
    return Pretrained(encoder, heads, np.asarray(bulk.var_names), x.mean(axis=0), x.std(axis=0) + 1e-6, lines, drugs,
                      {}, None)


def _random_mask(shape: tuple[int, ...], ratio: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) < ratio).float()


def evaluate(model: Pretrained, x: torch.Tensor, cell: torch.Tensor, drug: torch.Tensor, dose: torch.Tensor,
             setting: PretrainSetting) -> dict:
    """Table 1 metrics on held-out profiles (fixed mask seed, so runs are comparable)."""
    gen = torch.Generator().manual_seed(12345)
    hidden = _random_mask(tuple(x.shape), setting.mask, gen).to(x.device)
    model.encoder.eval()
    with torch.no_grad():
        out = model.heads(model.encoder(x, hidden))
    sel = hidden.bool()
    metrics = {"mask_rmse": float(torch.sqrt(((out["values"] - x)[sel] ** 2).mean()))}
    if setting.four_task:
        metrics["cell_acc"] = float((out["cell_line"].argmax(1) == cell).float().mean())
        metrics["drug_acc"] = float((out["drug"].argmax(1) == drug).float().mean())
        metrics["dose_rmse"] = float(torch.sqrt(((out["dose"] - dose) ** 2).mean()))
    return metrics


def pretrain(bulk: ad.AnnData, setting: PretrainSetting, sc_cell_types: list[str], sc_drugs: list[str],
             cfg_overrides: dict | None = None, control: str = CONTROL, progress=None,
             device: torch.device | str = "cpu") -> Pretrained:
    """Pre-train an encoder on one bulk set with masked-value regression (and, four-task, the
    cell-line, drug and dose heads; two-stage: only from the second half of the epochs) on
    `device`; returns it on the CPU with Table 1 metrics on held-out conditions. Everything random
    (initialisation, hold-out, order, masks) comes from `setting.seed`."""
    model = untrained(bulk, cfg_overrides or {}, setting.seed, control).to(device)
    rows = select_profiles(bulk, setting.data, sc_cell_types, sc_drugs, control)
    held, train = hold_out_conditions(bulk.obs, rows, setting.seed)
    x_all = model.standardise(dense(bulk.X))
    line_idx = {c: i for i, c in enumerate(model.cell_lines)}
    drug_idx = {d: i for i, d in enumerate(model.drugs)}
    cell = torch.tensor([line_idx[c] for c in bulk.obs[CELL_TYPE].astype(str)], device=device)
    drug = torch.tensor([drug_idx[d] for d in bulk.obs[DRUG].astype(str)], device=device)
    dose = torch.from_numpy(log_dose(bulk.obs[DOSE].to_numpy())).to(device)
    x = torch.from_numpy(x_all).to(device)
    params = list(model.encoder.parameters()) + list(model.heads.parameters())
    opt = torch.optim.AdamW(params, lr=setting.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(setting.seed)
    train_t = torch.from_numpy(train)
    for epoch in range(setting.epochs):
        model.encoder.train()
        order = train_t[torch.randperm(len(train_t), generator=gen)].to(device)
        for start in range(0, len(order), setting.batch):
            b = order[start : start + setting.batch]
            hidden = _random_mask((len(b), x.shape[1]), setting.mask, gen).to(device)
            out = model.heads(model.encoder(x[b], hidden))
            sel = hidden.bool()
            loss = ((out["values"] - x[b])[sel] ** 2).mean()
            if setting.tasks_at(epoch):
                loss = loss + nn.functional.cross_entropy(out["cell_line"], cell[b])
                loss = loss + nn.functional.cross_entropy(out["drug"], drug[b])
                loss = loss + ((out["dose"] - dose[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        if progress is not None:
            progress(epoch + 1, float(loss.detach()))
    h = torch.from_numpy(held).to(device)
    n_conditions = len(bulk.obs.iloc[held][[CELL_TYPE, DRUG, DOSE]].drop_duplicates())
    model.metrics = {"profiles": int(len(rows)), "held_out": int(len(held)), "held_out_conditions": n_conditions,
                     **evaluate(model, x[h], cell[h], drug[h], dose[h], setting)}
    model.setting = setting
    return model.to("cpu")


def checkpoint_path(cache_dir: Path, bulk: ad.AnnData, setting: PretrainSetting, cfg_overrides: dict,
                    sc_cell_types: list[str], sc_drugs: list[str]) -> Path:
    """Where the checkpoint of this exact configuration and bulk data lives. The key holds the whole
    setting (stages included) and encoder shape, defaults resolved, so a changed default never finds
    an older checkpoint; `held_out` marks checkpoints whose metrics hold out whole conditions."""
    encoder = EncoderConfig(n_genes=bulk.n_vars, **cfg_overrides).to_dict()
    key = config_hash({"setting": asdict(setting), "encoder": encoder, "held_out": "conditions",
                       "sc_cell_types": sorted(sc_cell_types),
                       "sc_drugs": sorted(sc_drugs) if setting.data == "transfer" else None})
    return Path(cache_dir) / "pertbert" / f"{setting.data}-{key}-{adata_fingerprint(bulk)}.pt"


def pretrained(cache_dir: Path, bulk: ad.AnnData, setting: PretrainSetting, sc_cell_types: list[str],
               sc_drugs: list[str], cfg_overrides: dict | None = None, control: str = CONTROL, progress=None,
               device: torch.device | str = "cpu") -> Pretrained:
    """Load the cached checkpoint of this configuration, or pre-train it (on `device`) and cache it."""
    cfg_overrides = cfg_overrides or {}
    path = checkpoint_path(cache_dir, bulk, setting, cfg_overrides, sc_cell_types, sc_drugs)
    if path.exists():
        with contextlib.suppress(CheckpointUnusable):  # said below, under the lock
            return Pretrained.load(path)
    with file_lock(path.with_name(path.name + ".lock")):  # runs in other processes may want the same checkpoint
        if path.exists():  # pre-trained by one of them while this one waited, or there before
            try:
                return Pretrained.load(path)
            except CheckpointUnusable as exc:
                print(f"PertBERT checkpoint {path}: {exc}; pre-training it again", file=sys.stderr)
        model = pretrain(bulk, setting, sc_cell_types, sc_drugs, cfg_overrides, control, progress, device)
        model.save(path)
    return model
