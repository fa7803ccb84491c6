"""HDF5 files (h5ad, GCTX) read as untrusted input: every check runs before any of a file's data is
read or handed to a sparse-matrix kernel.

- A file must be self-contained: external links, datasets stored in external raw files and virtual
  datasets are refused (they would make bench read other files).
- Every dataset's declared size is checked against what the file stores for it (an unfiltered one
  must store all of it; no compression reaches MAX_RATIO) and what it needs in memory against the
  memory available, before anything is allocated.
- Sparse matrices are checked whole: shape, dtypes, indptr (starts at 0, never decreases, ends at
  the number of stored values), indices in range, data and indices of one length (scipy checks
  none of this by default, and its kernels write out of bounds when they are wrong).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import read_elem

from bench.data.validate import unreadable
from bench.errors import BenchError

MAX_RATIO = 1100  # declared / stored bytes no HDF5 compression reaches (deflate's limit is about 1032)
SMALL = 1 << 20  # bytes below which a dataset's declared size is not compared with its storage
MAX_DEPTH = 64  # nested groups walked; deeper is refused (a crafted file may nest without end)


def human(n: float) -> str:
    """Bytes as '49.0 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def available_memory() -> int | None:
    """Bytes of memory this process could still use (MemAvailable), or None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(path: Path | str, what: str, nbytes: int) -> None:
    """A one-line error when `what` (read from `path`) needs more memory than is available."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise BenchError(f"{path}: {what} needs {human(nbytes)} of memory and {human(free)} is available; "
                         "refused before reading it (a smaller file, or a machine with more memory)")


def open_hdf5(path: str | Path, kind: str) -> tuple[h5py.File, dict[str, int]]:
    """`path` opened read-only and checked (`check_file`), with the bytes its top-level elements
    declare: a one-line error for a missing, unreadable or not self-contained file."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    try:
        fh = h5py.File(path, "r")
    except (OSError, MemoryError) as exc:
        raise unreadable(path, kind, exc) from None
    try:
        return fh, check_file(fh, path)
    except BaseException:
        fh.close()
        raise


def _walk(group: h5py.Group, path: Path, prefix: str = "", depth: int = 0, seen: set | None = None) -> Iterator[tuple[str, h5py.Dataset]]:
    """Every dataset under `group` (each object once), refusing external links on the way."""
    seen = set() if seen is None else seen
    if depth > MAX_DEPTH:
        raise BenchError(f"{path}: groups nested deeper than {MAX_DEPTH} levels at {prefix}; not a file bench reads")
    for name in group:
        where = f"{prefix}/{name}"
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise BenchError(f"{path}: {where} is an external link to {link.filename}:{link.path}; bench reads "
                             "self-contained files only")
        if not isinstance(link, (h5py.HardLink, h5py.SoftLink)):
            raise BenchError(f"{path}: {where} is a link of a kind bench does not follow; bench reads self-contained files only")
        if isinstance(link, h5py.SoftLink):
            continue  # a path inside this file: its target is walked where it lives
        obj = group[name]
        if obj.id in seen:
            continue
        seen.add(obj.id)
        if isinstance(obj, h5py.Group):
            yield from _walk(obj, path, where, depth + 1, seen)
        elif isinstance(obj, h5py.Dataset):
            yield where, obj


def check_file(fh: h5py.File, path: Path) -> dict[str, int]:
    """Refuse external links, external storage and virtual datasets anywhere in the file, and
    datasets that declare more than the file can hold. Returns the declared bytes under each
    top-level key."""
    declared: dict[str, int] = {}
    for where, ds in _walk(fh, path):
        top = where.split("/")[1]
        declared[top] = declared.get(top, 0) + int(ds.size) * ds.id.get_type().get_size()
        if ds.is_virtual:
            raise BenchError(f"{path}: {where} is a virtual dataset (its data live in other files); bench reads "
                             "self-contained files only")
        if ds.external:
            raise BenchError(f"{path}: {where} stores its data in the external file {ds.external[0][0]!r}; bench "
                             "reads self-contained files only")
        check_stored(ds, path, where)
    return declared


def check_stored(ds: h5py.Dataset, path: Path, where: str) -> None:
    """A dataset must store what it declares: all of it when unfiltered, at least 1/MAX_RATIO when compressed."""
    declared = int(ds.size) * ds.id.get_type().get_size()
    if declared < SMALL:
        return
    stored = ds.id.get_storage_size()
    filtered = ds.id.get_create_plist().get_nfilters() > 0
    if stored < declared / MAX_RATIO or (not filtered and stored < declared):
        raise BenchError(f"{path}: {where} declares {'x'.join(map(str, ds.shape))} values ({human(declared)}) but the "
                         f"file stores {human(stored)} of them; unwritten or crafted data, refused before reading")


def dataset(parent: h5py.Group, key: str, path: Path, what: str, ndim: int | None = None) -> h5py.Dataset:
    """`parent[key]` when it is a dataset (of `ndim` dimensions), else a one-line error."""
    obj = parent.get(key)
    if not isinstance(obj, h5py.Dataset):
        found = "missing" if obj is None else "a group"
        raise BenchError(f"{path}: {what} ({parent.name.rstrip('/')}/{key}) is {found}, expected a dataset")
    if ndim is not None and obj.ndim != ndim:
        raise BenchError(f"{path}: {what} ({obj.name}) has {obj.ndim} dimension(s), expected {ndim}")
    return obj


def _integers(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    if values.dtype.kind not in "iu":
        raise BenchError(f"{path}: {what} holds {values.dtype} values, expected integers")
    return values.astype(np.int64, copy=False)


def check_indptr(indptr: np.ndarray, major: int, nnz: int, path: Path, name: str) -> np.ndarray:
    """A sparse matrix's index pointer, checked: `major` + 1 integers from 0 to `nnz`, never decreasing."""
    indptr = _integers(indptr, path, f"{name}/indptr")
    if len(indptr) != major + 1:
        raise BenchError(f"{path}: {name}/indptr has {len(indptr)} entries, expected {major + 1} (one more than the "
                         f"{major} rows or columns its shape declares)")
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise BenchError(f"{path}: {name}/indptr runs from {indptr[0]} to {indptr[-1]}, expected 0 to {nnz} (the number "
                         "of stored values)")
    if (np.diff(indptr) < 0).any():
        at = int(np.flatnonzero(np.diff(indptr) < 0)[0])
        raise BenchError(f"{path}: {name}/indptr decreases at entry {at + 1} ({indptr[at]} then {indptr[at + 1]}); "
                         "expected a non-decreasing index pointer")
    return indptr


