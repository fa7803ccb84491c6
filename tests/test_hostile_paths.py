"""Hostile folders, caches and command lines: a published leaderboard whose manifest holds commands
bench did not write, run folders whose names climb out of --out, --out folders holding the inputs or
a file, planted symlinks in a download folder, a tampered checkpoint, a prediction file that chooses
its own floor, DE lists changed under a finished run. `bench` runs in a child process
(tests/hostile_layouts.py); refusals are exit code 2 and one line naming the file and what was
expected, and nothing is written outside the folders the command names."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.io import inside, safe_name
from bench.publish import MANIFEST, RESULTS
from hostile_layouts import cells, run_cli, shown_lines, uns_dict

SIX = ["control"] * 8 + [f"drug{i}" for i in range(6) for _ in range(4)]  # enough drugs to hold some out

# The rows of docs/data.md's bad-input table these tests run: input -> what the one line says.
DOCUMENTED = {
    "leaderboard --check of a manifest holding another command": "command 'rm -rf ~' is not a",
    "leaderboard --check of a command with --ray-address": "runs on Ray (--ray-address 10.0.0.5:6379); pass --allow-ray to re-run it there",
    "a split name with ../ in run.json": "split name '../../escaped' cannot name a file: expected letters, digits",
    "bench prepare --out holding the inputs": "which replacing the folder would delete",
    "bench prepare --out not written by bench": "exists and has no prepare.json, so it is not a previous prepare output",
    "--out that is a file": "exists and is not a folder; --out names a folder",
    "a file-size limit (ulimit -f)": "cannot write it (file size limit reached (ulimit -f): about",
    "a planted symlink at the download's .part": "is a symlink or not a plain file",
}


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def refused(result, named: Path | str, expected: str) -> str:
    """The one line of a refusal: exit 2, naming `named` and saying `expected`."""
    lines = shown_lines(result.stderr)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1 and str(named) in lines[0] and expected in lines[0], lines
    return lines[0]


def _published(folder: Path, command: str) -> Path:
    """A leaderboard folder as `bench leaderboard` writes it, whose manifest holds `command`."""
    folder.mkdir()
    pd.DataFrame({"split": ["unseen_drugs"], "predictor": ["control_mean"], "seed": [0], "selection": ["val_selected"],
                  "status": ["ok"], "trainable": [False], "mean": [0.5]}).to_csv(folder / RESULTS, index=False)
    manifest = {"splits": {"unseen_drugs": [{"command": command, "predictors": ["control_mean"], "split_summary": {"seed": 0}}]}}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(("command", "expected"), [
    ("rm -rf ~", DOCUMENTED["leaderboard --check of a manifest holding another command"]),
    ("bench fetch sciplex3 --url http://10.0.0.5/x", "is not a `bench run` command"),
    ("bench run --data smoke --predictors control_mean --ray-address 10.0.0.5:6379",
     DOCUMENTED["leaderboard --check of a command with --ray-address"]),
    ("bench run --data smoke --executor ray", "runs on Ray (--executor ray)"),
    ("bench run --data smoke --cache-dir /tmp/x --exec-hook x", "holds '--exec-hook', not an option bench run writes"),
])
def test_a_published_manifest_runs_only_bench_run_commands(tmp_path, command, expected):
    board = _published(tmp_path / "board", command)
    before = files_under(tmp_path)
    result = run_cli(["leaderboard", "--check", board, "--work", tmp_path / "work"], tmp_path)
    refused(result, board / MANIFEST, expected)
    assert files_under(tmp_path) - before <= {"work"}


def _run_folder(folder: Path, split: str) -> Path:
    """A run folder whose run.json and result.json name the split `split`."""
    record = folder / "runs" / "control_mean" / "seed0" / "result.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"predictor": "control_mean", "seed": 0, "split": split, "status": "ok", "error": None}))
    (folder / "run.json").write_text(json.dumps({"split": split, "split_summary": {"seed": 0}}))
    return folder


def test_a_split_name_cannot_climb_out_of_out(tmp_path):
    runs = _run_folder(tmp_path / "runs", "../../escaped")
    out = tmp_path / "a" / "b" / "board"
    result = run_cli(["leaderboard", runs, "--out", out], tmp_path)
    refused(result, runs / "run.json", DOCUMENTED["a split name with ../ in run.json"])
    assert not list(tmp_path.rglob("escaped*")) and not list(tmp_path.rglob("*.png"))


def test_prepare_refuses_an_out_folder_holding_its_inputs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sc, bulk = cells(data / "sc.h5ad"), cells(data / "bulk.h5ad")
    before = {p: p.read_bytes() for p in (sc, bulk)}
    result = run_cli(["prepare", "--sc", sc, "--bulk", bulk, "--out", data], tmp_path)
    refused(result, data, f"holds the input {sc}, {DOCUMENTED['bench prepare --out holding the inputs']}")
    assert {p: p.read_bytes() for p in (sc, bulk)} == before and files_under(tmp_path) == {"data", "data/sc.h5ad", "data/bulk.h5ad"}


def test_prepare_refuses_a_folder_it_did_not_write(tmp_path):
    sc, bulk = cells(tmp_path / "sc.h5ad"), cells(tmp_path / "bulk.h5ad")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sc.h5ad").write_text("mine")
    refused(run_cli(["prepare", "--sc", sc, "--bulk", bulk, "--out", tmp_path / "out"], tmp_path), tmp_path / "out",
            DOCUMENTED["bench prepare --out not written by bench"])


@pytest.mark.parametrize("argv", [["run", "--data", "smoke", "--predictors", "control_mean"], ["data", "--data", "smoke"]])
def test_out_that_is_a_file_is_one_line(tmp_path, argv):
    (tmp_path / "taken").write_text("keep")
    refused(run_cli([*argv, "--out", tmp_path / "taken"], tmp_path), tmp_path / "taken", DOCUMENTED["--out that is a file"])
    assert (tmp_path / "taken").read_text() == "keep"


def test_a_file_size_limit_is_one_line(tmp_path):
    result = run_cli(["data", "--data", "smoke", "--out", tmp_path / "out"], tmp_path, max_file_bytes=50_000)
    refused(result, tmp_path / "out" / "sc.h5ad", DOCUMENTED["a file-size limit (ulimit -f)"])
    assert not list((tmp_path / "out").iterdir())


class _Serve(http.server.BaseHTTPRequestHandler):
    """GET /blob: the body; GET /away: a redirect to plain http on another host."""

    body = b"bench fetch test body\n" * 100

    def do_GET(self):  # noqa: N802  http.server's name
        if self.path == "/away":
            self.send_response(302)
            self.send_header("Location", "http://example.invalid/blob")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Serve)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _fetch(server: str, dest: Path, path: str = "/blob") -> list[str]:
    digest = hashlib.sha256(_Serve.body).hexdigest()
    return ["fetch", "sciplex3", "--url", server + path, "--sha256", digest, "--dest", dest]


def test_a_planted_manifest_symlink_is_not_written_through(server, tmp_path):
    folder, victim = tmp_path / "dest" / "sciplex3", tmp_path / "victim.txt"
    folder.mkdir(parents=True)
    victim.write_text("untouched")
    (folder / "bench-fetch.json.tmp").symlink_to(victim)
    result = run_cli(_fetch(server, tmp_path / "dest"), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert victim.read_text() == "untouched" and json.loads((folder / "bench-fetch.json").read_text())["files"]


def test_a_planted_part_symlink_is_refused(server, tmp_path):
    folder, victim = tmp_path / "dest" / "sciplex3", tmp_path / "victim.txt"
    folder.mkdir(parents=True)
    victim.write_text("untouched")
    part = folder / "SrivatsanTrapnell2020_sciplex3.h5ad.part"
    part.symlink_to(victim)
    refused(run_cli(_fetch(server, tmp_path / "dest"), tmp_path), part, DOCUMENTED["a planted symlink at the download's .part"])
    assert victim.read_text() == "untouched"


def test_a_redirect_is_checked_before_it_is_followed(server, tmp_path):
    """A documented source (not typed with --url) redirected to plain http elsewhere: refused before
    the new host is contacted (it does not even resolve)."""
    from bench import fetch_http

    with pytest.raises(BenchError, match="refusing plain http for http://example.invalid/blob"):
        fetch_http.download(server + "/away", tmp_path / "x.part", ["sha256"], typed=False, extra=0, log=print)
    assert not (tmp_path / "x.part").exists()


def _prediction(path: Path, drugs: list[str], input_size: int) -> Path:
    """Predicted cells of `drugs` in the truth's layout, with a bench_predictions record claiming `input_size`."""
    rows = [d for d in SIX if d in drugs]
    return cells(path, drugs=rows, uns=lambda g: uns_dict(g, "bench_predictions", {
        "predictor": "knn", "seed": 0, "split": "unseen_drugs", "epoch": -1, "input_size": input_size}))


