"""Loud compatibility shims that let cpa-tools 0.8.8 (and scvi-tools 0.20.3 under it) run on this stack.

CPA's own code is unchanged. Importing this module applies, and announces once on stderr, only the
shims that are needed: the anndata ones shared by every scvi-tools 0.20.3 package
(predictors/scvi_compat.py: anndata 0.12 removed `anndata.read`; anndata 0.10 renamed
`SparseDataset`) and its own: `cpa._model` imports tkinter for nothing. Nothing re-enables pickle
loading: bench never loads a saved CPA model, and torch >= 2.6 loads scvi's pickled models
(`CPA.load`) only when whoever trusts the file passes `weights_only=False` itself. `load_cpa()` then
imports cpa without letting it silence every warning of the process (its `__init__` calls
`warnings.simplefilter('ignore')`) and quiets its per-cell progress bars.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import types
from typing import Any

from predictors.scvi_compat import import_quietly, quiet_loggers

log = logging.getLogger(__name__)
APPLIED: list[str] = []


def _shim_tkinter() -> None:
    try:
        import tkinter  # noqa: F401  cpa._model runs `from tkinter import N` and never uses it
    except ImportError:
        stub: Any = types.ModuleType("tkinter")
        stub.N = "n"
        sys.modules["tkinter"] = stub
        APPLIED.append("tkinter stub (cpa._model imports tkinter.N and never uses it; this Python has no Tk)")


_shim_tkinter()
if APPLIED:
    log.warning("cpa-tools compatibility shims applied: %s", "; ".join(APPLIED))


@functools.cache
def load_cpa() -> types.ModuleType:
    """The `cpa` package, imported once with the shims in place and its per-cell progress bars off."""
    cpa = import_quietly("cpa")
    model_module: Any = importlib.import_module("cpa._model")
    model_module.tqdm = functools.partial(model_module.tqdm, disable=True)
    quiet_loggers("cpa")
    return cpa