def check_indices(indices: np.ndarray, minor: int, path: Path, name: str, axis: str = "columns") -> None:
    """Every column (CSR) or row (CSC: `axis` 'rows') index in 0..minor-1."""
    _integers(indices, path, f"{name}/indices")
    if indices.size and (indices.min() < 0 or indices.max() >= minor):
        bad = indices.min() if indices.min() < 0 else indices.max()
        raise BenchError(f"{path}: {name}/indices holds {bad}, expected indices from 0 to {minor - 1} (its shape's "
                         f"{minor} {axis})")


def sparse_shape(group: h5py.Group, path: Path, name: str) -> tuple[str, tuple[int, int]]:
    """('csr' or 'csc', (rows, columns)) of an anndata/h5sparse sparse group; one-line errors."""
    kind = str(group.attrs.get("encoding-type", group.attrs.get("h5sparse_format", ""))).removesuffix("_matrix")
    if kind not in ("csr", "csc"):
        raise BenchError(f"{path}: {name} is stored as '{kind or 'an unknown group'}', expected a dense array or a CSR/CSC matrix")
    shape = np.asarray(group.attrs.get("shape", group.attrs.get("h5sparse_shape", ())))
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any():
        raise BenchError(f"{path}: {name} has shape attribute {shape.tolist()!r}, expected two non-negative integers")
    return kind, (int(shape[0]), int(shape[1]))


def sparse_parts(group: h5py.Group, path: Path, name: str) -> tuple[str, tuple[int, int], np.ndarray]:
    """Kind, shape and checked indptr of a sparse group, with data and indices checked to be 1-D
    datasets of one length, before any value is read."""
    kind, shape = sparse_shape(group, path, name)
    major = shape[0] if kind == "csr" else shape[1]
    data = dataset(group, "data", path, f"{name} values", ndim=1)
    indices = dataset(group, "indices", path, f"{name} indices", ndim=1)
    if data.shape != indices.shape:
        raise BenchError(f"{path}: {name}/data has {data.shape[0]} values but {name}/indices {indices.shape[0]}; expected one index per value")
    if data.dtype.kind not in "biuf":
        raise BenchError(f"{path}: {name}/data holds {data.dtype} values, expected numbers")
    indptr = check_indptr(dataset(group, "indptr", path, f"{name} index pointer", ndim=1)[:], major, data.shape[0], path, name)
    return kind, shape, indptr