def test_a_prediction_file_cannot_choose_its_floor(tmp_path):
    truth = cells(tmp_path / "truth.h5ad", drugs=SIX)
    pred = _prediction(tmp_path / "pred.h5ad", ["drug0", "drug1"], input_size=1)
    result = run_cli(["score", "--truth", truth, "--pred", pred], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "floor: 4 controls per cell type" in result.stdout
    assert f"{pred} says its run handed 1 controls per cell type; the floor uses 4 (from the truth)" in result.stderr
    again = run_cli(["score", "--truth", truth, "--pred", pred, "--input-size", "2"], tmp_path)
    assert again.returncode == 0 and "floor: 2 controls per cell type" in again.stdout


def test_one_scored_drug_prints_no_interval(tmp_path):
    truth = cells(tmp_path / "truth.h5ad", drugs=SIX)
    result = run_cli(["score", "--truth", truth, "--pred", cells(tmp_path / "pred.h5ad", drugs=SIX[:12])], tmp_path)
    assert result.returncode == 0 and "(95% interval over drugs n/a (one drug))" in result.stdout, result.stderr[-2000:]


def _de_lists(genes: list[str]):
    """uns['rank_genes_groups_cov'] in CPA's layout: one ranked gene list per 'celltype_drug'."""
    return lambda g: uns_dict(g, "rank_genes_groups_cov", {f"A_drug{i}": genes for i in range(6)})


def test_changed_de_lists_are_recomputed_not_reused(tmp_path):
    argv = ["run", "--sc", tmp_path / "sc.h5ad", "--predictors", "control_mean", "--out", tmp_path / "out"]
    cells(tmp_path / "sc.h5ad", drugs=SIX, uns=_de_lists(["G0", "G1", "G2"]))
    assert run_cli(argv, tmp_path).returncode == 0
    cells(tmp_path / "sc.h5ad", drugs=SIX, uns=_de_lists(["G5", "G4", "G3"]))
    again = run_cli(argv, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "runs: 0 reused" in again.stderr and "control_mean (seed 0): recomputed: its configuration or data changed" in again.stderr
    assert "runs: 1 reused" in run_cli(argv, tmp_path).stderr


def test_a_tampered_checkpoint_is_trained_again_and_never_unpickled(smoke, tmp_path, capsys):
    import torch

    from predictors.pertbert.checkpoint import manifest_path
    from predictors.pertbert.pretrain import checkpoint_path, pretrained
    from predictors.pertbert.settings import TABLE1

    setting, small = replace(TABLE1["one_task_15_whole"], epochs=1), {"patch": 8, "width": 32, "layers": 1}
    lines, drugs = sorted(set(smoke.sc.obs["cell_type"].astype(str))), sorted(set(smoke.sc.obs["drug"].astype(str)))
    first = pretrained(tmp_path, smoke.bulk, setting, lines, drugs, small)
    path = checkpoint_path(tmp_path, smoke.bulk, setting, small, lines, drugs)
    path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1]))
    again = pretrained(tmp_path, smoke.bulk, setting, lines, drugs, small)
    assert "its tensors hash to sha256" in capsys.readouterr().err
    np.testing.assert_array_equal(again.mean, first.mean)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    import io

    buf = io.BytesIO()
    torch.save({"x": Payload()}, buf)
    path.write_bytes(buf.getvalue())
    meta = json.loads(manifest_path(path).read_text())
    manifest_path(path).write_text(json.dumps({**meta, "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}))
    pretrained(tmp_path, smoke.bulk, setting, lines, drugs, small)
    assert "its tensors cannot be read" in capsys.readouterr().err and not marker.exists()


def test_names_from_files_become_paths_only_when_safe(tmp_path):
    for name in ("unseen_drugs", "fold-0.v2", "A549_x"):
        assert safe_name(name, "split name", "run.json") == name
    for name in ("../x", "a/b", "..", ".hidden", "a..b", "", "x\ny"):
        with pytest.raises(BenchError, match="cannot name a file"):
            safe_name(name, "split name", "run.json")
    (tmp_path / "link").symlink_to("/")
    with pytest.raises(BenchError, match="outside the output folder"):
        inside(tmp_path, tmp_path / "link" / "etc")
    assert inside(tmp_path, tmp_path / "plots" / "a.png") == tmp_path / "plots" / "a.png"


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    """ENOSPC while a result is flushed, and an h5ad larger than the free space: one line naming the
    file, nothing left behind (the h5ad is refused before HDF5 starts writing it)."""
    import errno
    from collections import namedtuple

    from bench import io
    from bench.cli import main

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(BenchError, match=r"results\.csv: cannot write it \(disk full\)"):
        io.atomic_write_text(tmp_path / "results.csv", "a,b\n")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(io.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    assert main(["data", "--data", "smoke", "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert "sc.h5ad: cannot write it (disk full: about" in line and "1,000 free" in line and "\n" not in line
    assert list((tmp_path / "out").iterdir()) == []
