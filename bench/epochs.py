"""Per-epoch evaluation of one fit and its epoch selection (see bench/runner.py).

Each epoch is scored on what selection needs only, on a thread of its own (`epoch_channel`); the
test predictions of the best epoch so far are kept per selection, and every metric is computed
once, at the selected epochs (`EpochLog.outcome`)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.evaluation import Evaluator, calibrated
from bench.headline import headline, headline_metrics
from bench.record import TEST_SELECTED, VAL_SELECTED, describe, norm_column
from bench.schema import PAPER_METRICS
from predictors.base import StopTraining


def selection_score(frame: pd.DataFrame) -> pd.Series:
    """Mean of the paper's six metrics (per row of per-condition scores, or of aggregates): the
    paper's own (best-test) epoch selection."""
    return frame[PAPER_METRICS].mean(axis=1)


@dataclass
class Kept:
    """The best epoch so far under one selection: its score, the epoch (None: not trained) and its
    scored test predictions (the sampled sets and the cells returned per condition)."""

    score: float
    epoch: int | None
    sets: dict
    counts: dict


@dataclass
class FitOutcome:
    """A successful fit: one row per evaluated epoch, its training seconds (evaluation excluded), the
    epoch each selection chose, every metric per test condition at those epochs (a `selection`
    column tells them apart), the val-selected epoch's test predictions and what training spent."""

    epochs: pd.DataFrame
    fit_seconds: float
    selected: dict[str, int | None]
    conditions: pd.DataFrame
    stopped_early_at: int | None
    best: Kept
    gradient_steps: int | None = None  # bench/budget.py: steps of the main optimisers (None: no torch training)
    n_parameters: int | None = None  # weights the optimisers trained

    @property
    def trained(self) -> bool:
        """Whether the fit reported epochs (a trainable predictor can also fit without them)."""
        return bool(self.epochs["epoch"].notna().any())

    @property
    def last_epoch(self) -> int:
        return int(self.epochs["epoch"].iloc[-1])

    @property
    def seconds_per_epoch(self) -> float:
        return float(self.epochs["seconds"].median())

    @property
    def eval_seconds(self) -> float:
        return float(self.epochs["eval_seconds"].sum())

    def at(self, selection: str) -> pd.DataFrame:
        """The per-condition scores at one selection's epoch."""
        return self.conditions[self.conditions["selection"] == selection]


