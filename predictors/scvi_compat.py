"""Loud compatibility shims, and the training glue, shared by the wrappers of packages built on
scvi-tools 0.20.3: cpa-tools (predictors/cpa_compat.py), biolord and scgen.

The packages' own code is unchanged. Importing this module applies, and announces once on stderr,
only the shims that are needed: anndata 0.12 removed `anndata.read` and anndata 0.10 renamed
`SparseDataset`, both of which scvi-tools 0.20.3 imports. `load_scgen()` adds the two that scgen
2.1.0 needs on scvi-tools 0.20.3 (it imports `scvi._compat.Literal`, which 0.20.3 turned into a
class that raises, and `scvi.module.base.LossRecorder`, which 0.20.3 replaced by `LossOutput`).
Nothing re-enables pickle loading: bench never loads a saved model.

`epoch_reporter` is the lightning callback through which every one of these models reports each
training epoch to the harness.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import types
import typing
import warnings
from collections.abc import Callable
from typing import Any

import anndata

log = logging.getLogger(__name__)
APPLIED: list[str] = []
# Loggers of the scvi-tools stack that speak at INFO on every set-up, seed and trainer start.
STACK_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric", "scvi")


def _shim_anndata() -> None:
    if "read" not in dir(anndata):
        anndata.read = anndata.read_h5ad
        APPLIED.append("anndata.read -> anndata.read_h5ad (removed in anndata 0.12)")
    sparse_dataset: Any = importlib.import_module("anndata._core.sparse_dataset")
    if not hasattr(sparse_dataset, "SparseDataset"):
        sparse_dataset.SparseDataset = sparse_dataset.BaseCompressedSparseDataset
        APPLIED.append("anndata._core.sparse_dataset.SparseDataset -> BaseCompressedSparseDataset (renamed in anndata 0.10)")


def import_quietly(name: str) -> types.ModuleType:
    """Import `name` without its import-time deprecation noise, keeping the process's warning
    filters afterwards (cpa's `__init__` resets them to 'ignore')."""
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        return importlib.import_module(name)


def quiet_loggers(*names: str) -> None:
    """Raise the scvi-tools stack's loggers (and `names`) to WARNING."""
    for name in (*STACK_LOGGERS, *names):
        logging.getLogger(name).setLevel(logging.WARNING)


_shim_anndata()
import_quietly("scvi")
if APPLIED:
    log.warning("scvi-tools compatibility shims applied: %s", "; ".join(APPLIED))


def _shim_scgen() -> list[str]:
    """What scgen 2.1.0 imports from scvi-tools < 0.20, provided on 0.20.3; returns what it applied."""
    applied = []
    compat = sys.modules.get("scvi._compat")
    if compat is None or getattr(compat, "Literal", None) is not typing.Literal:
        try:  # scvi 0.20.3's module raises DeprecationWarning when imported
            compat = importlib.import_module("scvi._compat")
            usable = getattr(compat, "Literal", None) is typing.Literal
        except DeprecationWarning:
            usable = False
        if not usable:
            stub: Any = types.ModuleType("scvi._compat")
            stub.Literal = typing.Literal
            sys.modules["scvi._compat"] = stub
            applied.append("scvi._compat.Literal -> typing.Literal (scvi-tools 0.20 made the old shim raise)")
    base: Any = importlib.import_module("scvi.module.base")
    if not hasattr(base, "LossRecorder"):
        def loss_recorder(loss, reconstruction_loss, kl_local=None, kl_global=None):
            """scvi-tools < 0.20's `LossRecorder(loss, reconstruction_loss, kl_local, kl_global)` as a
            0.20 `LossOutput` (keyword-only there)."""
            kl = {k: v for k, v in (("kl_local", kl_local), ("kl_global", kl_global)) if v is not None}
            return base.LossOutput(loss=loss, reconstruction_loss=reconstruction_loss, **kl)

        base.LossRecorder = loss_recorder
        applied.append("scvi.module.base.LossRecorder -> LossOutput (replaced in scvi-tools 0.20)")
    return applied


@functools.cache
def load_scgen() -> types.ModuleType:
    """The `scgen` package, imported once with its shims in place and its loggers quiet."""
    applied = _shim_scgen()
    if applied:
        log.warning("scgen compatibility shims applied: %s", "; ".join(applied))
    scgen = import_quietly("scgen")
    quiet_loggers("scgen")
    return scgen


@functools.cache
def load_biolord() -> types.ModuleType:
    """The `biolord` package, imported once (it needs only the anndata shims) with its loggers quiet."""
    biolord = import_quietly("biolord")
    quiet_loggers("biolord", "biolord._model")
    return biolord


def epoch_reporter(report: Callable[..., None], batch_stats: Callable[[Any], dict[str, float]]):
    """A lightning callback that hands every training epoch to the harness: `report(epoch, **stats)`
    with the module in eval mode (and back in train mode afterwards), `stats` the epoch's mean of
    `batch_stats(outputs)` over its training steps. Called before the training plan's own epoch-end
    hook, so a `StopTraining` raised by `report` ends training before the plan steps its schedulers."""
    import torch
    from pytorch_lightning import Callback

    class EpochReporter(Callback):
        def __init__(self) -> None:
            self.sums: dict[str, float] = {}
            self.steps = 0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.sums, self.steps = {}, 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            for key, value in batch_stats(outputs).items():
                self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.steps += 1

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            stats = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
            pl_module.module.eval()
            try:
                with torch.no_grad():
                    report(trainer.current_epoch + 1, **stats)
            finally:
                pl_module.module.train()

    return EpochReporter()
