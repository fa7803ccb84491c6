"""Bad input: one line naming the file and the problem, exit code 2, no third-party warning or
library internals, nothing half-written. The cases are the rows of the bad-input table in
docs/data.md, and a test keeps the two in step."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.cli import main
from bench.schema import CELL_TYPE, CONTROL, DOSE, DRUG

DOCS = Path(__file__).resolve().parents[1] / "docs" / "data.md"


@pytest.fixture(scope="module")
def good(smoke, tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    sc = smoke.sc.copy()
    del sc.uns["bench_truth"]
    sc.write_h5ad(folder / "sc.h5ad")
    smoke.bulk.write_h5ad(folder / "bulk.h5ad")
    return SimpleNamespace(folder=folder, sc=sc)


def _variant(ctx, name: str, change: Callable) -> Path:
    bad = ctx.sc.copy()
    change(bad)
    path = ctx.folder / f"{name}.h5ad"
    bad.write_h5ad(path)
    return path


def _bulk_variant(ctx, name: str, change: Callable) -> Path:
    bad = ad.read_h5ad(ctx.folder / "bulk.h5ad")
    change(bad)
    path = ctx.folder / f"bulk-{name}.h5ad"
    bad.write_h5ad(path)
    return path


def _dense(adata, fn) -> None:
    x = adata.X.toarray()
    fn(x)
    adata.X = sp.csr_matrix(x)


def _drop_controls_of(cell_type):
    def change(a):
        keep = ~((a.obs[CELL_TYPE] == cell_type) & (a.obs[DRUG] == CONTROL)).to_numpy()
        a._inplace_subset_obs(keep)
    return change


def _doses(written: Callable[[str, float], str]):
    """Rewrite the dose column as strings: written(drug, dose in nM)."""
    def change(a):
        a.obs[DOSE] = [written(d, x) for d, x in zip(a.obs[DRUG].astype(str), a.obs[DOSE])]
    return change


def _relabel(mapping: dict[str, str]):
    def change(a):
        a.obs[DRUG] = a.obs[DRUG].astype(str).replace(mapping).to_numpy()
    return change


def _split_totals(a) -> None:
    """D001 becomes the combination D000+D002, its rows alternately at 1+3 and 2+2 nM (both 4 nM)."""
    _relabel({"D001": "D000+D002"})(a)
    combo = (a.obs[DRUG] == "D000+D002").to_numpy()
    a.obs[DOSE] = np.where(combo, np.where(np.arange(a.n_obs) % 2, "1+3", "2+2"), a.obs[DOSE].map("{:g}".format))


def _leaky_split(a) -> None:
    """D000 held out (ood) while the combination D000+D002 trains."""
    _relabel({"D001": "D000+D002"})(a)
    a.obs["split"] = np.where(a.obs[DRUG] == "D000", "ood", "train")


def _truncated(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _plain_hdf5(path: Path) -> Path:
    with h5py.File(path, "w") as fh:
        fh["matrix"] = np.zeros((3, 3))
    return path


def _bare_gctx(folder: Path, ids: list[str], info_ids: list[str] | None = None) -> Path:
    """A GCTX with column ids only, and optionally a sig_info side-car with other ids beside it."""
    folder.mkdir(exist_ok=True)
    with h5py.File(folder / "level5.gctx", "w") as fh:
        fh["0/DATA/0/matrix"] = np.zeros((len(ids), 2), dtype=np.float32)
        fh["0/META/COL/id"] = np.array(ids, dtype="S")
        fh["0/META/ROW/id"] = np.array(["G0000", "G0001"], dtype="S")
    if info_ids is not None:
        pd.DataFrame({"sig_id": info_ids, "pert_iname": "x", "cell_id": "A375", "pert_idose": "10 µM"}).to_csv(
            folder / "sig_info.txt", sep="\t", index=False)
    return folder / "level5.gctx"


def run(ctx, sc: Path, *extra: str, bulk: Path | None = None) -> list[str]:
    return ["run", "--sc", str(sc), "--bulk", str(bulk or ctx.folder / "bulk.h5ad"), "--predictors", "control_mean",
            "--out", str(ctx.out), *extra]


def with_bulk(ctx, bulk: Path) -> list[str]:
    return run(ctx, ctx.folder / "sc.h5ad", bulk=bulk)


# Keys are the `input` cells of the table in docs/data.md; values build argv and name the message.
CASES: dict[str, tuple[Callable[[SimpleNamespace], list[str]], str]] = {
    "missing file": (lambda c: run(c, c.folder / "absent.h5ad"), "absent.h5ad: file not found"),
    "not an HDF5 file": (lambda c: run(c, (c.folder / "text.h5ad").write_text("hello") and c.folder / "text.h5ad"),
                         "not a readable h5ad file (not an HDF5 file)"),
    "truncated h5ad": (lambda c: run(c, _truncated(c.folder / "sc.h5ad", c.folder / "cut.h5ad")),
                       "not a readable h5ad file (truncated"),
    "an HDF5 file that is not an h5ad": (lambda c: run(c, _plain_hdf5(c.folder / "plain.h5")), "not an h5ad file (no X or obs)"),
    "missing or misspelled obs column": (lambda c: run(c, c.folder / "sc.h5ad", "--drug-key", "drugg"),
                                         "obs has no column 'drugg' (--drug-key) (did you mean 'drug'?)"),
    "no control cells for a cell type": (lambda c: run(c, _variant(c, "noctrl", _drop_controls_of("CL01"))),
                                         "no control cells for cell type(s) CL01"),
    "NaN or infinite values": (lambda c: run(c, _variant(c, "nan", lambda a: _dense(a, lambda x: x.__setitem__((0, 0), np.nan)))),
                               "expression holds NaN or infinite values"),
    "negative values in single-cell data": (lambda c: run(c, _variant(c, "neg", lambda a: _dense(a, lambda x: x.__setitem__((0, 0), -1.0)))),
                                            "negative expression values"),
    "raw counts with --normalize none": (lambda c: run(c, _variant(c, "counts", lambda a: setattr(a, "X", sp.csr_matrix(np.round(np.expm1(a.X.toarray()))))),
                                                       "--normalize", "none"),
                                         "values look like raw counts"),
    "duplicated gene symbols in the bulk set": (lambda c: with_bulk(c, _bulk_variant(c, "dups", lambda a: setattr(a, "var_names", [a.var_names[0], *a.var_names[1:-1], a.var_names[0]]))),
                                                "1 duplicated gene symbol(s), e.g."),
    "no shared genes between bulk and single cell": (lambda c: run(c, _variant(c, "othergenes", lambda a: setattr(a, "var_names", [f"X{i}" for i in range(a.n_vars)]))),
                                                     "no gene symbol in common with"),
    "a dose that is not a dose": (lambda c: run(c, _variant(c, "wordy", _doses(lambda d, x: "ten µM" if d == "D001" else f"{x:g} nM"))),
                                  "dose column 'dose' holds 'ten µM': expected a number"),
    "treated rows without a dose": (lambda c: run(c, _variant(c, "nodose", _doses(lambda d, x: "" if d == "D001" else f"{x:g}"))),
                                    "dose column 'dose' is empty for"),
    "a combination dose that does not fit its drugs": (lambda c: run(c, _variant(c, "combodose", _doses(lambda d, x: f"{x:g}+{x:g}" if d == "D001" else f"{x:g}"))),
                                                       "has dose '10+10' nM for 'D001': expected 1 dose(s), one per drug"),
    "two splits of one total dose of a combination": (lambda c: run(c, _variant(c, "combototal", _split_totals)),
                                                      "conditions are told apart by their total dose"),
    "a split with no test conditions": (lambda c: run(c, _variant(c, "nosplit", lambda a: a.obs.__setitem__("split", "train")), "--split-column", "split"),
                                        "split 'unseen_drugs' has no test conditions"),
    "unknown values in a split column": (lambda c: run(c, _variant(c, "holdout", lambda a: a.obs.__setitem__("split", "holdout")), "--split-column", "split"),
                                         "split column 'split' has value(s) ['holdout']: expected train, test or ood"),
    "a held-out drug inside a training combination": (lambda c: run(c, _variant(c, "leak", _leaky_split), "--split-column", "split"),
                                                      "training combination(s) D000+D002 contain a held-out drug"),
    "unknown split name": (lambda c: run(c, c.folder / "sc.h5ad", "--split", "unseen_cells"), "unknown split 'unseen_cells'"),
    "unknown predictor name": (lambda c: run(c, c.folder / "sc.h5ad", "--predictors", "CPAA"), "unknown predictor 'CPAA' (did you mean 'CPA'?)"),
    "--bulk or --smiles without --sc": (lambda c: ["run", "--bulk", str(c.folder / "bulk.h5ad"), "--out", str(c.out)],
                                        "--bulk and --smiles need --sc"),
    "missing bulk file": (lambda c: with_bulk(c, c.folder / "absent.gctx"), "absent.gctx: file not found"),
    "not a GCT file": (lambda c: with_bulk(c, (c.tmp / "x.gct").write_text("#2.0\n1\t1\n") and c.tmp / "x.gct"), "not a GCT file"),
    "a GCTX file without its matrix": (lambda c: with_bulk(c, _plain_hdf5(c.tmp / "x.gctx")), "no /0/DATA/0/matrix dataset"),
    "truncated GCTX": (lambda c: with_bulk(c, _truncated(_bare_gctx(c.tmp / "full", ["s1", "s2"]), c.tmp / "cut.gctx")),
                       "not a readable HDF5/GCTX file (truncated"),
    "GCTX without sample metadata": (lambda c: with_bulk(c, _bare_gctx(c.tmp / "bare", ["s1", "s2"])), "no sample metadata: no pert_iname in the file, and no *inst_info* or *sig_info* side-car"),
    "GCTX column ids missing from the side-car": (lambda c: with_bulk(c, _bare_gctx(c.tmp / "geo", ["s1", "s2"], ["s1", "s9"])),
                                                  "1 of 2 column ids are not in sig_info.txt (sig_id), e.g. s2"),
    "bench check without --sc": (lambda c: ["check", "--bulk", str(c.folder / "bulk.h5ad")], "bench check needs --sc FILE"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, good, tmp_path, capsys, recwarn):
    make, message = CASES[case]
    ctx = SimpleNamespace(folder=good.folder, sc=good.sc, tmp=tmp_path, out=tmp_path / "out")
    argv = make(ctx)
    capsys.readouterr()
    recwarn.clear()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1 and message in errors[0], err
    assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b", errors[0]), errors[0]  # no library internals
    assert not [str(w.message) for w in recwarn], [str(w.message) for w in recwarn]  # no third-party warning
    assert not ctx.out.exists()  # nothing half-written


def documented_cases() -> dict[str, str]:
    """The bad-input table of docs/data.md as input -> message."""
    section = DOCS.read_text().split("\n## Bad input\n")[1].split("\n## ")[0]
    rows = [line.strip().strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip().strip("`"): cells[1].strip().replace("`", "") for cells in rows[1:]}


def test_the_documented_table_is_the_tested_list():
    """Every row of the table is a tested case: here, in tests/test_hostile_files.py or in tests/test_hostile_paths.py."""
    from test_hostile_files import CASES as FILE_CASES
    from test_hostile_paths import DOCUMENTED as PATH_CASES

    documented = documented_cases()
    tested = {**{k: m for k, (_, m) in CASES.items()}, **{k: m for k, (_, m) in FILE_CASES.items()}, **PATH_CASES}
    assert set(documented) == set(tested), (set(documented) ^ set(tested))
    for case, message in tested.items():
        assert message in documented[case], (case, message, documented[case])
