"""Run records (bench/record.py): result.json round-trips through `RunRecord`, files written before
`record_version` existed still read, and a record of an unknown version or status is refused."""

from __future__ import annotations

import json

import pytest

from bench.cache import SCORING_VERSION, finished, stale_reason
from bench.cli import main
from bench.errors import BenchError
from bench.record import FAILED, OK, RECORD_VERSION, RESULT_FILE, SELECTIONS, Failure, RunRecord, Scores, read_record

SELECTION = {"mean": 0.9, "mean_norm": 0.5, "mean_replicate_norm": 0.7, "headline": 0.4, "headline_low": 0.3, "headline_high": 0.5}
# An ok record as an older bench wrote it: every field of today's, no record_version.
OLD_OK = {
    "predictor": "knn", "seed": 1, "split": "unseen_drugs", "status": "ok", "error": None, "trainable": False,
    "reference": False, "options": {"k": 5}, "best_test_epoch": None, "val_epoch": None, "last_epoch": None,
    "seconds_per_epoch": None, "fit_seconds": 0.25, "eval_seconds": 1.5, "stopped_early_at": None,
    "test_selected": SELECTION, "val_selected": {**SELECTION, "mean": 0.8}, "run_key": "abc", "scoring_version": SCORING_VERSION,
}


def test_an_old_record_reads_as_version_0_with_every_value_kept():
    record = RunRecord.from_json(OLD_OK)
    assert record.record_version == 0 and record.extra == {}
    assert record.scores is not None and record.scores.selections["val_selected"]["mean"] == 0.8
    assert record.to_json() == {**OLD_OK, "record_version": 0}


def test_a_new_record_round_trips_with_its_version():
    scores = Scores({s: dict(SELECTION) for s in SELECTIONS}, best_test_epoch=3, val_epoch=2, last_epoch=7,
                    seconds_per_epoch=0.5, fit_seconds=3.5, eval_seconds=1.0, stopped_early_at=7)
    record = RunRecord("cVAE", 0, "unseen_drugs", trainable=True, reference=False, options={"lr": 1e-3}, scores=scores,
                       search={"chosen": {"lr": 1e-3}}, run_key="k", scoring_version=SCORING_VERSION, extra={"note": "kept"})
    data = json.loads(json.dumps(record.to_json()))
    assert data["record_version"] == RECORD_VERSION and data["note"] == "kept" and data["error"] is None
    assert RunRecord.from_json(data) == record


def test_a_failure_writes_only_what_it_knows():
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        failure = Failure.of(exc, with_traceback=True)
    record = RunRecord("bad", 0, "unseen_drugs", run_key="k").ended(failure)
    assert record.status == FAILED and record.error == "RuntimeError: boom" and "raise RuntimeError" in record.traceback
    assert set(record.to_json()) == {"predictor", "seed", "split", "status", "error", "traceback", "run_key", "record_version"}
    assert RunRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize("data, message", [
    ({**OLD_OK, "record_version": RECORD_VERSION + 1}, "newer bench"),
    ({**OLD_OK, "status": "done"}, "not a run record"),
    ([OLD_OK], "not a run record"),
])
def test_a_record_of_another_version_or_shape_is_refused(tmp_path, data, message):
    path = tmp_path / RESULT_FILE
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match=message) as caught:
        read_record(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_the_cache_reuses_an_old_record_and_skips_an_unreadable_one(tmp_path):
    path = tmp_path / "runs/knn/seed1" / RESULT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(OLD_OK))
    assert finished(tmp_path, "knn", 1, "abc") == {**OLD_OK, "record_version": 0}
    assert stale_reason(tmp_path, "knn", 1, "other").startswith("its configuration or data changed")
    path.write_text(json.dumps({**OLD_OK, "record_version": RECORD_VERSION + 1}))
    assert finished(tmp_path, "knn", 1, "abc") is None and stale_reason(tmp_path, "knn", 1, "other") is None


def test_a_run_writes_a_record_of_this_version(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--data", "smoke", "--predictors", "control_mean", "--out", str(out)]) == 0
    written = json.loads((out / "runs/control_mean/seed0" / RESULT_FILE).read_text())
    record = read_record(out / "runs/control_mean/seed0" / RESULT_FILE)
    assert record.status == OK and record.record_version == RECORD_VERSION and record.extra == {}
    assert record.to_json() == written
