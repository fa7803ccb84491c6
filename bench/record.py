"""Run records: the schema of a run's `result.json`, the names its keys and result columns use, and
how a run that produced no scores ended (`Failure`). Records written before `record_version`
existed hold the same fields and read as version 0."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from traceback import format_exception

from bench.errors import BenchError

# Bump on any change to what result.json holds, and teach `RunRecord.from_json` to read the old layout.
#   0: (implicit) the files written before the field existed
#   1: the same fields, with `record_version`
#   2: `versions`, the packages that computed the run (absent before)
RECORD_VERSION = 2
RESULT_FILE = "result.json"

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
STATUSES = (OK, FAILED, SKIPPED)

# The two epoch selections: the paper's (best test score) and the honest one (best validation headline).
TEST_SELECTED, VAL_SELECTED = "test_selected", "val_selected"
SELECTIONS = (TEST_SELECTED, VAL_SELECTED)
EPOCH_KEY = {TEST_SELECTED: "best_test_epoch", VAL_SELECTED: "val_epoch"}  # the record key of each selection's epoch
HEADLINE_COLUMNS = ("headline", "headline_low", "headline_high", "headline_vs_control")
ACTIVE = "active"  # per-condition column: the truth has a significant DE gene

NORM_SUFFIX = "_norm"
REPLICATE_SUFFIX = "_replicate"
REPLICATE_NORM_SUFFIX = REPLICATE_SUFFIX + NORM_SUFFIX


def norm_column(metric: str) -> str:
    """The column of a metric's calibrated score (0 = the mean baseline, 1 = its best value)."""
    return metric + NORM_SUFFIX


def replicate_column(metric: str) -> str:
    """The column of a metric's replicate reference (half of the true cells predicting the other half)."""
    return metric + REPLICATE_SUFFIX


def describe(exc: BaseException) -> str:
    """An error as one line: its type and message."""
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Failure:
    """How a run without scores ended: skipped (the data lack what the predictor needs) or failed."""

    status: str
    error: str
    traceback: str | None = None

    @classmethod
    def of(cls, exc: BaseException, with_traceback: bool = False) -> Failure:
        """A failed run from the error that ended it (its traceback too when asked)."""
        return cls(FAILED, describe(exc), "".join(format_exception(exc)) if with_traceback else None)


BUDGET_FIELDS = ("gradient_steps", "n_parameters")


@dataclass
class Scores:
    """What a successful run scored: per selection, every metric's mean over test conditions, its
    calibrated and replicate scores and the headline with its interval; the epochs chosen (None:
    not trained), the run's seconds, gradient steps and trained weights."""

    selections: dict[str, dict[str, float]]
    best_test_epoch: int | None = None
    val_epoch: int | None = None
    last_epoch: int | None = None
    seconds_per_epoch: float | None = None
    fit_seconds: float | None = None
    eval_seconds: float | None = None
    stopped_early_at: int | None = None
    gradient_steps: int | None = None  # bench/budget.py: steps of the main optimisers, to the last trained epoch
    n_parameters: int | None = None  # weights the optimisers trained

    def to_json(self) -> dict:
        """Every field, except the budget fields a run without torch training (or an older record) lacks."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "selections"}
        return {**{k: v for k, v in out.items() if v is not None or k not in BUDGET_FIELDS}, **self.selections}

    @classmethod
    def from_json(cls, data: dict) -> Scores | None:
        """The scores in a record's JSON, or None when it holds no selection aggregates."""
        if not all(isinstance(data.get(s), dict) for s in SELECTIONS):
            return None
        return cls({s: data[s] for s in SELECTIONS}, **{f.name: data.get(f.name) for f in fields(cls) if f.name != "selections"})


_SCORE_KEYS = {f.name for f in fields(Scores) if f.name != "selections"} | set(SELECTIONS)


@dataclass
class RunRecord:
    """One (predictor, seed) run as `result.json` holds it. Unset fields (None) are not written,
    except `error` (null for a run that succeeded); keys this version does not know are kept in `extra`."""

    predictor: str | None = None
    seed: int | None = None
    split: str | None = None
    status: str = OK
    error: str | None = None
    trainable: bool | None = None
    reference: bool | None = None
    options: dict | None = None  # the predictor's resolved options
    traceback: str | None = None
    scores: Scores | None = None  # written as top-level keys
    search: dict | None = None  # --search: space, chosen, selected_by, trials (options, val_headline, error), seconds
    run_key: str | None = None
    scoring_version: int | None = None  # bench/cache.py SCORING_VERSION; absent: 1
    versions: dict | None = None  # bench/fingerprint.py package_versions() of the process that computed it
    record_version: int = RECORD_VERSION
    extra: dict = field(default_factory=dict)

    def ended(self, failure: Failure) -> RunRecord:
        """This record as a run that ended without scores."""
        return replace(self, status=failure.status, error=failure.error, traceback=failure.traceback)

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("scores", "extra")}
        out = {k: v for k, v in out.items() if v is not None or k == "error"}
        return {**self.extra, **out, **(self.scores.to_json() if self.scores is not None else {})}

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """A record from its JSON, of this or an earlier record version; BenchError when it is none."""
        if not isinstance(data, dict):
            raise BenchError(f"not a run record (a JSON {type(data).__name__}, expected an object)")
        if data.get("status") not in STATUSES:
            raise BenchError(f"not a run record (status {data.get('status')!r}, expected one of {', '.join(STATUSES)})")
        version = data.get("record_version", 0)
        if not isinstance(version, int) or not 0 <= version <= RECORD_VERSION:
            raise BenchError(f"record version {version!r}: expected 0 to {RECORD_VERSION} (written by a newer bench?)")
        scores = Scores.from_json(data)
        own = {f.name for f in fields(cls)} - {"scores", "extra"}
        known = own | (_SCORE_KEYS if scores is not None else set())
        given = {k: v for k, v in data.items() if k in own}
        return cls(**{**given, "record_version": version}, scores=scores, extra={k: v for k, v in data.items() if k not in known})


def read_json(path: Path) -> dict:
    """A JSON file of a run folder (result.json, run.json); BenchError when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise BenchError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def read_record(path: Path) -> RunRecord:
    """The run record in a result.json file; BenchError, naming the file, when it holds none."""
    data = read_json(path)
    try:
        return RunRecord.from_json(data)
    except BenchError as exc:
        raise BenchError(f"{path}: {exc}") from None
