"""Stable content hashes: of configurations (for cache keys) and of data sets (so a cached
result or checkpoint is reused only for the very data it was computed from)."""

from __future__ import annotations

import hashlib
import json

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.schema import DE_UNS_KEY


def config_hash(config: dict, length: int = 16) -> str:
    """Hash of a JSON-serialisable configuration, independent of key order."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def adata_fingerprint(adata: ad.AnnData, length: int = 16) -> str:
    """Hash of an AnnData's expression values, gene names, cell names, obs columns and the DE lists
    it carries (uns['bench_de'], which scoring reads)."""
    h = hashlib.sha256()
    x = adata.X
    if sp.issparse(x):
        x = x.tocsr()
        for part in (x.indptr, x.indices, x.data):
            h.update(np.ascontiguousarray(part).tobytes())
    else:
        h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
    h.update("\0".join(map(str, adata.var_names)).encode())
    h.update("\0".join(map(str, adata.obs_names)).encode())
    for col in sorted(adata.obs.columns):
        h.update(col.encode())
        h.update("\0".join(map(str, adata.obs[col].to_numpy())).encode())
    de = adata.uns.get(DE_UNS_KEY)
    if isinstance(de, dict) and de:
        h.update(b"\0" + DE_UNS_KEY.encode())
        for key in sorted(de, key=str):
            h.update(f"\0{key}\0".encode() + "\0".join(map(str, np.asarray(de[key]).ravel())).encode())
    return h.hexdigest()[:length]


COMPUTING_PACKAGES = ("bench-perturb", "numpy", "scipy", "pandas", "anndata", "torch", "scikit-learn", "cpa-tools")


def package_versions() -> dict[str, str]:
    """The Python version and the installed versions of the packages that compute a run: they enter
    every run key, so a run computed under other versions is computed again."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in COMPUTING_PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