def read_sparse(group: h5py.Group, path: Path, name: str = "X") -> sp.csr_matrix:
    """A CSR or CSC group read as a float32 CSR matrix, checked whole before scipy sees it."""
    kind, shape, indptr = sparse_parts(group, path, name)
    nnz = int(indptr[-1])
    check_memory(path, f"{name} ({shape[0]:,} x {shape[1]:,}, {nnz:,} stored values)", nnz * 16 + len(indptr) * 16)
    indices = group["indices"][:]
    check_indices(indices, shape[1] if kind == "csr" else shape[0], path, name, "columns" if kind == "csr" else "rows")
    data = group["data"].astype(np.float32)[:]
    parts = (data, indices, indptr)
    return sp.csr_matrix(parts, shape=shape) if kind == "csr" else sp.csc_matrix(parts, shape=shape).tocsr()


def read_dense(ds: h5py.Dataset, path: Path, name: str = "X") -> np.ndarray:
    """A 2-D numeric dataset read as float32, its size checked against memory first."""
    if ds.ndim != 2:
        raise BenchError(f"{path}: {name} is a {ds.ndim}-dimensional array, expected cells x genes")
    if ds.dtype.kind not in "biuf":
        raise BenchError(f"{path}: {name} holds {ds.dtype} values, expected numbers")
    check_memory(path, f"{name} ({ds.shape[0]:,} x {ds.shape[1]:,} dense)", int(ds.size) * 4)
    return ds.astype(np.float32)[:]


def read_matrix(elem: h5py.Dataset | h5py.Group, path: Path, name: str = "X") -> np.ndarray | sp.csr_matrix:
    """An h5ad matrix element as float32 (dense, or CSR): HDF5 converts while reading, so no
    full-precision copy of a float64 file is ever held."""
    return read_dense(elem, path, name) if isinstance(elem, h5py.Dataset) else read_sparse(elem, path, name)


def read_h5ad_checked(path: str | Path) -> ad.AnnData:
    """Read obs, var, uns and X (as float32) of an h5ad file, checked as this module says; layers,
    obsm and raw are not loaded, so a file that also stores raw counts costs no more memory than its X."""
    path = Path(path)
    fh, declared = open_hdf5(path, "h5ad")
    with fh:
        if "X" not in fh or "obs" not in fh:
            raise BenchError(f"{path}: not an h5ad file (no X or obs)")
        check_memory(path, "obs, var and uns", 2 * sum(declared.get(k, 0) for k in ("obs", "var", "uns")))
        parts = {k: read_element(fh, k, path) for k in ("obs", "var", "uns") if k in fh}
        x = read_element(fh, "X", path)
    n_obs, n_var = len(parts["obs"]), len(parts["var"]) if "var" in parts else x.shape[1]
    if x.shape != (n_obs, n_var):
        raise BenchError(f"{path}: X is {x.shape[0]:,} x {x.shape[1]:,} but obs has {n_obs:,} rows and var {n_var:,}; "
                         "expected X to be cells (obs) x genes (var)")
    return ad.AnnData(x, **parts)


def read_metadata(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """obs and var of an h5ad file (checked as this module says), without its matrix."""
    path = Path(path)
    fh, declared = open_hdf5(path, "h5ad")
    with fh:
        if "X" not in fh or "obs" not in fh or "var" not in fh:
            raise BenchError(f"{path}: not an h5ad file (no X, obs or var)")
        check_memory(path, "obs and var", 2 * (declared.get("obs", 0) + declared.get("var", 0)))
        return read_element(fh, "obs", path), read_element(fh, "var", path)


def read_element(fh: h5py.File, key: str, path: Path):
    """One top-level element of an h5ad file (X through `read_matrix`); a one-line error naming it
    when it cannot be read."""
    try:
        return read_matrix(fh[key], path) if key == "X" else read_elem(fh[key])
    except BenchError:
        raise
    except Exception as exc:  # noqa: BLE001  h5py and anndata raise many types for a bad element
        raise unreadable(path, "h5ad", exc, key) from None