class EpochLog:
    """Collects the per-epoch evaluations of one run, keeping evaluation time out of epoch time.

    Each epoch scores only what epoch selection needs (the paper's six metrics on the test
    conditions, the headline on the validation conditions) and keeps the scored test predictions of
    the epochs selected so far; the full metric set is computed once, at the selected epochs."""

    def __init__(self, predictor, test_eval: Evaluator, val_eval: Evaluator | None, bar, patience: int | None = None,
                 time_budget: float | None = None) -> None:
        self.predictor, self.test_eval, self.val_eval, self.bar = predictor, test_eval, val_eval, bar
        self.patience = patience if val_eval is not None else None
        self.time_budget = time_budget  # seconds of training (evaluation excluded) after which training stops
        self.stopped_at: int | None = None
        self.rows: list[dict] = []
        self.kept: dict[str, Kept] = {}  # selection -> its best epoch so far
        self._mark = time.perf_counter()

    def restart_clock(self) -> None:
        self._mark = time.perf_counter()

    def __call__(self, epoch: int | None, stats: dict) -> None:
        if self.stopped_at is not None:  # a predictor that swallowed the stop: no more evaluations
            raise StopTraining(f"training was stopped after epoch {self.stopped_at}")
        seconds = time.perf_counter() - self._mark
        t0 = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch, "seconds": seconds, **{f"train_{k}": float(v) for k, v in stats.items()}}
        sets, counts = self.test_eval.collect(self.predictor.predict_many)
        paper = self.test_eval.score(sets, PAPER_METRICS, replicate=False, counts=counts)
        row.update({f"test_{m}": float(paper[m].mean()) for m in PAPER_METRICS})
        row["test_score"] = float(selection_score(paper[PAPER_METRICS].mean().to_frame().T).iloc[0])
        if self.val_eval is not None:
            val_sets, val_counts = self.val_eval.collect(self.predictor.predict_many)
            val = self.val_eval.score(val_sets, headline_metrics(), replicate=False, counts=val_counts)
            row.update({f"val_{norm_column(m)}": calibrated(val, m) for m in headline_metrics()})
            row["val_score"] = headline(val)
        self._keep(TEST_SELECTED, Kept(row["test_score"], epoch, sets, counts))
        self._keep(VAL_SELECTED, Kept(row.get("val_score", len(self.rows)), epoch, sets, counts))
        row["eval_seconds"] = time.perf_counter() - t0
        self.rows.append(row)
        if self.bar is not None and epoch is not None:
            self.bar.set_postfix_str(f"epoch {epoch} val {row.get('val_score', float('nan')):.3f}")
        self._mark = time.perf_counter()
        if self.time_budget is not None and epoch is not None and self.trained_seconds() >= self.time_budget:
            self.stopped_at = epoch
            raise StopTraining(f"training time budget of {self.time_budget:g} s spent")
        if self.patience and epoch is not None:
            best = self.kept[VAL_SELECTED].epoch
            assert best is not None  # only a fit that reports no epochs is evaluated at None
            if epoch - best >= self.patience:
                self.stopped_at = epoch
                raise StopTraining(f"no validation gain for {self.patience} epochs")

    def _keep(self, selection: str, candidate: Kept) -> None:
        """Keep this epoch's test predictions when its score beats every earlier epoch's (ties: the earlier)."""
        best = self.kept.get(selection)
        if best is None or candidate.score > best.score:
            self.kept[selection] = candidate

    def eval_seconds(self) -> float:
        return sum(r["eval_seconds"] for r in self.rows)

    def trained_seconds(self) -> float:
        """Training seconds so far (set-up and phases before the first reported epoch included)."""
        return sum(r["seconds"] for r in self.rows)

    def outcome(self, fit_seconds: float) -> FitOutcome:
        """The fit's outcome: every metric, with floors and replicate references, at each selected
        epoch. A fit that reported no epochs is evaluated once here, its seconds the fit's."""
        if not self.rows:
            self(None, {})
            self.rows[-1]["seconds"] = fit_seconds
        selected, frames, done = {}, [], {}
        for selection, kept in self.kept.items():
            selected[selection] = kept.epoch
            if kept.epoch not in done:
                t0 = time.perf_counter()
                done[kept.epoch] = self.test_eval.score(kept.sets, counts=kept.counts)
                self.rows[-1]["eval_seconds"] += time.perf_counter() - t0
            frame = done[kept.epoch].copy()
            frame.insert(0, "epoch", kept.epoch)
            frame.insert(0, "selection", selection)
            frames.append(frame)
        return FitOutcome(pd.DataFrame(self.rows), fit_seconds, selected, pd.concat(frames, ignore_index=True),
                          self.stopped_at, self.kept[VAL_SELECTED])


STOP = "stop"  # the reply that ends training early


class EvaluationFailed(RuntimeError):
    """An epoch evaluation failed; the original error is re-raised by the runner after `fit` stops."""


def epoch_channel(log: EpochLog) -> tuple[Callable[[int, dict], None], Callable[[], BaseException | None]]:
    """Serve the per-epoch evaluations from a thread of their own. The callback handed to the
    predictor holds two queues and nothing else, so no reference leads from a predictor to the
    evaluator and its test cells; `fit` waits while its epoch is evaluated. Returns (callback, close);
    `close()` stops the thread and returns the first evaluation error, if any."""
    requests: queue.Queue = queue.Queue()
    replies: queue.Queue = queue.Queue()
    errors: list[BaseException] = []

    def serve() -> None:
        while (item := requests.get()) is not None:
            try:
                log(*item)
                replies.put(None)
            except StopTraining:
                replies.put(STOP)
            except BaseException as exc:  # noqa: BLE001  handed back to the runner, not to the predictor
                errors.append(exc)
                replies.put(describe(exc))

    thread = threading.Thread(target=serve, name="bench-evaluation", daemon=True)
    thread.start()

    def report(epoch: int, stats: dict) -> None:
        requests.put((epoch, dict(stats)))
        error = replies.get()
        if error == STOP:
            raise StopTraining(f"stopped after epoch {epoch}: no validation gain")
        if error is not None:
            raise EvaluationFailed(error)

    def close() -> BaseException | None:
        requests.put(None)
        thread.join()
        return errors[0] if errors else None

    return report, close
